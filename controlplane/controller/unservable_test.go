package controller

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/cluster/clustertest"
	"github.com/spillwayhq/spillway/controlplane/demand"
	"github.com/spillwayhq/spillway/policies"
)

func TestTooLarge(t *testing.T) {
	shared := offeringSize{what: "a host of the shared pool shared", size: demand.Size{CPUMHz: 1000, MemoryMB: 1024}}
	xl := offeringSize{what: "aws m5.xlarge", size: demand.Size{CPUMHz: 4000, MemoryMB: 15360}}
	for _, tc := range []struct {
		name  string
		per   demand.Size
		sizes []offeringSize
		known bool
		want  string
	}{
		{"fits the largest", demand.Size{CPUMHz: 3000, MemoryMB: 64}, []offeringSize{shared, xl}, true, ""},
		{"fits the shared host", demand.Size{CPUMHz: 250, MemoryMB: 64}, []offeringSize{shared, xl}, true, ""},
		{"too much cpu", demand.Size{CPUMHz: 8000, MemoryMB: 64}, []offeringSize{shared, xl}, true,
			"task group app asks 8000 MHz / 64 MB per allocation; the largest offering in any pool gives 4000 MHz / 15360 MB (aws m5.xlarge)"},
		{"cpu of one, memory of the other", demand.Size{CPUMHz: 900, MemoryMB: 2048}, []offeringSize{shared, {what: "ali x", size: demand.Size{CPUMHz: 800, MemoryMB: 4096}}}, true,
			"task group app asks 900 MHz / 2048 MB per allocation; the largest offering in any pool gives 1000 MHz / 1024 MB (a host of the shared pool shared)"},
		{"a size unknown: may fit", demand.Size{CPUMHz: 8000, MemoryMB: 64}, []offeringSize{shared, xl}, false, ""},
		{"no tier known", demand.Size{CPUMHz: 8000, MemoryMB: 64}, nil, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tooLarge("app", tc.per, tc.sizes, tc.known); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
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

func TestOutsidePools(t *testing.T) {
	served := []string{"burst", "shared"}
	for _, tc := range []struct {
		pool   string
		served []string
		known  bool
		want   string
	}{
		{"all", served, true, ""},
		{"burst", served, true, ""},
		{"shared", served, true, ""},
		{"gpu", served, true, "node pool gpu is not served by Spillway: the hosts it can give join node pools burst, shared"},
		{"", served, true, "node pool default is not served by Spillway: the hosts it can give join node pools burst, shared"},
		{"", []string{"default"}, true, ""},
		{"gpu", served, false, ""},
		{"gpu", nil, true, ""},
	} {
		if got := outsidePools(tc.pool, tc.served, tc.known); got != tc.want {
			t.Errorf("outsidePools(%q, %v, %v) = %q, want %q", tc.pool, tc.served, tc.known, got, tc.want)
		}
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
