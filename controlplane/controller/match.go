package controller

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/demand"
	"github.com/spillwayhq/spillway/controlplane/placement"
	"github.com/spillwayhq/spillway/policies"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers/bootstrap"
)

// tier is a pool that may serve a business unit, and the kinds of host it
// gives: one per offering of a cloud pool, one per kind of node of the
// shared pool.
type tier struct {
	pool   string
	shared bool
	hosts  []tierHost
	// gone holds the hosts left out as unavailable (available).
	gone []tierHost
}

// tierHost is one kind of host a tier gives.
type tierHost struct {
	placement.Host
	// instanceType is a cloud offering's; "" in the shared pool.
	instanceType string
}

// tiers lists the tiers that may serve business unit bu: the shared pool
// when the unit may borrow, and every cloud pool Spillway has a provider
// for.
func (c *Controller) tiers(nodes []pools.NodeUsage, bu string) []tier {
	var out []tier
	if unit, ok := c.cfg.Pools.BusinessUnit(bu); ok && c.cfg.Pools.Shared != nil && c.cfg.Shared != nil && unit.Borrowing.Quota > 0 {
		out = append(out, tier{pool: c.cfg.Pools.Shared.Name, shared: true, hosts: sharedHosts(c.cfg.Pools.Shared, nodes, bu)})
	}
	for _, cp := range c.cfg.Pools.CloudPools {
		if _, ok := c.cfg.Clouds[cp.Name]; ok {
			out = append(out, tier{pool: cp.Name, hosts: cloudHosts(cp, bu)})
		}
	}
	return out
}

// sharedHosts are the kinds of node of the shared pool as a borrow by bu
// leaves them (internalpool sets the borrower's meta). With no node of
// the pool known to Nomad, its selector is all that is known.
func sharedHosts(sp *pools.SharedPool, nodes []pools.NodeUsage, bu string) []tierHost {
	what := "a host of the shared pool " + sp.Name
	borrowed := func(meta map[string]string) map[string]string {
		meta = maps.Clone(meta)
		if meta == nil {
			meta = map[string]string{}
		}
		meta[pools.MetaServes], meta[pools.MetaLentTo] = bu, bu
		delete(meta, pools.MetaLease)
		delete(meta, pools.MetaClaim)
		return meta
	}
	unknown := []string{pools.MetaLease, pools.MetaClaim}
	seen := map[string]bool{}
	var out []tierHost
	for _, n := range nodes {
		if !sp.Selector.Matches(n.NodePool, n.NodeClass, n.Meta) {
			continue
		}
		h := nodeHost(n)
		h.What, h.Meta, h.MetaUnknown = what, borrowed(n.Meta), unknown
		if k := fmt.Sprint(h); !seen[k] {
			seen[k] = true
			out = append(out, tierHost{Host: h})
		}
	}
	if len(out) == 0 {
		s := sp.Selector
		out = append(out, tierHost{Host: placement.Host{What: what, NodePool: s.NodePool, PoolKnown: s.NodePool != "",
			Class: s.NodeClass, ClassKnown: s.NodeClass != "", Meta: borrowed(s.Meta), MetaUnknown: unknown}})
	}
	return out
}

// nodeHost is what a node Nomad shows carries: everything but the
// attributes the model does not keep is known.
func nodeHost(n pools.NodeUsage) placement.Host {
	return placement.Host{What: "node " + n.Name, NodePool: n.NodePool, PoolKnown: true, Datacenter: n.Datacenter, Class: n.NodeClass, ClassKnown: true,
		Meta: n.Meta, MetaComplete: true, Size: demand.Size{CPUMHz: int(n.CPU), MemoryMB: int(n.MemoryMB)},
		ID: n.ID, Name: n.Name, Attrs: n.Attrs}
}

