// Package fake owns an in-memory Provider for tests. A Cloud holds the state
// (instances, capacity per offering, injected faults) so that several
// Provider instances can share it, the way real providers share a cloud; a
// Provider records its calls and takes injected errors, Karpenter style.
package fake

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/spillwayhq/spillway/providers"
)

// Credential is the only credential a fake Cloud accepts.
const Credential = "fake-credential"

// Cloud is the in-memory cloud behind fake Providers.
type Cloud struct {
	mu        sync.Mutex
	now       func() time.Time
	nextID    int
	instances map[string]*providers.Host
	order     []string
	// capacity per offering key; absent means unlimited.
	capacity map[string]int
	tokens   map[string][]string
	throttle int
	lose     int
	prices   map[string]float64
}

// NewCloud returns an empty cloud with unlimited capacity. now may be nil.
func NewCloud(now func() time.Time) *Cloud {
	if now == nil {
		now = time.Now
	}
	return &Cloud{
		now:       now,
		instances: map[string]*providers.Host{},
		capacity:  map[string]int{},
		tokens:    map[string][]string{},
		prices:    map[string]float64{},
	}
}

// SetCapacity sets how many more instances offering o can launch. A negative
// n makes it unlimited.
func (c *Cloud) SetCapacity(o providers.Offering, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n < 0 {
		delete(c.capacity, o.Key())
		return
	}
	c.capacity[o.Key()] = n
}

// SetPrice sets the price Catalog reports for offering o.
func (c *Cloud) SetPrice(o providers.Offering, price float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.prices[o.Key()] = price
}

// ThrottleNext makes the next n launch calls fail as throttled; the Provider
// backs off and retries them.
func (c *Cloud) ThrottleNext(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.throttle = n
}

// LoseNextResponse makes the next n launch calls succeed in the cloud but
// fail on the way back, so the Provider retries them with the same token.
func (c *Cloud) LoseNextResponse(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lose = n
}

// Terminate terminates an instance behind the Providers' backs.
func (c *Cloud) Terminate(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h, ok := c.instances[id]; ok {
		c.release(h)
		h.State = providers.HostTerminated
	}
}

// Interrupt gives a live spot instance its interruption notice: it is
// listed with InterruptAt, providers.SpotNotice from now.
func (c *Cloud) Interrupt(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h, ok := c.instances[id]; ok && h.State != providers.HostTerminated && h.Offering.CapacityType == providers.CapacitySpot {
		h.InterruptAt = c.now().Add(providers.SpotNotice)
	}
}

// Instances returns a copy of every instance, terminated ones included.
func (c *Cloud) Instances() []providers.Host {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]providers.Host, 0, len(c.order))
	for _, id := range c.order {
		out = append(out, copyHost(*c.instances[id]))
	}
	return out
}

func (c *Cloud) release(h *providers.Host) {
	if h.State == providers.HostTerminated {
		return
	}
	if n, ok := c.capacity[h.Offering.Key()]; ok {
		c.capacity[h.Offering.Key()] = n + 1
	}
}

var (
	errThrottled = errors.New("fake: rate exceeded")
	errLost      = errors.New("fake: connection reset after request was sent")
)

// launch runs one idempotent launch of up to n instances on offering o.
func (c *Cloud) launch(token string, o providers.Offering, n int, tags map[string]string) ([]providers.Host, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.throttle > 0 {
		c.throttle--
		return nil, errThrottled
	}
	ids, seen := c.tokens[token]
	if !seen {
		avail := n
		if capLeft, ok := c.capacity[o.Key()]; ok && capLeft < n {
			avail = capLeft
		}
		for range avail {
			c.nextID++
			id := fmt.Sprintf("fake-%06d", c.nextID)
			c.instances[id] = &providers.Host{
				ID:         id,
				Provider:   "fake",
				Pool:       tags[providers.TagPool],
				Claim:      tags[providers.TagClaim],
				Offering:   providers.Offering{InstanceType: o.InstanceType, Zone: o.Zone, Subnet: o.Subnet, CapacityType: o.CapacityType},
				State:      providers.HostPending,
				PrivateIP:  fmt.Sprintf("10.0.%d.%d", c.nextID/250, c.nextID%250+1),
				LaunchedAt: c.now(),
				Tags:       tags,
			}
			c.order = append(c.order, id)
			ids = append(ids, id)
		}
		if _, ok := c.capacity[o.Key()]; ok {
			c.capacity[o.Key()] -= avail
		}
		c.tokens[token] = ids
	}
	if c.lose > 0 {
		c.lose--
		return nil, errLost
	}
	out := make([]providers.Host, 0, len(ids))
	for _, id := range ids {
		out = append(out, copyHost(*c.instances[id]))
	}
	return out, nil
}

