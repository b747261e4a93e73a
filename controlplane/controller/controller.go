// Package controller owns scale-out capacity. When the scaler raises a task
// group's count, Nomad places what fits at once and queues the rest; the
// controller reads that demand, sizes the hosts it needs, plans them on the
// capacity ladder, journals each intent before it acts, borrows hosts from
// the shared internal pool, and follows the activity until its allocations
// are healthy. Every activity is a timeline of named phases, journaled and
// exported as spillway_scaleout_phase_seconds{phase,pool}.
//
// The tiers are asked in parallel: hosts borrowed from the shared pool are
// ready at once, rented cloud hosts boot the pool's Ignition config and are
// followed until they are ready Nomad nodes serving the business unit.
package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	nomad "github.com/hashicorp/nomad/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillwayhq/spillway/controlplane/demand"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/policies"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/internalpool"
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
	KindMissed        = "activity.missed_deadline"
	KindActivityEnded = "activity.done"
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

// Config wires a controller.
type Config struct {
	Nomad  *nomad.Client
	Pools  *pools.Config
	Ledger *pools.Ledger
	Shared *internalpool.Provider // nil without a shared pool
	// Clouds are the providers of the cloud pools, by pool name. A cloud
	// pool without one is never rented from.
	Clouds map[string]providers.Provider
	// OrphanGrace is how old an instance tagged as this cluster's must be
	// before the reconciler terminates it for want of a journaled claim.
	// Default 10m.
	OrphanGrace time.Duration
	Journal     Journal
	Now         func() time.Time
	Logger      *slog.Logger
	// Failpoint, when set, is called at named points of a scale operation
	// (FailAfterClaimJournaled, FailAfterCloudCall, FailDuringDrain); the
	// crash tests make it kill the process there.
	Failpoint func(point string)
	// Registerer receives the phase histogram; nil registers nothing.
	Registerer prometheus.Registerer
	// Poll is how often the controller re-reads Nomad while it waits. Default 500ms.
	Poll time.Duration
}

// Controller runs scale-out activities.
type Controller struct {
	cfg    Config
	phases *prometheus.HistogramVec
	missed prometheus.Counter
	fixes  *prometheus.CounterVec
	mu     sync.Mutex
	active map[policies.Target]string // target -> activity in flight
	paused map[string]PoolPause       // pools the controller takes nothing from
	wg     sync.WaitGroup
	// memory remembers offerings that ran out, for the ladder.
	memory *pools.OfferingMemory
	ready  readiness
}

// New builds a controller.
func New(cfg Config) *Controller {
	if cfg.Now == nil {
		cfg.Now = time.Now
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
	c := &Controller{
		cfg:    cfg,
		active: map[policies.Target]string{},
		paused: map[string]PoolPause{},
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
		fixes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_reconcile_fixes_total",
			Help: "Differences between the lending ledger and Nomad the reconciler repaired (or failed to).",
		}, []string{"result"}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(c.phases, c.missed, c.fixes)
	}
	return c
}

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
}

// Wait blocks until every activity started by Start has ended.
func (c *Controller) Wait() { c.wg.Wait() }

// Start runs a scale-out activity in the background, unless one is already
// in flight for the target (it will see the new count too).
func (c *Controller) Start(ctx context.Context, r Request) bool {
	c.mu.Lock()
	if _, busy := c.active[r.Target]; busy {
		c.mu.Unlock()
		return false
	}
	c.active[r.Target] = r.Activity
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() {
			c.mu.Lock()
			delete(c.active, r.Target)
			c.mu.Unlock()
		}()
		if err := c.ScaleOut(ctx, r); err != nil {
			c.cfg.Logger.Error("scale-out", "activity", r.Activity, "target", r.Target.String(), "err", err)
			if ctx.Err() == nil { // not a shutdown or a lost term: the next leader must not resume it
				c.record(context.WithoutCancel(ctx), journal.Event{Time: c.cfg.Now(), Kind: KindActivityEnded, Subject: r.Target.String(), Activity: r.Activity,
					Actor: "controller", Message: fmt.Sprintf("scale-out ended unfinished: %v", err)})
			}
		}
	}()
	return true
}

