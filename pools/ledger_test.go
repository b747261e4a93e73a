package pools

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)

func testLimits() Limits {
	return Limits{
		Quota:      map[string]int{"bu-a": 2, "bu-b": 1},
		LendCap:    map[string]int{"bu-a": 1, "bu-b": 2},
		Overcommit: map[string]bool{"bu-a": true},
	}
}

func newTestLedger(t *testing.T, store LedgerStore) *Ledger {
	t.Helper()
	l, problems, err := NewLedger(context.Background(), store, testLimits())
	if err != nil || len(problems) > 0 {
		t.Fatalf("new ledger: %v %v", err, problems)
	}
	return l
}

func borrow(host, lender, borrower string, at time.Duration) BorrowRequest {
	return BorrowRequest{Host: host, Lender: lender, Borrower: borrower, Pool: "shared", At: t0.Add(at), Lease: time.Hour, Reason: "burst"}
}

// TestLedgerInvariants replays a sequence of operations and checks each
// outcome: the ledger's three invariants and the entry rules.
func TestLedgerInvariants(t *testing.T) {
	type op struct {
		name string
		do   func(context.Context, *Ledger) error
		want error // nil for success
	}
	b := func(r BorrowRequest) func(context.Context, *Ledger) error {
		return func(ctx context.Context, l *Ledger) error { _, err := l.Borrow(ctx, r); return err }
	}
	ret := func(host string, at time.Duration) func(context.Context, *Ledger) error {
		return func(ctx context.Context, l *Ledger) error {
			_, err := l.Return(ctx, host, t0.Add(at), "done")
			return err
		}
	}
	over := borrow("h3", "bu-a", "bu-a", 3*time.Minute)
	over.Overcommit = true
	overB := borrow("h9", "bu-c", "bu-a", 4*time.Minute)
	overB.Overcommit = true
	cloud := borrow("i-1", "aws-use1", "bu-b", 0)
	cloud.Tier = TierCold
	ops := []op{
		{"borrow h1 from bu-a for bu-b", b(borrow("h1", "bu-a", "bu-b", 0)), nil},
		{"h1 again for bu-a: lent to one borrower only", b(borrow("h1", "bu-b", "bu-a", time.Minute)), ErrHostLent},
		{"bu-b over its quota of 1", b(borrow("h2", "bu-b", "bu-b", time.Minute)), ErrQuota},
		{"bu-a borrows h2 from bu-b", b(borrow("h2", "bu-b", "bu-a", time.Minute)), nil},
		{"bu-a lent 1 of its share of 1", b(borrow("h3", "bu-a", "bu-a", 2*time.Minute)), ErrShare},
		{"bu-a over-commits on purpose", b(over), nil},
		{"bu-a over its quota of 2", b(borrow("h4", "bu-b", "bu-a", 3*time.Minute)), ErrQuota},
		{"cloud rentals have no quota", b(cloud), nil},
		{"return h2", ret("h2", 10*time.Minute), nil},
		{"bu-c does not allow over-commit", b(overB), ErrShare},
		{"return h2 twice", ret("h2", 11*time.Minute), ErrNotLent},
		{"extend by the wrong borrower", func(ctx context.Context, l *Ledger) error {
			_, err := l.Extend(ctx, "h1", "bu-a", t0.Add(20*time.Minute), time.Hour, "more")
			return err
		}, ErrWrongBorrower},
		{"extend h1", func(ctx context.Context, l *Ledger) error {
			loan, err := l.Extend(ctx, "h1", "bu-b", t0.Add(20*time.Minute), time.Hour, "more")
			if err == nil && !loan.Until.Equal(t0.Add(80*time.Minute)) {
				return fmt.Errorf("lease until %s", loan.Until)
			}
			return err
		}, nil},
		{"reclaim h1", func(ctx context.Context, l *Ledger) error {
			loan, err := l.Reclaim(ctx, "h1", t0.Add(30*time.Minute), 5*time.Minute, "lender needs it")
			if err == nil && !loan.ReclaimBy.Equal(t0.Add(35*time.Minute)) {
				return fmt.Errorf("reclaim by %s", loan.ReclaimBy)
			}
			return err
		}, nil},
		{"a second reclaim keeps the earlier deadline", func(ctx context.Context, l *Ledger) error {
			loan, err := l.Reclaim(ctx, "h1", t0.Add(31*time.Minute), time.Hour, "again")
			if err == nil && !loan.ReclaimBy.Equal(t0.Add(35*time.Minute)) {
				return fmt.Errorf("reclaim by %s", loan.ReclaimBy)
			}
			return err
		}, nil},
		{"a reclaim needs a notice", func(ctx context.Context, l *Ledger) error {
			_, err := l.Reclaim(ctx, "h1", t0.Add(31*time.Minute), 0, "now")
			return err
		}, ErrInvalidEntry},
		{"a reclaimed loan cannot be extended", func(ctx context.Context, l *Ledger) error {
			_, err := l.Extend(ctx, "h1", "bu-b", t0.Add(31*time.Minute), time.Hour, "more")
			return err
		}, ErrInvalidEntry},
		{"return before the loan began", ret("h1", -time.Minute), ErrInvalidEntry},
		{"return h1", ret("h1", 33*time.Minute), nil},
		{"borrow without a lease", b(BorrowRequest{Host: "h5", Lender: "bu-b", Borrower: "bu-b", At: t0}), ErrInvalidEntry},
	}
	ctx := context.Background()
	store := NewMemoryStore()
	l := newTestLedger(t, store)
	for _, o := range ops {
		before := len(l.Entries())
		err := o.do(ctx, l)
		switch {
		case o.want == nil && err != nil:
			t.Fatalf("%s: %v", o.name, err)
		case o.want != nil && !errors.Is(err, o.want):
			t.Fatalf("%s: err = %v, want %v", o.name, err, o.want)
		case o.want != nil && len(l.Entries()) != before:
			t.Fatalf("%s: a refused change was recorded", o.name)
		}
	}
	if got := len(l.Loans()); got != 2 { // h3 and i-1
		t.Fatalf("%d loans left, want 2: %+v", got, l.Loans())
	}
	if l.Borrowed("bu-a") != 1 || l.Lent("bu-a") != 1 || l.Borrowed("bu-b") != 0 {
		t.Errorf("borrowed/lent = %d/%d/%d", l.Borrowed("bu-a"), l.Lent("bu-a"), l.Borrowed("bu-b"))
	}
	entries, _ := store.Entries(ctx)
	if len(entries) != len(l.Entries()) {
		t.Fatalf("store has %d entries, ledger %d", len(entries), len(l.Entries()))
	}
	for i, e := range entries {
		if e.Seq != int64(i+1) {
			t.Fatalf("entry %d has seq %d", i, e.Seq)
		}
	}
	last := entries[len(entries)-1]
	if last.Kind != EntryReturn || last.Lender != "bu-a" || last.Borrower != "bu-b" || last.Tier != TierShared || last.Pool != "shared" {
		t.Errorf("return entry does not carry the loan: %+v", last)
	}

	// The same store replays to the same state.
	again := newTestLedger(t, store)
	if fmt.Sprint(again.Loans()) != fmt.Sprint(l.Loans()) {
		t.Errorf("replayed loans %v, want %v", again.Loans(), l.Loans())
	}
	if _, err := again.Borrow(ctx, borrow("h7", "bu-b", "bu-b", time.Hour)); err != nil {
		t.Errorf("borrow after replay: %v", err)
	}
}

