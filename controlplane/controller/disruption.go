package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/demand"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/controlplane/placement"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
)

// Journal event kinds of scale-in.
const (
	KindIntentReturn = "intent.return"
	KindReturned     = "capacity.returned"
	KindReturnFailed = "capacity.return_failed"
)

// MinLoanAge is how long a borrowed host is kept at least, so a flapping
// count does not borrow and return the same host in a loop.
const MinLoanAge = 30 * time.Second

// Consolidate is the disruption controller's pass: it starts giving back
// at most one host per business unit, each as a task beside the loop
// (giveBackTask), and none for a unit whose last give-back still runs: a rented cloud host before a borrowed shared
// one, the priciest and then the emptiest first, spot before on-demand when
// equal, and only one whose allocations fit on the other hosts that serve
// the business unit. It never gives back a host held less than MinLoanAge,
// one that runs a batch allocation, or anything while the model is not
// live (what it shows is unknown). Nor does it give back a host while an
// activity that concerns it is in flight: a scale-out or a spot
// interruption of the same business unit (the work it places lands on
// that unit's hosts, so none is spare), or one that claimed or follows
// the host. An activity of another business unit never holds it up, even
// one acquiring from the same pool. A spare host that waits is journaled
// (capacity.return_waits) once per business unit and activity, saying
// which activity it waits for and which pools that activity acquires
// from. It returns the hosts whose give-back it started.
func (c *Controller) Consolidate(ctx context.Context) ([]string, error) {
	if c.cfg.Ledger == nil {
		return nil, nil
	}
	snap := c.cfg.Cluster.Snapshot()
	if !snap.Live() {
		return nil, nil
	}
	holds := c.holds()
	var returned []string
	for _, g := range c.spare(ctx, snap, holds) {
		bu := g.cand.loan.Borrower
		c.mu.Lock()
		_, busy := c.givingBack[bu]
		c.mu.Unlock()
		if busy {
			continue // one give-back per business unit at a time
		}
		if g.wait != nil {
			c.returnWaits(ctx, g)
			continue
		}
		why := fmt.Sprintf("its %d allocations fit on %s's other hosts", g.allocs, bu)
		if c.giveBackTask(ctx, g.cand.loan, g.cand.node, g.allocs, "controller", why) {
			returned = append(returned, g.cand.loan.HostName)
		}
	}
	c.mu.Lock()
	for bu, act := range c.waitedFor {
		if _, ok := c.flights[act]; !ok {
			delete(c.waitedFor, bu) // over: a later wait is journaled again
		}
	}
	c.mu.Unlock()
	return returned, nil
}

// giveBackTask gives a host back as a task of its own, beside the
// control loop: its drain (up to the drain deadline and a minute) never
// holds up spot notices, health or demand. The business unit gives back
// nothing else until it ends, and a host is never given back twice at
// once; it reports whether it started. A failure is journaled
// (capacity.return_failed) and the next pass chooses again. The task ends
// with ctx (the term): the next term's reconcile pass finishes a return
// it journaled.
func (c *Controller) giveBackTask(ctx context.Context, loan pools.Loan, node string, allocs int, actor, why string) bool {
	bu := loan.Borrower
	c.mu.Lock()
	_, busy := c.givingBack[bu]
	if !busy {
		_, lending := c.lending[loan.Host]
		busy = c.returning(loan.Host) || lending
	}
	if busy {
		c.mu.Unlock()
		return false
	}
	c.givingBack[bu] = loan.Host
	c.giveBacks.Set(float64(len(c.givingBack)))
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() {
			c.mu.Lock()
			delete(c.givingBack, bu)
			c.giveBacks.Set(float64(len(c.givingBack)))
			c.mu.Unlock()
		}()
		if err := c.giveBack(ctx, loan, node, allocs, actor, why); err != nil {
			c.cfg.Logger.Warn("giving back a host", "host", loan.HostName, "business_unit", bu, "err", err)
		}
	}()
	return true
}

// returning says whether a give-back task runs for host; c.mu is held.
func (c *Controller) returning(host string) bool {
	for _, h := range c.givingBack {
		if h == host {
			return true
		}
	}
	return false
}

