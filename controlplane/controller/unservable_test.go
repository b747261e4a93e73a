package controller

import (
	"context"
	"strings"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/cluster/clustertest"
	"github.com/spillwayhq/spillway/controlplane/demand"
	"github.com/spillwayhq/spillway/controlplane/placement"
	"github.com/spillwayhq/spillway/policies"
	"github.com/spillwayhq/spillway/providers"
)

// TestMatchTiersSaysWhyNoneCanTakeIt: the reason matchTiers gives when
// every tier is ruled out, and none when one may take the work.
func TestMatchTiersSaysWhyNoneCanTakeIt(t *testing.T) {
	host := func(what, pool string, cpu, mem int) tierHost {
		return tierHost{Host: placement.Host{What: what, NodePool: pool, PoolKnown: true, Class: "", ClassKnown: true,
			Meta: map[string]string{"spillway.pool": strings.Fields(what)[0]}, MetaComplete: true, Size: demand.Size{CPUMHz: cpu, MemoryMB: mem}},
			instanceType: strings.Fields(what)[len(strings.Fields(what))-1]}
	}
	shared := tier{pool: "shared", shared: true, hosts: []tierHost{{Host: placement.Host{What: "a host of the shared pool shared", NodePool: "shared", PoolKnown: true,
		Size: demand.Size{CPUMHz: 1000, MemoryMB: 1024}}}}}
	aws := tier{pool: "aws", hosts: []tierHost{host("aws m5.large", "burst", 2000, 7680), host("aws m5.xlarge", "burst", 4000, 15360)}}
	ali := tier{pool: "ali", hosts: []tierHost{host("ali x", "burst", 800, 4096)}}
	unsized := tier{pool: "gcp", hosts: []tierHost{host("gcp n2", "burst", 0, 0)}}
	small := demand.Size{CPUMHz: 250, MemoryMB: 64}
	for _, tc := range []struct {
		name      string
		work      placement.Work
		tiers     []tier
		dimension string
		want      string
	}{
		{"fits the largest", placement.Work{Group: "app", NodePool: "all", PerAlloc: demand.Size{CPUMHz: 3000, MemoryMB: 64}}, []tier{shared, aws}, "", ""},
		{"too much cpu", placement.Work{Group: "app", NodePool: "all", PerAlloc: demand.Size{CPUMHz: 8000, MemoryMB: 64}}, []tier{shared, aws}, "size",
			"task group app asks 8000 MHz / 64 MB per allocation; the largest offering in any pool gives 4000 MHz / 15360 MB (aws m5.xlarge)"},
		{"cpu of one, memory of the other", placement.Work{Group: "app", NodePool: "all", PerAlloc: demand.Size{CPUMHz: 900, MemoryMB: 5000}}, []tier{shared, ali}, "size",
			"task group app asks 900 MHz / 5000 MB per allocation; the largest offering in any pool gives 1000 MHz / 1024 MB (a host of the shared pool shared)"},
		{"a size unknown: may fit", placement.Work{Group: "app", NodePool: "all", PerAlloc: demand.Size{CPUMHz: 8000, MemoryMB: 64}}, []tier{shared, aws, unsized}, "", ""},
		{"no tier known", placement.Work{Group: "app", NodePool: "all", PerAlloc: demand.Size{CPUMHz: 8000, MemoryMB: 64}}, nil, "", ""},
		{"node pool gpu", placement.Work{Group: "app", NodePool: "gpu", PerAlloc: small}, []tier{shared, aws}, "node_pool",
			"node pool gpu is not served by Spillway: the hosts it can give join node pools burst, shared"},
		{"node pool default", placement.Work{Group: "app", PerAlloc: small}, []tier{shared, aws}, "node_pool",
			"node pool default is not served by Spillway: the hosts it can give join node pools burst, shared"},
		{"the clouds' node pool", placement.Work{Group: "app", NodePool: "burst", PerAlloc: small}, []tier{shared, aws}, "", ""},
		{"a class no tier has", placement.Work{Group: "app", NodePool: "all", PerAlloc: small,
			Constraints: []*nomad.Constraint{nomad.NewConstraint("${node.class}", "=", "gpu")}}, []tier{aws, ali}, "constraint",
			`no tier's hosts can take task group app: aws: its hosts do not meet the constraint ${node.class} = gpu (on aws m5.large, ${node.class} is ""); ali: its hosts do not meet the constraint ${node.class} = gpu (on ali x, ${node.class} is "")`},
		{"one pool's meta", placement.Work{Group: "app", NodePool: "all", PerAlloc: small,
			Constraints: []*nomad.Constraint{nomad.NewConstraint("${meta.spillway.pool}", "=", "ali")}}, []tier{shared, aws, ali}, "", ""},
		{"a node pool that does not exist", placement.Work{Group: "app", NodePool: "all", PerAlloc: small,
			Constraints: []*nomad.Constraint{nomad.NewConstraint("${node.pool}", "=", "nosuch")}}, []tier{shared}, "constraint",
			`no tier's hosts can take task group app: shared: its hosts do not meet the constraint ${node.pool} = nosuch (on a host of the shared pool shared, ${node.pool} is "shared")`},
		{"mixed", placement.Work{Group: "app", NodePool: "burst", PerAlloc: demand.Size{CPUMHz: 900, MemoryMB: 5000}}, []tier{shared, ali}, "mixed",
			"no tier's hosts can take task group app: shared: its hosts join node pool shared; the job runs in node pool burst; ali: task group app asks 900 MHz / 5000 MB per allocation; ali x gives 800 MHz / 4096 MB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := matchTiers(tc.work, tc.tiers)
			if m.why != tc.want || m.dimension != tc.dimension {
				t.Fatalf("got %s %q\nwant %s %q", m.dimension, m.why, tc.dimension, tc.want)
			}
		})
	}
}

