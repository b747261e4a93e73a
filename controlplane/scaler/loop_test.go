package scaler

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/spillwayhq/spillway/controlplane/evaluate"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/policies"
)

// thousandPolicies writes 1,000 policies, one task group each (job
// j0000 to j0999), every 10s.
func thousandPolicies(t *testing.T) *policies.Set {
	t.Helper()
	var b strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&b, `---
apiVersion: spillway/v1
kind: ScalingPolicy
name: p%04d
business_unit: bu-a
target: {namespace: default, job: j%04d, group: web}
min: 1
max: 20
evaluation_interval: 10s
checks:
  - name: rate
    query: sum(rate(x[1m]))
    target_value: {target: 100}
`, i, i)
	}
	p := filepath.Join(t.TempDir(), "many.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := policies.LoadFiles(p)
	if err != nil {
		t.Fatal(err)
	}
	if set.Len() != 1000 {
		t.Fatalf("%d policies", set.Len())
	}
	return set
}

// gatedEvaluator holds the evaluation of the jobs in gate until released
// (a Prometheus query that hangs until its timeout), answers the others
// at once with a hold, and records how many ran at once.
type gatedEvaluator struct {
	gate    map[string]chan struct{}
	running atomic.Int32
	most    atomic.Int32
	mu      sync.Mutex
	done    map[string]int
}

func (g *gatedEvaluator) Evaluate(ctx context.Context, p *policies.Policy, _ evaluate.State) evaluate.Result {
	n := g.running.Add(1)
	defer g.running.Add(-1)
	for {
		m := g.most.Load()
		if n <= m || g.most.CompareAndSwap(m, n) {
			break
		}
	}
	if ch, ok := g.gate[p.Target.Job]; ok {
		select {
		case <-ch:
		case <-ctx.Done():
		}
	}
	g.mu.Lock()
	g.done[p.Target.Job]++
	g.mu.Unlock()
	d := policies.Decision{Policy: p.Name, Target: p.Target, Current: 2, Desired: 2, Direction: policies.Hold, Reason: "steady"}
	return evaluate.Result{Policy: p.Name, Target: p.Target, Decision: &d}
}

func (g *gatedEvaluator) count(job string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.done[job]
}

func (g *gatedEvaluator) total() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, v := range g.done {
		n += v
	}
	return n
}

// inFlight is how many groups a sweep is evaluating.
func inFlight(s *Scaler) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.inflight)
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSweepOfAThousandPolicies: a sweep of 1,000 task groups runs on at
// most Parallel workers; a check that hangs (until its Prometheus
// timeout) holds up its own group only, every other group is evaluated.
func TestSweepOfAThousandPolicies(t *testing.T) {
	set := thousandPolicies(t)
	hang := make(chan struct{})
	ev := &gatedEvaluator{gate: map[string]chan struct{}{"j0000": hang}, done: map[string]int{}}
	clock := clockwork.NewFakeClock()
	s := New(Config{Policies: func() *policies.Set { return set }, Evaluator: ev, Counts: &fakeCounts{}, Journal: openJournal(t).Events(),
		Clock: clock, Parallel: 4})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	defer func() { close(hang); cancel(); <-done }()

	if err := clock.BlockUntilContext(ctx, 1); err != nil { // the ticker
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	waitFor(t, "999 groups evaluated while one hangs", func() bool { return ev.total() == 999 && inFlight(s) == 1 })
	if ev.count("j0000") != 0 {
		t.Fatal("the hanging group finished")
	}
	if most := ev.most.Load(); most > 4 {
		t.Errorf("%d evaluations ran at once, want at most Parallel (4)", most)
	}
	// The next sweep skips the group still in flight, and evaluates the
	// others again.
	clock.Advance(10 * time.Second)
	waitFor(t, "the next sweep", func() bool { return ev.total() == 1998 })
	if ev.count("j0000") != 0 {
		t.Fatal("the hanging group was evaluated twice at once")
	}
}

// TestTriggerIsNotQueuedBehindASweep: while every sweep worker is held by
// a slow group, a trigger (an alert) for another group is evaluated and
// journaled at once, with its cause.
func TestTriggerIsNotQueuedBehindASweep(t *testing.T) {
	set := thousandPolicies(t)
	hang := make(chan struct{})
	gate := map[string]chan struct{}{}
	for i := range 1000 {
		if i != 500 {
			gate[fmt.Sprintf("j%04d", i)] = hang
		}
	}
	ev := &gatedEvaluator{gate: gate, done: map[string]int{}}
	clock := clockwork.NewFakeClock()
	db := openJournal(t)
	s := New(Config{Policies: func() *policies.Set { return set }, Evaluator: ev, Counts: &fakeCounts{}, Journal: db.Events(),
		Clock: clock, Parallel: 4})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	defer func() { close(hang); cancel(); <-done }()
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	waitFor(t, "every sweep worker is held", func() bool { return ev.running.Load() == 4 })

	urgent := policies.Target{Namespace: "default", Job: "j0500", Group: "web"}
	s.Trigger(Trigger{Target: urgent, Cause: "alert DemoHighLatency fired", Alerts: []string{"fp-1"}})
	var evs []journal.Event
	waitFor(t, "the trigger's decision is journaled", func() bool {
		evs, _ = db.Events().Query(ctx, journal.Filter{Subject: urgent.String()})
		return len(evs) == 1
	})
	if !strings.Contains(string(evs[0].Data), "alert DemoHighLatency fired") {
		t.Fatalf("the trigger's decision: %+v", evs)
	}
	if ev.total() != 1 || ev.running.Load() != 4 {
		t.Fatalf("%d evaluations done, %d running; the sweep should still be held", ev.total(), ev.running.Load())
	}
}
