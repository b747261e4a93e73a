// Package leader elects one replica of the control plane to act, through a
// lock on a Nomad variable. Every replica runs an Elector; the one holding
// the lock runs the leader's work (scaling, reconciling), the others only
// serve reads and wait. The lock has a TTL that the leader renews; a
// leader that cannot renew in time stops its work by itself before the
// lock can pass to another replica, so two replicas never act at once.
//
// It drives Nomad's lock API (Variables().AcquireLock, RenewLock and
// ReleaseLock) directly rather than through api.LockLeaser: the leaser has
// no way to tell its caller that leadership was lost short of returning,
// waits 1.1 TTLs between attempts, and does not fence the work before the
// TTL runs out when renewals fail.
package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	nomad "github.com/hashicorp/nomad/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillwayhq/spillway/controlplane/config"
)

// Defaults.
const (
	// DefaultPath is the Nomad variable that holds the lock.
	DefaultPath = "spillway/leader"
	// DefaultTTL is the lock's lease: a leader that has not renewed it for
	// this long stops acting. Nomad accepts 10s to 24h, and expires a lock
	// only after twice its TTL, as a grace period.
	DefaultTTL = 10 * time.Second
	// DefaultLockDelay is how long Nomad keeps an expired lock from being
	// taken again: a margin, on top of Nomad's grace period, for the old
	// leader's in-flight calls and for clock rate differences. (The old
	// leader has stopped by the TTL.)
	DefaultLockDelay = 2 * time.Second
	// DefaultRetryInterval is how often a follower tries to take the lock.
	DefaultRetryInterval = 2 * time.Second

	// MinTTL is the shortest TTL Nomad accepts.
	MinTTL = 10 * time.Second
)

// Options configures an Elector.
type Options struct {
	// Client talks to Nomad. Its token needs write on the variable Path.
	Client *nomad.Client
	// Path is the lock variable (default DefaultPath) in Namespace (default:
	// the client's namespace).
	Path      string
	Namespace string
	// Identity names this replica in the lock variable and the logs
	// (default: $NOMAD_ALLOC_ID, else hostname:pid).
	Identity string
	// TTL, LockDelay and RetryInterval: see the defaults.
	TTL, LockDelay, RetryInterval time.Duration
	Logger                        *slog.Logger
	// Registerer receives spillway_leader and
	// spillway_leader_transitions_total; nil registers nothing.
	Registerer prometheus.Registerer
}

// Elector campaigns for leadership and runs the leader's work while it
// holds the lock. Its methods are safe for concurrent use.
type Elector struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	leading bool
	holder  string // the leader as last seen

	lastWarn    time.Time // of a failed acquire, to log one a minute
	lastWarnErr string

	gauge       prometheus.Gauge
	transitions *prometheus.CounterVec
	errors      *prometheus.CounterVec
}

