package cloudsim

import (
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

const ec2Version = "2016-11-15"

// maxLaunch caps one launch request, as EC2's own limits would.
const maxLaunch = 10000
const ec2NS = "http://ec2.amazonaws.com/doc/2016-11-15/"

// ec2Error is an EC2 API error: HTTP status, code and message.
type ec2Error struct {
	status        int
	code, message string
}

func (e *ec2Error) Error() string { return e.code + ": " + e.message }

func ec2Err(status int, code, format string, args ...any) *ec2Error {
	return &ec2Error{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

type ec2ErrorResponse struct {
	XMLName   xml.Name `xml:"Response"`
	Code      string   `xml:"Errors>Error>Code"`
	Message   string   `xml:"Errors>Error>Message"`
	RequestID string   `xml:"RequestID"`
}

func (s *Simulator) writeEC2Error(w http.ResponseWriter, e *ec2Error) {
	s.mu.Lock()
	rid := s.requestIDLocked()
	s.mu.Unlock()
	writeXML(w, e.status, ec2ErrorResponse{Code: e.code, Message: e.message, RequestID: rid})
}

func writeXML(w http.ResponseWriter, status int, v any) {
	body, err := xml.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(status)
	w.Write([]byte(xml.Header))
	w.Write(body)
}

// ec2Handler handles one EC2 action and returns the response document.
type ec2Handler func(s *Simulator, req *apiRequest) (any, *ec2Error)

var ec2Actions = map[string]ec2Handler{
	"RunInstances":                  (*Simulator).ec2RunInstances,
	"CreateFleet":                   (*Simulator).ec2CreateFleet,
	"DescribeInstances":             (*Simulator).ec2DescribeInstances,
	"TerminateInstances":            (*Simulator).ec2TerminateInstances,
	"CreateTags":                    (*Simulator).ec2CreateTags,
	"DescribeInstanceTypeOfferings": (*Simulator).ec2DescribeInstanceTypeOfferings,
	"DescribeSpotPriceHistory":      (*Simulator).ec2DescribeSpotPriceHistory,
	"DescribeSpotInstanceRequests":  (*Simulator).ec2DescribeSpotInstanceRequests,
}

func ec2ActionClass(action string) string {
	switch action {
	case "RunInstances", "CreateFleet":
		return "launch"
	case "TerminateInstances", "CreateTags":
		return "mutate"
	default:
		return "describe"
	}
}

func (s *Simulator) serveEC2(w http.ResponseWriter, r *http.Request, body []byte) {
	params := r.URL.Query()
	if r.Method == http.MethodPost {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			s.writeEC2Error(w, ec2Err(400, "MalformedQueryString", "cannot parse form body: %v", err))
			return
		}
		for k, v := range form {
			params[k] = append(params[k], v...)
		}
	}
	req := &apiRequest{cloud: CloudAWS, action: params.Get("Action"), caller: callerOf(r), params: params, body: body}
	s.Step()

	// Authentication first, as EC2 does.
	sig, err := parseSigV4(r.Header.Get("Authorization"))
	if err != nil {
		if err == errMissingAuth {
			s.writeEC2Error(w, ec2Err(401, "MissingAuthenticationToken", "Request is missing Authentication Token"))
		} else {
			s.writeEC2Error(w, ec2Err(400, "IncompleteSignature", "%v", err))
		}
		return
	}
	acct, ok := s.account(CloudAWS, sig.accessKey)
	if !ok {
		s.writeEC2Error(w, ec2Err(401, "AuthFailure", "AWS was not able to validate the provided access credentials"))
		return
	}
	if !verifySigV4(r, body, sig, acct.SecretAccessKey) {
		s.writeEC2Error(w, ec2Err(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method."))
		return
	}
	if sig.service != "ec2" || sig.region != s.cfg.AWS.Region {
		s.writeEC2Error(w, ec2Err(401, "AuthFailure", "Credential should be scoped to a valid region and service ec2, not %s/%s", sig.region, sig.service))
		return
	}
	req.account, req.region = acct, sig.region

	handler, ok := ec2Actions[req.action]
	if !ok {
		s.writeEC2Error(w, ec2Err(400, "InvalidAction", "The action %s is not valid for this web service.", req.action))
		return
	}
	if v := params.Get("Version"); v != ec2Version {
		s.writeEC2Error(w, ec2Err(400, "InvalidParameterValue", "Version %q is not supported; cloudsim speaks %s", v, ec2Version))
		return
	}

	fault, ok := s.admit(req, ec2ActionClass(req.action), s.cfg.AWS.Throttle)
	if !ok {
		s.writeEC2Error(w, ec2Err(503, "RequestLimitExceeded", "Request limit exceeded."))
		return
	}
	switch fault {
	case FaultThrottle:
		s.writeEC2Error(w, ec2Err(503, "RequestLimitExceeded", "Request limit exceeded."))
		return
	case FaultServerError:
		s.writeEC2Error(w, ec2Err(503, "Unavailable", "The service is unavailable. Please try again shortly."))
		return
	}
	if ec2ActionClass(req.action) == "launch" {
		s.sleepAPI(r.Context())
	}

	// Client-token idempotency for launches.
	token := params.Get("ClientToken")
	tokenKey := CloudAWS + "/" + acct.ID + "/" + req.action + "/" + token
	if token != "" {
		s.mu.Lock()
		prev, seen := s.tokens[tokenKey]
		s.mu.Unlock()
		if seen {
			if prev.paramsHash != paramsHash(params) {
				s.writeEC2Error(w, ec2Err(400, "IdempotentParameterMismatch", "The client token %s has already been used with different parameters.", token))
				return
			}
			s.writeCommitted(w, fault, prev.status, prev.body)
			return
		}
	}
	doc, apiErr := handler(s, req)
	if apiErr != nil {
		s.writeEC2Error(w, apiErr)
		return
	}
	out, err := xml.Marshal(doc)
	if err != nil {
		s.writeEC2Error(w, ec2Err(500, "InternalError", "marshalling response: %v", err))
		return
	}
	out = append([]byte(xml.Header), out...)
	if token != "" {
		s.mu.Lock()
		s.tokens[tokenKey] = idempotentResult{paramsHash: paramsHash(params), status: 200, body: out}
		s.mu.Unlock()
	}
	s.writeCommitted(w, fault, 200, out)
}

func (s *Simulator) writeCommitted(w http.ResponseWriter, fault FaultKind, status int, body []byte) {
	if fault == FaultServerErrorAfterCommit {
		s.writeEC2Error(w, ec2Err(500, "InternalError", "An internal error has occurred."))
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(status)
	w.Write(body)
}

// account finds the account with access key id on cloud.
func (s *Simulator) account(cloud, id string) (Account, bool) {
	cc := s.cfg.AWS
	if cloud == CloudAlicloud {
		cc = s.cfg.Alicloud
	}
	for _, a := range cc.Accounts {
		if a.AccessKeyID == id {
			return a, true
		}
	}
	return Account{}, false
}

// admit applies injected faults, random 5xx and request-rate throttling.
// ok is false when the request is throttled by its bucket. A returned
// FaultServerError covers random 5xx too.
func (s *Simulator) admit(req *apiRequest, class string, th Throttle) (FaultKind, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats[req.cloud+"/"+req.action]++
	s.recordCallLocked(req)
	if f := s.takeFaultLocked(req.cloud, req.action); f != "" {
		return f, true
	}
	if s.errorRate > 0 && s.errs.Float64() < s.errorRate {
		return FaultServerError, true
	}
	if th.Disabled {
		return "", true
	}
	b := th.Describe
	switch class {
	case "launch":
		b = th.Launch
	case "mutate":
		b = th.Mutate
	}
	return "", s.allowLocked(req.cloud+"/"+req.account.ID+"/"+class, b, 1)
}

// --- XML documents -------------------------------------------------------

type ec2Tag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

type ec2State struct {
	Code int    `xml:"code"`
	Name string `xml:"name"`
}

type ec2Placement struct {
	AvailabilityZone string `xml:"availabilityZone"`
}

type ec2StateReason struct {
	Code    string `xml:"code"`
	Message string `xml:"message"`
}

type ec2Instance struct {
	InstanceID        string          `xml:"instanceId"`
	ImageID           string          `xml:"imageId,omitempty"`
	State             ec2State        `xml:"instanceState"`
	PrivateIPAddress  string          `xml:"privateIpAddress"`
	InstanceType      string          `xml:"instanceType"`
	LaunchTime        string          `xml:"launchTime"`
	Placement         ec2Placement    `xml:"placement"`
	SubnetID          string          `xml:"subnetId,omitempty"`
	ClientToken       string          `xml:"clientToken,omitempty"`
	InstanceLifecycle string          `xml:"instanceLifecycle,omitempty"`
	SpotRequestID     string          `xml:"spotInstanceRequestId,omitempty"`
	StateReason       *ec2StateReason `xml:"stateReason,omitempty"`
	Tags              []ec2Tag        `xml:"tagSet>item"`
}

type ec2Reservation struct {
	ReservationID string        `xml:"reservationId"`
	OwnerID       string        `xml:"ownerId"`
	Instances     []ec2Instance `xml:"instancesSet>item"`
}

func ec2StateCode(state string) int {
	switch state {
	case ec2Pending:
		return 0
	case ec2Running:
		return 16
	case ec2ShuttingDown:
		return 32
	case ec2Terminated:
		return 48
	}
	return 0
}

func ec2Time(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func (in *Instance) ec2() ec2Instance {
	out := ec2Instance{
		InstanceID:       in.ID,
		ImageID:          in.ImageID,
		State:            ec2State{Code: ec2StateCode(in.State), Name: in.State},
		PrivateIPAddress: in.PrivateIP,
		InstanceType:     in.InstanceType,
		LaunchTime:       ec2Time(in.LaunchTime),
		Placement:        ec2Placement{AvailabilityZone: in.Zone},
		SubnetID:         in.Subnet,
		ClientToken:      in.ClientToken,
	}
	if in.CapacityType == Spot {
		out.InstanceLifecycle = "spot"
		out.SpotRequestID = in.SpotRequest
	}
	if in.StateReason != "" {
		code, msg, _ := strings.Cut(in.StateReason, ": ")
		out.StateReason = &ec2StateReason{Code: code, Message: msg}
	}
	keys := make([]string, 0, len(in.Tags))
	for k := range in.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out.Tags = append(out.Tags, ec2Tag{Key: k, Value: in.Tags[k]})
	}
	return out
}

// --- parameter helpers ---------------------------------------------------

// ec2TagSpecs returns the tags of TagSpecification entries for resource
// type "instance".
func ec2TagSpecs(p url.Values) map[string]string {
	tags := map[string]string{}
	for _, n := range listIndexes(p, "TagSpecification") {
		prefix := "TagSpecification." + n
		if rt := p.Get(prefix + ".ResourceType"); rt != "" && rt != "instance" {
			continue
		}
		for _, m := range listIndexes(p, prefix+".Tag") {
			tags[p.Get(prefix+".Tag."+m+".Key")] = p.Get(prefix + ".Tag." + m + ".Value")
		}
	}
	return tags
}

func intParam(p url.Values, name string, def int) (int, *ec2Error) {
	v := p.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, ec2Err(400, "InvalidParameterValue", "Value (%s) for parameter %s is invalid.", v, name)
	}
	return n, nil
}

func (s *Simulator) zoneOf(cloud, zone, subnet string) (string, *ec2Error) {
	if subnet == "" {
		return zone, nil
	}
	subnets := s.cfg.AWS.Subnets
	if cloud == CloudAlicloud {
		subnets = s.cfg.Alicloud.Subnets
	}
	z, ok := subnets[subnet]
	if !ok {
		return "", ec2Err(400, "InvalidSubnetID.NotFound", "The subnet ID '%s' does not exist", subnet)
	}
	if zone != "" && zone != z {
		return "", ec2Err(400, "InvalidParameterCombination", "subnet %s is in %s, not %s", subnet, z, zone)
	}
	return z, nil
}

// --- actions -------------------------------------------------------------

func (s *Simulator) ec2RunInstances(req *apiRequest) (any, *ec2Error) {
	p := req.params
	minCount, e := intParam(p, "MinCount", 0)
	if e != nil {
		return nil, e
	}
	maxCount, e := intParam(p, "MaxCount", 0)
	if e != nil {
		return nil, e
	}
	if minCount < 1 || maxCount < minCount || maxCount > maxLaunch {
		return nil, ec2Err(400, "InvalidParameterValue", "MinCount (%d) and MaxCount (%d) must be positive, MinCount <= MaxCount", minCount, maxCount)
	}
	spec := launchSpec{cloud: CloudAWS, account: req.account.ID, region: req.region,
		instanceType: p.Get("InstanceType"), imageID: p.Get("ImageId"), subnet: p.Get("SubnetId"),
		token: p.Get("ClientToken"), tags: ec2TagSpecs(p), capacityType: OnDemand}
	if lt := firstNonEmpty(p.Get("LaunchTemplate.LaunchTemplateId"), p.Get("LaunchTemplate.LaunchTemplateName")); lt != "" {
		tpl, err := s.template(p.Get("LaunchTemplate.LaunchTemplateId"), p.Get("LaunchTemplate.LaunchTemplateName"))
		if err != nil {
			return nil, err
		}
		spec.imageID = firstNonEmpty(spec.imageID, tpl.ImageID)
		spec.instanceType = firstNonEmpty(spec.instanceType, tpl.InstanceType)
		spec.userData = []byte(tpl.UserData)
	}
	if ud := p.Get("UserData"); ud != "" {
		dec, err := base64.StdEncoding.DecodeString(ud)
		if err != nil {
			return nil, ec2Err(400, "InvalidUserData.Malformed", "User data must be base64 encoded.")
		}
		spec.userData = dec
	}
	if spec.instanceType == "" {
		spec.instanceType = "m1.small"
	}
	if p.Get("InstanceMarketOptions.MarketType") == "spot" {
		spec.capacityType = Spot
	}
	zone, e := s.zoneOf(CloudAWS, p.Get("Placement.AvailabilityZone"), spec.subnet)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if zone == "" {
		zone = s.defaultZoneLocked(CloudAWS, spec.instanceType, spec.capacityType)
	}
	spec.zone = zone
	avail, exists := s.availableLocked(CloudAWS, zone, spec.instanceType, spec.capacityType, maxCount)
	if !exists {
		return nil, ec2Err(400, "Unsupported", "Your requested instance type (%s) is not supported in your requested Availability Zone (%s).", spec.instanceType, zone)
	}
	if avail < minCount {
		return nil, ec2Err(500, "InsufficientInstanceCapacity",
			"We currently do not have sufficient %s capacity in the Availability Zone you requested (%s). Our system will be working on provisioning additional capacity.", spec.instanceType, zone)
	}
	if q := s.cfg.AWS.Quota.Instances; q > 0 {
		left := q - s.liveCountLocked(CloudAWS, req.account.ID)
		if left < minCount {
			if spec.capacityType == Spot {
				return nil, ec2Err(400, "MaxSpotInstanceCountExceeded", "Max spot instance count exceeded")
			}
			return nil, ec2Err(400, "InstanceLimitExceeded", "You have requested more instances (%d) than your current instance limit of %d allows.", minCount, q)
		}
		avail = min(avail, left)
	}
	if !s.cfg.AWS.Throttle.Disabled && !s.allowLocked(CloudAWS+"/"+req.account.ID+"/instances", s.cfg.AWS.Throttle.Instances, float64(avail)) {
		return nil, ec2Err(503, "RequestLimitExceeded", "Request limit exceeded.")
	}
	spec.reservation = "r-" + s.randomString(hexDigits, 17)
	launched := s.launchLocked(spec, avail)
	res := struct {
		XMLName   xml.Name `xml:"RunInstancesResponse"`
		NS        string   `xml:"xmlns,attr"`
		RequestID string   `xml:"requestId"`
		ec2Reservation
	}{NS: ec2NS, RequestID: s.requestIDLocked()}
	res.ReservationID, res.OwnerID = spec.reservation, req.account.ID
	for _, in := range launched {
		res.Instances = append(res.Instances, in.ec2())
	}
	return res, nil
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func (s *Simulator) template(id, name string) (LaunchTemplate, *ec2Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id != "" {
		if t, ok := s.templates["id:"+id]; ok {
			return t, nil
		}
		return LaunchTemplate{}, ec2Err(400, "InvalidLaunchTemplateId.NotFound", "The specified launch template, with template ID %s, does not exist.", id)
	}
	if t, ok := s.templates["name:"+name]; ok {
		return t, nil
	}
	return LaunchTemplate{}, ec2Err(400, "InvalidLaunchTemplateName.NotFoundException", "The specified launch template, with template name %s, does not exist.", name)
}

func (s *Simulator) defaultZoneLocked(cloud, instanceType, capacityType string) string {
	var zones []string
	for key, o := range s.offerings {
		if strings.HasPrefix(key, cloud+"/") && o.InstanceType == instanceType && o.CapacityType == capacityType {
			zones = append(zones, o.Zone)
		}
	}
	sort.Strings(zones)
	if len(zones) == 0 {
		return ""
	}
	return zones[0]
}

type fleetLTSpec struct {
	LaunchTemplateID   string `xml:"launchTemplateId,omitempty"`
	LaunchTemplateName string `xml:"launchTemplateName,omitempty"`
	Version            string `xml:"version,omitempty"`
}

type fleetOverrides struct {
	InstanceType     string  `xml:"instanceType"`
	AvailabilityZone string  `xml:"availabilityZone,omitempty"`
	SubnetID         string  `xml:"subnetId,omitempty"`
	Priority         *string `xml:"priority,omitempty"`
}

type fleetLTAndOverrides struct {
	Spec      fleetLTSpec    `xml:"launchTemplateSpecification"`
	Overrides fleetOverrides `xml:"overrides"`
}

type fleetError struct {
	LT           fleetLTAndOverrides `xml:"launchTemplateAndOverrides"`
	Lifecycle    string              `xml:"lifecycle"`
	ErrorCode    string              `xml:"errorCode"`
	ErrorMessage string              `xml:"errorMessage"`
}

type fleetInstances struct {
	LT           fleetLTAndOverrides `xml:"launchTemplateAndOverrides"`
	Lifecycle    string              `xml:"lifecycle"`
	InstanceIDs  []string            `xml:"instanceIds>item"`
	InstanceType string              `xml:"instanceType"`
}

type fleetOverride struct {
	spec     fleetLTSpec
	ov       fleetOverrides
	zone     string
	priority float64
	index    int
	price    float64
	avail    int
}

func (s *Simulator) ec2CreateFleet(req *apiRequest) (any, *ec2Error) {
	p := req.params
	if t := p.Get("Type"); t != "instant" {
		return nil, ec2Err(400, "InvalidParameterValue", "cloudsim supports only CreateFleet type instant, not %q", t)
	}
	total, e := intParam(p, "TargetCapacitySpecification.TotalTargetCapacity", 0)
	if e != nil {
		return nil, e
	}
	if total < 1 || total > maxLaunch {
		return nil, ec2Err(400, "InvalidParameterValue", "TotalTargetCapacity must be between 1 and %d", maxLaunch)
	}
	capType := p.Get("TargetCapacitySpecification.DefaultTargetCapacityType")
	if capType != Spot && capType != OnDemand {
		return nil, ec2Err(400, "InvalidParameterValue", "DefaultTargetCapacityType must be spot or on-demand, not %q", capType)
	}
	strategy := p.Get("OnDemandOptions.AllocationStrategy")
	minTarget, _ := intParam(p, "OnDemandOptions.MinTargetCapacity", 0)
	if capType == Spot {
		strategy = p.Get("SpotOptions.AllocationStrategy")
		minTarget, _ = intParam(p, "SpotOptions.MinTargetCapacity", 0)
	}
	tags := ec2TagSpecs(p)

	var overrides []*fleetOverride
	userData := map[fleetLTSpec][]byte{}
	imageID := map[fleetLTSpec]string{}
	for _, n := range listIndexes(p, "LaunchTemplateConfigs") {
		prefix := "LaunchTemplateConfigs." + n
		spec := fleetLTSpec{
			LaunchTemplateID:   p.Get(prefix + ".LaunchTemplateSpecification.LaunchTemplateId"),
			LaunchTemplateName: p.Get(prefix + ".LaunchTemplateSpecification.LaunchTemplateName"),
			Version:            p.Get(prefix + ".LaunchTemplateSpecification.Version"),
		}
		tpl, err := s.template(spec.LaunchTemplateID, spec.LaunchTemplateName)
		if err != nil {
			return nil, err
		}
		userData[spec], imageID[spec] = []byte(tpl.UserData), tpl.ImageID
		for _, m := range listIndexes(p, prefix+".Overrides") {
			op := prefix + ".Overrides." + m
			ov := &fleetOverride{spec: spec, index: len(overrides), priority: float64(len(overrides))}
			ov.ov = fleetOverrides{
				InstanceType:     firstNonEmpty(p.Get(op+".InstanceType"), tpl.InstanceType),
				AvailabilityZone: p.Get(op + ".AvailabilityZone"),
				SubnetID:         p.Get(op + ".SubnetId"),
			}
			if pr := p.Get(op + ".Priority"); pr != "" {
				ov.priority, _ = strconv.ParseFloat(pr, 64)
				ov.ov.Priority = &pr
			}
			zone, err := s.zoneOf(CloudAWS, ov.ov.AvailabilityZone, ov.ov.SubnetID)
			if err != nil {
				return nil, err
			}
			ov.zone = zone
			overrides = append(overrides, ov)
		}
	}
	if len(overrides) == 0 {
		return nil, ec2Err(400, "MissingParameter", "CreateFleet needs LaunchTemplateConfigs with overrides")
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ov := range overrides {
		if ov.zone == "" {
			ov.zone = s.defaultZoneLocked(CloudAWS, ov.ov.InstanceType, capType)
		}
		ov.avail, _ = s.availableLocked(CloudAWS, ov.zone, ov.ov.InstanceType, capType, total)
		ov.price = s.offerings[offeringKey(CloudAWS, ov.zone, ov.ov.InstanceType, capType)].Price
	}
	switch strategy {
	case "prioritized", "capacity-optimized-prioritized":
		sort.SliceStable(overrides, func(i, j int) bool { return overrides[i].priority < overrides[j].priority })
	case "capacity-optimized", "price-capacity-optimized":
		sort.SliceStable(overrides, func(i, j int) bool {
			if overrides[i].avail != overrides[j].avail {
				return overrides[i].avail > overrides[j].avail
			}
			return overrides[i].price < overrides[j].price
		})
	default: // lowest-price
		sort.SliceStable(overrides, func(i, j int) bool { return overrides[i].price < overrides[j].price })
	}

	quotaLeft := -1
	if q := s.cfg.AWS.Quota.Instances; q > 0 {
		quotaLeft = max(0, q-s.liveCountLocked(CloudAWS, req.account.ID))
	}
	// Plan the fill, then check the resource bucket for the whole fleet.
	type fill struct {
		ov *fleetOverride
		n  int
	}
	var fills []fill
	var errs []fleetError
	remaining := total
	for _, ov := range overrides {
		if remaining == 0 {
			break
		}
		lt := fleetLTAndOverrides{Spec: ov.spec, Overrides: ov.ov}
		lt.Overrides.AvailabilityZone = ov.zone
		key := offeringKey(CloudAWS, ov.zone, ov.ov.InstanceType, capType)
		if _, ok := s.offerings[key]; !ok {
			errs = append(errs, fleetError{LT: lt, Lifecycle: capType, ErrorCode: "Unsupported",
				ErrorMessage: fmt.Sprintf("Your requested instance type (%s) is not supported in your requested Availability Zone (%s).", ov.ov.InstanceType, ov.zone)})
			continue
		}
		n := min(remaining, ov.avail)
		if quotaLeft >= 0 && n > quotaLeft {
			n = quotaLeft
			code := "VcpuLimitExceeded"
			if capType == Spot {
				code = "MaxSpotInstanceCountExceeded"
			}
			errs = append(errs, fleetError{LT: lt, Lifecycle: capType, ErrorCode: code, ErrorMessage: "You have requested more instances than your current instance limit allows."})
		} else if n < remaining {
			errs = append(errs, fleetError{LT: lt, Lifecycle: capType, ErrorCode: "InsufficientInstanceCapacity",
				ErrorMessage: fmt.Sprintf("We currently do not have sufficient %s capacity in the Availability Zone you requested (%s).", ov.ov.InstanceType, ov.zone)})
		}
		if n > 0 {
			fills = append(fills, fill{ov, n})
			remaining -= n
			if quotaLeft >= 0 {
				quotaLeft -= n
			}
			ov.avail -= n
		}
	}
	launchedTotal := total - remaining
	if minTarget > 0 && launchedTotal < minTarget {
		fills = nil
	}
	if !s.cfg.AWS.Throttle.Disabled && launchedTotal > 0 &&
		!s.allowLocked(CloudAWS+"/"+req.account.ID+"/instances", s.cfg.AWS.Throttle.Instances, float64(launchedTotal)) {
		return nil, ec2Err(503, "RequestLimitExceeded", "Request limit exceeded.")
	}
	fleetID := "fleet-" + s.randomString(hexDigits, 8) + "-" + s.randomString(hexDigits, 4) + "-" + s.randomString(hexDigits, 4) + "-" + s.randomString(hexDigits, 4) + "-" + s.randomString(hexDigits, 12)
	res := struct {
		XMLName   xml.Name         `xml:"CreateFleetResponse"`
		NS        string           `xml:"xmlns,attr"`
		RequestID string           `xml:"requestId"`
		FleetID   string           `xml:"fleetId"`
		Errors    []fleetError     `xml:"errorSet>item"`
		Instances []fleetInstances `xml:"fleetInstanceSet>item"`
	}{NS: ec2NS, RequestID: s.requestIDLocked(), FleetID: fleetID, Errors: errs}
	for _, f := range fills {
		launched := s.launchLocked(launchSpec{cloud: CloudAWS, account: req.account.ID, region: req.region,
			zone: f.ov.zone, subnet: f.ov.ov.SubnetID, instanceType: f.ov.ov.InstanceType, capacityType: capType,
			imageID: imageID[f.ov.spec], token: p.Get("ClientToken"), tags: tags, userData: userData[f.ov.spec],
			reservation: "r-" + s.randomString(hexDigits, 17)}, f.n)
		lt := fleetLTAndOverrides{Spec: f.ov.spec, Overrides: f.ov.ov}
		lt.Overrides.AvailabilityZone = f.ov.zone
		fi := fleetInstances{LT: lt, Lifecycle: capType, InstanceType: f.ov.ov.InstanceType}
		for _, in := range launched {
			fi.InstanceIDs = append(fi.InstanceIDs, in.ID)
		}
		res.Instances = append(res.Instances, fi)
	}
	return res, nil
}

// ec2Filter is one DescribeInstances filter.
type ec2Filter struct {
	name   string
	values []string
}

func ec2Filters(p url.Values) []ec2Filter {
	var out []ec2Filter
	for _, n := range listIndexes(p, "Filter") {
		out = append(out, ec2Filter{name: p.Get("Filter." + n + ".Name"), values: listValues(p, "Filter."+n+".Value")})
	}
	return out
}

func matchAny(v string, values []string) bool {
	for _, want := range values {
		if want == v || want == "*" {
			return true
		}
		if strings.HasSuffix(want, "*") && strings.HasPrefix(v, strings.TrimSuffix(want, "*")) {
			return true
		}
	}
	return false
}

func (in *Instance) matchEC2(f ec2Filter) (bool, *ec2Error) {
	switch {
	case strings.HasPrefix(f.name, "tag:"):
		v, ok := in.Tags[strings.TrimPrefix(f.name, "tag:")]
		return ok && matchAny(v, f.values), nil
	case f.name == "tag-key":
		for k := range in.Tags {
			if matchAny(k, f.values) {
				return true, nil
			}
		}
		return false, nil
	case f.name == "instance-state-name":
		return matchAny(in.State, f.values), nil
	case f.name == "instance-id":
		return matchAny(in.ID, f.values), nil
	case f.name == "instance-type":
		return matchAny(in.InstanceType, f.values), nil
	case f.name == "availability-zone":
		return matchAny(in.Zone, f.values), nil
	case f.name == "client-token":
		return matchAny(in.ClientToken, f.values), nil
	case f.name == "instance-lifecycle":
		lc := ""
		if in.CapacityType == Spot {
			lc = "spot"
		}
		return matchAny(lc, f.values), nil
	}
	return false, ec2Err(400, "InvalidParameterValue", "The filter '%s' is invalid", f.name)
}

func decodeNextToken(tok string) (int, *ec2Error) {
	if tok == "" {
		return 0, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	n, err2 := strconv.Atoi(strings.TrimPrefix(string(raw), "cloudsim:"))
	if err != nil || err2 != nil || n < 0 {
		return 0, ec2Err(400, "InvalidNextToken.Malformed", "The specified NextToken is not valid.")
	}
	return n, nil
}

func encodeNextToken(n int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("cloudsim:" + strconv.Itoa(n)))
}

func (s *Simulator) ec2DescribeInstances(req *apiRequest) (any, *ec2Error) {
	p := req.params
	ids := listValues(p, "InstanceId")
	filters := ec2Filters(p)
	maxResults, e := intParam(p, "MaxResults", 0)
	if e != nil {
		return nil, e
	}
	if maxResults != 0 && (len(ids) > 0 || maxResults < 5 || maxResults > 1000) {
		return nil, ec2Err(400, "InvalidParameterValue", "MaxResults must be between 5 and 1000 and cannot be combined with InstanceId")
	}
	start, e := decodeNextToken(p.Get("NextToken"))
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if in, ok := s.instances[id]; !ok || in.Cloud != CloudAWS || in.Account != req.account.ID || !s.visibleLocked(in) {
			return nil, ec2Err(400, "InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
		}
	}
	var matched []*Instance
	for _, id := range s.sortedIDsLocked() {
		in := s.instances[id]
		if in.Cloud != CloudAWS || in.Account != req.account.ID || !s.visibleLocked(in) {
			continue
		}
		if len(ids) > 0 && !matchAny(in.ID, ids) {
			continue
		}
		ok := true
		for _, f := range filters {
			m, err := in.matchEC2(f)
			if err != nil {
				return nil, err
			}
			ok = ok && m
		}
		if ok {
			matched = append(matched, in)
		}
	}
	res := struct {
		XMLName      xml.Name         `xml:"DescribeInstancesResponse"`
		NS           string           `xml:"xmlns,attr"`
		RequestID    string           `xml:"requestId"`
		Reservations []ec2Reservation `xml:"reservationSet>item"`
		NextToken    string           `xml:"nextToken,omitempty"`
	}{NS: ec2NS, RequestID: s.requestIDLocked()}
	if start > len(matched) {
		start = len(matched)
	}
	page := matched[start:]
	if maxResults > 0 && len(page) > maxResults {
		page = page[:maxResults]
		res.NextToken = encodeNextToken(start + maxResults)
	}
	for _, in := range page {
		n := len(res.Reservations)
		if n == 0 || res.Reservations[n-1].ReservationID != in.Reservation {
			res.Reservations = append(res.Reservations, ec2Reservation{ReservationID: in.Reservation, OwnerID: in.Account})
			n++
		}
		res.Reservations[n-1].Instances = append(res.Reservations[n-1].Instances, in.ec2())
	}
	return res, nil
}

type ec2StateChange struct {
	InstanceID    string   `xml:"instanceId"`
	CurrentState  ec2State `xml:"currentState"`
	PreviousState ec2State `xml:"previousState"`
}

func (s *Simulator) ec2TerminateInstances(req *apiRequest) (any, *ec2Error) {
	ids := listValues(req.params, "InstanceId")
	if len(ids) == 0 {
		return nil, ec2Err(400, "MissingParameter", "The request must contain the parameter InstanceId")
	}
	s.mu.Lock()
	for _, id := range ids {
		if in, ok := s.instances[id]; !ok || in.Cloud != CloudAWS || in.Account != req.account.ID || !s.visibleLocked(in) {
			s.mu.Unlock()
			return nil, ec2Err(400, "InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
		}
	}
	res := struct {
		XMLName   xml.Name         `xml:"TerminateInstancesResponse"`
		NS        string           `xml:"xmlns,attr"`
		RequestID string           `xml:"requestId"`
		Instances []ec2StateChange `xml:"instancesSet>item"`
	}{NS: ec2NS, RequestID: s.requestIDLocked()}
	var evs []InstanceEvent
	for _, id := range ids {
		in := s.instances[id]
		prev := ec2State{Code: ec2StateCode(in.State), Name: in.State}
		if in.State == ec2Pending || in.State == ec2Running {
			evs = append(evs, s.terminateLocked(in, "Client.UserInitiatedShutdown: User initiated shutdown"))
		}
		res.Instances = append(res.Instances, ec2StateChange{InstanceID: id, PreviousState: prev,
			CurrentState: ec2State{Code: ec2StateCode(in.State), Name: in.State}})
	}
	s.mu.Unlock()
	s.runHooks(s.terminateHook, evs)
	return res, nil
}

func (s *Simulator) ec2CreateTags(req *apiRequest) (any, *ec2Error) {
	ids := listValues(req.params, "ResourceId")
	tags := map[string]string{}
	for _, n := range listIndexes(req.params, "Tag") {
		tags[req.params.Get("Tag."+n+".Key")] = req.params.Get("Tag." + n + ".Value")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if in, ok := s.instances[id]; !ok || in.Cloud != CloudAWS || in.Account != req.account.ID {
			return nil, ec2Err(400, "InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
		}
	}
	for _, id := range ids {
		for k, v := range tags {
			s.instances[id].Tags[k] = v
		}
	}
	return struct {
		XMLName   xml.Name `xml:"CreateTagsResponse"`
		NS        string   `xml:"xmlns,attr"`
		RequestID string   `xml:"requestId"`
		Return    bool     `xml:"return"`
	}{NS: ec2NS, RequestID: s.requestIDLocked(), Return: true}, nil
}

type ec2TypeOffering struct {
	InstanceType string `xml:"instanceType"`
	LocationType string `xml:"locationType"`
	Location     string `xml:"location"`
}

func (s *Simulator) ec2DescribeInstanceTypeOfferings(req *apiRequest) (any, *ec2Error) {
	p := req.params
	locType := firstNonEmpty(p.Get("LocationType"), "region")
	filters := ec2Filters(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	var out []ec2TypeOffering
	for key, o := range s.offerings {
		if !strings.HasPrefix(key, CloudAWS+"/") {
			continue
		}
		loc := o.Zone
		if locType == "region" {
			loc = s.cfg.AWS.Region
		}
		off := ec2TypeOffering{InstanceType: o.InstanceType, LocationType: locType, Location: loc}
		ok := true
		for _, f := range filters {
			switch f.name {
			case "instance-type":
				ok = ok && matchAny(off.InstanceType, f.values)
			case "location":
				ok = ok && matchAny(off.Location, f.values)
			default:
				return nil, ec2Err(400, "InvalidParameterValue", "The filter '%s' is invalid", f.name)
			}
		}
		if ok && !seen[off.InstanceType+"/"+off.Location] {
			seen[off.InstanceType+"/"+off.Location] = true
			out = append(out, off)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].InstanceType != out[j].InstanceType {
			return out[i].InstanceType < out[j].InstanceType
		}
		return out[i].Location < out[j].Location
	})
	return struct {
		XMLName   xml.Name          `xml:"DescribeInstanceTypeOfferingsResponse"`
		NS        string            `xml:"xmlns,attr"`
		RequestID string            `xml:"requestId"`
		Offerings []ec2TypeOffering `xml:"instanceTypeOfferingSet>item"`
	}{NS: ec2NS, RequestID: s.requestIDLocked(), Offerings: out}, nil
}

type ec2SpotPrice struct {
	AvailabilityZone   string `xml:"availabilityZone"`
	InstanceType       string `xml:"instanceType"`
	ProductDescription string `xml:"productDescription"`
	SpotPrice          string `xml:"spotPrice"`
	Timestamp          string `xml:"timestamp"`
}

func (s *Simulator) ec2DescribeSpotPriceHistory(req *apiRequest) (any, *ec2Error) {
	p := req.params
	types := listValues(p, "InstanceType")
	zone := p.Get("AvailabilityZone")
	filters := ec2Filters(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ec2SpotPrice
	now := ec2Time(s.clock.Now())
	for key, o := range s.offerings {
		if !strings.HasPrefix(key, CloudAWS+"/") || o.CapacityType != Spot {
			continue
		}
		if len(types) > 0 && !matchAny(o.InstanceType, types) || zone != "" && zone != o.Zone {
			continue
		}
		ok := true
		for _, f := range filters {
			switch f.name {
			case "instance-type":
				ok = ok && matchAny(o.InstanceType, f.values)
			case "availability-zone":
				ok = ok && matchAny(o.Zone, f.values)
			case "product-description":
				ok = ok && matchAny("Linux/UNIX", f.values)
			}
		}
		if ok {
			out = append(out, ec2SpotPrice{AvailabilityZone: o.Zone, InstanceType: o.InstanceType,
				ProductDescription: "Linux/UNIX", SpotPrice: strconv.FormatFloat(o.Price, 'f', 6, 64), Timestamp: now})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].InstanceType+out[i].AvailabilityZone < out[j].InstanceType+out[j].AvailabilityZone
	})
	return struct {
		XMLName   xml.Name       `xml:"DescribeSpotPriceHistoryResponse"`
		NS        string         `xml:"xmlns,attr"`
		RequestID string         `xml:"requestId"`
		Prices    []ec2SpotPrice `xml:"spotPriceHistorySet>item"`
		NextToken string         `xml:"nextToken"`
	}{NS: ec2NS, RequestID: s.requestIDLocked(), Prices: out}, nil
}

type ec2SpotRequest struct {
	ID     string `xml:"spotInstanceRequestId"`
	Type   string `xml:"type"`
	State  string `xml:"state"`
	Status struct {
		Code       string `xml:"code"`
		UpdateTime string `xml:"updateTime"`
		Message    string `xml:"message"`
	} `xml:"status"`
	InstanceID         string `xml:"instanceId"`
	Zone               string `xml:"launchedAvailabilityZone"`
	CreateTime         string `xml:"createTime"`
	ProductDescription string `xml:"productDescription"`
	Interruption       string `xml:"instanceInterruptionBehavior"`
}

// ec2DescribeSpotInstanceRequests answers for the spot requests of the
// account's spot instances (by SpotInstanceRequestId, or the instance-id,
// state and status-code filters): fulfilled while an instance runs,
// marked-for-termination once it got its interruption notice, closed with
// instance-terminated-no-capacity after it was reclaimed.
func (s *Simulator) ec2DescribeSpotInstanceRequests(req *apiRequest) (any, *ec2Error) {
	p := req.params
	ids := listValues(p, "SpotInstanceRequestId")
	filters := ec2Filters(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	byID := map[string]*Instance{}
	for _, id := range s.sortedIDsLocked() {
		if in := s.instances[id]; in.Cloud == CloudAWS && in.Account == req.account.ID && in.SpotRequest != "" && s.visibleLocked(in) {
			byID[in.SpotRequest] = in
		}
	}
	for _, id := range ids {
		if byID[id] == nil {
			return nil, ec2Err(400, "InvalidSpotInstanceRequestID.NotFound", "The spot instance request ID '%s' does not exist", id)
		}
	}
	var out []ec2SpotRequest
	for _, id := range slices.Sorted(maps.Keys(byID)) {
		in := byID[id]
		if len(ids) > 0 && !matchAny(id, ids) {
			continue
		}
		r := ec2SpotRequest{ID: id, Type: "one-time", State: "active", InstanceID: in.ID, Zone: in.Zone, CreateTime: ec2Time(in.LaunchTime),
			ProductDescription: "Linux/UNIX", Interruption: "terminate"}
		r.Status.Code, r.Status.UpdateTime, r.Status.Message = "fulfilled", ec2Time(in.LaunchTime), "Your spot request is fulfilled."
		switch {
		case in.State == ec2ShuttingDown || in.State == ec2Terminated:
			r.State = "closed"
			r.Status.Code, r.Status.Message = "instance-terminated-no-capacity", "Spot Instance terminated due to no available capacity."
			if in.InterruptAt.IsZero() {
				r.Status.Code, r.Status.Message = "instance-terminated-by-user", "Spot Instance terminated."
			} else {
				r.Status.UpdateTime = ec2Time(in.InterruptAt)
			}
		case !in.InterruptAt.IsZero():
			r.Status.Code, r.Status.UpdateTime = "marked-for-termination", ec2Time(in.NoticeAt)
			r.Status.Message = "Spot Instance is marked for termination due to no available capacity."
		}
		ok := true
		for _, f := range filters {
			switch f.name {
			case "instance-id":
				ok = ok && matchAny(r.InstanceID, f.values)
			case "state":
				ok = ok && matchAny(r.State, f.values)
			case "status-code":
				ok = ok && matchAny(r.Status.Code, f.values)
			default:
				return nil, ec2Err(400, "InvalidParameterValue", "The filter '%s' is invalid", f.name)
			}
		}
		if ok {
			out = append(out, r)
		}
	}
	return struct {
		XMLName   xml.Name         `xml:"DescribeSpotInstanceRequestsResponse"`
		NS        string           `xml:"xmlns,attr"`
		RequestID string           `xml:"requestId"`
		Requests  []ec2SpotRequest `xml:"spotInstanceRequestSet>item"`
	}{NS: ec2NS, RequestID: s.requestIDLocked(), Requests: out}, nil
}
