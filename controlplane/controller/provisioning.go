package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/demand"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/policies"
	"github.com/spillwayhq/spillway/pools"
)

// Hint is what the scaler knows of a count it raised: the activity its
// decision was journaled in, and when the trigger arrived and the count
// rose. The provisioner gives the scale-out that follows the same
// activity and timeline. A count raised by anyone else has no hint.
type Hint struct {
	Target    policies.Target
	Activity  string
	Policy    string
	Triggered time.Time
	Decided   time.Time
}

// hintFor bounds how long a hint waits for the demand it announces.
const hintFor = 2 * time.Minute

// settleTime is how long allocations may stay queued after their hosts
// are ready before the activity looks for more hosts: Nomad places queued
// allocations within a second or two of a node becoming ready.
const settleTime = 5 * time.Second

// Backoff of an activity whose need no tier could meet: it asks again
// after unmetRetry, doubling up to unmetMaxRetry, until its deadline plus
// Config.ActivityGrace; a last round then, and it ends.
const (
	unmetRetry    = 5 * time.Second
	unmetMaxRetry = time.Minute
)

// DefaultActivityGrace is Config.ActivityGrace when it is not set.
const DefaultActivityGrace = 5 * time.Minute

// cycle is a group's demand when its scale-out ended partial or unmet
// with work still queued. The provisioner starts no new activity for the
// group while its demand is the same: a new demand cycle begins when its
// count or the size of its allocations changes (the job changed), or
// once nothing of it is queued any more.
type cycle struct {
	count   int
	size    demand.Size
	serves  string
	outcome string
	at      time.Time
}

// Expect records the scaler's hint for the scale-out its new count will
// cause.
func (c *Controller) Expect(h Hint) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hints[h.Target] = h
}

// takeHint returns the recent hint for t, once.
func (c *Controller) takeHint(t policies.Target, now time.Time) (Hint, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.hints[t]
	delete(c.hints, t)
	return h, ok && now.Sub(h.Decided) < hintFor
}

// provision runs the provisioning controller until ctx ends: whenever the
// model changes (and at least every second), every queued task group
// Spillway serves that has no activity in flight gets one.
func (c *Controller) provision(ctx context.Context) {
	for {
		s := c.cfg.Cluster.Snapshot()
		if s.Live() {
			c.Provision(ctx, s)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.Changed():
		case <-c.cfg.Clock.After(time.Second):
		}
	}
}

// Provision starts a scale-out for every task group s shows with queued
// allocations, of a business unit Spillway serves, that has none in
// flight and no surge (surge.go: what a surge queues is transient). It
// returns how many it started.
func (c *Controller) Provision(ctx context.Context, s *cluster.Snapshot) int {
	n := 0
	queued := s.Queued()
	c.mu.Lock()
	for t := range c.ended {
		if !slices.Contains(queued, t) {
			delete(c.ended, t) // nothing queued: the next demand is a new cycle
		}
	}
	c.mu.Unlock()
	defer c.forgetUnservable(queued)
	// The hosts each business unit's tiers give, for unservable: from a
	// walk of every node and allocation, so once a pass and business
	// unit, and only when a queued group gets that far.
	var usage []pools.NodeUsage
	given := map[string][]tier{}
	tiersOf := func(bu string) []tier {
		if t, ok := given[bu]; ok {
			return t
		}
		if usage == nil {
			usage = s.NodeUsageShared()
		}
		given[bu] = c.available(c.tiers(usage, bu))
		return given[bu]
	}
	for _, t := range queued {
		c.mu.Lock()
		_, busy := c.active[t]
		busy = busy || c.surges[t] != nil // a surge's queue is transient
		c.mu.Unlock()
		if busy {
			continue
		}
		why := c.sameCycle(s, t)
		var r Request
		if why == "" {
			r, why = c.request(s, t)
		}
		if why == "" {
			why = c.unservable(ctx, s, tiersOf, t, r.BusinessUnit)
		}
		if why != "" {
			c.mu.Lock()
			said := c.skipped[t] == why
			c.skipped[t] = why
			c.mu.Unlock()
			if !said {
				c.cfg.Logger.Info("queued allocations Spillway does not find hosts for", "target", t.String(), "reason", why)
			}
			continue
		}
		if c.Start(ctx, r) {
			n++
		}
	}
	return n
}

