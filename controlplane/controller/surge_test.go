package controller

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/cluster/clustertest"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
)

// watchHealthy records the fewest allocations of web with a healthy
// verdict in any model the fake cluster publishes, until the test ends.
func watchHealthy(h *harness) func() int {
	var mu sync.Mutex
	low := -1
	h.k.Watch(func(s *cluster.Snapshot) {
		n, _ := verdicts(s, web)
		mu.Lock()
		defer mu.Unlock()
		if low < 0 || n < low {
			low = n
		}
	})
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return low
	}
}

// surgeCalls is the orchestrator's calls a surge orders: the host made
// ineligible, the counts of web, drains, and the test's health verdicts.
func surgeCalls(k *clustertest.Cluster, host string) []string {
	var out []string
	for _, c := range k.Calls() {
		switch {
		case c.Op == "eligibility" && c.Node == host && !c.Value:
			out = append(out, "ineligible")
		case c.Op == "scale" && c.Target == web:
			out = append(out, "scale "+strconv.Itoa(c.Count))
		case c.Op == "drain" && c.Node == host:
			out = append(out, "drain")
		case c.Op == "health":
			out = append(out, "health")
		}
	}
	return out
}

// starting counts web's allocations placed without a verdict yet.
func starting(h *harness) int {
	_, n := verdicts(h.k.Snapshot(), web)
	return n
}

// waitFor steps the clock d while cond holds (the controller must not
// move on meanwhile).
func (h *harness) waitFor(d time.Duration) {
	h.t.Helper()
	at := h.clock.Now()
	h.until("time passes", func() bool { return !h.clock.Now().Before(at.Add(d)) })
}

// TestSurgeBeforeTheDrainKeepsHealthyAllocations: bu-a's borrowed host
// runs 4 of web's 8 allocations when its lease ends; the rented
// replacement has room for 8. Before the drain the host is made
// ineligible and web's count raised by 4; the drain waits until the 4
// new allocations are healthy; after it, the count is lowered by 4 only
// once the moved allocations are healthy too. web never has fewer than
// its 8 healthy allocations, the surge is held from the scaler while it
// lasts, and it is journaled.
func TestSurgeBeforeTheDrainKeepsHealthyAllocations(t *testing.T) {
	h := newHarness(t, 1)
	h.sizes = map[string][2]int64{"m5.large": {2000, 2048}}
	loan := borrowOne(h)
	seq := lastSeq(h)
	low := watchHealthy(h)
	h.k.HoldHealth()
	h.clock.Advance(loan.Until.Sub(h.clock.Now()))
	h.until("the surge's 4 allocations are placed", func() bool { return len(h.events(KindLeaseSurged)) == 1 && starting(h) == 4 })
	if why := h.c.Holding(web); why == "" {
		t.Fatal("web is not held while its count is raised")
	}
	if n := testutil.ToFloat64(h.c.surgeGauge); n != 1 {
		t.Fatalf("spillway_surges_in_progress is %v during the surge, want 1", n)
	}
	h.waitFor(10 * time.Second)
	h.k.MarkHealthy()
	h.until("the drain moves 4 allocations to the replacement", func() bool {
		return len(h.k.CallsOf("drain")) == 1 && starting(h) == 4
	})
	h.waitFor(10 * time.Second)
	h.k.ReleaseHealth()
	h.until("the surge ends", func() bool {
		_, lent := h.ledger.Loan("shared-1")
		g, _ := h.k.Snapshot().Group(web)
		return !lent && len(h.events(KindLeaseSurgeEnded)) == 1 && g.Count == 8 && h.k.Snapshot().Healthy(web) == 8
	})
	want := []string{"ineligible", "scale 12", "health", "drain", "health", "scale 8"}
	if got := surgeCalls(h.k, "shared-1"); !slices.Equal(got, want) {
		t.Fatalf("the surge's calls %v, want %v\n%s", got, want, h.dump())
	}
	if n := low(); n < 8 {
		t.Fatalf("web had %d healthy allocations during the return, fewer than its 8 before\n%s", n, h.dump())
	}
	story := h.story(seq)
	at := func(kind string) int { return slices.Index(story, kind) }
	if at(KindLeaseReplaced) < 0 || at(KindLeaseSurged) < at(KindLeaseReplaced) || at(KindIntentReturn) < at(KindLeaseSurged) ||
		at(KindReturned) < at(KindIntentReturn) || at(KindLeaseSurgeEnded) < at(KindReturned) || slices.Contains(story, KindLeaseSurgeUnmet) {
		t.Fatalf("the journal says %v, want lease.replaced, lease.surged, intent.return, capacity.returned, lease.surge_ended\n%s", story, h.dump())
	}
	if why := h.c.Holding(web); why != "" {
		t.Fatalf("web is still held after the surge: %s", why)
	}
	if n := testutil.ToFloat64(h.c.surgeGauge); n != 0 {
		t.Fatalf("spillway_surges_in_progress is %v after the surge, want 0", n)
	}
	if e := returnEntry(h, "shared-1"); e.Reason != pools.ReasonLeaseExpired {
		t.Fatalf("the ledger closed the loan with %q", e.Reason)
	}
}

