package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/demand"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/bootstrap"
)

// Journal event kinds of spot interruptions.
const (
	KindInterrupted = "host.interrupted"
	KindDrained     = "host.drained"
	KindDrainFailed = "host.drain_failed"
)

// Stages of a spot notice the controller took up (Controller.noticed).
const (
	noticeBooting = "booting" // journaled; the host had no node yet
	noticeHandled = "handled"
)

// drainShare is the part of the time a spot notice leaves that the drain
// of the interrupted host may take: the rest is for its tasks to stop
// (their kill_timeout) before the cloud reclaims it.
const drainShare = 0.75

// Interruptions is the pass over the rented spot hosts' interruption
// notices, every interval: the providers list a host that got one with
// its InterruptAt. Each new notice starts an interruption activity (see
// interrupt), once per host unless it failed. A pool whose listing
// fails is unknown and is looked at again next pass. It returns the
// hosts whose notices it took up.
func (c *Controller) Interruptions(ctx context.Context) ([]string, error) {
	if c.cfg.Ledger == nil {
		return nil, nil
	}
	snap := c.cfg.Cluster.Snapshot()
	if !snap.Live() {
		return nil, nil
	}
	nodeOf := snap.UsageBy(bootstrap.MetaInstance)
	var errs []error
	var taken []string
	listed := map[string]bool{}
	c.mu.Lock()
	for id := range c.noticed {
		if _, lent := c.cfg.Ledger.Loan(id); !lent {
			delete(c.noticed, id) // terminated, reclaimed or given back
		}
	}
	c.mu.Unlock()
	for _, l := range c.cfg.Ledger.Loans() {
		p, ok := c.cfg.Clouds[l.Pool]
		if l.Tier == pools.TierShared || !ok || listed[l.Pool] {
			continue
		}
		listed[l.Pool] = true
		hosts, err := p.List(ctx, l.Pool)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing the hosts of %s for spot interruption notices: %w", l.Pool, err))
			continue
		}
		for _, h := range hosts {
			if h.InterruptAt.IsZero() {
				continue
			}
			loan, lent := c.cfg.Ledger.Loan(h.ID)
			if !lent {
				continue // not serving anyone: the collector's
			}
			// A notice is taken up once, and once more if the host was
			// still booting then and has joined Nomad since.
			_, joined := nodeOf[h.ID]
			c.mu.Lock()
			stage := c.noticed[h.ID]
			take := stage == "" || (stage == noticeBooting && joined)
			if take {
				c.noticed[h.ID] = noticeHandled
				if !joined {
					c.noticed[h.ID] = noticeBooting
				}
			}
			c.mu.Unlock()
			if !take {
				continue
			}
			taken = append(taken, h.ID)
			if stage == "" {
				c.interruptions.WithLabelValues(l.Pool).Inc()
			}
			// In flight from now: scale-in of the borrower's hosts waits
			// for it, and the collector leaves the host to it.
			act := journal.NewActivity(c.now())
			untrack := c.track(act, "the spot interruption of "+h.ID, loan.Borrower)
			c.concern(act, h.Pool, h.ID)
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				err := c.interrupt(ctx, snap, act, loan, h)
				untrack()
				c.mu.Lock()
				if err != nil {
					delete(c.noticed, h.ID) // the next pass tries again
				}
				c.mu.Unlock()
				if err != nil && ctx.Err() == nil {
					c.cfg.Logger.Error("handling a spot interruption; trying again next pass", "host", h.ID, "pool", h.Pool, "err", err)
				}
			}()
		}
	}
	return taken, errors.Join(errs...)
}