// cloudHosts are a cloud pool's offerings as the hosts they boot into:
// the node pool, datacenter, class and meta its bootstrap renders, and
// the size the pool file gives.
func cloudHosts(cp *pools.CloudPool, bu string) []tierHost {
	base := placement.Host{NodePool: hostsNodePool(cp), PoolKnown: true,
		Meta:        map[string]string{bootstrap.MetaPool: cp.Name, bootstrap.MetaProvider: cp.Provider, bootstrap.MetaServes: bu},
		MetaUnknown: []string{bootstrap.MetaClaim, bootstrap.MetaInstance}}
	if b := cp.Bootstrap; b != nil {
		base.Datacenter = cmp.Or(b.Nomad.Datacenter, "dc1") // Nomad's default
		base.Class, base.ClassKnown = b.Nomad.NodeClass, true
		maps.Copy(base.Meta, b.Nomad.Meta)
		base.Meta[bootstrap.MetaPool], base.Meta[bootstrap.MetaProvider], base.Meta[bootstrap.MetaServes] = cp.Name, cp.Provider, bu
		base.MetaComplete = true
		if len(b.PrePull) > 0 {
			base.MetaUnknown = append(base.MetaUnknown, bootstrap.MetaPrePull)
		}
	}
	out := make([]tierHost, 0, len(cp.Offerings))
	for _, o := range cp.Offerings {
		h := base
		h.What = cp.Name + " " + o.InstanceType
		if o.CPUMHz > 0 && o.MemoryMB > 0 {
			h.Size = demand.Size{CPUMHz: o.CPUMHz, MemoryMB: o.MemoryMB}
		}
		out = append(out, tierHost{Host: h, instanceType: o.InstanceType})
	}
	return out
}

// available leaves out of each cloud tier the instance types every
// offering of which ran out recently (the ladder's OfferingMemory), so
// work that only they could take is judged unservable until one is
// available again.
func (c *Controller) available(tiers []tier) []tier {
	now := c.now()
	out := make([]tier, 0, len(tiers))
	for _, t := range tiers {
		cp, ok := c.cfg.Pools.CloudPool(t.pool)
		if t.shared || !ok {
			out = append(out, t)
			continue
		}
		kept := tier{pool: t.pool}
		for _, h := range t.hosts {
			up := false
			for _, o := range cp.ProviderOfferings() {
				up = up || (o.InstanceType == h.instanceType && !c.memory.Unavailable(cp.Name, o, now))
			}
			if up {
				kept.hosts = append(kept.hosts, h)
			} else {
				kept.gone = append(kept.gone, h)
			}
		}
		out = append(out, kept)
	}
	return out
}

// hostsNodePool is the node pool a cloud pool's hosts join: the one its
// bootstrap names, else Nomad's "default".
func hostsNodePool(cp *pools.CloudPool) string {
	if cp.Bootstrap != nil && cp.Bootstrap.Nomad.NodePool != "" {
		return cp.Bootstrap.Nomad.NodePool
	}
	return "default"
}

// workOf is what the queued work of t asks of a host.
func workOf(s *cluster.Snapshot, t policies.Target) (placement.Work, bool) {
	g, ok := s.Group(t)
	if !ok {
		return placement.Work{}, false
	}
	w := placement.Work{Group: t.Group, Constraints: g.Constraints, PerAlloc: g.PerAlloc}
	if j, ok := s.Job(t.Namespace, t.Job); ok {
		w.NodePool, w.Datacenters = j.NodePool, j.Datacenters
	}
	return w, true
}

// dimensionAvailability rules out a cloud pool none of whose offerings
// that could take the work is available now.
const dimensionAvailability = "availability"

// match is which tiers can take a task group's work.
type match struct {
	// out maps each pool none of whose hosts can take it to why.
	out map[string]string
	// unfit maps a pool that can take it to its instance types that
	// cannot, and why.
	unfit map[string]map[string]string
	// unsure lists the constraints that could not be checked and were
	// taken as met.
	unsure []string
	// unit is the smallest known size of a cloud offering that can take
	// it, and which: how big a rented host is taken to be.
	unit     demand.Size
	unitWhat string
	// why says why no tier can take it, in words, and dimension what
	// rules them out; "" when one can or no tier is known.
	why, dimension string
}

