// Package aws owns the EC2 implementation of providers.Provider, on
// aws-sdk-go-v2. It launches with CreateFleet type instant (or RunInstances
// where the pool says so), reads partial fulfilment from CreateFleet's
// errorSet, finds Spillway's instances through ownership tags, and builds the
// catalog from DescribeInstanceTypeOfferings and DescribeSpotPriceHistory. Its
// retryer backs off on RequestLimitExceeded but never retries
// InsufficientInstanceCapacity, so the planner can fall back at once.
package aws

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"reflect"
	"slices"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"github.com/jonboulle/clockwork"

	"github.com/spillwayhq/spillway/providers"
)

// Name is the provider name.
const Name = "aws"

// Options configure a Provider.
type Options struct {
	// Cluster is the Spillway cluster name written to providers.TagCluster.
	Cluster string
	// Region is the EC2 region.
	Region string
	// Endpoint overrides the EC2 endpoint, e.g. the cloud simulator's URL.
	Endpoint string
	// Credentials, when nil, come from the standard chain (environment,
	// shared config, SSO, IMDS…).
	Credentials aws.CredentialsProvider
	// MaxAttempts per API call, first try included. Default 5.
	MaxAttempts int
	// BaseBackoff and MaxBackoff bound the full-jitter exponential backoff
	// between retries. Defaults 200ms and 20s.
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	// PageSize is DescribeInstances' MaxResults. Default 1000.
	PageSize int32
	// HTTPClient, when nil, is a buildable client (works with AWS_CA_BUNDLE).
	HTTPClient aws.HTTPClient
	// RequestGuard, when set, runs before every HTTP request is sent, each
	// retry included (providers.GuardClient); its error fails the request
	// unsent, and it is not retried.
	RequestGuard func(context.Context) error
	// ConsistencyWindow is how long after a launch Delete takes EC2's
	// "not found" for "not visible yet" and asks again (default
	// providers.DefaultConsistencyWindow).
	ConsistencyWindow time.Duration
	// AppID names the caller in every request's User-Agent ("app/<AppID>"),
	// so CloudTrail (and the simulator) can tell the replicas apart. It is
	// cut to the SDK's 50 characters of letters, digits and "-._".
	AppID string
	// Clock stamps the launches, measures the consistency window and dates
	// a spot notice EC2 gives no time for (default: the real clock). A clock
	// that is not the real one also times the retries' backoff, which the
	// request's context then cannot cut short; on the real clock the SDK
	// sleeps it and a cancelled context ends it.
	Clock clockwork.Clock
	// Jitter draws a backoff's random part, in [0, n) (default: math/rand/v2,
	// seeded at random). A simulation gives a seeded source, so the same
	// seed backs off the same.
	Jitter func(n int64) int64
}

// Provider is the EC2 providers.Provider.
type Provider struct {
	ec2     *ec2.Client
	cluster string
	page    int32
	window  time.Duration
	clock   clockwork.Clock
}

var _ providers.Provider = (*Provider)(nil)

// New returns a Provider. It loads the standard AWS configuration but does
// not call AWS.
func New(ctx context.Context, opts Options) (*Provider, error) {
	if opts.Cluster == "" {
		return nil, errors.New("creating aws provider: cluster name is required")
	}
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = 5
	}
	if opts.BaseBackoff == 0 {
		opts.BaseBackoff = 200 * time.Millisecond
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = 20 * time.Second
	}
	if opts.PageSize == 0 {
		opts.PageSize = 1000
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = awshttp.NewBuildableClient()
	}
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	loadOpts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(opts.HTTPClient),
		config.WithRetryer(func() aws.Retryer {
			r := newRetryer(opts.MaxAttempts, opts.BaseBackoff, opts.MaxBackoff, opts.Jitter)
			if isRealClock(opts.Clock) {
				// The SDK sleeps the backoff itself, and a cancelled
				// request context ends that sleep at once.
				return r
			}
			return clockRetryer{r.(aws.RetryerV2), opts.Clock}
		}),
	}
	if opts.Region != "" {
		loadOpts = append(loadOpts, config.WithRegion(opts.Region))
	}
	if opts.Credentials != nil {
		loadOpts = append(loadOpts, config.WithCredentialsProvider(opts.Credentials))
	}
	if id := providers.AppID(opts.AppID); id != "" {
		loadOpts = append(loadOpts, config.WithAppID(id))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("loading aws configuration: %w", err)
	}
	client := ec2.NewFromConfig(cfg, func(o *ec2.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		// Here, once the client has applied AWS_CA_BUNDLE and its defaults
		// mode's timeouts, which need the buildable client itself.
		o.HTTPClient = providers.GuardClient(o.HTTPClient, opts.RequestGuard)
	})
	return &Provider{ec2: client, cluster: opts.Cluster, page: opts.PageSize, window: opts.ConsistencyWindow, clock: opts.Clock}, nil
}