// sameCycle says why the queued work of t gets no new activity: its last
// scale-out ended partial or unmet and its demand has not changed since.
func (c *Controller) sameCycle(s *cluster.Snapshot, t policies.Target) string {
	c.mu.Lock()
	e, ok := c.ended[t]
	c.mu.Unlock()
	if !ok {
		return ""
	}
	if g, found := s.Group(t); found && (g.Count != e.count || g.PerAlloc != e.size || g.Serves != e.serves) {
		c.mu.Lock()
		delete(c.ended, t)
		c.mu.Unlock()
		return ""
	}
	return fmt.Sprintf("its scale-out ended %s at %s; a new one starts when the group's count or allocation size changes, or once nothing of it is queued",
		e.outcome, e.at.UTC().Format(time.RFC3339))
}

// request builds the scale-out of a queued group, or says why there is
// none: its business unit comes from the group's placement
// (${meta.spillway.serves}) or the policy that governs it, and its
// deadline from that policy, else from the business unit's default.
func (c *Controller) request(s *cluster.Snapshot, t policies.Target) (Request, string) {
	g, ok := s.Group(t)
	if !ok {
		return Request{}, "the model has no such task group"
	}
	var governing *policies.Policy
	if ps := c.cfg.Policies().ForTarget(t); len(ps) > 0 {
		governing = ps[0]
	}
	bu := g.Serves
	if bu == "" && governing != nil {
		bu = governing.BusinessUnit
	}
	if bu == "" {
		return Request{}, "it names no business unit (no ${meta.spillway.serves} constraint, no policy with a business_unit)"
	}
	unit, ok := c.cfg.Pools.BusinessUnit(bu)
	if !ok {
		return Request{}, fmt.Sprintf("business unit %q has no pool file", bu)
	}
	now := c.now()
	r := Request{Target: t, BusinessUnit: bu, Triggered: now, Decided: now, observed: true}
	if h, ok := c.takeHint(t, now); ok {
		r.Activity, r.Triggered, r.Decided, r.observed = h.Activity, h.Triggered, h.Decided, false
	}
	if r.Activity == "" {
		r.Activity = journal.NewActivity(now)
	}
	deadline := unit.ScaleOutDeadline()
	if governing != nil && governing.Deadline > 0 {
		deadline = governing.Deadline
	}
	r.Deadline = r.Triggered.Add(deadline)
	return r, ""
}

// ScaleOut is one demand cycle of a task group: it finds hosts for what
// Nomad queued, tops up whenever work is queued again once those hosts
// are there (the count rose, a host was lost), retries with backoff while
// no tier can give, and ends, journaled once with its outcome and why:
//
//   - done when every allocation has a host and is healthy (or the group
//     is gone);
//   - unmet at once when the queued work is unservable (an allocation
//     larger than any host);
//   - partial or unmet (it got some hosts, or none) when work is still
//     queued past its deadline plus Config.ActivityGrace and no tier can
//     give more.
//
// A count that rises while the activity is in flight is topped up by the
// same activity; once it ended, a change of the group's demand starts a
// new one (Provision). A model that is not live pauses it: unknown is not
// acted on.
func (c *Controller) ScaleOut(ctx context.Context, r Request) error {
	tl := &timeline{c: c, r: r, pool: "none"}
	a := &activity{c: c, tl: tl, exclude: map[string]string{}}
	if !r.observed {
		tl.begin(ctx)
	}
	err := c.scaleOut(ctx, a)
	if err != nil && ctx.Err() == nil { // not a shutdown or a lost term: the next leader must not resume it
		c.end(context.WithoutCancel(ctx), a, a.outcome(), fmt.Sprintf("it stopped unfinished: %v", err), c.now())
	}
	return err
}

