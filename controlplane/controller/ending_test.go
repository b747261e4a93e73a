package controller

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spillwayhq/spillway/controlplane/cluster/clustertest"
	"github.com/spillwayhq/spillway/controlplane/demand"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/policies"
	"github.com/spillwayhq/spillway/providers"
)

// outcomeOf is the outcome an activity.done event records.
func outcomeOf(ev journal.Event) string {
	var d struct{ Outcome string }
	_ = json.Unmarshal(ev.Data, &d)
	return d.Outcome
}

// outOfCapacity makes every offering of the harness's clouds run out.
func (h *harness) outOfCapacity() {
	for _, o := range []providers.Offering{
		{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: providers.CapacityOnDemand},
		{InstanceType: "m5.xlarge", Zone: "us-east-1a", CapacityType: providers.CapacityOnDemand},
		{InstanceType: "ecs.g7.large", Zone: "cn-hangzhou-i", CapacityType: providers.CapacityOnDemand},
	} {
		h.cloud.SetCapacity(o, 0)
	}
}

// TestOversizedAllocationEndsUnmet: a group whose allocations are larger
// than any host gets capacity.unmet once, with the sizes in words, and
// its activity ends unmet at once: no host is borrowed or rented, and the
// same demand starts no new activity, not even on a new leader. A new
// demand cycle (the count changes) starts a new activity, which ends the
// same way.
func TestOversizedAllocationEndsUnmet(t *testing.T) {
	h := newHarness(t, 1)
	h.service(4)
	h.start()
	big := policies.Target{Namespace: "default", Job: "big", Group: "app"}
	h.k.AddJob(clustertest.Service{Target: big, Count: 2, Size: demand.Size{CPUMHz: 4000, MemoryMB: 64}, Serves: "bu-a"})
	h.until("the big group's scale-out ends", func() bool {
		return len(h.events(KindActivityEnded)) == 1 && h.c.Active()[big] == ""
	})
	end := h.events(KindActivityEnded)[0]
	if got := outcomeOf(end); got != OutcomeUnmet {
		t.Fatalf("outcome %q, want unmet\n%s", got, h.dump())
	}
	const why = "task group app asks 4000 MHz / 64 MB per allocation; the largest host serving bu-a gives 1000 MHz / 1024 MB"
	if !strings.Contains(end.Message, why) {
		t.Fatalf("the end says %q; want the reason %q", end.Message, why)
	}
	unmet := h.events(KindUnmet)
	if len(unmet) != 1 || unmet[0].Activity != end.Activity || !strings.Contains(unmet[0].Message, why) {
		t.Fatalf("capacity.unmet %+v; want it once, in the activity, saying %q", unmet, why)
	}
	if n := len(h.events(KindIntent)); n != 0 || h.shared.creates != 0 || len(h.cloud.Instances()) != 0 {
		t.Fatalf("%d intents, %d shared claims, %d instances for work no host can take", n, h.shared.creates, len(h.cloud.Instances()))
	}
	if got := testutil.ToFloat64(h.c.ends.WithLabelValues(OutcomeUnmet)); got != 1 {
		t.Fatalf("spillway_scaleouts_total{outcome=unmet} = %v, want 1", got)
	}
	if n := h.c.Provision(t.Context(), h.k.Snapshot()); n != 0 {
		t.Fatalf("the same demand started %d new activities", n)
	}
	// Nor does a new leader, which knows the ended cycle from the journal.
	next := New(h.c.cfg)
	if err := next.RestoreEnded(t.Context(), h.db.Events()); err != nil {
		t.Fatal(err)
	}
	if n := next.Provision(t.Context(), h.k.Snapshot()); n != 0 {
		t.Fatalf("a new leader started %d new activities for the same demand", n)
	}

	if err := h.k.SetCount(big, 3); err != nil {
		t.Fatal(err)
	}
	h.until("the new cycle's scale-out ends", func() bool { return len(h.events(KindActivityEnded)) == 2 })
	ends := h.events(KindActivityEnded)
	if ends[1].Activity == ends[0].Activity || outcomeOf(ends[1]) != OutcomeUnmet {
		t.Fatalf("the new cycle ended %+v; want a new activity, unmet", ends[1])
	}
	if unmet := h.events(KindUnmet); len(unmet) != 2 || unmet[1].Activity != ends[1].Activity {
		t.Fatalf("capacity.unmet %+v; want once per activity", unmet)
	}
}

// TestScaleOutEndsPartialAfterTheGrace: the burst needs two hosts; the
// shared pool gives one and the clouds none. The activity retries until
// its deadline (2m) plus grace (1m), then ends partial,
// having journaled each reason once; the same demand starts no new
// activity.
func TestScaleOutEndsPartialAfterTheGrace(t *testing.T) {
	h := newHarness(t, 1)
	h.c.cfg.ActivityGrace = time.Minute
	h.outOfCapacity()
	h.service(4)
	h.start()
	if err := h.k.SetCount(web, 12); err != nil {
		t.Fatal(err)
	}
	h.until("the scale-out ends", func() bool { return len(h.events(KindActivityEnded)) == 1 && h.c.Active()[web] == "" })
	end := h.events(KindActivityEnded)[0]
	if got := outcomeOf(end); got != OutcomePartial {
		t.Fatalf("outcome %q, want partial\n%s", got, h.dump())
	}
	trigger := h.events(KindPhase)[0].Time
	if limit := trigger.Add(3 * time.Minute); end.Time.Before(limit) {
		t.Fatalf("ended at %s, before the deadline plus grace (%s)\n%s", end.Time, limit, h.dump())
	}
	if !strings.Contains(end.Message, "4 allocations are still queued 1m0s past the deadline (scale_out.grace) and no tier can give more") {
		t.Fatalf("the end says %q", end.Message)
	}
	var reasons []string
	for _, ev := range h.events(KindUnmet) {
		var d struct{ Reasons string }
		_ = json.Unmarshal(ev.Data, &d)
		if slices.Contains(reasons, d.Reasons) {
			t.Fatalf("capacity.unmet journaled twice for %q\n%s", d.Reasons, h.dump())
		}
		reasons = append(reasons, d.Reasons)
	}
	if len(reasons) == 0 {
		t.Fatalf("no capacity.unmet\n%s", h.dump())
	}
	if got := poolsOf(h.events(""), KindClaimed); strings.Join(got, ",") != "shared" {
		t.Fatalf("claimed %v, want the one shared host", got)
	}
	if got := testutil.ToFloat64(h.c.ends.WithLabelValues(OutcomePartial)); got != 1 {
		t.Fatalf("spillway_scaleouts_total{outcome=partial} = %v, want 1", got)
	}
	if n := h.c.Provision(t.Context(), h.k.Snapshot()); n != 0 {
		t.Fatalf("the same demand started %d new activities", n)
	}
}
