// Package journaltest is the contract every journal.Store keeps, as a test
// suite run against each backend (SQLite, and a real PostgreSQL that
// StartPostgres runs for the test): appending and querying events with
// filters and cursor pagination, durability across reopening, concurrent
// ledger appends where exactly one writer wins each seq, and the lending
// ledger (pools.Ledger) on top of the store, shared by two instances.
package journaltest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/pools"
)

// Backend makes an empty journal database for one test and returns how to
// open it. Every call of open returns a new, independent handle on that
// same database (as a second replica, or a restart, would have); the
// suite closes the handles it opens.
type Backend func(t *testing.T) (open func(t *testing.T) journal.Store)

// Run runs the contract suite against a backend.
func Run(t *testing.T, b Backend) {
	for _, c := range []struct {
		name string
		test func(*testing.T, func(*testing.T) journal.Store)
	}{
		{"EventsAppendAndQuery", testEventsAppendAndQuery},
		{"EventsCursorPagination", testEventsCursorPagination},
		{"EventsLastSeqAndTimeBounds", testEventsLastSeqAndTimeBounds},
		{"EventsConcurrentWritersCursor", testEventsConcurrentWritersCursor},
		{"DurableAcrossReopen", testDurableAcrossReopen},
		{"LedgerSeqConflicts", testLedgerSeqConflicts},
		{"LedgerConcurrentAppends", testLedgerConcurrentAppends},
		{"LedgerSharedByTwoInstances", testLedgerSharedByTwoInstances},
	} {
		t.Run(c.name, func(t *testing.T) {
			open := b(t)
			c.test(t, func(t *testing.T) journal.Store {
				t.Helper()
				s := open(t)
				t.Cleanup(func() { _ = s.Close() })
				return s
			})
		})
	}
}

var t0 = time.Date(2026, 11, 22, 8, 0, 0, 123456789, time.UTC)

func seqs(evs []journal.Event) []int64 {
	out := []int64{}
	for _, ev := range evs {
		out = append(out, ev.Seq)
	}
	return out
}

