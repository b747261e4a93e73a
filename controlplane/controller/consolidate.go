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

// Run reconciles the ledger with Nomad at once and every ReconcileEvery,
// and gives back, every interval, the borrowed hosts a business unit no
// longer needs, until ctx ends.
func (c *Controller) Run(ctx context.Context, interval time.Duration) {
	reconcile := func() {
		if _, err := c.Reconcile(ctx); err != nil {
			c.cfg.Logger.Warn("reconciling the ledger with nomad", "err", err)
		}
	}
	reconcile()
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

// Consolidate returns at most one borrowed host per business unit per
// call: the emptiest one whose allocations fit on the other hosts that
// serve the business unit. It never returns a host while a scale-out of the
// business unit is in flight, nor one borrowed less than MinLoanAge ago.
// It returns the hosts it gave back.
func (c *Controller) Consolidate(ctx context.Context) ([]string, error) {
	if c.cfg.Shared == nil || c.cfg.Ledger == nil {
		return nil, nil
	}
	c.mu.Lock()
	busy := len(c.active) > 0
	c.mu.Unlock()
	if busy {
		return nil, nil // a scale-out is placing work; its hosts are not spare
	}
	now := c.cfg.Now()
	byBorrower := map[string][]pools.Loan{}
	for _, l := range c.cfg.Ledger.Loans() {
		if l.Tier == pools.TierShared && now.Sub(l.Since) >= MinLoanAge {
			byBorrower[l.Borrower] = append(byBorrower[l.Borrower], l)
		}
	}
	nodes, err := capacity.Nodes(ctx, c.cfg.Nomad)
	if err != nil {
		return nil, fmt.Errorf("reading nomad's nodes: %w", err)
	}
	var returned []string
	for _, borrower := range slices.Sorted(maps.Keys(byBorrower)) {
		loans := byBorrower[borrower]
		view, err := c.serving(ctx, nodes, borrower, loans)
		if err != nil {
			return returned, err
		}
		// Emptiest first.
		sort.Slice(loans, func(i, j int) bool {
			return len(view.allocs[loans[i].Host]) < len(view.allocs[loans[j].Host])
		})
		for _, loan := range loans {
			if !view.spare(loan.Host) {
				continue
			}
			why := fmt.Sprintf("its %d allocations fit on %s's other hosts", len(view.allocs[loan.Host]), loan.Borrower)
			if err := c.giveBack(ctx, loan, len(view.allocs[loan.Host]), "controller", why); err != nil {
				return returned, err
			}
			returned = append(returned, loan.HostName)
			break // one host per business unit per round: re-read before the next
		}
	}
	return returned, nil
}

// giveBack journals the intent, drains and returns a borrowed host, and
// journals the outcome. why says what made it spare.
func (c *Controller) giveBack(ctx context.Context, loan pools.Loan, allocs int, actor, why string) error {
	subject := "business-unit/" + loan.Borrower
	data, _ := json.Marshal(map[string]any{"host": loan.HostName, "node": loan.Host, "pool": loan.Pool, "borrower": loan.Borrower,
		"lender": loan.Lender, "claim": loan.Claim, "allocations": allocs})
	if _, err := c.cfg.Journal.Append(ctx, journal.Event{Time: c.cfg.Now(), Kind: KindIntentReturn, Subject: subject, Actor: actor, Data: data,
		Message: fmt.Sprintf("returning %s to %s: %s", loan.HostName, loan.Lender, why)}); err != nil {
		return fmt.Errorf("journaling the intent to return %s: %w", loan.HostName, err)
	}
	err := c.cfg.Shared.Delete(ctx, providers.Host{ID: loan.Host, Pool: loan.Pool, Claim: loan.Claim})
	if err != nil && !providers.IsNotFound(err) {
		c.record(ctx, journal.Event{Time: c.cfg.Now(), Kind: KindReturnFailed, Subject: subject, Actor: actor, Data: data,
			Message: fmt.Sprintf("returning %s failed: %v", loan.HostName, err)})
		return fmt.Errorf("returning %s: %w", loan.HostName, err)
	}
	c.record(ctx, journal.Event{Time: c.cfg.Now(), Kind: KindReturned, Subject: subject, Actor: actor, Data: data,
		Message: fmt.Sprintf("returned %s to %s after draining it", loan.HostName, loan.Lender)})
	return nil
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
func (c *Controller) serving(ctx context.Context, nodes []pools.NodeUsage, borrower string, loans []pools.Loan) (*servingView, error) {
	v := &servingView{free: map[string]demand.Size{}, allocs: map[string][]demand.Size{}, batch: map[string]bool{}}
	for _, n := range nodes {
		if n.Ready && n.Eligible && n.Meta[pools.MetaServes] == borrower {
			v.free[n.ID] = demand.Size{CPUMHz: int(n.CPU - n.UsedCPU), MemoryMB: int(n.MemoryMB - n.UsedMemoryMB)}
		}
	}
	q := (&nomad.QueryOptions{}).WithContext(ctx)
	for _, l := range loans {
		allocs, _, err := c.cfg.Nomad.Nodes().Allocations(l.Host, q)
		if err != nil {
			return nil, fmt.Errorf("reading the allocations of %s: %w", l.HostName, err)
		}
		for _, a := range allocs {
			if a.DesiredStatus != nomad.AllocDesiredStatusRun || (a.ClientStatus != nomad.AllocClientStatusRunning && a.ClientStatus != nomad.AllocClientStatusPending) {
				continue
			}
			if a.Job != nil && a.Job.Type != nil && (*a.Job.Type == nomad.JobTypeBatch || *a.Job.Type == nomad.JobTypeSysbatch) {
				v.batch[l.Host] = true
			}
			v.allocs[l.Host] = append(v.allocs[l.Host], allocSize(a))
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
