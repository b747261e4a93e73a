package controller

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/journal"
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

// TestScaleOutEndsUnmetWhenNoTierGives: bu-a's burst needs hosts; the
// shared pool has none and every cloud offering ran out. The activity asks
// again until its deadline (2m) plus grace (1m), journals each reason
// once, and ends unmet; the same demand starts no new activity, not even
// on a new leader. A new demand cycle (the count changes) starts a new
// activity, which ends the same way.
func TestScaleOutEndsUnmetWhenNoTierGives(t *testing.T) {
	h := newHarness(t, 0)
	h.c.cfg.ActivityGrace = time.Minute
	h.outOfCapacity()
	h.service(4)
	h.start()
	if err := h.k.SetCount(web, 8); err != nil {
		t.Fatal(err)
	}
	h.until("the scale-out ends", func() bool { return len(h.events(KindActivityEnded)) == 1 && h.c.Active()[web] == "" })
	end := h.events(KindActivityEnded)[0]
	if got := outcomeOf(end); got != OutcomeUnmet {
		t.Fatalf("outcome %q, want unmet\n%s", got, h.dump())
	}
	if limit := 2*time.Minute + time.Minute; end.Time.Sub(h.events(KindPhase)[0].Time) < limit {
		t.Fatalf("ended %s after the trigger, before its deadline plus grace (%s)", end.Time.Sub(h.events(KindPhase)[0].Time), limit)
	}
	reasons := map[string]int{}
	for _, ev := range h.events(KindUnmet) {
		if ev.Activity != end.Activity {
			t.Fatalf("capacity.unmet outside the activity: %+v", ev)
		}
		reasons[ev.Message]++
	}
	for msg, n := range reasons {
		if n != 1 {
			t.Fatalf("capacity.unmet journaled %d times: %s", n, msg)
		}
	}
	if len(h.cloud.Instances()) != 0 || h.shared.creates != 0 {
		t.Fatalf("%d instances, %d shared claims with no tier able to give", len(h.cloud.Instances()), h.shared.creates)
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

	if err := h.k.SetCount(web, 9); err != nil {
		t.Fatal(err)
	}
	h.until("the new cycle's scale-out ends", func() bool { return len(h.events(KindActivityEnded)) == 2 && h.c.Active()[web] == "" })
	ends := h.events(KindActivityEnded)
	if ends[1].Activity == ends[0].Activity || outcomeOf(ends[1]) != OutcomeUnmet {
		t.Fatalf("the new cycle ended %+v; want a new activity, unmet", ends[1])
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

// TestScaleOutWithNothingQueuedEndsAfterTheGrace: the hosts a scale-out
// asked for never come, and Nomad stops queueing its work (its failed
// allocations wait out their reschedule delay): nothing is queued, yet
// allocations are missing. The scale-out does not live on, holding up
// scale-in of its business unit: it ends past its deadline plus grace.
func TestScaleOutWithNothingQueuedEndsAfterTheGrace(t *testing.T) {
	h := newHarness(t, 0)
	h.c.cfg.ActivityGrace = time.Minute
	h.boots = false
	h.service(4)
	h.start()
	if err := h.k.SetCount(web, 8); err != nil {
		t.Fatal(err)
	}
	h.until("capacity is asked for", func() bool { return len(h.events(KindIntent)) > 0 })
	h.k.Update(func(_ *cluster.Snapshot, e *cluster.Editor) { e.SetQueue(web.Namespace, web.Job, nil) })
	h.until("the scale-out ends", func() bool { return len(h.events(KindActivityEnded)) == 1 && h.c.Active()[web] == "" })
	end := h.events(KindActivityEnded)[0]
	if outcomeOf(end) != OutcomeDone || !strings.Contains(end.Message, "nothing is queued, but only 4 of 8 allocations run") {
		t.Fatalf("ended %q: %s", outcomeOf(end), end.Message)
	}
	if start := h.events(KindPhase)[0].Time; end.Time.Sub(start) < 3*time.Minute {
		t.Fatalf("ended %s after the trigger, before the deadline (2m) plus grace (1m)", end.Time.Sub(start))
	}
}
