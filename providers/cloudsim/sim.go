// Package cloudsim owns Spillway's wire-level cloud simulator: one HTTP
// server that speaks the EC2 Query protocol and the Alibaba Cloud ECS RPC
// protocol closely enough for the unmodified aws-sdk-go-v2 and
// alibaba-cloud-sdk-go clients, verifying SigV4 and HMAC-SHA1 signatures
// against configured keys. It simulates instance lifecycles on an injectable
// clock, capacity per offering, quotas, token-bucket throttling, random 5xx
// answers and spot interruptions, deterministically under a seed. A test API
// beside the cloud APIs inspects instances, sets capacity and injects faults,
// and Go hooks run when an instance boots or terminates (the lab starts and
// stops Nomad client agents from them).
package cloudsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// InstanceEvent describes an instance to the boot and terminate hooks.
type InstanceEvent struct {
	InstanceID string
	// Provider is CloudAWS ("aws") or CloudAlicloud ("alicloud").
	Provider     string
	Region       string
	Zone         string
	InstanceType string
	CapacityType string
	PrivateIP    string
	Tags         map[string]string
	// UserData is the decoded (not base64) user data.
	UserData []byte
	// Booted reports, to the terminate hook, whether the boot hook ran.
	Booted bool
}

// Hook is called when an instance boots or starts terminating. Hooks run
// outside the simulator's lock, one at a time and in order, on the goroutine
// that moved the clock (Advance, a request, or the wall-clock ticker), so
// Advance returns after the hooks it made due have run, unless another
// goroutine is running hooks at that moment and runs them instead. A hook
// may call back into the simulator. A hook that does slow work (starting a
// Nomad agent) should start it in the background.
type Hook func(ctx context.Context, ev InstanceEvent)

// FaultKind names an injectable fault.
type FaultKind string

// Fault kinds.
const (
	// FaultThrottle answers with the cloud's throttling error without acting.
	FaultThrottle FaultKind = "throttle"
	// FaultServerError answers 503 without acting.
	FaultServerError FaultKind = "server-error"
	// FaultServerErrorAfterCommit carries the request out, then answers 500,
	// as when a response is lost: clients retry with the same client token.
	FaultServerErrorAfterCommit FaultKind = "server-error-after-commit"
)

// Fault is injected into the next Count requests of Action ("" for any) on
// Cloud ("" for both).
type Fault struct {
	Cloud  string    `json:"cloud"`
	Action string    `json:"action"`
	Kind   FaultKind `json:"kind"`
	Count  int       `json:"count"`
}

// Instance is the simulator's view of an instance.
type Instance struct {
	ID           string            `json:"id"`
	Cloud        string            `json:"cloud"`
	Account      string            `json:"account"`
	Region       string            `json:"region"`
	Zone         string            `json:"zone"`
	Subnet       string            `json:"subnet,omitempty"`
	InstanceType string            `json:"instanceType"`
	CapacityType string            `json:"capacityType"`
	ImageID      string            `json:"imageId,omitempty"`
	State        string            `json:"state"`
	StateReason  string            `json:"stateReason,omitempty"`
	Tags         map[string]string `json:"tags"`
	UserData     []byte            `json:"userData,omitempty"`
	ClientToken  string            `json:"clientToken,omitempty"`
	PrivateIP    string            `json:"privateIp"`
	LaunchTime   time.Time         `json:"launchTime"`
	Reservation  string            `json:"reservation,omitempty"`
	Booted       bool              `json:"booted"`
	// SpotRequest is an EC2 spot instance's spot instance request.
	SpotRequest string `json:"spotRequest,omitempty"`
	// NoticeAt is when a spot instance got its interruption notice, and
	// InterruptAt when the cloud reclaims it (Latency.SpotNotice later).
	NoticeAt    time.Time `json:"noticeAt,omitzero"`
	InterruptAt time.Time `json:"interruptAt,omitzero"`

	runningAt  time.Time
	bootAt     time.Time
	visibleAt  time.Time // to the APIs (Latency.DescribeLag)
	goneAt     time.Time // EC2: terminated at; ECS: unused
	releasedAt time.Time // EC2: removed from view at
	seq        int
}

