package scaler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/evaluate"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/policies"
)

var target = policies.Target{Namespace: "default", Job: "demo", Group: "web"}

// fakeEvaluator returns scripted decisions and records the state it got.
type fakeEvaluator struct {
	mu       sync.Mutex
	decide   func(p *policies.Policy, st evaluate.State) policies.Decision
	lastSeen []time.Time
}

func (f *fakeEvaluator) Evaluate(_ context.Context, p *policies.Policy, st evaluate.State) evaluate.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastSeen = append(f.lastSeen, st.LastScale)
	d := f.decide(p, st)
	return evaluate.Result{Policy: p.Name, Target: p.Target, Decision: &d}
}

type fakeCounts struct {
	calls []int
	metas []map[string]any
	err   error
}

func (f *fakeCounts) Scale(_ context.Context, _ policies.Target, count int, _ string, meta map[string]any) error {
	f.calls = append(f.calls, count)
	f.metas = append(f.metas, meta)
	return f.err
}

func loadSet(t *testing.T, docs ...string) *policies.Set {
	t.Helper()
	var files []string
	for i, d := range docs {
		p := filepath.Join(t.TempDir(), "p"+string(rune('a'+i))+".yaml")
		if err := writeFile(p, d); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	set, err := policies.LoadFiles(files...)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

const policyDoc = `apiVersion: spillway/v1
kind: ScalingPolicy
name: NAME
business_unit: bu-a
target: {namespace: default, job: demo, group: web}
min: 1
max: 20
evaluation_interval: 10s
checks:
  - name: rate
    query: sum(rate(x[1m]))
    target_value: {target: 100}
`

func openJournal(t *testing.T) *journal.DB {
	t.Helper()
	db, err := journal.Open(context.Background(), filepath.Join(t.TempDir(), "j.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func decision(dir policies.Direction, current, desired int, reason string) policies.Decision {
	return policies.Decision{Policy: "a", Target: target, Current: current, Desired: desired, Direction: dir, Reason: reason}
}

func TestScalerAppliesAndJournals(t *testing.T) {
	ctx := context.Background()
	db := openJournal(t)
	set := loadSet(t, strings.Replace(policyDoc, "NAME", "a", 1), strings.Replace(policyDoc, "NAME", "b", 1))
	now := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	ev := &fakeEvaluator{decide: func(p *policies.Policy, _ evaluate.State) policies.Decision {
		// Policy b wants more than a: the safest (largest) scale-out wins.
		if p.Name == "b" {
			d := decision(policies.Up, 2, 5, "b wants 5")
			d.Policy = "b"
			return d
		}
		return decision(policies.Up, 2, 3, "a wants 3")
	}}
	counts := &fakeCounts{}
	var told []Scaled
	s := New(Config{Policies: func() *policies.Set { return set }, Evaluator: ev, Counts: counts, Journal: db.Events(), Now: func() time.Time { return now },
		OnScaled: func(sc Scaled) { told = append(told, sc) }})

	arrived := now.Add(-1500 * time.Millisecond)
	s.Evaluate(ctx, target, Trigger{Target: target, Cause: "alert X fired", Alerts: []string{"fp1"}, At: arrived})
	if len(counts.calls) != 1 || counts.calls[0] != 5 {
		t.Fatalf("scale calls %v, want [5]", counts.calls)
	}
	// Nomad's scaling event names the activity and the policy.
	if m := counts.metas[0]; m[MetaPolicy] != "b" || m[MetaActivity] == "" {
		t.Fatalf("scaling meta %v", m)
	}
	// The provisioner learns when the trigger arrived and when it was
	// decided, as typed times, for the scale-out's timeline.
	if len(told) != 1 || !told[0].Triggered.Equal(arrived) || !told[0].Decided.Equal(now) || told[0].Policy != "b" ||
		told[0].From != 2 || told[0].To != 5 || told[0].Activity != counts.metas[0][MetaActivity] || told[0].Target != target {
		t.Fatalf("OnScaled got %+v", told)
	}
	evs, _ := db.Events().Query(ctx, journal.Filter{})
	if len(evs) != 2 || evs[0].Kind != journal.KindDecision || evs[1].Kind != journal.KindScale || evs[0].Activity == "" || evs[0].Activity != evs[1].Activity {
		t.Fatalf("journal: %+v", evs)
	}
	var data struct {
		Policy string   `json:"policy"`
		Alerts []string `json:"alerts"`
		Cause  string   `json:"cause"`
	}
	_ = json.Unmarshal(evs[1].Data, &data)
	if data.Policy != "b" || len(data.Alerts) != 1 || data.Alerts[0] != "fp1" || data.Cause != "alert X fired" {
		t.Fatalf("scale event data %s", evs[1].Data)
	}

	// A new scaler on the same journal knows when the group last scaled.
	s2 := New(Config{Policies: func() *policies.Set { return set }, Evaluator: ev, Counts: counts, Journal: db.Events(), Now: func() time.Time { return now }})
	if err := s2.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	ev.lastSeen = nil
	s2.Evaluate(ctx, target, Trigger{Target: target, Cause: "evaluation interval"})
	if len(ev.lastSeen) == 0 || !ev.lastSeen[0].Equal(now) {
		t.Fatalf("restored last scale %v, want %v", ev.lastSeen, now)
	}
}

func TestScalerJournalsRoutineDecisionsOnce(t *testing.T) {
	ctx := context.Background()
	db := openJournal(t)
	set := loadSet(t, strings.Replace(policyDoc, "NAME", "a", 1))
	reason := "holding: no data"
	dir := policies.Hold
	ev := &fakeEvaluator{decide: func(*policies.Policy, evaluate.State) policies.Decision { return decision(dir, 2, 2, reason) }}
	s := New(Config{Policies: func() *policies.Set { return set }, Evaluator: ev, Counts: &fakeCounts{}, Journal: db.Events()})
	interval := Trigger{Target: target, Cause: "evaluation interval"}
	for range 5 {
		s.Evaluate(ctx, target, interval)
	}
	dir, reason = policies.None, "in band"
	s.Evaluate(ctx, target, interval)
	s.Evaluate(ctx, target, interval)
	evs, _ := db.Events().Query(ctx, journal.Filter{Kind: journal.KindDecision})
	if len(evs) != 2 {
		t.Fatalf("want the hold and the change to none journaled once each, got %d: %+v", len(evs), evs)
	}
}

func TestScalerJournalsFailures(t *testing.T) {
	ctx := context.Background()
	db := openJournal(t)
	set := loadSet(t, strings.Replace(policyDoc, "NAME", "a", 1))
	ev := &fakeEvaluator{decide: func(*policies.Policy, evaluate.State) policies.Decision { return decision(policies.Up, 2, 4, "more") }}
	counts := &fakeCounts{err: errors.New("nomad: 500")}
	s := New(Config{Policies: func() *policies.Set { return set }, Evaluator: ev, Counts: counts, Journal: db.Events()})
	s.Evaluate(ctx, target, Trigger{Target: target, Cause: "manual"})
	evs, _ := db.Events().Query(ctx, journal.Filter{Kind: "scale"})
	if len(evs) != 1 || evs[0].Kind != journal.KindScaleFailed || !strings.Contains(evs[0].Message, "nomad: 500") {
		t.Fatalf("journal: %+v", evs)
	}
	// The failure does not start a cooldown: the next evaluation sees no last scale.
	ev.lastSeen = nil
	s.Evaluate(ctx, target, Trigger{Target: target, Cause: "manual"})
	if !ev.lastSeen[0].IsZero() {
		t.Fatalf("a failed scaling set the last scale time to %v", ev.lastSeen[0])
	}
}

func TestDueFollowsTheShortestInterval(t *testing.T) {
	set := loadSet(t, strings.Replace(policyDoc, "NAME", "a", 1),
		strings.Replace(strings.Replace(policyDoc, "NAME", "b", 1), "10s", "4s", 1))
	now := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	s := New(Config{Policies: func() *policies.Set { return set }, Now: func() time.Time { return now }})
	if got := s.due(); len(got) != 1 || got[0] != target {
		t.Fatalf("first due: %v", got)
	}
	// While a sweep evaluates it, it is not due again.
	now = now.Add(4 * time.Second)
	if got := s.due(); len(got) != 0 {
		t.Fatalf("due while in flight: %v", got)
	}
	s.swept(target)
	now = now.Add(-time.Second)
	if got := s.due(); len(got) != 0 {
		t.Fatalf("due after 3s: %v", got)
	}
	now = now.Add(time.Second)
	if got := s.due(); len(got) != 1 {
		t.Fatalf("due after 4s: %v", got)
	}
}

func TestScalerRetriesSoonAfterAnActiveDeployment(t *testing.T) {
	ctx := context.Background()
	db := openJournal(t)
	set := loadSet(t, strings.Replace(policyDoc, "NAME", "a", 1))
	now := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	ev := &fakeEvaluator{decide: func(*policies.Policy, evaluate.State) policies.Decision { return decision(policies.Up, 2, 4, "more") }}
	counts := &fakeCounts{err: fmt.Errorf("scaling: %w", ErrDeploymentActive)}
	s := New(Config{Policies: func() *policies.Set { return set }, Evaluator: ev, Counts: counts, Journal: db.Events(), Now: func() time.Time { return now }})
	if got := s.due(); len(got) != 1 {
		t.Fatalf("first due: %v", got)
	}
	s.Evaluate(ctx, target, Trigger{Target: target, Cause: "evaluation interval"})
	s.swept(target)
	now = now.Add(DeploymentRetry)
	if got := s.due(); len(got) != 1 {
		t.Fatalf("a refused scaling must be retried after %s, not the 10s interval: due %v", DeploymentRetry, got)
	}
	// Retried while the deployment runs: journaled once, not every try.
	for range 3 {
		s.Evaluate(ctx, target, Trigger{Target: target, Cause: CauseInterval})
		now = now.Add(DeploymentRetry)
	}
	kinds := func() []string {
		evs, err := db.Events().Query(ctx, journal.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, ev := range evs {
			out = append(out, ev.Kind)
		}
		return out
	}
	if got := kinds(); strings.Join(got, " ") != "decision scale.deferred" {
		t.Fatalf("journal while the deployment runs: %v, want one decision and one scale.deferred", got)
	}
	if len(counts.calls) != 4 {
		t.Fatalf("Nomad was asked %d times, want every retry (4)", len(counts.calls))
	}
	// The deployment ends: the change is made, in the same activity.
	counts.err = nil
	s.Evaluate(ctx, target, Trigger{Target: target, Cause: CauseInterval})
	evs, _ := db.Events().Query(ctx, journal.Filter{})
	if got := kinds(); strings.Join(got, " ") != "decision scale.deferred scale" {
		t.Fatalf("journal after the deployment: %v", got)
	}
	if evs[2].Activity != evs[0].Activity || !strings.Contains(evs[2].Message, "waiting for the deployment") {
		t.Fatalf("the scale event %+v is not the deferred change's", evs[2])
	}
}

// TestScalerSkipsAHeldGroup: while Hold holds the group (a surge raised
// its count for a drain), no evaluation changes its count, whatever the
// policy wants; it is due again DeploymentRetry later, and once the hold
// ends the policy's change goes through.
func TestScalerSkipsAHeldGroup(t *testing.T) {
	ctx := context.Background()
	db := openJournal(t)
	set := loadSet(t, strings.Replace(policyDoc, "NAME", "a", 1))
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	ev := &fakeEvaluator{decide: func(*policies.Policy, evaluate.State) policies.Decision {
		return decision(policies.Down, 16, 12, "12 is enough")
	}}
	counts := &fakeCounts{}
	var mu sync.Mutex
	why := "its count is raised by 4 for the drain of shared-1"
	s := New(Config{Policies: func() *policies.Set { return set }, Evaluator: ev, Counts: counts, Journal: db.Events(), Now: func() time.Time { return now },
		Hold: func(got policies.Target) string {
			mu.Lock()
			defer mu.Unlock()
			if got != target {
				t.Errorf("Hold asked about %s", got)
			}
			return why
		}})
	s.Evaluate(ctx, target, Trigger{Target: target, Cause: "alert X fired"})
	s.Evaluate(ctx, target, Trigger{Target: target, Cause: CauseInterval})
	if len(counts.calls) != 0 || len(ev.lastSeen) != 0 {
		t.Fatalf("a held group was evaluated (%d) or scaled: %v", len(ev.lastSeen), counts.calls)
	}
	s.mu.Lock()
	due := s.nextDue[target]
	s.mu.Unlock()
	if !due.Equal(now.Add(DeploymentRetry)) {
		t.Fatalf("a held group is due again at %s, want %s", due, now.Add(DeploymentRetry))
	}
	mu.Lock()
	why = ""
	mu.Unlock()
	s.Evaluate(ctx, target, Trigger{Target: target, Cause: CauseInterval})
	if len(counts.calls) != 1 || counts.calls[0] != 12 {
		t.Fatalf("after the hold the scale calls are %v, want [12]", counts.calls)
	}
}
