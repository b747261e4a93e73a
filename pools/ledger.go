package pools

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// EntryKind is what a ledger entry records.
type EntryKind string

// Entry kinds.
const (
	// EntryBorrow lends a host to a borrower for a lease.
	EntryBorrow EntryKind = "borrow"
	// EntryExtend renews a borrower's lease.
	EntryExtend EntryKind = "extend"
	// EntryReclaim records that the lender wants the host back: the
	// borrower gets replacement capacity, then returns the host by
	// ReclaimBy. The loan lasts until the return.
	EntryReclaim EntryKind = "reclaim"
	// EntryReturn ends a loan.
	EntryReturn EntryKind = "return"
	// EntryAdopt records a loan Nomad's node meta shows that the ledger
	// never recorded (a lost or younger journal): no quota or share is
	// checked, and the loan is kept until an operator releases it.
	EntryAdopt EntryKind = "adopt"
)

// Reasons a loan ends with, in its return entry and its Usage.
const (
	// ReasonReturned: the borrower gave the host back (scale-in, an
	// operator's release).
	ReasonReturned = "returned"
	// ReasonLeaseExpired: the lease ended and was not extended.
	ReasonLeaseExpired = "lease expired"
	// ReasonReclaimed: the lender reclaimed the host.
	ReasonReclaimed = "reclaimed"
)

// Entry is one change to the ledger, as the store keeps it.
type Entry struct {
	// Seq numbers entries from 1 without gaps; the ledger assigns it.
	Seq  int64     `json:"seq"`
	Kind EntryKind `json:"kind"`
	// Host is the host's identity: the Nomad node ID of an internal host,
	// the instance ID of a cloud host.
	Host     string `json:"host"`
	HostName string `json:"host_name,omitempty"`
	// Tier is TierShared for internal loans; TierWarm and TierCold record
	// rented cloud hosts for chargeback (no quota or share applies).
	Tier Tier   `json:"tier"`
	Pool string `json:"pool"`
	// Lender is the business unit that lent the host, or the cloud pool.
	Lender   string    `json:"lender"`
	Borrower string    `json:"borrower"`
	At       time.Time `json:"at"`
	// Lease is, for borrow and extend, how long the loan lasts from At; for
	// reclaim, the notice the borrower has to return the host.
	Lease  time.Duration `json:"lease,omitempty"`
	Reason string        `json:"reason,omitempty"`
	// Claim is the provider claim the borrow served.
	Claim string `json:"claim,omitempty"`
	// Overcommit marks a borrow allowed beyond the lender's share on purpose.
	Overcommit bool `json:"overcommit,omitempty"`
}

// LedgerStore makes ledger entries durable. Append must not return before
// the entry is durable; the ledger applies an entry only after Append
// succeeded. Entries returns every entry in Seq order. controlplane/journal
// implements it on SQLite; NewMemoryStore is an in-memory one for tests.
type LedgerStore interface {
	Append(ctx context.Context, e Entry) error
	Entries(ctx context.Context) ([]Entry, error)
}

// Limits are the ledger's quota and share limits, by business unit. A
// business unit missing from Quota may not borrow; one missing from LendCap
// may not lend (unless over-committed).
type Limits struct {
	// Quota is the most shared hosts a borrower holds at once.
	Quota map[string]int
	// LendCap is the most hosts a lender has lent at once: its share of its
	// hosts (BusinessUnit.LendCap).
	LendCap map[string]int
	// Overcommit lets a lender go beyond LendCap when a borrow asks for it.
	Overcommit map[string]bool
}

// Ledger errors. Callers test them with errors.Is.
var (
	ErrHostLent      = errors.New("host is already lent")
	ErrNotLent       = errors.New("host is not lent")
	ErrWrongBorrower = errors.New("host is lent to another borrower")
	ErrQuota         = errors.New("borrowing quota exhausted")
	ErrShare         = errors.New("lending share exhausted")
	ErrInvalidEntry  = errors.New("invalid ledger entry")
)