// New returns an Elector; it campaigns once Run is called.
func New(opts Options) (*Elector, error) {
	if opts.Client == nil {
		return nil, errors.New("leader election needs a Nomad client")
	}
	if opts.Path == "" {
		opts.Path = DefaultPath
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultTTL
	}
	if opts.TTL < MinTTL {
		return nil, fmt.Errorf("leader election: the lock TTL %s is below Nomad's minimum of %s", opts.TTL, MinTTL)
	}
	if opts.LockDelay <= 0 {
		opts.LockDelay = DefaultLockDelay
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
	e := &Elector{
		opts: opts,
		log:  opts.Logger.With("lock", opts.Path, "identity", opts.Identity),
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_leader",
			Help: "Whether this replica is the leader (1), which acts, or a follower (0), which serves reads.",
		}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_leader_transitions_total",
			Help: "Changes of this replica's leadership, by the state entered (leader or follower).",
		}, []string{"to"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_leader_lock_errors_total",
			Help: "Failed calls to Nomad's lock API other than finding the lock held, by operation.",
		}, []string{"op"}),
	}
	e.transitions.WithLabelValues("leader")
	e.transitions.WithLabelValues("follower")
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{e.gauge, e.transitions, e.errors} {
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

// IsLeader reports whether this replica holds the lock and its work runs.
// It turns false before the work's context is cancelled.
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

// TTL is the lock's lease. A replica that stops cleanly releases the lock
// and is replaced within RetryInterval. One that dies holding it (or loses
// Nomad) stops its work by the TTL by itself, and Nomad frees the lock
// after twice the TTL plus LockDelay, so it is replaced within
// 2×TTL + LockDelay + RetryInterval (22-24s with the defaults).
func (e *Elector) TTL() time.Duration { return e.opts.TTL }

// Run campaigns until ctx ends. Whenever it holds the lock it calls work
// with a context that is cancelled as soon as leadership ends: ctx ended,
// the lock was lost (another holder, or no successful renewal for a TTL),
// or work returned. Run waits for work to return before it releases the
// lock, so the next leader never overlaps it; work must therefore return
// promptly once its context is cancelled. If work returns on its own, the
// lock is released and Run campaigns again after RetryInterval. Run
// returns nil once ctx ends.
func (e *Elector) Run(ctx context.Context, work func(ctx context.Context)) error {
	defer e.setFollower("stopped")
	for {
		lock, acquiredAt, err := e.acquire(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			e.warnAcquire(err)
		case lock != "":
			e.lead(ctx, lock, acquiredAt, work)
			if ctx.Err() != nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(e.opts.RetryInterval):
		}
	}
}

// acquire tries to take the lock once. It returns the lock ID when it got
// it, "" when another replica holds it.
func (e *Elector) acquire(ctx context.Context) (string, time.Time, error) {
	start := time.Now()
	v := &nomad.Variable{
		Namespace: e.opts.Namespace,
		Path:      e.opts.Path,
		Items:     nomad.VariableItems{"holder": e.opts.Identity, "since": start.UTC().Format(time.RFC3339)},
		Lock:      &nomad.VariableLock{TTL: e.opts.TTL.String(), LockDelay: e.opts.LockDelay.String()},
	}
	rctx, cancel := context.WithTimeout(ctx, e.opts.TTL/2)
	defer cancel()
	out, _, err := e.opts.Client.Variables().AcquireLock(v, e.writeOptions(rctx))
	if err != nil {
		if isLockConflict(err) {
			e.observeHolder(ctx)
			return "", time.Time{}, nil
		}
		if ctx.Err() == nil {
			e.errors.WithLabelValues("acquire").Inc()
		}
		return "", time.Time{}, fmt.Errorf("acquiring the lock %s: %w", e.opts.Path, err)
	}
	if out == nil || out.LockID() == "" {
		return "", time.Time{}, fmt.Errorf("acquiring the lock %s: Nomad answered without a lock ID", e.opts.Path)
	}
	return out.LockID(), start, nil
}

// lead runs work while the lock is held, renewing it, and steps down when
// ctx ends, work returns, or the lock is lost.
func (e *Elector) lead(ctx context.Context, lock string, acquiredAt time.Time, work func(context.Context)) {
	// The lease runs from when the acquire was sent: Nomad started it no
	// earlier, so our deadline passes no later than Nomad's.
	deadline := acquiredAt.Add(e.opts.TTL)
	workCtx, stopWork := context.WithCancel(ctx)
	defer stopWork()
	done := make(chan struct{})
	e.setLeader()
	go func() {
		defer close(done)
		work(workCtx)
	}()

	release := true
	reason := ""
	renewEvery := e.opts.TTL / 3
	next := time.NewTimer(renewEvery)
	defer next.Stop()
loop:
	for {
		fence := time.NewTimer(time.Until(deadline))
		select {
		case <-ctx.Done():
			reason = "shutting down"
		case <-done:
			reason = "the leader's work returned"
		case <-fence.C:
			reason, release = "the lock was not renewed within its TTL", false
		case <-next.C:
			fence.Stop()
			start := time.Now()
			err := e.renew(ctx, lock, deadline)
			switch {
			case err == nil:
				deadline = start.Add(e.opts.TTL)
				next.Reset(renewEvery)
				continue loop
			case ctx.Err() != nil:
				reason = "shutting down"
			case isLockConflict(err):
				reason, release = "the lock is no longer ours", false
			default:
				e.errors.WithLabelValues("renew").Inc()
				e.log.Warn("renewing the leader lock failed; retrying until its TTL runs out", "err", err, "left", time.Until(deadline).Round(time.Millisecond))
				next.Reset(min(time.Second, max(time.Until(deadline)/4, 100*time.Millisecond)))
				continue loop
			}
		}
		fence.Stop()
		break
	}
	// Step down before the work is told to stop: IsLeader is false from here.
	e.setFollower(reason)
	stopWork()
	<-done
	if release && time.Now().Before(deadline) {
		// Release even when ctx ended: the next leader need not wait a TTL.
		rctx, cancel := context.WithDeadline(context.Background(), deadline)
		defer cancel()
		v := &nomad.Variable{Namespace: e.opts.Namespace, Path: e.opts.Path, Lock: &nomad.VariableLock{ID: lock}}
		if _, _, err := e.opts.Client.Variables().ReleaseLock(v, e.writeOptions(rctx)); err != nil && !isLockConflict(err) {
			e.errors.WithLabelValues("release").Inc()
			e.log.Warn("releasing the leader lock failed; it expires after its TTL", "err", err)
		}
	}
}

// renew extends the lease; the call may not outlive the current lease.
func (e *Elector) renew(ctx context.Context, lock string, deadline time.Time) error {
	rctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	v := &nomad.Variable{Namespace: e.opts.Namespace, Path: e.opts.Path, Lock: &nomad.VariableLock{ID: lock}}
	_, _, err := e.opts.Client.Variables().RenewLock(v, e.writeOptions(rctx))
	return err
}

// observeHolder reads who holds the lock, for Leader, after Nomad refused
// it to us. The holder wrote its identity into the variable when it took
// the lock. (Nomad hides the lock itself from non-management tokens, so
// the refusal is what says the lock is held; during the lock delay after
// an expiry, the name is the old holder's.) Failing to read it (no read
// permission, say) only leaves Leader empty.
func (e *Elector) observeHolder(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, e.opts.RetryInterval)
	defer cancel()
	qo := (&nomad.QueryOptions{Namespace: e.opts.Namespace}).WithContext(rctx)
	v, _, err := e.opts.Client.Variables().Peek(e.opts.Path, qo)
	holder := ""
	if err == nil && v != nil {
		holder = v.Items["holder"]
	}
	e.mu.Lock()
	e.holder = holder
	e.mu.Unlock()
}

