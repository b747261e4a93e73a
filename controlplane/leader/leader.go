// Package leader elects the one replica of the control plane that acts,
// through a lease in the shared PostgreSQL journal (journal.Lease). Every
// replica runs an Elector; the one holding the lease runs the leader's work
// (scaling, renting, reconciling), the others only serve reads and wait.
//
// The lease is taken and renewed on the database's clock, so the replicas'
// clocks do not matter. Each term carries a fencing token that only grows:
// the journal refuses a write whose token is not the live term's, and the
// leader's Nomad and cloud calls are guarded by the same token (Guard). A
// leader that cannot renew stops its work by the TTL, measured on its own
// monotonic clock from before it asked, which ends no later than the
// database's; and a deposed leader's late write (after a pause or a
// partition) is refused by the journal, so the action it intended never
// happens: Spillway journals an intent before it acts.
//
// A follower tries again when the holder's lease runs out (the database
// tells it how long that is), so a replica that dies holding the lease is
// replaced within the TTL plus one renewal interval; one that stops
// cleanly releases the lease, which the followers hear about at once
// (PostgreSQL's NOTIFY).
package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillwayhq/spillway/controlplane/config"
	"github.com/spillwayhq/spillway/controlplane/journal"
)

// Defaults.
const (
	// DefaultElection names the lease's row in the journal.
	DefaultElection = "spillway"
	// DefaultTTL is the lease: a leader that has not renewed it for this
	// long stops acting, and another replica may take over.
	DefaultTTL = 10 * time.Second
	// DefaultRetryInterval bounds how long a follower waits between
	// attempts when it cannot tell when the lease runs out (an error).
	DefaultRetryInterval = 2 * time.Second

	// MinTTL is the shortest lease: every renewal is a database round trip
	// that must fit in a third of it with room to spare.
	MinTTL = time.Second
)

// ErrNotLeader is wrapped by Token and the guards when this replica does
// not act: it follows, or its lease ran out on its own clock.
var ErrNotLeader = errors.New("this replica is not the acting leader")

// Lease is the election's lease; *journal.Lease is the real one.
type Lease interface {
	Election() string
	Acquire(ctx context.Context, holder string, ttl time.Duration) (journal.Grant, error)
	Renew(ctx context.Context, term int64, ttl time.Duration) error
	Release(ctx context.Context, term int64) error
	// Wait returns after d, earlier when the lease is released, or when
	// ctx ends.
	Wait(ctx context.Context, d time.Duration)
}

var _ Lease = (*journal.Lease)(nil)

// Options configures an Elector.
type Options struct {
	// Lease is the election's lease in the shared journal.
	Lease Lease
	// Identity names this replica in the lease and the logs (default:
	// $NOMAD_ALLOC_ID, else hostname:pid).
	Identity string
	// TTL is the lease (default DefaultTTL). RenewInterval is how often
	// the leader renews it (default TTL/3; at most TTL/2).
	TTL, RenewInterval time.Duration
	// RetryInterval: see DefaultRetryInterval.
	RetryInterval time.Duration
	// Clock measures the lease on this replica (default: the real clock;
	// its monotonic reading, so a wall-clock jump does not move it).
	Clock  clockwork.Clock
	Logger *slog.Logger
	// Registerer receives spillway_leader, spillway_leader_term,
	// spillway_leader_transitions_total, spillway_leader_lease_errors_total,
	// spillway_leader_handover_seconds and spillway_leader_fenced_total;
	// nil registers nothing.
	Registerer prometheus.Registerer
}

// Term is one term of this replica's leadership, as the work sees it.
type Term struct {
	// Token is the term's fencing token.
	Token int64
	// Began is when this replica took the lease (its own clock).
	Began time.Time
	// Previous is how the term before ended, if there was one.
	Previous *journal.Handover
}

