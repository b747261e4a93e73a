package controller

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/cluster/clustertest"
	"github.com/spillwayhq/spillway/controlplane/demand"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/policies"
	"github.com/spillwayhq/spillway/providers"
)

// burst scales web from 4 to count on a running harness, waits until its
// scale-out is done, and stops the controllers, so the test drives the
// passes itself on the stepped clock.
func (h *harness) burst(count int) {
	h.t.Helper()
	h.service(4)
	h.start()
	if err := h.k.SetCount(web, count); err != nil {
		h.t.Fatal(err)
	}
	h.until("the scale-out is done", func() bool { return len(h.events(KindActivityEnded)) == 1 })
	h.stop()
}

// TestScaleInWaitsOnlyForActivitiesOfTheSameCapacity: bu-a's burst is
// over and its rented and borrowed hosts are spare. An activity of bu-b
// acquiring from the very pools those hosts come from does not hold them
// up; an activity of bu-a does, and the journal says once which activity
// and which pool it waits for; when that activity ends, the host goes.
func TestScaleInWaitsOnlyForActivitiesOfTheSameCapacity(t *testing.T) {
	h := newHarness(t, 1)
	h.burst(12) // one shared host borrowed, one aws host rented
	if err := h.k.SetCount(web, 4); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(MinLoanAge + time.Second)
	ctx := t.Context()

	endB := h.c.track("act-b", "the scale-out of default/other/app", "bu-b")
	defer endB()
	h.c.concern("act-b", "aws")
	h.c.concern("act-b", "shared")
	rented := h.cloud.Instances()[0].ID
	got, err := h.c.Consolidate(ctx)
	if err != nil || len(got) != 1 || got[0] != rented {
		t.Fatalf("gave back %v (%v) while bu-b's activity acquires from aws and shared; want bu-a's rented host %s\n%s", got, err, rented, h.dump())
	}
	h.c.Wait() // the give-back runs beside the pass

	endA := h.c.track("act-a", "the scale-out of default/web2/app", "bu-a")
	h.c.concern("act-a", "ali")
	for range 2 {
		if got, err := h.c.Consolidate(ctx); err != nil || len(got) != 0 {
			t.Fatalf("gave back %v (%v) while an activity of bu-a is in flight", got, err)
		}
	}
	waits := h.events(KindReturnWaits)
	if len(waits) != 1 {
		t.Fatalf("%d capacity.return_waits events, want one for two passes\n%s", len(waits), h.dump())
	}
	want := "shared-1 of bu-a is spare (its 0 allocations fit on bu-a's other hosts), but scale-in waits for activity act-a (the scale-out of default/web2/app for bu-a), which is acquiring from pool ali"
	if waits[0].Message != want || waits[0].Subject != "business-unit/bu-a" {
		t.Fatalf("the wait journaled %q (%s), want %q", waits[0].Message, waits[0].Subject, want)
	}

	endA()
	if got, err := h.c.Consolidate(ctx); err != nil || len(got) != 1 || got[0] != "shared-1" {
		t.Fatalf("gave back %v (%v) once bu-a's activity ended; want shared-1\n%s", got, err, h.dump())
	}
	h.c.Wait()
	if n := len(h.events(KindReturned)); n != 2 {
		t.Fatalf("%d hosts returned, want 2\n%s", n, h.dump())
	}
}

// TestScaleInWaitsForAHostItsActivityFollows: a host that an activity in
// flight claimed or follows waits for it too.
func TestScaleInWaitsForAHostItsActivityFollows(t *testing.T) {
	h := newHarness(t, 1)
	h.burst(12)
	if err := h.k.SetCount(web, 4); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(MinLoanAge + time.Second)
	rented := h.cloud.Instances()[0].ID
	end := h.c.track("act-x", "the spot interruption of "+rented, "bu-x")
	defer end()
	h.c.concern("act-x", "aws", rented)
	// The rented host waits; the borrowed one, next in scale-in order, goes.
	got, err := h.c.Consolidate(t.Context())
	if err != nil || len(got) != 1 || got[0] != "shared-1" {
		t.Fatalf("gave back %v (%v); want shared-1, not %s, which an activity follows\n%s", got, err, rented, h.dump())
	}
}