// returnWaits journals, once per business unit and activity, that a
// spare host waits for an activity in flight.
func (c *Controller) returnWaits(ctx context.Context, g giveBackChoice) {
	loan, f := g.cand.loan, g.wait
	c.mu.Lock()
	said := c.waitedFor[loan.Borrower] == f.activity
	c.waitedFor[loan.Borrower] = f.activity
	c.mu.Unlock()
	if said {
		return
	}
	why := f.why()
	c.cfg.Logger.Info("scale-in waits for an activity", "business_unit", loan.Borrower, "host", loan.HostName, "activity", f.activity,
		"for", f.what, "pools", poolLabel(slices.Collect(maps.Keys(f.pools))))
	data, _ := json.Marshal(map[string]any{"host": loan.HostName, "node": g.cand.node, "instance": loan.Host, "pool": loan.Pool, "tier": loan.Tier,
		"borrower": loan.Borrower, "allocations": g.allocs, "waits_for": f.activity, "activity_is": f.what,
		"acquiring_from": slices.Sorted(maps.Keys(f.pools))})
	c.record(ctx, journal.Event{Time: c.now(), Kind: KindReturnWaits, Subject: "business-unit/" + loan.Borrower, Actor: "controller", Data: data,
		Message: fmt.Sprintf("%s of %s is spare (its %d allocations fit on %s's other hosts), but scale-in %s", loan.HostName, loan.Borrower,
			g.allocs, loan.Borrower, why)})
}

// giveBackChoice is a host to give back, and how many allocations move;
// wait, when set, is the activity in flight it must wait for.
type giveBackChoice struct {
	cand   candidate
	allocs int
	wait   *inflight
}

// spare chooses, per business unit, the one host to give back now, in
// scale-in order, from the model and the cloud listings. A spare host that
// holds says an activity must end first comes back with wait set, when no
// host of its business unit can go now.
func (c *Controller) spare(ctx context.Context, snap *cluster.Snapshot, holds scaleInHolds) []giveBackChoice {
	nodes := snap.NodeUsageShared()
	nodeOf := byInstance(nodes)
	now := c.now()
	loans := c.cfg.Ledger.Loans()
	offering := c.rentedOfferings(ctx, loans)
	var out []giveBackChoice
	byBorrower := map[string][]candidate{}
	// Rented hosts go back before borrowed ones: while a business unit
	// has a rented host that scale-in may not consider yet (younger than
	// MinLoanAge, or not a ready node: booting, down in its grace), its
	// borrowed hosts wait, so the cheap internal host is not returned
	// ahead of the cloud host.
	rentedPending := map[string]bool{}
	for _, l := range loans {
		if l.Tier == pools.TierShared || c.cfg.Clouds[l.Pool] == nil {
			continue
		}
		if n, ok := nodeOf[l.Host]; now.Sub(l.Since) < MinLoanAge || !ok || !n.Ready {
			rentedPending[l.Borrower] = true
		}
	}
	for _, l := range loans {
		if now.Sub(l.Since) < MinLoanAge {
			continue
		}
		switch {
		case l.Tier == pools.TierShared && c.cfg.Shared != nil:
			if rentedPending[l.Borrower] || !c.borrowedSpareable(snap, l, now) {
				continue
			}
			byBorrower[l.Borrower] = append(byBorrower[l.Borrower], candidate{loan: l, node: l.Host})
		case l.Tier != pools.TierShared && c.cfg.Clouds[l.Pool] != nil:
			cp, _ := c.cfg.Pools.CloudPool(l.Pool)
			n, ok := nodeOf[l.Host]
			if !ok || !n.Ready {
				continue // not serving: the collector decides about it (gc.go)
			}
			o := offering[l.Host]
			price := 0.0
			if cp != nil {
				price = priceOf(cp, o)
			}
			byBorrower[l.Borrower] = append(byBorrower[l.Borrower], candidate{loan: l, node: n.ID, cloud: true, price: price, spot: o.CapacityType == providers.CapacitySpot})
		}
	}
	for _, borrower := range slices.Sorted(maps.Keys(byBorrower)) {
		cands := byBorrower[borrower]
		view := c.serving(snap, nodes, borrower, cands)
		sort.SliceStable(cands, func(i, j int) bool { return cands[i].before(cands[j], view) })
		var waits *giveBackChoice
		for _, cand := range cands {
			if !view.spare(cand.node) {
				continue
			}
			choice := giveBackChoice{cand: cand, allocs: len(view.allocs[cand.node]), wait: holds.of(cand.loan)}
			if choice.wait != nil {
				if waits == nil {
					waits = &choice
				}
				continue
			}
			waits = nil
			out = append(out, choice)
			break // one host per business unit per round: re-read before the next
		}
		if waits != nil {
			out = append(out, *waits)
		}
	}
	return out
}

