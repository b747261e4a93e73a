package controller

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/demand"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/policies"
	"github.com/spillwayhq/spillway/pools"
)

// Journal event kinds of the lender's side: leases that end and hosts
// their owners reclaim.
const (
	// KindLeaseExpired: a borrowed host's lease ended; it is given back
	// after its replacement (the intent, journaled before anything moves).
	KindLeaseExpired = "lease.expired"
	// KindLeaseReclaimed: an owner reclaimed a lent host (the ledger's
	// reclaim entry is the durable intent).
	KindLeaseReclaimed = "lease.reclaimed"
	// KindLeaseReplaced: the replacement of an expired or reclaimed host
	// is ready (or could not be had in time); its drain comes next.
	KindLeaseReplaced = "lease.replaced"
	// KindLeaseExtended: an operator extended a lease.
	KindLeaseExtended = "lease.extended"
)

// FailAfterReplacement is after the replacement of an expired or
// reclaimed host is journaled ready, before the host is drained.
const FailAfterReplacement = "after-replacement"

// Errors of reclaims and lease extensions.
var (
	// ErrTooManyHosts: a reclaim asked for more hosts than are lent.
	ErrTooManyHosts = errors.New("more hosts asked than are lent")
	// ErrHostNotLent: a reclaim or an extension named a host that is not
	// lent.
	ErrHostNotLent = errors.New("host is not lent")
	// ErrBadReclaim: a reclaim's request does not make sense.
	ErrBadReclaim = errors.New("invalid reclaim")
)

// Leases is the pass over the borrowed hosts whose lease ended or whose
// owner reclaimed them, every interval: each gets a return task
// (returnLoan), once per host, which asks for replacement capacity for
// the host's allocations before anything is drained, then gives the host
// back through the path scale-in takes. A loan adopted from Nomad's meta
// (Loan.Adopted) is left to an operator when its lease ends (not when
// an operator reclaims it). The ledger's entries are the durable intent:
// after a restart the pass takes the same hosts up again. It returns the
// hosts whose return it started.
func (c *Controller) Leases(ctx context.Context) ([]string, error) {
	if c.cfg.Ledger == nil || c.cfg.Shared == nil {
		return nil, nil
	}
	snap := c.cfg.Cluster.Snapshot()
	if !snap.Live() {
		return nil, nil
	}
	now := c.now()
	var started []string
	for _, l := range c.cfg.Ledger.Loans() {
		if l.Tier != pools.TierShared {
			continue
		}
		if !loanEnding(l, now) {
			continue
		}
		if c.returnTask(ctx, snap, l) {
			started = append(started, l.HostName)
		}
	}
	return started, nil
}

// loanEnding says whether loan ends now: its owner reclaimed it, or its
// lease ended (an adopted loan's is left to an operator).
func loanEnding(loan pools.Loan, now time.Time) bool {
	return endReason(loan, now) != pools.ReasonReturned
}

// endReason is why loan ends now, for its return entry in the ledger.
func endReason(loan pools.Loan, now time.Time) string {
	switch {
	case loan.Reclaiming():
		return pools.ReasonReclaimed
	case !now.Before(loan.Until) && loan.Adopted == "":
		return pools.ReasonLeaseExpired
	}
	return pools.ReasonReturned
}

// returnTask starts returnLoan as a task beside the loop, unless the
// host is given back already; it reports whether it started.
func (c *Controller) returnTask(ctx context.Context, snap *cluster.Snapshot, loan pools.Loan) bool {
	c.mu.Lock()
	if _, busy := c.lending[loan.Host]; busy || c.returning(loan.Host) {
		c.mu.Unlock()
		return false
	}
	act := journal.NewActivity(c.now())
	c.lending[loan.Host] = act
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() {
			c.mu.Lock()
			delete(c.lending, loan.Host)
			c.mu.Unlock()
		}()
		if err := c.returnLoan(ctx, snap, act, loan); err != nil && ctx.Err() == nil {
			c.cfg.Logger.Warn("giving back an expired or reclaimed host; trying again next pass", "host", loan.HostName, "err", err)
		}
	}()
	return true
}

