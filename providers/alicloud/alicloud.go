// Package alicloud owns the Alibaba Cloud ECS implementation of
// providers.Provider, on alibaba-cloud-sdk-go. It launches with RunInstances
// (at most 100 per call, MinAmount 1 so partial stock is taken), finds
// Spillway's instances through ownership tags, deletes with Force, and builds
// the catalog from DescribeAvailableResource and DescribePrice. The SDK's
// own retries are off: the provider retries throttling, 5xx and transport
// errors itself (call), each attempt through its request guard.
package alicloud

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/auth"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/auth/credentials"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/auth/credentials/provider"
	sdkerrors "github.com/aliyun/alibaba-cloud-sdk-go/sdk/errors"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/ecs"
	"github.com/jonboulle/clockwork"

	"github.com/spillwayhq/spillway/providers"
)

// Name is the provider name.
const Name = "alicloud"

// maxPerCall is RunInstances' Amount limit.
const maxPerCall = 100

// Options configure a Provider.
type Options struct {
	// Cluster is the Spillway cluster name written to providers.TagCluster.
	Cluster string
	// Region is the ECS region, e.g. cn-hangzhou.
	Region string
	// Endpoint, when set, is the host[:port] every request goes to (the
	// SDK's Domain), e.g. the cloud simulator's address. Empty uses the SDK's
	// endpoint resolution.
	Endpoint string
	// Scheme is "https" (default) or "http".
	Scheme string
	// AccessKeyID and AccessKeySecret; when empty, credentials come from the
	// SDK's default provider chain (environment, profile, instance RAM role).
	AccessKeyID     string
	AccessKeySecret string
	// MaxAttempts per API call on throttling, 5xx and transport errors,
	// first try included. Default 5.
	MaxAttempts int
	// BaseBackoff and MaxBackoff bound the jittered exponential backoff
	// between attempts. Defaults 200ms and 20s.
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	// PageSize is DescribeInstances' MaxResults. Default 100.
	PageSize int
	// Timeout of one HTTP request. Default 30s.
	Timeout time.Duration
	// ConsistencyWindow is how long after a launch Delete takes ECS's "not
	// found" for "not visible yet" and asks again (default
	// providers.DefaultConsistencyWindow).
	ConsistencyWindow time.Duration
	// AppID names the caller in every request's User-Agent ("app/<AppID>"),
	// so ActionTrail (and the simulator) can tell the replicas apart.
	AppID string
	// RequestGuard, when set, runs before every HTTP request is sent, each
	// retry included (providers.GuardTransport); its error fails the request
	// unsent.
	RequestGuard func(context.Context) error
	// Clock times the retries' backoff, stamps the launches, measures the
	// consistency window and dates a Recycling lock when first seen
	// (default: the real clock).
	Clock clockwork.Clock
}

// Provider is the ECS providers.Provider.
type Provider struct {
	ecs  *ecs.Client
	opts Options

	mu sync.Mutex
	// recycling maps the spot instances seen with a Recycling operation
	// lock to when that was first seen.
	recycling map[string]time.Time
}

var _ providers.Provider = (*Provider)(nil)