// borrowedSpareable says whether scale-in may consider borrowed host l:
// only a host whose node the model shows (a missing node is unknown, not
// gone), and that is ready, or down for longer than the down grace with
// its work rescheduled by Nomad (the rule rented hosts follow). A loan
// adopted from Nomad's meta waits for an operator.
func (c *Controller) borrowedSpareable(snap *cluster.Snapshot, l pools.Loan, now time.Time) bool {
	if l.Adopted != "" {
		return false
	}
	n, ok := snap.Node(l.Host)
	if !ok {
		return false
	}
	if n.Ready() && n.Eligible {
		return true
	}
	c.mu.Lock()
	h := c.health[l.Host]
	c.mu.Unlock()
	return h != nil && !h.downSince.IsZero() && now.Sub(h.downSince) > c.cfg.DownGrace && unrescheduled(snap, l.Host) == 0
}

// candidate is a host scale-in may give back.
type candidate struct {
	loan pools.Loan
	// node is the Nomad node ID.
	node  string
	cloud bool
	price float64
	spot  bool
}

// before orders candidates for giving back: cloud before internal, the
// priciest first, then the emptiest, then spot before on-demand.
func (a candidate) before(b candidate, v *servingView) bool {
	if a.cloud != b.cloud {
		return a.cloud
	}
	if a.price != b.price {
		return a.price > b.price
	}
	if na, nb := len(v.allocs[a.node]), len(v.allocs[b.node]); na != nb {
		return na < nb
	}
	if a.spot != b.spot {
		return a.spot
	}
	return a.loan.Host < b.loan.Host
}

// rentedOfferings maps each live rented instance of the pools loans rent
// from to its offering, from the providers' listings (through the
// ownership tags). Pools with no loan are not listed.
func (c *Controller) rentedOfferings(ctx context.Context, loans []pools.Loan) map[string]providers.Offering {
	out := map[string]providers.Offering{}
	listed := map[string]bool{}
	for _, l := range loans {
		p, ok := c.cfg.Clouds[l.Pool]
		if l.Tier == pools.TierShared || !ok || listed[l.Pool] {
			continue
		}
		listed[l.Pool] = true
		name := l.Pool
		hosts, err := p.List(ctx, name)
		if err != nil {
			c.cfg.Logger.Warn("listing rented hosts", "pool", name, "err", err)
			continue
		}
		for _, h := range hosts {
			out[h.ID] = h.Offering
		}
	}
	return out
}

// giveBack journals the intent, drains the host and gives it back
// (a borrowed host to its lender through the ledger, a rented one
// terminated), and journals the outcome. why says what made it spare.
func (c *Controller) giveBack(ctx context.Context, loan pools.Loan, node string, allocs int, actor, why string) error {
	return c.giveBackWithin(ctx, loan, node, allocs, actor, why, "", c.returnDeadline(loan))
}

