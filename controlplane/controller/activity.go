package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/demand"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/internalpool"
)

// roundsPerRun bounds how often one request for capacity plans again
// after a tier fell short (an offering ran out, a pool failed): the
// fallback across offerings and clouds happens within it. A need still
// unmet after it is retried by the activity, with backoff, until its
// deadline plus Config.ActivityGrace.
const roundsPerRun = 6

// activity is the capacity side of one scale-out: it plans hosts on the
// ladder, asks every planned tier at once, plans again for what fell short,
// and follows the rented hosts until they are ready.
type activity struct {
	c  *Controller
	tl *timeline
	d  demand.Demand
	// size is the allocatable size of one host unit.
	size demand.Size
	// exclude holds pools this activity gave up on, and why.
	exclude map[string]string
	round   int
	// requested is set once capacity was first requested; borrowed counts
	// the shared hosts it got.
	requested bool
	borrowed  int
	replacing bool
	pools     []string
	// asked, if set, is called once run has asked for what it needs.
	asked func()
	// met says whether the last run found every host it needed,
	// lastUnmet why not.
	met       bool
	lastUnmet string
	// unservable, once set, says why no host can take the queued work:
	// the activity ends unmet or partial, it asks for nothing more.
	unservable string
	// said holds the reasons capacity.unmet was journaled for, once each;
	// ended is set once the activity's end is journaled; matched once the
	// tiers that cannot take the work are ruled out (match).
	said    map[string]bool
	ended   bool
	matched bool
	// sharedRuledOut is set when match ruled the shared pool out: its
	// hosts do not size the need then, cloudUnit does when known (the
	// smallest offering that can take the work, cloudUnitWhat).
	sharedRuledOut bool
	cloudUnit      demand.Size
	cloudUnitWhat  string
	// unfit maps a cloud pool to its instance types match ruled out.
	unfit map[string]map[string]string

	// perHost is how many of the group's allocations a host unit takes,
	// allocs how many queued allocations the next plan is for (then
	// need × perHost), and pending the rented hosts still booting when
	// the run began: a link counts them in use (links.go).
	perHost, allocs int
	pending         []*rented

	mu     sync.Mutex
	rented []*rented
}

// run finds hosts for what Nomad queued and waits until the rented ones are
// ready Nomad nodes. met says whether every host it needed was found.
func (a *activity) run(ctx context.Context, s *cluster.Snapshot) (met bool, err error) {
	c, r := a.c, a.tl.r
	nodes := s.NodeUsageShared()
	// Rented hosts of the business unit still booting (a resumed activity,
	// or one started while another's hosts boot) are followed, not rented
	// again.
	pending := a.pendingRentals(ctx, nodes)
	met = true
	if a.d.Unplaced() > 0 {
		a.tl.begin(ctx)
		if down := c.downHosts(nodes, r.BusinessUnit); len(down) > 0 && !a.replacing {
			// The work of hosts down in their grace is queued again: what
			// is found now replaces them, while they are kept.
			a.replacing = true
			data, _ := json.Marshal(map[string]any{"down": down, "queued": a.d.Unplaced()})
			c.record(ctx, journal.Event{Time: c.now(), Kind: KindReplacing, Subject: r.Target.String(), Activity: r.Activity, Actor: "controller", Data: data,
				Message: fmt.Sprintf("finding hosts for %d queued allocations of %s while %d of its rented hosts are down in their grace (%s); they are kept until it ends",
					a.d.Unplaced(), r.BusinessUnit, len(down), strings.Join(down, ", "))})
		}
		a.match(ctx, s, nodes)
		need, perHost, stop := a.hostsFor(ctx, nodes)
		if stop {
			return false, nil
		}
		c.cfg.Logger.Info("capacity needed", "activity", r.Activity, "target", r.Target.String(), "queued", a.d.Unplaced(),
			"per_host", perHost, "hosts", need, "booting", len(pending), "reason", a.d.Blocked.Reason())
		a.perHost, a.pending = perHost, pending
		if need -= len(pending); need > 0 {
			a.allocs = max(a.d.Unplaced()-len(pending)*max(perHost, 1), 0)
			met = a.acquire(ctx, need) == 0
		}
	}
	if a.asked != nil {
		a.asked()
	}
	a.mu.Lock()
	follow := a.rented
	for _, p := range pending {
		if !slices.ContainsFunc(a.rented, func(h *rented) bool { return h.host.ID == p.host.ID }) {
			follow = append(follow, p)
		}
	}
	a.mu.Unlock()
	if len(follow) == 0 {
		if a.borrowed > 0 {
			// Only borrowed hosts: they are running, ready Nomad nodes already.
			at := c.now()
			a.tl.phase(ctx, PhaseHostsRunning, at, "the borrowed hosts are running")
			a.tl.phase(ctx, PhaseNodesReady, at, "the borrowed hosts are ready Nomad nodes serving "+r.BusinessUnit)
		}
		return met, nil
	}
	return met, c.follow(ctx, a.tl, follow, a.replace)
}