// Error codes the retryer must never retry and the provider maps to types.
var (
	capacityCodes = []string{"InsufficientInstanceCapacity", "InsufficientHostCapacity",
		"InsufficientReservedInstanceCapacity", "InsufficientCapacity", "Unsupported", "SpotMaxPriceTooLow"}
	quotaCodes = []string{"InstanceLimitExceeded", "VcpuLimitExceeded", "MaxSpotInstanceCountExceeded",
		"InsufficientFreeAddressesInSubnet", "SpotInstanceRequestLimitExceeded"}
	authCodes = []string{"AuthFailure", "SignatureDoesNotMatch", "UnauthorizedOperation", "InvalidClientTokenId",
		"MissingAuthenticationToken", "IncompleteSignature", "OptInRequired", "Blocked"}
	throttleCodes = []string{"RequestLimitExceeded", "Throttling", "ThrottlingException"}
)

// isRealClock reports whether c is clockwork's real clock, whose backoff
// the SDK can sleep itself.
func isRealClock(c clockwork.Clock) bool {
	return reflect.TypeOf(c) == reflect.TypeOf(clockwork.NewRealClock())
}

// clockRetryer waits a retry's backoff on a clock that is not the real one
// and has the SDK wait nothing more, so a simulation on a fake clock
// (internal/scalesim) pays the backoff in simulated time, as the alicloud
// provider's retries do. The wait is not cut short by the request's
// context (the SDK gives the retryer none); it is at most MaxBackoff of the
// fake clock's time. On the real clock the provider keeps the SDK's own
// sleep, which a cancelled context ends.
type clockRetryer struct {
	aws.RetryerV2
	clock clockwork.Clock
}

// RetryDelay implements aws.Retryer.
func (r clockRetryer) RetryDelay(attempt int, err error) (time.Duration, error) {
	d, err := r.RetryerV2.RetryDelay(attempt, err)
	if err != nil || d <= 0 {
		return d, err
	}
	r.clock.Sleep(d)
	return 0, nil
}

// NewRetryer returns the EC2 retryer: the SDK's standard retryer with
// full-jitter exponential backoff from base to maxBackoff, no client-side
// retry quota, retries on RequestLimitExceeded and 5xx, and never a retry of
// insufficient capacity, quota or credential errors, which EC2 reports as
// 500s or 4xx and which the planner must see at once.
func NewRetryer(maxAttempts int, base, maxBackoff time.Duration) aws.Retryer {
	return newRetryer(maxAttempts, base, maxBackoff, nil)
}

func newRetryer(maxAttempts int, base, maxBackoff time.Duration, jitter func(n int64) int64) aws.Retryer {
	if jitter == nil {
		jitter = rand.Int64N
	}
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = maxAttempts
		o.MaxBackoff = maxBackoff
		o.RateLimiter = ratelimit.None
		o.Backoff = retry.BackoffDelayerFunc(func(attempt int, _ error) (time.Duration, error) {
			d := base << min(attempt, 20)
			if d <= 0 || d > maxBackoff {
				d = maxBackoff
			}
			return d/2 + time.Duration(jitter(int64(d/2)+1)), nil
		})
		o.Retryables = append([]retry.IsErrorRetryable{retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
			var refused *providers.RefusedRequest
			if errors.As(err, &refused) { // never sent: never resent
				return aws.FalseTernary
			}
			var ae smithy.APIError
			if errors.As(err, &ae) {
				code := ae.ErrorCode()
				if slices.Contains(capacityCodes, code) || slices.Contains(quotaCodes, code) || slices.Contains(authCodes, code) {
					return aws.FalseTernary
				}
			}
			return aws.UnknownTernary
		})}, o.Retryables...)
	})
}

