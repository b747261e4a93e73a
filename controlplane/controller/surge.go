package controller

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/policies"
	"github.com/spillwayhq/spillway/pools"
)

// Journal event kinds of a surge: the count of a task group raised for
// the drain of a lent host that is given back (a lease that ended, a
// reclaim), so its healthy allocations never dip below the count before.
const (
	// KindLeaseSurged: a group's count is raised by the allocations it
	// runs on the host (the intent, journaled before the count is set;
	// data: target, from, to, k, healthy_before, by).
	KindLeaseSurged = "lease.surged"
	// KindLeaseSurgeUnmet: a group goes into the drain without its surge,
	// or with fewer healthy allocations than the surge's goal, by its
	// deadline (the owner's right comes first), and why.
	KindLeaseSurgeUnmet = "lease.surge_unmet"
	// KindLeaseSurgeEnded: the surge is over after the drain: the count is
	// lowered by what it was raised, from whatever it is now.
	KindLeaseSurgeEnded = "lease.surge_ended"
)

// FailAfterSurge is after the surges of a returning host's groups are
// healthy (or their deadline came), before the host is drained.
const FailAfterSurge = "after-surge"

// FailAfterGiveBack is after a surged host is drained and given back,
// before its surges end.
const FailAfterGiveBack = "after-give-back"

// surge is a task group's count raised by K for the drain of a lent
// host (Node) that runs K of its allocations: the drain moves them one
// at a time, each stopped before its replacement is healthy, and the K
// extra healthy allocations keep the group from dipping below the
// count before. Journaled as lease.surged; held (Holding) until
// lease.surge_ended.
type surge struct {
	Target   policies.Target `json:"target"`
	Node     string          `json:"node"`
	Host     string          `json:"host"`
	Activity string          `json:"-"`
	// From is the count before, To = From + K.
	From int `json:"from"`
	To   int `json:"to"`
	K    int `json:"k"`
	// Healthy is how many were healthy before: the surge waits for
	// Healthy + K.
	Healthy int `json:"healthy_before"`
	// By bounds the wait for health: then the drain goes on.
	By time.Time `json:"by"`
}

// goal is how many healthy allocations the surge waits for.
func (s *surge) goal() int { return s.Healthy + s.K }

// surgeGroups is what a host runs of each service group (the groups a
// surge raises: a batch job's count is work, not capacity), by target,
// most first.
func surgeGroups(s *cluster.Snapshot, node string) ([]policies.Target, map[policies.Target]int) {
	w := placedOn(s, node, func(a *cluster.Alloc) bool { return a.JobType == "service" })
	return w.targets, w.by
}

// verdicts counts a group's allocations as a surge sees them: healthy
// (running with Nomad's healthy verdict) and starting (placed, without a
// verdict yet: pending, or running before min_healthy_time). A count
// change takes the verdict of every allocation back for a moment (Nomad
// updates them in place for the new job version), so only a verdict
// counts here, not Snapshot.Healthy's benefit of the doubt.
func verdicts(s *cluster.Snapshot, t policies.Target) (healthy, starting int) {
	for _, a := range s.AllocsOf(t) {
		if a.DesiredStatus != "run" {
			continue
		}
		switch {
		case a.ClientStatus == "running" && a.Healthy != nil && *a.Healthy:
			healthy++
		case a.ClientStatus == "pending" || (a.ClientStatus == "running" && a.Healthy == nil):
			starting++
		}
	}
	return healthy, starting
}

// Holding says why t's count must not be changed now ("" when it may):
// a surge raised it for the drain of a lent host, and lowers it again
// after. The policy scaler does not evaluate a held group (its count and
// queue are transient), nor does provisioning start a scale-out for it.
func (c *Controller) Holding(t policies.Target) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.surges[t]; s != nil {
		return fmt.Sprintf("its count is raised by %d (from %d) for the drain of %s, activity %s: lowered again after the drain", s.K, s.From, s.Host, s.Activity)
	}
	return ""
}

// busyLocked reports whether t has a scale-out or a surge in flight
// other than activity act's. c.mu is held.
func (c *Controller) busyLocked(t policies.Target, act string) bool {
	if cur, ok := c.active[t]; ok && cur != act {
		return true
	}
	s := c.surges[t]
	return s != nil && s.Activity != act
}

