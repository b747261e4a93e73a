package controller

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/policies"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/bootstrap"
)

// Journal event kinds of the reconciler.
const (
	KindDiscrepancy = "reconcile.discrepancy"
	KindRepaired    = "reconcile.repaired"
	KindRepairFail  = "reconcile.failed"
	KindLoanAdopted = "reconcile.adopted_loan"
)

// Reconcile compares the lending ledger (the record of truth: every change
// reaches it before Nomad) with Nomad's node meta, and repairs what a crash
// or a hand edit left half done: a loan whose node is not marked is marked
// again, a node left marked by a return the ledger recorded is drained and
// unmarked, a loan of a node Nomad no longer has is closed. A node marked
// lent in a loan the ledger never recorded (a lost or younger journal) is
// not drained: the loan is adopted (adoptLoan). Each difference and each
// repair is journaled. It returns how many differences it found.
func (c *Controller) Reconcile(ctx context.Context) (int, error) {
	if c.cfg.Shared == nil {
		return 0, nil
	}
	ds, err := c.cfg.Shared.Verify(ctx)
	if err != nil {
		return 0, fmt.Errorf("comparing the ledger with nomad: %w", err)
	}
	if len(ds) == 0 {
		return 0, nil
	}
	now := c.now()
	var repair []pools.Discrepancy
	for _, d := range ds {
		data, _ := json.Marshal(d)
		c.record(ctx, journal.Event{Time: now, Kind: KindDiscrepancy, Subject: "host/" + d.Host, Actor: "controller", Data: data,
			Message: "the ledger and nomad disagree: " + d.String()})
		if d.LentUnrecorded() && c.cfg.Pools.Shared != nil && c.cfg.Ledger.Unrecorded(d.Host, d.LeaseUntil(), c.cfg.Pools.Shared.Lease) {
			c.adoptLoan(ctx, d)
			continue
		}
		if loan, ok := c.cfg.Ledger.Loan(d.Host); ok && c.cfg.Pools.Shared != nil && d.MarkedNewer(loan, c.cfg.Pools.Shared.Lease) {
			// Journaled above as a discrepancy, every pass until an
			// operator releases the host or fixes its meta.
			continue
		}
		repair = append(repair, d)
	}
	if len(repair) == 0 {
		return len(ds), nil
	}
	if err := c.cfg.Shared.Repair(ctx, repair); err != nil {
		c.fixes.WithLabelValues("failed").Add(1)
		c.record(ctx, journal.Event{Time: c.now(), Kind: KindRepairFail, Actor: "controller",
			Message: fmt.Sprintf("repairing %d differences failed: %v", len(ds), err)})
		return len(ds), fmt.Errorf("repairing: %w", err)
	}
	c.fixes.WithLabelValues("repaired").Add(float64(len(repair)))
	c.record(ctx, journal.Event{Time: c.now(), Kind: KindRepaired, Actor: "controller",
		Message: fmt.Sprintf("repaired %d differences between the ledger and nomad", len(repair))})
	return len(ds), nil
}

// adoptLoan records in the ledger a loan Nomad's node meta shows and the
// ledger never recorded (a lost or younger journal): the host keeps
// serving its borrower and is not drained on that doubt; an operator
// releases it. The adoption is journaled (reconcile.adopted_loan).
func (c *Controller) adoptLoan(ctx context.Context, d pools.Discrepancy) {
	r := d.Adoption(c.cfg.Pools.Shared, c.now())
	loan, err := c.cfg.Ledger.Adopt(ctx, r)
	if errors.Is(err, pools.ErrHostLent) {
		return // recorded since
	}
	if err != nil {
		c.fixes.WithLabelValues("failed").Inc()
		c.record(ctx, journal.Event{Time: c.now(), Kind: KindRepairFail, Subject: "host/" + d.Host, Actor: "controller",
			Message: fmt.Sprintf("adopting the unrecorded loan of %s failed: %v", d, err)})
		return
	}
	c.fixes.WithLabelValues("adopted").Inc()
	data, _ := json.Marshal(map[string]any{"host": loan.Host, "host_name": loan.HostName, "borrower": loan.Borrower, "lender": loan.Lender,
		"until": loan.Until, "pool": loan.Pool})
	c.record(ctx, journal.Event{Time: c.now(), Kind: KindLoanAdopted, Subject: "host/" + d.Host, Actor: "controller", Data: data,
		Message: fmt.Sprintf("adopted %s: %s", cmp.Or(d.Name, d.Host), r.Reason)})
}

