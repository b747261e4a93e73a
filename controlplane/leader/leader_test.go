package leader_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spillwayhq/spillway/controlplane/config"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/controlplane/journal/journaltest"
	"github.com/spillwayhq/spillway/controlplane/leader"
	"github.com/spillwayhq/spillway/pools"
)

// The contract of the election, against a real PostgreSQL (Debian's),
// with short leases so that a test takes seconds.
const (
	ttl   = 2 * time.Second
	renew = 500 * time.Millisecond
)

// candidate is a replica in a test: its own journal connections, its
// elector, and a record of its work.
type candidate struct {
	e       *leader.Elector
	db      *journal.Postgres
	reg     *prometheus.Registry
	cancel  context.CancelFunc
	stopped chan struct{}

	mu                 sync.Mutex
	started, cancelled []time.Time
	terms              []leader.Term
	running            atomic.Bool
}

// tracker counts candidates running the leader's work, across a test.
type tracker struct {
	active  atomic.Int32
	overlap atomic.Bool
}

func open(t *testing.T, dsn string) *journal.Postgres {
	t.Helper()
	db, err := journal.OpenPostgres(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newCandidate(t *testing.T, dsn, election, id string, tr *tracker) *candidate {
	t.Helper()
	c := &candidate{reg: prometheus.NewRegistry(), stopped: make(chan struct{}), db: open(t, dsn)}
	var err error
	c.e, err = leader.New(leader.Options{
		Lease: c.db.Lease(election), Identity: id, TTL: ttl, RenewInterval: renew, RetryInterval: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(testWriter{t, id}, nil)), Registerer: c.reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go func() {
		defer close(c.stopped)
		_ = c.e.Run(ctx, func(ctx context.Context, term leader.Term) {
			if tr.active.Add(1) > 1 {
				tr.overlap.Store(true)
			}
			c.running.Store(true)
			c.mu.Lock()
			c.started = append(c.started, time.Now())
			c.terms = append(c.terms, term)
			c.mu.Unlock()
			<-ctx.Done()
			c.mu.Lock()
			c.cancelled = append(c.cancelled, time.Now())
			c.mu.Unlock()
			c.running.Store(false)
			tr.active.Add(-1)
		})
	}()
	t.Cleanup(func() { c.stop(t) })
	return c
}

func (c *candidate) stop(t *testing.T) {
	c.cancel()
	select {
	case <-c.stopped:
	case <-time.After(30 * time.Second):
		t.Errorf("%s: Run did not return after its context ended", c.e.Identity())
	}
}

func (c *candidate) lastTerm() leader.Term {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.terms[len(c.terms)-1]
}

func waitLeader(t *testing.T, within time.Duration, cs ...*candidate) *candidate {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, c := range cs {
			if c.e.IsLeader() && c.running.Load() {
				return c
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no leader within %s", within)
	return nil
}

func TestElection(t *testing.T) {
	pg := journaltest.StartPostgres(t)
	dsn := pg.NewDatabase(t)

	t.Run("ExactlyOneLeads", func(t *testing.T) {
		tr := &tracker{}
		a := newCandidate(t, dsn, "one", "a", tr)
		b := newCandidate(t, dsn, "one", "b", tr)
		first := waitLeader(t, 10*time.Second, a, b)
		other := b
		if first == b {
			other = a
		}
		// Until the leader has renewed the lease past two TTLs beyond its
		// first expiry (the positive signal: renewals the database saw),
		// one leads and the other waits: the follower's attempts after each
		// renewal are refused.
		before := testutil.ToFloat64(collector(t, first.reg, "spillway_leader_term", nil))
		conn := connect(t, dsn)
		expiry := func() time.Time {
			var at time.Time
			if err := conn.QueryRow(context.Background(), `SELECT expires_at FROM leader_leases WHERE election = 'one'`).Scan(&at); err != nil {
				t.Fatal(err)
			}
			return at
		}
		past := expiry().Add(2 * ttl)
		for deadline := time.Now().Add(10 * ttl); expiry().Before(past); time.Sleep(20 * time.Millisecond) {
			if !first.e.IsLeader() || other.e.IsLeader() || other.running.Load() {
				t.Fatalf("leadership moved or doubled: %s leader=%v, %s leader=%v", first.e.Identity(), first.e.IsLeader(), other.e.Identity(), other.e.IsLeader())
			}
			if time.Now().After(deadline) {
				t.Fatal("the leader never renewed its lease two TTLs on")
			}
		}
		if tr.overlap.Load() {
			t.Fatal("two candidates ran the leader's work at once")
		}
		if got := other.e.Leader(); got != first.e.Identity() {
			t.Errorf("the follower sees leader %q, want %q", got, first.e.Identity())
		}
		if v := testutil.ToFloat64(gauge(t, first.reg)); v != 1 {
			t.Errorf("leader's spillway_leader = %v", v)
		}
		if v := testutil.ToFloat64(gauge(t, other.reg)); v != 0 {
			t.Errorf("follower's spillway_leader = %v", v)
		}
		if after := testutil.ToFloat64(collector(t, first.reg, "spillway_leader_term", nil)); after != before || after < 1 {
			t.Errorf("spillway_leader_term went from %v to %v while one leader renewed", before, after)
		}
		tok, err := first.e.Token()
		if err != nil || float64(tok) != before {
			t.Errorf("the leader's token: %d, %v; want %v", tok, err, before)
		}
		if _, err := other.e.Token(); !errors.Is(err, leader.ErrNotLeader) {
			t.Errorf("the follower's token: %v, want ErrNotLeader", err)
		}
	})

	t.Run("CleanStopHandsOverAtOnce", func(t *testing.T) {
		tr := &tracker{}
		a := newCandidate(t, dsn, "stop", "a", tr)
		b := newCandidate(t, dsn, "stop", "b", tr)
		first := waitLeader(t, 10*time.Second, a, b)
		next := b
		if first == b {
			next = a
		}
		stopped := time.Now()
		first.stop(t)
		if first.e.IsLeader() || first.running.Load() {
			t.Fatal("a stopped candidate still leads")
		}
		waitLeader(t, ttl, next)
		took := time.Since(stopped)
		t.Logf("handover after a clean stop took %s", took.Round(time.Millisecond))
		// The release is announced (NOTIFY): the follower does not wait
		// for its next attempt, let alone the TTL.
		if took > ttl/2 {
			t.Errorf("handover after a clean stop took %s; want well within the TTL %s", took, ttl)
		}
		if tr.overlap.Load() {
			t.Fatal("two candidates ran the leader's work at once")
		}
		first.mu.Lock()
		defer first.mu.Unlock()
		next.mu.Lock()
		defer next.mu.Unlock()
		if len(first.cancelled) != 1 || !first.cancelled[0].Before(next.started[0]) {
			t.Fatalf("the old leader's work must stop before the new one's starts: %v, %v", first.cancelled, next.started)
		}
		prev := next.terms[0].Previous
		if prev == nil || prev.Holder != first.e.Identity() || !prev.Released || prev.Term != first.terms[0].Token || next.terms[0].Token != prev.Term+1 {
			t.Fatalf("the new term %d's handover: %+v; want a release of term %d by %s", next.terms[0].Token, prev, first.terms[0].Token, first.e.Identity())
		}
		if v := testutil.ToFloat64(transitions(t, first.reg, "follower")); v != 1 {
			t.Errorf("stopped leader's follower transitions = %v", v)
		}
	})

	t.Run("PartitionedLeaderStopsBeforeHandover", func(t *testing.T) {
		// The leader reaches the database through a proxy the test cuts,
		// as a crash or a network partition would: it can no longer renew,
		// so it must cancel its work by the TTL, and the other candidate
		// takes over after that but within TTL + one renewal interval.
		p := newProxy(t, pg.Addr)
		tr := &tracker{}
		a := newCandidate(t, viaProxy(t, dsn, p), "partition", "a", tr)
		first := waitLeader(t, 10*time.Second, a)
		b := newCandidate(t, dsn, "partition", "b", tr)
		// The follower has seen the lease held.
		waitFor(t, 5*time.Second, func() bool { return b.e.Leader() == "a" })
		fencedA := a.db.Fenced("partition", a.e)
		if _, err := fencedA.Events().Append(context.Background(), journal.Event{Kind: "test", Message: "by a while it leads"}); err != nil {
			t.Fatalf("the leader's fenced write: %v", err)
		}
		// Cut just after a renewal: the worst case for the handover.
		waitRenewed(t, dsn, "partition")
		cut := time.Now()
		p.cut()
		waitLeader(t, ttl+renew+time.Second, b)
		took := time.Since(cut)
		t.Logf("handover after the partition took %s", took.Round(time.Millisecond))
		if took > ttl+renew {
			t.Errorf("handover took %s; want within TTL + one renewal (%s)", took, ttl+renew)
		}
		if tr.overlap.Load() {
			t.Fatal("two candidates ran the leader's work at once")
		}
		first.mu.Lock()
		cancelled := append([]time.Time(nil), first.cancelled...)
		first.mu.Unlock()
		b.mu.Lock()
		started := b.started[0]
		prev := b.terms[0].Previous
		b.mu.Unlock()
		if len(cancelled) != 1 {
			t.Fatal("the partitioned leader did not cancel its work")
		}
		if lost := cancelled[0].Sub(cut); lost > ttl {
			t.Errorf("the partitioned leader stopped %s after losing the database, beyond the TTL", lost)
		}
		if !cancelled[0].Before(started) {
			t.Fatalf("the old leader's work must stop before the new one's starts: %v, %v", cancelled, started)
		}
		if prev == nil || prev.Released || prev.Holder != "a" || prev.SinceRenewed < ttl || prev.SinceRenewed > ttl+renew+time.Second {
			t.Errorf("the handover as the database measured it: %+v; want a's lease run out after %s", prev, ttl)
		}
		if a.e.IsLeader() {
			t.Fatal("the partitioned candidate still claims leadership")
		}
		if _, err := a.e.Token(); !errors.Is(err, leader.ErrNotLeader) {
			t.Errorf("the partitioned candidate's token: %v, want ErrNotLeader", err)
		}
		if err := a.e.Guard("aws")(context.Background()); !errors.Is(err, leader.ErrNotLeader) {
			t.Errorf("the partitioned candidate's guard: %v, want ErrNotLeader", err)
		}
		if v := testutil.ToFloat64(collector(t, a.reg, "spillway_leader_fenced_total", map[string]string{"target": "aws"})); v != 1 {
			t.Errorf("spillway_leader_fenced_total{target=aws} = %v, want 1", v)
		}
	})

	t.Run("DeposedLeaderIsRefusedAndStepsDown", func(t *testing.T) {
		// An operator ends a's lease by hand and b takes it at once. a's
		// token is stale from then on: the journal refuses its write (by
		// the database's check if a has not yet noticed, by a's own if its
		// renewal already failed), and a steps down.
		tr := &tracker{}
		a := newCandidate(t, dsn, "deposed", "a", tr)
		waitLeader(t, 10*time.Second, a)
		termA := a.lastTerm().Token
		b := newCandidate(t, dsn, "deposed", "b", tr)
		waitFor(t, 5*time.Second, func() bool { return b.e.Leader() == "a" })
		// Take the lease for b by hand, as the database sees it, without
		// telling a; b's elector takes it on its next attempt.
		conn := connect(t, dsn)
		if _, err := conn.Exec(context.Background(), `UPDATE leader_leases SET expires_at = clock_timestamp() WHERE election = 'deposed'`); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, func() bool { return b.e.IsLeader() })
		// a may not have renewed yet: its own clock still says it leads.
		fencedA := a.db.Fenced("deposed", a.e)
		before := count(t, conn)
		_, err := fencedA.Events().Append(context.Background(), journal.Event{Kind: "test", Message: "a late write"})
		if !errors.Is(err, journal.ErrFenced) {
			t.Fatalf("a write with the deposed term %d: %v; want ErrFenced", termA, err)
		}
		if after := count(t, conn); after != before {
			t.Fatalf("the refused write left %d events", after-before)
		}
		waitFor(t, renew+time.Second, func() bool { return !a.e.IsLeader() && !a.running.Load() })
		if tr.overlap.Load() {
			// b started when the lease was taken by hand, a stopped on the
			// refusal or its next renewal: their work overlapped only
			// because the test took the lease behind a's back.
			t.Log("a and b overlapped because the test expired a's lease by hand")
		}
		if b.lastTerm().Token <= termA {
			t.Errorf("b's term %d is not newer than a's %d", b.lastTerm().Token, termA)
		}
	})
}

// TestFencedJournal checks the fenced journal's write path directly: a
// write carries its token and is kept only in the live term.
func TestFencedJournal(t *testing.T) {
	pg := journaltest.StartPostgres(t)
	dsn := pg.NewDatabase(t)
	db := open(t, dsn)
	ctx := context.Background()
	lease := db.Lease("fence")
	g1, err := lease.Acquire(ctx, "a", time.Minute)
	if err != nil || !g1.Acquired || g1.Term != 1 || g1.Previous != nil {
		t.Fatalf("first acquire: %+v, %v", g1, err)
	}
	g, err := lease.Acquire(ctx, "b", time.Minute)
	if err != nil || g.Acquired || g.Holder != "a" || g.Term != 1 || g.Remaining <= 50*time.Second || g.Remaining > time.Minute {
		t.Fatalf("a second acquire while a holds it: %+v, %v", g, err)
	}
	a := &fixedFence{token: 1}
	evs, err := db.Fenced("fence", a).Events().Append(ctx, journal.Event{Kind: "test", Message: "term 1"})
	if err != nil || evs[0].Term != 1 {
		t.Fatalf("a write in the live term: %+v, %v", evs, err)
	}
	got, err := db.Events().Query(ctx, journal.Filter{Kind: "test"})
	if err != nil || len(got) != 1 || got[0].Term != 1 {
		t.Fatalf("the written event reads back with its term: %+v, %v", got, err)
	}
	ledger := db.Fenced("fence", a).LedgerStore()
	if err := ledger.Append(ctx, ledgerEntry(1)); err != nil {
		t.Fatalf("a ledger write in the live term: %v", err)
	}

	if err := lease.Release(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := lease.Renew(ctx, 1, time.Minute); !errors.Is(err, journal.ErrLeaseLost) {
		t.Fatalf("renewing a released term: %v, want ErrLeaseLost", err)
	}
	g2, err := lease.Acquire(ctx, "b", time.Minute)
	if err != nil || !g2.Acquired || g2.Term != 2 || g2.Previous == nil || g2.Previous.Holder != "a" || !g2.Previous.Released {
		t.Fatalf("acquire after the release: %+v (previous %+v), %v", g2, g2.Previous, err)
	}
	// The stale token is refused, by the database, for events and ledger
	// entries alike, and the fence hears of it.
	if _, err := db.Fenced("fence", a).Events().Append(ctx, journal.Event{Kind: "test", Message: "stale"}); !errors.Is(err, journal.ErrFenced) {
		t.Fatalf("an event with the stale token 1: %v, want ErrFenced", err)
	}
	if err := ledger.Append(ctx, ledgerEntry(2)); !errors.Is(err, journal.ErrFenced) {
		t.Fatalf("a ledger entry with the stale token 1: %v, want ErrFenced", err)
	}
	if a.refused.Load() != 2 {
		t.Errorf("the fence heard of %d refusals, want 2", a.refused.Load())
	}
	got, _ = db.Events().Query(ctx, journal.Filter{Kind: "test"})
	entries, _ := db.LedgerStore().Entries(ctx)
	if len(got) != 1 || len(entries) != 1 {
		t.Fatalf("refused writes were kept: %d events, %d ledger entries", len(got), len(entries))
	}
	// A fence that says it does not act is refused before the database.
	if _, err := db.Fenced("fence", &fixedFence{err: leader.ErrNotLeader}).Events().Append(ctx, journal.Event{Kind: "test", Message: "follower"}); !errors.Is(err, journal.ErrFenced) || !errors.Is(err, leader.ErrNotLeader) {
		t.Fatalf("a write by a follower: %v", err)
	}
	// The live term writes.
	if _, err := db.Fenced("fence", &fixedFence{token: 2}).Events().Append(ctx, journal.Event{Kind: "test", Message: "term 2"}); err != nil {
		t.Fatalf("a write in term 2: %v", err)
	}
	// An expired lease fences its own term's writes too.
	if err := lease.Renew(ctx, 2, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool {
		h, _, err := lease.Holder(ctx)
		return err == nil && h == ""
	})
	if _, err := db.Fenced("fence", &fixedFence{token: 2}).Events().Append(ctx, journal.Event{Kind: "test", Message: "expired"}); !errors.Is(err, journal.ErrFenced) {
		t.Fatalf("a write after the lease ran out: %v, want ErrFenced", err)
	}
}

// TestWaitEndsOnRelease: a follower's wait ends as soon as the holder
// releases, not at its timeout.
func TestWaitEndsOnRelease(t *testing.T) {
	pg := journaltest.StartPostgres(t)
	dsn := pg.NewDatabase(t)
	holder, follower := open(t, dsn).Lease("wait"), open(t, dsn).Lease("wait")
	ctx := context.Background()
	g, err := holder.Acquire(ctx, "a", time.Minute)
	if err != nil || !g.Acquired {
		t.Fatalf("%+v, %v", g, err)
	}
	done := make(chan time.Time, 1)
	listening := make(chan struct{})
	go func() {
		close(listening)
		follower.Wait(ctx, time.Minute)
		done <- time.Now()
	}()
	<-listening
	// Release until the waiter hears one: it may not be listening yet
	// when the first goes out.
	for i := int64(0); ; i++ {
		if i > 0 {
			g, err = holder.Acquire(ctx, "a", time.Minute)
			if err != nil || !g.Acquired {
				t.Fatalf("%+v, %v", g, err)
			}
		}
		released := time.Now()
		if err := holder.Release(ctx, g.Term); err != nil {
			t.Fatal(err)
		}
		select {
		case at := <-done:
			t.Logf("the wait ended %s after the release", at.Sub(released).Round(time.Millisecond))
			return
		case <-time.After(500 * time.Millisecond):
		}
		if i > 20 {
			t.Fatal("the wait did not end on a release")
		}
	}
}

type fixedFence struct {
	token   int64
	err     error
	refused atomic.Int32
}

func (f *fixedFence) Token() (int64, error) { return f.token, f.err }
func (f *fixedFence) Refused(error)         { f.refused.Add(1) }

func ledgerEntry(seq int64) pools.Entry {
	return pools.Entry{Seq: seq, Kind: pools.EntryBorrow, Host: "h", Tier: pools.TierShared, At: time.Now()}
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func count(t *testing.T, conn *pgx.Conn) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM events").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitRenewed returns just after the election's lease was renewed.
func waitRenewed(t *testing.T, dsn, election string) {
	t.Helper()
	conn := connect(t, dsn)
	var last time.Time
	waitFor(t, 5*time.Second, func() bool {
		var at time.Time
		var age float64
		if err := conn.QueryRow(context.Background(), `SELECT renewed_at, EXTRACT(EPOCH FROM clock_timestamp() - renewed_at)::float8
			FROM leader_leases WHERE election = $1`, election).Scan(&at, &age); err != nil {
			t.Fatal(err)
		}
		if !last.IsZero() && !at.Equal(last) && age < 0.05 {
			return true
		}
		last = at
		return false
	})
}

func waitFor(t *testing.T, within time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s", within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func gauge(t *testing.T, reg *prometheus.Registry) prometheus.Collector {
	return collector(t, reg, "spillway_leader", nil)
}

func transitions(t *testing.T, reg *prometheus.Registry, to string) prometheus.Collector {
	return collector(t, reg, "spillway_leader_transitions_total", map[string]string{"to": to})
}

// collector finds a metric in reg as a constant collector for testutil.
func collector(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metrics
				}
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: name}, func() float64 { return v })
		}
	}
	t.Fatalf("no metric %s%v", name, labels)
	return nil
}

// proxy forwards TCP to the database until cut, then refuses and drops
// everything, as a partition would.
type proxy struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
	done  bool
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			d, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			if p.done {
				p.mu.Unlock()
				c.Close()
				d.Close()
				continue
			}
			p.conns = append(p.conns, c, d)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(d, c); d.Close() }()
			go func() { _, _ = io.Copy(c, d); c.Close() }()
		}
	}()
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = true
	p.l.Close()
	for _, c := range p.conns {
		c.Close()
	}
}

