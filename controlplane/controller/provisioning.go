package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/demand"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/policies"
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
// after unmetRetry, doubling up to unmetMaxRetry, for as long as the work
// stays queued.
const (
	unmetRetry    = 5 * time.Second
	unmetMaxRetry = time.Minute
)

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
// flight. It returns how many it started.
func (c *Controller) Provision(ctx context.Context, s *cluster.Snapshot) int {
	n := 0
	for _, t := range s.Queued() {
		c.mu.Lock()
		_, busy := c.active[t]
		c.mu.Unlock()
		if busy {
			continue
		}
		r, why := c.request(s, t)
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
// no tier can give, and ends when every allocation is placed and healthy
// (or the group is gone). A model that is not live pauses it: unknown is
// not acted on.
func (c *Controller) ScaleOut(ctx context.Context, r Request) error {
	tl := &timeline{c: c, r: r, pool: "none"}
	if !r.observed {
		tl.begin(ctx)
	}
	d, err := c.settled(ctx, r.Target)
	if err != nil {
		return err
	}
	return c.place(ctx, &activity{c: c, tl: tl, d: d, exclude: map[string]string{}}, time.Time{})
}

// place runs activity a until its group's allocations are placed and
// healthy: it asks for capacity whenever work is queued, from next on
// (zero: at once), and again with backoff while no tier can give.
func (c *Controller) place(ctx context.Context, a *activity, next time.Time) error {
	tl, r := a.tl, a.tl.r
	retry := unmetRetry
	missed := false
	for {
		placed, err := c.placeOnce(ctx, a, &next, &retry, &missed)
		if err != nil || !placed {
			return err
		}
		// Wait for health; work queued again meanwhile (the count rose, a
		// host was lost) sends the activity back to finding hosts.
		again := false
		_, healthyAt, err := c.await(ctx, func(s *cluster.Snapshot) (bool, error) {
			g, ok := s.Group(r.Target)
			if !ok {
				return true, nil
			}
			if d, ok := s.Demand(r.Target); ok && d.Queued > 0 {
				again = true
				return true, nil
			}
			return s.Healthy(r.Target) >= g.Count, nil
		})
		if err != nil {
			return fmt.Errorf("waiting for %s to be healthy: %w", r.Target, err)
		}
		if again {
			c.cfg.Logger.Info("work queued again while waiting for health; finding hosts", "activity", r.Activity, "target", r.Target.String())
			continue
		}
		tl.phase(ctx, PhaseHealthy, healthyAt, "every allocation is healthy")
		took := healthyAt.Sub(r.Triggered)
		if healthyAt.After(r.Deadline) && !missed {
			c.missedDeadline(ctx, r, healthyAt, "healthy after "+took.Round(time.Second).String())
		}
		c.record(ctx, journal.Event{Time: healthyAt, Kind: KindActivityEnded, Subject: r.Target.String(), Activity: r.Activity, Actor: "controller",
			Message: fmt.Sprintf("scale-out done in %s", took.Round(100*time.Millisecond))})
		return nil
	}
}

// placeOnce asks for capacity whenever the group has work queued, from
// *next on, until every allocation has a host. It reports false when the
// activity ended without that (the group is gone, or Nomad placed it on
// its own before anything was journaled).
func (c *Controller) placeOnce(ctx context.Context, a *activity, next *time.Time, retry *time.Duration, missed *bool) (bool, error) {
	tl, r := a.tl, a.tl.r
	for {
		s, _, err := c.await(ctx, func(*cluster.Snapshot) (bool, error) { return true, nil })
		if err != nil {
			return false, fmt.Errorf("waiting for %s to be placed: %w", r.Target, err)
		}
		d, ok := s.Demand(r.Target)
		if !ok {
			if tl.begun() {
				c.record(ctx, journal.Event{Time: c.now(), Kind: KindActivityEnded, Subject: r.Target.String(), Activity: r.Activity, Actor: "controller",
					Message: "scale-out ended: the task group is gone from nomad"})
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
		if !*missed && now.After(r.Deadline) {
			*missed = true
			c.missedDeadline(ctx, r, now, fmt.Sprintf("%d allocations still queued", d.Queued))
		}
		if d.Queued > 0 && !now.Before(*next) {
			a.d = d
			met, err := a.run(ctx, s)
			if err != nil {
				return false, err
			}
			if met {
				*next, *retry = c.now().Add(settleTime), unmetRetry
			} else {
				*next = c.now().Add(*retry)
				*retry = min(2**retry, unmetMaxRetry)
			}
			continue
		}
		if err := c.pause(ctx, s); err != nil {
			return false, fmt.Errorf("waiting for %s to be placed: %w", r.Target, err)
		}
	}
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

func (c *Controller) unmet(ctx context.Context, r Request, d demand.Demand, hosts int, why string) {
	c.unmetC.Inc()
	data, _ := json.Marshal(map[string]any{"queued": d.Unplaced(), "hosts": hosts, "blocked": d.Blocked.Reason(), "reasons": why})
	c.record(ctx, journal.Event{Time: c.now(), Kind: KindUnmet, Subject: r.Target.String(), Activity: r.Activity, Actor: "controller", Data: data,
		Message: fmt.Sprintf("%d queued allocations of %s have no host: %s", d.Unplaced(), r.Target, why)})
}