// Loan is a host currently lent (or rented, for cloud tiers).
type Loan struct {
	Host, HostName string
	Tier           Tier
	Pool           string
	Lender         string
	Borrower       string
	Claim          string
	// Since is when the loan began; Until when its lease ends.
	Since, Until time.Time
	Overcommit   bool
	// ReclaimBy is set once the lender reclaimed the host: the borrower
	// must have returned it by then.
	ReclaimBy time.Time
	// Adopted says why the loan was adopted (EntryAdopt): Nomad showed it
	// and the ledger had no record. Scale-in leaves such a host to an
	// operator.
	Adopted string
}

// Reclaiming reports whether the lender reclaimed the host.
func (l Loan) Reclaiming() bool { return !l.ReclaimBy.IsZero() }

// Usage is one loan's span, open (End zero) or closed.
type Usage struct {
	Host, HostName   string
	Tier             Tier
	Pool             string
	Lender, Borrower string
	Start, End       time.Time
	// Until is when the lease ended (or ends); Reason why a closed loan
	// ended (ReasonReturned, ReasonLeaseExpired, ReasonReclaimed, or
	// what a repair said).
	Until  time.Time
	Reason string
}

// Ledger is the lending ledger: who holds which host since when, under
// which lease. All of its invariants are enforced in one place, admit:
//
//   - a host is lent to at most one borrower;
//   - a borrower's shared hosts never exceed its quota;
//   - a lender's lent hosts never exceed its share, unless the borrow is
//     over-committed on purpose and the lender allows it.
//
// Every change is appended to the LedgerStore before it takes effect in
// memory, under one lock, so two concurrent borrows of the same host cannot
// both win. A Ledger is safe for concurrent use.
type Ledger struct {
	mu     sync.Mutex
	store  LedgerStore
	limits Limits
	book   book
}

// book is the ledger's in-memory state, rebuilt from the entries.
type book struct {
	seq     int64
	loans   map[string]*Loan
	usage   []Usage // closed loans, in return order
	entries []Entry
}

// ReplayProblem is an entry in the store that does not fit the entries
// before it (say, a return of a host that was not lent). Replay skips it
// and reports it.
type ReplayProblem struct {
	Entry Entry
	Err   error
}

func (p ReplayProblem) String() string {
	return fmt.Sprintf("entry %d (%s %s): %v", p.Entry.Seq, p.Entry.Kind, p.Entry.Host, p.Err)
}

// NewLedger rebuilds a ledger from every entry in store. Entries that do
// not fit (they break an invariant given the entries before them) are
// skipped and reported, never silently dropped. Quota and share limits are
// not applied to history: they may have changed since.
func NewLedger(ctx context.Context, store LedgerStore, limits Limits) (*Ledger, []ReplayProblem, error) {
	entries, err := store.Entries(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("reading ledger entries: %w", err)
	}
	l := &Ledger{store: store, limits: limits}
	problems := l.replay(entries)
	return l, problems, nil
}

// replay rebuilds the book from entries. The caller holds l.mu or owns l.
func (l *Ledger) replay(entries []Entry) []ReplayProblem {
	l.book = book{loans: map[string]*Loan{}}
	var problems []ReplayProblem
	for _, e := range entries {
		if e.Seq > l.book.seq {
			l.book.seq = e.Seq
		}
		if err := l.book.admit(e, nil); err != nil {
			problems = append(problems, ReplayProblem{Entry: e, Err: err})
			continue
		}
		l.book.apply(e)
	}
	return problems
}

// Reload rebuilds the ledger from its store, for a replica that becomes
// the writer after another one appended entries (its appends would
// otherwise fail with a sequence conflict).
func (l *Ledger) Reload(ctx context.Context) ([]ReplayProblem, error) {
	entries, err := l.store.Entries(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading ledger entries: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.replay(entries), nil
}

// SetLimits replaces the quota and share limits (after a pool reload or a
// change in the business units' host counts). Loans already made stand.
func (l *Ledger) SetLimits(limits Limits) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.limits = limits
}