func testEventsAppendAndQuery(t *testing.T, open func(*testing.T) journal.Store) {
	ctx := context.Background()
	s := open(t)
	evs := []journal.Event{
		{Time: t0, Kind: journal.KindAlertAccepted, Subject: "default/demo/web", Actor: "alertmanager", Message: "DemoHighLatency fires", Data: json.RawMessage(`{"fingerprint":"ab"}`)},
		{Time: t0.Add(time.Second), Kind: journal.KindDecision, Subject: "default/demo/web", Activity: "act-1", Actor: "controller", Message: "2 -> 3"},
		{Time: t0.Add(2 * time.Second), Kind: journal.KindScale, Subject: "default/demo/web", Activity: "act-1", Actor: "controller", Message: "scaled to 3"},
		{Time: t0.Add(3 * time.Second), Kind: journal.KindAlertRejected, Actor: "alertmanager", Message: "bad payload"},
		{Time: t0.Add(4 * time.Second), Kind: "alertx", Message: "not an alert.* kind"},
		{Time: t0.Add(5 * time.Second), Kind: "a%b_c", Message: "LIKE wildcards in a kind are literal"},
		{Time: t0.Add(6 * time.Second), Kind: "host.ready", Subject: "host/i-0ab", Message: "ready"},
		{Time: t0.Add(7 * time.Second), Kind: "capacity.claimed", Message: "rented", Data: json.RawMessage(`{"hosts":["i-0ab (m5.large/us-east-1a/on-demand)"]}`)},
		{Time: t0.Add(8 * time.Second), Kind: "capacity.returned", Message: "returned", Data: json.RawMessage(`{"host":"i-0ab"}`)},
	}
	got, err := s.Events().Append(ctx, evs...)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9}; !slices.Equal(seqs(got), want) {
		t.Fatalf("appended seqs %v, want %v", seqs(got), want)
	}
	if _, err := s.Events().Append(ctx, journal.Event{Kind: "x"}); err == nil {
		t.Fatal("an event without a message must be refused")
	}
	if _, err := s.Events().Append(ctx, journal.Event{Kind: "ok", Message: "fine"}, journal.Event{Message: "no kind"}); err == nil {
		t.Fatal("an event without a kind must be refused")
	}
	// A refused batch leaves nothing behind.
	if all, _ := s.Events().Query(ctx, journal.Filter{}); len(all) != len(evs) {
		t.Fatalf("after refused appends: %d events, want %d", len(all), len(evs))
	}
	for _, c := range []struct {
		name string
		f    journal.Filter
		want []int64
	}{
		{"all", journal.Filter{}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{"kind prefix", journal.Filter{Kind: "alert"}, []int64{1, 4}},
		{"exact kind", journal.Filter{Kind: journal.KindDecision}, []int64{2}},
		{"wildcards are literal", journal.Filter{Kind: "a%b"}, []int64{}},
		{"kind with wildcards", journal.Filter{Kind: "a%b_c"}, []int64{6}},
		{"subject", journal.Filter{Subject: "default/demo/web"}, []int64{1, 2, 3}},
		{"activity", journal.Filter{Activity: "act-1"}, []int64{2, 3}},
		{"time range", journal.Filter{Since: t0.Add(time.Second), Until: t0.Add(3 * time.Second)}, []int64{2, 3}},
		{"cursor and limit", journal.Filter{After: 1, Limit: 2}, []int64{2, 3}},
		{"combined", journal.Filter{Kind: "scale", Subject: "default/demo/web", After: 2}, []int64{3}},
		{"actor", journal.Filter{Actor: "alertmanager"}, []int64{1, 4}},
		{"text, any case, in the message", journal.Filter{Text: "SCALED TO"}, []int64{3}},
		{"text in the data", journal.Filter{Text: `"ab"`}, []int64{1}},
		{"text wildcards are literal", journal.Filter{Text: "a%b_"}, []int64{6}},
		{"host", journal.Filter{Host: "i-0ab"}, []int64{7, 8, 9}},
		{"host, not a prefix of another", journal.Filter{Host: "i-0a"}, []int64{}},
		{"newest first", journal.Filter{Desc: true, Limit: 3}, []int64{9, 8, 7}},
		{"newest first, before a cursor", journal.Filter{Desc: true, Before: 4, Kind: "alert"}, []int64{1}},
	} {
		res, err := s.Events().Query(ctx, c.f)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !slices.Equal(seqs(res), c.want) {
			t.Errorf("%s: %v, want %v", c.name, seqs(res), c.want)
		}
	}
	res, err := s.Events().Query(ctx, journal.Filter{Kind: journal.KindAlertAccepted})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || string(res[0].Data) != `{"fingerprint":"ab"}` || !res[0].Time.Equal(t0) || res[0].Time.Location() != time.UTC ||
		res[0].Actor != "alertmanager" || res[0].Subject != "default/demo/web" || res[0].Message != "DemoHighLatency fires" {
		t.Fatalf("round trip: %+v", res)
	}
	// A zero time is set to now.
	before := time.Now().Add(-time.Second)
	now, err := s.Events().Append(ctx, journal.Event{Kind: "x", Message: "now"})
	if err != nil || now[0].Time.Before(before) {
		t.Fatalf("zero time: %+v, %v", now, err)
	}
}

func testEventsLastSeqAndTimeBounds(t *testing.T, open func(*testing.T) journal.Store) {
	ctx := context.Background()
	s := open(t)
	if last, err := s.Events().LastSeq(ctx); err != nil || last != 0 {
		t.Fatalf("LastSeq of an empty log: %d %v, want 0", last, err)
	}
	got, err := s.Events().Append(ctx, journal.Event{Time: t0, Kind: "x", Message: "one"}, journal.Event{Time: t0, Kind: "x", Message: "two"})
	if err != nil {
		t.Fatal(err)
	}
	if last, err := s.Events().LastSeq(ctx); err != nil || last != got[1].Seq {
		t.Fatalf("LastSeq: %d %v, want %d", last, err, got[1].Seq)
	}
	// Bounds past the int64 nanoseconds (1678 to 2262) filter as their
	// sign says, not inverted by an overflow.
	far := time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
	early := time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		f    journal.Filter
		want int
	}{
		{"until 9999", journal.Filter{Until: far}, 2},
		{"since 9999", journal.Filter{Since: far}, 0},
		{"since 1000", journal.Filter{Since: early}, 2},
		{"until 1000", journal.Filter{Until: early}, 0},
	} {
		evs, err := s.Events().Query(ctx, c.f)
		if err != nil || len(evs) != c.want {
			t.Errorf("%s: %d events %v, want %d", c.name, len(evs), err, c.want)
		}
	}
}