// New returns a Provider. It does not call the cloud.
func New(opts Options) (*Provider, error) {
	if opts.Cluster == "" || opts.Region == "" {
		return nil, errors.New("creating alicloud provider: cluster and region are required")
	}
	if opts.Scheme == "" {
		opts.Scheme = "https"
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
		opts.PageSize = 100
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	cfg := sdk.NewConfig()
	// Spillway retries, not the SDK (call): throttling, 5xx and transport
	// errors, each attempt through the request guard. The SDK's own retries
	// would resend a request the guard refused, and hide its error.
	cfg.AutoRetry = false
	cfg.Scheme = strings.ToUpper(opts.Scheme)
	cfg.Timeout = opts.Timeout
	if opts.RequestGuard != nil {
		// The SDK sets its connect timeout, TLS and proxy on an
		// *http.Transport it is given; a wrapper hides it, so they are
		// set here, on the transport inside.
		inner := http.DefaultTransport.(*http.Transport).Clone()
		inner.DialContext = sdk.Timeout(5 * time.Second)
		cfg.Transport = providers.GuardTransport(inner, opts.RequestGuard)
	}
	var credential auth.Credential = credentials.NewAccessKeyCredential(opts.AccessKeyID, opts.AccessKeySecret)
	if opts.AccessKeyID == "" {
		var err error
		if credential, err = provider.DefaultChain.Resolve(); err != nil {
			return nil, fmt.Errorf("resolving alicloud credentials from the default chain: %w", err)
		}
	}
	client, err := ecs.NewClientWithOptions(opts.Region, cfg, credential)
	if err != nil {
		return nil, fmt.Errorf("creating ecs client: %w", err)
	}
	if id := providers.AppID(opts.AppID); id != "" {
		client.AppendUserAgent("app", id)
	}
	return &Provider{ecs: client, opts: opts}, nil
}

// Name implements providers.Provider.
func (p *Provider) Name() string { return Name }

// request is what every ECS request type shares.
type request interface {
	SetDomain(string)
	SetScheme(string)
}

func (p *Provider) prepare(r request) {
	if p.opts.Endpoint != "" {
		r.SetDomain(p.opts.Endpoint)
	}
	r.SetScheme(strings.ToUpper(p.opts.Scheme))
}

func errorCode(err error) string {
	var se *sdkerrors.ServerError
	if errors.As(err, &se) {
		return se.ErrorCode()
	}
	return ""
}

func isThrottling(code string) bool { return strings.HasPrefix(code, "Throttling") }

func isCapacity(code string) bool {
	return code == "OperationDenied.NoStock" || code == "Zone.NotOnSale" || code == "InvalidInstanceType.NotSupported" ||
		code == "OperationDenied.ZoneNotAllowed" || code == "InvalidZoneId.NotSupported"
}

func isAuth(code string) bool {
	switch code {
	case "InvalidAccessKeyId.NotFound", "InvalidAccessKeyId.Inactive", "SignatureDoesNotMatch", "IncompleteSignature",
		"InvalidSecurityToken.Expired", "InvalidSecurityToken.Malformed", "Forbidden.RAM", "Forbidden.AccessKeyDisabled":
		return true
	}
	return false
}

// throttleRetryAfter is the retry-after hint of a Throttled error: the
// cloud's request buckets refill within about a second.
const throttleRetryAfter = time.Second

// apiError is a one-line rendering of the SDK's multi-line ServerError.
type apiError struct{ se *sdkerrors.ServerError }

func (e *apiError) Error() string {
	return fmt.Sprintf("ecs: %s: %s (http %d, request id %s)", e.se.ErrorCode(), e.se.Message(), e.se.HttpStatus(), e.se.RequestId())
}

func (e *apiError) Unwrap() error { return e.se }

// mapError turns an SDK error into a typed providers error where one fits.
// Capacity errors are left to the caller, which knows the offering.
func mapError(err error) error {
	if err == nil {
		return nil
	}
	var se *sdkerrors.ServerError
	if errors.As(err, &se) {
		code := se.ErrorCode()
		err = &apiError{se}
		switch {
		case strings.HasPrefix(code, "QuotaExceed"):
			return providers.NewQuotaError(err)
		case isThrottling(code):
			return providers.NewThrottledError(err, throttleRetryAfter)
		case isAuth(code):
			return providers.NewAuthError(err)
		case se.HttpStatus() >= 500:
			return providers.NewUnavailableError(err)
		}
		return err
	}
	var refused *providers.RefusedRequest
	if errors.As(err, &refused) {
		return err
	}
	var ce *sdkerrors.ClientError
	if errors.As(err, &ce) || isTransport(err) {
		return providers.NewUnavailableError(err)
	}
	return err
}

// call runs fn, backing off with jitter while it fails in a way worth
// another attempt (retryable).
func (p *Provider) call(ctx context.Context, fn func() error) error {
	var err error
	for attempt := 0; attempt < p.opts.MaxAttempts; attempt++ {
		if attempt > 0 {
			d := p.opts.BaseBackoff << min(attempt-1, 20)
			if d <= 0 || d > p.opts.MaxBackoff {
				d = p.opts.MaxBackoff
			}
			d = d/2 + rand.N(d/2+1)
			t := p.opts.Clock.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return errors.Join(ctx.Err(), err)
			case <-t.Chan():
			}
		}
		if err = fn(); err == nil || !retryable(err) {
			return err
		}
	}
	return err
}