// interrupt handles one spot interruption notice, as one activity (act)
// whose journal links the notice (host.interrupted), the replacement
// (capacity.replacing and the claims it makes) and the drain
// (host.drained, then the termination):
//   - replacement capacity for the host's allocations is asked for at
//     once, from the business unit's ladder, and the interrupted offering
//     is remembered as unavailable for a while;
//   - at the same time, the host's node is drained with a deadline of
//     drainShare of the time the notice leaves, and the host is
//     terminated once it is drained, before the cloud reclaims it;
//   - the activity then follows the group most of the host's allocations
//     belong to until it is placed and healthy (the other groups queue
//     and are provisioned as usual, onto the same replacement).
//
// A host that has no Nomad node yet serves nothing: its notice is taken
// up again if it joins before the reclaim, else the activity that follows
// its boot replaces it when it is not ready in time.
// scaleOutDeadline is business unit bu's scale-out deadline (the
// default for a unit the pools do not know).
func (c *Controller) scaleOutDeadline(bu string) time.Duration {
	if unit, ok := c.cfg.Pools.BusinessUnit(bu); ok {
		return unit.ScaleOutDeadline()
	}
	return pools.DefaultScaleOutDeadline
}

func (c *Controller) interrupt(ctx context.Context, snap *cluster.Snapshot, act string, loan pools.Loan, h providers.Host) error {
	now := c.now()
	left := h.InterruptAt.Sub(now)
	deadline := min(max(time.Duration(float64(left)*drainShare), time.Second), c.drainDeadline())
	n, registered := snap.UsageBy(bootstrap.MetaInstance)[h.ID]
	work := hostWork{names: []string{}}
	if registered {
		work = placedOn(snap, n.ID, func(a *cluster.Alloc) bool { return a.JobType != "system" })
	}
	allocs, per, targets, names := work.allocs, work.per, work.targets, work.names
	data, _ := json.Marshal(map[string]any{"host": h.ID, "node": n.ID, "pool": h.Pool, "borrower": loan.Borrower, "offering": h.Offering,
		"interrupt_at": h.InterruptAt, "notice_left_seconds": left.Seconds(), "drain_deadline_seconds": deadline.Seconds(),
		"allocations": allocs, "groups": names})
	// The offering's capacity is being reclaimed: the ladder looks
	// elsewhere for a while.
	c.memory.MarkUnavailable(h.Pool, now, 0, h.Offering)
	switch {
	case !registered:
		c.record(ctx, journal.Event{Time: now, Kind: KindInterrupted, Subject: "host/" + h.ID, Activity: act, Actor: "controller", Data: data,
			Message: fmt.Sprintf("spot host %s of %s got its interruption notice (reclaimed at %s); it is not a Nomad node yet, so nothing is drained: if it joins before the reclaim it is drained then, else its boot is replaced when it is not ready in time",
				h.ID, h.Pool, h.InterruptAt.UTC().Format(time.RFC3339))})
		return nil
	case allocs == 0:
		c.record(ctx, journal.Event{Time: now, Kind: KindInterrupted, Subject: "host/" + h.ID, Activity: act, Actor: "controller", Data: data,
			Message: fmt.Sprintf("spot host %s of %s got its interruption notice (reclaimed at %s, in %s); it runs no allocation, so nothing is replaced: draining it within %s and terminating it",
				h.ID, h.Pool, h.InterruptAt.UTC().Format(time.RFC3339), left.Round(time.Second), deadline.Round(time.Second))})
		return c.drainInterrupted(ctx, act, loan, h, n.ID, deadline, now, nil)
	}
	c.record(ctx, journal.Event{Time: now, Kind: KindInterrupted, Subject: "host/" + h.ID, Activity: act, Actor: "controller", Data: data,
		Message: fmt.Sprintf("spot host %s of %s got its interruption notice: the cloud reclaims it at %s, in %s; asking for replacement capacity for its %d allocations now and draining it within %s",
			h.ID, h.Pool, h.InterruptAt.UTC().Format(time.RFC3339), left.Round(time.Second), allocs, deadline.Round(time.Second))})

	main := targets[0]
	r := Request{Activity: act, Target: main, BusinessUnit: loan.Borrower, Triggered: now, Decided: now,
		cause: "the spot interruption notice of " + h.ID + " arrived", decision: "replacing " + h.ID}
	r.Deadline = now.Add(c.scaleOutDeadline(loan.Borrower))
	release, busy := c.holdTarget(main, act)
	defer release()
	tl := &timeline{c: c, r: r, pool: "none"}
	tl.begin(ctx)
	a := &activity{c: c, tl: tl, d: demand.Demand{Target: main, Queued: allocs, PerAllocation: per}, exclude: map[string]string{}, replacing: true}
	rdata, _ := json.Marshal(map[string]any{"interrupted": h.ID, "allocations": allocs, "groups": names})
	c.record(ctx, journal.Event{Time: now, Kind: KindReplacing, Subject: main.String(), Activity: act, Actor: "controller", Data: rdata,
		Message: fmt.Sprintf("finding hosts for the %d allocations of interrupted spot host %s (%s) while it drains", allocs, h.ID, strings.Join(names, ", "))})

	// The drain starts now; the termination waits until the replacement
	// was asked for (or the notice is nearly over).
	asked := make(chan struct{})
	a.asked = sync.OnceFunc(func() { close(asked) })
	drained := make(chan error, 1)
	go func() { drained <- c.drainInterrupted(ctx, act, loan, h, n.ID, deadline, now, asked) }()
	_, err := a.run(ctx, snap)
	a.asked()
	if derr := <-drained; derr != nil && err == nil {
		err = derr
	}
	if err != nil {
		return err
	}
	if busy {
		// A scale-out of the group is in flight already: it sees the
		// allocations the drain queued, and places them.
		return nil
	}
	return c.place(ctx, a, c.now().Add(settleTime))
}

