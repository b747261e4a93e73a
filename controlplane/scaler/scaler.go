// Package scaler turns policy decisions into Nomad job counts. It evaluates
// every scaled task group on its policies' interval, and at once when a
// trigger arrives (a new Alertmanager alert; triggers wait in a queue that
// keeps the newest per group and drops none), combines the decisions of the
// group's policies safest-first, records each decision and each change in
// the journal, and sets the group's count through Nomad. It keeps the time
// of the last change per group for cooldowns, and restores it from the
// journal after a restart. Finding hosts for the new allocations is the
// capacity planner's job, not this package's: Nomad places what it can at
// once and queues the rest.
package scaler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillwayhq/spillway/controlplane/alerts"
	"github.com/spillwayhq/spillway/controlplane/evaluate"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/policies"
)

// Counts sets a task group's count.
type Counts interface {
	Scale(ctx context.Context, t policies.Target, count int, message string, meta map[string]any) error
}

// Evaluator evaluates one policy against the live system.
type Evaluator interface {
	Evaluate(ctx context.Context, p *policies.Policy, st evaluate.State) evaluate.Result
}

// Journal records events.
type Journal interface {
	Append(ctx context.Context, evs ...journal.Event) ([]journal.Event, error)
	Query(ctx context.Context, f journal.Filter) ([]journal.Event, error)
}

// Config wires a scaler.
type Config struct {
	Policies  func() *policies.Set
	Evaluator Evaluator
	Counts    Counts
	Journal   Journal
	// Alerts is the firing set; nil means no alerts.
	Alerts *alerts.Store
	// Clock drives the evaluation loop; Now, when set, is the time the
	// decisions are stamped with (default: the clock's).
	Clock  clockwork.Clock
	Now    func() time.Time
	Logger *slog.Logger
	// Parallel bounds the evaluations that run at once in an interval
	// sweep, and, separately, those of triggers. Default 8.
	Parallel int
	// Registerer receives the scaler's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// OnScaled, when set, is told of every count the scaler changed, after
	// Nomad took it: the provisioning controller gives the scale-out that
	// follows the same activity and timeline.
	OnScaled func(Scaled)
	// Hold, when set, says why a group's count must not be changed now
	// ("" when it may): the controller raised it for a while (a surge
	// before the drain of a lent host) and lowers it again itself. A held
	// group is not evaluated: its count and queue are transient. It is
	// evaluated again DeploymentRetry later, and any trigger's alerts are
	// still in the firing set then.
	Hold func(policies.Target) string
}

// Scaled is a count the scaler changed.
type Scaled struct {
	Target   policies.Target
	From, To int
	// Activity is the decision's activity in the journal.
	Activity string
	// Policy is the winning policy; "" for a manual scaling.
	Policy string
	// Triggered is when the trigger arrived; Decided when the decision was
	// made, just before the count was set.
	Triggered, Decided time.Time
}

// Trigger asks for an evaluation now.
type Trigger struct {
	Target policies.Target
	// Cause says why, for the journal: e.g. "alert DemoHighLatency fired".
	Cause string
	// Alerts are the fingerprints of the alerts that caused it.
	Alerts []string
	// At is when the trigger arrived; zero means when it is evaluated.
	At time.Time
}

// CauseInterval is the cause of a routine evaluation.
const CauseInterval = "evaluation interval"

// Meta keys the scaler records in Nomad's scaling event of a change.
const (
	MetaActivity = "spillway.activity"
	MetaPolicy   = "spillway.policy"
)

// KindStaleCounts is the journal kind of an evaluation made on the
// cluster model's last known counts while it lists Nomad again (see
// evaluate.ClusterGroups): journaled once per group and period.
const KindStaleCounts = "counts.stale"

// DeploymentRetry is how soon a group whose scaling Nomad refused during a
// deployment is evaluated again.
const DeploymentRetry = 2 * time.Second

// scaling is a group's last change of count: when, and whether an
// operator made it (its cooldown then holds even out of bounds).
type scaling struct {
	at     time.Time
	manual bool
}

// deferral is a change waiting for a deployment to end.
type deferral struct {
	activity string
	since    time.Time
}

