// Package controller owns Spillway's capacity: finding hosts for what
// Nomad cannot place, giving them back, and cleaning up after crashes. It
// reads the cluster only through the live model (controlplane/cluster) and
// changes Nomad only through a cluster.Orchestrator, so each controller is
// tested against fakes with a stepped clock.
//
// It is four controllers over one shared core (Controller):
//
//   - provisioning (provisioning.go): every task group of a business unit
//     Spillway serves that has allocations Nomad queued, whoever raised
//     its count, gets a scale-out activity: hosts sized from the queued
//     allocations, planned on the capacity ladder, borrowed and rented
//     (activity.go, cloud.go), followed until the allocations are healthy.
//     Each activity is a timeline of named phases, journaled and exported
//     as spillway_scaleout_phase_seconds{phase,pool}, and ends once as
//     done, partial or unmet (spillway_scaleouts_total{outcome}). Work no
//     tier can take gets no activity (unservable.go).
//   - disruption (disruption.go): scale-in gives back what the business
//     units no longer need, rented hosts before borrowed ones, waiting
//     only for activities in flight that concern the same capacity
//     (inflight.go).
//   - garbage collection (gc.go): orphaned instances and launches that
//     never became ready nodes.
//   - the reconcile pass (reconcile.go), at the start of a term and every
//     minute: the ledger against Nomad and the clouds, and the resumption
//     of interrupted scale-outs.
//
// Every intent is journaled before it is acted on.
package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/internal/bandwidth"
	"github.com/spillwayhq/spillway/policies"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
)

// Phases of a scale-out, in order.
const (
	PhaseTrigger           = "trigger"
	PhaseDecided           = "decided"
	PhaseCapacityRequested = "capacity_requested"
	PhaseHostsRunning      = "hosts_running"
	PhaseNodesReady        = "nodes_ready"
	PhasePlaced            = "allocations_placed"
	PhaseHealthy           = "allocations_healthy"
)

// Journal event kinds the controller writes.
const (
	KindPhase         = "activity.phase"
	KindIntent        = "intent.claim"
	KindClaimed       = "capacity.claimed"
	KindClaimFailed   = "capacity.failed"
	KindUnmet         = "capacity.unmet"
	KindMatched       = "capacity.matched"
	KindMissed        = "activity.missed_deadline"
	KindActivityEnded = "activity.done"
)

// Outcomes of a scale-out, in its activity.done event's data and in
// spillway_scaleouts_total{outcome}.
const (
	// OutcomeDone: every allocation of the demand got a host.
	OutcomeDone = "done"
	// OutcomePartial: the activity got hosts, but work is still queued
	// that no tier could give more for by its deadline plus grace.
	OutcomePartial = "partial"
	// OutcomeUnmet: the activity got no host at all, for work that no
	// host can take (larger than any host) or that no tier could give for
	// by its deadline plus grace.
	OutcomeUnmet = "unmet"
)

// Failpoints: where Config.Failpoint is called.
const (
	// FailAfterClaimJournaled is after a cloud claim's intent is durable,
	// before the provider is called.
	FailAfterClaimJournaled = "after-claim-journaled"
	// FailAfterCloudCall is after the provider launched a claim's hosts,
	// before the ledger records them.
	FailAfterCloudCall = "after-cloud-call"
	// FailDuringDrain is after a rented host's drain was asked of Nomad,
	// before it is terminated.
	FailDuringDrain = "during-drain"
)

func (c *Controller) failpoint(point string) {
	if c.cfg.Failpoint != nil {
		c.cfg.Failpoint(point)
	}
}

// Journal records events and reads them back.
type Journal interface {
	Append(ctx context.Context, evs ...journal.Event) ([]journal.Event, error)
	journal.Querier
}