func testEventsCursorPagination(t *testing.T, open func(*testing.T) journal.Store) {
	ctx := context.Background()
	s := open(t)
	var batch []journal.Event
	for i := range 25 {
		kind := "decision"
		if i%3 == 0 {
			kind = "scale"
		}
		batch = append(batch, journal.Event{Time: t0.Add(time.Duration(i) * time.Second), Kind: kind, Message: fmt.Sprint(i)})
	}
	if _, err := s.Events().Append(ctx, batch...); err != nil {
		t.Fatal(err)
	}
	// Page through the scale events 4 at a time.
	var got []string
	var after int64
	pages := 0
	for {
		page, err := s.Events().Query(ctx, journal.Filter{Kind: "scale", After: after, Limit: 4})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		pages++
		for _, ev := range page {
			got = append(got, ev.Message)
		}
		after = page[len(page)-1].Seq
	}
	want := []string{"0", "3", "6", "9", "12", "15", "18", "21", "24"}
	if !slices.Equal(got, want) || pages != 3 {
		t.Fatalf("paged %v in %d pages, want %v in 3", got, pages, want)
	}
	// The default limit is 100 and the cap 1000.
	var many []journal.Event
	for i := range 1100 {
		many = append(many, journal.Event{Time: t0, Kind: "bulk", Message: fmt.Sprint(i)})
	}
	if _, err := s.Events().Append(ctx, many...); err != nil {
		t.Fatal(err)
	}
	if res, _ := s.Events().Query(ctx, journal.Filter{Kind: "bulk"}); len(res) != 100 {
		t.Errorf("default limit: %d events, want 100", len(res))
	}
	if res, _ := s.Events().Query(ctx, journal.Filter{Kind: "bulk", Limit: 5000}); len(res) != 1000 {
		t.Errorf("capped limit: %d events, want 1000", len(res))
	}
}

// testEventsConcurrentWritersCursor appends from several handles at once
// while a reader follows with the cursor: the reader sees every event
// exactly once, in seq order, because seq order is commit order.
func testEventsConcurrentWritersCursor(t *testing.T, open func(*testing.T) journal.Store) {
	ctx := context.Background()
	const writers, perWriter = 4, 30
	handles := make([]journal.Store, writers)
	for i := range handles {
		handles[i] = open(t)
	}
	reader := open(t)
	var wg sync.WaitGroup
	for w, h := range handles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				if _, err := h.Events().Append(ctx, journal.Event{Kind: "w", Subject: fmt.Sprint(w), Message: fmt.Sprint(i)},
					journal.Event{Kind: "w", Subject: fmt.Sprint(w), Message: fmt.Sprint(i) + "b"}); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	seen := map[int64]bool{}
	var after int64
	follow := func() {
		for {
			page, err := reader.Events().Query(ctx, journal.Filter{After: after, Limit: 7})
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				return
			}
			for _, ev := range page {
				if ev.Seq <= after || seen[ev.Seq] {
					t.Fatalf("cursor went backwards or repeated: seq %d after %d", ev.Seq, after)
				}
				seen[ev.Seq] = true
				after = ev.Seq
			}
		}
	}
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		follow()
	}
	follow()
	if len(seen) != writers*perWriter*2 {
		t.Fatalf("the cursor saw %d events, want %d", len(seen), writers*perWriter*2)
	}
	all, err := reader.Events().Query(ctx, journal.Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	// A batch is contiguous: its two events are adjacent.
	for i := 0; i+1 < len(all); i += 2 {
		if all[i].Subject != all[i+1].Subject || all[i].Message+"b" != all[i+1].Message {
			t.Fatalf("batch split: %+v then %+v", all[i], all[i+1])
		}
	}
}