// ReconcileClouds compares each cloud pool's instances (found through the
// ownership tags) with the ledger, the journal and Nomad, and finishes or
// rolls back what a crash left half done:
//   - an instance whose claim is journaled but which the ledger lacks (a
//     crash after the cloud call) is adopted into the ledger (an instance
//     no journaled claim names is the collector's, gc.go);
//   - a ledger entry whose instance is gone is closed;
//   - a rented node that lost spillway.serves gets it back;
//   - a host whose return was journaled but not finished (a crash during
//     a drain) is drained and given back, borrowed hosts included; not
//     one a give-back task of this term drains now (giveBackTask).
//
// Each fix is journaled. It returns how many it made.
func (c *Controller) ReconcileClouds(ctx context.Context) (int, error) {
	if c.cfg.Ledger == nil {
		return 0, nil
	}
	claims, err := c.journaledClaims(ctx)
	if err != nil {
		return 0, err
	}
	returns, err := c.pendingReturns(ctx)
	if err != nil {
		return 0, err
	}
	snap := c.cfg.Cluster.Snapshot()
	if !snap.Live() {
		return 0, fmt.Errorf("the cluster model is not following nomad (%s): reconciling later", snap.Sync().Err)
	}
	nodeOf := snap.UsageBy(bootstrap.MetaInstance)
	now := c.now()
	fixes := 0
	fixed := func(kind, subject, msg string, data any) {
		fixes++
		c.fixes.WithLabelValues("repaired").Inc()
		b, _ := json.Marshal(data)
		c.record(ctx, journal.Event{Time: c.now(), Kind: kind, Subject: subject, Actor: "reconciler", Data: b, Message: msg})
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(c.cfg.Clouds)) {
		p := c.cfg.Clouds[name]
		hosts, err := p.List(ctx, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing the hosts of %s: %w", name, err))
			continue
		}
		live := map[string]bool{}
		for _, h := range hosts {
			live[h.ID] = true
			loan, ok := c.cfg.Ledger.Loan(h.ID)
			if !ok {
				if cl, known := claims[h.Claim]; known {
					if err := c.recordRental(ctx, h, cl.tier, cl.borrower, h.Claim, "adopted: launched for a journaled claim before a restart"); err != nil {
						errs = append(errs, err)
						continue
					}
					fixed(KindAdopted, "host/"+h.ID, fmt.Sprintf("adopted %s of %s: claim %s was journaled for %s, the ledger lacked the host", h.ID, name, h.Claim, cl.borrower),
						map[string]any{"host": h.ID, "pool": name, "claim": h.Claim, "borrower": cl.borrower})
					continue
				}
				continue // an orphan: the collector's (gc.go)
			}
			n, registered := nodeOf[h.ID]
			if registered && n.Ready && n.Meta[pools.MetaServes] != loan.Borrower {
				c.markServes(ctx, n, loan.Borrower)
				fixed(KindRepaired, "host/"+h.ID, fmt.Sprintf("node %s of rented host %s serves %s again", n.Name, h.ID, loan.Borrower),
					map[string]any{"host": h.ID, "node": n.ID, "borrower": loan.Borrower})
			}
			if returns[h.ID] && c.giveBackTask(ctx, loan, n.ID, n.Allocs, "reconciler", "finishing a scale-in a restart interrupted") {
				fixes++
			}
		}
		for _, l := range c.cfg.Ledger.Loans() {
			if l.Pool != name || l.Tier == pools.TierShared || live[l.Host] || now.Sub(l.Since) < time.Minute {
				continue
			}
			if _, err := p.Get(ctx, l.Host); !providers.IsNotFound(err) {
				continue // listed late, or the cloud did not answer: look again next time
			}
			if _, err := c.cfg.Ledger.Return(ctx, l.Host, now, "the instance is gone"); err != nil && !errors.Is(err, pools.ErrNotLent) {
				errs = append(errs, err)
				continue
			}
			fixed(KindRepaired, "host/"+l.Host, fmt.Sprintf("closed the ledger entry of %s of %s: the instance is gone", l.Host, name),
				map[string]any{"host": l.Host, "pool": name, "borrower": l.Borrower})
		}
	}
	if c.cfg.Shared != nil {
		for _, l := range c.cfg.Ledger.Loans() {
			if l.Tier == pools.TierShared && returns[l.Host] && c.giveBackTask(ctx, l, l.Host, 0, "reconciler", "finishing a return a restart interrupted") {
				fixes++
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		c.fixes.WithLabelValues("failed").Inc()
		return fixes, err
	}
	return fixes, nil
}

// journaledClaim is what an intent said about a claim.
type journaledClaim struct {
	borrower string
	tier     pools.Tier
}

// journaledClaims reads the claims journaled in the last week.
func (c *Controller) journaledClaims(ctx context.Context) (map[string]journaledClaim, error) {
	out := map[string]journaledClaim{}
	err := journal.Each(ctx, c.cfg.Journal, journal.Filter{Kind: KindIntent, Since: c.now().Add(-7 * 24 * time.Hour)}, func(ev journal.Event) error {
		var d struct {
			Claim, Borrower string
			Tier            pools.Tier
		}
		if json.Unmarshal(ev.Data, &d) == nil && d.Claim != "" {
			out[d.Claim] = journaledClaim{borrower: d.Borrower, tier: d.Tier}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading journaled claims: %w", err)
	}
	return out, nil
}

// pendingReturns reads the hosts (instance IDs, or node IDs of borrowed
// hosts) whose return was journaled in the last day and not finished.
func (c *Controller) pendingReturns(ctx context.Context) (map[string]bool, error) {
	type mark struct {
		seq     int64
		host    string
		pending bool
	}
	var marks []mark
	for _, kind := range []string{KindIntentReturn, KindReturned} {
		err := journal.Each(ctx, c.cfg.Journal, journal.Filter{Kind: kind, Since: c.now().Add(-24 * time.Hour)}, func(ev journal.Event) error {
			var d struct{ Instance, Node string }
			if json.Unmarshal(ev.Data, &d) == nil {
				if d.Instance == "" {
					d.Instance = d.Node
				}
				if d.Instance != "" {
					marks = append(marks, mark{ev.Seq, d.Instance, ev.Kind == KindIntentReturn})
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("reading journaled returns: %w", err)
		}
	}
	slices.SortFunc(marks, func(a, b mark) int { return cmp.Compare(a.seq, b.seq) })
	out := map[string]bool{}
	for _, m := range marks {
		out[m.host] = m.pending
	}
	return out, nil
}

// Resume takes over the scale-outs a previous term or process left
// unfinished: each activity whose trigger is journaled, that has not
// ended, and whose deadline plus Config.ActivityGrace (how long ScaleOut
// asks past it) has not passed, is started again. Claims are not repeated: the hosts rented
// before are in the ledger (or adopted by ReconcileClouds) and followed.
func (c *Controller) Resume(ctx context.Context) (int, error) {
	now := c.now()
	type started struct {
		r  Request
		ok bool
	}
	acts := map[string]*started{}
	var order []string
	err := journal.Each(ctx, c.cfg.Journal, journal.Filter{Kind: "activity", Since: now.Add(-time.Hour)}, func(ev journal.Event) error {
		switch ev.Kind {
		case KindPhase:
			var d struct {
				Phase        string
				Target       policies.Target
				BusinessUnit string `json:"business_unit"`
				Triggered    time.Time
				Decided      time.Time
				Deadline     time.Time
				Replaces     string
			}
			if json.Unmarshal(ev.Data, &d) != nil || d.Phase != PhaseTrigger || ev.Activity == "" || d.Replaces != "" {
				// The replacement of an expired or reclaimed host is the
				// Leases pass's to take up again.
				return nil
			}
			if _, seen := acts[ev.Activity]; !seen {
				order = append(order, ev.Activity)
			}
			acts[ev.Activity] = &started{r: Request{Activity: ev.Activity, Target: d.Target, BusinessUnit: d.BusinessUnit,
				Triggered: d.Triggered, Decided: d.Decided, Deadline: d.Deadline, resumed: true}, ok: true}
		case KindActivityEnded:
			if a, seen := acts[ev.Activity]; seen {
				a.ok = false
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("reading unfinished activities: %w", err)
	}
	// Every scale-out resumed is in flight before any starts: each finds
	// the others' booting hosts theirs to follow (followedElsewhere).
	var resumable []string
	for _, id := range order {
		a := acts[id]
		if !a.ok || a.r.Deadline.IsZero() || now.After(a.r.Deadline.Add(c.cfg.ActivityGrace)) {
			continue
		}
		resumable = append(resumable, id)
		defer c.track(id, "the scale-out of "+a.r.Target.String(), a.r.BusinessUnit)()
	}
	n := 0
	for _, id := range resumable {
		a := acts[id]
		c.record(ctx, journal.Event{Time: now, Kind: KindPhase + ".resumed", Subject: a.r.Target.String(), Activity: id, Actor: "controller",
			Message: "resuming a scale-out a restart interrupted"})
		if c.Start(ctx, a.r) {
			n++
		}
	}
	return n, nil
}