// Lifecycle states.
const (
	ec2Pending      = "pending"
	ec2Running      = "running"
	ec2ShuttingDown = "shutting-down"
	ec2Terminated   = "terminated"

	ecsPending  = "Pending"
	ecsStarting = "Starting"
	ecsRunning  = "Running"
	ecsStopped  = "Stopped"
)

// Option configures a Simulator.
type Option func(*Simulator)

// WithClock sets the clock. The default is the wall clock, on which the
// simulator also ticks itself in the background; with any other clock,
// call Advance (FakeClock) or Step to move lifecycles on.
func WithClock(c Clock) Option { return func(s *Simulator) { s.clock = c } }

// WithBootHook sets the hook called when an instance has booted.
func WithBootHook(h Hook) Option { return func(s *Simulator) { s.bootHook = h } }

// WithTerminateHook sets the hook called when an instance starts
// terminating (EC2 shutting-down, ECS deletion, spot interruption).
func WithTerminateHook(h Hook) Option { return func(s *Simulator) { s.terminateHook = h } }

// WithLogger sets the logger. The default discards.
func WithLogger(l *slog.Logger) Option { return func(s *Simulator) { s.log = l } }

// Simulator is the simulated clouds. Create it with New, serve it with
// Start (or mount Handler yourself), and drive it with the methods below or
// the test API under /_cloudsim/.
type Simulator struct {
	cfg           Config
	clock         Clock
	log           *slog.Logger
	bootHook      Hook
	terminateHook Hook

	hookMu      sync.Mutex // guards hookQueue and dispatching
	hookQueue   []hookCall
	dispatching bool

	mu  sync.Mutex
	rng *rand.Rand // IDs and request IDs
	// life draws the instances' lifecycle durations and errs the random
	// 5xx, each a stream of its own, so how many other calls (a Describe,
	// a request ID) came before does not change them: the same seed gives
	// the same lifecycles for the same launches, however the calls
	// interleave.
	life, errs *rand.Rand
	seq        int
	instances  map[string]*Instance
	// order is the instances' IDs in launch order (seq), with IDs of
	// instances since deleted until the next sortedIDsLocked drops them.
	order     []string
	capacity  map[string]*int // offering key → remaining; nil entry = unlimited
	offerings map[string]OfferingConfig
	templates map[string]LaunchTemplate
	tokens    map[string]idempotentResult
	faults    []*Fault
	buckets   map[string]*bucket
	errorRate float64
	stats     map[string]int
	calls     []Call // the last maxCalls authenticated requests, oldest first

	adminOnce sync.Once
	admin     *http.ServeMux

	srv      *http.Server
	ln       net.Listener
	stopTick chan struct{}
	wg       sync.WaitGroup
}

type idempotentResult struct {
	paramsHash string
	status     int
	body       []byte
}

// New returns a Simulator for cfg. Defaults are applied to cfg.
func New(cfg Config, opts ...Option) (*Simulator, error) {
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid cloudsim config: %w", err)
	}
	s := &Simulator{
		cfg:       cfg,
		clock:     realClock{},
		log:       slog.New(slog.DiscardHandler),
		rng:       rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(cfg.Seed)^0x5eed)),
		life:      rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(cfg.Seed)^0x11fe)),
		errs:      rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(cfg.Seed)^0xfa17)),
		instances: map[string]*Instance{},
		capacity:  map[string]*int{},
		offerings: map[string]OfferingConfig{},
		templates: map[string]LaunchTemplate{},
		tokens:    map[string]idempotentResult{},
		buckets:   map[string]*bucket{},
		errorRate: *cfg.ErrorRate,
		stats:     map[string]int{},
	}
	for _, o := range opts {
		o(s)
	}
	for cloud, cc := range map[string]CloudConfig{CloudAWS: cfg.AWS, CloudAlicloud: cfg.Alicloud} {
		for _, o := range cc.Offerings {
			key := offeringKey(cloud, o.Zone, o.InstanceType, o.CapacityType)
			s.offerings[key] = o
			if o.Capacity != nil {
				n := *o.Capacity
				s.capacity[key] = &n
			}
		}
	}
	for _, lt := range cfg.AWS.LaunchTemplates {
		s.putTemplateLocked(lt)
	}
	return s, nil
}

