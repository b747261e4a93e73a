package scaler

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/evaluate"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/controlplane/metrics"
	"github.com/spillwayhq/spillway/policies"
)

// perAlloc answers every query with one value, sampled now.
type perAlloc struct {
	mu    sync.Mutex
	value float64
}

func (p *perAlloc) set(v float64) {
	p.mu.Lock()
	p.value = v
	p.mu.Unlock()
}

func (p *perAlloc) Query(_ context.Context, _ string, now time.Time) ([]metrics.Sample, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return []metrics.Sample{{Value: p.value, Time: now}}, nil
}

// TestEvaluatesOnLastCountsWhileTheModelRelists: while the cluster model
// lists Nomad again, groups are evaluated on its last known counts, for
// a bounded time: the journal says so once per group and period, a
// scale-out goes ahead, a scale-in is held; past the bound, nothing is
// evaluated.
func TestEvaluatesOnLastCountsWhileTheModelRelists(t *testing.T) {
	ctx := context.Background()
	db := openJournal(t)
	set := loadSet(t, strings.Replace(policyDoc, "NAME", "a", 1))
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC))
	lost := clock.Now()
	model := cluster.NewStatic(cluster.Empty(false).Edit(func(e *cluster.Editor) {
		e.PutJob(&cluster.Job{Namespace: "default", ID: "demo", Groups: map[string]*cluster.Group{"web": {Name: "web", Count: 4}}})
		e.SetSync(cluster.Sync{Since: lost, LastLive: lost, Err: "nomad's event stream closed"})
	}))
	src := &perAlloc{value: 50} // wants 2
	counts := &fakeCounts{}
	ev := evaluate.New(src, evaluate.ClusterGroups{Cluster: model, MaxStale: time.Minute, Now: clock.Now}, clock.Now, slog.New(slog.DiscardHandler))
	s := New(Config{Policies: func() *policies.Set { return set }, Evaluator: ev, Counts: counts, Journal: db.Events(), Clock: clock})
	interval := Trigger{Target: target, Cause: CauseInterval}
	journaled := func(kind string) []journal.Event {
		t.Helper()
		evs, err := db.Events().Query(ctx, journal.Filter{Kind: kind})
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}

	clock.Advance(10 * time.Second)
	s.Evaluate(ctx, target, interval)
	if len(counts.calls) != 0 {
		t.Fatalf("scaled in on stale counts: %v", counts.calls)
	}
	stale := journaled(KindStaleCounts)
	if len(stale) != 1 || stale[0].Subject != target.String() || !strings.Contains(stale[0].Message, "counts from 2026-11-22T08:00:00Z") {
		t.Fatalf("the journal's word on stale counts: %+v", stale)
	}
	if d := journaled(journal.KindDecision); len(d) != 1 || !strings.Contains(d[0].Message, "(hold)") || !strings.Contains(d[0].Message, "not scaling in") {
		t.Fatalf("the decision: %+v", d)
	}

	clock.Advance(10 * time.Second)
	src.set(200) // wants 8
	s.Evaluate(ctx, target, interval)
	if len(counts.calls) != 1 || counts.calls[0] != 8 {
		t.Fatalf("a scale-out on stale counts: %v, want [8]", counts.calls)
	}
	if n := len(journaled(KindStaleCounts)); n != 1 {
		t.Fatalf("stale counts journaled %d times in one period, want once", n)
	}

	// Past the bound: not evaluated at all.
	clock.Advance(41 * time.Second)
	before := len(journaled(""))
	s.Evaluate(ctx, target, interval)
	if n := len(journaled("")); n != before || len(counts.calls) != 1 {
		t.Fatalf("evaluated on counts older than the bound: %d new events, scale calls %v", n-before, counts.calls)
	}

	// Live again, then lost again: a new period, journaled again.
	again := clock.Now()
	model.Update(func(_ *cluster.Snapshot, e *cluster.Editor) {
		e.SetSync(cluster.Sync{Since: again, LastLive: again, Err: "nomad's event stream closed"})
	})
	clock.Advance(time.Second)
	src.set(100)
	s.Evaluate(ctx, target, interval)
	if n := len(journaled(KindStaleCounts)); n != 2 {
		t.Fatalf("a second period journaled %d stale-count events in all, want 2", n)
	}
}
