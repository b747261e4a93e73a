package cloudsim

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

const ecsVersion = "2014-05-26"

// ecsError is an ECS API error.
type ecsError struct {
	status        int
	code, message string
}

func ecsErr(status int, code, format string, args ...any) *ecsError {
	return &ecsError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

func (s *Simulator) writeECSError(w http.ResponseWriter, e *ecsError) {
	s.mu.Lock()
	rid := s.requestIDLocked()
	s.mu.Unlock()
	writeJSON(w, e.status, map[string]string{
		"RequestId": rid,
		"HostId":    "ecs." + s.cfg.Alicloud.Region + ".aliyuncs.com",
		"Code":      e.code,
		"Message":   e.message,
		"Recommend": "https://api.aliyun.com/troubleshoot?q=" + e.code,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.WriteHeader(status)
	w.Write(body)
}

type ecsHandler func(s *Simulator, req *apiRequest) (any, *ecsError)

var ecsActions = map[string]ecsHandler{
	"RunInstances":              (*Simulator).ecsRunInstances,
	"DescribeInstances":         (*Simulator).ecsDescribeInstances,
	"DeleteInstances":           (*Simulator).ecsDeleteInstances,
	"DescribeAvailableResource": (*Simulator).ecsDescribeAvailableResource,
	"DescribePrice":             (*Simulator).ecsDescribePrice,
}

func ecsActionClass(action string) string {
	switch action {
	case "RunInstances":
		return "launch"
	case "DeleteInstances":
		return "mutate"
	default:
		return "describe"
	}
}

// aliPercentEncode is the RPC signature's percent encoding of a form
// string, as the Alibaba SDKs compute it.
func aliPercentEncode(s string) string {
	s = strings.ReplaceAll(s, "+", "%20")
	s = strings.ReplaceAll(s, "*", "%2A")
	s = strings.ReplaceAll(s, "%7E", "~")
	return s
}

// verifyECSSignature checks an RPC request's HMAC-SHA1 signature.
func verifyECSSignature(method string, params url.Values, secret string) bool {
	sent := params.Get("Signature")
	signed := url.Values{}
	for k, v := range params {
		if k != "Signature" {
			signed[k] = v
		}
	}
	toSign := method + "&%2F&" + url.QueryEscape(aliPercentEncode(signed.Encode()))
	m := hmac.New(sha1.New, []byte(secret+"&"))
	m.Write([]byte(toSign))
	want := base64.StdEncoding.EncodeToString(m.Sum(nil))
	return hmac.Equal([]byte(want), []byte(sent))
}

func (s *Simulator) serveECS(w http.ResponseWriter, r *http.Request, body []byte) {
	params := r.URL.Query()
	if len(body) > 0 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			s.writeECSError(w, ecsErr(400, "InvalidParameter", "cannot parse form body: %v", err))
			return
		}
		for k, v := range form {
			params[k] = append(params[k], v...)
		}
	}
	req := &apiRequest{cloud: CloudAlicloud, action: params.Get("Action"), caller: callerOf(r), params: params, body: body}
	s.Step()

	acct, ok := s.account(CloudAlicloud, params.Get("AccessKeyId"))
	if !ok {
		s.writeECSError(w, ecsErr(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."))
		return
	}
	if params.Get("SignatureMethod") != "HMAC-SHA1" || !verifyECSSignature(r.Method, params, acct.SecretAccessKey) {
		s.writeECSError(w, ecsErr(400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation."))
		return
	}
	req.account = acct
	req.region = params.Get("RegionId")
	if req.region != s.cfg.Alicloud.Region {
		s.writeECSError(w, ecsErr(400, "InvalidRegionId.NotFound", "The specified RegionId %q does not exist.", req.region))
		return
	}
	handler, ok := ecsActions[req.action]
	if !ok {
		s.writeECSError(w, ecsErr(404, "InvalidAction.NotFound", "Specified api is not found, please check your url and method."))
		return
	}
	if v := params.Get("Version"); v != ecsVersion {
		s.writeECSError(w, ecsErr(400, "InvalidVersion", "Specified parameter Version %q is not valid; cloudsim speaks %s.", v, ecsVersion))
		return
	}
	fault, ok := s.admit(req, ecsActionClass(req.action), s.cfg.Alicloud.Throttle)
	if !ok || fault == FaultThrottle {
		s.writeECSError(w, ecsErr(400, "Throttling.User", "Request was denied due to user flow control."))
		return
	}
	if fault == FaultServerError {
		s.writeECSError(w, ecsErr(503, "ServiceUnavailable", "The request has failed due to a temporary failure of the server."))
		return
	}
	if ecsActionClass(req.action) == "launch" {
		s.sleepAPI(r.Context())
	}

	token := params.Get("ClientToken")
	tokenKey := CloudAlicloud + "/" + acct.ID + "/" + req.action + "/" + token
	if token != "" {
		s.mu.Lock()
		prev, seen := s.tokens[tokenKey]
		s.mu.Unlock()
		if seen {
			if prev.paramsHash != paramsHash(params) {
				s.writeECSError(w, ecsErr(400, "IdempotentParameterMismatch", "The specified parameter has changed while using an already used clientToken."))
				return
			}
			s.writeECSCommitted(w, fault, prev.body)
			return
		}
	}
	doc, apiErr := handler(s, req)
	if apiErr != nil {
		s.writeECSError(w, apiErr)
		return
	}
	out, err := json.Marshal(doc)
	if err != nil {
		s.writeECSError(w, ecsErr(500, "InternalError", "marshalling response: %v", err))
		return
	}
	if token != "" {
		s.mu.Lock()
		s.tokens[tokenKey] = idempotentResult{paramsHash: paramsHash(params), status: 200, body: out}
		s.mu.Unlock()
	}
	s.writeECSCommitted(w, fault, out)
}

func (s *Simulator) writeECSCommitted(w http.ResponseWriter, fault FaultKind, body []byte) {
	if fault == FaultServerErrorAfterCommit {
		s.writeECSError(w, ecsErr(500, "InternalError", "The request processing has failed due to some unknown error, exception or failure."))
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.WriteHeader(200)
	w.Write(body)
}

func ecsInt(p url.Values, name string, def int) (int, *ecsError) {
	v := p.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, ecsErr(400, "InvalidParameter", "The specified parameter %q is not valid.", name)
	}
	return n, nil
}

func ecsTags(p url.Values) map[string]string {
	tags := map[string]string{}
	for _, n := range listIndexes(p, "Tag") {
		if k := p.Get("Tag." + n + ".Key"); k != "" {
			tags[k] = p.Get("Tag." + n + ".Value")
		}
	}
	return tags
}

func ecsCapacityType(spotStrategy string) string {
	if spotStrategy == "SpotAsPriceGo" || spotStrategy == "SpotWithPriceLimit" {
		return Spot
	}
	return OnDemand
}

func (s *Simulator) ecsRunInstances(req *apiRequest) (any, *ecsError) {
	p := req.params
	amount, e := ecsInt(p, "Amount", 1)
	if e != nil {
		return nil, e
	}
	minAmount, e := ecsInt(p, "MinAmount", amount)
	if e != nil {
		return nil, e
	}
	if amount < 1 || amount > 100 {
		return nil, ecsErr(400, "InvalidParameter.Amount", "The specified parameter Amount must be between 1 and 100.")
	}
	if minAmount < 1 || minAmount > amount {
		return nil, ecsErr(400, "InvalidParameter.MinAmount", "The specified parameter MinAmount must be between 1 and Amount.")
	}
	spec := launchSpec{cloud: CloudAlicloud, account: req.account.ID, region: req.region,
		instanceType: p.Get("InstanceType"), imageID: p.Get("ImageId"), subnet: p.Get("VSwitchId"),
		token: p.Get("ClientToken"), tags: ecsTags(p), capacityType: ecsCapacityType(p.Get("SpotStrategy"))}
	if spec.instanceType == "" {
		return nil, ecsErr(400, "MissingParameter", "The input parameter InstanceType that is mandatory for processing this request is not supplied.")
	}
	if ud := p.Get("UserData"); ud != "" {
		dec, err := base64.StdEncoding.DecodeString(ud)
		if err != nil {
			return nil, ecsErr(400, "InvalidUserData.Base64FormatInvalid", "The specified UserData is not valid base64.")
		}
		spec.userData = dec
	}
	zone, ee := s.zoneOf(CloudAlicloud, p.Get("ZoneId"), spec.subnet)
	if ee != nil {
		return nil, ecsErr(404, "InvalidVSwitchId.NotFound", "%s", ee.message)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if zone == "" {
		zone = s.defaultZoneLocked(CloudAlicloud, spec.instanceType, spec.capacityType)
	}
	spec.zone = zone
	avail, exists := s.availableLocked(CloudAlicloud, zone, spec.instanceType, spec.capacityType, amount)
	if !exists {
		return nil, ecsErr(403, "InvalidInstanceType.NotSupported", "The specified InstanceType %s is not supported in zone %s.", spec.instanceType, zone)
	}
	if avail < minAmount {
		return nil, ecsErr(403, "OperationDenied.NoStock",
			"The requested resource is sold out in the specified zone; try other types of resources or other regions and zones.")
	}
	if q := s.cfg.Alicloud.Quota.Instances; q > 0 {
		left := q - s.liveCountLocked(CloudAlicloud, req.account.ID)
		if left < minAmount {
			return nil, ecsErr(403, "QuotaExceed.ElasticQuota", "The number of instances exceeds the quota of %d.", q)
		}
		avail = min(avail, left)
	}
	if !s.cfg.Alicloud.Throttle.Disabled && !s.allowLocked(CloudAlicloud+"/"+req.account.ID+"/instances", s.cfg.Alicloud.Throttle.Instances, float64(avail)) {
		return nil, ecsErr(400, "Throttling.Resource", "The request throttled due to resource rate limit.")
	}
	launched := s.launchLocked(spec, avail)
	ids := make([]string, 0, len(launched))
	for _, in := range launched {
		ids = append(ids, in.ID)
	}
	price := s.offerings[offeringKey(CloudAlicloud, zone, spec.instanceType, spec.capacityType)].Price
	return map[string]any{
		"RequestId":      s.requestIDLocked(),
		"OrderId":        strconv.Itoa(200000000 + s.seq),
		"TradePrice":     price * float64(len(ids)),
		"InstanceIdSets": map[string]any{"InstanceIdSet": ids},
	}, nil
}

type ecsTag struct {
	TagKey   string `json:"TagKey"`
	TagValue string `json:"TagValue"`
}

type ecsInstance struct {
	InstanceID         string `json:"InstanceId"`
	InstanceName       string `json:"InstanceName"`
	HostName           string `json:"HostName"`
	RegionID           string `json:"RegionId"`
	ZoneID             string `json:"ZoneId"`
	InstanceType       string `json:"InstanceType"`
	ImageID            string `json:"ImageId"`
	Status             string `json:"Status"`
	CreationTime       string `json:"CreationTime"`
	StartTime          string `json:"StartTime"`
	InstanceChargeType string `json:"InstanceChargeType"`
	SpotStrategy       string `json:"SpotStrategy"`
	VpcAttributes      struct {
		VSwitchID        string `json:"VSwitchId"`
		PrivateIPAddress struct {
			IPAddress []string `json:"IpAddress"`
		} `json:"PrivateIpAddress"`
	} `json:"VpcAttributes"`
	Tags struct {
		Tag []ecsTag `json:"Tag"`
	} `json:"Tags"`
	OperationLocks struct {
		LockReason []ecsLock `json:"LockReason"`
	} `json:"OperationLocks"`
}

// ecsLock is one of an instance's OperationLocks: "Recycling" once a spot
// instance got its interruption notice.
type ecsLock struct {
	LockReason string `json:"LockReason"`
	LockMsg    string `json:"LockMsg,omitempty"`
}

func ecsTime(in *Instance) string { return in.LaunchTime.UTC().Format("2006-01-02T15:04Z") }

func (in *Instance) ecs() ecsInstance {
	out := ecsInstance{
		InstanceID:         in.ID,
		InstanceName:       in.ID,
		HostName:           in.ID,
		RegionID:           in.Region,
		ZoneID:             in.Zone,
		InstanceType:       in.InstanceType,
		ImageID:            in.ImageID,
		Status:             in.State,
		CreationTime:       ecsTime(in),
		StartTime:          ecsTime(in),
		InstanceChargeType: "PostPaid",
		SpotStrategy:       "NoSpot",
	}
	if in.CapacityType == Spot {
		out.SpotStrategy = "SpotAsPriceGo"
	}
	out.OperationLocks.LockReason = []ecsLock{}
	if !in.InterruptAt.IsZero() {
		out.OperationLocks.LockReason = append(out.OperationLocks.LockReason, ecsLock{LockReason: "Recycling", LockMsg: "The preemptible instance is about to be released."})
	}
	out.VpcAttributes.VSwitchID = in.Subnet
	out.VpcAttributes.PrivateIPAddress.IPAddress = []string{in.PrivateIP}
	keys := make([]string, 0, len(in.Tags))
	for k := range in.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out.Tags.Tag = []ecsTag{}
	for _, k := range keys {
		out.Tags.Tag = append(out.Tags.Tag, ecsTag{TagKey: k, TagValue: in.Tags[k]})
	}
	return out
}

func (s *Simulator) ecsDescribeInstances(req *apiRequest) (any, *ecsError) {
	p := req.params
	var ids []string
	if raw := p.Get("InstanceIds"); raw != "" {
		if err := json.Unmarshal([]byte(raw), &ids); err != nil {
			return nil, ecsErr(400, "InvalidParameter.InstanceIds", "The specified parameter InstanceIds is not a JSON array.")
		}
	}
	tags := ecsTags(p)
	status, zone, itype := p.Get("Status"), p.Get("ZoneId"), p.Get("InstanceType")
	tokenMode := p.Get("NextToken") != "" || p.Get("MaxResults") != ""
	pageSize, e := ecsInt(p, "PageSize", 10)
	if e != nil {
		return nil, e
	}
	if tokenMode {
		if pageSize, e = ecsInt(p, "MaxResults", 10); e != nil {
			return nil, e
		}
	}
	if pageSize < 1 || pageSize > 100 {
		return nil, ecsErr(400, "InvalidParameter.PageSize", "The page size must be between 1 and 100.")
	}
	pageNumber, e := ecsInt(p, "PageNumber", 1)
	if e != nil {
		return nil, e
	}
	start := (max(pageNumber, 1) - 1) * pageSize
	if tokenMode {
		n, ee := decodeNextToken(p.Get("NextToken"))
		if ee != nil {
			return nil, ecsErr(400, "InvalidParameter.NextToken", "The specified NextToken is not valid.")
		}
		start = n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var matched []*Instance
	for _, id := range s.sortedIDsLocked() {
		in := s.instances[id]
		if in.Cloud != CloudAlicloud || in.Account != req.account.ID || !s.visibleLocked(in) {
			continue
		}
		if len(ids) > 0 && !matchAny(in.ID, ids) || status != "" && in.State != status || zone != "" && in.Zone != zone || itype != "" && in.InstanceType != itype {
			continue
		}
		ok := true
		for k, v := range tags {
			if got, has := in.Tags[k]; !has || v != "" && got != v {
				ok = false
			}
		}
		if ok {
			matched = append(matched, in)
		}
	}
	res := map[string]any{
		"RequestId":  s.requestIDLocked(),
		"TotalCount": len(matched),
		"PageSize":   pageSize,
		"PageNumber": max(pageNumber, 1),
	}
	start = min(start, len(matched))
	page := matched[start:]
	if len(page) > pageSize {
		page = page[:pageSize]
		if tokenMode {
			res["NextToken"] = encodeNextToken(start + pageSize)
		}
	}
	list := make([]ecsInstance, 0, len(page))
	for _, in := range page {
		list = append(list, in.ecs())
	}
	res["Instances"] = map[string]any{"Instance": list}
	return res, nil
}

func (s *Simulator) ecsDeleteInstances(req *apiRequest) (any, *ecsError) {
	ids := listValues(req.params, "InstanceId")
	if len(ids) == 0 {
		return nil, ecsErr(400, "MissingParameter", "The input parameter InstanceId that is mandatory for processing this request is not supplied.")
	}
	force := req.params.Get("Force") == "true"
	s.mu.Lock()
	for _, id := range ids {
		in, ok := s.instances[id]
		if !ok || in.Cloud != CloudAlicloud || in.Account != req.account.ID || !s.visibleLocked(in) {
			s.mu.Unlock()
			return nil, ecsErr(404, "InvalidInstanceId.NotFound", "The specified InstanceId does not exist.")
		}
		if in.State != ecsStopped && !force {
			s.mu.Unlock()
			return nil, ecsErr(403, "IncorrectInstanceStatus", "The current status of the resource does not support this operation.")
		}
	}
	var evs []InstanceEvent
	for _, id := range ids {
		evs = append(evs, s.terminateLocked(s.instances[id], "User initiated"))
	}
	rid := s.requestIDLocked()
	s.mu.Unlock()
	s.runHooks(s.terminateHook, evs)
	return map[string]any{"RequestId": rid}, nil
}

func (s *Simulator) ecsDescribeAvailableResource(req *apiRequest) (any, *ecsError) {
	p := req.params
	if d := p.Get("DestinationResource"); d != "InstanceType" && d != "Zone" {
		return nil, ecsErr(400, "Invalid.DestinationResource", "cloudsim supports DestinationResource InstanceType or Zone, not %q.", d)
	}
	capType := ecsCapacityType(p.Get("SpotStrategy"))
	zone, itype := p.Get("ZoneId"), p.Get("InstanceType")
	s.mu.Lock()
	defer s.mu.Unlock()
	type supported struct {
		Value          string `json:"Value"`
		Status         string `json:"Status"`
		StatusCategory string `json:"StatusCategory"`
	}
	byZone := map[string][]supported{}
	for key, o := range s.offerings {
		if !strings.HasPrefix(key, CloudAlicloud+"/") || o.CapacityType != capType {
			continue
		}
		if zone != "" && o.Zone != zone || itype != "" && o.InstanceType != itype {
			continue
		}
		st := supported{Value: o.InstanceType, Status: "Available", StatusCategory: "WithStock"}
		if c := s.capacity[key]; c != nil && *c <= 0 {
			st.Status, st.StatusCategory = "SoldOut", "WithoutStock"
		}
		byZone[o.Zone] = append(byZone[o.Zone], st)
	}
	zones := make([]string, 0, len(byZone))
	for z := range byZone {
		zones = append(zones, z)
	}
	sort.Strings(zones)
	var out []map[string]any
	for _, z := range zones {
		res := byZone[z]
		sort.Slice(res, func(i, j int) bool { return res[i].Value < res[j].Value })
		out = append(out, map[string]any{
			"RegionId": req.region, "ZoneId": z, "Status": "Available", "StatusCategory": "WithStock",
			"AvailableResources": map[string]any{"AvailableResource": []map[string]any{{
				"Type": "InstanceType", "SupportedResources": map[string]any{"SupportedResource": res},
			}}},
		})
	}
	return map[string]any{
		"RequestId":      s.requestIDLocked(),
		"AvailableZones": map[string]any{"AvailableZone": out},
	}, nil
}

func (s *Simulator) ecsDescribePrice(req *apiRequest) (any, *ecsError) {
	p := req.params
	if rt := p.Get("ResourceType"); rt != "" && rt != "instance" {
		return nil, ecsErr(400, "InvalidResourceType.NotSupported", "cloudsim prices ResourceType instance only.")
	}
	capType := ecsCapacityType(p.Get("SpotStrategy"))
	itype, zone := p.Get("InstanceType"), p.Get("ZoneId")
	s.mu.Lock()
	defer s.mu.Unlock()
	if zone == "" {
		zone = s.defaultZoneLocked(CloudAlicloud, itype, capType)
	}
	o, ok := s.offerings[offeringKey(CloudAlicloud, zone, itype, capType)]
	if !ok {
		return nil, ecsErr(400, "InvalidInstanceType.ValueNotSupported", "The specified InstanceType %s does not exist in zone %s.", itype, zone)
	}
	return map[string]any{
		"RequestId": s.requestIDLocked(),
		"PriceInfo": map[string]any{"Price": map[string]any{
			"OriginalPrice": o.Price, "TradePrice": o.Price, "DiscountPrice": 0, "Currency": "USD",
		}},
	}, nil
}
