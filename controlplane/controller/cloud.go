package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/bootstrap"
)

// Journal event kinds of renting cloud hosts.
const (
	KindHedge      = "capacity.hedged"
	KindHostReady  = "host.ready"
	KindHostStuck  = "host.stuck"
	KindHostSeen   = "host.registered"
	KindTerminate  = "intent.terminate"
	KindTerminated = "capacity.terminated"
	KindAdopted    = "reconcile.adopted"
)

// RentalLease is the lease recorded in the ledger for a rented cloud host.
// A rental has no lender to give it back to; the lease only bounds how long
// the ledger shows it without a renewal, for chargeback.
const RentalLease = 24 * time.Hour

// hedgeMargin is the least slack a cloud tier must leave before the
// deadline; with less, the controller also asks the next tier.
func hedgeMargin(ttr time.Duration) time.Duration { return max(ttr/5, 5*time.Second) }

// readyTimeout is how long a launched host may take to become a ready
// Nomad node before it is replaced: twice the expected time-to-ready, and
// at least 30s.
func readyTimeout(ttr time.Duration) time.Duration { return max(2*ttr, 30*time.Second) }

// readiness learns each cloud pool's time-to-ready from the hosts that
// became ready.
type readiness struct {
	mu      sync.Mutex
	samples map[string][]time.Duration
}

func (r *readiness) add(pool string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.samples == nil {
		r.samples = map[string][]time.Duration{}
	}
	s := append(r.samples[pool], d)
	if len(s) > 50 {
		s = s[len(s)-50:]
	}
	r.samples[pool] = s
}

// estimate is the pool's expected time-to-ready (pools.EstimateTimeToReady).
func (r *readiness) estimate(cp *pools.CloudPool) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return pools.EstimateTimeToReady(cp.TimeToReady, r.samples[cp.Name])
}

// RestoreTimeToReady replays the measured times-to-ready from the journal,
// and which rented hosts' nodes were ever seen (host.registered,
// host.ready).
func (c *Controller) RestoreTimeToReady(ctx context.Context, q journal.Querier) error {
	since := c.now().Add(-7 * 24 * time.Hour)
	// Whether a node was seen is kept for as long as its host is rented,
	// however long ago that began.
	seenSince := since
	if c.cfg.Ledger != nil {
		for _, l := range c.cfg.Ledger.Loans() {
			if l.Since.Before(seenSince) {
				seenSince = l.Since
			}
		}
	}
	if err := journal.Each(ctx, q, journal.Filter{Kind: KindHostSeen, Since: seenSince}, func(ev journal.Event) error {
		var d struct {
			Host string `json:"host"`
		}
		if json.Unmarshal(ev.Data, &d) == nil && d.Host != "" {
			c.mu.Lock()
			c.seen[d.Host] = ev.Time
			c.mu.Unlock()
		}
		return nil
	}); err != nil {
		return err
	}
	return journal.Each(ctx, q, journal.Filter{Kind: KindHostReady, Since: since}, func(ev journal.Event) error {
		var d struct {
			Pool    string  `json:"pool"`
			Host    string  `json:"host"`
			Seconds float64 `json:"seconds"`
		}
		if json.Unmarshal(ev.Data, &d) == nil && d.Pool != "" && d.Seconds > 0 {
			c.ready.add(d.Pool, time.Duration(d.Seconds*float64(time.Second)))
		}
		if d.Host != "" {
			c.mu.Lock()
			c.readyOnce[d.Host] = ev.Time
			if _, ok := c.seen[d.Host]; !ok {
				c.seen[d.Host] = ev.Time
			}
			c.mu.Unlock()
		}
		return nil
	})
}

// rented is one cloud host an activity launched and follows.
type rented struct {
	host     providers.Host
	pool     *pools.CloudPool
	claim    string
	launched time.Time
	running  time.Time
	ready    time.Time
	node     string
	replaced bool
	// owner is the activity whose claim rented it (followedElsewhere);
	// elsewhere says that it was another's in flight when last asked.
	owner     string
	ownerSet  bool
	elsewhere bool
}