// giveBackWithin is giveBack with the drain's deadline, in activity act
// (when not ""). A borrowed host's loan closes with the reason it ends
// for (endReason: returned, lease expired, reclaimed).
func (c *Controller) giveBackWithin(ctx context.Context, loan pools.Loan, node string, allocs int, actor, why, act string, deadline time.Duration) error {
	subject := "business-unit/" + loan.Borrower
	// Why it ends, as of the intent: the journal, the ledger and the
	// outcome say the same, however long the drain takes.
	reason := endReason(loan, c.now())
	data, _ := json.Marshal(map[string]any{"host": loan.HostName, "node": node, "instance": loan.Host, "pool": loan.Pool, "tier": loan.Tier,
		"borrower": loan.Borrower, "lender": loan.Lender, "claim": loan.Claim, "allocations": allocs, "reason": reason})
	verb, to := "returning", " to "+loan.Lender
	if loan.Tier != pools.TierShared {
		verb, to = "terminating rented host", ""
	}
	if _, err := c.cfg.Journal.Append(ctx, journal.Event{Time: c.now(), Kind: KindIntentReturn, Subject: subject, Actor: actor, Data: data, Activity: act,
		Message: fmt.Sprintf("%s %s%s: %s", verb, loan.HostName, to, why)}); err != nil {
		return fmt.Errorf("journaling the intent to give back %s: %w", loan.HostName, err)
	}
	var err error
	if loan.Tier == pools.TierShared {
		err = c.cfg.Shared.Return(ctx, providers.Host{ID: loan.Host, Pool: loan.Pool, Claim: loan.Claim}, deadline, reason)
		if providers.IsNotFound(err) {
			err = nil
		}
	} else {
		err = c.drain(ctx, node, deadline, "scale-in")
		if err == nil {
			err = c.terminate(ctx, providers.Host{ID: loan.Host, Pool: loan.Pool, Claim: loan.Claim, LaunchedAt: loan.Since}, "", actor, "scale-in: "+why)
		}
	}
	if err != nil {
		c.record(ctx, journal.Event{Time: c.now(), Kind: KindReturnFailed, Subject: subject, Actor: actor, Data: data, Activity: act,
			Message: fmt.Sprintf("giving back %s failed: %v", loan.HostName, err)})
		return fmt.Errorf("giving back %s: %w", loan.HostName, err)
	}
	msg := fmt.Sprintf("returned %s to %s after draining it (%s)", loan.HostName, loan.Lender, reason)
	if loan.Tier != pools.TierShared {
		msg = fmt.Sprintf("terminated rented host %s of %s after draining it", loan.HostName, loan.Pool)
	}
	c.record(ctx, journal.Event{Time: c.now(), Kind: KindReturned, Subject: subject, Actor: actor, Data: data, Activity: act, Message: msg})
	return nil
}

// DrainNode drains a node on the Orchestrator and waits until the drain
// is over (see drain): the shared pool returns its hosts through it.
func (c *Controller) DrainNode(ctx context.Context, node string, deadline time.Duration, reason string) error {
	return c.drain(ctx, node, deadline, reason)
}

// drainDeadline bounds the drain of a rented host: the shared pool's drain
// deadline when there is one, else pools.DefaultDrainDeadline.
func (c *Controller) drainDeadline() time.Duration {
	if c.cfg.Pools != nil && c.cfg.Pools.Shared != nil && c.cfg.Pools.Shared.DrainDeadline > 0 {
		return c.cfg.Pools.Shared.DrainDeadline
	}
	return pools.DefaultDrainDeadline
}

