package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/controller"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/internal/lab"
	"github.com/spillwayhq/spillway/internal/lab/labtest"
	"github.com/spillwayhq/spillway/pools"
)

// TestCrashAfterTheLoanIsJournaled kills the control plane (SIGKILL) in
// the state a crash leaves between journaling a loan and marking the node:
// the ledger says shared-1 is lent to bu-a, Nomad does not. After a
// restart the reconciler marks the node, and since bu-a does not need the
// host, the controller then gives it back: no loan is lost and no host
// stays lent.
func TestCrashAfterTheLoanIsJournaled(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	opts := lab.DefaultOptions()
	opts.BusinessUnits = []lab.BusinessUnit{{Name: "bu-a", Hosts: 1}, {Name: "bu-b", Hosts: 1}}
	opts.SharedHosts = 2
	opts.LabPools = true
	l := labtest.Start(t, opts)
	ctx := context.Background()

	var shared1 string
	var lender string
	stubs, _, err := l.Nomad().Nodes().List(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stubs {
		if s.Name == "shared-1" {
			n, _, err := l.Nomad().Nodes().Info(s.ID, nil)
			if err != nil {
				t.Fatal(err)
			}
			shared1, lender = n.ID, n.Meta[pools.MetaBusinessUnit]
		}
	}

	l.KillServe()
	db, err := journal.Open(ctx, l.JournalPath())
	if err != nil {
		t.Fatal(err)
	}
	ledger, _, err := pools.NewLedger(ctx, db.LedgerStore(), pools.Limits{
		Quota: map[string]int{"bu-a": 2}, LendCap: map[string]int{lender: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.Borrow(ctx, pools.BorrowRequest{Host: shared1, HostName: "shared-1", Pool: lab.SharedPool,
		Lender: lender, Borrower: "bu-a", At: time.Now(), Lease: time.Hour, Reason: "borrowed, then the control plane died", Claim: "crash-test"}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	if err := l.StartServe(ctx); err != nil {
		t.Fatal(err)
	}
	waitEvent := func(kind string, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for len(events(t, l, "kind="+kind)) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no %s event within %s; journal:\n%s", kind, within, dump(events(t, l, "")))
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	waitEvent(controller.KindRepaired, 30*time.Second)
	n, _, err := l.Nomad().Nodes().Info(shared1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n.Meta[pools.MetaLentTo] != "bu-a" || n.Meta[pools.MetaServes] != "bu-a" {
		t.Fatalf("after the repair shared-1 carries %v", n.Meta)
	}
	if d := events(t, l, "kind="+controller.KindDiscrepancy); len(d) != 1 {
		t.Fatalf("discrepancies: %s", dump(d))
	}

	// bu-a runs nothing there: the host goes back once the loan is 30s old.
	waitEvent(controller.KindReturned, 90*time.Second)
	n, _, err = l.Nomad().Nodes().Info(shared1, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{pools.MetaLentTo, pools.MetaServes, pools.MetaLease, pools.MetaClaim} {
		if v, ok := n.Meta[k]; ok {
			t.Errorf("shared-1 still carries %s=%s", k, v)
		}
	}
}