// settleTime is how long allocations may stay queued after their hosts
// are ready before the activity looks for more hosts: Nomad places queued
// allocations within a second or two of a node becoming ready.
const settleTime = 5 * time.Second

// timeline records the phases of one activity, each once.
type timeline struct {
	c    *Controller
	r    Request
	pool string
	mu   sync.Mutex
	done map[string]bool
}

func (tl *timeline) phase(ctx context.Context, phase string, at time.Time, msg string) {
	tl.mu.Lock()
	if tl.done == nil {
		tl.done = map[string]bool{}
	}
	seen := tl.done[phase]
	tl.done[phase] = true
	tl.mu.Unlock()
	if seen {
		return
	}
	secs := at.Sub(tl.r.Triggered).Seconds()
	tl.c.phases.WithLabelValues(phase, tl.pool).Observe(secs)
	fields := map[string]any{"phase": phase, "seconds": secs, "pool": tl.pool, "target": tl.r.Target}
	if phase == PhaseTrigger {
		// Enough to resume the activity after a crash (Resume).
		fields["business_unit"], fields["triggered"], fields["decided"], fields["deadline"] = tl.r.BusinessUnit, tl.r.Triggered, tl.r.Decided, tl.r.Deadline
	}
	data, _ := json.Marshal(fields)
	tl.c.record(ctx, journal.Event{Time: at, Kind: KindPhase, Subject: tl.r.Target.String(), Activity: tl.r.Activity,
		Actor: "controller", Message: fmt.Sprintf("%s after %.1fs: %s", phase, secs, msg), Data: data})
}

func (c *Controller) record(ctx context.Context, ev journal.Event) {
	if _, err := c.cfg.Journal.Append(ctx, ev); err != nil {
		c.cfg.Logger.Error("journaling", "kind", ev.Kind, "err", err)
	}
}