// Config returns the effective configuration, defaults applied.
func (s *Simulator) Config() Config { return s.cfg }

// Handler returns the HTTP handler serving both cloud APIs and the test API.
func (s *Simulator) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Start listens on addr (for example "127.0.0.1:0") and serves in the
// background until Close. On the wall clock it also ticks lifecycles every
// 100ms.
func (s *Simulator) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening for cloudsim: %w", err)
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("cloudsim server stopped", "err", err)
		}
	}()
	if _, ok := s.clock.(realClock); ok {
		s.stopTick = make(chan struct{})
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-s.stopTick:
					return
				case <-t.C:
					s.Step()
				}
			}
		}()
	}
	return nil
}

// Close stops the server started by Start.
func (s *Simulator) Close() error {
	var err error
	if s.stopTick != nil {
		close(s.stopTick)
	}
	if s.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = s.srv.Shutdown(ctx)
	}
	s.wg.Wait()
	return err
}

// Addr returns the listening address ("127.0.0.1:PORT") after Start.
func (s *Simulator) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// URL returns the base URL ("http://127.0.0.1:PORT") after Start. Point
// the EC2 client's BaseEndpoint at it, and the ECS client's Domain at Addr.
func (s *Simulator) URL() string { return "http://" + s.Addr() }

// Endpoint returns where a client of cloud should send requests after
// Start: the base URL for CloudAWS (EC2 BaseEndpoint, aws --endpoint-url),
// the host:port for CloudAlicloud (the ECS SDK's Domain, scheme http).
func (s *Simulator) Endpoint(cloud string) string {
	if cloud == CloudAlicloud {
		return s.Addr()
	}
	return s.URL()
}

// Credentials returns the first account configured for cloud, whose
// AccessKeyID and SecretAccessKey a client signs with.
func (s *Simulator) Credentials(cloud string) (Account, bool) {
	cc := s.cfg.AWS
	if cloud == CloudAlicloud {
		cc = s.cfg.Alicloud
	}
	if len(cc.Accounts) == 0 {
		return Account{}, false
	}
	return cc.Accounts[0], true
}

// Region returns the region simulated for cloud.
func (s *Simulator) Region(cloud string) string {
	if cloud == CloudAlicloud {
		return s.cfg.Alicloud.Region
	}
	return s.cfg.AWS.Region
}

// Advance moves a FakeClock forward by d and steps lifecycles. It panics
// when the simulator runs on another clock.
func (s *Simulator) Advance(d time.Duration) {
	fc, ok := s.clock.(*FakeClock)
	if !ok {
		panic("cloudsim: Advance needs a FakeClock")
	}
	fc.Advance(d)
	s.Step()
}

// Now returns the simulator's time.
func (s *Simulator) Now() time.Time { return s.clock.Now() }

// scaled scales a simulated latency by the time scale.
func (s *Simulator) scaled(d time.Duration) time.Duration {
	return time.Duration(float64(d) * s.cfg.TimeScale)
}

// startingAt is when an ECS instance goes from Pending to Starting: ECS
// instances spend the first half of their pending time Pending, the
// second half Starting.
func (in *Instance) startingAt() time.Time {
	return in.LaunchTime.Add(in.runningAt.Sub(in.LaunchTime) / 2)
}

// interruptible says whether a spot interruption set on the instance
// still reclaims it: an EC2 instance pending or running, any ECS one.
func (in *Instance) interruptible() bool {
	return !in.InterruptAt.IsZero() && (in.State == ec2Pending || in.State == ec2Running || in.Cloud == CloudAlicloud)
}