func copyHost(h providers.Host) providers.Host {
	tags := make(map[string]string, len(h.Tags))
	for k, v := range h.Tags {
		tags[k] = v
	}
	h.Tags = tags
	return h
}

// Provider is a fake providers.Provider over a Cloud. Exported fields record
// calls and inject errors; guard them with Lock/Unlock when the provider is
// used concurrently, or read them through the accessor methods.
type Provider struct {
	cloud      *Cloud
	cluster    string
	credential string

	mu sync.Mutex
	// Recorded calls.
	CreateCalls  []providers.Claim
	DeleteCalls  []providers.Host
	GetCalls     []string
	ListCalls    []string
	CatalogCalls []providers.Pool
	// Errors returned, once, by the next call of each method.
	NextCreateErr  error
	NextDeleteErr  error
	NextGetErr     error
	NextListErr    error
	NextCatalogErr error
	// Backoff between retries of throttled or lost launch calls.
	Backoff    time.Duration
	MaxRetries int
	// ListGate, when set, holds each List until it receives from it or
	// the call's context ends (a slow cloud, for tests of what waits on a
	// listing).
	ListGate chan struct{}
}

var _ providers.Provider = (*Provider)(nil)

// New returns a Provider for cluster over cloud, authenticating with
// credential; only fake.Credential is accepted.
func New(cloud *Cloud, cluster, credential string) *Provider {
	return &Provider{cloud: cloud, cluster: cluster, credential: credential, MaxRetries: 5}
}

// Lists returns the pools List was called for, in order.
func (p *Provider) Lists() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.ListCalls)
}

// Reset clears recorded calls and injected errors.
func (p *Provider) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.CreateCalls, p.DeleteCalls, p.GetCalls, p.ListCalls, p.CatalogCalls = nil, nil, nil, nil, nil
	p.NextCreateErr, p.NextDeleteErr, p.NextGetErr, p.NextListErr, p.NextCatalogErr = nil, nil, nil, nil, nil
}

// Name implements providers.Provider.
func (p *Provider) Name() string { return "fake" }

func (p *Provider) auth() error {
	if p.credential != Credential {
		return providers.NewAuthError(errors.New("fake: unknown credential"))
	}
	return nil
}

func take(next *error) error {
	err := *next
	*next = nil
	return err
}

// Create implements providers.Provider.
func (p *Provider) Create(ctx context.Context, claim providers.Claim) ([]providers.Host, error) {
	p.mu.Lock()
	p.CreateCalls = append(p.CreateCalls, claim)
	injected := take(&p.NextCreateErr)
	p.mu.Unlock()
	if injected != nil {
		return nil, injected
	}
	if err := p.auth(); err != nil {
		return nil, fmt.Errorf("creating hosts for claim %s: %w", claim.ID, err)
	}
	hosts := p.claimHosts(claim.ID)
	var exhausted []providers.Offering
	tags := providers.OwnershipTags(p.cluster, claim)
	for _, o := range claim.EffectiveOfferings() {
		need := claim.Count - len(hosts)
		if need <= 0 {
			break
		}
		token := providers.ClientToken(claim.ID, len(hosts), o)
		got, err := p.launchWithRetry(ctx, token, o, need, tags)
		if err != nil {
			return hosts, fmt.Errorf("creating hosts for claim %s: %w", claim.ID, err)
		}
		hosts = append(hosts, got...)
		if len(got) < need {
			exhausted = append(exhausted, o)
		}
	}
	if len(hosts) < claim.Count {
		return hosts, fmt.Errorf("creating hosts for claim %s: got %d of %d: %w", claim.ID, len(hosts), claim.Count,
			providers.NewInsufficientCapacityError(errors.New("fake: insufficient capacity"), exhausted...))
	}
	return hosts, nil
}