// claimSurge registers s as t's surge unless t is busy (busyLocked).
func (c *Controller) claimSurge(s *surge) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.busyLocked(s.Target, s.Activity) {
		return false
	}
	c.surges[s.Target] = s
	c.surgeGauge.Set(float64(len(c.surges)))
	return true
}

// dropSurge forgets s once it ended.
func (c *Controller) dropSurge(s *surge) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.surges[s.Target] == s {
		delete(c.surges, s.Target)
	}
	c.surgeGauge.Set(float64(len(c.surges)))
}

// surgesOf returns the surges in flight for node's drain.
func (c *Controller) surgesOf(node string) []*surge {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*surge
	for _, s := range c.surges {
		if s.Node == node {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b *surge) int { return cmp.Compare(a.Target.String(), b.Target.String()) })
	return out
}

// surgeBy is when the surge for loan's drain stops waiting for health: a
// reclaim's deadline less the drain (the owner's right comes first),
// else the borrower's scale-out deadline from now.
func (c *Controller) surgeBy(loan pools.Loan) time.Time {
	if loan.Reclaiming() {
		return loan.ReclaimBy.Add(-c.drainDeadline())
	}
	return c.now().Add(c.scaleOutDeadline(loan.Borrower))
}

// surgeLoan raises, before loan's host is drained, the count of every
// service group the host runs by the allocations it runs there, and
// waits until each has that many more healthy allocations than before,
// until by. In order: the node is made ineligible (nothing new lands on
// it); each group's surge is journaled (lease.surged, the intent) and
// its count raised from what it is now; then the wait. A group with a
// scale-out or another surge in flight, a count Nomad refuses, or no
// time left goes into the drain without a surge (lease.surge_unmet, with
// why), as does one short of its goal at by. Surges a restart
// interrupted (restored from the journal) are taken up, not raised
// again. It returns the surges to end after the drain (endSurges).
func (c *Controller) surgeLoan(ctx context.Context, loan pools.Loan, act string, by time.Time) []*surge {
	log := c.cfg.Logger.With("host", loan.HostName, "activity", act)
	snap, _, err := c.await(ctx, func(*cluster.Snapshot) (bool, error) { return true, nil })
	if err != nil {
		return c.surgesOf(loan.Host)
	}
	surges := c.surgesOf(loan.Host)
	targets, on := surgeGroups(snap, loan.Host)
	targets = slices.DeleteFunc(targets, func(t policies.Target) bool {
		return slices.ContainsFunc(surges, func(s *surge) bool { return s.Target == t })
	})
	if len(surges) > 0 {
		log.Info("surges journaled before a restart: taking them up", "groups", len(surges))
		for _, s := range surges {
			c.reraise(ctx, snap, s)
		}
	}
	if len(targets) == 0 && len(surges) == 0 {
		return nil
	}
	unmet := func(t policies.Target, k int, why string) {
		log.Warn("draining without a surge", "target", t.String(), "reason", why)
		data, _ := json.Marshal(map[string]any{"target": t, "host": loan.HostName, "node": loan.Host, "k": k, "reason": why})
		c.record(ctx, journal.Event{Time: c.now(), Kind: KindLeaseSurgeUnmet, Subject: t.String(), Actor: "controller", Activity: act, Data: data,
			Message: fmt.Sprintf("%s goes into the drain of %s without its surge of %d: %s", t, loan.HostName, k, why)})
	}
	if len(targets) > 0 && !c.now().Before(by) {
		for _, t := range targets {
			unmet(t, on[t], fmt.Sprintf("no time is left for one: the drain starts by %s", by.UTC().Format(time.RFC3339)))
		}
		targets = nil
	}
	if len(targets) > 0 {
		// Nothing new lands on the host: the surge's allocations go where
		// they stay.
		if err := c.cfg.Orchestrator.SetEligibility(ctx, loan.Host, false); err != nil {
			for _, t := range targets {
				unmet(t, on[t], fmt.Sprintf("making %s ineligible failed: %v", loan.HostName, err))
			}
			targets = nil
		} else {
			log.Info("made the returning host ineligible before its surge", "node", loan.Host)
		}
	}
	for _, t := range targets {
		if s := c.raise(ctx, snap, loan, act, t, on[t], by, unmet); s != nil {
			surges = append(surges, s)
		}
	}
	if len(surges) == 0 {
		return nil
	}
	c.awaitSurges(ctx, loan, act, surges, unmet)
	return surges
}