// hostsFor turns the queued work into hosts: a shared-pool host is the unit
// when the shared pool may take the work; else the smallest sized
// offering that can. When no offering has a size, the unit is a guess
// (the largest host serving the business unit), and work that does not
// fit the guess gets one host per allocation: a cloud host may be bigger,
// and matchTiers, not a guess, says what no tier can take. stop says
// that nothing is to be asked for (journaled as unmet).
func (a *activity) hostsFor(ctx context.Context, nodes []pools.NodeUsage) (need, perHost int, stop bool) {
	c, r := a.c, a.tl.r
	unit, known := "", true
	var err error
	switch {
	case !a.sharedRuledOut:
		a.size, unit, err = c.hostUnit(nodes, r.BusinessUnit, true)
	case a.cloudUnit.CPUMHz > 0:
		a.size, unit = a.cloudUnit, a.cloudUnitWhat
	default:
		known = false
		a.size, unit, err = c.hostUnit(nodes, r.BusinessUnit, false)
	}
	if err == nil {
		need, perHost, err = demand.HostsFor(a.d.Unplaced(), a.d.PerAllocation, a.size)
	}
	if err != nil && !known {
		c.cfg.Logger.Info("the size of a rented host is not known (no offering gives cpu_mhz and memory_mb): one host per queued allocation",
			"activity", r.Activity, "target", r.Target.String(), "guess", unit, "err", err)
		return a.d.Unplaced(), 1, false
	}
	switch {
	case errors.Is(err, demand.ErrDoesNotFit):
		why := fmt.Sprintf("task group %s asks %d MHz / %d MB per allocation; %s gives %d MHz / %d MB",
			r.Target.Group, a.d.PerAllocation.CPUMHz, a.d.PerAllocation.MemoryMB, unit, a.size.CPUMHz, a.size.MemoryMB)
		a.unservable = why
		a.unmet(ctx, 0, why, "no host can take it, so none is asked for")
		return 0, 0, true
	case err != nil:
		a.unmet(ctx, 0, err.Error(), a.retrying())
		return 0, 0, true
	}
	return need, perHost, false
}