// retryable reports whether a failed ECS call may be sent again: a
// throttle, a 5xx that is not a refusal the planner must see at once, or
// a transport error (connection refused or reset, a timeout). A request
// the guard refused never is.
func retryable(err error) bool {
	var refused *providers.RefusedRequest
	if errors.As(err, &refused) || errors.Is(err, context.Canceled) {
		return false
	}
	var se *sdkerrors.ServerError
	if errors.As(err, &se) {
		code := se.ErrorCode()
		return isThrottling(code) || (se.HttpStatus() >= 500 && !isCapacity(code) && !isAuth(code) && !strings.HasPrefix(code, "QuotaExceed"))
	}
	return isTransport(err)
}

// isTransport reports a transient error of the HTTP exchange itself (a
// refused or reset connection, a timeout, a cut-off answer), not an answer,
// and not one that another try cannot mend: a certificate the client does
// not trust, a name that does not resolve.
func isTransport(err error) bool {
	var (
		cert  *tls.CertificateVerificationError
		x509u x509.UnknownAuthorityError
		x509h x509.HostnameError
		dns   *net.DNSError
	)
	switch {
	case errors.As(err, &cert), errors.As(err, &x509u), errors.As(err, &x509h):
		return false
	case errors.As(err, &dns) && dns.IsNotFound:
		return false
	}
	// With the SDK's retries off, it hands the transport's error back as is.
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF)
}

func spotStrategy(o providers.Offering) string {
	if o.CapacityType == providers.CapacitySpot {
		return "SpotAsPriceGo"
	}
	return "NoSpot"
}

// Create implements providers.Provider.
func (p *Provider) Create(ctx context.Context, claim providers.Claim) ([]providers.Host, error) {
	hosts, err := p.describe(ctx, map[string]string{providers.TagCluster: p.opts.Cluster, providers.TagClaim: claim.ID}, nil)
	if err != nil {
		return nil, fmt.Errorf("listing hosts of claim %s: %w", claim.ID, err)
	}
	tags := providers.OwnershipTags(p.opts.Cluster, claim)
	var exhausted []providers.Offering
	var capErr error
	for _, o := range claim.EffectiveOfferings() {
		for len(hosts) < claim.Count {
			need := min(claim.Count-len(hosts), maxPerCall)
			got, err := p.runInstances(ctx, claim, o, need, len(hosts), tags)
			hosts = append(hosts, got...)
			if isCapacity(errorCode(err)) {
				exhausted = append(exhausted, o)
				capErr = mapError(err)
				break
			}
			if err != nil {
				return hosts, fmt.Errorf("creating hosts for claim %s in pool %s: %w", claim.ID, claim.Pool.Name, mapError(err))
			}
			if len(got) == 0 {
				exhausted = append(exhausted, o)
				capErr = fmt.Errorf("RunInstances launched none on %s", o.Key())
				break
			}
			// A partial launch goes round again for the rest: the next
			// answer (NoStock, QuotaExceed.*) says why it was partial.
		}
	}
	if len(hosts) < claim.Count {
		if capErr == nil {
			capErr = errors.New("no offerings to launch on")
		}
		return hosts, fmt.Errorf("creating hosts for claim %s in pool %s: got %d of %d: %w", claim.ID, claim.Pool.Name,
			len(hosts), claim.Count, providers.NewInsufficientCapacityError(capErr, exhausted...))
	}
	return hosts, nil
}

func (p *Provider) runInstances(ctx context.Context, claim providers.Claim, o providers.Offering, need, have int, tags map[string]string) ([]providers.Host, error) {
	req := ecs.CreateRunInstancesRequest()
	p.prepare(req)
	req.RegionId = p.opts.Region
	req.InstanceType = o.InstanceType
	req.ImageId = claim.Pool.ImageID
	req.Amount = requests.NewInteger(need)
	req.MinAmount = requests.NewInteger(1)
	req.ClientToken = providers.ClientToken(claim.ID, have, o)
	req.InstanceChargeType = "PostPaid"
	req.SpotStrategy = spotStrategy(o)
	if o.Subnet != "" {
		req.VSwitchId = o.Subnet
	}
	req.ZoneId = o.Zone
	if len(claim.Pool.UserData) > 0 {
		req.UserData = base64.StdEncoding.EncodeToString(claim.Pool.UserData)
	}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	list := make([]ecs.RunInstancesTag, 0, len(keys))
	for _, k := range keys {
		list = append(list, ecs.RunInstancesTag{Key: k, Value: tags[k]})
	}
	req.Tag = &list
	var resp *ecs.RunInstancesResponse
	err := p.call(ctx, func() (err error) {
		resp, err = p.ecs.RunInstances(req)
		return err
	})
	if err != nil {
		return nil, err
	}
	hosts := make([]providers.Host, 0, len(resp.InstanceIdSets.InstanceIdSet))
	for _, id := range resp.InstanceIdSets.InstanceIdSet {
		hosts = append(hosts, providers.Host{
			ID:         id,
			Provider:   Name,
			Pool:       claim.Pool.Name,
			Claim:      claim.ID,
			Offering:   providers.Offering{InstanceType: o.InstanceType, Zone: o.Zone, Subnet: o.Subnet, CapacityType: o.CapacityType},
			State:      providers.HostPending,
			LaunchedAt: p.opts.Clock.Now(),
			Tags:       tags,
		})
	}
	return hosts, nil
}

