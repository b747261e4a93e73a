package controller

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spillwayhq/spillway/controlplane/cluster/clustertest"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/bootstrap"
)

// lend marks the shared host's node lent to bu-a in Nomad's meta, as a
// borrow does, with a lease ending at until.
func (h *harness) lend(node string, until time.Time) {
	h.t.Helper()
	bu, lease := "bu-a", until.UTC().Format(time.RFC3339)
	if err := h.k.SetNodeMeta(h.t.Context(), node, map[string]*string{pools.MetaLentTo: &bu, pools.MetaServes: &bu, pools.MetaLease: &lease}); err != nil {
		h.t.Fatal(err)
	}
}

// TestLostJournalAdoptsLentHosts: a shared host Nomad's meta marks lent
// to bu-a, of which the ledger has no record (the journal was lost), is
// not drained on the reconcile pass of a new term: the loan is adopted
// into the ledger, journaled with why, and left to an operator, so
// scale-in does not give it back either, though it is empty.
func TestLostJournalAdoptsLentHosts(t *testing.T) {
	h := newHarness(t, 1)
	until := h.clock.Now().Add(40 * time.Minute)
	h.lend("shared-1", until)
	h.start()
	h.until("the loan is adopted", func() bool { return len(h.events(KindLoanAdopted)) == 1 })
	loan, ok := h.ledger.Loan("shared-1")
	if !ok || loan.Borrower != "bu-a" || loan.Lender != "bu-b" || loan.Adopted == "" || !loan.Until.Equal(until) {
		t.Fatalf("ledger loan %+v, want an adopted loan of shared-1 from bu-b to bu-a", loan)
	}
	if msg := h.events(KindLoanAdopted)[0].Message; !strings.Contains(msg, "the journal was lost") || !strings.Contains(msg, "release") {
		t.Fatalf("reconcile.adopted_loan says %q", msg)
	}
	if len(h.shared.repaired) != 0 {
		t.Fatalf("asked the shared pool to repair %v: a host lent in an unrecorded loan is not drained", h.shared.repaired)
	}
	// Scale-in passes, well past MinLoanAge: the empty adopted host stays.
	h.clock.Advance(2 * time.Minute)
	if got, err := h.c.Consolidate(t.Context()); err != nil || len(got) != 0 {
		t.Fatalf("scale-in gave back %v (%v): an adopted loan is an operator's to release", got, err)
	}
	if n, ok := h.k.Snapshot().Node("shared-1"); !ok || n.Draining || n.Meta[pools.MetaLentTo] != "bu-a" {
		t.Fatalf("the adopted host's node: %+v", n)
	}
}

// TestMarkLeftByARecordedReturnIsRepaired: a node still marked lent after
// a return the ledger recorded (a crash between the two) is the tail of
// that return: it goes to Repair, which finishes it, and is not adopted.
func TestMarkLeftByARecordedReturnIsRepaired(t *testing.T) {
	h := newHarness(t, 1)
	ctx := t.Context()
	h.ledger.SetLimits(pools.Limits{Quota: map[string]int{"bu-a": 1}, LendCap: map[string]int{"bu-b": 1}})
	lent := h.clock.Now()
	if _, err := h.ledger.Borrow(ctx, pools.BorrowRequest{Host: "shared-1", HostName: "shared-1", Pool: "shared", Lender: "bu-b", Borrower: "bu-a",
		At: lent, Lease: time.Hour}); err != nil {
		t.Fatal(err)
	}
	h.lend("shared-1", lent.Add(time.Hour))
	h.clock.Advance(10 * time.Minute)
	if _, err := h.ledger.Return(ctx, "shared-1", h.clock.Now(), "returned"); err != nil {
		t.Fatal(err)
	}
	if n, err := h.c.Reconcile(ctx); err != nil || n != 1 {
		t.Fatalf("Reconcile found %d differences (%v), want 1", n, err)
	}
	if len(h.shared.repaired) != 1 || h.shared.repaired[0].Host != "shared-1" || len(h.events(KindLoanAdopted)) != 0 {
		t.Fatalf("repaired %v, adopted %d: want the stale mark repaired, nothing adopted", h.shared.repaired, len(h.events(KindLoanAdopted)))
	}
}