// hostWork is what a host runs that must move: its allocations, by task
// group (by; targets most first, names theirs), and the largest size
// among them.
type hostWork struct {
	allocs  int
	by      map[policies.Target]int
	targets []policies.Target
	names   []string
	per     demand.Size
}

// placedOn is what node runs or is starting of the allocations keep
// takes.
func placedOn(s *cluster.Snapshot, node string, keep func(*cluster.Alloc) bool) hostWork {
	w := hostWork{by: map[policies.Target]int{}}
	for _, a := range s.AllocsOnNode(node) {
		if a.DesiredStatus != "run" || (a.ClientStatus != "running" && a.ClientStatus != "pending") || !keep(a) {
			continue
		}
		w.allocs++
		w.by[a.Target()]++
		w.per.CPUMHz, w.per.MemoryMB = max(w.per.CPUMHz, int(a.CPU)), max(w.per.MemoryMB, int(a.MemoryMB))
	}
	w.targets = slices.SortedFunc(maps.Keys(w.by), func(a, b policies.Target) int {
		return cmp.Or(cmp.Compare(w.by[b], w.by[a]), cmp.Compare(a.String(), b.String()))
	})
	w.names = make([]string, 0, len(w.targets))
	for _, t := range w.targets {
		w.names = append(w.names, t.String())
	}
	return w
}

// workOnHost is what a lent host runs that moves when it is given back:
// all but system and sysbatch allocations.
func workOnHost(s *cluster.Snapshot, node string) hostWork {
	return placedOn(s, node, func(a *cluster.Alloc) bool { return a.JobType != "system" && a.JobType != "sysbatch" })
}

