// Package scaler turns policy decisions into Nomad job counts. It evaluates
// every scaled task group on its policies' interval, and at once when a
// trigger arrives (a new Alertmanager alert), combines the decisions of the
// group's policies safest-first, records each decision and each change in
// the journal, and sets the group's count through Nomad. It keeps the time
// of the last change per group for cooldowns, and restores it from the
// journal after a restart. Finding hosts for the new allocations is the
// capacity planner's job, not this package's: Nomad places what it can at
// once and queues the rest.
package scaler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

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
	Now    func() time.Time
	Logger *slog.Logger
	// Registerer receives the scaler's metrics; nil registers nothing.
	Registerer prometheus.Registerer
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

// Meta keys the scaler sets on a scaling, in Nomad's scaling event and for
// the Counts that carry it out.
const (
	MetaActivity    = "spillway.activity"
	MetaPolicy      = "spillway.policy"
	MetaTriggeredAt = "spillway.triggered_at"
	MetaDecidedAt   = "spillway.decided_at"
)

// DeploymentRetry is how soon a group whose scaling Nomad refused during a
// deployment is evaluated again.
const DeploymentRetry = 2 * time.Second

// Scaler is the evaluation loop.
type Scaler struct {
	cfg      Config
	triggers chan Trigger

	mu        sync.Mutex
	lastScale map[policies.Target]time.Time
	nextDue   map[policies.Target]time.Time
	// lastNoted is the last decision journaled per group, so a decision
	// that repeats every interval is journaled once.
	lastNoted map[policies.Target]string
	// paused holds the paused policies by name (see Pause).
	paused map[string]Pause
	// act serialises changes of count: an evaluation and a manual scaling
	// of the same group never interleave.
	act sync.Mutex

	evaluations *prometheus.CounterVec
	decisions   *prometheus.CounterVec
	scaleErrors prometheus.Counter
}

// New builds a scaler.
func New(cfg Config) *Scaler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Scaler{
		cfg:       cfg,
		triggers:  make(chan Trigger, 64),
		lastScale: map[policies.Target]time.Time{},
		nextDue:   map[policies.Target]time.Time{},
		lastNoted: map[policies.Target]string{},
		paused:    map[string]Pause{},
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
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(s.evaluations, s.decisions, s.scaleErrors)
	}
	return s
}

// Trigger queues an immediate evaluation. It never blocks: when the queue
// is full the trigger is dropped, and the interval evaluation catches up.
func (s *Scaler) Trigger(t Trigger) bool {
	select {
	case s.triggers <- t:
		return true
	default:
		s.cfg.Logger.Warn("trigger queue full; the next interval evaluation will catch up", "target", t.Target.String())
		return false
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
		}
		if ev.Kind == journal.KindScale && json.Unmarshal(ev.Data, &d) == nil && d.Target.Job != "" {
			s.lastScale[d.Target] = ev.Time
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restoring the last scaling times: %w", err)
	}
	return nil
}

// Run evaluates until ctx ends.
func (s *Scaler) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case t := <-s.triggers:
			s.evaluations.WithLabelValues("trigger").Inc()
			s.Evaluate(ctx, t.Target, t)
		case <-tick.C:
			for _, t := range s.due() {
				s.evaluations.WithLabelValues("interval").Inc()
				s.Evaluate(ctx, t, Trigger{Target: t, Cause: "evaluation interval"})
			}
		}
	}
}

// due returns the groups whose evaluation interval has passed.
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
		if next, ok := s.nextDue[t]; ok && now.Before(next) {
			continue
		}
		s.nextDue[t] = now.Add(iv)
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// newActivity names one scaling operation in the journal.
func newActivity(now time.Time) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("act-%s-%s", now.UTC().Format("20060102T150405"), hex.EncodeToString(b))
}

// Evaluate evaluates one task group now, records the decision, and applies
// a change of count.
func (s *Scaler) Evaluate(ctx context.Context, target policies.Target, cause Trigger) {
	s.act.Lock()
	defer s.act.Unlock()
	ps := s.active(s.cfg.Policies().ForTarget(target))
	if len(ps) == 0 {
		return
	}
	log := s.cfg.Logger.With("target", target.String())
	now := s.cfg.Now()
	s.mu.Lock()
	last := s.lastScale[target]
	s.mu.Unlock()
	var firing []policies.Alert
	if s.cfg.Alerts != nil {
		firing = s.cfg.Alerts.Firing(now)
	}
	var decisions []policies.Decision
	var results []evaluate.Result
	for _, p := range ps {
		r := s.cfg.Evaluator.Evaluate(ctx, p, evaluate.State{LastScale: last, Alerts: firing})
		if r.Error != "" || r.Decision == nil {
			log.Warn("policy not evaluated", "policy", p.Name, "err", r.Error)
			continue
		}
		results = append(results, r)
		decisions = append(decisions, *r.Decision)
	}
	d, ok := policies.CombineDecisions(decisions...)
	if !ok {
		return
	}
	s.decisions.WithLabelValues(string(d.Direction)).Inc()
	change := d.Desired != d.Current && (d.Direction == policies.Up || d.Direction == policies.Down)
	activity := ""
	if change {
		activity = newActivity(now)
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
	if change || cause.Cause != "evaluation interval" || !noted {
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
	meta := map[string]any{MetaActivity: activity, MetaPolicy: d.Policy,
		MetaTriggeredAt: triggered.UTC().Format(time.RFC3339Nano), MetaDecidedAt: now.UTC().Format(time.RFC3339Nano)}
	if err := s.cfg.Counts.Scale(ctx, target, d.Desired, msg, meta); err != nil {
		s.scaleErrors.Inc()
		log.Error("scaling failed", "desired", d.Desired, "err", err)
		_, _ = s.cfg.Journal.Append(ctx, journal.Event{
			Time: s.cfg.Now(), Kind: journal.KindScaleFailed, Subject: target.String(), Activity: activity,
			Actor: "controller", Message: fmt.Sprintf("setting the count to %d failed: %v", d.Desired, err), Data: data,
		})
		if errors.Is(err, ErrDeploymentActive) {
			// Try again as soon as the deployment may be over, not a whole
			// evaluation interval later: a burst cannot wait.
			s.mu.Lock()
			s.nextDue[target] = s.cfg.Now().Add(DeploymentRetry)
			s.mu.Unlock()
		}
		return
	}
	s.mu.Lock()
	s.lastScale[target] = now
	s.mu.Unlock()
	if _, err := s.cfg.Journal.Append(ctx, journal.Event{
		Time: s.cfg.Now(), Kind: journal.KindScale, Subject: target.String(), Activity: activity,
		Actor: "controller", Message: fmt.Sprintf("set the count of %s from %d to %d: %s", target, d.Current, d.Desired, d.Reason),
		Data: data,
	}); err != nil {
		log.Error("journaling a scaling", "err", err)
	}
}