// SharedPool is the shared internal pool the controller borrows from;
// internalpool.Provider is the real one.
type SharedPool interface {
	Create(ctx context.Context, claim providers.Claim) ([]providers.Host, error)
	// Return drains a borrowed host within deadline, then gives it back:
	// the ledger closes its loan with reason (pools.ReasonReturned,
	// ReasonLeaseExpired, ReasonReclaimed). A host that is not lent is a
	// NotFoundError.
	Return(ctx context.Context, host providers.Host, deadline time.Duration, reason string) error
	// Free is how many shared hosts may be borrowed now.
	Free(ctx context.Context) (int, error)
	// Verify compares the ledger with Nomad's node meta; Repair makes
	// Nomad agree with the ledger.
	Verify(ctx context.Context) ([]pools.Discrepancy, error)
	Repair(ctx context.Context, ds []pools.Discrepancy) error
}

// Config wires a controller.
type Config struct {
	// Cluster is the live model every read of Nomad goes through;
	// Orchestrator makes every change.
	Cluster      cluster.Source
	Orchestrator cluster.Orchestrator
	Pools        *pools.Config
	Ledger       *pools.Ledger
	// Shared is the shared pool; nil without one.
	Shared SharedPool
	// Clouds are the providers of the cloud pools, by pool name. A cloud
	// pool without one is never rented from.
	Clouds map[string]providers.Provider
	// Policies are the policies in force: the one governing a task group
	// gives a scale-out's deadline (and its business unit, when the group
	// does not name one). Nil means none.
	Policies func() *policies.Set
	// Traffic reads a service's traffic per allocation when its policy
	// gives a query (the app runs it on the metric source); nil, only
	// fixed figures are known.
	Traffic func(ctx context.Context, p *policies.Policy) (bandwidth.Bandwidth, error)
	// OrphanGrace is how old an instance tagged as this cluster's must be,
	// and how far apart the two passes that saw it unowned, before the
	// collector terminates it for want of a journaled claim. Default 10m.
	OrphanGrace time.Duration
	// DownGrace is how long a rented host whose node was ready and is not
	// any more is kept before it is terminated. Default 5m.
	DownGrace time.Duration
	// ActivityGrace is how long past its deadline a scale-out keeps asking
	// for capacity no tier could give: then it ends, partial or unmet
	// (config scale_out.grace). Default 5m.
	ActivityGrace time.Duration
	// ClusterName is the spillway:cluster tag of this control plane's
	// instances, for what the collector says.
	ClusterName string
	Journal     Journal
	// Clock drives every wait and loop; default the real clock.
	Clock  clockwork.Clock
	Logger *slog.Logger
	// Failpoint, when set, is called at named points of a scale operation
	// (FailAfterClaimJournaled, FailAfterCloudCall, FailDuringDrain); the
	// crash tests make it kill the process there.
	Failpoint func(point string)
	// Registerer receives the controller's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Poll bounds how long a wait goes without looking again when the
	// model does not change (cloud states change outside it). Default 500ms.
	Poll time.Duration
}

