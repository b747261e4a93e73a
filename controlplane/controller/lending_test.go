package controller

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/pools"
)

// borrowOne runs the harness until bu-a borrowed shared-1 for the 4
// allocations its own host cannot take (web at 8).
func borrowOne(h *harness) pools.Loan {
	h.t.Helper()
	h.service(4)
	h.start()
	if err := h.k.SetCount(web, 8); err != nil {
		h.t.Fatal(err)
	}
	h.until("the scale-out borrowed a shared host", func() bool { return len(h.events(KindActivityEnded)) == 1 })
	loan, ok := h.ledger.Loan("shared-1")
	if !ok {
		h.t.Fatalf("shared-1 is not lent; journal:\n%s", h.dump())
	}
	return loan
}

// story returns the kinds of the journal after seq, without phases.
func (h *harness) story(after int64) []string {
	var out []string
	for _, ev := range h.events("") {
		if ev.Seq > after && ev.Kind != KindPhase {
			out = append(out, ev.Kind)
		}
	}
	return out
}

func lastSeq(h *harness) int64 {
	evs := h.events("")
	return evs[len(evs)-1].Seq
}

func returnEntry(h *harness, host string) pools.Entry {
	for _, e := range slices.Backward(h.ledger.Entries()) {
		if e.Host == host && e.Kind == pools.EntryReturn {
			return e
		}
	}
	return pools.Entry{}
}

// TestExpiredLeaseIsReplacedBeforeItsDrain: bu-a's borrowed host runs 4
// of its allocations when its lease ends; bu-a's own host is full. A
// scale-out for those 4 allocations rents a host first; only once it is a
// ready node is the borrowed host drained and returned, and the ledger
// closes the loan with "lease expired". Every allocation is healthy after.
func TestExpiredLeaseIsReplacedBeforeItsDrain(t *testing.T) {
	h := newHarness(t, 1)
	loan := borrowOne(h)
	seq := lastSeq(h)
	h.clock.Advance(loan.Until.Sub(h.clock.Now()))
	h.until("the expired host is returned", func() bool {
		_, lent := h.ledger.Loan("shared-1")
		return !lent && h.k.Snapshot().Healthy(web) == 8 && len(h.events(KindReturned)) == 1
	})
	story := h.story(seq)
	at := func(kind string) int { return slices.Index(story, kind) }
	if at(KindLeaseExpired) < 0 || at(KindReplacing) < at(KindLeaseExpired) || at(KindIntent) < at(KindReplacing) ||
		at(KindHostReady) < at(KindIntent) || at(KindLeaseReplaced) < at(KindHostReady) || at(KindIntentReturn) < at(KindLeaseReplaced) ||
		at(KindReturned) < at(KindIntentReturn) {
		t.Fatalf("after the lease ended the journal says %v, want lease.expired, capacity.replacing, intent.claim, host.ready, lease.replaced, intent.return, capacity.returned\n%s",
			story, h.dump())
	}
	if drains := h.k.CallsOf("drain"); len(drains) != 1 || drains[0].Node != "shared-1" {
		t.Fatalf("drains %+v, want one of shared-1", drains)
	}
	if e := returnEntry(h, "shared-1"); e.Reason != pools.ReasonLeaseExpired {
		t.Fatalf("the ledger closed the loan with %q, want %q", e.Reason, pools.ReasonLeaseExpired)
	}
	u := h.ledger.Usage(loan.Since, time.Time{})
	if i := slices.IndexFunc(u, func(u pools.Usage) bool { return u.Host == "shared-1" }); i < 0 || u[i].Reason != pools.ReasonLeaseExpired || u[i].End.Before(loan.Until) {
		t.Fatalf("usage %+v: want shared-1 closed, lease expired, past its lease end", u)
	}
	// Chargeback counts up to the return.
	cb := h.ledger.Chargeback(loan.Since, time.Time{}, h.clock.Now().Add(time.Hour))
	if cb.ByLender["bu-b"] < loan.Until.Sub(loan.Since).Hours() || cb.ByLender["bu-b"] > h.clock.Now().Sub(loan.Since).Hours()+1e-9 {
		t.Fatalf("bu-b lent %.3f host-hours, want from the lease (%.3f) to the return", cb.ByLender["bu-b"], loan.Until.Sub(loan.Since).Hours())
	}
	if n := len(h.events(KindLeaseExpired)); n != 1 {
		t.Fatalf("%d lease.expired events, want 1", n)
	}
}