func (p *Provider) launchWithRetry(ctx context.Context, token string, o providers.Offering, n int, tags map[string]string) ([]providers.Host, error) {
	var err error
	for attempt := 0; attempt <= p.MaxRetries; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(p.Backoff):
			}
		}
		var hosts []providers.Host
		hosts, err = p.cloud.launch(token, o, n, tags)
		if err == nil {
			return hosts, nil
		}
	}
	if errors.Is(err, errThrottled) {
		return nil, providers.NewThrottledError(err, p.Backoff)
	}
	return nil, providers.NewUnavailableError(err)
}

func (p *Provider) claimHosts(claim string) []providers.Host {
	var out []providers.Host
	for _, h := range p.cloud.Instances() {
		if h.State != providers.HostTerminated && h.Tags[providers.TagCluster] == p.cluster && h.Tags[providers.TagClaim] == claim {
			out = append(out, h)
		}
	}
	return out
}

// Delete implements providers.Provider.
func (p *Provider) Delete(_ context.Context, host providers.Host) error {
	p.mu.Lock()
	p.DeleteCalls = append(p.DeleteCalls, host)
	injected := take(&p.NextDeleteErr)
	p.mu.Unlock()
	if injected != nil {
		return injected
	}
	if err := p.auth(); err != nil {
		return fmt.Errorf("deleting host %s: %w", host.ID, err)
	}
	c := p.cloud
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.instances[host.ID]
	if !ok || h.State == providers.HostTerminated || h.Tags[providers.TagCluster] != p.cluster {
		return providers.NewNotFoundError(host.ID, nil)
	}
	c.release(h)
	h.State = providers.HostTerminated
	return nil
}

// Get implements providers.Provider.
func (p *Provider) Get(_ context.Context, id string) (providers.Host, error) {
	p.mu.Lock()
	p.GetCalls = append(p.GetCalls, id)
	injected := take(&p.NextGetErr)
	p.mu.Unlock()
	if injected != nil {
		return providers.Host{}, injected
	}
	if err := p.auth(); err != nil {
		return providers.Host{}, fmt.Errorf("getting host %s: %w", id, err)
	}
	for _, h := range p.cloud.Instances() {
		if h.ID == id && h.State != providers.HostTerminated && h.Tags[providers.TagCluster] == p.cluster {
			return h, nil
		}
	}
	return providers.Host{}, providers.NewNotFoundError(id, nil)
}

// List implements providers.Provider.
func (p *Provider) List(ctx context.Context, pool string) ([]providers.Host, error) {
	p.mu.Lock()
	p.ListCalls = append(p.ListCalls, pool)
	injected := take(&p.NextListErr)
	gate := p.ListGate
	p.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, fmt.Errorf("listing hosts of pool %s: %w", pool, ctx.Err())
		}
	}
	if injected != nil {
		return nil, injected
	}
	if err := p.auth(); err != nil {
		return nil, fmt.Errorf("listing hosts of pool %s: %w", pool, err)
	}
	var out []providers.Host
	for _, h := range p.cloud.Instances() {
		if h.State != providers.HostTerminated && h.Tags[providers.TagCluster] == p.cluster && h.Tags[providers.TagPool] == pool {
			out = append(out, h)
		}
	}
	return out, nil
}

// Catalog implements providers.Provider.
func (p *Provider) Catalog(_ context.Context, pool providers.Pool) ([]providers.Offering, error) {
	p.mu.Lock()
	p.CatalogCalls = append(p.CatalogCalls, pool)
	injected := take(&p.NextCatalogErr)
	p.mu.Unlock()
	if injected != nil {
		return nil, injected
	}
	if err := p.auth(); err != nil {
		return nil, fmt.Errorf("listing offerings of pool %s: %w", pool.Name, err)
	}
	c := p.cloud
	c.mu.Lock()
	defer c.mu.Unlock()
	out := slices.Clone(pool.Offerings)
	for i, o := range out {
		left, limited := c.capacity[o.Key()]
		out[i].Available = !limited || left > 0
		if price, ok := c.prices[o.Key()]; ok {
			out[i].Price = price
		}
	}
	return out, nil
}

// Creates returns the recorded Create calls; safe while the provider is
// in use.
func (p *Provider) Creates() []providers.Claim {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]providers.Claim(nil), p.CreateCalls...)
}

// Deletes returns the recorded Delete calls; safe while the provider is
// in use.
func (p *Provider) Deletes() []providers.Host {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]providers.Host(nil), p.DeleteCalls...)
}