// replace rents a successor for a host that was not ready in time, then
// terminates it: the replacement is asked for first, so the capacity
// never dips. It returns the hosts the new plan rented.
func (a *activity) replace(ctx context.Context, h *rented) []*rented {
	c := a.c
	waited := c.now().Sub(h.launched).Round(time.Second)
	data, _ := json.Marshal(map[string]any{"host": h.host.ID, "pool": h.pool.Name, "waited_seconds": waited.Seconds()})
	c.record(ctx, journal.Event{Time: c.now(), Kind: KindHostStuck, Subject: "host/" + h.host.ID, Activity: a.tl.r.Activity, Actor: "controller", Data: data,
		Message: fmt.Sprintf("rented host %s of %s is not a ready nomad node after %s; replacing it", h.host.ID, h.pool.Name, waited)})
	a.mu.Lock()
	before := len(a.rented)
	a.mu.Unlock()
	a.acquire(ctx, 1)
	_, listed := nodeOfInstance(c.cfg.Cluster.Snapshot(), h.host.ID)
	if c.wasSeen(h.host.ID) && !listed {
		// Its node was seen and is missing now: unknown, not a host that
		// never booted. It is kept under the down-host rule (Health).
		c.cfg.Logger.Info("a rented host whose node went missing is kept under the down grace", "host", h.host.ID, "pool", h.pool.Name)
	} else if err := c.terminate(ctx, h.host, a.tl.r.Activity, "controller", fmt.Sprintf("not ready after %s; its replacement is asked for", waited)); err != nil {
		c.cfg.Logger.Error("terminating a stuck host", "host", h.host.ID, "err", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.rented[before:])
}

// pendingRentals returns the business unit's rented hosts that are still
// booting: in the ledger, with no Nomad node yet. A host whose node has
// registered is not pending, whatever its state: a node being drained for
// a return, or down, is not a boot to wait for (nor to replace).
func (a *activity) pendingRentals(ctx context.Context, nodes []pools.NodeUsage) []*rented {
	c := a.c
	if c.cfg.Ledger == nil {
		return nil
	}
	registered := byInstance(nodes)
	var out []*rented
	for _, l := range c.cfg.Ledger.Loans() {
		if _, joined := registered[l.Host]; l.Tier == pools.TierShared || l.Borrower != a.tl.r.BusinessUnit || joined || c.wasSeen(l.Host) {
			continue // a node seen and missing now is down, not booting
		}
		cp, ok := c.cfg.Pools.CloudPool(l.Pool)
		if _, has := c.cfg.Clouds[l.Pool]; !ok || !has {
			continue
		}
		out = append(out, &rented{host: providers.Host{ID: l.Host, Pool: l.Pool, Claim: l.Claim, LaunchedAt: l.Since}, pool: cp, claim: l.Claim, launched: l.Since})
		a.pools = append(a.pools, l.Pool)
		c.concern(a.tl.r.Activity, l.Pool, l.Host) // followed: the collector leaves it to this activity
	}
	return out
}

// acquire plans need more hosts and asks the planned tiers in parallel,
// planning again for whatever fell short, until the need is met, nothing is
// left to ask, or roundsPerRun rounds have passed. What stays unmet is
// journaled with the ladder's reasons (quota, paused pools, budgets,
// exhausted offerings, throttling) and returned.
func (a *activity) acquire(ctx context.Context, need int) int {
	c, r := a.c, a.tl.r
	log := c.cfg.Logger.With("activity", r.Activity, "target", r.Target.String())
	var lastPlan pools.Plan
	// linkShort is what links held back: not asked again this run, and
	// journaled with reason link.
	var links []pools.LinkLimit
	linkShort := 0
	for first := a.round; need > 0 && a.round < first+roundsPerRun; a.round++ {
		plan := a.plan(ctx, c.cfg.Cluster.Snapshot().NodeUsageShared(), need)
		lastPlan = plan
		taken := plan.Taken()
		log.Info("capacity plan", "round", a.round, "need", need, "steps", stepsString(taken), "unmet", plan.Unmet, "at_risk", plan.AtRisk, "skipped", skipsString(plan.Skipped))
		if len(plan.Links) > 0 {
			links = plan.Links
			linkShort += plan.Unmet
			log.Info("a link holds the plan back", "links", fmt.Sprint(plan.Links), "hosts", plan.Unmet, "allocations", plan.UnmetAllocs)
			if len(taken) == 0 {
				need = 0
				break
			}
		}
		if len(taken) == 0 {
			break
		}
		hedges := a.hedges(ctx, plan)
		if !a.requested {
			a.requested = true
			var names []string
			for _, s := range append(taken, hedges...) {
				names = append(names, s.Pool)
			}
			a.tl.setPool(poolLabel(append(a.pools, names...)))
			// The plan's steps and what it skipped, and why: the console's
			// source waterfall reads them.
			a.tl.phaseWith(ctx, PhaseCapacityRequested, c.now(), "asked "+stepsString(append(taken, hedges...)),
				map[string]any{"steps": stepsData(append(taken, hedges...)), "skipped": skipsData(plan.Skipped)})
		}
		got := make([]int, len(taken)+len(hedges))
		var wg sync.WaitGroup
		for i, step := range append(taken, hedges...) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i] = a.request(ctx, step)
			}()
		}
		wg.Wait()
		short := 0
		for i, step := range taken {
			short += max(step.Hosts-got[i], 0)
		}
		for i := range hedges {
			short -= got[len(taken)+i] // a hedge that came through covers a shortfall
		}
		need = short
	}
	a.tl.setPool(poolLabel(a.pools))
	if need > 0 {
		why := skipsString(lastPlan.Skipped)
		if why == "" {
			why = "every tier that could give hosts fell short"
		}
		a.unmet(ctx, need, why, a.retrying())
	}
	if linkShort > 0 {
		a.unmetLink(ctx, linkShort, links, a.retrying())
	}
	return need + linkShort
}