// TestAdoptedLoanIsNotReturnedWhenItsLeaseEnds: a loan adopted from
// Nomad's meta waits for an operator, past its lease.
func TestAdoptedLoanIsNotReturnedWhenItsLeaseEnds(t *testing.T) {
	h := newHarness(t, 1)
	if _, err := h.ledger.Adopt(t.Context(), pools.BorrowRequest{Host: "shared-1", HostName: "shared-1", Pool: "shared", Lender: "bu-b", Borrower: "bu-a",
		At: h.clock.Now(), Lease: time.Minute, Reason: "adopted"}); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(2 * time.Minute)
	if got, err := h.c.Leases(t.Context()); err != nil || len(got) != 0 {
		t.Fatalf("Leases started %v (%v), want nothing for an adopted loan", got, err)
	}
}

// TestReclaimOrderAndBadInput: a reclaim by count takes the lowest
// priority borrower's host first; more hosts than lent is refused saying
// how many are; a host not lent is refused saying who holds it.
func TestReclaimOrderAndBadInput(t *testing.T) {
	yaml := strings.Replace(harnessPools, "borrowing: {quota: 4}\ndeadline: 2m", "borrowing: {quota: 4}\npriority: 90\ndeadline: 2m", 1) + `---
apiVersion: spillway/v1
kind: BusinessUnit
name: bu-c
selector: {node_pool: bu-c}
lending: {share: 0%}
borrowing: {quota: 2}
priority: 10
`
	h := newHarnessOn(t, 3, yaml)
	ctx := t.Context()
	h.ledger.SetLimits(pools.Limits{Quota: map[string]int{"bu-a": 4, "bu-c": 2}, LendCap: map[string]int{"bu-b": 3}})
	for host, bu := range map[string]string{"shared-1": "bu-a", "shared-2": "bu-c"} {
		if _, err := h.ledger.Borrow(ctx, pools.BorrowRequest{Host: host, HostName: host, Pool: "shared", Lender: "bu-b", Borrower: bu,
			At: h.clock.Now(), Lease: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := h.c.Reclaim(ctx, ReclaimRequest{Pool: "shared", Count: 3, Reason: "maintenance", Actor: "ops"})
	if !errors.Is(err, ErrTooManyHosts) || !strings.Contains(err.Error(), "2 hosts are lent") {
		t.Fatalf("reclaiming 3 of 2: %v", err)
	}
	_, err = h.c.Reclaim(ctx, ReclaimRequest{Pool: "shared", Hosts: []string{"shared-3"}, Reason: "maintenance", Actor: "ops"})
	if !errors.Is(err, ErrHostNotLent) || !strings.Contains(err.Error(), "its owner bu-b holds it") {
		t.Fatalf("reclaiming a host not lent: %v", err)
	}
	if _, err := h.c.Reclaim(ctx, ReclaimRequest{Pool: "nope", Count: 1}); !errors.Is(err, ErrUnknownPool) {
		t.Fatalf("reclaiming from an unknown pool: %v", err)
	}
	got, err := h.c.Reclaim(ctx, ReclaimRequest{Pool: "shared", Count: 1, Reason: "maintenance", Actor: "ops", Deadline: 3 * time.Minute})
	if err != nil || len(got) != 1 || got[0].Host != "shared-2" || !got[0].ReclaimBy.Equal(h.clock.Now().Add(3*time.Minute)) {
		t.Fatalf("reclaimed %+v (%v), want shared-2 of bu-c (priority 10) by 3m from now", got, err)
	}
	if evs := h.events(KindLeaseReclaimed); len(evs) != 1 || evs[0].Actor != "ops" {
		t.Fatalf("lease.reclaimed: %+v", evs)
	}
	// The next by count is bu-a's, the only one not being reclaimed.
	if _, err := h.c.Reclaim(ctx, ReclaimRequest{Pool: "shared", Count: 2, Reason: "x", Actor: "ops"}); !errors.Is(err, ErrTooManyHosts) ||
		!strings.Contains(err.Error(), "1 host is lent") {
		t.Fatalf("reclaiming 2 with 1 left: %v", err)
	}
}

// TestReclaimWithoutReplacementEndsAtItsDeadline: no replacement can be
// had (the rented host never joins); the reclaim still drains the host
// by its deadline less the drain and returns it within the deadline; the
// shortfall is capacity.unmet with reason reclaimed.
func TestReclaimWithoutReplacementEndsAtItsDeadline(t *testing.T) {
	h := newHarness(t, 1)
	borrowOne(h)
	h.boots = false
	start := h.clock.Now()
	loans, err := h.c.Reclaim(t.Context(), ReclaimRequest{Pool: "shared", Count: 1, Reason: "the owner needs it", Actor: "ops", Deadline: 2 * time.Minute})
	if err != nil || len(loans) != 1 {
		t.Fatalf("reclaim: %+v %v", loans, err)
	}
	h.until("the reclaimed host is returned", func() bool {
		_, lent := h.ledger.Loan("shared-1")
		return !lent && len(h.events(KindReturned)) == 1
	})
	if now := h.clock.Now(); now.After(start.Add(2 * time.Minute)) {
		t.Fatalf("returned %s after the reclaim, want within its 2m deadline\n%s", now.Sub(start), h.dump())
	}
	var unmet []journal.Event
	for _, ev := range h.events(KindUnmet) {
		if strings.Contains(string(ev.Data), `"reason":"reclaimed"`) {
			unmet = append(unmet, ev)
		}
	}
	if len(unmet) != 1 {
		t.Fatalf("capacity.unmet with reason reclaimed: %d\n%s", len(unmet), h.dump())
	}
	if e := returnEntry(h, "shared-1"); e.Reason != pools.ReasonReclaimed {
		t.Fatalf("the ledger closed the loan with %q, want %q", e.Reason, pools.ReasonReclaimed)
	}
	h.shared.mu.Lock()
	f := h.shared.returns[len(h.shared.returns)-1]
	h.shared.mu.Unlock()
	if f.deadline > 30*time.Second || f.reason != pools.ReasonReclaimed {
		t.Fatalf("returned with %+v, want a drain within the pool's 30s, reason reclaimed", f)
	}
}

// TestReclaimResumesAfterACrashBetweenReplacementAndDrain: the term ends
// right after the replacement is journaled ready; the next term drains
// and returns the host without asking for a second replacement.
func TestReclaimResumesAfterACrashBetweenReplacementAndDrain(t *testing.T) {
	h := newHarness(t, 1)
	borrowOne(h)
	crashed := h.crashAt(FailAfterReplacement)
	if _, err := h.c.Reclaim(t.Context(), ReclaimRequest{Pool: "shared", Count: 1, Reason: "the owner needs it", Actor: "ops"}); err != nil {
		t.Fatal(err)
	}
	h.until("the term ends after the replacement", crashed)
	h.stop()
	if _, lent := h.ledger.Loan("shared-1"); !lent || len(h.k.CallsOf("drain")) != 0 {
		t.Fatalf("before the restart shared-1 must be lent and undrained\n%s", h.dump())
	}
	rented := len(h.cloud.Instances())
	// A new process: a new controller on the same journal and ledger.
	h.restart()
	ledger := h.ledger
	h.until("the reclaim completes after the restart", func() bool {
		_, lent := ledger.Loan("shared-1")
		return !lent && h.k.Snapshot().Healthy(web) == 8
	})
	if n := len(h.events(KindReplacing)); n != 1 {
		t.Fatalf("%d capacity.replacing, want the one before the crash\n%s", n, h.dump())
	}
	if n := len(h.cloud.Instances()); n != rented {
		t.Fatalf("%d instances after the restart, %d before: the replacement was asked for twice", n, rented)
	}
	if e := returnEntry(h, "shared-1"); e.Reason != pools.ReasonReclaimed {
		t.Fatalf("the ledger closed the loan with %q, want reclaimed", e.Reason)
	}
	if drains := h.k.CallsOf("drain"); len(drains) != 1 {
		t.Fatalf("drains %+v, want one", drains)
	}
	// The replacement's activity ends after the restart, once.
	act := h.events(KindReplacing)[0].Activity
	h.until("the replacement's activity ends", func() bool {
		return slices.ContainsFunc(h.events(KindActivityEnded), func(ev journal.Event) bool { return ev.Activity == act })
	})
	if n := len(slices.DeleteFunc(h.events(KindActivityEnded), func(ev journal.Event) bool { return ev.Activity != act })); n != 1 {
		t.Fatalf("the replacement's activity ended %d times\n%s", n, h.dump())
	}
}