// TestLedgerConcurrentBorrow races many borrowers for the same host: exactly
// one wins, and exactly one entry is written.
func TestLedgerConcurrentBorrow(t *testing.T) {
	for round := range 20 {
		store := NewMemoryStore()
		l, _, err := NewLedger(context.Background(), store, Limits{
			Quota:   map[string]int{"b0": 5, "b1": 5, "b2": 5, "b3": 5, "b4": 5, "b5": 5, "b6": 5, "b7": 5},
			LendCap: map[string]int{"bu-a": 10},
		})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins, lost := 0, 0
		start := make(chan struct{})
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, err := l.Borrow(context.Background(), borrow("shared-1", "bu-a", fmt.Sprintf("b%d", i), 0))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case errors.Is(err, ErrHostLent):
					lost++
				default:
					t.Errorf("round %d: unexpected error %v", round, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		entries, _ := store.Entries(context.Background())
		if wins != 1 || lost != 7 || len(entries) != 1 {
			t.Fatalf("round %d: %d wins, %d lost, %d entries; want 1, 7, 1", round, wins, lost, len(entries))
		}
	}
}

// TestLedgerDurableBeforeEffect: when the store cannot make an entry
// durable, the change does not happen.
func TestLedgerDurableBeforeEffect(t *testing.T) {
	ctx := context.Background()
	store := NewMemoryStore()
	l := newTestLedger(t, store)
	store.FailNext(errors.New("disk full"))
	if _, err := l.Borrow(ctx, borrow("h1", "bu-a", "bu-a", 0)); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("borrow with a failing store: %v", err)
	}
	if _, ok := l.Loan("h1"); ok {
		t.Fatal("a borrow that was not durable took effect")
	}
	if _, err := l.Borrow(ctx, borrow("h1", "bu-a", "bu-a", 0)); err != nil {
		t.Fatalf("borrow after the store recovered: %v", err)
	}
	store.FailNext(errors.New("disk full"))
	if _, err := l.Return(ctx, "h1", t0.Add(time.Hour), "done"); err == nil {
		t.Fatal("return with a failing store succeeded")
	}
	if _, ok := l.Loan("h1"); !ok {
		t.Fatal("a return that was not durable took effect")
	}
}