func (c *Controller) scaleOut(ctx context.Context, a *activity) error {
	d, err := c.settled(ctx, a.tl.r.Target)
	if err != nil {
		return err
	}
	a.d = d
	return c.place(ctx, a, time.Time{})
}

// place runs activity a until its group's allocations are placed and
// healthy, or it ends otherwise: it asks for capacity whenever work is
// queued, from next on (zero: at once), and again with backoff while no
// tier can give, until its deadline plus grace.
func (c *Controller) place(ctx context.Context, a *activity, next time.Time) error {
	tl, r := a.tl, a.tl.r
	limit := r.Deadline.Add(c.cfg.ActivityGrace)
	retry := unmetRetry
	missed := false
	for {
		placed, err := c.placeOnce(ctx, a, &next, &retry, &missed)
		if err != nil || !placed {
			return err
		}
		// Wait for health; work queued again meanwhile (the count rose, a
		// host was lost) sends the activity back to finding hosts. Health
		// is waited for until the deadline plus grace, and at least the
		// grace after the placement.
		healthBy := limit
		if by := c.now().Add(c.cfg.ActivityGrace); by.After(healthBy) {
			healthBy = by
		}
		again, late := false, false
		var healthy, count int
		_, healthyAt, err := c.await(ctx, func(s *cluster.Snapshot) (bool, error) {
			g, ok := s.Group(r.Target)
			if !ok {
				return true, nil
			}
			if d, ok := s.Demand(r.Target); ok && d.Queued > 0 {
				again = true
				return true, nil
			}
			healthy, count = s.Healthy(r.Target), g.Count
			if healthy < count && c.now().After(healthBy) {
				late = true
				return true, nil
			}
			return healthy >= count, nil
		})
		if err != nil {
			return fmt.Errorf("waiting for %s to be healthy: %w", r.Target, err)
		}
		if again {
			c.cfg.Logger.Info("work queued again while waiting for health; finding hosts", "activity", r.Activity, "target", r.Target.String())
			continue
		}
		took := healthyAt.Sub(r.Triggered)
		if late {
			// Every allocation has a host: the capacity is served; its
			// health is the job's, not the activity's, to wait for.
			c.end(ctx, a, OutcomeDone, fmt.Sprintf("every allocation has a host, but only %d of %d are healthy past the deadline plus %s (scale_out.grace)",
				healthy, count, c.cfg.ActivityGrace), healthyAt)
			return nil
		}
		tl.phase(ctx, PhaseHealthy, healthyAt, "every allocation is healthy")
		if healthyAt.After(r.Deadline) && !missed {
			c.missedDeadline(ctx, r, healthyAt, "healthy after "+took.Round(time.Second).String())
		}
		c.end(ctx, a, OutcomeDone, fmt.Sprintf("every allocation is healthy, in %s", took.Round(100*time.Millisecond)), healthyAt)
		return nil
	}
}