// TestBorrowedHostDownIsKeptThroughTheGrace: a borrowed host whose node
// goes down looks empty (its allocations are no longer running), but
// scale-in does not give it back within the down grace; past the grace,
// with its work rescheduled, it may.
func TestBorrowedHostDownIsKeptThroughTheGrace(t *testing.T) {
	h := newHarness(t, 1)
	h.c.cfg.DownGrace = time.Minute
	h.service(4)
	h.start()
	if err := h.k.SetCount(web, 6); err != nil {
		t.Fatal(err)
	}
	h.until("the shared host is borrowed", func() bool {
		_, ok := h.ledger.Loan("shared-1")
		return ok && len(h.events(KindActivityEnded)) == 1
	})
	// Demand falls back to what bu-a's own host holds, and the borrowed
	// host's agent stops answering at once.
	if err := h.k.SetCount(web, 4); err != nil {
		t.Fatal(err)
	}
	h.k.SetNodeStatus("shared-1", "down")
	h.until("the borrowed host is journaled down", func() bool { return len(h.events(KindHostDown)) == 1 })
	down := h.events(KindHostDown)[0]
	if !strings.Contains(down.Message, "borrowed host shared-1") {
		t.Fatalf("host.down: %s", down.Message)
	}
	h.until("the borrowed host is given back past its grace", func() bool {
		_, ok := h.ledger.Loan("shared-1")
		return !ok
	})
	ret := h.events(KindIntentReturn)
	if len(ret) != 1 || ret[0].Time.Sub(down.Time) < h.c.cfg.DownGrace {
		t.Fatalf("given back at %v, within the grace of %s after it went down at %s", ret, h.c.cfg.DownGrace, down.Time)
	}
}

// TestRentedNodeSeenThenMissingIsKeptThroughTheGrace: a rented host whose
// node registered and then vanished from Nomad's list is unknown, not a
// host that never booted: the collector leaves it, the health pass
// journals it down, and it is terminated only past the down grace.
func TestRentedNodeSeenThenMissingIsKeptThroughTheGrace(t *testing.T) {
	h := newHarness(t, 0)
	h.c.cfg.DownGrace = 3 * time.Minute
	h.service(4)
	h.start()
	if err := h.k.SetCount(web, 8); err != nil {
		t.Fatal(err)
	}
	h.until("the scale-out is done", func() bool { return len(h.events(KindActivityEnded)) == 1 })
	rented := h.cloud.Instances()[0].ID
	if seen := h.events(KindHostSeen); len(seen) != 1 || !strings.Contains(seen[0].Message, rented) {
		t.Fatalf("host.registered %+v, want it once for %s", seen, rented)
	}
	h.boots = false // it does not come back
	h.k.RemoveNode("node-" + rented)
	h.until("the missing node is journaled down", func() bool { return len(h.events(KindHostDown)) == 1 })
	down := h.events(KindHostDown)[0]
	if !strings.Contains(down.Message, "missing") || !strings.Contains(down.Message, rented) {
		t.Fatalf("host.down: %s", down.Message)
	}
	// Well past its ready timeout (2 × 60s), within the grace: kept.
	h.until("the grace passes", func() bool { return h.clock.Since(down.Time) > 2*time.Minute+30*time.Second })
	terminated := func() []journal.Event {
		var out []journal.Event
		for _, ev := range h.events(KindTerminate) {
			if ev.Subject == "host/"+rented {
				out = append(out, ev)
			}
		}
		return out
	}
	if term := terminated(); len(term) != 0 {
		t.Fatalf("%s terminated within the grace:\n%s", rented, h.dump())
	}
	h.until("the missing host is terminated past its grace", func() bool { return len(terminated()) == 1 })
	if term := terminated()[0]; term.Time.Sub(down.Time) < h.c.cfg.DownGrace || !strings.Contains(term.Message, "past clouds.down_grace") {
		t.Fatalf("terminated %+v, want past the grace of %s after %s", term, h.c.cfg.DownGrace, down.Time)
	}
}

