package journal

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/pools"
)

func TestLedgerStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "journal.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 22, 8, 0, 0, 123, time.UTC)
	limits := pools.Limits{Quota: map[string]int{"bu-a": 2}, LendCap: map[string]int{"bu-b": 2}}
	l, _, err := pools.NewLedger(ctx, db.LedgerStore(), limits)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Borrow(ctx, pools.BorrowRequest{Host: "n1", HostName: "shared-1", Pool: "shared", Lender: "bu-b", Borrower: "bu-a",
		At: t0, Lease: time.Hour, Reason: "burst", Claim: "c1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Borrow(ctx, pools.BorrowRequest{Host: "n2", Pool: "shared", Lender: "bu-b", Borrower: "bu-a",
		At: t0, Lease: time.Hour, Reason: "burst"}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Return(ctx, "n1", t0.Add(90*time.Minute), "scale-in"); err != nil {
		t.Fatal(err)
	}
	want := l.Entries()
	db.Close()

	// Reopen: the ledger rebuilds from disk.
	db, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, err := db.LedgerStore().Entries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("reopened store has %d entries, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	l2, problems, err := pools.NewLedger(ctx, db.LedgerStore(), limits)
	if err != nil || len(problems) > 0 {
		t.Fatal(err, problems)
	}
	if loans := l2.Loans(); len(loans) != 1 || loans[0].Host != "n2" {
		t.Fatalf("rebuilt loans %+v", loans)
	}
	if c := l2.Chargeback(t0, time.Time{}, t0.Add(2*time.Hour)); c.ByBorrower["bu-a"] != 3.5 {
		t.Errorf("chargeback after rebuild = %v host-hours, want 3.5", c.ByBorrower["bu-a"])
	}
	// A stale writer (the first ledger) cannot append over the new one.
	if _, err := l2.Return(ctx, "n2", t0.Add(2*time.Hour), "done"); err != nil {
		t.Fatal(err)
	}
	if err := db.LedgerStore().Append(ctx, pools.Entry{Seq: 2, Kind: pools.EntryReturn, Host: "n2", At: t0}); !errors.Is(err, ErrSeqConflict) {
		t.Fatalf("append with a taken seq: %v", err)
	}
}

// TestConcurrentBorrowSQLite races borrowers for one host through the
// SQLite store: exactly one entry is written.
func TestConcurrentBorrowSQLite(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l, _, err := pools.NewLedger(ctx, db.LedgerStore(), pools.Limits{
		Quota: map[string]int{"a": 1, "b": 1, "c": 1, "d": 1}, LendCap: map[string]int{"x": 4}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for _, b := range []string{"a", "b", "c", "d"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := l.Borrow(ctx, pools.BorrowRequest{Host: "h", Lender: "x", Borrower: b, At: time.Unix(1, 0), Lease: time.Hour})
			if err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else if !errors.Is(err, pools.ErrHostLent) {
				t.Errorf("borrow: %v", err)
			}
		}()
	}
	wg.Wait()
	entries, _ := db.LedgerStore().Entries(ctx)
	if wins != 1 || len(entries) != 1 {
		t.Fatalf("%d wins, %d entries; want 1, 1", wins, len(entries))
	}
}
