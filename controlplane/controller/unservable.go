package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/demand"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/policies"
	"github.com/spillwayhq/spillway/pools"
)

// Unservable is a queued task group that no tier can take: it is
// reported, not rented for, and gets no scale-out until what it was
// judged on changes.
type Unservable struct {
	Target       policies.Target `json:"target"`
	BusinessUnit string          `json:"business_unit"`
	// Dimension is what rules every tier out: "node_pool" (the job's node
	// pool is one no tier's hosts join) or "size" (an allocation larger
	// than every offering).
	Dimension string    `json:"dimension"`
	Reason    string    `json:"reason"`
	Since     time.Time `json:"since"`
}

// unservableEntry is an Unservable and what it was judged on: the
// group's allocation size and business unit, and the offerings' sizes
// (the pool file, the shared hosts Nomad shows). The judgement is made
// again only when that changes.
type unservableEntry struct {
	Unservable
	key string
}

// offeringSize is one host size a tier can give.
type offeringSize struct {
	what string // "aws m5.xlarge", "a host of the shared pool shared"
	size demand.Size
}

// offeringSizes lists the host sizes the tiers can give business unit bu:
// the shared pool's hosts, when it may borrow, and every offering of a
// cloud pool Spillway has a provider for. known is false when one of
// them has no size yet (an offering without cpu_mhz and memory_mb, a
// shared pool with no host Nomad shows): work of any size may fit it.
func (c *Controller) offeringSizes(nodes []pools.NodeUsage, bu string) (sizes []offeringSize, known bool) {
	known = true
	if unit, ok := c.cfg.Pools.BusinessUnit(bu); ok && c.cfg.Pools.Shared != nil && c.cfg.Shared != nil && unit.Borrowing.Quota > 0 {
		s, err := sharedHostSize(c.cfg.Pools.Shared, nodes)
		if err != nil {
			known = false
		} else {
			sizes = append(sizes, offeringSize{what: "a host of the shared pool " + c.cfg.Pools.Shared.Name, size: s})
		}
	}
	for _, cp := range c.cfg.Pools.CloudPools {
		if _, ok := c.cfg.Clouds[cp.Name]; !ok {
			continue
		}
		for _, o := range cp.Offerings {
			if o.CPUMHz <= 0 || o.MemoryMB <= 0 {
				known = false
				continue
			}
			sizes = append(sizes, offeringSize{what: cp.Name + " " + o.InstanceType, size: demand.Size{CPUMHz: o.CPUMHz, MemoryMB: o.MemoryMB}})
		}
	}
	return sizes, known
}

// tooLarge says why no tier can give a host that takes one allocation of
// per, or "" when one can or may (a size is unknown, or no tier at all
// is known: the scale-out says why then).
func tooLarge(group string, per demand.Size, sizes []offeringSize, known bool) string {
	if !known || len(sizes) == 0 {
		return ""
	}
	largest := sizes[0]
	for _, s := range sizes {
		if per.CPUMHz <= s.size.CPUMHz && per.MemoryMB <= s.size.MemoryMB {
			return ""
		}
		if s.size.CPUMHz > largest.size.CPUMHz || (s.size.CPUMHz == largest.size.CPUMHz && s.size.MemoryMB > largest.size.MemoryMB) {
			largest = s
		}
	}
	return fmt.Sprintf("task group %s asks %d MHz / %d MB per allocation; the largest offering in any pool gives %d MHz / %d MB (%s)",
		group, per.CPUMHz, per.MemoryMB, largest.size.CPUMHz, largest.size.MemoryMB, largest.what)
}

// nodePools lists the node pools the hosts of the tiers that serve
// business unit bu join: the shared pool's selector, each cloud pool's
// bootstrap (Nomad's "default" when it names none). known is false when
// one is not known (a shared pool selected by class or meta only).
func (c *Controller) nodePools(bu string) (served []string, known bool) {
	known = true
	add := func(p string) {
		if !slices.Contains(served, p) {
			served = append(served, p)
		}
	}
	if unit, ok := c.cfg.Pools.BusinessUnit(bu); ok && c.cfg.Pools.Shared != nil && c.cfg.Shared != nil && unit.Borrowing.Quota > 0 {
		if p := c.cfg.Pools.Shared.Selector.NodePool; p != "" {
			add(p)
		} else {
			known = false
		}
	}
	for _, cp := range c.cfg.Pools.CloudPools {
		if _, ok := c.cfg.Clouds[cp.Name]; !ok {
			continue
		}
		add(hostsNodePool(cp))
	}
	sort.Strings(served)
	return served, known
}