// rent launches a spot host of the aws pool for borrower, records the
// loan and joins its node serving borrower.
func (h *harness) rent(borrower string) string {
	h.t.Helper()
	ctx := h.t.Context()
	pool, _ := h.pools.CloudPool("aws")
	hosts, err := h.aws.Create(ctx, providers.Claim{ID: "test-" + borrower, Pool: pool.ProviderPool(), Count: 1})
	if err != nil || len(hosts) != 1 {
		h.t.Fatalf("renting for %s: %v %v", borrower, hosts, err)
	}
	id := hosts[0].ID
	if _, err := h.ledger.Borrow(ctx, pools.BorrowRequest{Host: id, HostName: id, Tier: pools.TierCold, Pool: "aws", Lender: "aws", Borrower: borrower,
		At: h.clock.Now(), Lease: 24 * time.Hour, Claim: "test-" + borrower}); err != nil {
		h.t.Fatal(err)
	}
	h.booted[id] = true
	h.k.AddNode(clustertest.Host{ID: "node-" + id, Pool: "burst", Serves: borrower, CPU: 1000, MemoryMB: 1024,
		Meta: map[string]string{bootstrap.MetaInstance: id}})
	return id
}

// TestSpotNoticeIsTakenUpWhileHostsDrain: three spare hosts of three
// business units are being drained and given back, and their drains do
// not end, past a reconcile pass (which leaves returns in progress
// alone); a spot notice that arrives meanwhile is taken up within one
// poll interval: the drains run beside the control loop, not in it.
func TestSpotNoticeIsTakenUpWhileHostsDrain(t *testing.T) {
	spotPools := strings.NewReplacer(
		"{instance_type: m5.large, price: {on_demand: 0.1}}", "{instance_type: m5.large, price: {on_demand: 0.1, spot: 0.03}}",
		"{instance_type: m5.xlarge, price: {on_demand: 0.2}}", "{instance_type: m5.xlarge, price: {on_demand: 0.2, spot: 0.06}}",
		"spot: 0%\nlaunch", "spot: 100%\nlaunch").Replace(harnessPools)
	h := newHarnessOn(t, 0, spotPools)
	for _, bu := range []string{"bu-a", "bu-b", "bu-c"} {
		h.rent(bu)
	}
	h.clock.Advance(MinLoanAge + time.Second)
	h.k.HoldDrains()
	defer h.k.ReleaseDrains()
	h.start()
	h.until("three give-backs drain", func() bool { return len(h.k.CallsOf("drain")) == 3 })
	if got := testutil.ToFloat64(h.c.giveBacks); got != 3 {
		t.Fatalf("spillway_give_backs_in_progress = %v, want 3", got)
	}
	// Past a reconcile pass (every minute), which must not take the
	// returns in progress for ones a restart interrupted.
	started := h.clock.Now()
	h.until("a reconcile pass runs", func() bool { return h.clock.Since(started) > ReconcileEvery+10*time.Second })
	if n := len(h.events(KindIntentReturn)); n != 3 {
		t.Fatalf("%d intent.return events, want the 3 give-backs once each\n%s", n, h.dump())
	}
	if n := len(h.k.CallsOf("drain")); n != 3 {
		t.Fatalf("%d drains, want 3", n)
	}
	spot := h.rent("bu-d") // held less than MinLoanAge: not spare
	noticed := h.clock.Now()
	h.cloud.Interrupt(spot)
	h.until("the notice is taken up", func() bool { return len(h.events(KindInterrupted)) == 1 })
	in := h.events(KindInterrupted)[0]
	if !strings.Contains(in.Message, spot) || in.Time.Sub(noticed) > 10*time.Second {
		t.Fatalf("the notice of %s was taken up %s after it came (%s), want within the 10s poll interval while three drains run",
			spot, in.Time.Sub(noticed), in.Message)
	}
	if n := len(h.events(KindReturned)); n != 0 {
		t.Fatalf("%d give-backs ended while their drains are held", n)
	}
}