// TestSurgeHoldsProvisioning: the replacement (room for 4) takes the
// surge, so the drained allocations wait for room; while they do, the
// provisioner rents nothing for them, and lowering the count after the
// drain ends their wait.
func TestSurgeHoldsProvisioning(t *testing.T) {
	h := newHarness(t, 1)
	loan := borrowOne(h)
	h.clock.Advance(loan.Until.Sub(h.clock.Now()))
	h.until("the surge ends", func() bool {
		d, _ := h.k.Snapshot().Demand(web)
		return len(h.events(KindLeaseSurgeEnded)) == 1 && d.Count == 8 && d.Queued == 0 && h.k.Snapshot().Healthy(web) == 8
	})
	if n := len(h.events(KindIntent)); n != 2 {
		t.Fatalf("%d intent.claim events, want the burst's and the replacement's: the surge's queue was rented for\n%s", n, h.dump())
	}
	want := []string{"ineligible", "scale 12", "drain", "scale 8"}
	if got := surgeCalls(h.k, "shared-1"); !slices.Equal(got, want) {
		t.Fatalf("the surge's calls %v, want %v\n%s", got, want, h.dump())
	}
}

// restart stops the harness's controller and starts a new one on the
// same journal and ledger, as a new process would (restoring the surges
// in flight first, as the app does).
func (h *harness) restart() {
	h.t.Helper()
	h.stop()
	ledger, _, err := pools.NewLedger(h.t.Context(), h.db.LedgerStore(), h.pools.Limits(nil))
	if err != nil {
		h.t.Fatal(err)
	}
	h.ledger = ledger
	h.c = New(Config{Cluster: h.k, Orchestrator: h.k, Pools: h.pools, Ledger: ledger, Shared: h.shared,
		Clouds: map[string]providers.Provider{"aws": h.aws, "ali": h.ali}, Journal: h.db.Events(), Clock: h.clock, OrphanGrace: 10 * time.Minute})
	// As the app does before the scaler's first evaluation.
	if err := h.c.RestoreSurges(h.t.Context(), h.db.Events()); err != nil {
		h.t.Fatal(err)
	}
	h.start()
}

// crashAt makes the controller's term end at failpoint p; the returned
// func reports whether it did.
func (h *harness) crashAt(p string) func() bool {
	crashed := make(chan struct{})
	var once sync.Once
	h.c.cfg.Failpoint = func(got string) {
		if got == p {
			once.Do(func() {
				h.cancel()
				close(crashed)
			})
		}
	}
	return func() bool {
		select {
		case <-crashed:
			return true
		default:
			return false
		}
	}
}