// Step moves every instance's lifecycle up to the clock's now and runs the
// hooks that became due.
func (s *Simulator) Step() {
	s.mu.Lock()
	var boots, reclaimed []InstanceEvent
	now := s.clock.Now()
	for _, id := range s.sortedIDsLocked() {
		in := s.instances[id]
		if in.State == ecsPending && !now.Before(in.startingAt()) {
			in.State = ecsStarting
		}
		switch in.State {
		case ec2Pending, ecsStarting:
			if !now.Before(in.runningAt) {
				if in.Cloud == CloudAWS {
					in.State = ec2Running
				} else {
					in.State = ecsRunning
				}
			}
		}
		if (in.State == ec2Running || in.State == ecsRunning) && !in.Booted && !now.Before(in.bootAt) {
			in.Booted = true
			boots = append(boots, in.event())
		}
		if in.interruptible() && !now.Before(in.InterruptAt) {
			ev := s.terminateLocked(in, "Server.SpotInstanceTermination: Spot instance termination")
			reclaimed = append(reclaimed, ev)
			if in.Cloud == CloudAlicloud {
				continue // released: gone from the instances
			}
		}
		if in.State == ec2ShuttingDown && !now.Before(in.goneAt) {
			in.State = ec2Terminated
		}
		if in.State == ec2Terminated && !now.Before(in.releasedAt) {
			delete(s.instances, id)
		}
	}
	s.mu.Unlock()
	s.runHooks(s.bootHook, boots)
	s.runHooks(s.terminateHook, reclaimed)
}

// NextEvent is when Step next has something to do: the earliest moment an
// instance changes state, boots, is reclaimed or leaves the view. A
// simulation that owns the clock steps there instead of polling, so a
// boot is seen at the moment it happens. ok is false when no instance has
// anything ahead of it.
func (s *Simulator) NextEvent() (at time.Time, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	consider := func(t time.Time) {
		if !t.IsZero() && (!ok || t.Before(at)) {
			at, ok = t, true
		}
	}
	for _, in := range s.instances {
		switch in.State {
		case ecsPending:
			consider(in.startingAt())
			consider(in.runningAt)
		case ec2Pending, ecsStarting:
			consider(in.runningAt)
		case ec2ShuttingDown:
			consider(in.goneAt)
		case ec2Terminated:
			consider(in.releasedAt)
		}
		switch in.State {
		case ec2Pending, ec2Running, ecsPending, ecsStarting, ecsRunning:
			if !in.Booted {
				consider(in.bootAt)
			}
		}
		if in.interruptible() {
			consider(in.InterruptAt)
		}
	}
	return at, ok
}

// runHooks queues hook calls and, unless another goroutine is already
// running hooks, runs the queue. Hooks therefore run one at a time and in
// order, and a hook may call back into the simulator (even Advance or Step)
// without deadlocking: what it makes due is queued behind it.
func (s *Simulator) runHooks(h Hook, evs []InstanceEvent) {
	if h == nil || len(evs) == 0 {
		return
	}
	s.hookMu.Lock()
	for _, ev := range evs {
		s.hookQueue = append(s.hookQueue, hookCall{h, ev})
	}
	if s.dispatching {
		s.hookMu.Unlock()
		return
	}
	s.dispatching = true
	for len(s.hookQueue) > 0 {
		c := s.hookQueue[0]
		s.hookQueue = s.hookQueue[1:]
		s.hookMu.Unlock()
		c.hook(context.Background(), c.ev)
		s.hookMu.Lock()
	}
	s.dispatching = false
	s.hookMu.Unlock()
}

type hookCall struct {
	hook Hook
	ev   InstanceEvent
}

