package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/controlplane/placement"
	"github.com/spillwayhq/spillway/policies"
)

// Unservable is a queued task group that no tier can take: it is
// reported, not rented for, and gets no scale-out until what it was
// judged on changes.
type Unservable struct {
	Target       policies.Target `json:"target"`
	BusinessUnit string          `json:"business_unit"`
	// Dimension is what rules every tier out: "node_pool" (the job's node
	// pool is one no tier's hosts join), "datacenter", "constraint" (a
	// constraint of the job no tier's hosts meet), "size" (an allocation
	// larger than every offering), "availability" (every offering that
	// could take it ran out recently), or "mixed" (one thing rules out
	// one tier, another the next).
	Dimension string    `json:"dimension"`
	Reason    string    `json:"reason"`
	Since     time.Time `json:"since"`
}

// unservableEntry is an Unservable and key, what it was judged on: the
// work, its business unit and the hosts the tiers give. The judgement is
// made again only when that changes.
type unservableEntry struct {
	Unservable
	key string
}

// unservable says why no tier can take the queued work of t, or "": no
// host a tier gives meets the job's node pool, datacenters, constraints
// or allocation size (matchTiers), or those that do ran out recently
// (available). The judgement is remembered and made again only when
// what it rests on changes (the job, the group, its business unit, the
// hosts the tiers give, which offerings are available); a new judgement
// that the work is unservable is journaled as capacity.unmet once.
func (c *Controller) unservable(ctx context.Context, s *cluster.Snapshot, tiersOf func(bu string) []tier, t policies.Target, bu string) string {
	w, ok := workOf(s, t)
	if !ok || bu == "" {
		return ""
	}
	tiers := tiersOf(bu)
	key := workKey(w) + "|" + bu + "|" + fmt.Sprint(tiers)
	c.mu.Lock()
	e, seen := c.unserved[t]
	c.mu.Unlock()
	if seen && e.key == key {
		return e.Reason
	}
	m := matchTiers(w, tiers)
	dimension, why := m.dimension, m.why
	c.mu.Lock()
	if why == "" {
		delete(c.unserved, t)
	} else {
		since := c.now()
		if seen && e.Reason == why {
			since = e.Since // judged again, to the same end
		}
		c.unserved[t] = unservableEntry{Unservable: Unservable{Target: t, BusinessUnit: bu, Dimension: dimension, Reason: why, Since: since}, key: key}
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
	data, _ := json.Marshal(map[string]any{"queued": d.Queued, "hosts": 0, "reasons": why, "unservable": dimension, "business_unit": bu,
		"ruled_out": m.out, "unsure": m.unsure})
	c.record(ctx, journal.Event{Time: c.now(), Kind: KindUnmet, Subject: t.String(), Actor: "controller", Data: data,
		Message: fmt.Sprintf("%d queued allocations of %s have no host: %s; nothing is rented for them until the job or the pools change, or an offering is available again", d.Queued, t, why)})
	return why
}

// workKey renders what a judgement of w rests on: its constraints by
// value (the model's job holds pointers, new on every read of the job).
func workKey(w placement.Work) string {
	cons := make([]string, 0, len(w.Constraints))
	for _, c := range w.Constraints {
		if c != nil {
			cons = append(cons, placement.String(c))
		}
	}
	return fmt.Sprintf("%s %s %v %v %q", w.Group, w.NodePool, w.Datacenters, w.PerAlloc, cons)
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