// TestSurgeResumesAfterACrashBeforeTheDrain: the term ends once web's
// surge is healthy, before the drain; the count stays raised and web
// held. The next term drains and returns the host without raising the
// count again, then lowers it.
func TestSurgeResumesAfterACrashBeforeTheDrain(t *testing.T) {
	h := newHarness(t, 1)
	expireAndCrashAt(h, FailAfterSurge)
	if g, _ := h.k.Snapshot().Group(web); g.Count != 12 || len(h.k.CallsOf("drain")) != 0 {
		t.Fatalf("before the restart web's count is %d and %d drains, want 12 and none\n%s", g.Count, len(h.k.CallsOf("drain")), h.dump())
	}
	h.restart()
	h.until("the return and the surge complete after the restart", func() bool {
		_, lent := h.ledger.Loan("shared-1")
		g, _ := h.k.Snapshot().Group(web)
		return !lent && len(h.events(KindLeaseSurgeEnded)) == 1 && g.Count == 8 && h.k.Snapshot().Healthy(web) == 8
	})
	if want, got := []string{"ineligible", "scale 12", "drain", "scale 8"}, surgeCalls(h.k, "shared-1"); !slices.Equal(got, want) {
		t.Fatalf("calls %v, want %v: one surge, one drain\n%s", got, want, h.dump())
	}
	if n := len(h.events(KindLeaseSurged)); n != 1 {
		t.Fatalf("%d lease.surged, want 1\n%s", n, h.dump())
	}
	if why := h.c.Holding(web); why != "" {
		t.Fatalf("web is still held: %s", why)
	}
}

// TestSurgeEndsAfterACrashAfterTheReturn: the term ends once the host is
// given back, before the surge ends; the loan is closed, so no Leases
// pass takes it up: the next term lowers the count on its own.
func TestSurgeEndsAfterACrashAfterTheReturn(t *testing.T) {
	h := newHarness(t, 1)
	expireAndCrashAt(h, FailAfterGiveBack)
	if g, _ := h.k.Snapshot().Group(web); g.Count != 12 {
		t.Fatalf("before the restart web's count is %d, want 12", g.Count)
	}
	if _, lent := h.ledger.Loan("shared-1"); lent {
		t.Fatal("shared-1 is still lent before the restart")
	}
	h.restart()
	if why := h.c.Holding(web); why == "" {
		t.Fatal("after the restart web is not held while its count is raised")
	}
	h.until("the surge ends after the restart", func() bool {
		d, _ := h.k.Snapshot().Demand(web)
		return len(h.events(KindLeaseSurgeEnded)) == 1 && d.Count == 8 && d.Queued == 0
	})
	if want, got := []string{"ineligible", "scale 12", "drain", "scale 8"}, surgeCalls(h.k, "shared-1"); !slices.Equal(got, want) {
		t.Fatalf("calls %v, want %v\n%s", got, want, h.dump())
	}
	if n := len(h.events(KindIntent)); n != 2 {
		t.Fatalf("%d intent.claim events, want 2: the raised count was rented for\n%s", n, h.dump())
	}
}

// TestSurgeWithoutRoomDoesNotHoldUpTheDrain: no replacement came up (the
// rented host never joins), so the surge's allocations wait for room the
// held group will not get: the drain starts at once, saying why, and the
// count is lowered after it.
func TestSurgeWithoutRoomDoesNotHoldUpTheDrain(t *testing.T) {
	h := newHarness(t, 1)
	loan := borrowOne(h)
	h.boots = false
	h.clock.Advance(loan.Until.Sub(h.clock.Now()))
	h.until("the surge ends", func() bool {
		g, _ := h.k.Snapshot().Group(web)
		return len(h.events(KindLeaseSurgeEnded)) == 1 && g.Count == 8
	})
	unmet := h.events(KindLeaseSurgeUnmet)
	if len(unmet) != 1 || !strings.Contains(unmet[0].Message, "wait for room") {
		t.Fatalf("lease.surge_unmet: %+v\n%s", unmet, h.dump())
	}
	surged, ret := h.events(KindLeaseSurged), h.events(KindIntentReturn)
	if len(surged) != 1 || len(ret) != 1 || ret[0].Time.Sub(surged[0].Time) > 5*time.Second {
		t.Fatalf("the drain waited for a surge that had no room\n%s", h.dump())
	}
}

// expireAndCrashAt borrows a shared host, lets its lease end, and stops
// the term at failpoint fp of its return.
func expireAndCrashAt(h *harness, fp string) {
	h.t.Helper()
	loan := borrowOne(h)
	crashed := h.crashAt(fp)
	h.clock.Advance(loan.Until.Sub(h.clock.Now()))
	h.until("the term ends at "+fp, crashed)
	h.stop()
}