// retrying says what an activity that found no host does next.
func (a *activity) retrying() string {
	limit := a.tl.r.Deadline.Add(a.c.cfg.ActivityGrace)
	if !a.c.now().Before(limit) {
		return "the deadline and its grace (scale_out.grace) have passed, so the scale-out ends"
	}
	return "asking again with backoff until " + limit.UTC().Format(time.RFC3339) + " (the deadline plus scale_out.grace)"
}

// outcome is how the activity ends with work still queued: partial if it
// got hosts, else unmet.
func (a *activity) outcome() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.borrowed+len(a.rented) > 0 {
		return OutcomePartial
	}
	return OutcomeUnmet
}

// match rules out, once per activity, the tiers none of whose hosts can
// take the group's work (matchTiers: node pool, datacenters, constraints,
// size), and the offerings of the others that cannot: only matching
// capacity is acquired. The plan lists each pool ruled out with its
// reason; capacity.matched says what was ruled out and which constraints
// could not be checked before a host exists.
func (a *activity) match(ctx context.Context, s *cluster.Snapshot, nodes []pools.NodeUsage) {
	if a.matched {
		return
	}
	a.matched = true
	c, r := a.c, a.tl.r
	w, ok := workOf(s, r.Target)
	if !ok {
		return
	}
	tiers := c.tiers(nodes, r.BusinessUnit)
	m := matchTiers(w, tiers)
	if !slices.ContainsFunc(tiers, func(t tier) bool { return t.shared }) {
		a.sharedRuledOut = true // the business unit may not borrow
	}
	a.mu.Lock()
	for pool, why := range m.out {
		if a.exclude[pool] == "" {
			a.exclude[pool] = why
		}
	}
	a.unfit = m.unfit
	a.mu.Unlock()
	if sp := c.cfg.Pools.Shared; sp != nil && m.out[sp.Name] != "" {
		a.sharedRuledOut = true
	}
	a.cloudUnit, a.cloudUnitWhat = m.unit, m.unitWhat
	if len(m.out) == 0 && len(m.unfit) == 0 && len(m.unsure) == 0 {
		return
	}
	var parts []string
	for _, pool := range slices.Sorted(maps.Keys(m.out)) {
		parts = append(parts, pool+": "+m.out[pool])
	}
	for _, pool := range slices.Sorted(maps.Keys(m.unfit)) {
		for _, it := range slices.Sorted(maps.Keys(m.unfit[pool])) {
			parts = append(parts, pool+" "+it+": "+m.unfit[pool][it])
		}
	}
	msg := "every tier may take the work of " + r.Target.String()
	if len(parts) > 0 {
		msg = "ruled out for " + r.Target.String() + ": " + strings.Join(parts, "; ")
	}
	if len(m.unsure) > 0 {
		msg += "; taken as met, as they cannot be checked before a host exists: " + strings.Join(m.unsure, ", ")
	}
	data, _ := json.Marshal(map[string]any{"ruled_out": m.out, "unfit": m.unfit, "unsure": m.unsure})
	c.record(ctx, journal.Event{Time: c.now(), Kind: KindMatched, Subject: r.Target.String(), Activity: r.Activity, Actor: "controller", Data: data, Message: msg})
}

// excluded says why the activity gave up on pool, or "".
func (a *activity) excluded(pool string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.exclude[pool]
}