// Elector campaigns for leadership and runs the leader's work while it
// holds the lease. Its methods are safe for concurrent use. It implements
// journal.Fence.
type Elector struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	leading  bool
	term     int64
	deadline time.Time // of the lease, on this replica's clock
	holder   string    // the leader as last seen
	refused  chan struct{}

	lastWarn    time.Time // of a failed acquire, to log one a minute
	lastWarnErr string

	gauge       prometheus.Gauge
	termGauge   prometheus.Gauge
	handover    prometheus.Gauge
	transitions *prometheus.CounterVec
	errors      *prometheus.CounterVec
	fenced      *prometheus.CounterVec
}

var _ journal.Fence = (*Elector)(nil)

// New returns an Elector; it campaigns once Run is called.
func New(opts Options) (*Elector, error) {
	if opts.Lease == nil {
		return nil, errors.New("leader election needs a lease in the journal")
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultTTL
	}
	if opts.TTL < MinTTL {
		return nil, fmt.Errorf("leader election: the lease TTL %s is below the minimum of %s", opts.TTL, MinTTL)
	}
	if opts.RenewInterval == 0 {
		opts.RenewInterval = opts.TTL / 3
	}
	if opts.RenewInterval <= 0 || opts.RenewInterval > opts.TTL/2 {
		return nil, fmt.Errorf("leader election: renew the lease at most every TTL/2 (%s), not every %s", opts.TTL/2, opts.RenewInterval)
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = DefaultRetryInterval
	}
	if opts.Identity == "" {
		opts.Identity = DefaultIdentity()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	e := &Elector{
		opts:    opts,
		log:     opts.Logger.With("election", opts.Lease.Election(), "identity", opts.Identity),
		refused: make(chan struct{}, 1),
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_leader",
			Help: "Whether this replica is the leader (1), which acts, or a follower (0), which serves reads.",
		}),
		termGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_leader_term",
			Help: "The fencing token of the term this replica leads in; 0 while it follows.",
		}),
		handover: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_leader_handover_seconds",
			Help: "When this replica last took over the lease: the time from the previous leader's last renewal, on the database's clock.",
		}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_leader_transitions_total",
			Help: "Changes of this replica's leadership, by the state entered (leader or follower).",
		}, []string{"to"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_leader_lease_errors_total",
			Help: "Failed calls on the leader lease other than finding it held, by operation.",
		}, []string{"op"}),
		fenced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_leader_fenced_total",
			Help: "Writes refused because this replica did not hold the live term, by target (journal, nomad or a cloud provider).",
		}, []string{"target"}),
	}
	e.transitions.WithLabelValues("leader")
	e.transitions.WithLabelValues("follower")
	e.fenced.WithLabelValues("journal")
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{e.gauge, e.termGauge, e.handover, e.transitions, e.errors, e.fenced} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("registering the leader metrics: %w", err)
			}
		}
	}
	return e, nil
}

// DefaultIdentity is $NOMAD_ALLOC_ID when running under Nomad, else
// hostname:pid.
func DefaultIdentity() string {
	if id := os.Getenv("NOMAD_ALLOC_ID"); id != "" {
		return id
	}
	host, _ := os.Hostname()
	return host + ":" + strconv.Itoa(os.Getpid())
}

// IsLeader reports whether this replica holds the lease and its work
// runs. It turns false before the work's context is cancelled.
func (e *Elector) IsLeader() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leading
}

// Leader is the identity of the leader as this replica last saw it: its
// own when leading, "" when none is known.
func (e *Elector) Leader() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.holder
}

// Identity is this replica's name in the election.
func (e *Elector) Identity() string { return e.opts.Identity }

// TTL is the lease. A replica that dies holding it is replaced within
// TTL + RenewInterval; one that stops cleanly, at once.
func (e *Elector) TTL() time.Duration { return e.opts.TTL }

// Token implements journal.Fence: the fencing token of the term this
// replica leads in, or an error wrapping ErrNotLeader when it does not
// lead, or when the lease ran out on this replica's clock (after a pause,
// say) even if the step down has not happened yet.
func (e *Elector) Token() (int64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case !e.leading:
		return 0, ErrNotLeader
	case !e.opts.Clock.Now().Before(e.deadline):
		return 0, fmt.Errorf("%w: the lease of term %d ran out %s ago on this replica's clock", ErrNotLeader, e.term, e.opts.Clock.Since(e.deadline).Round(time.Millisecond))
	}
	return e.term, nil
}