// Controller is the core the controllers share: configuration, the
// activities in flight, paused pools, what the ladder remembers and the
// learnt times-to-ready.
type Controller struct {
	cfg    Config
	phases *prometheus.HistogramVec
	missed prometheus.Counter
	fixes  *prometheus.CounterVec
	unmetC prometheus.Counter
	ends   *prometheus.CounterVec
	mu     sync.Mutex
	active map[policies.Target]string // target -> activity in flight
	// flights are the activities in flight (scale-outs and spot
	// interruptions) by ID, with the capacity each concerns: scale-in and
	// the collector wait only for those (inflight.go).
	flights map[string]*inflight
	// waitedFor is, per business unit, the activity a spare host of it
	// was last journaled waiting for.
	waitedFor map[string]string
	paused    map[string]PoolPause     // pools the controller takes nothing from
	links     *links                   // dedicated lines: bandwidths set at run time (links.go)
	hints     map[policies.Target]Hint // what the scaler said of a count it raised
	wg        sync.WaitGroup
	// memory remembers offerings that ran out, for the ladder.
	memory *pools.OfferingMemory
	ready  readiness
	// skipped remembers the queued groups the provisioner cannot serve,
	// so it says why once.
	skipped map[policies.Target]string
	// ended remembers the demand cycles whose scale-out ended partial or
	// unmet while work stayed queued: no new activity starts for the
	// group until its demand changes (provisioning.go).
	ended map[policies.Target]cycle
	// unserved holds the queued groups no tier can take, and what that
	// was judged on (unservable.go).
	unserved      map[policies.Target]unservableEntry
	unservedGauge prometheus.Gauge
	// rates paces the launches of each cloud account.
	rates launchRates
	// listings are the pools' last listings of rented hosts, shared by
	// the activities that follow hosts of a pool (hostStates).
	listings  listings
	rateGauge *prometheus.GaugeVec
	// health is each rented host's, by instance; readyOnce is when a host
	// was last seen ready, from the journal (host.ready) and the follows.
	health    map[string]*hostHealth
	readyOnce map[string]time.Time
	// seen is when a rented host's Nomad node was first seen, from the
	// journal (host.registered) and the passes: a host seen once and
	// missing now is unknown (the down-host rule), not one that never
	// registered.
	seen map[string]time.Time
	// givingBack is the host (instance ID, or node ID of a borrowed host)
	// each business unit's give-back task drains and returns now
	// (giveBackTask); giveBacks counts them.
	givingBack map[string]string
	giveBacks  prometheus.Gauge
	// lending is the activity of each borrowed host whose lease ended or
	// whose owner reclaimed it that a return task replaces and gives back
	// now (lending.go), by node ID.
	lending map[string]string
	// surges are the task groups whose count is raised for the drain of a
	// lent host being given back (surge.go): held until lowered again.
	surges     map[policies.Target]*surge
	surgeGauge prometheus.Gauge
	// orphans is when the collector first saw each unowned instance;
	// refused what it would not touch; born the journal's first event.
	orphans      map[string]time.Time
	refused      Refused
	refusedKey   string
	refusedGauge prometheus.Gauge
	born         time.Time
	// noticed holds the spot hosts whose interruption notices were taken
	// up.
	noticed       map[string]string
	interruptions *prometheus.CounterVec
}

// New builds a controller.
func New(cfg Config) *Controller {
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 500 * time.Millisecond
	}
	if cfg.OrphanGrace <= 0 {
		cfg.OrphanGrace = 10 * time.Minute
	}
	if cfg.DownGrace <= 0 {
		cfg.DownGrace = 5 * time.Minute
	}
	if cfg.ActivityGrace <= 0 {
		cfg.ActivityGrace = DefaultActivityGrace
	}
	if cfg.ClusterName == "" {
		cfg.ClusterName = "spillway"
	}
	if cfg.Policies == nil {
		cfg.Policies = func() *policies.Set { return &policies.Set{} }
	}
	if cfg.Pools == nil {
		cfg.Pools = &pools.Config{}
	}
	c := &Controller{
		cfg:      cfg,
		active:   map[policies.Target]string{},
		paused:   map[string]PoolPause{},
		links:    newLinks(),
		hints:    map[policies.Target]Hint{},
		skipped:  map[policies.Target]string{},
		ended:    map[policies.Target]cycle{},
		unserved: map[policies.Target]unservableEntry{},
		unservedGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_unservable_task_groups",
			Help: "Queued task groups that no tier can take (an allocation larger than every offering of every pool): reported, not rented for.",
		}),
		health:     map[string]*hostHealth{},
		readyOnce:  map[string]time.Time{},
		seen:       map[string]time.Time{},
		givingBack: map[string]string{},
		lending:    map[string]string{},
		surges:     map[policies.Target]*surge{},
		surgeGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_surges_in_progress",
			Help: "Task groups whose count is raised now for the drain of a lent host being given back (a lease that ended, a reclaim), so their healthy allocations never dip below the count before it; lowered again after the drain.",
		}),
		giveBacks: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_give_backs_in_progress",
			Help: "Hosts being drained and given back now, each a task beside the control loop (one per business unit at most).",
		}),
		orphans:   map[string]time.Time{},
		refused:   Refused{Cluster: cfg.ClusterName},
		flights:   map[string]*inflight{},
		waitedFor: map[string]string{},
		noticed:   map[string]string{},
		interruptions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_spot_interruptions_total",
			Help: "Spot interruption notices of rented hosts the controller took up, by pool.",
		}, []string{"pool"}),
		refusedGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_gc_refused_instances",
			Help: "Instances tagged as this cluster's, no journaled claim naming them, that the collector refuses to terminate because they are older than the journal (a lost or new journal).",
		}),
		memory: pools.NewOfferingMemory(pools.DefaultUnavailableFor),
		phases: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spillway_scaleout_phase_seconds",
			Help:    "Seconds from a scale-out's trigger to each of its phases, by phase and pool.",
			Buckets: []float64{1, 5, 10, 20, 30, 60, 90, 120, 180, 240, 300, 420, 600},
		}, []string{"phase", "pool"}),
		missed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spillway_scaleout_deadline_missed_total",
			Help: "Scale-outs whose allocations were not healthy by the policy's deadline.",
		}),
		unmetC: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spillway_capacity_unmet_total",
			Help: "Rounds of a scale-out in which no tier could give all the hosts it needed.",
		}),
		ends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_scaleouts_total",
			Help: "Scale-outs that ended, by outcome: done (every allocation got a host), partial (some hosts, work still queued), unmet (no host).",
		}, []string{"outcome"}),
		rateGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spillway_cloud_launch_rate",
			Help: "Launches per second Spillway allows itself on a cloud account, lowered when the cloud throttles and raised again as launches go through.",
		}, []string{"provider"}),
		fixes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_reconcile_fixes_total",
			Help: "Differences between the lending ledger and Nomad the reconciler repaired (or failed to).",
		}, []string{"result"}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(c.phases, c.missed, c.fixes, c.unmetC, c.ends, c.unservedGauge, c.rateGauge, c.refusedGauge, c.interruptions, c.giveBacks, c.surgeGauge, newLinkCollector(c))
	}
	return c
}