// raise starts t's surge of k for loan's drain: it waits (until by) for
// a scale-out or surge of t in flight to end, journals lease.surged and
// raises the count by k from what it is now.
func (c *Controller) raise(ctx context.Context, snap *cluster.Snapshot, loan pools.Loan, act string, t policies.Target, k int, by time.Time,
	unmet func(policies.Target, int, string)) *surge {
	s := &surge{Target: t, Node: loan.Host, Host: loan.HostName, Activity: act, K: k, By: by}
	for !c.claimSurge(s) {
		if !c.now().Before(by) {
			unmet(t, k, "a scale-out or another surge of the group was in flight until the drain had to start")
			return nil
		}
		if c.sleep(ctx, c.cfg.Poll) != nil {
			return nil
		}
	}
	if cur := c.cfg.Cluster.Snapshot(); cur.Live() {
		snap = cur
	}
	g, ok := snap.Group(t)
	if !ok {
		c.dropSurge(s)
		return nil
	}
	s.From, s.To, s.Healthy = g.Count, g.Count+k, snap.Healthy(t)
	why := "the lease of " + loan.HostName + " ended"
	if loan.Reclaiming() {
		why = loan.Lender + " reclaimed " + loan.HostName
	}
	data, _ := json.Marshal(s)
	if _, err := c.cfg.Journal.Append(ctx, journal.Event{Time: c.now(), Kind: KindLeaseSurged, Subject: t.String(), Actor: "controller", Activity: act, Data: data,
		Message: fmt.Sprintf("raising the count of %s from %d to %d before %s is drained (%s): its %d allocations there move one at a time, each stopped before its replacement is healthy; waiting for %d healthy, until %s",
			t, s.From, s.To, loan.HostName, why, k, s.goal(), by.UTC().Format(time.RFC3339))}); err != nil {
		c.dropSurge(s)
		unmet(t, k, fmt.Sprintf("journaling the surge failed: %v", err))
		return nil
	}
	msg := fmt.Sprintf("spillway: surge of %d for the drain of %s (%s)", k, loan.HostName, why)
	if err := c.cfg.Orchestrator.Scale(ctx, t, s.To, msg, map[string]any{"spillway.activity": act, "spillway.surge": loan.HostName}); err != nil {
		// The intent is journaled: end it, so nothing lowers a count
		// that was never raised.
		c.cfg.Logger.Warn("raising a count for a surge", "target", t.String(), "to", s.To, "err", err)
		c.endSurge(ctx, s, 0, fmt.Sprintf("the count was not raised: %v", err))
		unmet(t, k, fmt.Sprintf("raising the count to %d failed: %v", s.To, err))
		return nil
	}
	c.cfg.Logger.Info("surge: raised a count before a drain", "target", t.String(), "from", s.From, "to", s.To, "host", loan.HostName, "activity", act)
	return s
}

// reraise sets the count of a surge a restart interrupted between its
// journal entry and Nomad's answer: a count at or below the one before
// was not raised, and is raised by K now.
func (c *Controller) reraise(ctx context.Context, snap *cluster.Snapshot, s *surge) {
	g, ok := snap.Group(s.Target)
	if !ok || g.Count > s.From {
		return
	}
	msg := fmt.Sprintf("spillway: surge of %d for the drain of %s (taken up after a restart)", s.K, s.Host)
	if err := c.cfg.Orchestrator.Scale(ctx, s.Target, g.Count+s.K, msg, map[string]any{"spillway.activity": s.Activity, "spillway.surge": s.Host}); err != nil {
		c.cfg.Logger.Warn("raising a count for a surge taken up after a restart", "target", s.Target.String(), "err", err)
		return
	}
	c.cfg.Logger.Info("surge: raised a count the restart left at its value before", "target", s.Target.String(), "to", g.Count+s.K)
}

