package scaler

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/alerts"
	"github.com/spillwayhq/spillway/controlplane/evaluate"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/policies"
)

// pureEvaluator evaluates a policy the way the real evaluator does once it
// has the readings (policies.Evaluate, where alert rules are matched), with
// a count of 4 and 75 per instance against a target of 100: it wants 3.
type pureEvaluator struct{ now time.Time }

func (e pureEvaluator) Evaluate(_ context.Context, p *policies.Policy, st evaluate.State) evaluate.Result {
	d := policies.Evaluate(p, policies.Input{Now: e.now, Current: 4, LastScale: st.LastScale, Alerts: st.Alerts,
		Readings: map[string]policies.Reading{"rate": {Samples: []policies.Sample{{Value: 75, Time: e.now}}}}})
	return evaluate.Result{Policy: p.Name, Target: p.Target, Decision: &d}
}

// nopJournal takes every event and keeps none: the cost measured is the
// evaluation's, not the database's.
type nopJournal struct{}

func (nopJournal) Append(_ context.Context, evs ...journal.Event) ([]journal.Event, error) {
	return evs, nil
}
func (nopJournal) Query(context.Context, journal.Filter) ([]journal.Event, error) { return nil, nil }

// manyPolicies writes n policies, one task group each; every one has an
// alert rule of its own, and policy 0 also takes StorageDiskFull.
func manyPolicies(t testing.TB, n int) *policies.Set {
	t.Helper()
	var b strings.Builder
	for i := range n {
		extra := ""
		if i == 0 {
			extra = "\n  - alert: StorageDiskFull\n    action: \"+1\""
		}
		fmt.Fprintf(&b, `---
apiVersion: spillway/v1
kind: ScalingPolicy
name: svc-%d
business_unit: bu-a
target: {namespace: default, job: svc-%d, group: web}
min: 1
max: 20
checks:
  - name: rate
    query: sum(rate(requests_total{job="svc-%d"}[1m]))
    target_value: {target: 100}
alerts:
  - alert: HighLatency
    matchers: ['service="svc-%d"']
    action: "+50%%"%s
`, i, i, i, i, extra)
	}
	path := filepath.Join(t.TempDir(), "many.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := policies.LoadFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// firingStore holds n StorageDiskFull alerts, which only policy svc-0's
// rule names.
func firingStore(t testing.TB, n int, now time.Time) *alerts.Store {
	t.Helper()
	s := alerts.NewStore(time.Hour, 0)
	note := &alerts.Notification{Version: "4", Status: "firing"}
	for i := range n {
		note.Alerts = append(note.Alerts, alerts.Alert{Status: "firing", Fingerprint: fmt.Sprintf("disk%06d", i), StartsAt: now,
			Labels: map[string]string{"alertname": "StorageDiskFull", "instance": fmt.Sprintf("host-%d", i)}})
	}
	if _, err := s.Apply(note, now, nil); err != nil {
		t.Fatal(err)
	}
	return s
}

// sweepScaler evaluates the groups of set, with store's alerts.
func sweepScaler(set *policies.Set, store *alerts.Store, now time.Time) *Scaler {
	return New(Config{Policies: func() *policies.Set { return set }, Evaluator: pureEvaluator{now: now}, Counts: &fakeCounts{},
		Journal: nopJournal{}, Alerts: store, Now: func() time.Time { return now }})
}

// sweep evaluates every group but svc-0's, once.
func sweep(s *Scaler, set *policies.Set) {
	for _, p := range set.Policies()[1:] {
		s.Evaluate(context.Background(), p.Target, Trigger{Target: p.Target, Cause: CauseInterval})
	}
}

// TestEvaluationCostIgnoresUnrelatedAlerts sweeps 999 of 1,000 policies
// with no firing alerts and with 20,000 that only the other policy's rule
// names: the work of a sweep, in allocations (which do not vary from run
// to run, unlike time), is the same within 20%. The times are reported;
// BenchmarkSweepWithUnrelatedAlerts measures them in `make bench`.
func TestEvaluationCostIgnoresUnrelatedAlerts(t *testing.T) {
	now := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	set := manyPolicies(t, 1000)
	cost := map[int]float64{}
	for _, n := range []int{0, 20000} {
		s := sweepScaler(set, firingStore(t, n, now), now)
		sweep(s, set) // journal the first decisions, once
		cost[n] = testing.AllocsPerRun(3, func() { sweep(s, set) })
		start := time.Now()
		sweep(s, set)
		t.Logf("1,000 policies, %d firing alerts: a sweep of 999 groups allocates %.0f times and took %s", n, cost[n], time.Since(start).Round(time.Microsecond))
	}
	if ratio := cost[20000] / cost[0]; ratio < 0.8 || ratio > 1.2 {
		t.Fatalf("a sweep with 20,000 unrelated alerts costs %.2f× one with none (allocations %.0f against %.0f), want within 20%%", ratio, cost[20000], cost[0])
	}
	// The alerts still count where a rule names them.
	s := sweepScaler(set, firingStore(t, 3, now), now)
	r := s.DryRun(context.Background(), set.Policies()[0])
	if v, ok := r.Decision.WinningAlert(); !ok || v.Source != "alert:StorageDiskFull" || len(v.Fingerprints) != 3 {
		t.Fatalf("svc-0 with 3 StorageDiskFull alerts: %+v", r.Decision)
	}
}

// TestIntervalEvaluationNamesTheAlertThatDecided: an interval evaluation
// whose winning vote is an alert's journals the alert's fingerprint, as a
// pushed evaluation does.
func TestIntervalEvaluationNamesTheAlertThatDecided(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	set := manyPolicies(t, 2)
	db := openJournal(t)
	store := firingStore(t, 0, now)
	if _, err := store.Apply(&alerts.Notification{Version: "4", Status: "firing", Alerts: []alerts.Alert{{Status: "firing", Fingerprint: "fp-hot",
		StartsAt: now, Labels: map[string]string{"alertname": "HighLatency", "service": "svc-1"}}}}, now, nil); err != nil {
		t.Fatal(err)
	}
	s := New(Config{Policies: func() *policies.Set { return set }, Evaluator: pureEvaluator{now: now}, Counts: &fakeCounts{},
		Journal: db.Events(), Alerts: store, Now: func() time.Time { return now }})
	svc1 := set.Policies()[1].Target
	s.Evaluate(ctx, svc1, Trigger{Target: svc1, Cause: CauseInterval})
	evs, err := db.Events().Query(ctx, journal.Filter{Kind: journal.KindScale})
	if err != nil || len(evs) != 1 {
		t.Fatalf("scale events: %v %v", evs, err)
	}
	var data struct {
		Alerts  []string `json:"alerts"`
		Cause   string   `json:"cause"`
		Desired int      `json:"desired"`
	}
	if err := json.Unmarshal(evs[0].Data, &data); err != nil {
		t.Fatal(err)
	}
	// +50% of 4 is 6, above the rate's 3: the alert decided.
	if data.Desired != 6 || len(data.Alerts) != 1 || data.Alerts[0] != "fp-hot" || !strings.Contains(data.Cause, "alert HighLatency firing, fingerprint fp-hot") {
		t.Fatalf("scale event: %s", evs[0].Data)
	}
	// svc-0's evaluation does not see svc-1's alert: its rate decides.
	svc0 := set.Policies()[0].Target
	s.Evaluate(ctx, svc0, Trigger{Target: svc0, Cause: CauseInterval})
	evs, _ = db.Events().Query(ctx, journal.Filter{Kind: journal.KindScale, Subject: svc0.String()})
	if len(evs) != 1 || strings.Contains(string(evs[0].Data), "fp-hot") {
		t.Fatalf("svc-0's scale event: %+v", evs)
	}
}

// BenchmarkSweepWithUnrelatedAlerts is one sweep of 999 of 1,000 policies
// with 0 and with 20,000 firing alerts that only the other policy names.
func BenchmarkSweepWithUnrelatedAlerts(b *testing.B) {
	now := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	set := manyPolicies(b, 1000)
	for _, n := range []int{0, 20000} {
		b.Run(fmt.Sprintf("alerts=%d", n), func(b *testing.B) {
			s := sweepScaler(set, firingStore(b, n, now), now)
			sweep(s, set)
			b.ReportAllocs()
			for b.Loop() {
				sweep(s, set)
			}
		})
	}
}