// returnLoan gives back a borrowed host whose lease ended or whose owner
// reclaimed it, replacement first:
//   - the intent is journaled (lease.expired; a reclaim journaled its
//     own when it was asked);
//   - when the host's allocations do not fit on the borrower's other
//     hosts, a scale-out for them (their count and size) runs as its own
//     activity, with its own deadline, until the replacement is a ready
//     node; for a reclaim it waits no later than the reclaim deadline
//     less the drain, and what it could not get is journaled as
//     capacity.unmet with reason "reclaimed" (the owner's right comes
//     first);
//   - lease.replaced is journaled, then the surge (surgeLoan): the host
//     is made ineligible and each service group it runs gets its count
//     raised by what it runs there (lease.surged), until that many more
//     of its allocations are healthy, within a reclaim's deadline less
//     the drain (lease.surge_unmet says what went without);
//   - the host is drained and given back (giveBack: intent.return,
//     capacity.returned), and the ledger closes the loan with its reason:
//     Nomad stops each allocation the drain moves before its replacement
//     is healthy, and the surge's extra ones keep the group at or above
//     its healthy count before;
//   - once no allocation of a surged group is still starting, its count
//     is lowered by the surge from what it is now (lease.surge_ended);
//   - the activity follows the moved allocations until they are healthy.
//
// After a restart the pass takes the host up again: a replacement
// journaled ready (lease.replaced) is not asked for twice, nor a surge
// journaled (lease.surged) raised twice; a surge whose host was given
// back before the restart is ended by resumeSurges.
func (c *Controller) returnLoan(ctx context.Context, snap *cluster.Snapshot, act string, loan pools.Loan) error {
	now := c.now()
	bu := loan.Borrower
	reclaim := loan.Reclaiming()
	work := workOnHost(snap, loan.Host)
	fits := true
	if work.allocs > 0 {
		view := c.serving(snap, snap.NodeUsageShared(), bu, []candidate{{loan: loan, node: loan.Host}})
		fits = view.fitsElsewhere(loan.Host)
	}
	data, _ := json.Marshal(map[string]any{"host": loan.HostName, "node": loan.Host, "pool": loan.Pool, "borrower": bu, "lender": loan.Lender,
		"until": loan.Until, "reclaim_by": loan.ReclaimBy, "allocations": work.allocs, "groups": work.names})
	if !reclaim {
		msg := fmt.Sprintf("the lease of %s (lent by %s to %s) ended at %s", loan.HostName, loan.Lender, bu, loan.Until.UTC().Format(time.RFC3339))
		switch {
		case work.allocs == 0:
			msg += "; it runs no allocation: giving it back"
		case fits:
			msg += fmt.Sprintf("; its %d allocations fit on %s's other hosts: draining it and giving it back", work.allocs, bu)
		default:
			msg += fmt.Sprintf("; replacing its %d allocations (%s) first, then draining it and giving it back", work.allocs, strings.Join(work.names, ", "))
		}
		if _, err := c.cfg.Journal.Append(ctx, journal.Event{Time: now, Kind: KindLeaseExpired, Subject: "host/" + loan.Host, Actor: "controller",
			Activity: act, Data: data, Message: msg}); err != nil {
			return fmt.Errorf("journaling the end of the lease of %s: %w", loan.HostName, err)
		}
	}
	untrack := c.track(act, "the return of "+loan.HostName, bu)
	defer untrack()
	c.concern(act, loan.Pool, loan.Host)

	var a *activity
	switch prev, replaced := c.replacedAlready(ctx, loan); {
	case replaced:
		c.cfg.Logger.Info("the replacement of a returning host was journaled before a restart: draining it", "host", loan.HostName, "activity", prev)
		if prev != "" && work.allocs > 0 {
			// The activity that replaced it follows the moved allocations
			// and ends, as it would have without the restart.
			a = c.resumedReplacement(prev, loan, work)
		}
	case work.allocs == 0 || fits:
		c.record(ctx, journal.Event{Time: c.now(), Kind: KindLeaseReplaced, Subject: "host/" + loan.Host, Actor: "controller", Activity: act, Data: data,
			Message: fmt.Sprintf("%s needs no replacement before its drain", loan.HostName)})
	default:
		a = c.replaceLoan(ctx, snap, act, loan, work)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	c.failpoint(FailAfterReplacement)
	if ctx.Err() != nil {
		return ctx.Err() // the term ended: the next takes the host up again
	}
	// The drain: within what is left of a reclaim's notice.
	if cur, ok := c.cfg.Ledger.Loan(loan.Host); ok {
		loan = cur
	} else {
		return nil // returned meanwhile
	}
	why := "its lease ended"
	if loan.Reclaiming() {
		why = "its owner " + loan.Lender + " reclaimed it"
	}
	// The surge: each group the host serves has that many more healthy
	// allocations before the drain moves them.
	surges := c.surgeLoan(ctx, loan, act, c.surgeBy(loan))
	if ctx.Err() != nil {
		return ctx.Err() // the next term takes the surges up
	}
	c.failpoint(FailAfterSurge)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := c.giveBackWithin(ctx, loan, loan.Host, work.allocs, "controller", why, act, c.returnDeadline(loan)); err != nil {
		return err
	}
	c.failpoint(FailAfterGiveBack)
	if ctx.Err() != nil {
		return ctx.Err() // resumeSurges ends the surges
	}
	c.endSurges(ctx, surges)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if a != nil && a.tl.begun() {
		return c.place(ctx, a, c.now().Add(settleTime))
	}
	return nil
}

// returnDeadline is the drain deadline of a lent host's return: the
// pool's drain deadline, within what is left of a reclaim's notice.
func (c *Controller) returnDeadline(loan pools.Loan) time.Duration {
	d := c.drainDeadline()
	if loan.Reclaiming() {
		d = max(min(d, loan.ReclaimBy.Sub(c.now())), time.Second)
	}
	return d
}

// replacedAlready says whether the replacement of loan's host was
// journaled ready in this loan (a restart between it and the drain), and
// in which activity.
func (c *Controller) replacedAlready(ctx context.Context, loan pools.Loan) (string, bool) {
	found, act := false, ""
	_ = journal.Each(ctx, c.cfg.Journal, journal.Filter{Kind: KindLeaseReplaced, Since: loan.Since}, func(ev journal.Event) error {
		var d struct{ Node string }
		if json.Unmarshal(ev.Data, &d) == nil && d.Node == loan.Host {
			found, act = true, ev.Activity
		}
		return nil
	})
	return act, found
}

// resumedReplacement is the activity act of a replacement a restart
// interrupted after it was ready: its phases so far are journaled.
func (c *Controller) resumedReplacement(act string, loan pools.Loan, work hostWork) *activity {
	deadline := c.now().Add(c.scaleOutDeadline(loan.Borrower))
	r := Request{Activity: act, Target: work.targets[0], BusinessUnit: loan.Borrower, Triggered: c.now(), Decided: c.now(), Deadline: deadline,
		resumed: true, replaces: loan.Host}
	return &activity{c: c, tl: &timeline{c: c, r: r, pool: "none"}, d: demand.Demand{Target: r.Target, Queued: work.allocs, PerAllocation: work.per},
		exclude: map[string]string{}, replacing: true}
}

// replaceLoan runs the scale-out that replaces the allocations of
// loan's host (activity act), until the replacement is ready or, for a
// reclaim, the reclaim deadline less the drain has come. It journals
// lease.replaced and returns the activity, for the caller to follow
// the allocations once the host is drained.
func (c *Controller) replaceLoan(ctx context.Context, snap *cluster.Snapshot, act string, loan pools.Loan, work hostWork) *activity {
	now := c.now()
	bu := loan.Borrower
	main := work.targets[0]
	deadline := now.Add(c.scaleOutDeadline(bu))
	wait := ctx
	var by time.Time
	if loan.Reclaiming() {
		// The owner's right: the drain starts by then whatever the
		// replacement did.
		by = loan.ReclaimBy.Add(-c.drainDeadline())
		if by.Before(deadline) {
			deadline = by
		}
		w, cancel := context.WithCancel(ctx)
		defer cancel()
		t := c.cfg.Clock.AfterFunc(max(by.Sub(now), 0), cancel)
		defer t.Stop()
		wait = w
	}
	cause := "the lease of " + loan.HostName + " ended"
	if loan.Reclaiming() {
		cause = loan.Lender + " reclaimed " + loan.HostName
	}
	r := Request{Activity: act, Target: main, BusinessUnit: bu, Triggered: now, Decided: now, Deadline: deadline,
		cause: cause, decision: "replacing " + loan.HostName + " before its drain", replaces: loan.Host}
	release, _ := c.holdTarget(main, act)
	defer release()
	tl := &timeline{c: c, r: r, pool: "none"}
	tl.begin(ctx)
	a := &activity{c: c, tl: tl, d: demand.Demand{Target: main, Queued: work.allocs, PerAllocation: work.per}, exclude: map[string]string{}, replacing: true}
	rdata, _ := json.Marshal(map[string]any{"replaces": loan.HostName, "node": loan.Host, "allocations": work.allocs, "groups": work.names})
	c.record(ctx, journal.Event{Time: now, Kind: KindReplacing, Subject: main.String(), Activity: act, Actor: "controller", Data: rdata,
		Message: fmt.Sprintf("finding hosts for the %d allocations of %s (%s) before it is drained: %s", work.allocs, loan.HostName, strings.Join(work.names, ", "), cause)})
	met, err := a.run(wait, snap)
	if ctx.Err() != nil {
		// The term ended, not the wait: the next term asks again.
		return a
	}
	state := "ready"
	if err != nil || !met {
		state = "not ready"
		if loan.Reclaiming() {
			why := fmt.Sprintf("no replacement for the %d allocations of %s was ready by %s, the reclaim deadline less the drain: the owner's reclaim goes ahead",
				work.allocs, loan.HostName, by.UTC().Format(time.RFC3339))
			udata, _ := json.Marshal(map[string]any{"queued": work.allocs, "reason": pools.ReasonReclaimed, "reasons": why, "host": loan.HostName, "node": loan.Host})
			c.unmetC.Inc()
			c.record(ctx, journal.Event{Time: c.now(), Kind: KindUnmet, Subject: main.String(), Activity: act, Actor: "controller", Data: udata,
				Message: fmt.Sprintf("%d allocations of %s have no replacement host (reclaimed): %s", work.allocs, main, why)})
		}
	}
	data, _ := json.Marshal(map[string]any{"host": loan.HostName, "node": loan.Host, "pool": loan.Pool, "borrower": bu, "met": err == nil && met})
	c.record(ctx, journal.Event{Time: c.now(), Kind: KindLeaseReplaced, Subject: "host/" + loan.Host, Actor: "controller", Activity: act, Data: data,
		Message: fmt.Sprintf("the replacement of %s is %s: draining it next", loan.HostName, state)})
	return a
}

// ReclaimRequest is an owner's reclaim of lent hosts of a shared pool:
// Count hosts (chosen in reclaim order) or the Hosts named, by Deadline
// (the pool's reclaim notice when zero).
type ReclaimRequest struct {
	Pool     string
	Count    int
	Hosts    []string
	Lender   string
	Reason   string
	Deadline time.Duration
	Actor    string
}

// Reclaim records an owner's reclaim of lent hosts: each in the ledger
// (its reclaim entry, the durable intent) and the journal
// (lease.reclaimed); the Leases pass replaces, drains and returns them.
// Asked by count, hosts come back in reclaim order (reclaimOrder). It
// fails with ErrUnknownPool, ErrBadReclaim, ErrTooManyHosts (saying how
// many are lent) and ErrHostNotLent (saying who holds the host).
func (c *Controller) Reclaim(ctx context.Context, req ReclaimRequest) ([]pools.Loan, error) {
	sp := c.cfg.Pools.Shared
	if c.cfg.Ledger == nil || sp == nil || sp.Name != req.Pool {
		return nil, fmt.Errorf("%w %q (only the shared pool lends hosts)", ErrUnknownPool, req.Pool)
	}
	if (req.Count > 0) == (len(req.Hosts) > 0) || req.Count < 0 {
		return nil, fmt.Errorf("%w: give a count or a list of hosts, not both", ErrBadReclaim)
	}
	if req.Deadline < 0 {
		return nil, fmt.Errorf("%w: the deadline must be positive", ErrBadReclaim)
	}
	if req.Deadline == 0 {
		req.Deadline = sp.ReclaimNotice
	}
	snap := c.cfg.Cluster.Snapshot()
	var lent []pools.Loan
	for _, l := range c.cfg.Ledger.Loans() {
		if l.Tier == pools.TierShared && l.Pool == sp.Name && (req.Lender == "" || l.Lender == req.Lender) {
			lent = append(lent, l)
		}
	}
	var chosen []pools.Loan
	if req.Count > 0 {
		open := slices.DeleteFunc(slices.Clone(lent), func(l pools.Loan) bool { return l.Reclaiming() })
		if req.Count > len(open) {
			of := ""
			if req.Lender != "" {
				of = " by " + req.Lender
			}
			return nil, fmt.Errorf("%w: %d asked, %d %s lent%s from %s (%d more being reclaimed already)", ErrTooManyHosts, req.Count, len(open),
				plural(len(open), "host is", "hosts are"), of, sp.Name, len(lent)-len(open))
		}
		c.reclaimOrder(snap, open)
		chosen = open[:req.Count]
	} else {
		for _, h := range req.Hosts {
			i := slices.IndexFunc(lent, func(l pools.Loan) bool { return l.Host == h || l.HostName == h })
			if i < 0 {
				return nil, fmt.Errorf("%w: %s", ErrHostNotLent, c.holder(snap, h))
			}
			chosen = append(chosen, lent[i])
		}
	}
	now := c.now()
	var out []pools.Loan
	for _, l := range chosen {
		loan, err := c.cfg.Ledger.Reclaim(ctx, l.Host, now, req.Deadline, req.Reason)
		if err != nil {
			return out, err
		}
		data, _ := json.Marshal(map[string]any{"host": loan.HostName, "node": loan.Host, "pool": loan.Pool, "borrower": loan.Borrower, "lender": loan.Lender,
			"reclaim_by": loan.ReclaimBy, "reason": req.Reason})
		c.record(ctx, journal.Event{Time: now, Kind: KindLeaseReclaimed, Subject: "host/" + loan.Host, Actor: req.Actor, Data: data,
			Message: fmt.Sprintf("%s reclaimed %s from %s for %s, back by %s: %s; replacement first, then the drain", req.Actor, loan.HostName, loan.Borrower,
				loan.Lender, loan.ReclaimBy.UTC().Format(time.RFC3339), req.Reason)})
		out = append(out, loan)
	}
	return out, nil
}

// reclaimOrder sorts the loans a reclaim by count chooses from: the
// borrower with the lowest priority (BusinessUnit.Priority) first, then
// the host running the fewest allocations, then the youngest loan.
func (c *Controller) reclaimOrder(snap *cluster.Snapshot, loans []pools.Loan) {
	prio := func(bu string) int {
		if u, ok := c.cfg.Pools.BusinessUnit(bu); ok {
			return u.Priority
		}
		return pools.DefaultPriority
	}
	allocs := make(map[string]int, len(loans))
	for _, l := range loans {
		allocs[l.Host] = workOnHost(snap, l.Host).allocs
	}
	slices.SortStableFunc(loans, func(a, b pools.Loan) int {
		return cmp.Or(cmp.Compare(prio(a.Borrower), prio(b.Borrower)), cmp.Compare(allocs[a.Host], allocs[b.Host]),
			b.Since.Compare(a.Since), cmp.Compare(a.Host, b.Host))
	})
}

// holder says who holds host, which is not lent.
func (c *Controller) holder(snap *cluster.Snapshot, host string) string {
	for _, n := range snap.NodeUsageShared() {
		if n.ID != host && n.Name != host {
			continue
		}
		owner := n.Meta[pools.MetaBusinessUnit]
		if sp := c.cfg.Pools.Shared; sp != nil && sp.LenderMeta != "" && n.Meta[sp.LenderMeta] != "" {
			owner = n.Meta[sp.LenderMeta]
		}
		for _, u := range c.cfg.Pools.BusinessUnits {
			if owner == "" && u.Selector.Matches(n.NodePool, n.NodeClass, n.Meta) {
				owner = u.Name
			}
		}
		if owner == "" {
			owner = "no business unit Spillway knows"
		}
		if l, ok := c.cfg.Ledger.Loan(n.ID); ok {
			return fmt.Sprintf("%s is rented by %s from %s, not lent by a business unit", host, l.Borrower, l.Pool)
		}
		return fmt.Sprintf("%s is not lent: its owner %s holds it", host, owner)
	}
	return fmt.Sprintf("%s is not lent: Nomad has no such node", host)
}

// ExtendLease extends the lease of a lent host by lease from now (the
// pool's lease when zero), at an operator's request: the ledger records
// it, the node's lease meta follows, and the journal says who and why
// (lease.extended). A host its owner reclaimed cannot be extended.
func (c *Controller) ExtendLease(ctx context.Context, host string, lease time.Duration, actor, reason string) (pools.Loan, error) {
	sp := c.cfg.Pools.Shared
	if c.cfg.Ledger == nil || sp == nil {
		return pools.Loan{}, ErrNoPools
	}
	if lease <= 0 {
		lease = sp.Lease
	}
	var found *pools.Loan
	for _, l := range c.cfg.Ledger.Loans() {
		if l.Tier == pools.TierShared && (l.Host == host || l.HostName == host) {
			found = &l
			break
		}
	}
	if found == nil {
		return pools.Loan{}, fmt.Errorf("%w: %s", ErrHostNotLent, c.holder(c.cfg.Cluster.Snapshot(), host))
	}
	loan, err := c.cfg.Ledger.Extend(ctx, found.Host, "", c.now(), lease, reason)
	if err != nil {
		return loan, err
	}
	until := loan.Until.UTC().Format(time.RFC3339)
	if err := c.cfg.Orchestrator.SetNodeMeta(ctx, loan.Host, map[string]*string{pools.MetaLease: &until}); err != nil {
		c.cfg.Logger.Warn("updating a lent node's lease meta", "host", loan.HostName, "err", err)
	}
	data, _ := json.Marshal(map[string]any{"host": loan.HostName, "node": loan.Host, "borrower": loan.Borrower, "lender": loan.Lender,
		"until": loan.Until, "reason": reason})
	c.record(ctx, journal.Event{Time: c.now(), Kind: KindLeaseExtended, Subject: "host/" + loan.Host, Actor: actor, Data: data,
		Message: fmt.Sprintf("%s extended the lease of %s (lent by %s to %s) until %s: %s", actor, loan.HostName, loan.Lender, loan.Borrower, until, reason)})
	return loan, nil
}