// BorrowRequest asks to lend Host to Borrower.
type BorrowRequest struct {
	Host, HostName string
	// Tier defaults to TierShared.
	Tier     Tier
	Pool     string
	Lender   string
	Borrower string
	At       time.Time
	Lease    time.Duration
	Reason   string
	Claim    string
	// Overcommit asks to lend beyond the lender's share; it is allowed only
	// when the lender's configuration allows over-commit.
	Overcommit bool
}

// Adopt records a loan Nomad shows that the ledger has no record of (see
// Unrecorded), without quota or share checks. It fails with ErrHostLent
// when the ledger has a loan of the host after all.
func (l *Ledger) Adopt(ctx context.Context, r BorrowRequest) (Loan, error) {
	if r.Tier == "" {
		r.Tier = TierShared
	}
	loan, _, err := l.record(ctx, Entry{Kind: EntryAdopt, Host: r.Host, HostName: r.HostName, Tier: r.Tier, Pool: r.Pool,
		Lender: r.Lender, Borrower: r.Borrower, At: r.At, Lease: r.Lease, Reason: r.Reason, Claim: r.Claim})
	return loan, err
}

// Unrecorded says whether a host Nomad marks lent, of which the ledger
// has no loan, was lent in a loan the ledger never recorded (a lost or
// younger journal), not left marked by a return the ledger did record (a
// crash between the return and the unmarking). Only the latter may be
// finished by draining the host. leaseUntil is the end of the lease its
// node meta shows (zero when unreadable) and lease the pool's lease: a
// mark newer than the host's last recorded return is one the ledger
// never saw. Doubt says unrecorded.
func (l *Ledger) Unrecorded(host string, leaseUntil time.Time, lease time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.book.entries) - 1; i >= 0; i-- {
		e := l.book.entries[i]
		if e.Host != host || e.Kind != EntryReturn {
			continue
		}
		return leaseUntil.IsZero() || leaseUntil.Add(-lease).After(e.At)
	}
	return true
}

// Borrow records a loan. It fails with ErrHostLent, ErrQuota or ErrShare
// (wrapped) when an invariant forbids it, and with the store's error when
// the entry could not be made durable; in both cases nothing changed.
func (l *Ledger) Borrow(ctx context.Context, r BorrowRequest) (Loan, error) {
	if r.Tier == "" {
		r.Tier = TierShared
	}
	e := Entry{Kind: EntryBorrow, Host: r.Host, HostName: r.HostName, Tier: r.Tier, Pool: r.Pool, Lender: r.Lender,
		Borrower: r.Borrower, At: r.At, Lease: r.Lease, Reason: r.Reason, Claim: r.Claim, Overcommit: r.Overcommit}
	loan, _, err := l.record(ctx, e)
	if err != nil {
		return Loan{}, fmt.Errorf("borrowing host %s for %s: %w", r.Host, r.Borrower, err)
	}
	return loan, nil
}

// Extend renews the lease of borrower's loan of host to at+lease.
func (l *Ledger) Extend(ctx context.Context, host, borrower string, at time.Time, lease time.Duration, reason string) (Loan, error) {
	e := Entry{Kind: EntryExtend, Host: host, Borrower: borrower, At: at, Lease: lease, Reason: reason}
	loan, _, err := l.record(ctx, e)
	if err != nil {
		return Loan{}, fmt.Errorf("extending the lease of host %s: %w", host, err)
	}
	return loan, nil
}

// Reclaim records that the lender wants host back: the borrower has notice
// to return it. The loan (and its host-hours) lasts until Return.
func (l *Ledger) Reclaim(ctx context.Context, host string, at time.Time, notice time.Duration, reason string) (Loan, error) {
	e := Entry{Kind: EntryReclaim, Host: host, At: at, Lease: notice, Reason: reason}
	loan, _, err := l.record(ctx, e)
	if err != nil {
		return Loan{}, fmt.Errorf("reclaiming host %s: %w", host, err)
	}
	return loan, nil
}