// Scaler is the evaluation loop.
type Scaler struct {
	cfg Config
	// triggers waits for evaluation: one trigger per group, the newest.
	triggers *triggerQueue

	mu sync.Mutex
	// lastScale is each group's last scaling, for cooldowns.
	lastScale map[policies.Target]scaling
	// deferred holds the groups whose change Nomad refused during a
	// deployment: the change is retried every DeploymentRetry, journaled
	// once when deferred and once when made.
	deferred map[policies.Target]deferral
	nextDue  map[policies.Target]time.Time
	// lastNoted is the last decision journaled per group, so a decision
	// that repeats every interval is journaled once.
	lastNoted map[policies.Target]string
	// staleNoted is, per group, the time of the last known counts the
	// journal last said an evaluation used (KindStaleCounts).
	staleNoted map[policies.Target]time.Time
	// paused holds the paused policies by name (see Pause).
	paused map[string]Pause
	// locks serialise the evaluations and manual scalings of one group:
	// they never interleave, while other groups go on in parallel.
	locks map[policies.Target]*sync.Mutex
	// inflight marks the groups an interval sweep is evaluating, so a slow
	// one is not queued again.
	inflight map[policies.Target]bool

	evaluations *prometheus.CounterVec
	decisions   *prometheus.CounterVec
	scaleErrors prometheus.Counter
	coalesced   prometheus.Counter
	pending     prometheus.Gauge
}

// New builds a scaler.
func New(cfg Config) *Scaler {
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.Now == nil {
		cfg.Now = cfg.Clock.Now
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 8
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Scaler{
		cfg:        cfg,
		lastScale:  map[policies.Target]scaling{},
		deferred:   map[policies.Target]deferral{},
		nextDue:    map[policies.Target]time.Time{},
		lastNoted:  map[policies.Target]string{},
		staleNoted: map[policies.Target]time.Time{},
		paused:     map[string]Pause{},
		locks:      map[policies.Target]*sync.Mutex{},
		inflight:   map[policies.Target]bool{},
		evaluations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_evaluations_total",
			Help: "Evaluations of a scaled task group, by why they ran (interval or trigger).",
		}, []string{"reason"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_decisions_total",
			Help: "Scaling decisions, by direction (up, down, hold, none).",
		}, []string{"direction"}),
		scaleErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spillway_scale_errors_total",
			Help: "Failed attempts to change a task group's count in Nomad.",
		}),
		coalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spillway_triggers_coalesced_total",
			Help: "Triggers that replaced a pending trigger of the same task group (the newest wins; one evaluation serves both).",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_triggers_pending",
			Help: "Triggers waiting for an evaluation: at most one per task group.",
		}),
	}
	for _, r := range []string{"interval", "trigger"} {
		s.evaluations.WithLabelValues(r)
	}
	s.triggers = newTriggerQueue(s.pending)
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(s.evaluations, s.decisions, s.scaleErrors, s.coalesced, s.pending)
	}
	return s
}

// Trigger queues an immediate evaluation of each trigger's group. It
// never blocks and never drops a trigger: one for a group that already
// has a trigger waiting replaces it (the newest cause and alerts win, the
// earliest arrival is kept), and one evaluation serves both. The queue
// therefore holds at most one trigger per group.
func (s *Scaler) Trigger(ts ...Trigger) { s.TriggerThen(nil, ts...) }

// TriggerThen queues ts as Trigger does, then calls queued (when not nil)
// before any of them can be evaluated. The alert intake marks its alerts
// as seen in queued: an alert is seen only once its trigger is queued,
// and the trigger's evaluation finds it in the firing set. queued must
// not call the scaler.
func (s *Scaler) TriggerThen(queued func(), ts ...Trigger) {
	for _, r := range s.triggers.add(queued, ts...) {
		s.coalesced.Inc()
		s.cfg.Logger.Debug("trigger coalesced with the group's pending one; one evaluation serves both",
			"target", r.newer.Target.String(), "cause", r.newer.Cause, "replaced", r.older.Cause)
	}
}