// awaitSurges waits until every surge has its goal of healthy
// allocations, or the earliest surge's deadline, or until those short of
// it have nothing starting and allocations queued for want of room (no
// host comes for a held group); a surge short of its goal then is
// journaled (lease.surge_unmet) and goes into the drain as it is: its
// extra healthy allocations still soften the dip.
func (c *Controller) awaitSurges(ctx context.Context, loan pools.Loan, act string, surges []*surge, unmet func(policies.Target, int, string)) {
	by := surges[0].By
	for _, s := range surges[1:] {
		if s.By.Before(by) {
			by = s.By
		}
	}
	wait, cancel := context.WithCancel(ctx)
	defer cancel()
	t := c.cfg.Clock.AfterFunc(max(by.Sub(c.now()), 0), cancel)
	defer t.Stop()
	short := map[*surge]int{}
	stuck := false
	_, _, err := c.await(wait, func(snap *cluster.Snapshot) (bool, error) {
		clear(short)
		stuck = true
		for _, s := range surges {
			h, starting := verdicts(snap, s.Target)
			if h >= s.goal() {
				continue
			}
			short[s] = h
			// Allocations Nomad queued for want of room get none while the
			// group is held: only those still starting are worth a wait.
			if d, _ := snap.Demand(s.Target); starting > 0 || d.Queued == 0 {
				stuck = false
			}
		}
		return len(short) == 0 || stuck, nil
	})
	if ctx.Err() != nil {
		return
	}
	if err == nil && len(short) == 0 {
		c.cfg.Logger.Info("surge: every surged group is healthy; draining", "host", loan.HostName, "activity", act)
		return
	}
	for _, s := range surges {
		h, ok := short[s]
		switch {
		case !ok:
		case err == nil:
			unmet(s.Target, s.K, fmt.Sprintf("%d of the %d healthy allocations the surge waits for, and the rest wait for room: the drain goes on", h, s.goal()))
		default:
			unmet(s.Target, s.K, fmt.Sprintf("%d of the %d healthy allocations the surge waits for by %s: the drain goes on (the owner's right comes first)",
				h, s.goal(), by.UTC().Format(time.RFC3339)))
		}
	}
}

// endSurges ends the surges of a drained host: each waits, at most the
// pool's drain deadline, until no allocation of its group is placed and
// not yet healthy (the drained allocations' moves became healthy, or
// wait for room), then is lowered (endSurge).
func (c *Controller) endSurges(ctx context.Context, surges []*surge) {
	for _, s := range surges {
		settle := c.drainDeadline()
		wait, cancel := context.WithCancel(ctx)
		t := c.cfg.Clock.AfterFunc(settle, cancel)
		_, _, err := c.await(wait, func(snap *cluster.Snapshot) (bool, error) {
			_, starting := verdicts(snap, s.Target)
			return starting == 0, nil
		})
		t.Stop()
		cancel()
		if ctx.Err() != nil {
			return
		}
		note := ""
		if err != nil {
			note = fmt.Sprintf("; allocations were still starting after %s", settle)
			c.cfg.Logger.Warn("surge: allocations still starting after the drain; lowering anyway", "target", s.Target.String(), "after", settle)
		}
		if !c.endSurge(ctx, s, s.K, note) {
			return
		}
	}
}