// Return ends the loan of host and returns its span.
func (l *Ledger) Return(ctx context.Context, host string, at time.Time, reason string) (Usage, error) {
	e := Entry{Kind: EntryReturn, Host: host, At: at, Reason: reason}
	_, u, err := l.record(ctx, e)
	if err != nil {
		return Usage{}, fmt.Errorf("returning host %s: %w", host, err)
	}
	return u, nil
}

// record is the one path every change takes: check the invariants, make
// the entry durable, then apply it. It returns the loan as the entry left
// it, and for a return the loan's span.
func (l *Ledger) record(ctx context.Context, e Entry) (Loan, Usage, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.book.loans[e.Host]; ok && e.Kind != EntryBorrow {
		// Later entries carry the loan's identity, so each entry reads on
		// its own in the journal.
		e.Tier, e.Pool, e.Lender, e.HostName = cur.Tier, cur.Pool, cur.Lender, cur.HostName
		if e.Borrower == "" {
			e.Borrower = cur.Borrower
		}
		if e.Claim == "" {
			e.Claim = cur.Claim
		}
	}
	if err := l.book.admit(e, &l.limits); err != nil {
		return Loan{}, Usage{}, err
	}
	e.Seq = l.book.seq + 1
	if err := l.store.Append(ctx, e); err != nil {
		return Loan{}, Usage{}, fmt.Errorf("making ledger entry durable: %w", err)
	}
	l.book.seq = e.Seq
	l.book.apply(e)
	if e.Kind == EntryReturn {
		return Loan{}, l.book.usage[len(l.book.usage)-1], nil
	}
	return *l.book.loans[e.Host], Usage{}, nil
}

// admit is the one place the ledger's invariants live. It checks that e
// may follow the current state; with limits nil (replaying history) quota
// and share are not checked, everything else is.
func (b *book) admit(e Entry, limits *Limits) error {
	if e.Host == "" || e.At.IsZero() {
		return fmt.Errorf("%w: host and time are required", ErrInvalidEntry)
	}
	cur, lent := b.loans[e.Host]
	switch e.Kind {
	case EntryAdopt:
		if e.Borrower == "" || e.Lender == "" || e.Lease <= 0 || e.Reason == "" {
			return fmt.Errorf("%w: an adoption needs a borrower, a lender, a lease and a reason", ErrInvalidEntry)
		}
		if lent {
			return fmt.Errorf("%w to %s since %s", ErrHostLent, cur.Borrower, cur.Since.UTC().Format(time.RFC3339))
		}
		return nil
	case EntryBorrow:
		if e.Borrower == "" || e.Lender == "" {
			return fmt.Errorf("%w: borrower and lender are required", ErrInvalidEntry)
		}
		if e.Lease <= 0 {
			return fmt.Errorf("%w: lease must be positive", ErrInvalidEntry)
		}
		if lent {
			return fmt.Errorf("%w to %s since %s", ErrHostLent, cur.Borrower, cur.Since.UTC().Format(time.RFC3339))
		}
		if limits == nil || e.Tier != TierShared {
			return nil
		}
		if held, quota := b.count(func(l *Loan) bool { return l.Tier == TierShared && l.Borrower == e.Borrower }), limits.Quota[e.Borrower]; held+1 > quota {
			return fmt.Errorf("%w: %s holds %d of %d", ErrQuota, e.Borrower, held, quota)
		}
		lentOut, share := b.count(func(l *Loan) bool { return l.Tier == TierShared && l.Lender == e.Lender }), limits.LendCap[e.Lender]
		if lentOut+1 > share {
			if !e.Overcommit {
				return fmt.Errorf("%w: %s has lent %d of its share of %d", ErrShare, e.Lender, lentOut, share)
			}
			if !limits.Overcommit[e.Lender] {
				return fmt.Errorf("%w: %s has lent %d of its share of %d and does not allow over-commit", ErrShare, e.Lender, lentOut, share)
			}
		}
		return nil
	case EntryExtend, EntryReclaim, EntryReturn:
		if !lent {
			return ErrNotLent
		}
		if e.Borrower != "" && e.Borrower != cur.Borrower {
			return fmt.Errorf("%w (%s, not %s)", ErrWrongBorrower, cur.Borrower, e.Borrower)
		}
		if e.At.Before(cur.Since) {
			return fmt.Errorf("%w: %s at %s is before the loan began at %s", ErrInvalidEntry, e.Kind, e.At.UTC().Format(time.RFC3339), cur.Since.UTC().Format(time.RFC3339))
		}
		if (e.Kind == EntryExtend || e.Kind == EntryReclaim) && e.Lease <= 0 {
			return fmt.Errorf("%w: %s needs a positive lease or notice", ErrInvalidEntry, e.Kind)
		}
		if e.Kind == EntryExtend && cur.Reclaiming() {
			return fmt.Errorf("%w: the lender reclaimed the host; it cannot be extended", ErrInvalidEntry)
		}
		return nil
	}
	return fmt.Errorf("%w: unknown kind %q", ErrInvalidEntry, e.Kind)
}