// TestStuckScaleOutOfAnotherUnitDoesNotFreezeScaleIn: a group of bu-b
// that no tier can serve (bu-b may not borrow, the clouds are out of
// capacity) keeps its scale-out in flight, retrying within a long grace;
// meanwhile bu-a's burst ends and its rented and borrowed hosts are given
// back.
func TestStuckScaleOutOfAnotherUnitDoesNotFreezeScaleIn(t *testing.T) {
	h := newHarness(t, 1)
	h.c.cfg.ActivityGrace = time.Hour
	h.service(4)
	h.start()
	if err := h.k.SetCount(web, 12); err != nil {
		t.Fatal(err)
	}
	h.until("bu-a's scale-out is done", func() bool { return len(h.events(KindActivityEnded)) == 1 })
	for _, o := range []providers.Offering{
		{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: providers.CapacityOnDemand},
		{InstanceType: "m5.xlarge", Zone: "us-east-1a", CapacityType: providers.CapacityOnDemand},
		{InstanceType: "ecs.g7.large", Zone: "cn-hangzhou-i", CapacityType: providers.CapacityOnDemand},
	} {
		h.cloud.SetCapacity(o, 0)
	}
	other := policies.Target{Namespace: "default", Job: "other", Group: "app"}
	h.k.AddJob(clustertest.Service{Target: other, Count: 2, Size: demand.Size{CPUMHz: 250, MemoryMB: 64}, Serves: "bu-b"})
	h.until("bu-b's scale-out finds no host", func() bool {
		return slices.ContainsFunc(h.events(KindUnmet), func(ev journal.Event) bool { return ev.Subject == other.String() })
	})

	if err := h.k.SetCount(web, 4); err != nil {
		t.Fatal(err)
	}
	h.until("bu-a's hosts are given back", func() bool { return len(h.events(KindReturned)) == 2 })
	if _, ok := h.c.Active()[other]; !ok {
		t.Fatalf("bu-b's scale-out is not in flight any more; the test proves nothing\n%s", h.dump())
	}
	if n := len(h.events(KindReturnWaits)); n != 0 {
		t.Fatalf("scale-in of bu-a waited %d times for bu-b's activity\n%s", n, h.dump())
	}
	if loans := h.ledger.Loans(); len(loans) != 0 {
		t.Fatalf("open loans after scale-in: %+v", loans)
	}
}

