package scaler

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spillwayhq/spillway/controlplane/alerts"
	"github.com/spillwayhq/spillway/controlplane/evaluate"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/policies"
)

// runScaler runs s until the test ends, and waits for its ticker, so no
// sweep runs until the test advances the clock: every evaluation the test
// sees is a trigger's.
func runScaler(t *testing.T, s *Scaler, clock *clockwork.FakeClock) context.Context {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	return ctx
}

func job(i int) policies.Target {
	return policies.Target{Namespace: "default", Job: fmt.Sprintf("j%04d", i), Group: "web"}
}

// TestNoTriggerIsDropped: while every trigger slot is held by a slow
// evaluation, 196 more triggers for distinct groups arrive (the old
// queue had 64 slots and dropped the rest); each is queued, and each is
// evaluated once the slots free up, within Parallel at a time.
func TestNoTriggerIsDropped(t *testing.T) {
	set := thousandPolicies(t)
	hang := make(chan struct{})
	gate := map[string]chan struct{}{}
	for i := range 4 {
		gate[job(i).Job] = hang
	}
	ev := &gatedEvaluator{gate: gate, done: map[string]int{}}
	clock := clockwork.NewFakeClock()
	s := New(Config{Policies: func() *policies.Set { return set }, Evaluator: ev, Counts: &fakeCounts{}, Journal: nopJournal{},
		Clock: clock, Parallel: 4})
	runScaler(t, s, clock)
	defer func() {
		select {
		case <-hang:
		default:
			close(hang)
		}
	}()

	for i := range 4 {
		s.Trigger(Trigger{Target: job(i), Cause: "alert A fired"})
	}
	waitFor(t, "the four slow triggers hold every trigger slot", func() bool { return ev.running.Load() == 4 })
	for i := 4; i < 200; i++ {
		s.Trigger(Trigger{Target: job(i), Cause: "alert A fired"})
	}
	if got := testutil.ToFloat64(s.pending); got != 196 {
		t.Fatalf("%v triggers pending while every slot is held, want 196", got)
	}
	close(hang)
	waitFor(t, "200 triggers evaluated", func() bool { return ev.total() == 200 })
	for i := range 200 {
		if n := ev.count(job(i).Job); n != 1 {
			t.Errorf("%s evaluated %d times, want once", job(i).Job, n)
		}
	}
	if got := testutil.ToFloat64(s.evaluations.WithLabelValues("trigger")); got != 200 {
		t.Errorf("spillway_evaluations_total{reason=trigger} = %v, want 200", got)
	}
	if got := testutil.ToFloat64(s.evaluations.WithLabelValues("interval")); got != 0 {
		t.Errorf("spillway_evaluations_total{reason=interval} = %v, want 0 (no sweep ran)", got)
	}
	if got := testutil.ToFloat64(s.coalesced); got != 0 {
		t.Errorf("%v triggers coalesced, want none: every group is distinct", got)
	}
	waitFor(t, "the queue is empty", func() bool { return testutil.ToFloat64(s.pending) == 0 && s.triggers.len() == 0 })
	if most := ev.most.Load(); most > 4 {
		t.Errorf("%d trigger evaluations ran at once, want at most Parallel (4)", most)
	}
}

// scalingEvaluator holds the evaluations of the groups in gate until
// released, and wants one more allocation for each group.
type scalingEvaluator struct {
	gate    chan struct{}
	mu      sync.Mutex
	started int
}

func (e *scalingEvaluator) Evaluate(ctx context.Context, p *policies.Policy, _ evaluate.State) evaluate.Result {
	e.mu.Lock()
	e.started++
	e.mu.Unlock()
	select {
	case <-e.gate:
	case <-ctx.Done():
	}
	d := policies.Decision{Policy: p.Name, Target: p.Target, Current: 2, Desired: 3, Direction: policies.Up, Reason: "wants 3"}
	return evaluate.Result{Policy: p.Name, Target: p.Target, Decision: &d}
}

func (e *scalingEvaluator) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.started
}