func (c *Controller) now() time.Time { return c.cfg.Clock.Now() }

// Request is one scale-out to follow.
type Request struct {
	Activity string
	Target   policies.Target
	// BusinessUnit runs the service; borrowed hosts are lent to it.
	BusinessUnit string
	// Triggered is when the trigger arrived; Decided when the count rose.
	Triggered, Decided time.Time
	// Deadline is when the allocations must be healthy.
	Deadline time.Time
	// resumed marks an activity a new term took over after a crash; its
	// trigger and decided phases are journaled already.
	resumed bool
	// observed marks queued work no decision of Spillway's announced (an
	// operator's `nomad job scale`, a deploy): its activity is journaled
	// only once it needs capacity, so work Nomad places on its own within
	// moments leaves no activity behind.
	observed bool
	// cause and decision, when set, say what the trigger and the decision
	// were, when that was not a count raised (a spot interruption).
	cause, decision string
	// replaces, when set, is the borrowed host (node ID) whose allocations
	// the scale-out replaces before the host is given back (lending.go):
	// Resume leaves it to the Leases pass.
	replaces string
}

// Wait blocks until every activity started by Start has ended.
func (c *Controller) Wait() { c.wg.Wait() }

// Active returns the activities in flight, by target.
func (c *Controller) Active() map[policies.Target]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[policies.Target]string, len(c.active))
	for k, v := range c.active {
		out[k] = v
	}
	return out
}

// Start runs a scale-out activity in the background, unless one is already
// in flight for the target (it sees the new demand too). It reports
// whether it started one.
func (c *Controller) Start(ctx context.Context, r Request) bool {
	release, busy := c.holdTarget(r.Target, r.Activity)
	if busy {
		return false
	}
	untrack := c.track(r.Activity, "the scale-out of "+r.Target.String(), r.BusinessUnit)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer untrack()
		defer release()
		if err := c.ScaleOut(ctx, r); err != nil {
			c.cfg.Logger.Error("scale-out", "activity", r.Activity, "target", r.Target.String(), "err", err)
		}
	}()
	return true
}

// holdTarget marks activity act as t's scale-out in flight, so the
// provisioner starts none beside it, unless one already is or another
// activity's surge holds t (surge.go); the func it returns releases what
// it marked (nothing, when t was busy).
func (c *Controller) holdTarget(t policies.Target, act string) (release func(), busy bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, busy := c.active[t]; busy || c.busyLocked(t, act) {
		return func() {}, true
	}
	c.active[t] = act
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.active[t] == act {
			delete(c.active, t)
		}
	}, false
}