// matchTiers checks w against every kind of host of every tier.
func matchTiers(w placement.Work, tiers []tier) match {
	m := match{out: map[string]string{}, unfit: map[string]map[string]string{}}
	type ruled struct {
		pool string
		v    placement.Verdict
		host placement.Host
	}
	var all []ruled
	for _, t := range tiers {
		fits := false
		var first *placement.Verdict
		var largest placement.Host
		unfit := map[string]string{}
		var ranOut []string
		for i, h := range slices.Concat(t.hosts, t.gone) {
			v := placement.Check(w, h.Host)
			if i >= len(t.hosts) {
				// Ran out: it counts only as why nothing available fits.
				if v.Fits {
					ranOut = append(ranOut, h.instanceType)
					continue
				}
			}
			for _, u := range v.Unsure {
				if !slices.Contains(m.unsure, u) {
					m.unsure = append(m.unsure, u)
				}
			}
			if v.Fits {
				fits = true
				if !t.shared && h.Size.CPUMHz > 0 && (m.unit.CPUMHz == 0 || h.Size.CPUMHz < m.unit.CPUMHz) {
					m.unit, m.unitWhat = h.Size, h.What
				}
				continue
			}
			if h.instanceType != "" {
				unfit[h.instanceType] = v.Why
			}
			if first == nil || (v.Dimension == placement.DimensionSize && h.Size.CPUMHz > largest.Size.CPUMHz) {
				first, largest = &v, h.Host
			}
		}
		switch {
		case fits && len(unfit) > 0:
			m.unfit[t.pool] = unfit
		case !fits && len(ranOut) > 0:
			v := placement.Verdict{Dimension: dimensionAvailability,
				Why: "every offering that can take it ran out recently (" + strings.Join(ranOut, ", ") + ")"}
			m.out[t.pool] = v.Why
			all = append(all, ruled{t.pool, v, placement.Host{}})
		case !fits && first != nil:
			m.out[t.pool] = first.Why
			all = append(all, ruled{t.pool, *first, largest})
		}
	}
	if len(tiers) == 0 || len(all) < len(tiers) {
		return m
	}
	same := true
	for _, r := range all {
		same = same && r.v.Dimension == all[0].v.Dimension
	}
	switch {
	case same && all[0].v.Dimension == placement.DimensionNodePool:
		var served []string
		for _, t := range tiers {
			for _, h := range t.hosts {
				if !slices.Contains(served, h.NodePool) {
					served = append(served, h.NodePool)
				}
			}
		}
		slices.Sort(served)
		m.dimension, m.why = placement.DimensionNodePool, fmt.Sprintf("node pool %s is not served by Spillway: the hosts it can give join node pools %s",
			placement.JobNodePool(w.NodePool), strings.Join(served, ", "))
	case same && all[0].v.Dimension == placement.DimensionSize:
		big := slices.MaxFunc(all, func(a, b ruled) int {
			return cmp.Or(cmp.Compare(a.host.Size.CPUMHz, b.host.Size.CPUMHz), cmp.Compare(a.host.Size.MemoryMB, b.host.Size.MemoryMB))
		})
		m.dimension, m.why = placement.DimensionSize, fmt.Sprintf("task group %s asks %d MHz / %d MB per allocation; the largest offering in any pool gives %d MHz / %d MB (%s)",
			w.Group, w.PerAlloc.CPUMHz, w.PerAlloc.MemoryMB, big.host.Size.CPUMHz, big.host.Size.MemoryMB, big.host.What)
	default:
		parts := make([]string, 0, len(all))
		for _, r := range all {
			parts = append(parts, r.pool+": "+r.v.Why)
		}
		m.dimension = all[0].v.Dimension
		if !same {
			m.dimension = "mixed"
		}
		m.why = fmt.Sprintf("no tier's hosts can take task group %s: %s", w.Group, strings.Join(parts, "; "))
	}
	return m
}