// TestTriggersCoalescePerGroup: triggers for a group whose evaluation is
// running wait as one: the newest cause and alerts win, the earliest
// arrival is kept for the timeline, and one evaluation serves them all.
// Each coalescing is counted.
func TestTriggersCoalescePerGroup(t *testing.T) {
	set := loadSet(t, strings.Replace(policyDoc, "NAME", "a", 1))
	gate := make(chan struct{})
	ev := &scalingEvaluator{gate: gate}
	clock := clockwork.NewFakeClock()
	db := openJournal(t)
	var mu sync.Mutex
	var told []Scaled
	s := New(Config{Policies: func() *policies.Set { return set }, Evaluator: ev, Counts: &fakeCounts{}, Journal: db.Events(),
		Clock: clock, Parallel: 4, OnScaled: func(sc Scaled) { mu.Lock(); told = append(told, sc); mu.Unlock() }})
	ctx := runScaler(t, s, clock)

	t0 := clock.Now()
	s.Trigger(Trigger{Target: target, Cause: "alert A0 fired", Alerts: []string{"fp-0"}, At: t0})
	waitFor(t, "the first trigger is evaluated", func() bool { return ev.count() == 1 })
	for i := 1; i <= 5; i++ {
		s.Trigger(Trigger{Target: target, Cause: fmt.Sprintf("alert A%d fired", i), Alerts: []string{fmt.Sprintf("fp-%d", i)},
			At: t0.Add(time.Duration(i) * time.Second)})
	}
	if got := testutil.ToFloat64(s.pending); got != 1 {
		t.Fatalf("%v triggers pending for one group, want 1", got)
	}
	if got := testutil.ToFloat64(s.coalesced); got != 4 {
		t.Fatalf("%v triggers coalesced, want 4 (the 2nd to 5th waiting one)", got)
	}
	close(gate)
	waitFor(t, "the coalesced trigger is evaluated", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(told) == 2
	})
	if got := testutil.ToFloat64(s.evaluations.WithLabelValues("trigger")); got != 2 {
		t.Errorf("spillway_evaluations_total{reason=trigger} = %v, want 2", got)
	}
	if n := ev.count(); n != 2 {
		t.Errorf("%d evaluations, want 2", n)
	}
	mu.Lock()
	if !told[1].Triggered.Equal(t0.Add(time.Second)) {
		t.Errorf("the coalesced trigger arrived at %s, want the earliest waiting one's (%s)", told[1].Triggered, t0.Add(time.Second))
	}
	mu.Unlock()
	evs, err := db.Events().Query(ctx, journal.Filter{Kind: journal.KindDecision})
	if err != nil || len(evs) != 2 {
		t.Fatalf("decisions: %v %+v", err, evs)
	}
	var d struct {
		Cause  string   `json:"cause"`
		Alerts []string `json:"alerts"`
	}
	if err := json.Unmarshal(evs[1].Data, &d); err != nil {
		t.Fatal(err)
	}
	if d.Cause != "alert A5 fired" || len(d.Alerts) != 1 || d.Alerts[0] != "fp-5" {
		t.Fatalf("the coalesced evaluation's cause %q, alerts %v; want the newest trigger's (alert A5, fp-5)", d.Cause, d.Alerts)
	}
}

// alertsSeen records, per group, the alerts each evaluation found firing
// (the store gives every alert of the names the group's rules name).
type alertsSeen struct {
	mu   sync.Mutex
	seen map[string][]string
}

func (e *alertsSeen) Evaluate(_ context.Context, p *policies.Policy, st evaluate.State) evaluate.Result {
	e.mu.Lock()
	for _, a := range st.Alerts {
		e.seen[p.Target.Job] = append(e.seen[p.Target.Job], a.Fingerprint)
	}
	if _, ok := e.seen[p.Target.Job]; !ok {
		e.seen[p.Target.Job] = []string{}
	}
	e.mu.Unlock()
	d := policies.Decision{Policy: p.Name, Target: p.Target, Current: 2, Desired: 2, Direction: policies.Hold, Reason: "steady"}
	return evaluate.Result{Policy: p.Name, Target: p.Target, Decision: &d}
}

func (e *alertsSeen) of(job string) ([]string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, ok := e.seen[job]
	return s, ok
}

// TestAlertIsSeenOnlyOnceItsTriggerIsQueued: TriggerThen runs the
// intake's "mark as seen" once the trigger is queued and before it can be
// evaluated, so the evaluation always finds the alert firing, with free
// trigger slots waiting to evaluate at once.
func TestAlertIsSeenOnlyOnceItsTriggerIsQueued(t *testing.T) {
	const groups = 50
	set := manyPolicies(t, groups)
	store := alerts.NewStore(time.Hour, 0)
	ev := &alertsSeen{seen: map[string][]string{}}
	clock := clockwork.NewFakeClock()
	s := New(Config{Policies: func() *policies.Set { return set }, Evaluator: ev, Counts: &fakeCounts{}, Journal: nopJournal{},
		Alerts: store, Clock: clock, Parallel: 8})
	runScaler(t, s, clock)

	for i := range groups {
		svc := fmt.Sprintf("svc-%d", i)
		fp := fmt.Sprintf("fp-%d", i)
		tg := policies.Target{Namespace: "default", Job: svc, Group: "web"}
		note := &alerts.Notification{Version: "4", Status: "firing", Alerts: []alerts.Alert{{Status: "firing", Fingerprint: fp,
			StartsAt: clock.Now(), Labels: map[string]string{"alertname": "HighLatency", "service": svc}}}}
		changes, err := store.Plan(note, clock.Now(), nil)
		if err != nil {
			t.Fatal(err)
		}
		queued := false
		s.TriggerThen(func() {
			queued = true
			if got := testutil.ToFloat64(s.pending); got != 1 {
				t.Errorf("%s: %v triggers pending when the alert is marked as seen, want its own", svc, got)
			}
			if _, ok := ev.of(svc); ok {
				t.Errorf("%s: evaluated before its alert was marked as seen", svc)
			}
			store.Commit(changes, clock.Now())
		}, Trigger{Target: tg, Cause: "alert HighLatency fired", Alerts: []string{fp}, At: clock.Now()})
		if !queued {
			t.Fatalf("%s: the intake's callback did not run", svc)
		}
		var seen []string
		waitFor(t, svc+" evaluated", func() bool {
			var ok bool
			seen, ok = ev.of(svc)
			return ok
		})
		if !slices.Contains(seen, fp) {
			t.Fatalf("%s: its trigger's evaluation found alerts %v firing, not its own %s", svc, seen, fp)
		}
	}
	// With no triggers, the callback still runs: a notification of
	// repeats and resolves is marked as seen.
	ran := false
	s.TriggerThen(func() { ran = true })
	if !ran {
		t.Fatal("TriggerThen without triggers did not call back")
	}
}