func testDurableAcrossReopen(t *testing.T, open func(*testing.T) journal.Store) {
	ctx := context.Background()
	s := open(t)
	if _, err := s.Events().Append(ctx, journal.Event{Time: t0, Kind: journal.KindScale, Subject: "a/b/c", Activity: "act", Actor: "controller", Message: "scaled", Data: json.RawMessage(`{"to":3}`)}); err != nil {
		t.Fatal(err)
	}
	limits := pools.Limits{Quota: map[string]int{"bu-a": 2}, LendCap: map[string]int{"bu-b": 2}, Overcommit: map[string]bool{"bu-b": true}}
	l, _, err := pools.NewLedger(ctx, s.LedgerStore(), limits)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Borrow(ctx, pools.BorrowRequest{Host: "n1", HostName: "shared-1", Pool: "shared", Lender: "bu-b", Borrower: "bu-a",
		At: t0, Lease: time.Hour, Reason: "burst", Claim: "c1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Borrow(ctx, pools.BorrowRequest{Host: "i-1", Tier: pools.TierCold, Pool: "aws", Lender: "aws", Borrower: "bu-a",
		At: t0, Lease: time.Hour, Reason: "burst"}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reclaim(ctx, "n1", t0.Add(time.Minute), 10*time.Minute, "owner needs it"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Return(ctx, "n1", t0.Add(5*time.Minute), "scale-in"); err != nil {
		t.Fatal(err)
	}
	want := l.Entries()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t)
	got, err := s.LedgerStore().Entries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("after reopen:\n got %+v\nwant %+v", got, want)
	}
	l2, problems, err := pools.NewLedger(ctx, s.LedgerStore(), limits)
	if err != nil || len(problems) > 0 {
		t.Fatal(err, problems)
	}
	if loans := l2.Loans(); len(loans) != 1 || loans[0].Host != "i-1" {
		t.Fatalf("rebuilt loans %+v", loans)
	}
	evs, err := s.Events().Query(ctx, journal.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Seq != 1 || !evs[0].Time.Equal(t0) || string(evs[0].Data) != `{"to":3}` {
		t.Fatalf("events after reopen: %+v", evs)
	}
	// Seqs continue after a reopen.
	more, err := s.Events().Append(ctx, journal.Event{Kind: "x", Message: "after"})
	if err != nil || more[0].Seq != 2 {
		t.Fatalf("append after reopen: %+v, %v", more, err)
	}
}

func entry(seq int64, host string) pools.Entry {
	return pools.Entry{Seq: seq, Kind: pools.EntryBorrow, Host: host, Tier: pools.TierShared, Pool: "shared",
		Lender: "bu-b", Borrower: "bu-a", At: t0, Lease: time.Hour}
}

func testLedgerSeqConflicts(t *testing.T, open func(*testing.T) journal.Store) {
	ctx := context.Background()
	ls := open(t).LedgerStore()
	if err := ls.Append(ctx, entry(2, "h")); !errors.Is(err, journal.ErrSeqConflict) {
		t.Fatalf("first entry with seq 2: %v, want ErrSeqConflict", err)
	}
	if err := ls.Append(ctx, entry(1, "h")); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []int64{0, 1, 3} {
		if err := ls.Append(ctx, entry(seq, "h2")); !errors.Is(err, journal.ErrSeqConflict) {
			t.Errorf("seq %d after 1: %v, want ErrSeqConflict", seq, err)
		}
	}
	if err := ls.Append(ctx, entry(2, "h2")); err != nil {
		t.Fatal(err)
	}
	got, err := ls.Entries(ctx)
	if err != nil || len(got) != 2 || got[0].Host != "h" || got[1].Host != "h2" {
		t.Fatalf("entries %+v, %v", got, err)
	}
}

// testLedgerConcurrentAppends races writers, each on its own handle (as
// replicas would be), for the same seqs: exactly one wins each, the others
// get ErrSeqConflict, and the store has no gap or duplicate.
func testLedgerConcurrentAppends(t *testing.T, open func(*testing.T) journal.Store) {
	ctx := context.Background()
	const writers, rounds = 4, 8
	handles := make([]pools.LedgerStore, writers)
	for i := range handles {
		handles[i] = open(t).LedgerStore()
	}
	for seq := int64(1); seq <= rounds; seq++ {
		var wg sync.WaitGroup
		errs := make([]error, writers)
		start := make(chan struct{})
		for w, h := range handles {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[w] = h.Append(ctx, entry(seq, fmt.Sprintf("h-%d-%d", seq, w)))
			}()
		}
		close(start)
		wg.Wait()
		wins := 0
		for w, err := range errs {
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, journal.ErrSeqConflict):
				t.Fatalf("seq %d, writer %d: %v, want success or ErrSeqConflict", seq, w, err)
			}
		}
		if wins != 1 {
			t.Fatalf("seq %d: %d writers won, want exactly 1", seq, wins)
		}
	}
	got, err := handles[0].Entries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != rounds {
		t.Fatalf("%d entries, want %d", len(got), rounds)
	}
	for i, e := range got {
		if e.Seq != int64(i+1) {
			t.Fatalf("entry %d has seq %d", i, e.Seq)
		}
	}
}

