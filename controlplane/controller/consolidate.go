package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/controlplane/capacity"
	"github.com/spillwayhq/spillway/controlplane/demand"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/internalpool"
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

// ReconcileEvery is how often Run compares the ledger with Nomad.
const ReconcileEvery = time.Minute

// Run reconciles at once and every ReconcileEvery (the ledger with Nomad,
// and the clouds with the ledger and the journal), resumes the scale-outs
// a restart interrupted, and gives back, every interval, the hosts a
// business unit no longer needs, until ctx ends.
func (c *Controller) Run(ctx context.Context, interval time.Duration) {
	reconcile := func() {
		if _, err := c.Reconcile(ctx); err != nil {
			c.cfg.Logger.Warn("reconciling the ledger with nomad", "err", err)
		}
		if _, err := c.ReconcileClouds(ctx); err != nil {
			c.cfg.Logger.Warn("reconciling the clouds", "err", err)
		}
	}
	if err := c.RestoreTimeToReady(ctx, c.cfg.Journal); err != nil {
		c.cfg.Logger.Warn("restoring measured times-to-ready", "err", err)
	}
	reconcile()
	if n, err := c.Resume(ctx); err != nil {
		c.cfg.Logger.Warn("resuming interrupted scale-outs", "err", err)
	} else if n > 0 {
		c.cfg.Logger.Info("resumed interrupted scale-outs", "count", n)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	r := time.NewTicker(ReconcileEvery)
	defer r.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.C:
			reconcile()
		case <-t.C:
			if _, err := c.Consolidate(ctx); err != nil {
				c.cfg.Logger.Warn("consolidating borrowed hosts", "err", err)
			}
		}
	}
}