// cloudStates reads what the ladder needs about every cloud pool that has
// a provider: the hosts it runs now (from the provider, through the
// ownership tags, through a listing the plans begun together share), their
// cost and the learnt time-to-ready. A pool whose
// listing fails is reported full, with the reason in skipped.
func (c *Controller) cloudStates(ctx context.Context) (map[string]pools.CloudState, []pools.Skip) {
	states := map[string]pools.CloudState{}
	var skipped []pools.Skip
	for _, cp := range c.cfg.Pools.CloudPools {
		if _, ok := c.cfg.Clouds[cp.Name]; !ok {
			states[cp.Name] = pools.CloudState{Hosts: cp.MaxHosts}
			skipped = append(skipped, pools.Skip{Tier: pools.TierCold, Pool: cp.Name, Reason: "no credentials for its cloud are configured (clouds in the serve config)"})
			continue
		}
		l, err := c.poolListing(ctx, cp.Name, true)
		if err != nil {
			states[cp.Name] = pools.CloudState{Hosts: cp.MaxHosts}
			skipped = append(skipped, pools.Skip{Tier: pools.TierCold, Pool: cp.Name, Reason: "listing its hosts failed: " + err.Error()})
			continue
		}
		st := pools.CloudState{TimeToReady: c.ready.estimate(cp)}
		for _, h := range l.hosts {
			st.Hosts++
			st.CostPerHour += priceOf(cp, h.Offering)
		}
		states[cp.Name] = st
	}
	return states, skipped
}

// priceOf is the configured hourly price of a host's offering.
func priceOf(cp *pools.CloudPool, o providers.Offering) float64 {
	if o.Price > 0 {
		return o.Price
	}
	for _, io := range cp.Offerings {
		if io.InstanceType == o.InstanceType {
			return io.Price.Of(o.CapacityType)
		}
	}
	return 0
}

// byInstance maps the cloud instance ID of every rented host's node (its
// spillway.instance meta) to the node.
func byInstance(nodes []pools.NodeUsage) map[string]pools.NodeUsage {
	out := map[string]pools.NodeUsage{}
	for _, n := range nodes {
		if id := n.Meta[bootstrap.MetaInstance]; id != "" {
			out[id] = n
		}
	}
	return out
}

// nodeOfInstance is the node of a rented host, by its instance ID, with
// its usage: a look-up of the one node, for loops that run on every
// change of the model (a walk of every node's usage each time cost most
// of the scale simulation's CPU at 10,000 nodes).
func nodeOfInstance(snap *cluster.Snapshot, instance string) (pools.NodeUsage, bool) {
	id, ok := snap.NodeIDBy(bootstrap.MetaInstance, instance)
	if !ok {
		return pools.NodeUsage{}, false
	}
	return snap.Usage(id)
}

func nodeReady(n pools.NodeUsage) bool {
	return n.Ready && n.Eligible && n.Meta[bootstrap.MetaPrePull] != bootstrap.PrePullPending
}