// plan runs the ladder on the current state.
func (a *activity) plan(ctx context.Context, nodes []pools.NodeUsage, need int) pools.Plan {
	c, r := a.c, a.tl.r
	in := pools.LadderInput{Config: c.cfg.Pools, BusinessUnit: r.BusinessUnit, Need: need, Now: c.now(), Deadline: r.Deadline,
		Unavailable: c.memory}
	if len(c.cfg.Pools.Links) > 0 {
		// Links count allocations: the group's traffic each, how many a
		// host takes, and what is behind each link now.
		in.Traffic, in.PerHost, in.Allocs = c.trafficOf(ctx, r.Target), a.perHost, a.allocs
		snap := c.cfg.Cluster.Snapshot()
		in.Links = c.linkStates(snap, a.booting(snap), a.perHost, in.Traffic)
	}
	a.allocs = 0 // a later round plans for need × perHost
	var skipped []pools.Skip
	paused := c.PausedPools()
	if shared := c.cfg.Pools.Shared; shared != nil && c.cfg.Shared != nil {
		c.cfg.Ledger.SetLimits(c.cfg.Pools.Limits(pools.OwnedHosts(c.cfg.Pools, nodes)))
		in.Borrowed = c.cfg.Ledger.Borrowed(r.BusinessUnit)
		switch p, isPaused := paused[shared.Name]; {
		case isPaused:
			skipped = append(skipped, pools.Skip{Tier: pools.TierShared, Pool: shared.Name, Reason: fmt.Sprintf("paused by %s (%s)", p.By, p.Reason)})
		case a.excluded(shared.Name) != "":
			skipped = append(skipped, pools.Skip{Tier: pools.TierShared, Pool: shared.Name, Reason: a.excluded(shared.Name)})
		default:
			free, err := c.cfg.Shared.Free(ctx)
			if err != nil {
				skipped = append(skipped, pools.Skip{Tier: pools.TierShared, Pool: shared.Name, Reason: "counting free hosts failed: " + err.Error()})
			}
			in.SharedFree = free
		}
	}
	if len(c.cfg.Pools.CloudPools) > 0 {
		states, s := c.cloudStates(ctx)
		skipped = append(skipped, s...)
		for name, st := range states {
			cp, _ := c.cfg.Pools.CloudPool(name)
			if p, isPaused := paused[name]; isPaused {
				st.Hosts = cp.MaxHosts
				skipped = append(skipped, pools.Skip{Tier: pools.TierCold, Pool: name, Reason: fmt.Sprintf("paused by %s (%s)", p.By, p.Reason)})
			} else if why := a.excluded(name); why != "" {
				st.Hosts = cp.MaxHosts
				skipped = append(skipped, pools.Skip{Tier: pools.TierCold, Pool: name, Reason: why})
			}
			a.mu.Lock()
			st.Unfit = slices.Collect(maps.Keys(a.unfit[name]))
			a.mu.Unlock()
			states[name] = st
		}
		in.Cloud = states
	}
	plan := pools.Ladder(in)
	// A pool forced full above would read "at max_hosts"; say why instead.
	var kept []pools.Skip
	for _, s := range plan.Skipped {
		forced := false
		for _, f := range skipped {
			forced = forced || f.Pool == s.Pool
		}
		if !forced {
			kept = append(kept, s)
		}
	}
	plan.Skipped = append(skipped, kept...)
	return plan
}