// TestLedgerReplayReportsProblems: an entry that breaks the rules (a host
// lent twice, written by a buggy or concurrent writer) is skipped and
// reported, not silently applied.
func TestLedgerReplayReportsProblems(t *testing.T) {
	ctx := context.Background()
	store := NewMemoryStore()
	for i, e := range []Entry{
		{Kind: EntryBorrow, Host: "h1", Lender: "bu-a", Borrower: "bu-b", Tier: TierShared, At: t0, Lease: time.Hour},
		{Kind: EntryBorrow, Host: "h1", Lender: "bu-a", Borrower: "bu-a", Tier: TierShared, At: t0.Add(time.Minute), Lease: time.Hour},
		{Kind: EntryReturn, Host: "h2", At: t0.Add(2 * time.Minute)},
	} {
		e.Seq = int64(i + 1)
		if err := store.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	l, problems, err := NewLedger(ctx, store, testLimits())
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 2 || !errors.Is(problems[0].Err, ErrHostLent) || !errors.Is(problems[1].Err, ErrNotLent) {
		t.Fatalf("problems = %v", problems)
	}
	if loan, _ := l.Loan("h1"); loan.Borrower != "bu-b" {
		t.Errorf("h1 lent to %q, want bu-b", loan.Borrower)
	}
	if _, err := l.Return(ctx, "h1", t0.Add(time.Hour), "done"); err != nil {
		t.Fatalf("return after replay: %v", err)
	}
	if e := l.Entries(); e[len(e)-1].Seq != 4 {
		t.Errorf("next seq = %d, want 4", e[len(e)-1].Seq)
	}
}

func TestChargeback(t *testing.T) {
	ctx := context.Background()
	l := newTestLedger(t, NewMemoryStore())
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := l.Borrow(ctx, borrow("h1", "bu-a", "bu-b", 0)) // 0:00–2:00 → 2h
	must(err)
	_, err = l.Borrow(ctx, borrow("h2", "bu-b", "bu-a", 30*time.Minute)) // 0:30–open
	must(err)
	cloud := borrow("i-1", "aws-use1", "bu-a", time.Hour) // 1:00–1:45 → 0.75h
	cloud.Tier = TierCold
	_, err = l.Borrow(ctx, cloud)
	must(err)
	u, err := l.Return(ctx, "i-1", t0.Add(105*time.Minute), "scale-in")
	must(err)
	if u.End.Sub(u.Start) != 45*time.Minute || u.Borrower != "bu-a" {
		t.Errorf("usage = %+v", u)
	}
	_, err = l.Return(ctx, "h1", t0.Add(2*time.Hour), "done")
	must(err)

	now := t0.Add(3 * time.Hour)
	approx := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	c := l.Chargeback(t0, time.Time{}, now)
	approx("bu-b borrowed", c.ByBorrower["bu-b"], 2)
	approx("bu-a borrowed", c.ByBorrower["bu-a"], 2.5+0.75)
	approx("bu-a lent", c.ByLender["bu-a"], 2)
	approx("bu-b lent", c.ByLender["bu-b"], 2.5)
	approx("aws lent", c.ByLender["aws-use1"], 0.75)
	approx("shared tier", c.ByTier[TierShared], 4.5)
	approx("cold tier", c.ByTier[TierCold], 0.75)
	approx("total", c.Total, 5.25)

	// A window clips every span: 1:00–1:30.
	c = l.Chargeback(t0.Add(time.Hour), t0.Add(90*time.Minute), now)
	approx("window bu-b", c.ByBorrower["bu-b"], 0.5)
	approx("window bu-a", c.ByBorrower["bu-a"], 1.0)
	approx("window total", c.Total, 1.5)
	// A window after every closed loan sees only the open one.
	if got := l.Usage(t0.Add(150*time.Minute), time.Time{}); len(got) != 1 || got[0].Host != "h2" {
		t.Errorf("usage after 2:30 = %+v", got)
	}
	if exp := l.Expired(t0.Add(91 * time.Minute)); len(exp) != 1 || exp[0].Host != "h2" {
		t.Errorf("expired = %+v", exp)
	}
}

func TestVerify(t *testing.T) {
	ctx := context.Background()
	l := newTestLedger(t, NewMemoryStore())
	for _, r := range []BorrowRequest{borrow("n1", "bu-a", "bu-b", 0), borrow("n2", "bu-b", "bu-a", 0), borrow("n3", "bu-b", "bu-a", 0)} {
		if _, err := l.Borrow(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	agree := []ObservedHost{{Host: "n1", LentTo: "bu-b"}, {Host: "n2", LentTo: "bu-a"}, {Host: "n3", LentTo: "bu-a"}, {Host: "n4"}}
	if d := l.Verify(agree); len(d) != 0 {
		t.Fatalf("agreeing state reported %v", d)
	}
	d := l.Verify([]ObservedHost{{Host: "n1"}, {Host: "n2", LentTo: "bu-b"}, {Host: "n4", Name: "shared-4", LentTo: "bu-a"}})
	var got []string
	for _, x := range d {
		got = append(got, x.String())
	}
	want := []string{
		"host n1: ledger lends it to bu-b, but its node meta does not mark it lent",
		"host n2: ledger lends it to bu-a, but its node meta says bu-b",
		"host shared-4 (n4): node meta marks it lent to bu-a, but the ledger has no loan",
		"host n3: ledger lends it to bu-a, but Nomad has no such shared host",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("discrepancies:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestLedgerReloadSeesAnotherWriter(t *testing.T) {
	ctx := context.Background()
	store := NewMemoryStore()
	limits := Limits{Quota: map[string]int{"a": 5}, LendCap: map[string]int{"b": 5}}
	mine, _, err := NewLedger(ctx, store, limits)
	if err != nil {
		t.Fatal(err)
	}
	theirs, _, err := NewLedger(ctx, store, limits)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	if _, err := theirs.Borrow(ctx, BorrowRequest{Host: "h1", Lender: "b", Borrower: "a", At: at, Lease: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := mine.Borrow(ctx, BorrowRequest{Host: "h2", Lender: "b", Borrower: "a", At: at, Lease: time.Hour}); err == nil {
		t.Fatal("a stale ledger must not append")
	}
	if _, err := mine.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := mine.Loan("h1"); !ok {
		t.Fatal("the reloaded ledger does not see the other writer's loan")
	}
	if _, err := mine.Borrow(ctx, BorrowRequest{Host: "h2", Lender: "b", Borrower: "a", At: at, Lease: time.Hour}); err != nil {
		t.Fatalf("after the reload the ledger appends again: %v", err)
	}
}

// TestAdoptAndUnrecorded: a host marked lent without a loan is an
// unrecorded loan unless the ledger recorded a return of it after the
// mark; an adoption takes no quota or share into account, says why, and
// survives a replay.
func TestAdoptAndUnrecorded(t *testing.T) {
	ctx := context.Background()
	store := NewMemoryStore()
	l := newTestLedger(t, store)
	if !l.Unrecorded("n1", t0.Add(time.Hour), time.Hour) {
		t.Fatal("a host the ledger never saw is not unrecorded")
	}
	if _, err := l.Borrow(ctx, borrow("n1", "bu-b", "bu-a", 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Return(ctx, "n1", t0.Add(10*time.Minute), "done"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		until time.Time
		want  bool
	}{
		{"the mark of the returned loan", t0.Add(time.Hour), false},
		{"a mark newer than the return", t0.Add(90 * time.Minute), true},
		{"a lease not readable", time.Time{}, true},
	} {
		if got := l.Unrecorded("n1", tc.until, time.Hour); got != tc.want {
			t.Errorf("%s: Unrecorded = %v, want %v", tc.name, got, tc.want)
		}
	}
	// bu-b's quota is 1 and bu-a's share 1: an adoption ignores both.
	for _, h := range []string{"n2", "n3"} {
		d := Discrepancy{Host: h, Name: "shared-" + h, Nomad: "bu-b", Lender: "bu-a", Lease: t0.Add(2 * time.Hour).Format(time.RFC3339)}
		if !d.LentUnrecorded() {
			t.Fatalf("%+v is not lent unrecorded", d)
		}
		loan, err := l.Adopt(ctx, d.Adoption(&SharedPool{Header: Header{Name: "shared"}, Lease: time.Hour}, t0.Add(time.Hour)))
		if err != nil {
			t.Fatal(err)
		}
		if loan.Borrower != "bu-b" || loan.Lender != "bu-a" || !loan.Until.Equal(t0.Add(2*time.Hour)) || !strings.Contains(loan.Adopted, "no record of the loan") {
			t.Fatalf("adopted %+v", loan)
		}
	}
	if _, err := l.Adopt(ctx, BorrowRequest{Host: "n2", Pool: "shared", Lender: "bu-a", Borrower: "bu-b", At: t0.Add(time.Hour), Lease: time.Hour, Reason: "again"}); !errors.Is(err, ErrHostLent) {
		t.Fatalf("adopting a host lent: %v, want ErrHostLent", err)
	}
	replayed := newTestLedger(t, store)
	if loan, ok := replayed.Loan("n3"); !ok || loan.Adopted == "" {
		t.Fatalf("after a replay, n3's loan is %+v", loan)
	}
}