// viaProxy is dsn with its host and port replaced by the proxy's.
func viaProxy(t *testing.T, dsn string, p *proxy) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.l.Addr().String()
	q := u.Query()
	q.Set("connect_timeout", "1")
	u.RawQuery = q.Encode()
	return u.String()
}

type testWriter struct {
	t  *testing.T
	id string
}

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Logf("%s: %s", w.id, b)
	return len(b), nil
}

func TestNewChecksOptions(t *testing.T) {
	if _, err := leader.New(leader.Options{}); err == nil {
		t.Error("an elector without a lease must be refused")
	}
	lease := (&journal.Postgres{}).Lease("x")
	if _, err := leader.New(leader.Options{Lease: lease, TTL: 500 * time.Millisecond}); err == nil {
		t.Error("a TTL below the minimum must be refused")
	}
	if _, err := leader.New(leader.Options{Lease: lease, TTL: 10 * time.Second, RenewInterval: 6 * time.Second}); err == nil {
		t.Error("renewing less often than every TTL/2 must be refused")
	}
	reg := prometheus.NewRegistry()
	e, err := leader.New(leader.Options{Lease: lease, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if e.IsLeader() || e.Leader() != "" || e.Identity() == "" || e.TTL() != leader.DefaultTTL {
		t.Fatalf("a new elector: leader=%v holder=%q identity=%q ttl=%s", e.IsLeader(), e.Leader(), e.Identity(), e.TTL())
	}
	if v := testutil.ToFloat64(gauge(t, reg)); v != 0 {
		t.Errorf("spillway_leader = %v before running", v)
	}
	if _, err := e.Token(); !errors.Is(err, leader.ErrNotLeader) {
		t.Errorf("a new elector's token: %v", err)
	}
}

func TestConfigOptions(t *testing.T) {
	c := config.Default().Leader
	o := leader.ConfigOptions(c)
	if o.TTL != 10*time.Second || o.RenewInterval != 0 {
		t.Fatalf("defaults: %+v", o)
	}
	c.RenewInterval = 2 * time.Second
	if o := leader.ConfigOptions(c); o.RenewInterval != 2*time.Second {
		t.Fatalf("leader.renew_interval: %+v", o)
	}
}