// placeOnce asks for capacity whenever the group has work queued, from
// *next on, until every allocation has a host. It reports false when the
// activity ended without that: the group is gone, Nomad placed it on its
// own before anything was journaled, the work is unservable, or no tier
// could give more by the deadline plus grace.
func (c *Controller) placeOnce(ctx context.Context, a *activity, next *time.Time, retry *time.Duration, missed *bool) (bool, error) {
	tl, r := a.tl, a.tl.r
	limit := r.Deadline.Add(c.cfg.ActivityGrace)
	for {
		s, _, err := c.await(ctx, func(*cluster.Snapshot) (bool, error) { return true, nil })
		if err != nil {
			return false, fmt.Errorf("waiting for %s to be placed: %w", r.Target, err)
		}
		d, ok := s.Demand(r.Target)
		if !ok {
			if tl.begun() {
				c.end(ctx, a, OutcomeDone, "the task group is gone from nomad", c.now())
			}
			return false, nil
		}
		now := c.now()
		if d.Queued == 0 && d.Running+d.Starting >= d.Count {
			if !tl.begun() {
				// Nomad placed it on its own: nothing to journal.
				c.cfg.Logger.Debug("queued work placed without capacity", "target", r.Target.String())
				return false, nil
			}
			tl.phase(ctx, PhasePlaced, now, "every allocation has a host")
			return true, nil
		}
		if d.Queued == 0 && tl.begun() && !now.Before(limit) {
			// Nothing queued, yet allocations missing past the grace:
			// Nomad holds failed ones for their reschedule delay. No
			// capacity serves that, so the scale-out ends.
			c.end(ctx, a, OutcomeDone, fmt.Sprintf("nothing is queued, but only %d of %d allocations run %s past the deadline (scale_out.grace): Nomad is holding failed allocations for their reschedule, which capacity does not serve",
				d.Running+d.Starting, d.Count, c.cfg.ActivityGrace), now)
			return false, nil
		}
		if !*missed && now.After(r.Deadline) {
			*missed = true
			c.missedDeadline(ctx, r, now, fmt.Sprintf("%d allocations still queued", d.Queued))
		}
		if d.Queued > 0 && !now.Before(*next) {
			if a.met && now.After(limit) {
				// Hosts came, yet work is still queued past the grace:
				// asking for more would not serve it.
				c.end(ctx, a, a.outcome(), fmt.Sprintf("%d allocations are still queued %s past the deadline (scale_out.grace) although the hosts asked for came",
					d.Queued, c.cfg.ActivityGrace), now)
				return false, nil
			}
			a.d = d
			met, err := a.run(ctx, s)
			if err != nil {
				return false, err
			}
			a.met = met
			if a.unservable != "" {
				c.end(ctx, a, a.outcome(), a.unservable, c.now())
				return false, nil
			}
			if met {
				*next, *retry = c.now().Add(settleTime), unmetRetry
				continue
			}
			if now := c.now(); !now.Before(limit) {
				c.end(ctx, a, a.outcome(), fmt.Sprintf("%d allocations are still queued %s past the deadline (scale_out.grace) and no tier can give more: %s",
					a.d.Unplaced(), c.cfg.ActivityGrace, a.lastUnmet), now)
				return false, nil
			}
			// The last round is at the deadline plus grace at the latest.
			*next = c.now().Add(*retry)
			if next.After(limit) {
				*next = limit
			}
			*retry = min(2**retry, unmetMaxRetry)
			continue
		}
		if err := c.pause(ctx, s); err != nil {
			return false, fmt.Errorf("waiting for %s to be placed: %w", r.Target, err)
		}
	}
}

// end journals the end of activity a, once, with its outcome and why, and
// counts it. A demand left queued (partial, unmet) is remembered, so the
// provisioner starts no new activity for it until it changes.
func (c *Controller) end(ctx context.Context, a *activity, outcome, why string, at time.Time) {
	if a.ended {
		return
	}
	a.ended = true
	r := a.tl.r
	c.ends.WithLabelValues(outcome).Inc()
	a.mu.Lock()
	hosts := a.borrowed + len(a.rented)
	a.mu.Unlock()
	// A demand left queued is remembered with what it was, here and in
	// the journal, so that a new leader does not start it again.
	var left *cycle
	if s := c.cfg.Cluster.Snapshot(); outcome != OutcomeDone && s.Live() {
		if g, ok := s.Group(r.Target); ok {
			left = &cycle{count: g.Count, size: g.PerAlloc, serves: g.Serves, outcome: outcome, at: at}
		}
	}
	fields := map[string]any{"outcome": outcome, "reason": why, "hosts_got": hosts, "queued": a.d.Unplaced()}
	if left != nil {
		fields["cycle"] = endedCycle{Target: r.Target, Count: left.count, Size: left.size, Serves: left.serves}
	}
	data, _ := json.Marshal(fields)
	c.record(ctx, journal.Event{Time: at, Kind: KindActivityEnded, Subject: r.Target.String(), Activity: r.Activity, Actor: "controller", Data: data,
		Message: fmt.Sprintf("scale-out %s: %s", outcome, why)})
	c.cfg.Logger.Info("scale-out ended", "activity", r.Activity, "target", r.Target.String(), "outcome", outcome, "reason", why)
	if left != nil {
		c.mu.Lock()
		c.ended[r.Target] = *left
		c.mu.Unlock()
	}
}

