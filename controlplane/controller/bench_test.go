package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/demand"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/bootstrap"
	"github.com/spillwayhq/spillway/providers/fake"
)

// bigCluster is the design target: 10,000 nodes and 100,000 allocations.
// bu-a owns 9,000 hosts, bu-b lends 500 to the shared pool, and 500 are
// rented from aws, each with its ledger entry.
func bigCluster(b *testing.B) (*Controller, *cluster.Static, context.Context) {
	b.Helper()
	big := strings.ReplaceAll(strings.ReplaceAll(harnessPools, "max_hosts: 5", "max_hosts: 2000"), "budget_per_hour: 10", "budget_per_hour: 1000")
	cfg, err := pools.Parse("pools.yaml", []byte(big))
	if err != nil {
		b.Fatal(err)
	}
	clock := clockwork.NewFakeClockAt(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	ctx := context.Background()
	ledger, _, err := pools.NewLedger(ctx, &pools.MemoryStore{}, cfg.Limits(nil))
	if err != nil {
		b.Fatal(err)
	}
	cloud := fake.NewCloud(clock.Now)
	aws := fake.New(cloud, "bench", fake.Credential)
	awsPool, _ := cfg.CloudPool("aws")
	hosts, err := aws.Create(ctx, providers.Claim{ID: "bench-aws", Pool: awsPool.ProviderPool(), Count: 500})
	if err != nil {
		b.Fatal(err)
	}
	src := cluster.NewStatic(cluster.Empty(true))
	src.Update(func(_ *cluster.Snapshot, e *cluster.Editor) {
		add := func(id, pool string, meta map[string]string) {
			e.PutNode(&cluster.Node{ID: id, Name: id, Pool: pool, Meta: meta, Status: "ready", Eligible: true, CPU: 4000, MemoryMB: 8192})
			for j := range 10 {
				e.PutAlloc(&cluster.Alloc{ID: fmt.Sprintf("%s-a%d", id, j), Namespace: "default", JobID: fmt.Sprintf("job-%d", j), TaskGroup: "g",
					NodeID: id, JobType: "service", ClientStatus: "running", DesiredStatus: "run", CPU: 250, MemoryMB: 256})
			}
		}
		// Scale-in places an allocation only where its job may run: the
		// jobs are known, in node pool all.
		for j := range 10 {
			e.PutJob(&cluster.Job{Namespace: "default", ID: fmt.Sprintf("job-%d", j), Type: "service", NodePool: "all",
				Groups: map[string]*cluster.Group{"g": {Name: "g", Count: 10000, PerAlloc: demand.Size{CPUMHz: 250, MemoryMB: 256}, Serves: "bu-a"}}})
		}
		for i := range 9000 {
			add(fmt.Sprintf("own-%05d", i), "bu-a", map[string]string{pools.MetaServes: "bu-a"})
		}
		for i := range 500 {
			add(fmt.Sprintf("shared-%05d", i), "shared", map[string]string{pools.MetaBusinessUnit: "bu-b"})
		}
		for _, h := range hosts {
			add("node-"+h.ID, "burst", map[string]string{pools.MetaServes: "bu-a", bootstrap.MetaInstance: h.ID})
		}
	})
	db, err := journal.Open(ctx, b.TempDir()+"/journal.db")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	c := New(Config{Cluster: src, Orchestrator: nil, Pools: cfg, Ledger: ledger,
		Clouds: map[string]providers.Provider{"aws": aws}, Journal: db.Events(), Clock: clock})
	for _, h := range hosts {
		if err := c.recordRental(ctx, h, pools.TierCold, "bu-a", "bench-aws", "bench"); err != nil {
			b.Fatal(err)
		}
	}
	if s := src.Snapshot(); s.NodeCount() != 10000 || s.AllocCount() != 100000 {
		b.Fatalf("%d nodes, %d allocations", s.NodeCount(), s.AllocCount())
	}
	return c, src, ctx
}

// BenchmarkPlan10kNodes: one planning round of a scale-out at the design
// target: the nodes with their usage from the model, and the ladder.
func BenchmarkPlan10kNodes(b *testing.B) {
	c, src, ctx := bigCluster(b)
	a := &activity{c: c, tl: &timeline{c: c, r: Request{Activity: "bench", Target: web, BusinessUnit: "bu-a", Deadline: c.now().Add(5 * time.Minute)}},
		exclude: map[string]string{}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		plan := a.plan(ctx, src.Snapshot().NodeUsageShared(), 20)
		if len(plan.Taken()) == 0 {
			b.Fatal("nothing planned")
		}
	}
}

// BenchmarkReconcilePass10kNodes: the reconcile pass over the clouds at
// the design target, with every rented host consistent (nothing to fix).
func BenchmarkReconcilePass10kNodes(b *testing.B) {
	c, _, ctx := bigCluster(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		n, err := c.ReconcileClouds(ctx)
		if err != nil || n != 0 {
			b.Fatalf("fixed %d, %v", n, err)
		}
	}
}

// BenchmarkGiveBackChoice10kNodes: the disruption controller's choice at
// the design target: which of 500 rented hosts to give back first.
func BenchmarkGiveBackChoice10kNodes(b *testing.B) {
	c, _, ctx := bigCluster(b)
	c.clockAdvance(MinLoanAge + time.Second)
	b.ReportAllocs()
	b.ResetTimer()
	snap := c.cfg.Cluster.Snapshot()
	for b.Loop() {
		if got := c.spare(ctx, snap, c.holds()); len(got) != 1 || !got[0].cand.cloud {
			b.Fatalf("chose %+v, want one rented host", got)
		}
	}
}

// clockAdvance steps the controller's fake clock.
func (c *Controller) clockAdvance(d time.Duration) {
	if fc, ok := c.cfg.Clock.(*clockwork.FakeClock); ok {
		fc.Advance(d)
	}
}