// testLedgerSharedByTwoInstances is two replicas' ledgers on one database:
// a borrow by one makes the other's next change conflict (it is stale), and
// once rebuilt it sees the loan and refuses to lend the host twice.
func testLedgerSharedByTwoInstances(t *testing.T, open func(*testing.T) journal.Store) {
	ctx := context.Background()
	limits := pools.Limits{Quota: map[string]int{"bu-a": 2, "bu-c": 2}, LendCap: map[string]int{"bu-b": 4}}
	s1, s2 := open(t), open(t)
	l1, _, err := pools.NewLedger(ctx, s1.LedgerStore(), limits)
	if err != nil {
		t.Fatal(err)
	}
	l2, _, err := pools.NewLedger(ctx, s2.LedgerStore(), limits)
	if err != nil {
		t.Fatal(err)
	}
	req := func(host, borrower string) pools.BorrowRequest {
		return pools.BorrowRequest{Host: host, Pool: "shared", Lender: "bu-b", Borrower: borrower, At: t0, Lease: time.Hour}
	}
	// Both race for the same host: one wins, the other conflicts.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, l := range []*pools.Ledger{l1, l2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = l.Borrow(ctx, req("shared-1", []string{"bu-a", "bu-c"}[i]))
		}()
	}
	wg.Wait()
	winner, loser := 0, 1
	if errs[0] != nil {
		winner, loser = 1, 0
	}
	if errs[winner] != nil || !errors.Is(errs[loser], journal.ErrSeqConflict) {
		t.Fatalf("racing borrows: %v and %v, want one success and one ErrSeqConflict", errs[0], errs[1])
	}
	stale := []*pools.Ledger{l1, l2}[loser]
	if _, ok := stale.Loan("shared-1"); ok {
		t.Fatal("the losing ledger applied a borrow that was not made durable")
	}
	// The stale ledger cannot make any change until it is rebuilt.
	if _, err := stale.Borrow(ctx, req("shared-2", "bu-a")); !errors.Is(err, journal.ErrSeqConflict) {
		t.Fatalf("a stale ledger borrowing another host: %v, want ErrSeqConflict", err)
	}
	rebuilt, problems, err := pools.NewLedger(ctx, []journal.Store{s1, s2}[loser].LedgerStore(), limits)
	if err != nil || len(problems) > 0 {
		t.Fatal(err, problems)
	}
	if _, err := rebuilt.Borrow(ctx, req("shared-1", "bu-a")); !errors.Is(err, pools.ErrHostLent) {
		t.Fatalf("borrowing a lent host after rebuilding: %v, want ErrHostLent", err)
	}
	if _, err := rebuilt.Borrow(ctx, req("shared-2", "bu-a")); err != nil {
		t.Fatalf("borrowing a free host after rebuilding: %v", err)
	}
	entries, err := s1.LedgerStore().Entries(ctx)
	if err != nil || len(entries) != 2 {
		t.Fatalf("entries %+v, %v; want 2", entries, err)
	}
}