// Refused implements journal.Fence: the journal refused a write with this
// replica's token, so a newer term began. The leader steps down at once.
func (e *Elector) Refused(err error) {
	e.fenced.WithLabelValues("journal").Inc()
	e.log.Warn("the journal refused a write of this replica's term; stepping down", "err", err)
	select {
	case e.refused <- struct{}{}:
	default:
	}
}

// Guard returns a check for the calls of one target ("nomad", or a cloud
// provider's name) that only the acting leader may make: nil while it
// acts, else an error wrapping ErrNotLeader, counted in
// spillway_leader_fenced_total.
func (e *Elector) Guard(target string) func(context.Context) error {
	refused := e.fenced.WithLabelValues(target)
	return func(context.Context) error {
		if _, err := e.Token(); err != nil {
			refused.Inc()
			return fmt.Errorf("not calling %s: %w", target, err)
		}
		return nil
	}
}

// Run campaigns until ctx ends. Whenever it holds the lease it calls work
// with a context that is cancelled as soon as leadership ends: ctx ended,
// the lease was lost (another term began, the journal refused the token,
// or no renewal succeeded within the TTL), or work returned. Run waits for
// work to return before it releases the lease, so the next leader never
// overlaps it; work must therefore return promptly once its context is
// cancelled. If work returns on its own, the lease is released and Run
// campaigns again after RetryInterval. Run returns nil once ctx ends.
func (e *Elector) Run(ctx context.Context, work func(ctx context.Context, term Term)) error {
	defer e.setFollower("stopped")
	for {
		wait := e.opts.RetryInterval
		start := e.opts.Clock.Now()
		g, err := e.acquire(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			e.warnAcquire(err)
		case g.Acquired:
			e.lead(ctx, g, start, work)
			if ctx.Err() != nil {
				return nil
			}
		default:
			e.mu.Lock()
			e.holder = g.Holder
			e.mu.Unlock()
			// Try again just after the holder's lease runs out: a
			// crashed leader is replaced within the TTL. A release cuts
			// the wait short.
			wait = min(wait, g.Remaining+10*time.Millisecond)
		}
		e.opts.Lease.Wait(ctx, max(wait, 10*time.Millisecond))
		if ctx.Err() != nil {
			return nil
		}
	}
}

// acquire tries to take the lease once.
func (e *Elector) acquire(ctx context.Context) (journal.Grant, error) {
	rctx, cancel := context.WithTimeout(ctx, max(e.opts.TTL/2, time.Second))
	defer cancel()
	g, err := e.opts.Lease.Acquire(rctx, e.opts.Identity, e.opts.TTL)
	if err != nil && ctx.Err() == nil {
		e.errors.WithLabelValues("acquire").Inc()
	}
	return g, err
}