// apply changes the state by an admitted entry. It cannot fail.
func (b *book) apply(e Entry) {
	b.entries = append(b.entries, e)
	switch e.Kind {
	case EntryBorrow, EntryAdopt:
		b.loans[e.Host] = &Loan{Host: e.Host, HostName: e.HostName, Tier: e.Tier, Pool: e.Pool, Lender: e.Lender,
			Borrower: e.Borrower, Claim: e.Claim, Since: e.At, Until: e.At.Add(e.Lease), Overcommit: e.Overcommit}
		if e.Kind == EntryAdopt {
			b.loans[e.Host].Adopted = e.Reason
		}
	case EntryExtend:
		b.loans[e.Host].Until = e.At.Add(e.Lease)
	case EntryReclaim:
		// A second reclaim never pushes the deadline back.
		if by := e.At.Add(e.Lease); b.loans[e.Host].ReclaimBy.IsZero() || by.Before(b.loans[e.Host].ReclaimBy) {
			b.loans[e.Host].ReclaimBy = by
		}
	case EntryReturn:
		l := b.loans[e.Host]
		b.usage = append(b.usage, Usage{Host: l.Host, HostName: l.HostName, Tier: l.Tier, Pool: l.Pool, Lender: l.Lender, Borrower: l.Borrower, Start: l.Since, End: e.At,
			Until: l.Until, Reason: e.Reason})
		delete(b.loans, e.Host)
	}
}

func (b *book) count(match func(*Loan) bool) int {
	n := 0
	for _, l := range b.loans {
		if match(l) {
			n++
		}
	}
	return n
}

// Loan returns the current loan of host.
func (l *Ledger) Loan(host string) (Loan, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if loan, ok := l.book.loans[host]; ok {
		return *loan, true
	}
	return Loan{}, false
}

// Loans returns every current loan, by host.
func (l *Ledger) Loans() []Loan {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Loan, 0, len(l.book.loans))
	for _, k := range slices.Sorted(maps.Keys(l.book.loans)) {
		out = append(out, *l.book.loans[k])
	}
	return out
}

// Borrowed is how many shared hosts borrower holds.
func (l *Ledger) Borrowed(borrower string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.book.count(func(x *Loan) bool { return x.Tier == TierShared && x.Borrower == borrower })
}

// Lent is how many hosts lender has lent.
func (l *Ledger) Lent(lender string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.book.count(func(x *Loan) bool { return x.Tier == TierShared && x.Lender == lender })
}

// Expired returns the loans whose lease ended, or whose reclaim notice ran
// out, at or before now.
func (l *Ledger) Expired(now time.Time) []Loan {
	var out []Loan
	for _, loan := range l.Loans() {
		if !now.Before(loan.Until) || (loan.Reclaiming() && !now.Before(loan.ReclaimBy)) {
			out = append(out, loan)
		}
	}
	return out
}

// Entries returns every entry applied, in Seq order.
func (l *Ledger) Entries() []Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.book.entries)
}