// Consolidate gives back at most one host per business unit per call: a
// rented cloud host before a borrowed shared one, the priciest and then the
// emptiest first, spot before on-demand when equal, and only one whose
// allocations fit on the other hosts that serve the business unit. It never
// gives back a host while a scale-out is in flight (its hosts are not
// spare), one held less than MinLoanAge, or one that runs a batch
// allocation. A rented host that never became a Nomad node within its
// ready timeout is terminated. It returns the hosts it gave back.
func (c *Controller) Consolidate(ctx context.Context) ([]string, error) {
	if c.cfg.Ledger == nil {
		return nil, nil
	}
	c.mu.Lock()
	busy := len(c.active) > 0
	c.mu.Unlock()
	if busy {
		return nil, nil // a scale-out is placing work; its hosts are not spare
	}
	nodes, err := capacity.Nodes(ctx, c.cfg.Nomad)
	if err != nil {
		return nil, fmt.Errorf("reading nomad's nodes: %w", err)
	}
	nodeOf := byInstance(nodes)
	now := c.cfg.Now()
	loans := c.cfg.Ledger.Loans()
	offering := c.rentedOfferings(ctx, loans)
	var returned []string
	byBorrower := map[string][]candidate{}
	for _, l := range loans {
		if now.Sub(l.Since) < MinLoanAge {
			continue
		}
		switch {
		case l.Tier == pools.TierShared && c.cfg.Shared != nil:
			byBorrower[l.Borrower] = append(byBorrower[l.Borrower], candidate{loan: l, node: l.Host})
		case l.Tier != pools.TierShared && c.cfg.Clouds[l.Pool] != nil:
			cp, _ := c.cfg.Pools.CloudPool(l.Pool)
			n, ok := nodeOf[l.Host]
			if !ok || !n.Ready {
				if cp != nil && now.Sub(l.Since) > readyTimeout(c.ready.estimate(cp)) {
					h := providers.Host{ID: l.Host, Pool: l.Pool, Claim: l.Claim}
					if err := c.terminate(ctx, h, "", "controller", "it never became a ready nomad node"); err != nil {
						return returned, err
					}
					returned = append(returned, l.Host)
				}
				continue
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
		view, err := c.serving(ctx, nodes, borrower, cands)
		if err != nil {
			return returned, err
		}
		sort.SliceStable(cands, func(i, j int) bool { return cands[i].before(cands[j], view) })
		for _, cand := range cands {
			if !view.spare(cand.node) {
				continue
			}
			n := len(view.allocs[cand.node])
			why := fmt.Sprintf("its %d allocations fit on %s's other hosts", n, borrower)
			if err := c.giveBack(ctx, cand.loan, cand.node, n, "controller", why); err != nil {
				return returned, err
			}
			returned = append(returned, cand.loan.HostName)
			break // one host per business unit per round: re-read before the next
		}
	}
	return returned, nil
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
	subject := "business-unit/" + loan.Borrower
	data, _ := json.Marshal(map[string]any{"host": loan.HostName, "node": node, "instance": loan.Host, "pool": loan.Pool, "tier": loan.Tier,
		"borrower": loan.Borrower, "lender": loan.Lender, "claim": loan.Claim, "allocations": allocs})
	verb, to := "returning", " to "+loan.Lender
	if loan.Tier != pools.TierShared {
		verb, to = "terminating rented host", ""
	}
	if _, err := c.cfg.Journal.Append(ctx, journal.Event{Time: c.cfg.Now(), Kind: KindIntentReturn, Subject: subject, Actor: actor, Data: data,
		Message: fmt.Sprintf("%s %s%s: %s", verb, loan.HostName, to, why)}); err != nil {
		return fmt.Errorf("journaling the intent to give back %s: %w", loan.HostName, err)
	}
	var err error
	if loan.Tier == pools.TierShared {
		err = c.cfg.Shared.Delete(ctx, providers.Host{ID: loan.Host, Pool: loan.Pool, Claim: loan.Claim})
		if providers.IsNotFound(err) {
			err = nil
		}
	} else {
		err = c.drain(ctx, node, c.drainDeadline())
		if err == nil {
			err = c.terminate(ctx, providers.Host{ID: loan.Host, Pool: loan.Pool, Claim: loan.Claim}, "", actor, "scale-in: "+why)
		}
	}
	if err != nil {
		c.record(ctx, journal.Event{Time: c.cfg.Now(), Kind: KindReturnFailed, Subject: subject, Actor: actor, Data: data,
			Message: fmt.Sprintf("giving back %s failed: %v", loan.HostName, err)})
		return fmt.Errorf("giving back %s: %w", loan.HostName, err)
	}
	msg := fmt.Sprintf("returned %s to %s after draining it", loan.HostName, loan.Lender)
	if loan.Tier != pools.TierShared {
		msg = fmt.Sprintf("terminated rented host %s of %s after draining it", loan.HostName, loan.Pool)
	}
	c.record(ctx, journal.Event{Time: c.cfg.Now(), Kind: KindReturned, Subject: subject, Actor: actor, Data: data, Message: msg})
	return nil
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
// drain is over (internalpool.RequestDrain, WaitDrained). A node Nomad no
// longer has is drained.
func (c *Controller) drain(ctx context.Context, node string, deadline time.Duration) error {
	if node == "" {
		return nil
	}
	if err := internalpool.RequestDrain(ctx, c.cfg.Nomad, node, node, deadline, "scale-in"); err != nil {
		if providers.IsNotFound(err) {
			return nil
		}
		return err
	}
	c.failpoint(FailDuringDrain)
	return internalpool.WaitDrained(ctx, c.cfg.Nomad, node, node, deadline+time.Minute)
}

// servingView is the hosts serving one business unit: what is free on
// each, and the sizes of the allocations each runs.
type servingView struct {
	free   map[string]demand.Size
	allocs map[string][]demand.Size
	// batch marks hosts running a batch or sysbatch allocation.
	batch map[string]bool
}

// serving is the view of the ready, eligible nodes serving borrower: the
// free room of each (from nodes), and the size and kind of every
// allocation on the hosts of loans, the candidates to give back.
func (c *Controller) serving(ctx context.Context, nodes []pools.NodeUsage, borrower string, cands []candidate) (*servingView, error) {
	v := &servingView{free: map[string]demand.Size{}, allocs: map[string][]demand.Size{}, batch: map[string]bool{}}
	for _, n := range nodes {
		if n.Ready && n.Eligible && n.Meta[pools.MetaServes] == borrower {
			v.free[n.ID] = demand.Size{CPUMHz: int(n.CPU - n.UsedCPU), MemoryMB: int(n.MemoryMB - n.UsedMemoryMB)}
		}
	}
	q := (&nomad.QueryOptions{}).WithContext(ctx)
	for _, cand := range cands {
		allocs, _, err := c.cfg.Nomad.Nodes().Allocations(cand.node, q)
		if err != nil {
			return nil, fmt.Errorf("reading the allocations of %s: %w", cand.loan.HostName, err)
		}
		for _, a := range allocs {
			if a.DesiredStatus != nomad.AllocDesiredStatusRun || (a.ClientStatus != nomad.AllocClientStatusRunning && a.ClientStatus != nomad.AllocClientStatusPending) {
				continue
			}
			if a.Job != nil && a.Job.Type != nil && (*a.Job.Type == nomad.JobTypeBatch || *a.Job.Type == nomad.JobTypeSysbatch) {
				v.batch[cand.node] = true
			}
			v.allocs[cand.node] = append(v.allocs[cand.node], allocSize(a))
		}
	}
	return v, nil
}

func allocSize(a *nomad.Allocation) demand.Size {
	var sz demand.Size
	if a.AllocatedResources == nil {
		return sz
	}
	for _, t := range a.AllocatedResources.Tasks {
		if t == nil {
			continue
		}
		sz.CPUMHz += int(t.Cpu.CpuShares)
		sz.MemoryMB += int(t.Memory.MemoryMB)
	}
	return sz
}

// spare reports whether host can be given back now: it runs no batch
// allocation (a running batch is never killed to give a host back a few
// minutes sooner) and its allocations fit on the other serving hosts.
func (v *servingView) spare(host string) bool {
	return !v.batch[host] && v.fitsElsewhere(host)
}

// fitsElsewhere reports whether host's allocations fit, largest first, on
// the free room of the other serving hosts.
func (v *servingView) fitsElsewhere(host string) bool {
	free := map[string]demand.Size{}
	for id, f := range v.free {
		if id != host {
			free[id] = f
		}
	}
	allocs := append([]demand.Size(nil), v.allocs[host]...)
	sort.Slice(allocs, func(i, j int) bool { return allocs[i].CPUMHz > allocs[j].CPUMHz })
	ids := make([]string, 0, len(free))
	for id := range free {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, a := range allocs {
		placed := false
		for _, id := range ids {
			f := free[id]
			if f.CPUMHz >= a.CPUMHz && f.MemoryMB >= a.MemoryMB {
				f.CPUMHz -= a.CPUMHz
				f.MemoryMB -= a.MemoryMB
				free[id] = f
				placed = true
				break
			}
		}
		if !placed {
			return false
		}
	}
	return true
}