// endSurge lowers s's group by k (at most) from its count now, never
// below the count before the surge: a count someone lowered meanwhile
// is theirs. Nomad stops the allocations still waiting for room first,
// then the highest-index ones, all extra. It retries a count Nomad
// refuses until ctx ends, then journals lease.surge_ended and forgets
// s; false when ctx ended first (the next term ends it).
func (c *Controller) endSurge(ctx context.Context, s *surge, k int, note string) bool {
	for retry := time.Second; ; retry = min(2*retry, 30*time.Second) {
		snap, _, err := c.await(ctx, func(*cluster.Snapshot) (bool, error) { return true, nil })
		if err != nil {
			return false
		}
		g, ok := snap.Group(s.Target)
		from, to := 0, 0
		if ok {
			from = g.Count
			to = from - min(k, max(0, from-s.From))
		}
		if ok && to != from {
			msg := fmt.Sprintf("spillway: end of the surge for the drain of %s", s.Host)
			if err := c.cfg.Orchestrator.Scale(ctx, s.Target, to, msg, map[string]any{"spillway.activity": s.Activity, "spillway.surge": s.Host}); err != nil {
				c.cfg.Logger.Warn("lowering a count after a surge; trying again", "target", s.Target.String(), "to", to, "err", err, "retry", retry)
				if c.sleep(ctx, retry) != nil {
					return false
				}
				continue
			}
		}
		msg := fmt.Sprintf("the surge of %s for the drain of %s ended: its count went from %d to %d%s", s.Target, s.Host, from, to, note)
		switch {
		case !ok:
			msg = fmt.Sprintf("the surge of %s for the drain of %s ended: the group is gone", s.Target, s.Host)
		case to == from && k > 0:
			msg = fmt.Sprintf("the surge of %s for the drain of %s ended: its count %d is not above the %d before it, and stays%s", s.Target, s.Host, from, s.From, note)
		}
		data, _ := json.Marshal(map[string]any{"target": s.Target, "host": s.Host, "node": s.Node, "from": from, "to": to, "k": s.K})
		c.record(ctx, journal.Event{Time: c.now(), Kind: KindLeaseSurgeEnded, Subject: s.Target.String(), Actor: "controller", Activity: s.Activity, Data: data, Message: msg})
		c.cfg.Logger.Info("surge: lowered the count after the drain", "target", s.Target.String(), "from", from, "to", to, "host", s.Host, "activity", s.Activity)
		c.dropSurge(s)
		return true
	}
}

// RestoreSurges reads the surges journaled and not ended (a restart
// between lease.surged and lease.surge_ended), so their groups are held
// from the start and the return of their hosts takes them up
// (surgeLoan), or resumeSurges ends them.
func (c *Controller) RestoreSurges(ctx context.Context, q journal.Querier) error {
	open := map[policies.Target]*surge{}
	err := journal.Each(ctx, q, journal.Filter{Kind: "lease"}, func(ev journal.Event) error {
		var s surge
		if json.Unmarshal(ev.Data, &s) != nil || s.Target.Job == "" {
			return nil
		}
		switch ev.Kind {
		case KindLeaseSurged:
			s.Activity = ev.Activity
			open[s.Target] = &s
		case KindLeaseSurgeEnded:
			if o := open[s.Target]; o != nil && o.Activity == ev.Activity {
				delete(open, s.Target)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restoring the surges in flight: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for t, s := range open {
		if cur := c.surges[t]; cur == nil || cur.Activity != s.Activity {
			c.surges[t] = s
		}
	}
	c.surgeGauge.Set(float64(len(c.surges)))
	return nil
}

// resumeSurges ends, each in a task beside the loop, the surges whose
// host's return will not take them up: the host was given back before a
// restart, or its loan is no longer ending (an operator extended it; the
// host is made eligible again). The others are the Leases pass's.
func (c *Controller) resumeSurges(ctx context.Context) int {
	c.mu.Lock()
	var ends []*surge
	for _, s := range c.surges {
		ends = append(ends, s)
	}
	c.mu.Unlock()
	now, n := c.now(), 0
	for _, s := range ends {
		var loan pools.Loan
		lent := false
		if c.cfg.Ledger != nil {
			loan, lent = c.cfg.Ledger.Loan(s.Node)
		}
		if lent && loanEnding(loan, now) {
			continue // the Leases pass takes its return up
		}
		n++
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.cfg.Logger.Info("surge: ending a surge a restart interrupted", "target", s.Target.String(), "host", s.Host, "returned", !lent)
			if lent {
				if err := c.cfg.Orchestrator.SetEligibility(ctx, s.Node, true); err != nil {
					c.cfg.Logger.Warn("making a host whose return stopped eligible again", "host", s.Host, "err", err)
				}
			}
			c.endSurges(ctx, []*surge{s})
		}()
	}
	return n
}