// Usage returns every loan's span that overlaps [from, to), closed ones
// and open ones (End zero), in start order.
func (l *Ledger) Usage(from, to time.Time) []Usage {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Usage
	overlaps := func(u Usage) bool {
		return (to.IsZero() || u.Start.Before(to)) && (u.End.IsZero() || u.End.After(from))
	}
	for _, u := range l.book.usage {
		if overlaps(u) {
			out = append(out, u)
		}
	}
	for _, x := range l.book.loans {
		u := Usage{Host: x.Host, HostName: x.HostName, Tier: x.Tier, Pool: x.Pool, Lender: x.Lender, Borrower: x.Borrower, Start: x.Since, Until: x.Until}
		if overlaps(u) {
			out = append(out, u)
		}
	}
	slices.SortStableFunc(out, func(a, b Usage) int { return cmp.Or(a.Start.Compare(b.Start), cmp.Compare(a.Host, b.Host)) })
	return out
}

// Chargeback is host-hours in a time range.
type Chargeback struct {
	From, To   time.Time
	ByBorrower map[string]float64
	ByLender   map[string]float64
	ByTier     map[Tier]float64
	Total      float64
}

// Chargeback adds up host-hours in [from, to) per borrower, per lender and
// per tier. Open loans count until now (or to, whichever is earlier).
func (l *Ledger) Chargeback(from, to, now time.Time) Chargeback {
	if to.IsZero() || to.After(now) {
		to = now
	}
	c := Chargeback{From: from, To: to, ByBorrower: map[string]float64{}, ByLender: map[string]float64{}, ByTier: map[Tier]float64{}}
	for _, u := range l.Usage(from, to) {
		end := u.End
		if end.IsZero() || end.After(to) {
			end = to
		}
		start := u.Start
		if start.Before(from) {
			start = from
		}
		if !end.After(start) {
			continue
		}
		h := end.Sub(start).Hours()
		c.ByBorrower[u.Borrower] += h
		c.ByLender[u.Lender] += h
		c.ByTier[u.Tier] += h
		c.Total += h
	}
	return c
}

// ObservedHost is what Nomad says about a shared-pool host: whether its
// node meta marks it lent, to whom and until when.
type ObservedHost struct {
	Host, Name string
	// LentTo is the spillway.lent_to meta, empty when not lent.
	LentTo string
	// Lease is the spillway.lease meta (RFC 3339), empty when not lent.
	Lease string
	// Lender is the business unit its lender meta names.
	Lender string
}

// Discrepancy is a difference between the ledger and Nomad.
type Discrepancy struct {
	Host, Name string
	// Ledger and Nomad say who holds the host in each ("" for nobody, or
	// "absent" when Nomad does not know the host).
	Ledger, Nomad string
	Msg           string
	// Lender and Lease are what the node meta of a host marked lent
	// without a loan says, for its adoption.
	Lender string
	Lease  string
}

// LentUnrecorded reports a host Nomad marks lent of which the ledger has
// no loan.
func (d Discrepancy) LentUnrecorded() bool {
	return d.Ledger == "" && d.Nomad != "" && d.Nomad != "absent"
}

// Adoption is the loan to record for a host marked lent without a loan
// (LentUnrecorded): to the borrower and from the lender its node meta
// names, until the lease it shows (the pool's lease from now when that is
// unreadable or over).
func (d Discrepancy) Adoption(pool *SharedPool, now time.Time) BorrowRequest {
	lease := pool.Lease
	if until, err := time.Parse(time.RFC3339, d.Lease); err == nil && until.After(now) {
		lease = until.Sub(now)
	}
	if lease <= 0 {
		lease = time.Hour
	}
	lender := cmp.Or(d.Lender, "unknown")
	return BorrowRequest{Host: d.Host, HostName: d.Name, Tier: TierShared, Pool: pool.Name, Lender: lender, Borrower: d.Nomad, At: now, Lease: lease,
		Reason: fmt.Sprintf("node meta marks it lent to %s (lender %s), but the ledger has no record of the loan: the journal was lost or is younger than the loan; kept until an operator releases it (POST /v1/hosts/{id}/release)", d.Nomad, lender)}
}