// drain drains a rented host's node with deadline and waits until the
// drain is over: the model shows no drain in progress and none of the
// node's allocations left running. A node Nomad no longer has is drained.
// reason goes in the drain's metadata (cluster.DrainMeta).
func (c *Controller) drain(ctx context.Context, node string, deadline time.Duration, reason string) error {
	if node == "" {
		return nil
	}
	if err := c.cfg.Orchestrator.Drain(ctx, node, deadline, cluster.DrainMeta("spillway", reason)); err != nil {
		if cluster.IsNotFound(err) {
			return nil
		}
		return err
	}
	c.failpoint(FailDuringDrain)
	wait, cancel := context.WithCancel(ctx)
	defer cancel()
	timeout := c.cfg.Clock.AfterFunc(deadline+time.Minute, cancel)
	defer timeout.Stop()
	_, _, err := c.await(wait, func(s *cluster.Snapshot) (bool, error) {
		n, ok := s.Node(node)
		if !ok {
			return true, nil
		}
		running := 0
		for _, a := range s.AllocsOnNode(node) {
			if a.DesiredStatus == "run" && a.JobType != "system" && a.JobType != "sysbatch" {
				running++
			}
		}
		return !n.Draining && !n.Eligible && running == 0, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the drain of node %s: %w", node, err)
	}
	return nil
}

// servingView is the hosts serving one business unit: what is free on
// each, and the sizes of the allocations each runs.
type servingView struct {
	free   map[string]demand.Size
	allocs map[string][]demand.Size
	// batch marks hosts running a batch or sysbatch allocation.
	batch map[string]bool
	// hosts is what each serving node carries, and works what each
	// allocation of allocs asks of a node (nil: its job is not known):
	// an allocation fits only on a node that meets its job's node pool,
	// datacenters and constraints. Without hosts, size alone counts.
	hosts map[string]placement.Host
	works map[string][]*placement.Work
	// roomy is the nodes of free, in ID order, with room for the
	// smallest allocation of allocs (by CPU and by memory): the only ones
	// an allocation can move to. Worked out once per view, on first use:
	// copying and sorting every serving node for each candidate cost most
	// of a scale-in pass at 10,000 nodes.
	roomy []string
}

// serving is the view of the ready, eligible nodes serving borrower: the
// free room of each (from nodes), and the size, kind and placement rules
// of every allocation on the hosts of loans, the candidates to give back.
func (c *Controller) serving(s *cluster.Snapshot, nodes []pools.NodeUsage, borrower string, cands []candidate) *servingView {
	v := &servingView{free: map[string]demand.Size{}, allocs: map[string][]demand.Size{}, batch: map[string]bool{},
		hosts: map[string]placement.Host{}, works: map[string][]*placement.Work{}}
	for _, n := range nodes {
		if n.Ready && n.Eligible && n.Meta[pools.MetaServes] == borrower {
			v.free[n.ID] = demand.Size{CPUMHz: int(n.CPU - n.UsedCPU), MemoryMB: int(n.MemoryMB - n.UsedMemoryMB)}
			v.hosts[n.ID] = nodeHost(n)
		}
	}
	for _, cand := range cands {
		for _, a := range s.AllocsOnNode(cand.node) {
			if a.DesiredStatus != "run" || (a.ClientStatus != "running" && a.ClientStatus != "pending") {
				continue
			}
			if a.Batch() {
				v.batch[cand.node] = true
			}
			v.allocs[cand.node] = append(v.allocs[cand.node], demand.Size{CPUMHz: int(a.CPU), MemoryMB: int(a.MemoryMB)})
			var work *placement.Work
			if w, ok := workOf(s, a.Target()); ok {
				w.PerAlloc = demand.Size{} // the room is counted apart
				work = &w
			}
			v.works[cand.node] = append(v.works[cand.node], work)
		}
	}
	return v
}

// spare reports whether host can be given back now: it runs no batch
// allocation (a running batch is never killed to give a host back a few
// minutes sooner) and its allocations fit on the other serving hosts.
func (v *servingView) spare(host string) bool {
	return !v.batch[host] && v.fitsElsewhere(host)
}

// fitsElsewhere reports whether host's allocations fit, largest first, on
// the free room of the other serving hosts that meet their placement
// rules. An allocation whose job is not known fits nowhere: doubt keeps
// the host. So does a constraint that cannot be checked on a node (an
// attribute the model does not keep, a version): provisioning takes it as
// met to acquire a host, but scale-in does not give one back on it.
func (v *servingView) fitsElsewhere(host string) bool {
	if v.roomy == nil {
		v.roomy = v.roomyNodes()
	}
	allocs := v.allocs[host]
	order := make([]int, len(allocs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool { return allocs[order[i]].CPUMHz > allocs[order[j]].CPUMHz })
	// taken is what this host's allocations take of the others' room.
	taken := map[string]demand.Size{}
	for _, i := range order {
		a := allocs[i]
		placed := false
		for _, id := range v.roomy {
			if id == host {
				continue
			}
			f, t := v.free[id], taken[id]
			f.CPUMHz -= t.CPUMHz
			f.MemoryMB -= t.MemoryMB
			if f.CPUMHz < a.CPUMHz || f.MemoryMB < a.MemoryMB || !v.meets(host, i, id) {
				continue
			}
			taken[id] = demand.Size{CPUMHz: t.CPUMHz + a.CPUMHz, MemoryMB: t.MemoryMB + a.MemoryMB}
			placed = true
			break
		}
		if !placed {
			return false
		}
	}
	return true
}

// roomyNodes is roomy: the nodes with room for the view's smallest
// allocation, sorted (never nil).
func (v *servingView) roomyNodes() []string {
	minCPU, minMem, any := 0, 0, false
	for _, as := range v.allocs {
		for _, a := range as {
			if !any || a.CPUMHz < minCPU {
				minCPU = a.CPUMHz
			}
			if !any || a.MemoryMB < minMem {
				minMem = a.MemoryMB
			}
			any = true
		}
	}
	out := []string{}
	for id, f := range v.free {
		if f.CPUMHz >= minCPU && f.MemoryMB >= minMem {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// meets reports whether node id meets the placement rules of allocation
// i of host.
func (v *servingView) meets(host string, i int, id string) bool {
	if v.hosts == nil {
		return true
	}
	works := v.works[host]
	if i >= len(works) || works[i] == nil {
		return false
	}
	h, ok := v.hosts[id]
	if !ok {
		return false
	}
	verdict := placement.Check(*works[i], h)
	return verdict.Fits && len(verdict.Unsure) == 0
}