// TestScaleInWaitsForAnActivityOfItsUnit: bu-a's second group asks for
// allocations that no tier can give a host for (the clouds are out of
// capacity, the shared host is lent already), so its scale-out stays in
// flight, retrying within a long grace; bu-a's host spare after the first
// group's burst waits for it, and the journal says so once. When the
// group no longer asks (its count falls to zero), the activity ends and
// the host is given back.
func TestScaleInWaitsForAnActivityOfItsUnit(t *testing.T) {
	h := newHarness(t, 1)
	h.c.cfg.ActivityGrace = time.Hour
	h.service(4)
	h.start()
	if err := h.k.SetCount(web, 8); err != nil {
		t.Fatal(err)
	}
	h.until("the burst is done", func() bool { return len(h.events(KindActivityEnded)) == 1 })
	for _, o := range []providers.Offering{
		{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: providers.CapacityOnDemand},
		{InstanceType: "m5.xlarge", Zone: "us-east-1a", CapacityType: providers.CapacityOnDemand},
		{InstanceType: "ecs.g7.large", Zone: "cn-hangzhou-i", CapacityType: providers.CapacityOnDemand},
	} {
		h.cloud.SetCapacity(o, 0)
	}
	// The fake schedules job big before web: when web's count falls, the
	// room it leaves is not given to big until something schedules again.
	big := policies.Target{Namespace: "default", Job: "big", Group: "app"}
	h.k.AddJob(clustertest.Service{Target: big, Count: 1, Size: demand.Size{CPUMHz: 250, MemoryMB: 64}, Serves: "bu-a"})
	h.until("the big group finds no host", func() bool {
		return slices.ContainsFunc(h.events(KindUnmet), func(ev journal.Event) bool { return ev.Subject == big.String() })
	})
	if err := h.k.SetCount(web, 4); err != nil {
		t.Fatal(err)
	}
	h.until("the spare host waits", func() bool { return len(h.events(KindReturnWaits)) == 1 })
	waits := h.events(KindReturnWaits)[0]
	act := h.c.Active()[big]
	if act == "" || !strings.Contains(waits.Message, "waits for activity "+act+" (the scale-out of default/big/app for bu-a)") {
		t.Fatalf("the wait says %q; want it to name the big group's activity %q", waits.Message, act)
	}
	if n := len(h.events(KindReturned)); n != 0 {
		t.Fatalf("%d hosts given back while an activity of bu-a is in flight\n%s", n, h.dump())
	}
	if err := h.k.SetCount(big, 0); err != nil {
		t.Fatal(err)
	}
	h.until("the host is given back", func() bool { return len(h.events(KindReturned)) == 1 })
	if n := len(h.events(KindReturnWaits)); n != 1 {
		t.Fatalf("%d waits journaled, want one\n%s", n, h.dump())
	}
}

// TestCollectorLeavesOnlyFollowedRentalsToTheirActivity: a rented host
// that never became a Nomad node is left to an activity in flight that
// follows it, and is terminated while only another business unit's
// activity, acquiring from the same pool, is in flight.
func TestCollectorLeavesOnlyFollowedRentalsToTheirActivity(t *testing.T) {
	h := newHarness(t, 0)
	h.service(4)
	h.boots = false
	h.start()
	if err := h.k.SetCount(web, 8); err != nil {
		t.Fatal(err)
	}
	h.until("the host is rented", func() bool { return len(h.events(KindClaimed)) == 1 })
	h.stop() // the activity ends with the term; its host never boots
	stuck := h.cloud.Instances()[0].ID
	h.clock.Advance(10 * time.Minute)
	ctx := t.Context()

	end := h.c.track("act-a", "the scale-out of default/web/app", "bu-a")
	h.c.concern("act-a", "aws", stuck)
	if got, err := h.c.Collect(ctx); err != nil || len(got) != 0 {
		t.Fatalf("collected %v (%v) that an activity in flight follows", got, err)
	}
	end()
	endB := h.c.track("act-b", "the scale-out of default/other/app", "bu-b")
	defer endB()
	h.c.concern("act-b", "aws")
	got, err := h.c.Collect(ctx)
	if err != nil || len(got) != 1 || got[0] != stuck {
		t.Fatalf("collected %v (%v); want %s, which no activity in flight follows\n%s", got, err, stuck, h.dump())
	}
	if del := h.aws.Deletes(); len(del) != 1 || del[0].ID != stuck {
		t.Fatalf("deletes %+v", del)
	}
}

// A booting host is followed in the model by the scale-out that rented
// it while that one is in flight; any other waits for it, and follows it
// itself once its owner is gone.
func TestABootingHostIsFollowedByItsOwner(t *testing.T) {
	h := newHarness(t, 0)
	cp, _ := h.pools.CloudPool("aws")
	host := &rented{host: providers.Host{ID: "i-1", Pool: "aws"}, pool: cp, claim: "act-1-aws-0"}
	untrack := h.c.track("act-1", "the scale-out of web", "bu")
	if !h.c.followedElsewhere("act-2", host) {
		t.Fatal("another scale-out follows a host its owner, in flight, follows")
	}
	if h.c.followedElsewhere("act-1", host) {
		t.Fatal("the owner does not follow its own host")
	}
	untrack()
	if h.c.followedElsewhere("act-2", host) {
		t.Fatal("a host whose owner is gone is followed by no one")
	}
}