// throttleRetryAfter is the retry-after hint of a Throttled error: the
// cloud's request buckets refill within about a second.
const throttleRetryAfter = time.Second

// mapError turns an SDK error into a typed providers error where one fits.
// Insufficient capacity is left to the caller, which knows the offering.
func mapError(err error) error {
	if err == nil {
		return nil
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code := ae.ErrorCode()
		switch {
		case slices.Contains(quotaCodes, code):
			return providers.NewQuotaError(err)
		case slices.Contains(throttleCodes, code):
			return providers.NewThrottledError(err, throttleRetryAfter)
		case slices.Contains(authCodes, code):
			return providers.NewAuthError(err)
		case ae.ErrorFault() == smithy.FaultServer || code == "InternalError" || code == "Unavailable" || code == "ServiceUnavailable":
			return providers.NewUnavailableError(err)
		}
		return err
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() >= 500 {
		return providers.NewUnavailableError(err)
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return providers.NewUnavailableError(err)
	}
	return err
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// Name implements providers.Provider.
func (p *Provider) Name() string { return Name }

// Create implements providers.Provider.
func (p *Provider) Create(ctx context.Context, claim providers.Claim) ([]providers.Host, error) {
	hosts, err := p.describe(ctx, []types.Filter{
		tagFilter(providers.TagCluster, p.cluster),
		tagFilter(providers.TagClaim, claim.ID),
		liveFilter(),
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("listing hosts of claim %s: %w", claim.ID, err)
	}
	if len(hosts) >= claim.Count {
		return hosts, nil
	}
	offerings := claim.EffectiveOfferings()
	if len(offerings) == 0 {
		return hosts, fmt.Errorf("creating hosts for claim %s: pool %s has no offerings", claim.ID, claim.Pool.Name)
	}
	tags := providers.OwnershipTags(p.cluster, claim)
	var exhausted []providers.Offering
	var lastCapacityErr error
	launch := p.createFleet
	if claim.Pool.Strategy == providers.LaunchRunInstances {
		launch = p.runInstances
	}
	for _, group := range groupByCapacityType(offerings, claim.Pool.Strategy) {
		need := claim.Count - len(hosts)
		if need <= 0 {
			break
		}
		got, ice, err := launch(ctx, claim, group, need, len(hosts), tags)
		hosts = append(hosts, got...)
		exhausted = append(exhausted, ice...)
		if err != nil && len(ice) == 0 {
			return hosts, fmt.Errorf("creating hosts for claim %s in pool %s: %w", claim.ID, claim.Pool.Name, err)
		}
		if err != nil {
			lastCapacityErr = err
		}
	}
	if len(hosts) < claim.Count {
		if lastCapacityErr == nil {
			lastCapacityErr = errors.New("InsufficientInstanceCapacity")
		}
		return hosts, fmt.Errorf("creating hosts for claim %s in pool %s: got %d of %d: %w", claim.ID, claim.Pool.Name,
			len(hosts), claim.Count, providers.NewInsufficientCapacityError(lastCapacityErr, exhausted...))
	}
	return hosts, nil
}

// groupByCapacityType splits offerings into launch groups. A fleet launches
// one capacity type per request, so fleets get one group per capacity type
// in order of first appearance; RunInstances gets one group per offering.
func groupByCapacityType(offerings []providers.Offering, strategy providers.LaunchStrategy) [][]providers.Offering {
	var groups [][]providers.Offering
	if strategy == providers.LaunchRunInstances {
		for _, o := range offerings {
			groups = append(groups, []providers.Offering{o})
		}
		return groups
	}
	index := map[providers.CapacityType]int{}
	for _, o := range offerings {
		ct := capacityType(o)
		i, ok := index[ct]
		if !ok {
			i = len(groups)
			index[ct] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], o)
	}
	return groups
}

func capacityType(o providers.Offering) providers.CapacityType {
	if o.CapacityType == "" {
		return providers.CapacityOnDemand
	}
	return o.CapacityType
}

func ec2Tags(tags map[string]string) []types.TagSpecification {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	spec := types.TagSpecification{ResourceType: types.ResourceTypeInstance}
	for _, k := range keys {
		spec.Tags = append(spec.Tags, types.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
	}
	return []types.TagSpecification{spec}
}

func newHost(id string, o providers.Offering, claim providers.Claim, tags map[string]string, now time.Time) providers.Host {
	return providers.Host{
		ID:         id,
		Provider:   Name,
		Pool:       claim.Pool.Name,
		Claim:      claim.ID,
		Offering:   providers.Offering{InstanceType: o.InstanceType, Zone: o.Zone, Subnet: o.Subnet, CapacityType: capacityType(o)},
		State:      providers.HostPending,
		LaunchedAt: now,
		Tags:       tags,
	}
}

// runInstances launches on one offering with RunInstances. A partial
// launch goes round again for the rest, so the next answer
// (InsufficientInstanceCapacity, a quota error) says why it was partial.
func (p *Provider) runInstances(ctx context.Context, claim providers.Claim, group []providers.Offering, need, have int, tags map[string]string) ([]providers.Host, []providers.Offering, error) {
	o := group[0]
	var hosts []providers.Host
	for len(hosts) < need {
		got, err := p.runInstancesOnce(ctx, claim, o, need-len(hosts), have+len(hosts), tags)
		hosts = append(hosts, got...)
		if slices.Contains(capacityCodes, apiCode(err)) {
			return hosts, []providers.Offering{o}, err
		}
		if err != nil {
			return hosts, nil, mapError(err)
		}
		if len(got) == 0 {
			return hosts, []providers.Offering{o}, fmt.Errorf("RunInstances launched none on %s", o.Key())
		}
	}
	return hosts, nil, nil
}

func (p *Provider) runInstancesOnce(ctx context.Context, claim providers.Claim, o providers.Offering, need, have int, tags map[string]string) ([]providers.Host, error) {
	in := &ec2.RunInstancesInput{
		MinCount:          aws.Int32(1),
		MaxCount:          aws.Int32(int32(need)),
		ClientToken:       aws.String(providers.ClientToken(claim.ID, have, o)),
		InstanceType:      types.InstanceType(o.InstanceType),
		TagSpecifications: ec2Tags(tags),
	}
	if claim.Pool.ImageID != "" {
		in.ImageId = aws.String(claim.Pool.ImageID)
	}
	if claim.Pool.LaunchTemplate != "" {
		in.LaunchTemplate = launchTemplate(claim.Pool.LaunchTemplate)
	}
	if len(claim.Pool.UserData) > 0 {
		in.UserData = aws.String(base64.StdEncoding.EncodeToString(claim.Pool.UserData))
	}
	if o.Subnet != "" {
		in.SubnetId = aws.String(o.Subnet)
	} else if o.Zone != "" {
		in.Placement = &types.Placement{AvailabilityZone: aws.String(o.Zone)}
	}
	if capacityType(o) == providers.CapacitySpot {
		in.InstanceMarketOptions = &types.InstanceMarketOptionsRequest{MarketType: types.MarketTypeSpot}
	}
	out, err := p.ec2.RunInstances(ctx, in)
	if err != nil {
		return nil, err
	}
	hosts := make([]providers.Host, 0, len(out.Instances))
	for _, inst := range out.Instances {
		h := newHost(aws.ToString(inst.InstanceId), o, claim, tags, p.clock.Now())
		h.PrivateIP = aws.ToString(inst.PrivateIpAddress)
		if inst.LaunchTime != nil {
			h.LaunchedAt = *inst.LaunchTime
		}
		hosts = append(hosts, h)
	}
	return hosts, nil
}

func launchTemplate(ref string) *types.LaunchTemplateSpecification {
	if len(ref) > 3 && ref[:3] == "lt-" {
		return &types.LaunchTemplateSpecification{LaunchTemplateId: aws.String(ref)}
	}
	return &types.LaunchTemplateSpecification{LaunchTemplateName: aws.String(ref)}
}

// createFleet launches on a group of offerings of one capacity type with
// CreateFleet type instant. Partial fulfilment is read from the errorSet.
func (p *Provider) createFleet(ctx context.Context, claim providers.Claim, group []providers.Offering, need, have int, tags map[string]string) ([]providers.Host, []providers.Offering, error) {
	if claim.Pool.LaunchTemplate == "" {
		return nil, nil, fmt.Errorf("pool %s has no launch template for CreateFleet", claim.Pool.Name)
	}
	ct := capacityType(group[0])
	lt := launchTemplate(claim.Pool.LaunchTemplate)
	cfg := types.FleetLaunchTemplateConfigRequest{
		LaunchTemplateSpecification: &types.FleetLaunchTemplateSpecificationRequest{
			LaunchTemplateId: lt.LaunchTemplateId, LaunchTemplateName: lt.LaunchTemplateName, Version: aws.String("$Default"),
		},
	}
	for i, o := range group {
		ov := types.FleetLaunchTemplateOverridesRequest{
			InstanceType: types.InstanceType(o.InstanceType),
			Priority:     aws.Float64(float64(i)),
		}
		if o.Subnet != "" {
			ov.SubnetId = aws.String(o.Subnet)
		} else {
			ov.AvailabilityZone = aws.String(o.Zone)
		}
		if claim.Pool.ImageID != "" {
			ov.ImageId = aws.String(claim.Pool.ImageID)
		}
		cfg.Overrides = append(cfg.Overrides, ov)
	}
	in := &ec2.CreateFleetInput{
		Type:                  types.FleetTypeInstant,
		ClientToken:           aws.String(providers.ClientToken(claim.ID, have, group...)),
		LaunchTemplateConfigs: []types.FleetLaunchTemplateConfigRequest{cfg},
		TargetCapacitySpecification: &types.TargetCapacitySpecificationRequest{
			TotalTargetCapacity:       aws.Int32(int32(need)),
			DefaultTargetCapacityType: types.DefaultTargetCapacityType(ct),
		},
		TagSpecifications: ec2Tags(tags),
	}
	if ct == providers.CapacitySpot {
		in.SpotOptions = &types.SpotOptionsRequest{AllocationStrategy: types.SpotAllocationStrategyPriceCapacityOptimized}
	} else {
		in.OnDemandOptions = &types.OnDemandOptionsRequest{AllocationStrategy: types.FleetOnDemandAllocationStrategyPrioritized}
	}
	out, err := p.ec2.CreateFleet(ctx, in)
	if err != nil {
		if slices.Contains(capacityCodes, apiCode(err)) {
			return nil, group, err
		}
		return nil, nil, mapError(err)
	}
	find := func(lto *types.LaunchTemplateAndOverridesResponse) providers.Offering {
		if lto == nil || lto.Overrides == nil {
			return group[0]
		}
		typ, zone, subnet := string(lto.Overrides.InstanceType), aws.ToString(lto.Overrides.AvailabilityZone), aws.ToString(lto.Overrides.SubnetId)
		for _, o := range group {
			if o.InstanceType == typ && (subnet != "" && o.Subnet == subnet || o.Zone == zone) {
				return o
			}
		}
		return providers.Offering{InstanceType: typ, Zone: zone, Subnet: subnet, CapacityType: ct}
	}
	var hosts []providers.Host
	for _, fi := range out.Instances {
		o := find(fi.LaunchTemplateAndOverrides)
		for _, id := range fi.InstanceIds {
			hosts = append(hosts, newHost(id, o, claim, tags, p.clock.Now()))
		}
	}
	var exhausted []providers.Offering
	var quotaErr, capErr error
	for _, fe := range out.Errors {
		code, msg := aws.ToString(fe.ErrorCode), aws.ToString(fe.ErrorMessage)
		switch {
		case slices.Contains(capacityCodes, code):
			o := find(fe.LaunchTemplateAndOverrides)
			if !slices.ContainsFunc(exhausted, func(x providers.Offering) bool { return x.Key() == o.Key() }) {
				exhausted = append(exhausted, o)
			}
			capErr = fmt.Errorf("CreateFleet: %s: %s", code, msg)
		case slices.Contains(quotaCodes, code):
			quotaErr = providers.NewQuotaError(fmt.Errorf("CreateFleet: %s: %s", code, msg))
		}
	}
	if len(hosts) >= need {
		return hosts, nil, nil
	}
	if quotaErr != nil && len(exhausted) == 0 {
		return hosts, nil, quotaErr
	}
	if capErr == nil {
		capErr = fmt.Errorf("CreateFleet launched %d of %d", len(hosts), need)
		exhausted = group
	}
	return hosts, exhausted, capErr
}

func tagFilter(key, value string) types.Filter {
	return types.Filter{Name: aws.String("tag:" + key), Values: []string{value}}
}

func liveFilter() types.Filter {
	return types.Filter{Name: aws.String("instance-state-name"), Values: []string{"pending", "running", "stopping", "stopped"}}
}

// describe pages through DescribeInstances.
func (p *Provider) describe(ctx context.Context, filters []types.Filter, ids []string) ([]providers.Host, error) {
	in := &ec2.DescribeInstancesInput{Filters: filters, InstanceIds: ids}
	if len(ids) == 0 {
		in.MaxResults = aws.Int32(p.page)
	}
	var hosts []providers.Host
	pages := ec2.NewDescribeInstancesPaginator(p.ec2, in)
	for pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return nil, mapError(err)
		}
		for _, r := range out.Reservations {
			for _, inst := range r.Instances {
				hosts = append(hosts, toHost(inst))
			}
		}
	}
	return hosts, nil
}

func toHost(inst types.Instance) providers.Host {
	tags := map[string]string{}
	for _, t := range inst.Tags {
		tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	h := providers.Host{
		ID:        aws.ToString(inst.InstanceId),
		Provider:  Name,
		Pool:      tags[providers.TagPool],
		Claim:     tags[providers.TagClaim],
		PrivateIP: aws.ToString(inst.PrivateIpAddress),
		Tags:      tags,
		Offering: providers.Offering{
			InstanceType: string(inst.InstanceType),
			Subnet:       aws.ToString(inst.SubnetId),
			CapacityType: providers.CapacityOnDemand,
		},
	}
	if inst.Placement != nil {
		h.Offering.Zone = aws.ToString(inst.Placement.AvailabilityZone)
	}
	if inst.InstanceLifecycle == types.InstanceLifecycleTypeSpot {
		h.Offering.CapacityType = providers.CapacitySpot
	}
	if inst.LaunchTime != nil {
		h.LaunchedAt = *inst.LaunchTime
	}
	if inst.State != nil {
		switch inst.State.Name {
		case types.InstanceStateNamePending:
			h.State = providers.HostPending
		case types.InstanceStateNameRunning:
			h.State = providers.HostRunning
		case types.InstanceStateNameStopping:
			h.State = providers.HostStopping
		case types.InstanceStateNameStopped:
			h.State = providers.HostStopped
		default:
			h.State = providers.HostTerminated
		}
	}
	return h
}

// Get implements providers.Provider.
func (p *Provider) Get(ctx context.Context, id string) (providers.Host, error) {
	hosts, err := p.describe(ctx, nil, []string{id})
	if apiCode(err) == "InvalidInstanceID.NotFound" || apiCode(err) == "InvalidInstanceID.Malformed" {
		return providers.Host{}, providers.NewNotFoundError(id, err)
	}
	if err != nil {
		return providers.Host{}, fmt.Errorf("getting host %s: %w", id, err)
	}
	for _, h := range hosts {
		if h.ID == id && h.Tags[providers.TagCluster] == p.cluster && h.State != providers.HostTerminated {
			return h, nil
		}
	}
	return providers.Host{}, providers.NewNotFoundError(id, nil)
}

// Delete implements providers.Provider. It terminates only instances owned
// by this cluster. EC2 is eventually consistent: for an instance launched
// moments ago (host.LaunchedAt within the consistency window, or unknown),
// "not found" is asked again until the window has passed, never taken as
// proof that the instance is gone.
func (p *Provider) Delete(ctx context.Context, host providers.Host) error {
	if _, err := providers.Visible(ctx, p.clock, host, p.window, p.Get); err != nil {
		return fmt.Errorf("deleting host %s: %w", host.ID, err)
	}
	out, err := p.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{host.ID}})
	if apiCode(err) == "InvalidInstanceID.NotFound" {
		return providers.NewNotFoundError(host.ID, err)
	}
	if err != nil {
		return fmt.Errorf("terminating host %s: %w", host.ID, mapError(err))
	}
	for _, c := range out.TerminatingInstances {
		if c.PreviousState != nil && c.PreviousState.Name == types.InstanceStateNameTerminated {
			return providers.NewNotFoundError(host.ID, nil)
		}
	}
	return nil
}