// hostsNodePool is the node pool a cloud pool's hosts join: the one its
// bootstrap names, else Nomad's "default".
func hostsNodePool(cp *pools.CloudPool) string {
	if cp.Bootstrap != nil && cp.Bootstrap.Nomad.NodePool != "" {
		return cp.Bootstrap.Nomad.NodePool
	}
	return "default"
}

// jobNodePool is the node pool a job runs in ("" is Nomad's "default").
func jobNodePool(pool string) string {
	if pool == "" {
		return "default"
	}
	return pool
}

// outsidePools says why no tier's hosts can be in the job's node pool, or
// "" when one can or may (the pool is "all", a tier's pool is unknown, no
// tier is known).
func outsidePools(jobPool string, served []string, known bool) string {
	jobPool = jobNodePool(jobPool)
	if jobPool == "all" || !known || len(served) == 0 || slices.Contains(served, jobPool) {
		return ""
	}
	return fmt.Sprintf("node pool %s is not served by Spillway: the hosts it can give join node pools %s", jobPool, strings.Join(served, ", "))
}

// unservable says why no tier can take the queued work of t, or "": its
// job's node pool is one no tier's hosts join, or its allocation is
// larger than every offering. The judgement is remembered and made again
// only when what it rests on changes (the job's node pool, the group's
// size, its business unit, the sizes and node pools the tiers give); a
// new judgement that the work is unservable is journaled as
// capacity.unmet once.
func (c *Controller) unservable(ctx context.Context, s *cluster.Snapshot, nodes func() []pools.NodeUsage, t policies.Target, bu string) string {
	g, ok := s.Group(t)
	if !ok || bu == "" {
		return ""
	}
	jobPool := ""
	if j, ok := s.Job(t.Namespace, t.Job); ok {
		jobPool = j.NodePool
	}
	sizes, known := c.offeringSizes(nodes(), bu)
	served, poolsKnown := c.nodePools(bu)
	key := fmt.Sprint(g.PerAlloc, bu, known, sizes, jobPool, served, poolsKnown)
	c.mu.Lock()
	e, seen := c.unserved[t]
	c.mu.Unlock()
	if seen && e.key == key {
		return e.Reason
	}
	dimension, why := "node_pool", outsidePools(jobPool, served, poolsKnown)
	if why == "" {
		dimension, why = "size", tooLarge(t.Group, g.PerAlloc, sizes, known)
	}
	c.mu.Lock()
	if why == "" {
		delete(c.unserved, t)
	} else {
		c.unserved[t] = unservableEntry{Unservable: Unservable{Target: t, BusinessUnit: bu, Dimension: dimension, Reason: why, Since: c.now()}, key: key}
	}
	c.mu.Unlock()
	if why == "" {
		if seen {
			c.cfg.Logger.Info("queued work is servable again", "target", t.String(), "was", e.Reason)
		}
		return ""
	}
	if seen && e.Reason == why {
		return why
	}
	d, _ := s.Demand(t)
	data, _ := json.Marshal(map[string]any{"queued": d.Queued, "hosts": 0, "reasons": why, "unservable": dimension, "business_unit": bu})
	c.record(ctx, journal.Event{Time: c.now(), Kind: KindUnmet, Subject: t.String(), Actor: "controller", Data: data,
		Message: fmt.Sprintf("%d queued allocations of %s have no host: %s; nothing is rented for them until the job or the pools change", d.Queued, t, why)})
	return why
}

// forgetUnservable drops the judgements of groups no longer queued and
// sets the gauge.
func (c *Controller) forgetUnservable(queued []policies.Target) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for t := range c.unserved {
		if !slices.Contains(queued, t) {
			delete(c.unserved, t)
		}
	}
	c.unservedGauge.Set(float64(len(c.unserved)))
}

// Unservable lists the queued task groups no tier can take, by target.
func (c *Controller) Unservable() []Unservable {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Unservable, 0, len(c.unserved))
	for _, e := range c.unserved {
		out = append(out, e.Unservable)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Target.String() < out[j].Target.String() })
	return out
}