// drainInterrupted drains an interrupted host's node within deadline and
// terminates the host once asked is closed (the replacement was asked
// for; nil: at once) or the drain's deadline has passed, journaling how
// the drain went and how long before the reclaim it ended. A drain that
// fails or overruns does not keep the host: the cloud reclaims it anyway,
// and Nomad reschedules what it ran.
func (c *Controller) drainInterrupted(ctx context.Context, act string, loan pools.Loan, h providers.Host, node string, deadline time.Duration, noticed time.Time, asked <-chan struct{}) error {
	err := c.drain(ctx, node, deadline, "spot-interruption")
	if asked != nil {
		select {
		case <-asked:
		case <-c.cfg.Clock.After(max(noticed.Add(deadline).Sub(c.now()), 0)):
		case <-ctx.Done():
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	now := c.now()
	data, _ := json.Marshal(map[string]any{"host": h.ID, "node": node, "pool": h.Pool, "drain_seconds": now.Sub(noticed).Seconds(),
		"before_reclaim_seconds": h.InterruptAt.Sub(now).Seconds(), "interrupt_at": h.InterruptAt})
	why := fmt.Sprintf("spot interruption: drained %s before the cloud reclaims it", h.InterruptAt.Sub(now).Round(time.Second))
	if err != nil {
		c.record(ctx, journal.Event{Time: now, Kind: KindDrainFailed, Subject: "host/" + h.ID, Activity: act, Actor: "controller", Data: data,
			Message: fmt.Sprintf("draining interrupted spot host %s did not finish: %v; terminating it anyway, Nomad reschedules what it ran", h.ID, err)})
		why = "spot interruption: the drain did not finish (" + err.Error() + ")"
	} else {
		c.record(ctx, journal.Event{Time: now, Kind: KindDrained, Subject: "host/" + h.ID, Activity: act, Actor: "controller", Data: data,
			Message: fmt.Sprintf("drained interrupted spot host %s in %s, %s before the cloud reclaims it", h.ID, now.Sub(noticed).Round(100*time.Millisecond),
				h.InterruptAt.Sub(now).Round(time.Second))})
	}
	return c.terminate(ctx, providers.Host{ID: h.ID, Pool: h.Pool, Claim: h.Claim, LaunchedAt: loan.Since}, act, "controller", why)
}