// Restore reads the time of the last scaling of every group and the
// paused policies from the journal, so cooldowns and pauses survive a
// restart.
func (s *Scaler) Restore(ctx context.Context) error {
	if err := s.restorePauses(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	err := journal.Each(ctx, s.cfg.Journal, journal.Filter{Kind: journal.KindScale}, func(ev journal.Event) error {
		var d struct {
			Target policies.Target `json:"target"`
			Manual bool            `json:"manual"`
		}
		if ev.Kind == journal.KindScale && json.Unmarshal(ev.Data, &d) == nil && d.Target.Job != "" {
			s.lastScale[d.Target] = scaling{at: ev.Time, manual: d.Manual}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restoring the last scaling times: %w", err)
	}
	return nil
}

// Run evaluates until ctx ends. Every second, the groups whose interval
// has passed are evaluated by Parallel workers, each group once at a time
// (a slow one is skipped until it is done, and holds up only its worker).
// A trigger (an alert, a manual evaluation) is evaluated at once, beside
// any sweep, never queued behind it, by at most Parallel evaluations of
// triggers; it waits only for an evaluation of its own group already
// running. Triggers queued before Run, or while it is not running (a
// replica that is not the leader), are evaluated once it runs.
func (s *Scaler) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	sweep := make(chan policies.Target)
	defer close(sweep)
	for range s.cfg.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range sweep {
				s.evaluations.WithLabelValues("interval").Inc()
				s.Evaluate(ctx, t, Trigger{Target: t, Cause: CauseInterval})
				s.swept(t)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		urgent := make(chan struct{}, s.cfg.Parallel)
		for {
			select {
			case urgent <- struct{}{}:
			case <-ctx.Done():
				return
			}
			t, ok := s.nextTrigger(ctx)
			if !ok {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-urgent }()
				defer s.triggers.done(t.Target)
				s.evaluations.WithLabelValues("trigger").Inc()
				s.Evaluate(ctx, t.Target, t)
			}()
		}
	}()
	tick := s.cfg.Clock.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.Chan():
			for _, t := range s.due() {
				select {
				case sweep <- t:
				case <-ctx.Done():
					return
				}
			}
		}
	}
}

// nextTrigger waits for a trigger to evaluate; false when ctx ends.
func (s *Scaler) nextTrigger(ctx context.Context) (Trigger, bool) {
	for {
		if t, ok := s.triggers.pop(); ok {
			return t, true
		}
		select {
		case <-s.triggers.wake:
		case <-ctx.Done():
			return Trigger{}, false
		}
	}
}

// swept clears a group a sweep has evaluated, so the next sweep may again.
func (s *Scaler) swept(t policies.Target) {
	s.mu.Lock()
	delete(s.inflight, t)
	s.mu.Unlock()
}