// timeline records the phases of one activity, each once.
type timeline struct {
	c    *Controller
	r    Request
	pool string
	mu   sync.Mutex
	done map[string]bool
}

func (tl *timeline) phase(ctx context.Context, phase string, at time.Time, msg string) {
	tl.phaseWith(ctx, phase, at, msg, nil)
}

// phaseWith is phase with more fields in the event's data.
func (tl *timeline) phaseWith(ctx context.Context, phase string, at time.Time, msg string, extra map[string]any) {
	tl.mu.Lock()
	if tl.done == nil {
		tl.done = map[string]bool{}
	}
	seen := tl.done[phase]
	tl.done[phase] = true
	pool := tl.pool
	tl.mu.Unlock()
	if seen {
		return
	}
	secs := at.Sub(tl.r.Triggered).Seconds()
	tl.c.phases.WithLabelValues(phase, pool).Observe(secs)
	fields := map[string]any{"phase": phase, "seconds": secs, "pool": pool, "target": tl.r.Target}
	for k, v := range extra {
		fields[k] = v
	}
	if phase == PhaseTrigger {
		// Enough to resume the activity after a crash (Resume).
		fields["business_unit"], fields["triggered"], fields["decided"], fields["deadline"] = tl.r.BusinessUnit, tl.r.Triggered, tl.r.Decided, tl.r.Deadline
		if tl.r.replaces != "" {
			fields["replaces"] = tl.r.replaces
		}
	}
	data, _ := json.Marshal(fields)
	tl.c.record(ctx, journal.Event{Time: at, Kind: KindPhase, Subject: tl.r.Target.String(), Activity: tl.r.Activity,
		Actor: "controller", Message: fmt.Sprintf("%s after %.1fs: %s", phase, secs, msg), Data: data})
}

// begin journals the trigger and decided phases, once.
func (tl *timeline) begin(ctx context.Context) {
	if tl.r.resumed {
		return
	}
	trigger, decided := "the trigger arrived", "the count was raised"
	if tl.r.cause != "" {
		trigger, decided = tl.r.cause, tl.r.decision
	}
	tl.phase(ctx, PhaseTrigger, tl.r.Triggered, trigger)
	tl.phase(ctx, PhaseDecided, tl.r.Decided, decided)
}

// begun reports whether the activity has journaled anything.
func (tl *timeline) begun() bool {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return len(tl.done) > 0 || tl.r.resumed
}

func (tl *timeline) setPool(p string) {
	tl.mu.Lock()
	tl.pool = p
	tl.mu.Unlock()
}

func (c *Controller) record(ctx context.Context, ev journal.Event) {
	if _, err := c.cfg.Journal.Append(ctx, ev); err != nil {
		c.cfg.Logger.Error("journaling", "kind", ev.Kind, "err", err)
	}
}

// await waits until cond holds on a live snapshot of the cluster, looking
// again whenever the model changes and at least every Poll, and returns
// the snapshot and when. A snapshot that is not live is unknown: cond is
// not asked.
func (c *Controller) await(ctx context.Context, cond func(*cluster.Snapshot) (bool, error)) (*cluster.Snapshot, time.Time, error) {
	var last error
	for {
		s := c.cfg.Cluster.Snapshot()
		if s.Live() {
			ok, err := cond(s)
			if ok {
				return s, c.now(), nil
			}
			if err != nil {
				last = err
			}
		}
		if err := c.pause(ctx, s); err != nil {
			if last != nil {
				return s, time.Time{}, fmt.Errorf("%w (last error: %v)", err, last)
			}
			return s, time.Time{}, err
		}
	}
}

// pause returns when the model changes after s, after Poll, or with ctx's
// error.
func (c *Controller) pause(ctx context.Context, s *cluster.Snapshot) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.Changed():
	case <-c.cfg.Clock.After(c.cfg.Poll):
	}
	return nil
}

// sleep waits d on the clock, or until ctx ends.
func (c *Controller) sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-c.cfg.Clock.After(d):
		return nil
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