// endedCycle is the demand an activity.done left queued, as journaled.
type endedCycle struct {
	// Target is the group's: a job ID may hold "/", so the subject is
	// not parsed.
	Target policies.Target `json:"target"`
	Count  int             `json:"count"`
	Size   demand.Size     `json:"size"`
	Serves string          `json:"serves"`
}

// RestoreEnded replays from the journal the demand cycles that ended
// partial or unmet in the last day, so a new leader starts no scale-out
// for the same demand again; a later activity.done of the same group
// that ended done forgets it. The first provisioning pass forgets those
// no longer queued.
func (c *Controller) RestoreEnded(ctx context.Context, q journal.Querier) error {
	// By the group's name, the subject of its events.
	type endedOf struct {
		t policies.Target
		e cycle
	}
	ended := map[string]endedOf{}
	err := journal.Each(ctx, q, journal.Filter{Kind: KindActivityEnded, Since: c.now().Add(-24 * time.Hour)}, func(ev journal.Event) error {
		var d struct {
			Outcome string      `json:"outcome"`
			Cycle   *endedCycle `json:"cycle"`
		}
		if json.Unmarshal(ev.Data, &d) != nil {
			return nil
		}
		if d.Outcome == OutcomeDone || d.Cycle == nil {
			delete(ended, ev.Subject) // a later cycle of the group ended done
			return nil
		}
		t := d.Cycle.Target
		ended[t.String()] = endedOf{t, cycle{count: d.Cycle.Count, size: d.Cycle.Size, serves: d.Cycle.Serves, outcome: d.Outcome, at: ev.Time}}
		return nil
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, x := range ended {
		if _, ok := c.ended[x.t]; !ok {
			c.ended[x.t] = x.e
		}
	}
	return err
}

func (c *Controller) missedDeadline(ctx context.Context, r Request, at time.Time, what string) {
	c.missed.Inc()
	c.record(ctx, journal.Event{Time: at, Kind: KindMissed, Subject: r.Target.String(), Activity: r.Activity, Actor: "controller",
		Message: fmt.Sprintf("%s, past the deadline of %s", what, r.Deadline.Sub(r.Triggered).Round(time.Second))})
}

// settled waits, at most 30s, until the model shows Nomad's evaluation of
// the group's count: every allocation placed, starting or queued.
func (c *Controller) settled(ctx context.Context, t policies.Target) (demand.Demand, error) {
	wait, cancel := context.WithCancel(ctx)
	defer cancel()
	timeout := c.cfg.Clock.AfterFunc(30*time.Second, cancel)
	defer timeout.Stop()
	var d demand.Demand
	_, _, err := c.await(wait, func(s *cluster.Snapshot) (bool, error) {
		var ok bool
		d, ok = s.Demand(t)
		if !ok {
			return false, fmt.Errorf("the model has no task group %s", t)
		}
		return d.Running+d.Starting+d.Queued >= d.Count, nil
	})
	if err != nil && ctx.Err() == nil {
		// Not settled in time: go on with what is known.
		return d, nil
	}
	return d, err
}

// unmet journals that queued work of activity a has no host, once per
// activity and reason; every round is counted. then says what the
// activity does next.
func (a *activity) unmet(ctx context.Context, hosts int, why, then string) {
	c, r, d := a.c, a.tl.r, a.d
	c.unmetC.Inc()
	a.lastUnmet = why
	if a.said[why] {
		return
	}
	if a.said == nil {
		a.said = map[string]bool{}
	}
	a.said[why] = true
	data, _ := json.Marshal(map[string]any{"queued": d.Unplaced(), "hosts": hosts, "blocked": d.Blocked.Reason(), "reasons": why})
	c.record(ctx, journal.Event{Time: c.now(), Kind: KindUnmet, Subject: r.Target.String(), Activity: r.Activity, Actor: "controller", Data: data,
		Message: fmt.Sprintf("%d queued allocations of %s have no host: %s; %s", d.Unplaced(), r.Target, why, then)})
}