func (in *Instance) event() InstanceEvent {
	return InstanceEvent{
		InstanceID:   in.ID,
		Provider:     in.Cloud,
		Region:       in.Region,
		Zone:         in.Zone,
		InstanceType: in.InstanceType,
		CapacityType: in.CapacityType,
		PrivateIP:    in.PrivateIP,
		Tags:         copyTags(in.Tags),
		UserData:     slices.Clone(in.UserData),
		Booted:       in.Booted,
	}
}

func copyTags(t map[string]string) map[string]string {
	out := make(map[string]string, len(t))
	for k, v := range t {
		out[k] = v
	}
	return out
}

// sortedIDsLocked is the instances' IDs in launch order: kept as they
// launch, not sorted on each call (each step of the scale simulation
// asks, with thousands of instances). The caller must not change it.
func (s *Simulator) sortedIDsLocked() []string {
	if len(s.order) != len(s.instances) {
		live := make([]string, 0, len(s.instances))
		for _, id := range s.order {
			if _, ok := s.instances[id]; ok {
				live = append(live, id)
			}
		}
		s.order = live
	}
	return s.order
}

// Instances returns a snapshot of the instances of cloud ("" for both), in
// launch order, terminated EC2 instances still retained included.
func (s *Simulator) Instances(cloud string) []Instance {
	s.Step()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Instance
	for _, id := range s.sortedIDsLocked() {
		in := s.instances[id]
		if cloud == "" || in.Cloud == cloud {
			c := *in
			c.Tags = copyTags(in.Tags)
			c.UserData = slices.Clone(in.UserData)
			out = append(out, c)
		}
	}
	return out
}