// TestMatchTiersKeepsOnlyWhatFits: a pool whose constraint-matching hosts
// are partly too small keeps the offerings that fit; the smallest of them
// sizes a rented host.
func TestMatchTiersKeepsOnlyWhatFits(t *testing.T) {
	h := func(it string, cpu int) tierHost {
		return tierHost{Host: placement.Host{What: "aws " + it, NodePool: "burst", PoolKnown: true, Size: demand.Size{CPUMHz: cpu, MemoryMB: 8192}}, instanceType: it}
	}
	m := matchTiers(placement.Work{Group: "app", NodePool: "all", PerAlloc: demand.Size{CPUMHz: 1500, MemoryMB: 64}},
		[]tier{{pool: "aws", hosts: []tierHost{h("small", 1000), h("large", 2000), h("xlarge", 4000)}}})
	if m.why != "" || len(m.out) != 0 {
		t.Fatalf("ruled out %v: %s", m.out, m.why)
	}
	if len(m.unfit["aws"]) != 1 || m.unfit["aws"]["small"] == "" {
		t.Fatalf("unfit %v, want aws small only", m.unfit)
	}
	if m.unit.CPUMHz != 2000 || m.unitWhat != "aws large" {
		t.Fatalf("unit %v (%s), want aws large's 2000 MHz", m.unit, m.unitWhat)
	}
}

// sizedPools are the harness's pools with the size of every offering.
var sizedPools = strings.NewReplacer(
	"{instance_type: m5.large,", "{instance_type: m5.large, cpu_mhz: 2000, memory_mb: 7680,",
	"{instance_type: m5.xlarge,", "{instance_type: m5.xlarge, cpu_mhz: 4000, memory_mb: 15360,",
	"{instance_type: ecs.g7.large,", "{instance_type: ecs.g7.large, cpu_mhz: 2000, memory_mb: 7680,",
).Replace(harnessPools)

// TestWorkLargerThanEveryOfferingIsReportedNotRentedFor: a group whose
// allocation is larger than every offering of every pool (the pool
// files give their sizes) gets no activity and no host: capacity.unmet
// once, with the sizes in words, however many passes look at it; it is
// listed by Unservable and counted in spillway_unservable_task_groups.
// Once the job asks for less, it is judged again and gets a scale-out.
func TestWorkLargerThanEveryOfferingIsReportedNotRentedFor(t *testing.T) {
	if !strings.Contains(sizedPools, "cpu_mhz: 4000") {
		t.Fatal("the harness's pools changed; sizedPools sets no size")
	}
	h := newHarnessOn(t, 1, sizedPools)
	h.service(4)
	huge := policies.Target{Namespace: "default", Job: "huge", Group: "app"}
	h.k.AddJob(clustertest.Service{Target: huge, Count: 2, Size: demand.Size{CPUMHz: 8000, MemoryMB: 64}, Serves: "bu-a"})
	ctx, cancel := context.WithCancel(t.Context())
	defer func() { cancel(); h.c.Wait() }()
	for range 3 {
		if n := h.c.Provision(ctx, h.k.Snapshot()); n != 0 {
			t.Fatalf("started %d activities for work no offering can take", n)
		}
	}
	const why = "task group app asks 8000 MHz / 64 MB per allocation; the largest offering in any pool gives 4000 MHz / 15360 MB (aws m5.xlarge)"
	unmet := h.events(KindUnmet)
	if len(unmet) != 1 || !strings.Contains(unmet[0].Message, why) || unmet[0].Subject != huge.String() {
		t.Fatalf("capacity.unmet %+v; want it once for %s saying %q", unmet, huge, why)
	}
	if n := len(h.events(KindPhase)) + len(h.events(KindIntent)); n != 0 || h.shared.creates != 0 || len(h.cloud.Instances()) != 0 {
		t.Fatalf("%d phases or intents, %d shared claims, %d instances for unservable work", n, h.shared.creates, len(h.cloud.Instances()))
	}
	if got := h.c.Unservable(); len(got) != 1 || got[0].Target != huge || got[0].Reason != why || got[0].Dimension != "size" || got[0].BusinessUnit != "bu-a" {
		t.Fatalf("Unservable() = %+v", got)
	}
	if got := testutil.ToFloat64(h.c.unservedGauge); got != 1 {
		t.Fatalf("spillway_unservable_task_groups = %v, want 1", got)
	}

	// The job now asks for what an m5.xlarge can take.
	h.k.AddJob(clustertest.Service{Target: huge, Count: 2, Size: demand.Size{CPUMHz: 3000, MemoryMB: 64}, Serves: "bu-a"})
	if n := h.c.Provision(ctx, h.k.Snapshot()); n != 1 {
		t.Fatalf("started %d activities once the job fits an offering, want 1", n)
	}
	if got := h.c.Unservable(); len(got) != 0 {
		t.Fatalf("still unservable: %+v", got)
	}
	if got := testutil.ToFloat64(h.c.unservedGauge); got != 0 {
		t.Fatalf("spillway_unservable_task_groups = %v, want 0", got)
	}
}