// lock takes the lock of one group's count.
func (s *Scaler) lock(t policies.Target) func() {
	s.mu.Lock()
	l := s.locks[t]
	if l == nil {
		l = &sync.Mutex{}
		s.locks[t] = l
	}
	s.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// due returns the groups whose evaluation interval has passed and that no
// sweep is evaluating, and marks them in flight.
func (s *Scaler) due() []policies.Target {
	now := s.cfg.Now()
	byTarget := map[policies.Target]time.Duration{}
	for _, p := range s.cfg.Policies().Policies() {
		iv := p.EvaluationInterval
		if cur, ok := byTarget[p.Target]; !ok || iv < cur {
			byTarget[p.Target] = iv
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []policies.Target
	for t, iv := range byTarget {
		if next, ok := s.nextDue[t]; (ok && now.Before(next)) || s.inflight[t] {
			continue
		}
		s.nextDue[t] = now.Add(iv)
		s.inflight[t] = true
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// held reports whether Config.Hold holds target's count now; the group is
// then due again DeploymentRetry from now, and the hold is logged once.
func (s *Scaler) held(target policies.Target, cause Trigger, now time.Time) bool {
	if s.cfg.Hold == nil {
		return false
	}
	why := s.cfg.Hold(target)
	if why == "" {
		return false
	}
	note := "held: " + why
	s.mu.Lock()
	noted := s.lastNoted[target] == note
	s.lastNoted[target] = note
	s.nextDue[target] = now.Add(DeploymentRetry)
	s.mu.Unlock()
	if !noted {
		s.cfg.Logger.Info("not evaluating a group whose count is held", "target", target.String(), "why", why, "cause", cause.Cause)
	}
	return true
}

// noteStale journals, once per period the cluster model is not live, that
// a group was evaluated on its counts from asOf.
func (s *Scaler) noteStale(ctx context.Context, target policies.Target, asOf, now time.Time) {
	s.mu.Lock()
	noted := s.staleNoted[target].Equal(asOf)
	s.staleNoted[target] = asOf
	s.mu.Unlock()
	if noted {
		return
	}
	s.cfg.Logger.Warn("evaluating on the last known counts: the cluster model is listing nomad again", "target", target.String(), "counts_as_of", asOf)
	data, _ := json.Marshal(map[string]any{"target": target, "counts_as_of": asOf})
	if _, err := s.cfg.Journal.Append(ctx, journal.Event{
		Time: now, Kind: KindStaleCounts, Subject: target.String(), Actor: "controller", Data: data,
		Message: fmt.Sprintf("evaluated %s on its counts from %s, because the cluster model is listing nomad again: no scale-in until it follows nomad",
			target, asOf.UTC().Format(time.RFC3339)),
	}); err != nil {
		s.cfg.Logger.Error("journaling an evaluation on stale counts", "err", err)
	}
}

// Evaluate evaluates one task group now, records the decision, and applies
// a change of count.
func (s *Scaler) Evaluate(ctx context.Context, target policies.Target, cause Trigger) {
	defer s.lock(target)()
	ps := s.active(s.cfg.Policies().ForTarget(target))
	if len(ps) == 0 {
		return
	}
	log := s.cfg.Logger.With("target", target.String())
	now := s.cfg.Now()
	if s.held(target, cause, now) {
		return
	}
	s.mu.Lock()
	last := s.lastScale[target]
	s.mu.Unlock()
	var firing []policies.Alert
	if s.cfg.Alerts != nil {
		// Only the alerts these policies' rules name: the cost does not
		// grow with alerts that cannot matter here.
		firing = s.cfg.Alerts.Firing(now, policies.AlertNames(ps)...)
	}
	var decisions []policies.Decision
	var asOf time.Time
	for _, p := range ps {
		r := s.cfg.Evaluator.Evaluate(ctx, p, evaluate.State{LastScale: last.at, LastScaleManual: last.manual, Alerts: firing})
		if r.Error != "" || r.Decision == nil {
			log.Warn("policy not evaluated", "policy", p.Name, "err", r.Error)
			continue
		}
		if r.Group != nil && r.Group.CountsAsOf != nil {
			asOf = *r.Group.CountsAsOf
		}
		decisions = append(decisions, *r.Decision)
	}
	if !asOf.IsZero() {
		s.noteStale(ctx, target, asOf, now)
	}
	d, ok := policies.CombineDecisions(decisions...)
	if !ok {
		return
	}
	s.decisions.WithLabelValues(string(d.Direction)).Inc()
	pushed := cause.Cause != CauseInterval
	if v, ok := d.WinningAlert(); ok && len(cause.Alerts) == 0 && len(v.Fingerprints) > 0 {
		// An interval evaluation that an alert's vote decided: the alert is
		// the cause, and the journal says so.
		cause.Alerts = v.Fingerprints
		cause.Cause = fmt.Sprintf("%s (alert %s firing, fingerprint %s)", cause.Cause, strings.TrimPrefix(v.Source, "alert:"), strings.Join(v.Fingerprints, ", "))
	}
	change := d.Desired != d.Current && (d.Direction == policies.Up || d.Direction == policies.Down)
	s.mu.Lock()
	wait, waiting := s.deferred[target]
	if !change {
		delete(s.deferred, target) // nothing to change any more
	}
	s.mu.Unlock()
	waiting = waiting && change
	activity := ""
	switch {
	case waiting:
		activity = wait.activity // the deferred change goes on in its activity
	case change:
		activity = journal.NewActivity(now)
	}
	data, _ := json.Marshal(map[string]any{
		"target": target, "policy": d.Policy, "current": d.Current, "desired": d.Desired,
		"direction": d.Direction, "winner": d.Winner, "cause": cause.Cause, "alerts": cause.Alerts,
		"checks": d.Checks, "alert_votes": d.Alerts,
	})
	// The journal records every change, every pushed evaluation, and a
	// routine decision when it differs from the last one journaled, so a
	// metric outage shows once, not every interval.
	note := fmt.Sprintf("%s %d %s %s", d.Direction, d.Desired, d.Winner, d.Policy)
	if d.Direction == policies.Hold {
		note += " " + d.Reason // why it holds (say, Prometheus went down) matters
	}
	s.mu.Lock()
	noted := s.lastNoted[target] == note
	s.lastNoted[target] = note
	s.mu.Unlock()
	if (change && !waiting) || pushed || !noted {
		if _, err := s.cfg.Journal.Append(ctx, journal.Event{
			Time: now, Kind: journal.KindDecision, Subject: target.String(), Activity: activity,
			Actor: "controller", Message: fmt.Sprintf("%s: %d -> %d (%s): %s", d.Policy, d.Current, d.Desired, d.Direction, d.Reason),
			Data: data,
		}); err != nil {
			log.Error("journaling a decision", "err", err)
		}
	}
	log.Info("decision", "policy", d.Policy, "current", d.Current, "desired", d.Desired, "direction", d.Direction, "reason", d.Reason, "cause", cause.Cause)
	if !change {
		return
	}
	msg := fmt.Sprintf("spillway: %s (policy %s)", d.Reason, d.Policy)
	triggered := cause.At
	if triggered.IsZero() {
		triggered = now
	}
	meta := map[string]any{MetaActivity: activity, MetaPolicy: d.Policy}
	if err := s.cfg.Counts.Scale(ctx, target, d.Desired, msg, meta); err != nil {
		if errors.Is(err, ErrDeploymentActive) {
			// Wait for the deployment, trying again as soon as it may be
			// over, not a whole evaluation interval later: a burst cannot
			// wait. Journaled once, not every try.
			s.mu.Lock()
			s.nextDue[target] = s.cfg.Now().Add(DeploymentRetry)
			if !waiting {
				s.deferred[target] = deferral{activity: activity, since: now}
			}
			s.mu.Unlock()
			if waiting {
				log.Debug("still waiting for the deployment", "desired", d.Desired, "since", wait.since)
				return
			}
			log.Info("waiting for a deployment to end before scaling", "desired", d.Desired)
			_, _ = s.cfg.Journal.Append(ctx, journal.Event{
				Time: s.cfg.Now(), Kind: journal.KindScaleDeferred, Subject: target.String(), Activity: activity, Actor: "controller", Data: data,
				Message: fmt.Sprintf("a deployment of %s is running, and Nomad refuses to change its count until it ends: setting %d to %d when it does (trying every %s)",
					target.Job, d.Current, d.Desired, DeploymentRetry),
			})
			return
		}
		s.scaleErrors.Inc()
		log.Error("scaling failed", "desired", d.Desired, "err", err)
		s.mu.Lock()
		delete(s.deferred, target)
		s.mu.Unlock()
		_, _ = s.cfg.Journal.Append(ctx, journal.Event{
			Time: s.cfg.Now(), Kind: journal.KindScaleFailed, Subject: target.String(), Activity: activity,
			Actor: "controller", Message: fmt.Sprintf("setting the count to %d failed: %v", d.Desired, err), Data: data,
		})
		return
	}
	s.mu.Lock()
	s.lastScale[target] = scaling{at: now}
	delete(s.deferred, target)
	s.mu.Unlock()
	waited := ""
	if waiting {
		waited = fmt.Sprintf(" (after %s waiting for the deployment)", now.Sub(wait.since).Round(time.Second))
	}
	if s.cfg.OnScaled != nil {
		s.cfg.OnScaled(Scaled{Target: target, From: d.Current, To: d.Desired, Activity: activity, Policy: d.Policy, Triggered: triggered, Decided: now})
	}
	if _, err := s.cfg.Journal.Append(ctx, journal.Event{
		Time: s.cfg.Now(), Kind: journal.KindScale, Subject: target.String(), Activity: activity,
		Actor: "controller", Message: fmt.Sprintf("set the count of %s from %d to %d%s: %s", target, d.Current, d.Desired, waited, d.Reason),
		Data: data,
	}); err != nil {
		log.Error("journaling a scaling", "err", err)
	}
}