// rent launches step.Hosts hosts of a cloud pool for the activity: the
// spot share and the on-demand rest as two claims, each journaled before
// the provider is called, each falling back through the pool's usable
// offerings (the provider tries them in order). Offerings that ran out are
// remembered, so the next plan leaves them out. It returns the hosts it
// got; fewer than asked is not an error.
func (c *Controller) rent(ctx context.Context, tl *timeline, step pools.Step, round int) ([]*rented, error) {
	r := tl.r
	cp, ok := c.cfg.Pools.CloudPool(step.Pool)
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownPool, step.Pool)
	}
	p := c.cfg.Clouds[step.Pool]
	var spot, onDemand []providers.Offering
	for _, o := range step.Offerings {
		if o.CapacityType == providers.CapacitySpot {
			spot = append(spot, o)
		} else {
			onDemand = append(onDemand, o)
		}
	}
	parts := []struct {
		suffix    string
		count     int
		offerings []providers.Offering
	}{
		{"s", step.Spot, append(slices.Clone(spot), onDemand...)},
		{"o", step.Hosts - step.Spot, append(slices.Clone(onDemand), spot...)},
	}
	var out []*rented
	var errs []error
	for _, part := range parts {
		if part.count <= 0 {
			continue
		}
		claimID := fmt.Sprintf("%s-%s-%d%s", r.Activity, step.Pool, round, part.suffix)
		hosts, err := c.launch(ctx, tl, cp, p, step, claimID, part.count, part.offerings)
		out = append(out, hosts...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// launch is one claim: journal the intent, render the bootstrap config,
// call the provider, record each host in the ledger.
func (c *Controller) launch(ctx context.Context, tl *timeline, cp *pools.CloudPool, p providers.Provider, step pools.Step,
	claimID string, count int, offerings []providers.Offering) ([]*rented, error) {
	r := tl.r
	keys := make([]string, len(offerings))
	for i, o := range offerings {
		keys[i] = o.Key()
	}
	// The account's launch rate first: the intent's time is the call's.
	sent, err := c.waitLaunch(ctx, p)
	if err != nil {
		return nil, err
	}
	intent, _ := json.Marshal(map[string]any{"claim": claimID, "pool": cp.Name, "tier": step.Tier, "hosts": count, "provider": cp.Provider,
		"borrower": r.BusinessUnit, "offerings": keys, "time_to_ready_seconds": step.TimeToReady.Seconds()})
	if _, err := c.cfg.Journal.Append(ctx, journal.Event{Time: c.now(), Kind: KindIntent, Subject: r.Target.String(), Activity: r.Activity,
		Actor: "controller", Data: intent,
		Message: fmt.Sprintf("renting %d %s from %s (%s) for %s, first choice %s", count, plural(count, "host", "hosts"), cp.Name, cp.Provider, r.BusinessUnit, keys[0])}); err != nil {
		return nil, fmt.Errorf("journaling the intent to claim %s: %w", claimID, err)
	}
	c.failpoint(FailAfterClaimJournaled)
	rendered, err := bootstrap.Render(cp.Bootstrap, bootstrap.ClaimInfo{Provider: cp.Provider, Pool: cp.Name, Claim: claimID, Serves: r.BusinessUnit})
	if err == nil && rendered.Pointer() {
		err = fmt.Errorf("the bootstrap config of pool %s needs a pointer config (%s), which per-claim configs cannot use: make it smaller", cp.Name, rendered.ConfigURL)
	}
	if err != nil {
		c.claimFailed(ctx, r, cp.Name, claimID, err)
		return nil, err
	}
	pool := cp.ProviderPool()
	pool.UserData = rendered.UserData
	hosts, err := p.Create(ctx, providers.Claim{ID: claimID, Pool: pool, Count: count, Offerings: offerings})
	c.launched(p, sent, err)
	if len(hosts) > 0 {
		c.poolChanged(cp.Name, c.now())
	}
	if err != nil && !providers.IsThrottled(err) {
		// A throttle slows the account (launched), and marks no offering.
		c.memory.RecordError(cp.Name, c.now(), err, offerings...)
	}
	if len(hosts) > 0 {
		c.failpoint(FailAfterCloudCall)
	}
	now := c.now()
	var out []*rented
	var ids []string
	for _, h := range hosts {
		if err := c.recordRental(ctx, h, step.Tier, r.BusinessUnit, claimID, "rented for "+r.Target.String()); err != nil {
			return out, err
		}
		out = append(out, &rented{host: h, pool: cp, claim: claimID, launched: now})
		ids = append(ids, fmt.Sprintf("%s (%s)", h.ID, h.Offering.Key()))
	}
	fields := map[string]any{"claim": claimID, "pool": cp.Name, "hosts": ids}
	if err != nil {
		fields["error"], fields["reason"] = err.Error(), providers.ErrorKind(err)
	}
	data, _ := json.Marshal(fields)
	switch {
	case len(hosts) == 0 && err != nil:
		c.claimFailed(ctx, r, cp.Name, claimID, err)
	case err != nil:
		c.record(ctx, journal.Event{Time: now, Kind: KindClaimed, Subject: r.Target.String(), Activity: r.Activity, Actor: "controller", Data: data,
			Message: fmt.Sprintf("rented %d of %d from %s: %v; the rest falls back: %v", len(hosts), count, cp.Name, ids, err)})
	default:
		c.record(ctx, journal.Event{Time: now, Kind: KindClaimed, Subject: r.Target.String(), Activity: r.Activity, Actor: "controller", Data: data,
			Message: fmt.Sprintf("rented %d %s from %s: %v", len(hosts), plural(len(hosts), "host", "hosts"), cp.Name, ids)})
	}
	if err != nil && !fallsBack(err) {
		return out, err
	}
	return out, nil
}

// fallsBack reports whether a provider error means "try another offering or
// pool" rather than "stop".
func fallsBack(err error) bool {
	return providers.IsInsufficientCapacity(err) || providers.IsQuota(err) || providers.IsThrottled(err) || providers.IsUnavailable(err)
}

func (c *Controller) claimFailed(ctx context.Context, r Request, pool, claimID string, err error) {
	data, _ := json.Marshal(map[string]any{"claim": claimID, "pool": pool, "error": err.Error(), "reason": providers.ErrorKind(err)})
	c.record(ctx, journal.Event{Time: c.now(), Kind: KindClaimFailed, Subject: r.Target.String(), Activity: r.Activity, Actor: "controller",
		Data: data, Message: fmt.Sprintf("renting from %s failed: %v", pool, err)})
}

// recordRental puts a rented host in the ledger, for chargeback and so
// scale-in and the reconciler know whom it serves.
func (c *Controller) recordRental(ctx context.Context, h providers.Host, tier pools.Tier, bu, claim, reason string) error {
	if tier == "" {
		tier = pools.TierCold
	}
	at := h.LaunchedAt
	if at.IsZero() || at.After(c.now()) {
		at = c.now()
	}
	_, err := c.cfg.Ledger.Borrow(ctx, pools.BorrowRequest{Host: h.ID, HostName: h.ID, Tier: tier, Pool: h.Pool, Lender: h.Pool,
		Borrower: bu, At: at, Lease: RentalLease, Reason: reason, Claim: claim})
	if errors.Is(err, pools.ErrHostLent) {
		return nil // recorded before (an adopted or resumed claim)
	}
	if err != nil {
		return fmt.Errorf("recording rented host %s in the ledger: %w", h.ID, err)
	}
	return nil
}

// follow waits until every rented host is a ready Nomad node serving the
// business unit, recording hosts_running and nodes_ready when the last one
// gets there. A host not ready within readyTimeout of its launch is
// terminated and replaced (replace rents its successor). It returns when
// all are ready or ctx ends.
func (c *Controller) follow(ctx context.Context, tl *timeline, hosts []*rented, replace func(context.Context, *rented) []*rented) error {
	if len(hosts) == 0 {
		return nil
	}
	var runningAt, othersAt time.Time
	for {
		snap := c.cfg.Cluster.Snapshot()
		if !snap.Live() {
			// Unknown: a node missing from a stale model is not a host
			// that failed to boot. Wait for the model.
			if err := c.pause(ctx, snap); err != nil {
				return err
			}
			continue
		}
		states := c.hostStates(ctx, hosts)
		now := c.now()
		allRunning, allReady := true, true
		// watching: a host not ready yet is this activity's to look up
		// in the model; without one it waits for the others' hosts at
		// the poll, not on every change of the model.
		watching := false
		// Hosts another scale-out follows are asked about at the poll.
		others := othersAt.IsZero() || now.Sub(othersAt) >= c.cfg.Poll
		if others {
			othersAt = now
		}
		next := make([]*rented, 0, len(hosts))
		for _, h := range hosts {
			if h.replaced {
				continue
			}
			next = append(next, h)
			if !h.ready.IsZero() {
				continue // ready: nothing more to follow
			}
			if others {
				h.elsewhere = c.followedElsewhere(tl.r.Activity, h)
			}
			if h.elsewhere {
				// Another scale-out in flight rented it and follows it
				// (and replaces it): this one waits for it to be ready.
				if at, ok := c.readiedAt(h.host.ID, others); ok {
					h.ready = at
					if h.running.IsZero() {
						h.running = at
					}
					continue
				}
				allReady = false
				if h.running.IsZero() && states[h.host.ID] == providers.HostRunning {
					h.running = now
				}
				if h.running.IsZero() {
					allRunning = false
				}
				continue
			}
			if h.running.IsZero() && states[h.host.ID] == providers.HostRunning {
				h.running = now
			}
			n, registered := nodeOfInstance(snap, h.host.ID)
			if registered {
				c.sawNode(ctx, h.host.ID, n, h.pool.Name)
			}
			if registered && h.running.IsZero() {
				h.running = now // a node registered, so the host runs
			}
			if registered && n.Meta[pools.MetaServes] != tl.r.BusinessUnit {
				c.markServes(ctx, n, tl.r.BusinessUnit)
			}
			if h.ready.IsZero() && registered && nodeReady(n) && n.Meta[pools.MetaServes] == tl.r.BusinessUnit {
				h.ready, h.node = now, n.ID
				took := now.Sub(h.launched)
				// Once per host: a host several scale-outs follow (after a
				// restart, each resumed one follows every booting host of
				// its business unit) is one time-to-ready sample and one
				// host.ready, not one per follower.
				c.mu.Lock()
				_, already := c.readyOnce[h.host.ID]
				if !already {
					c.readyOnce[h.host.ID] = now
				}
				c.mu.Unlock()
				if !already {
					c.ready.add(h.pool.Name, took)
					data, _ := json.Marshal(map[string]any{"pool": h.pool.Name, "host": h.host.ID, "node": n.ID, "seconds": took.Seconds(), "claim": h.claim})
					c.record(ctx, journal.Event{Time: now, Kind: KindHostReady, Subject: "host/" + h.host.ID, Activity: tl.r.Activity, Actor: "controller", Data: data,
						Message: fmt.Sprintf("rented host %s of %s is a ready nomad node after %s", h.host.ID, h.pool.Name, took.Round(100*time.Millisecond))})
				}
			}
			if h.ready.IsZero() {
				allReady = false
				watching = true
				if timeout := readyTimeout(c.ready.estimate(h.pool)); now.Sub(h.launched) > timeout {
					h.replaced = true
					next = append(next[:len(next)-1], replace(ctx, h)...)
					allRunning = false
					continue
				}
			}
			if h.running.IsZero() {
				allRunning = false
			}
		}
		hosts = next
		if !allReady && !now.Before(tl.r.Deadline.Add(c.cfg.ActivityGrace)) {
			// Past the deadline plus grace the activity stops following
			// (and replacing) hosts that are not ready: it ends with what
			// it has; the collector sees to hosts that never register.
			c.cfg.Logger.Info("not following rented hosts past the deadline plus grace", "activity", tl.r.Activity, "hosts", len(hosts))
			return nil
		}
		if allRunning && runningAt.IsZero() {
			runningAt = now
			tl.phase(ctx, PhaseHostsRunning, now, fmt.Sprintf("%d rented %s running", len(hosts), plural(len(hosts), "host is", "hosts are")))
		}
		if allReady {
			tl.phase(ctx, PhaseNodesReady, now, fmt.Sprintf("%d rented %s serving %s", len(hosts), plural(len(hosts), "host is a ready nomad node", "hosts are ready nomad nodes"), tl.r.BusinessUnit))
			return nil
		}
		wait := c.pause
		if !watching {
			wait = func(ctx context.Context, _ *cluster.Snapshot) error { return c.sleep(ctx, c.cfg.Poll) }
		}
		if err := wait(ctx, snap); err != nil {
			return err
		}
	}
}

// sawNode records, once per rented host, that its Nomad node was seen,
// in memory and in the journal (host.registered), so that a restart
// still knows: a node seen once and missing now is unknown, never a host
// that did not boot.
func (c *Controller) sawNode(ctx context.Context, host string, n pools.NodeUsage, pool string) {
	c.mu.Lock()
	_, known := c.seen[host]
	if !known {
		c.seen[host] = c.now()
	}
	c.mu.Unlock()
	if known {
		return
	}
	data, _ := json.Marshal(map[string]any{"host": host, "node": n.ID, "node_name": n.Name, "pool": pool})
	c.record(ctx, journal.Event{Time: c.now(), Kind: KindHostSeen, Subject: "host/" + host, Actor: "controller", Data: data,
		Message: fmt.Sprintf("rented host %s of %s registered as nomad node %s", host, pool, n.Name)})
}

// followedElsewhere says whether rented host h is another activity's to
// follow: its claim's (a claim is "<activity>-<pool>-…"), in flight.
// Every booting host of a business unit is each of its scale-outs'
// capacity to wait for, but only the one that rented it looks it up in
// the model on each change and replaces it: a hundred scale-outs resumed
// after a restart each looked up all their business unit's thousand
// booting hosts on every change of the model.
func (c *Controller) followedElsewhere(activity string, h *rented) bool {
	if !h.ownerSet {
		h.owner, _, _ = strings.Cut(h.claim, "-"+h.pool.Name+"-")
		h.ownerSet = true
	}
	if h.owner == "" || h.owner == h.claim || h.owner == activity {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, inFlight := c.flights[h.owner]
	return inFlight
}

// readiedAt is when a rented host first became a ready node serving its
// business unit, as a scale-out following it saw; nothing unless ask.
func (c *Controller) readiedAt(host string, ask bool) (time.Time, bool) {
	if !ask {
		return time.Time{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	at, ok := c.readyOnce[host]
	return at, ok
}

// wasSeen says whether a rented host's Nomad node was ever seen.
func (c *Controller) wasSeen(host string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.seen[host]
	return ok
}

// hostStates reads the state of the hosts not yet seen running: one
// listing per pool (through the ownership tags), not one call per host.
func (c *Controller) hostStates(ctx context.Context, hosts []*rented) map[string]providers.HostState {
	out := map[string]providers.HostState{}
	listed := map[string]map[string]providers.HostState{}
	for _, h := range hosts {
		if !h.running.IsZero() || h.replaced {
			continue
		}
		states, seen := listed[h.pool.Name]
		if !seen {
			var err error
			if states, err = c.listPool(ctx, h.pool.Name); err != nil {
				c.cfg.Logger.Warn("listing rented hosts", "pool", h.pool.Name, "err", err)
			}
			listed[h.pool.Name] = states
		}
		if st, ok := states[h.host.ID]; ok {
			out[h.host.ID] = st
		}
	}
	return out
}

// listingFresh is how long a pool's listing of rented hosts serves every
// activity that follows hosts of the pool, or plans to rent from it. Each
// follows on every change of the model, and a hundred scale-outs
// triggered together plan together: without it, a hundred scale-outs
// listed the pool a hundred times per model change (DescribeInstances of
// every instance, far past EC2's default 20 a second), and a hundred
// plans at once spent the account's whole Describe burst in one moment.
// A host's state only marks when it ran; its node registering is seen in
// the model at once.
const listingFresh = 2 * time.Second

// listings holds each pool's last listing and the one in flight, and
// when Spillway last changed what each pool runs (poolChanged).
type listings struct {
	mu      sync.Mutex
	pools   map[string]*listing
	changed map[string]time.Time
}

// listing is one listing of a pool: done is closed once hosts, states and
// err are set.
type listing struct {
	at     time.Time
	done   chan struct{}
	hosts  []providers.Host
	states map[string]providers.HostState
	err    error
}

// listPool returns the states of the live rented hosts of pool, by
// instance ID, from a shared listing (poolListing). The map is shared: it
// must not be changed.
func (c *Controller) listPool(ctx context.Context, pool string) (map[string]providers.HostState, error) {
	l, err := c.poolListing(ctx, pool, false)
	if err != nil {
		return nil, err
	}
	return l.states, nil
}

// poolListing returns the live rented hosts of pool from a listing begun
// less than listingFresh ago (waiting for it if it is in flight) or a new
// one. For a plan (current), the listing must also have begun after
// Spillway last changed what the pool runs (poolChanged): a plan counts
// the pool's hosts against its max_hosts, and must see its own and
// others' last rentals and terminations. The listing is shared: it must
// not be changed. A failed listing is not kept, and one its owner gave up
// (its context ended) is no answer for the others, who list again.
func (c *Controller) poolListing(ctx context.Context, pool string, current bool) (*listing, error) {
	for {
		l, err := c.sharedListing(ctx, pool, current)
		if err != nil && ctx.Err() == nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			// The listing's owner gave up (its activity ended, a
			// reclaim's deadline came): no answer for this caller, who
			// lists again.
			continue
		}
		return l, err
	}
}

// sharedListing is one try of poolListing: the listing in flight or
// fresh, or a new one begun by this caller.
func (c *Controller) sharedListing(ctx context.Context, pool string, current bool) (*listing, error) {
	l := &c.listings
	now := c.now()
	l.mu.Lock()
	if l.pools == nil {
		l.pools = map[string]*listing{}
	}
	cur := l.pools[pool]
	if cur != nil && now.Sub(cur.at) < listingFresh && (!current || cur.at.After(l.changed[pool])) {
		l.mu.Unlock()
		select {
		case <-cur.done:
			if cur.err != nil {
				return nil, cur.err
			}
			return cur, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	cur = &listing{at: now, done: make(chan struct{})}
	l.pools[pool] = cur
	l.mu.Unlock()
	live, err := c.cfg.Clouds[pool].List(ctx, pool)
	cur.hosts, cur.states, cur.err = live, make(map[string]providers.HostState, len(live)), err
	for _, h := range live {
		cur.states[h.ID] = h.State
	}
	if cur.err != nil {
		l.mu.Lock()
		if l.pools[pool] == cur {
			delete(l.pools, pool)
		}
		l.mu.Unlock()
	}
	close(cur.done)
	if err != nil {
		return nil, err
	}
	return cur, nil
}

// poolChanged records that Spillway changed what pool runs at at: a
// launch got hosts, or a host was terminated. A listing begun before then
// no longer serves a plan.
func (c *Controller) poolChanged(pool string, at time.Time) {
	l := &c.listings
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.changed == nil {
		l.changed = map[string]time.Time{}
	}
	if at.After(l.changed[pool]) {
		l.changed[pool] = at
	}
}

// markServes sets spillway.serves on a rented host's node (a per-pool
// bootstrap config, such as a launch template's, cannot carry it).
func (c *Controller) markServes(ctx context.Context, n pools.NodeUsage, bu string) {
	v := bu
	if err := c.cfg.Orchestrator.SetNodeMeta(ctx, n.ID, map[string]*string{pools.MetaServes: &v}); err != nil {
		c.cfg.Logger.Warn("marking a rented node", "node", n.Name, "err", err)
	}
}

// terminate journals the intent, terminates a rented host, and closes its
// ledger entry. A host already gone counts as terminated.
func (c *Controller) terminate(ctx context.Context, h providers.Host, activity, actor, why string) error {
	p, ok := c.cfg.Clouds[h.Pool]
	if !ok {
		return fmt.Errorf("%w %q: no provider", ErrUnknownPool, h.Pool)
	}
	data, _ := json.Marshal(map[string]any{"host": h.ID, "instance": h.ID, "pool": h.Pool, "claim": h.Claim, "reason": why})
	subject := "host/" + h.ID
	if _, err := c.cfg.Journal.Append(ctx, journal.Event{Time: c.now(), Kind: KindTerminate, Subject: subject, Activity: activity, Actor: actor, Data: data,
		Message: fmt.Sprintf("terminating %s of %s: %s", h.ID, h.Pool, why)}); err != nil {
		return fmt.Errorf("journaling the intent to terminate %s: %w", h.ID, err)
	}
	if err := p.Delete(ctx, h); err != nil && !providers.IsNotFound(err) {
		c.record(ctx, journal.Event{Time: c.now(), Kind: KindReturnFailed, Subject: subject, Activity: activity, Actor: actor, Data: data,
			Message: fmt.Sprintf("terminating %s failed: %v", h.ID, err)})
		return fmt.Errorf("terminating %s: %w", h.ID, err)
	}
	c.poolChanged(h.Pool, c.now())
	if _, lent := c.cfg.Ledger.Loan(h.ID); lent {
		if _, err := c.cfg.Ledger.Return(ctx, h.ID, c.now(), why); err != nil && !errors.Is(err, pools.ErrNotLent) {
			return fmt.Errorf("closing the ledger entry of %s: %w", h.ID, err)
		}
	}
	c.record(ctx, journal.Event{Time: c.now(), Kind: KindTerminated, Subject: subject, Activity: activity, Actor: actor, Data: data,
		Message: fmt.Sprintf("terminated %s of %s: %s", h.ID, h.Pool, why)})
	return nil
}

// poolLabel joins the pools of an activity for the phase metric's label.
func poolLabel(names []string) string {
	slices.Sort(names)
	names = slices.Compact(names)
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, "+")
}