// hedges returns extra steps for the cloud steps whose time-to-ready leaves
// less than hedgeMargin before the deadline: the same number of hosts from
// the next pool the ladder offers as a fallback. The surplus is released by
// scale-in once the activity is over.
func (a *activity) hedges(ctx context.Context, plan pools.Plan) []pools.Step {
	c, r := a.c, a.tl.r
	if r.Deadline.IsZero() || c.now().After(r.Deadline) {
		// Past the deadline every tier is late: no surplus is bought.
		return nil
	}
	var out []pools.Step
	used := map[string]int{}
	for _, s := range plan.Taken() {
		used[s.Pool] += s.Hosts
	}
	now := c.now()
	for _, s := range plan.Taken() {
		if s.Tier != pools.TierWarm && s.Tier != pools.TierCold {
			continue
		}
		slack := r.Deadline.Sub(now.Add(s.TimeToReady))
		if slack >= hedgeMargin(s.TimeToReady) {
			continue
		}
		for _, f := range plan.Steps {
			if f.Pool == s.Pool || (f.Tier != pools.TierWarm && f.Tier != pools.TierCold) {
				continue
			}
			if f.Link != "" && (f.Link == s.Link || plan.LinkLimited(f.Link)) {
				continue // a hedge would put more behind the link than it carries
			}
			spare := f.Available - used[f.Pool]
			if spare <= 0 || f.TimeToReady >= s.TimeToReady {
				continue
			}
			h := f
			h.Hosts = min(s.Hosts, spare)
			h.Spot = min(h.Spot, h.Hosts)
			used[f.Pool] += h.Hosts
			out = append(out, h)
			data, _ := json.Marshal(map[string]any{"pool": s.Pool, "hedge_pool": h.Pool, "hosts": h.Hosts, "slack_seconds": slack.Seconds(),
				"time_to_ready_seconds": s.TimeToReady.Seconds()})
			c.record(ctx, journal.Event{Time: now, Kind: KindHedge, Subject: r.Target.String(), Activity: r.Activity, Actor: "controller", Data: data,
				Message: fmt.Sprintf("hedging: %s needs about %s to be ready, which leaves %s before the deadline; also asking %s for %d %s (the surplus is released after the deadline)",
					s.Pool, s.TimeToReady.Round(1e9), slack.Round(1e9), h.Pool, h.Hosts, plural(h.Hosts, "host", "hosts"))})
			break
		}
	}
	return out
}