// TestHostMarkedForAnotherBorrowerInANewerLeaseIsNotDrained: the ledger
// lends a shared host to bu-a; Nomad's meta marks it lent to bu-b in a
// lease that began after that loan (a younger journal). Repair would drain
// bu-b's work and mark it for bu-a: it is left to an operator instead,
// journaled as a discrepancy.
func TestHostMarkedForAnotherBorrowerInANewerLeaseIsNotDrained(t *testing.T) {
	h := newHarness(t, 1)
	ctx := t.Context()
	h.ledger.SetLimits(pools.Limits{Quota: map[string]int{"bu-a": 1}, LendCap: map[string]int{"bu-b": 1}})
	if _, err := h.ledger.Borrow(ctx, pools.BorrowRequest{Host: "shared-1", HostName: "shared-1", Pool: "shared", Lender: "bu-b", Borrower: "bu-a",
		At: h.clock.Now(), Lease: time.Hour}); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(10 * time.Minute)
	bu, lease := "bu-b", h.clock.Now().Add(time.Hour).Format(time.RFC3339)
	if err := h.k.SetNodeMeta(ctx, "shared-1", map[string]*string{pools.MetaLentTo: &bu, pools.MetaServes: &bu, pools.MetaLease: &lease}); err != nil {
		t.Fatal(err)
	}
	if n, err := h.c.Reconcile(ctx); err != nil || n != 1 {
		t.Fatalf("Reconcile found %d differences (%v), want 1", n, err)
	}
	if len(h.shared.repaired) != 0 {
		t.Fatalf("asked to repair %v: the newer mark would be drained", h.shared.repaired)
	}
	if d := h.events(KindDiscrepancy); len(d) != 1 || !strings.Contains(d[0].Message, "node meta says bu-b") {
		t.Fatalf("reconcile.discrepancy %+v", d)
	}
}

// TestReconcileLeavesAGiveBackInProgress: the journaled intent of a
// give-back that a task of this term still drains is not a return a
// restart interrupted: the reconcile pass neither drains the host again
// nor journals a second give-back, and the task ends it once.
func TestReconcileLeavesAGiveBackInProgress(t *testing.T) {
	h := newHarness(t, 0)
	id := h.rent("bu-a")
	h.clock.Advance(MinLoanAge + time.Second)
	h.k.HoldDrains()
	defer h.k.ReleaseDrains()
	h.start()
	h.until("the give-back drains", func() bool { return len(h.k.CallsOf("drain")) == 1 })
	done := make(chan error, 1)
	go func() {
		_, err := h.c.ReconcileClouds(t.Context())
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the reconcile pass waits on a second drain of %s; journal:\n%s", id, h.dump())
	}
	if ret, drains := len(h.events(KindIntentReturn)), len(h.k.CallsOf("drain")); ret != 1 || drains != 1 {
		t.Fatalf("%d intents to give back %s and %d drains, want the task's one of each; journal:\n%s", ret, id, drains, h.dump())
	}
	h.k.ReleaseDrains()
	h.until("the give-back ends", func() bool { return len(h.events(KindReturned)) == 1 })
	if n := len(h.events(KindIntentReturn)); n != 1 {
		t.Fatalf("%d intents to give back %s, want 1; journal:\n%s", n, id, h.dump())
	}
}

// TestBorrowedHostWaitsForARentedOneNotReady: bu-a's burst is over; its
// rented host is down in its grace and its borrowed host is spare.
// Scale-in does not give the cheap borrowed host back ahead of the rented
// one it cannot consider yet; once the rented node is back, it goes
// first.
func TestBorrowedHostWaitsForARentedOneNotReady(t *testing.T) {
	h := newHarness(t, 1)
	h.burst(12) // one shared host borrowed, one aws host rented
	if err := h.k.SetCount(web, 4); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(MinLoanAge + time.Second)
	rented := h.cloud.Instances()[0].ID
	h.k.SetNodeStatus("node-"+rented, "down")
	if got, err := h.c.Consolidate(t.Context()); err != nil || len(got) != 0 {
		t.Fatalf("gave back %v (%v) while bu-a's rented host is down in its grace", got, err)
	}
	h.k.SetNodeStatus("node-"+rented, "ready")
	if got, err := h.c.Consolidate(t.Context()); err != nil || len(got) != 1 || got[0] != rented {
		t.Fatalf("gave back %v (%v), want the rented host %s first", got, err, rented)
	}
	h.c.Wait()
}