// ScaleOut follows one scale-out: it waits for Nomad's placement, finds
// hosts for what is queued, and waits for the allocations to be healthy.
func (c *Controller) ScaleOut(ctx context.Context, r Request) error {
	tl := &timeline{c: c, r: r, pool: "none"}
	if !r.resumed {
		tl.phase(ctx, PhaseTrigger, r.Triggered, "the trigger arrived")
		tl.phase(ctx, PhaseDecided, r.Decided, "the count was raised")
	}
	ctx, cancel := context.WithDeadline(ctx, r.Deadline.Add(5*time.Minute))
	defer cancel()

	d, err := c.settled(ctx, r.Target)
	if err != nil {
		return err
	}
	a := &activity{c: c, tl: tl, d: d, exclude: map[string]string{}}
	if err := a.run(ctx); err != nil {
		return err
	}
	lastRun := c.cfg.Now()
	placedAt, err := c.until(ctx, func() (bool, error) {
		d, err := demand.Read(ctx, c.cfg.Nomad, r.Target)
		if err != nil {
			return false, err
		}
		if d.Queued == 0 && d.Running+d.Starting >= d.Count {
			return true, nil
		}
		// Still queued a while after the hosts came: the count rose again
		// (the scaler does not start a second activity for a target), or a
		// host was lost. Find hosts for what is queued now.
		if d.Queued > 0 && c.cfg.Now().Sub(lastRun) > settleTime && a.round < maxRounds {
			a.d = d
			err := a.run(ctx)
			lastRun = c.cfg.Now()
			return false, err
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %s to be placed: %w", r.Target, err)
	}
	tl.phase(ctx, PhasePlaced, placedAt, "every allocation has a host")
	healthyAt, err := c.until(ctx, func() (bool, error) { return c.healthy(ctx, r.Target) })
	if err != nil {
		return fmt.Errorf("waiting for %s to be healthy: %w", r.Target, err)
	}
	tl.phase(ctx, PhaseHealthy, healthyAt, "every allocation is healthy")
	took := healthyAt.Sub(r.Triggered)
	if healthyAt.After(r.Deadline) {
		c.missed.Inc()
		c.record(ctx, journal.Event{Time: healthyAt, Kind: KindMissed, Subject: r.Target.String(), Activity: r.Activity, Actor: "controller",
			Message: fmt.Sprintf("healthy after %s, past the deadline of %s", took.Round(time.Second), r.Deadline.Sub(r.Triggered).Round(time.Second))})
	}
	c.record(ctx, journal.Event{Time: healthyAt, Kind: KindActivityEnded, Subject: r.Target.String(), Activity: r.Activity, Actor: "controller",
		Message: fmt.Sprintf("scale-out done in %s", took.Round(100*time.Millisecond))})
	return nil
}

// settled waits until Nomad has evaluated the new count: every allocation
// is placed, starting or queued.
func (c *Controller) settled(ctx context.Context, t policies.Target) (demand.Demand, error) {
	var d demand.Demand
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := c.until(wait, func() (bool, error) {
		var err error
		d, err = demand.Read(ctx, c.cfg.Nomad, t)
		return err == nil && d.Running+d.Starting+d.Queued >= d.Count, err
	})
	if err != nil {
		return d, fmt.Errorf("waiting for nomad to evaluate %s: %w", t, err)
	}
	return d, nil
}

// until polls cond until it is true, and returns when.
func (c *Controller) until(ctx context.Context, cond func() (bool, error)) (time.Time, error) {
	var last error
	for {
		ok, err := cond()
		if ok {
			return c.cfg.Now(), nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return time.Time{}, fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
			}
			return time.Time{}, ctx.Err()
		case <-time.After(c.cfg.Poll):
		}
	}
}

// healthy reports whether every allocation of the group's count is running
// and, where Nomad tracks deployment health, healthy.
func (c *Controller) healthy(ctx context.Context, t policies.Target) (bool, error) {
	q := (&nomad.QueryOptions{Namespace: t.Namespace}).WithContext(ctx)
	allocs, _, err := c.cfg.Nomad.Jobs().Allocations(t.Job, false, q)
	if err != nil {
		return false, err
	}
	job, _, err := c.cfg.Nomad.Jobs().Info(t.Job, q)
	if err != nil {
		return false, err
	}
	want := 0
	for _, g := range job.TaskGroups {
		if g.Name != nil && *g.Name == t.Group && g.Count != nil {
			want = *g.Count
		}
	}
	n := 0
	for _, a := range allocs {
		if a.TaskGroup != t.Group || a.ClientStatus != nomad.AllocClientStatusRunning || a.DesiredStatus != nomad.AllocDesiredStatusRun {
			continue
		}
		if a.DeploymentStatus != nil && a.DeploymentStatus.Healthy != nil && !*a.DeploymentStatus.Healthy {
			continue
		}
		if a.DeploymentStatus != nil && a.DeploymentStatus.Healthy == nil {
			continue // health not decided yet
		}
		n++
	}
	return n >= want, nil
}

func (c *Controller) unmet(ctx context.Context, r Request, d demand.Demand, hosts int, why string) {
	data, _ := json.Marshal(map[string]any{"queued": d.Unplaced(), "hosts": hosts, "blocked": d.Blocked.Reason()})
	c.record(ctx, journal.Event{Time: c.cfg.Now(), Kind: KindUnmet, Subject: r.Target.String(), Activity: r.Activity, Actor: "controller", Data: data,
		Message: fmt.Sprintf("%d queued allocations of %s have no host: %s", d.Unplaced(), r.Target, why)})
}

// sharedHostSize is the allocatable size of a shared-pool host (the
// largest, so a mixed pool does not under-size).
func sharedHostSize(shared *pools.SharedPool, nodes []pools.NodeUsage) (demand.Size, error) {
	var best demand.Size
	for _, n := range nodes {
		if shared.Selector.Matches(n.NodePool, n.NodeClass, n.Meta) && int(n.CPU) > best.CPUMHz {
			best = demand.Size{CPUMHz: int(n.CPU), MemoryMB: int(n.MemoryMB)}
		}
	}
	if best.CPUMHz == 0 {
		return best, fmt.Errorf("no host of the shared pool %s is known to nomad", shared.Name)
	}
	return best, nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