// MarkedNewer reports a host the ledger lends to one borrower and Nomad's
// meta marks lent to another, in a lease that began after the ledger's
// loan (a younger journal, or a loan made behind its back): re-marking it
// for the ledger's borrower would drain the other's work on doubt, so it
// is left to an operator. lease is the pool's lease length; an
// unreadable lease is doubt too.
func (d Discrepancy) MarkedNewer(loan Loan, lease time.Duration) bool {
	if d.Ledger == "" || d.Nomad == "" || d.Nomad == "absent" {
		return false
	}
	until := d.LeaseUntil()
	return until.IsZero() || until.Add(-lease).After(loan.Since)
}

// LeaseUntil is the lease end the node meta shows, zero when unreadable.
func (d Discrepancy) LeaseUntil() time.Time {
	t, _ := time.Parse(time.RFC3339, d.Lease)
	return t
}

func (d Discrepancy) String() string {
	name := d.Host
	if d.Name != "" {
		name = d.Name + " (" + d.Host + ")"
	}
	return fmt.Sprintf("host %s: %s", name, d.Msg)
}

// Verify compares the shared-tier loans with what Nomad's node meta says
// about the shared-pool hosts and reports every difference: a loan whose
// host is not marked (or is marked for another borrower), a host marked
// lent that the ledger does not know, and a loan of a host Nomad does not
// have. An empty result means they agree.
func (l *Ledger) Verify(observed []ObservedHost) []Discrepancy {
	var out []Discrepancy
	loans := map[string]Loan{}
	for _, loan := range l.Loans() {
		if loan.Tier == TierShared {
			loans[loan.Host] = loan
		}
	}
	seen := map[string]bool{}
	for _, o := range observed {
		seen[o.Host] = true
		loan, ok := loans[o.Host]
		switch {
		case ok && o.LentTo == "":
			out = append(out, Discrepancy{Host: o.Host, Name: o.Name, Ledger: loan.Borrower,
				Msg: fmt.Sprintf("ledger lends it to %s, but its node meta does not mark it lent", loan.Borrower)})
		case ok && o.LentTo != loan.Borrower:
			out = append(out, Discrepancy{Host: o.Host, Name: o.Name, Ledger: loan.Borrower, Nomad: o.LentTo, Lender: o.Lender, Lease: o.Lease,
				Msg: fmt.Sprintf("ledger lends it to %s, but its node meta says %s", loan.Borrower, o.LentTo)})
		case !ok && o.LentTo != "":
			out = append(out, Discrepancy{Host: o.Host, Name: o.Name, Nomad: o.LentTo, Lender: o.Lender, Lease: o.Lease,
				Msg: fmt.Sprintf("node meta marks it lent to %s, but the ledger has no loan", o.LentTo)})
		}
	}
	for _, h := range slices.Sorted(maps.Keys(loans)) {
		if !seen[h] {
			loan := loans[h]
			out = append(out, Discrepancy{Host: h, Name: loan.HostName, Ledger: loan.Borrower, Nomad: "absent",
				Msg: fmt.Sprintf("ledger lends it to %s, but Nomad has no such shared host", loan.Borrower)})
		}
	}
	return out
}

// MemoryStore is an in-memory LedgerStore for tests. FailNext makes the
// next Append fail.
type MemoryStore struct {
	mu       sync.Mutex
	entries  []Entry
	failNext error
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore { return &MemoryStore{} }

// FailNext makes the next Append return err.
func (s *MemoryStore) FailNext(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = err
}

// Append implements LedgerStore.
func (s *MemoryStore) Append(_ context.Context, e Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failNext; err != nil {
		s.failNext = nil
		return err
	}
	if n := len(s.entries); n > 0 && e.Seq != s.entries[n-1].Seq+1 {
		return fmt.Errorf("entry %d does not follow entry %d", e.Seq, s.entries[n-1].Seq)
	}
	s.entries = append(s.entries, e)
	return nil
}

// Entries implements LedgerStore.
func (s *MemoryStore) Entries(context.Context) ([]Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.entries), nil
}