// List implements providers.Provider.
func (p *Provider) List(ctx context.Context, pool string) ([]providers.Host, error) {
	hosts, err := p.describe(ctx, []types.Filter{
		tagFilter(providers.TagCluster, p.cluster),
		tagFilter(providers.TagPool, pool),
		liveFilter(),
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("listing hosts of pool %s: %w", pool, err)
	}
	if err := p.notices(ctx, hosts); err != nil {
		return nil, fmt.Errorf("listing hosts of pool %s: %w", pool, err)
	}
	return hosts, nil
}

// noticeBatch bounds the instance IDs of one DescribeSpotInstanceRequests
// filter.
const noticeBatch = 100

// notices sets InterruptAt on the spot hosts that got an interruption
// notice: EC2 marks their spot requests marked-for-termination, and
// reclaims them providers.SpotNotice after the status changed. A failed
// read fails the listing: a notice nobody saw is not "no notice".
func (p *Provider) notices(ctx context.Context, hosts []providers.Host) error {
	var spot []string
	at := map[string]int{}
	for i, h := range hosts {
		if h.Offering.CapacityType == providers.CapacitySpot && h.State != providers.HostTerminated {
			spot = append(spot, h.ID)
			at[h.ID] = i
		}
	}
	for batch := range slices.Chunk(spot, noticeBatch) {
		out, err := p.ec2.DescribeSpotInstanceRequests(ctx, &ec2.DescribeSpotInstanceRequestsInput{Filters: []types.Filter{
			{Name: aws.String("instance-id"), Values: batch},
			{Name: aws.String("status-code"), Values: []string{"marked-for-termination"}},
		}})
		if err != nil {
			return fmt.Errorf("reading spot interruption notices: %w", mapError(err))
		}
		for _, r := range out.SpotInstanceRequests {
			i, ok := at[aws.ToString(r.InstanceId)]
			if !ok || r.Status == nil {
				continue
			}
			noticed := p.clock.Now()
			if r.Status.UpdateTime != nil {
				noticed = *r.Status.UpdateTime
			}
			hosts[i].InterruptAt = noticed.Add(providers.SpotNotice)
		}
	}
	return nil
}

// Catalog implements providers.Provider. Availability comes from
// DescribeInstanceTypeOfferings, spot prices from DescribeSpotPriceHistory;
// on-demand prices, which EC2 does not publish through its API, are the
// pool's.
func (p *Provider) Catalog(ctx context.Context, pool providers.Pool) ([]providers.Offering, error) {
	var typeNames []string
	var spotTypes []types.InstanceType
	for _, o := range pool.Offerings {
		if !slices.Contains(typeNames, o.InstanceType) {
			typeNames = append(typeNames, o.InstanceType)
			spotTypes = append(spotTypes, types.InstanceType(o.InstanceType))
		}
	}
	offered := map[string]bool{}
	pages := ec2.NewDescribeInstanceTypeOfferingsPaginator(p.ec2, &ec2.DescribeInstanceTypeOfferingsInput{
		LocationType: types.LocationTypeAvailabilityZone,
		Filters:      []types.Filter{{Name: aws.String("instance-type"), Values: typeNames}},
	})
	for pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing instance type offerings of pool %s: %w", pool.Name, mapError(err))
		}
		for _, o := range out.InstanceTypeOfferings {
			offered[string(o.InstanceType)+"/"+aws.ToString(o.Location)] = true
		}
	}
	spot := map[string]float64{}
	if slices.ContainsFunc(pool.Offerings, func(o providers.Offering) bool { return o.CapacityType == providers.CapacitySpot }) {
		prices := ec2.NewDescribeSpotPriceHistoryPaginator(p.ec2, &ec2.DescribeSpotPriceHistoryInput{
			InstanceTypes:       spotTypes,
			ProductDescriptions: []string{"Linux/UNIX"},
			StartTime:           aws.Time(p.clock.Now()),
		})
		for prices.HasMorePages() {
			out, err := prices.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("reading spot prices of pool %s: %w", pool.Name, mapError(err))
			}
			for _, sp := range out.SpotPriceHistory {
				key := string(sp.InstanceType) + "/" + aws.ToString(sp.AvailabilityZone)
				if _, seen := spot[key]; seen {
					continue // newest first
				}
				if price, err := strconv.ParseFloat(aws.ToString(sp.SpotPrice), 64); err == nil {
					spot[key] = price
				}
			}
		}
	}
	out := slices.Clone(pool.Offerings)
	for i, o := range out {
		key := o.InstanceType + "/" + o.Zone
		out[i].Available = offered[key]
		if o.CapacityType == providers.CapacitySpot {
			price, ok := spot[key]
			out[i].Price = price
			out[i].Available = out[i].Available && ok
		}
	}
	return out, nil
}