// request asks one step's tier for its hosts and returns how many it got.
func (a *activity) request(ctx context.Context, step pools.Step) int {
	c := a.c
	a.mu.Lock()
	a.pools = append(a.pools, step.Pool)
	round := a.round
	a.mu.Unlock()
	c.concern(a.tl.r.Activity, step.Pool)
	switch step.Tier {
	case pools.TierShared:
		n, err := a.borrow(ctx, step, round)
		a.mu.Lock()
		a.borrowed += n
		if err != nil {
			a.exclude[step.Pool] = err.Error()
		}
		a.mu.Unlock()
		return n
	case pools.TierWarm, pools.TierCold:
		hosts, err := c.rent(ctx, a.tl, step, round)
		for _, h := range hosts {
			c.concern(a.tl.r.Activity, step.Pool, h.host.ID)
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		a.rented = append(a.rented, hosts...)
		if err != nil && !fallsBack(err) {
			a.exclude[step.Pool] = err.Error()
		}
		return len(hosts)
	}
	return 0
}

// borrow takes step.Hosts hosts from the shared pool. A borrowed host is a
// ready Nomad node at once.
func (a *activity) borrow(ctx context.Context, step pools.Step, round int) (int, error) {
	c, r, d := a.c, a.tl.r, a.d
	claimID := fmt.Sprintf("%s-%s", r.Activity, step.Pool)
	if round > 0 {
		claimID = fmt.Sprintf("%s-%d", claimID, round)
	}
	intent, _ := json.Marshal(map[string]any{"claim": claimID, "pool": step.Pool, "tier": step.Tier, "hosts": step.Hosts,
		"borrower": r.BusinessUnit, "queued": d.Unplaced(), "blocked": d.Blocked.Reason()})
	// The intent is durable before the provider acts, so a restart knows
	// what may be half done.
	if _, err := c.cfg.Journal.Append(ctx, journal.Event{Time: c.now(), Kind: KindIntent, Subject: r.Target.String(), Activity: r.Activity,
		Actor: "controller", Data: intent,
		Message: fmt.Sprintf("borrowing %d shared %s for %d queued allocations (%s)", step.Hosts, plural(step.Hosts, "host", "hosts"), d.Unplaced(), d.Blocked.Reason())}); err != nil {
		return 0, fmt.Errorf("journaling the intent to claim %s: %w", claimID, err)
	}
	hosts, err := c.cfg.Shared.Create(ctx, internalpool.Claim(c.cfg.Pools.Shared, claimID, r.BusinessUnit, step.Hosts))
	got := make([]string, 0, len(hosts))
	for _, h := range hosts {
		got = append(got, h.Tags[internalpool.TagNodeName])
		c.concern(r.Activity, step.Pool, h.ID)
	}
	fields := map[string]any{"claim": claimID, "pool": step.Pool, "hosts": got}
	if err != nil && len(hosts) == 0 {
		fields["error"], fields["reason"] = err.Error(), providers.ErrorKind(err)
		data, _ := json.Marshal(fields)
		c.record(ctx, journal.Event{Time: c.now(), Kind: KindClaimFailed, Subject: r.Target.String(), Activity: r.Activity, Actor: "controller",
			Data: data, Message: fmt.Sprintf("borrowing from %s failed: %v", step.Pool, err)})
		if providers.IsInsufficientCapacity(err) || providers.IsQuota(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("borrowing from %s: %w", step.Pool, err)
	}
	data, _ := json.Marshal(fields)
	c.record(ctx, journal.Event{Time: c.now(), Kind: KindClaimed, Subject: r.Target.String(), Activity: r.Activity, Actor: "controller",
		Data: data, Message: fmt.Sprintf("borrowed %d %s from %s: %v", len(hosts), plural(len(hosts), "host", "hosts"), step.Pool, got)})
	return len(hosts), nil
}

// hostUnit is the allocatable size of one host unit: a shared-pool host's
// when there is a shared pool the activity may borrow from (shared), else
// the largest node serving the business unit (a weight-1 cloud instance is
// taken to be that big).
// It says which host that is, in words.
func (c *Controller) hostUnit(nodes []pools.NodeUsage, bu string, shared bool) (demand.Size, string, error) {
	if c.cfg.Pools.Shared != nil && shared {
		if s, err := sharedHostSize(c.cfg.Pools.Shared, nodes); err == nil {
			return s, "a host of the shared pool " + c.cfg.Pools.Shared.Name, nil
		}
	}
	var best demand.Size
	for _, n := range nodes {
		if n.Ready && n.Meta[pools.MetaServes] == bu && int(n.CPU) > best.CPUMHz {
			best = demand.Size{CPUMHz: int(n.CPU), MemoryMB: int(n.MemoryMB)}
		}
	}
	if best.CPUMHz == 0 {
		return best, "", fmt.Errorf("no host serving %s or of the shared pool is known to nomad, so the size of a host is unknown", bu)
	}
	return best, "the largest host serving " + bu, nil
}

func stepsString(steps []pools.Step) string {
	parts := make([]string, 0, len(steps))
	for _, s := range steps {
		parts = append(parts, fmt.Sprintf("%s %s for %d", s.Tier, s.Pool, s.Hosts))
	}
	return strings.Join(parts, ", ")
}

// stepsData and skipsData are a plan's steps and skips as journal data.
func stepsData(steps []pools.Step) []map[string]any {
	out := make([]map[string]any, 0, len(steps))
	for _, s := range steps {
		out = append(out, map[string]any{"tier": s.Tier, "pool": s.Pool, "hosts": s.Hosts})
	}
	return out
}

func skipsData(skips []pools.Skip) []map[string]any {
	out := make([]map[string]any, 0, len(skips))
	for _, s := range skips {
		out = append(out, map[string]any{"tier": s.Tier, "pool": s.Pool, "reason": s.Reason})
	}
	return out
}

func skipsString(skips []pools.Skip) string {
	parts := make([]string, 0, len(skips))
	for _, s := range skips {
		parts = append(parts, fmt.Sprintf("%s: %s", s.Pool, s.Reason))
	}
	return strings.Join(parts, "; ")
}

// sharedHostSize is the allocatable size of a shared-pool host (the
// largest, so a mixed pool does not under-size).
func sharedHostSize(shared *pools.SharedPool, nodes []pools.NodeUsage) (demand.Size, error) {
	var best demand.Size
	for _, n := range nodes {
		if shared.Selector.Matches(n.NodePool, n.NodeClass, n.Meta) && int(n.CPU) > best.CPUMHz {
			best = demand.Size{CPUMHz: int(n.CPU), MemoryMB: int(n.MemoryMB)}
		}
	}
	if best.CPUMHz == 0 {
		return best, fmt.Errorf("no host of the shared pool %s is known to nomad", shared.Name)
	}
	return best, nil
}