// describe pages through DescribeInstances filtered by tags or IDs.
func (p *Provider) describe(ctx context.Context, tags map[string]string, ids []string) ([]providers.Host, error) {
	var hosts []providers.Host
	next := ""
	for {
		req := ecs.CreateDescribeInstancesRequest()
		p.prepare(req)
		req.RegionId = p.opts.Region
		req.MaxResults = requests.NewInteger(p.opts.PageSize)
		req.NextToken = next
		if len(ids) > 0 {
			raw, _ := json.Marshal(ids)
			req.InstanceIds = string(raw)
		}
		keys := make([]string, 0, len(tags))
		for k := range tags {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if len(keys) > 0 {
			list := make([]ecs.DescribeInstancesTag, 0, len(keys))
			for _, k := range keys {
				list = append(list, ecs.DescribeInstancesTag{Key: k, Value: tags[k]})
			}
			req.Tag = &list
		}
		var resp *ecs.DescribeInstancesResponse
		err := p.call(ctx, func() (err error) {
			resp, err = p.ecs.DescribeInstances(req)
			return err
		})
		if err != nil {
			return nil, mapError(err)
		}
		for _, in := range resp.Instances.Instance {
			h := toHost(in)
			h.InterruptAt = p.interruptAt(in)
			hosts = append(hosts, h)
		}
		if resp.NextToken == "" || len(resp.Instances.Instance) == 0 {
			return hosts, nil
		}
		next = resp.NextToken
	}
}

func toHost(in ecs.Instance) providers.Host {
	tags := map[string]string{}
	for _, t := range in.Tags.Tag {
		tags[t.TagKey] = t.TagValue
	}
	h := providers.Host{
		ID:       in.InstanceId,
		Provider: Name,
		Pool:     tags[providers.TagPool],
		Claim:    tags[providers.TagClaim],
		Tags:     tags,
		Offering: providers.Offering{
			InstanceType: in.InstanceType,
			Zone:         in.ZoneId,
			Subnet:       in.VpcAttributes.VSwitchId,
			CapacityType: providers.CapacityOnDemand,
		},
	}
	if in.SpotStrategy == "SpotAsPriceGo" || in.SpotStrategy == "SpotWithPriceLimit" {
		h.Offering.CapacityType = providers.CapacitySpot
	}
	if ips := in.VpcAttributes.PrivateIpAddress.IpAddress; len(ips) > 0 {
		h.PrivateIP = ips[0]
	}
	for _, layout := range []string{"2006-01-02T15:04Z", "2006-01-02T15:04:05Z"} {
		if t, err := time.Parse(layout, in.CreationTime); err == nil {
			h.LaunchedAt = t
			break
		}
	}
	switch in.Status {
	case "Pending", "Starting":
		h.State = providers.HostPending
	case "Running":
		h.State = providers.HostRunning
	case "Stopping":
		h.State = providers.HostStopping
	case "Stopped":
		h.State = providers.HostStopped
	default:
		h.State = providers.HostPending
	}
	return h
}

// Get implements providers.Provider.
func (p *Provider) Get(ctx context.Context, id string) (providers.Host, error) {
	hosts, err := p.describe(ctx, nil, []string{id})
	if err != nil {
		return providers.Host{}, fmt.Errorf("getting host %s: %w", id, err)
	}
	for _, h := range hosts {
		if h.ID == id && h.Tags[providers.TagCluster] == p.opts.Cluster {
			return h, nil
		}
	}
	return providers.Host{}, providers.NewNotFoundError(id, nil)
}

// Delete implements providers.Provider. It deletes, with Force, only
// instances owned by this cluster.
// ECS is eventually consistent, as EC2 is: see the aws provider's Delete.
func (p *Provider) Delete(ctx context.Context, host providers.Host) error {
	if _, err := providers.Visible(ctx, p.opts.Clock, host, p.opts.ConsistencyWindow, p.Get); err != nil {
		return fmt.Errorf("deleting host %s: %w", host.ID, err)
	}
	req := ecs.CreateDeleteInstancesRequest()
	p.prepare(req)
	req.RegionId = p.opts.Region
	req.InstanceId = &[]string{host.ID}
	req.Force = requests.NewBoolean(true)
	err := p.call(ctx, func() error {
		_, err := p.ecs.DeleteInstances(req)
		return err
	})
	if errorCode(err) == "InvalidInstanceId.NotFound" {
		p.forget(host.ID)
		return providers.NewNotFoundError(host.ID, err)
	}
	if err != nil {
		return fmt.Errorf("deleting host %s: %w", host.ID, mapError(err))
	}
	p.forget(host.ID)
	return nil
}

// forget drops what the provider remembers of a deleted instance.
func (p *Provider) forget(id string) {
	p.mu.Lock()
	delete(p.recycling, id)
	p.mu.Unlock()
}

// List implements providers.Provider.
func (p *Provider) List(ctx context.Context, pool string) ([]providers.Host, error) {
	hosts, err := p.describe(ctx, map[string]string{providers.TagCluster: p.opts.Cluster, providers.TagPool: pool}, nil)
	if err != nil {
		return nil, fmt.Errorf("listing hosts of pool %s: %w", pool, err)
	}
	return hosts, nil
}

// interruptAt is when ECS reclaims a spot instance it put a Recycling
// operation lock on: the lock says so but not when, so the reclaim is
// taken to be providers.SpotNotice after the lock was first seen (ECS's
// own notice is five minutes). Zero without the lock.
func (p *Provider) interruptAt(in ecs.Instance) time.Time {
	if !slices.ContainsFunc(in.OperationLocks.LockReason, func(l ecs.LockReason) bool { return l.LockReason == "Recycling" }) {
		return time.Time{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.recycling == nil {
		p.recycling = map[string]time.Time{}
	}
	seen, ok := p.recycling[in.InstanceId]
	if !ok {
		seen = p.opts.Clock.Now()
		p.recycling[in.InstanceId] = seen
	}
	return seen.Add(providers.SpotNotice)
}

// Catalog implements providers.Provider: availability from
// DescribeAvailableResource, prices from DescribePrice.
func (p *Provider) Catalog(ctx context.Context, pool providers.Pool) ([]providers.Offering, error) {
	type zoneKey struct{ zone, spot string }
	stock := map[zoneKey]map[string]bool{}
	out := slices.Clone(pool.Offerings)
	for i, o := range out {
		zk := zoneKey{o.Zone, spotStrategy(o)}
		if _, done := stock[zk]; !done {
			req := ecs.CreateDescribeAvailableResourceRequest()
			p.prepare(req)
			req.RegionId = p.opts.Region
			req.DestinationResource = "InstanceType"
			req.ZoneId = o.Zone
			req.InstanceChargeType = "PostPaid"
			req.SpotStrategy = zk.spot
			var resp *ecs.DescribeAvailableResourceResponse
			err := p.call(ctx, func() (err error) {
				resp, err = p.ecs.DescribeAvailableResource(req)
				return err
			})
			if err != nil {
				return nil, fmt.Errorf("listing available resources of pool %s: %w", pool.Name, mapError(err))
			}
			avail := map[string]bool{}
			for _, z := range resp.AvailableZones.AvailableZone {
				for _, r := range z.AvailableResources.AvailableResource {
					for _, s := range r.SupportedResources.SupportedResource {
						avail[s.Value] = s.Status == "Available"
					}
				}
			}
			stock[zk] = avail
		}
		out[i].Available = stock[zk][o.InstanceType]
		req := ecs.CreateDescribePriceRequest()
		p.prepare(req)
		req.RegionId = p.opts.Region
		req.ResourceType = "instance"
		req.InstanceType = o.InstanceType
		req.ZoneId = o.Zone
		req.SpotStrategy = zk.spot
		var resp *ecs.DescribePriceResponse
		err := p.call(ctx, func() (err error) {
			resp, err = p.ecs.DescribePrice(req)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("pricing %s in pool %s: %w", o.Key(), pool.Name, mapError(err))
		}
		out[i].Price = resp.PriceInfo.Price.TradePrice
	}
	return out, nil
}