// warnAcquire logs a failed attempt to campaign: a new error at once, the
// same one again once a minute.
func (e *Elector) warnAcquire(err error) {
	if err.Error() == e.lastWarnErr && time.Since(e.lastWarn) < time.Minute {
		return
	}
	e.lastWarn, e.lastWarnErr = time.Now(), err.Error()
	e.log.Warn("could not take part in the leader election; retrying", "err", err)
}

func (e *Elector) writeOptions(ctx context.Context) *nomad.WriteOptions {
	return (&nomad.WriteOptions{Namespace: e.opts.Namespace}).WithContext(ctx)
}

func (e *Elector) setLeader() {
	e.mu.Lock()
	e.leading, e.holder = true, e.opts.Identity
	e.mu.Unlock()
	e.gauge.Set(1)
	e.transitions.WithLabelValues("leader").Inc()
	e.log.Info("became the leader")
}

func (e *Elector) setFollower(reason string) {
	e.mu.Lock()
	was := e.leading
	e.leading = false
	if was {
		e.holder = ""
	}
	e.mu.Unlock()
	if !was {
		return
	}
	e.gauge.Set(0)
	e.transitions.WithLabelValues("follower").Inc()
	e.log.Info("stepped down as leader", "reason", reason)
}

// isLockConflict reports Nomad's answer that the lock is held by another
// (409), or that there is no lock to renew or release (404).
func isLockConflict(err error) bool {
	var ue nomad.UnexpectedResponseError
	if errors.As(err, &ue) {
		return ue.StatusCode() == http.StatusConflict || ue.StatusCode() == http.StatusNotFound
	}
	return false
}

// ConfigOptions maps the daemon's leader.* keys onto Options. The lock's
// namespace defaults to nomadNamespace (nomad.namespace). The caller adds
// the Client, Logger and Registerer.
func ConfigOptions(c config.Leader, nomadNamespace string) Options {
	ns := c.Namespace
	if ns == "" {
		ns = nomadNamespace
	}
	return Options{Path: c.Path, Namespace: ns, TTL: c.TTL, LockDelay: c.LockDelay}
}