// TestGroupInAnUnservedNodePoolIsReportedNotRentedFor: a job in a node
// pool that no tier's hosts join (the shared pool's hosts are in node
// pool shared, the clouds' in burst) gets no activity and no host:
// capacity.unmet once, in words, however many passes look at it. Moved
// to node pool all, it gets a scale-out.
func TestGroupInAnUnservedNodePoolIsReportedNotRentedFor(t *testing.T) {
	h := newHarness(t, 1)
	h.service(4)
	gpu := policies.Target{Namespace: "default", Job: "gpu", Group: "app"}
	put := func(pool string) {
		h.k.Update(func(_ *cluster.Snapshot, e *cluster.Editor) {
			e.PutJob(&cluster.Job{Namespace: "default", ID: "gpu", Type: "service", NodePool: pool,
				Groups: map[string]*cluster.Group{"app": {Name: "app", Count: 1, PerAlloc: demand.Size{CPUMHz: 250, MemoryMB: 64}, Serves: "bu-a"}}})
		})
		h.k.Schedule()
	}
	put("gpu")
	ctx, cancel := context.WithCancel(t.Context())
	defer func() { cancel(); h.c.Wait() }()
	for range 3 {
		if n := h.c.Provision(ctx, h.k.Snapshot()); n != 0 {
			t.Fatalf("started %d activities for work in a node pool no tier serves", n)
		}
	}
	const why = "node pool gpu is not served by Spillway: the hosts it can give join node pools burst, shared"
	unmet := h.events(KindUnmet)
	if len(unmet) != 1 || !strings.Contains(unmet[0].Message, why) || unmet[0].Subject != gpu.String() {
		t.Fatalf("capacity.unmet %+v; want it once for %s saying %q", unmet, gpu, why)
	}
	if got := h.c.Unservable(); len(got) != 1 || got[0].Target != gpu || got[0].Dimension != "node_pool" || got[0].Reason != why {
		t.Fatalf("Unservable() = %+v", got)
	}
	if h.shared.creates != 0 || len(h.cloud.Instances()) != 0 {
		t.Fatalf("%d shared claims, %d instances for unservable work", h.shared.creates, len(h.cloud.Instances()))
	}
	put("all")
	if n := h.c.Provision(ctx, h.k.Snapshot()); n != 1 {
		t.Fatalf("started %d activities once the job is in node pool all, want 1", n)
	}
}

// TestWorkOnlyAnOfferingThatRanOutTakesWaitsForIt: a group that only an
// m5.xlarge can take, while every m5.xlarge offering ran out, is reported
// unservable, with that reason, and rented for once the offering is
// available again.
func TestWorkOnlyAnOfferingThatRanOutTakesWaitsForIt(t *testing.T) {
	h := newHarnessOn(t, 1, sizedPools)
	wide := policies.Target{Namespace: "default", Job: "wide", Group: "app"}
	h.k.AddJob(clustertest.Service{Target: wide, Count: 1, Size: demand.Size{CPUMHz: 3000, MemoryMB: 64}, Serves: "bu-a"})
	h.c.memory.MarkUnavailable("aws", h.clock.Now(), 3*time.Minute,
		providers.Offering{InstanceType: "m5.xlarge", Zone: "us-east-1a", CapacityType: providers.CapacityOnDemand})
	ctx, cancel := context.WithCancel(t.Context())
	defer func() { cancel(); h.c.Wait() }()
	for range 2 {
		if n := h.c.Provision(ctx, h.k.Snapshot()); n != 0 {
			t.Fatalf("started %d activities for work only an exhausted offering takes", n)
		}
	}
	const why = "aws: every offering that can take it ran out recently (m5.xlarge)"
	if unmet := h.events(KindUnmet); len(unmet) != 1 || !strings.Contains(unmet[0].Message, why) {
		t.Fatalf("capacity.unmet %+v; want it once saying %q", unmet, why)
	}
	h.clock.Advance(3*time.Minute + time.Second)
	if n := h.c.Provision(ctx, h.k.Snapshot()); n != 1 {
		t.Fatalf("started %d activities once the m5.xlarge is available again, want 1", n)
	}
}