// SetCapacity sets how many more instances an offering can launch; a
// negative n makes it unlimited. The offering need not be configured: a new
// one is added at price 0.
func (s *Simulator) SetCapacity(cloud, zone, instanceType, capacityType string, n int) error {
	if cloud != CloudAWS && cloud != CloudAlicloud {
		return fmt.Errorf("unknown cloud %q", cloud)
	}
	if capacityType != Spot && capacityType != OnDemand {
		return fmt.Errorf("capacity type must be %q or %q, not %q", Spot, OnDemand, capacityType)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := offeringKey(cloud, zone, instanceType, capacityType)
	if _, ok := s.offerings[key]; !ok {
		s.offerings[key] = OfferingConfig{InstanceType: instanceType, Zone: zone, CapacityType: capacityType}
	}
	if n < 0 {
		delete(s.capacity, key)
		return nil
	}
	s.capacity[key] = &n
	return nil
}

// Capacity returns the remaining capacity of an offering, -1 if unlimited.
func (s *Simulator) Capacity(cloud, zone, instanceType, capacityType string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.capacity[offeringKey(cloud, zone, instanceType, capacityType)]; c != nil {
		return *c
	}
	return -1
}

// SetErrorRate sets the probability of a random 5xx answer.
func (s *Simulator) SetErrorRate(rate float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errorRate = rate
}

// InjectFault adds a fault for the next f.Count matching requests.
func (s *Simulator) InjectFault(f Fault) error {
	switch f.Kind {
	case FaultThrottle, FaultServerError, FaultServerErrorAfterCommit:
	default:
		return fmt.Errorf("unknown fault kind %q", f.Kind)
	}
	if f.Count <= 0 {
		f.Count = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
	return nil
}

// PutLaunchTemplate adds or replaces an EC2 launch template.
func (s *Simulator) PutLaunchTemplate(lt LaunchTemplate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putTemplateLocked(lt)
}

func (s *Simulator) putTemplateLocked(lt LaunchTemplate) {
	if lt.ID != "" {
		s.templates["id:"+lt.ID] = lt
	}
	if lt.Name != "" {
		s.templates["name:"+lt.Name] = lt
	}
}

// takeFault returns the kind of the first fault matching cloud and action,
// consuming one count of it.
func (s *Simulator) takeFaultLocked(cloud, action string) FaultKind {
	for i, f := range s.faults {
		if (f.Cloud == "" || f.Cloud == cloud) && (f.Action == "" || f.Action == action) {
			f.Count--
			if f.Count <= 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
			return f.Kind
		}
	}
	return ""
}

// Terminate terminates (EC2) or deletes (ECS) an instance out of band, as
// the cloud or its owner might. It returns false if there is no such live
// instance.
func (s *Simulator) Terminate(id string) bool {
	s.mu.Lock()
	in, ok := s.instances[id]
	if !ok || in.State == ec2Terminated || in.State == ec2ShuttingDown {
		s.mu.Unlock()
		return false
	}
	ev := s.terminateLocked(in, "User initiated")
	s.mu.Unlock()
	s.runHooks(s.terminateHook, []InstanceEvent{ev})
	return true
}

// InterruptSpot gives a spot instance its interruption notice: the cloud
// reclaims it Latency.SpotNotice later (EC2 terminates it with the
// Server.SpotInstanceTermination reason, ECS releases it). Until then EC2's
// DescribeSpotInstanceRequests shows its request marked-for-termination and
// ECS's DescribeInstances an OperationLocks entry with LockReason
// Recycling. A second notice changes nothing.
func (s *Simulator) InterruptSpot(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	if !ok || in.State == ec2Terminated || in.State == ec2ShuttingDown {
		return fmt.Errorf("no live instance %s", id)
	}
	if in.CapacityType != Spot {
		return fmt.Errorf("instance %s is not a spot instance", id)
	}
	if in.InterruptAt.IsZero() {
		now := s.clock.Now()
		in.NoticeAt, in.InterruptAt = now, now.Add(s.scaled(s.cfg.Latency.SpotNotice))
	}
	return nil
}

// visibleLocked reports whether the cloud's APIs see in yet
// (Latency.DescribeLag).
func (s *Simulator) visibleLocked(in *Instance) bool { return !s.clock.Now().Before(in.visibleAt) }

// terminateLocked starts terminating in and returns its terminate event.
func (s *Simulator) terminateLocked(in *Instance, reason string) InstanceEvent {
	if c := s.capacity[offeringKey(in.Cloud, in.Zone, in.InstanceType, in.CapacityType)]; c != nil {
		*c++
	}
	now := s.clock.Now()
	ev := in.event()
	if in.Cloud == CloudAWS {
		in.State = ec2ShuttingDown
		in.StateReason = reason
		in.goneAt = now.Add(s.scaled(s.cfg.Latency.ShuttingDown))
		in.releasedAt = in.goneAt.Add(s.cfg.Latency.TerminatedRetention)
	} else {
		delete(s.instances, in.ID)
	}
	return ev
}

// liveCountLocked counts the account's instances that count against quota.
func (s *Simulator) liveCountLocked(cloud, account string) int {
	n := 0
	for _, in := range s.instances {
		if in.Cloud == cloud && in.Account == account && in.State != ec2Terminated && in.State != ec2ShuttingDown {
			n++
		}
	}
	return n
}

// availableLocked returns how many instances of an offering can launch now,
// and whether the offering exists at all.
func (s *Simulator) availableLocked(cloud, zone, instanceType, capacityType string, want int) (int, bool) {
	key := offeringKey(cloud, zone, instanceType, capacityType)
	if _, ok := s.offerings[key]; !ok {
		return 0, false
	}
	if c := s.capacity[key]; c != nil && *c < want {
		return *c, true
	}
	return want, true
}

type launchSpec struct {
	cloud, account, region, zone, subnet, instanceType, capacityType, imageID, token, reservation string
	tags                                                                                          map[string]string
	userData                                                                                      []byte
}

// launchLocked creates n instances of spec, consuming capacity.
func (s *Simulator) launchLocked(spec launchSpec, n int) []*Instance {
	now := s.clock.Now()
	key := offeringKey(spec.cloud, spec.zone, spec.instanceType, spec.capacityType)
	if c := s.capacity[key]; c != nil {
		*c -= n
	}
	out := make([]*Instance, 0, n)
	// One copy of the user data for the launch's instances: it is never
	// changed (Instances and the boot hook hand out copies), and a copy
	// each was most of the simulator's memory at a thousand instances.
	userData := slices.Clone(spec.userData)
	for range n {
		s.seq++
		pending := s.cfg.Latency.PendingMin
		if span := s.cfg.Latency.PendingMax - s.cfg.Latency.PendingMin; span > 0 {
			pending += time.Duration(s.life.Int64N(int64(span)))
		}
		in := &Instance{
			ID:           s.instanceIDLocked(spec.cloud),
			Cloud:        spec.cloud,
			Account:      spec.account,
			Region:       spec.region,
			Zone:         spec.zone,
			Subnet:       spec.subnet,
			InstanceType: spec.instanceType,
			CapacityType: spec.capacityType,
			ImageID:      spec.imageID,
			Tags:         copyTags(spec.tags),
			UserData:     userData,
			ClientToken:  spec.token,
			PrivateIP:    fmt.Sprintf("10.%d.%d.%d", 16+s.seq/65536%16, s.seq/256%256, s.seq%256),
			LaunchTime:   now,
			Reservation:  spec.reservation,
			seq:          s.seq,
		}
		if spec.cloud == CloudAWS && spec.capacityType == Spot {
			in.SpotRequest = "sir-" + in.ID[len(in.ID)-8:]
		}
		in.runningAt = now.Add(s.scaled(pending))
		in.visibleAt = now.Add(s.scaled(s.cfg.Latency.DescribeLag))
		in.bootAt = in.runningAt.Add(s.scaled(s.cfg.Latency.Boot))
		if spec.cloud == CloudAWS {
			in.State = ec2Pending
		} else {
			in.State = ecsPending
		}
		s.instances[in.ID] = in
		s.order = append(s.order, in.ID)
		out = append(out, in)
	}
	return out
}

const hexDigits = "0123456789abcdef"
const alnum = "abcdefghijklmnopqrstuvwxyz0123456789"

func (s *Simulator) randomString(alphabet string, n int) string {
	var b strings.Builder
	for range n {
		b.WriteByte(alphabet[s.rng.IntN(len(alphabet))])
	}
	return b.String()
}

func (s *Simulator) instanceIDLocked(cloud string) string {
	for {
		var id string
		if cloud == CloudAWS {
			id = "i-" + s.randomString(hexDigits, 17)
		} else {
			id = "i-" + s.randomString(alnum, 20)
		}
		if _, dup := s.instances[id]; !dup {
			return id
		}
	}
}

func (s *Simulator) requestIDLocked() string {
	r := s.randomString(hexDigits, 32)
	return strings.ToUpper(r[:8] + "-" + r[8:12] + "-" + r[12:16] + "-" + r[16:20] + "-" + r[20:])
}

// bucket is a token bucket on the simulator's clock.
type bucket struct {
	tokens float64
	last   time.Time
}

// allowLocked takes n tokens from the bucket name configured by b, and
// reports whether there were enough.
func (s *Simulator) allowLocked(name string, b Bucket, n float64) bool {
	now := s.clock.Now()
	bk := s.buckets[name]
	if bk == nil {
		bk = &bucket{tokens: b.Burst, last: now}
		s.buckets[name] = bk
	}
	if elapsed := now.Sub(bk.last).Seconds(); elapsed > 0 {
		// Tokens refill on the simulated clock, scaled like every latency.
		scale := s.cfg.TimeScale
		if scale <= 0 {
			scale = 1
		}
		bk.tokens = min(b.Burst, bk.tokens+elapsed*b.Rate/scale)
		bk.last = now
	}
	if bk.tokens < n {
		return false
	}
	bk.tokens -= n
	return true
}

// sleepAPI waits the simulated API latency of a launch, on the wall clock
// only: tests on a FakeClock never sleep.
func (s *Simulator) sleepAPI(ctx context.Context) {
	if _, ok := s.clock.(realClock); !ok {
		return
	}
	d := s.scaled(s.cfg.Latency.API)
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