// lead runs work while the lease is held, renewing it, and steps down when
// ctx ends, work returns, or the lease is lost.
func (e *Elector) lead(ctx context.Context, g journal.Grant, askedAt time.Time, work func(context.Context, Term)) {
	// The lease runs from when the acquire was sent: the database started
	// it no earlier, so this deadline passes no later than the database's.
	e.setLeader(g.Term, askedAt.Add(e.opts.TTL), g.Previous)
	workCtx, stopWork := context.WithCancel(ctx)
	defer stopWork()
	done := make(chan struct{})
	go func() {
		defer close(done)
		work(workCtx, Term{Token: g.Term, Began: e.opts.Clock.Now(), Previous: g.Previous})
	}()
	// Drop a refusal left over from an earlier term.
	select {
	case <-e.refused:
	default:
	}

	release := true
	reason := ""
	next := e.opts.Clock.NewTimer(e.opts.RenewInterval)
	defer next.Stop()
loop:
	for {
		fence := e.opts.Clock.NewTimer(e.opts.Clock.Until(e.leaseDeadline()))
		select {
		case <-ctx.Done():
			reason = "shutting down"
		case <-done:
			reason = "the leader's work returned"
		case <-e.refused:
			reason, release = "the journal refused this term's token: a newer term began", false
		case <-fence.Chan():
			reason, release = "the lease was not renewed within its TTL", false
		case <-next.Chan():
			fence.Stop()
			start := e.opts.Clock.Now()
			err := e.renew(ctx, g.Term)
			switch {
			case err == nil:
				e.extend(start.Add(e.opts.TTL))
				next.Reset(e.opts.RenewInterval)
				continue loop
			case ctx.Err() != nil:
				reason = "shutting down"
			case errors.Is(err, journal.ErrLeaseLost):
				reason, release = "the lease is no longer this term's", false
			default:
				e.errors.WithLabelValues("renew").Inc()
				left := e.opts.Clock.Until(e.leaseDeadline())
				e.log.Warn("renewing the leader lease failed; retrying until it runs out", "err", err, "left", left.Round(time.Millisecond))
				next.Reset(min(time.Second, max(left/4, 50*time.Millisecond)))
				continue loop
			}
		}
		fence.Stop()
		break
	}
	// Step down before the work is told to stop: IsLeader and Token fail
	// from here.
	deadline := e.leaseDeadline()
	e.setFollower(reason)
	stopWork()
	<-done
	if release && e.opts.Clock.Now().Before(deadline) {
		// Release even when ctx ended: the next leader need not wait a TTL.
		rctx, cancel := context.WithDeadline(context.Background(), deadline)
		defer cancel()
		if err := e.opts.Lease.Release(rctx, g.Term); err != nil && !errors.Is(err, journal.ErrLeaseLost) {
			e.errors.WithLabelValues("release").Inc()
			e.log.Warn("releasing the leader lease failed; it runs out after its TTL", "err", err)
		}
	}
}

// renew extends the lease; the call may not outlive the current lease.
func (e *Elector) renew(ctx context.Context, term int64) error {
	rctx, cancel := context.WithDeadline(ctx, e.leaseDeadline())
	defer cancel()
	return e.opts.Lease.Renew(rctx, term, e.opts.TTL)
}

func (e *Elector) leaseDeadline() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.deadline
}

func (e *Elector) extend(deadline time.Time) {
	e.mu.Lock()
	e.deadline = deadline
	e.mu.Unlock()
}

// warnAcquire logs a failed attempt to campaign: a new error at once, the
// same one again once a minute.
func (e *Elector) warnAcquire(err error) {
	if err.Error() == e.lastWarnErr && e.opts.Clock.Since(e.lastWarn) < time.Minute {
		return
	}
	e.lastWarn, e.lastWarnErr = e.opts.Clock.Now(), err.Error()
	e.log.Warn("could not take part in the leader election; retrying", "err", err)
}

func (e *Elector) setLeader(term int64, deadline time.Time, prev *journal.Handover) {
	e.mu.Lock()
	e.leading, e.holder, e.term, e.deadline = true, e.opts.Identity, term, deadline
	e.mu.Unlock()
	e.gauge.Set(1)
	e.termGauge.Set(float64(term))
	e.transitions.WithLabelValues("leader").Inc()
	attrs := []any{"term", term}
	if prev != nil {
		e.handover.Set(prev.SinceRenewed.Seconds())
		attrs = append(attrs, "previous", prev.Holder, "previous_term", prev.Term, "released", prev.Released,
			"since_renewed", prev.SinceRenewed.Round(time.Millisecond), "since_ended", prev.SinceEnded.Round(time.Millisecond))
	}
	e.log.Info("became the leader", attrs...)
}

func (e *Elector) setFollower(reason string) {
	e.mu.Lock()
	was := e.leading
	e.leading = false
	if was {
		e.holder = ""
	}
	term := e.term
	e.mu.Unlock()
	if !was {
		return
	}
	e.gauge.Set(0)
	e.termGauge.Set(0)
	e.transitions.WithLabelValues("follower").Inc()
	e.log.Info("stepped down as leader", "term", term, "reason", reason)
}

// ConfigOptions maps the daemon's leader.* keys onto Options. The caller
// adds the Lease, Logger and Registerer.
func ConfigOptions(c config.Leader) Options {
	return Options{TTL: c.TTL, RenewInterval: c.RenewInterval}
}
