package controller

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/internal/bandwidth"
	"github.com/spillwayhq/spillway/policies"
	"github.com/spillwayhq/spillway/pools"
)

// KindLinkSet is the journal event of an operator's change of a link's
// bandwidth; RestoreLinks replays it.
const KindLinkSet = "link.set"

// ErrUnknownLink is the error of a change to a link no pool file defines.
var ErrUnknownLink = errors.New("no such link")

// links is what the controller knows of the dedicated lines: the
// bandwidths operators set at run time, and the last traffic figure per
// allocation of each task group (a query's, kept for the gauges and the
// use of a link, which read no metric).
type links struct {
	mu      sync.Mutex
	set     map[string]LinkSetting
	traffic map[policies.Target]bandwidth.Bandwidth
}

// LinkSetting is a bandwidth an operator set at run time.
type LinkSetting struct {
	Bandwidth bandwidth.Bandwidth `json:"bandwidth"`
	By        string              `json:"by"`
	Reason    string              `json:"reason"`
	Since     time.Time           `json:"since"`
}

// LinkView is a link as GET /v1/links, spillway pools and the gauges show
// it.
type LinkView struct {
	Name string `json:"name"`
	// Bandwidth is in force now; Configured is the pool file's.
	Bandwidth         bandwidth.Bandwidth `json:"bandwidth"`
	Configured        bandwidth.Bandwidth `json:"configured"`
	TargetUtilization pools.Percent       `json:"target_utilization"`
	// Carries is Bandwidth at TargetUtilization: what the planner fills.
	Carries bandwidth.Bandwidth `json:"carries"`
	// InUse is what the allocations behind it send, at their services'
	// traffic per allocation; Allocations counts those with a figure.
	InUse       bandwidth.Bandwidth `json:"in_use"`
	Allocations int                 `json:"allocations"`
	Pools       []string            `json:"pools"`
	// Set is the operator's change in force, if any.
	Set *LinkSetting `json:"set,omitempty"`
}

func newLinks() *links {
	return &links{set: map[string]LinkSetting{}, traffic: map[policies.Target]bandwidth.Bandwidth{}}
}

// SetLinkBandwidth sets a link's bandwidth at run time, as an operator
// does for a holiday: the change is journaled, takes effect on the next
// plan and survives a restart (RestoreLinks). It reports whether anything
// changed.
func (c *Controller) SetLinkBandwidth(ctx context.Context, name string, bw bandwidth.Bandwidth, actor, reason string) (bool, error) {
	l, ok := c.cfg.Pools.Link(name)
	if !ok {
		return false, fmt.Errorf("%w %q", ErrUnknownLink, name)
	}
	if bw < 0 {
		return false, fmt.Errorf("bandwidth must not be negative, got %s", bw)
	}
	before := c.linkBandwidth(l)
	now := c.now()
	data, _ := json.Marshal(map[string]any{"link": name, "bandwidth": bw, "bandwidth_bps": bw.BitsPerSecond(), "before": before, "reason": reason})
	if _, err := c.cfg.Journal.Append(ctx, journal.Event{Time: now, Kind: KindLinkSet, Subject: "link/" + name, Actor: actor, Data: data,
		Message: fmt.Sprintf("link %s set to %s (was %s) by %s: %s", name, bw, before, actor, reason)}); err != nil {
		return false, fmt.Errorf("journaling the change of link %s: %w", name, err)
	}
	c.links.mu.Lock()
	c.links.set[name] = LinkSetting{Bandwidth: bw, By: actor, Reason: reason, Since: now}
	c.links.mu.Unlock()
	return before != bw, nil
}

// RestoreLinks replays the bandwidths operators set from the journal.
func (c *Controller) RestoreLinks(ctx context.Context, q journal.Querier) error {
	set := map[string]LinkSetting{}
	err := journal.Each(ctx, q, journal.Filter{Kind: KindLinkSet}, func(ev journal.Event) error {
		var d struct {
			Link       string  `json:"link"`
			BitsPerSec float64 `json:"bandwidth_bps"`
			Reason     string  `json:"reason"`
		}
		if json.Unmarshal(ev.Data, &d) != nil || d.Link == "" || d.BitsPerSec < 0 {
			return nil
		}
		set[d.Link] = LinkSetting{Bandwidth: bandwidth.Bandwidth(d.BitsPerSec), By: ev.Actor, Reason: d.Reason, Since: ev.Time}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restoring link bandwidths: %w", err)
	}
	c.links.mu.Lock()
	c.links.set = set
	c.links.mu.Unlock()
	return nil
}

// linkBandwidth is l's bandwidth now: an operator's, else the file's.
func (c *Controller) linkBandwidth(l *pools.Link) bandwidth.Bandwidth {
	c.links.mu.Lock()
	defer c.links.mu.Unlock()
	if s, ok := c.links.set[l.Name]; ok {
		return s.Bandwidth
	}
	return l.Bandwidth
}

// trafficOf is what one allocation of t sends over a link, from the
// policy that governs it: its fixed figure, or its query's last value
// (Config.Traffic). Zero: not known, and no link limits t. A query that
// fails keeps the last good value.
func (c *Controller) trafficOf(ctx context.Context, t policies.Target) bandwidth.Bandwidth {
	ps := c.cfg.Policies().ForTarget(t)
	if len(ps) == 0 || ps[0].Traffic == nil || ps[0].Traffic.Query == "" || c.cfg.Traffic == nil {
		return c.knownTraffic(t)
	}
	bw, err := c.cfg.Traffic(ctx, ps[0])
	if err == nil && bw >= 0 {
		c.links.mu.Lock()
		c.links.traffic[t] = bw
		c.links.mu.Unlock()
		return bw
	}
	c.cfg.Logger.Warn("reading a service's traffic per allocation failed; using the last value", "target", t.String(), "err", err)
	return c.knownTraffic(t)
}

// knownTraffic is trafficOf without a query: the fixed figure or the
// query's last value.
func (c *Controller) knownTraffic(t policies.Target) bandwidth.Bandwidth {
	ps := c.cfg.Policies().ForTarget(t)
	if len(ps) == 0 || ps[0].Traffic == nil {
		return 0
	}
	if ps[0].Traffic.Query == "" {
		return ps[0].Traffic.PerAllocation
	}
	c.links.mu.Lock()
	defer c.links.mu.Unlock()
	return c.links.traffic[t]
}

// linkUse is what the allocations on the nodes of the pools behind each
// link send (from the cluster model: a node's spillway.pool meta names
// its pool), and how many allocations with a traffic figure that is.
func (c *Controller) linkUse(s *cluster.Snapshot) (map[string]bandwidth.Bandwidth, map[string]int) {
	use, count := map[string]bandwidth.Bandwidth{}, map[string]int{}
	if len(c.cfg.Pools.Links) == 0 || s == nil {
		return use, count
	}
	behind := map[string]string{}
	for _, p := range c.cfg.Pools.CloudPools {
		if p.Link != "" {
			behind[p.Name] = p.Link
		}
	}
	per := map[policies.Target]bandwidth.Bandwidth{}
	for _, n := range s.Nodes() {
		link := behind[n.Meta[pools.MetaPool]]
		if link == "" {
			continue
		}
		for _, a := range s.AllocsOnNode(n.ID) {
			t := a.Target()
			bw, ok := per[t]
			if !ok {
				bw = c.knownTraffic(t)
				per[t] = bw
			}
			if bw > 0 {
				use[link] += bw
				count[link]++
			}
		}
	}
	return use, count
}

// linkStates is what the ladder needs of each link now: its bandwidth
// and what is in use, with the hosts still booting behind it counted at
// perHost allocations of traffic each.
func (c *Controller) linkStates(s *cluster.Snapshot, booting map[string]int, perHost int, traffic bandwidth.Bandwidth) map[string]pools.LinkState {
	if len(c.cfg.Pools.Links) == 0 {
		return nil
	}
	use, _ := c.linkUse(s)
	out := map[string]pools.LinkState{}
	for _, l := range c.cfg.Pools.Links {
		st := pools.LinkState{Bandwidth: c.linkBandwidth(l), Set: true, InUse: use[l.Name]}
		for _, p := range c.cfg.Pools.PoolsBehind(l.Name) {
			st.InUse += bandwidth.Bandwidth(booting[p]*max(perHost, 1)) * traffic
		}
		out[l.Name] = st
	}
	return out
}

// Links returns every link with its bandwidth and use, by name.
func (c *Controller) Links() []LinkView {
	use, count := c.linkUse(c.cfg.Cluster.Snapshot())
	out := make([]LinkView, 0, len(c.cfg.Pools.Links))
	for _, l := range c.cfg.Pools.Links {
		bw := c.linkBandwidth(l)
		v := LinkView{Name: l.Name, Bandwidth: bw, Configured: l.Bandwidth, TargetUtilization: l.TargetUtilization, Carries: l.Carries(bw),
			InUse: use[l.Name], Allocations: count[l.Name], Pools: c.cfg.Pools.PoolsBehind(l.Name)}
		if v.Pools == nil {
			v.Pools = []string{}
		}
		c.links.mu.Lock()
		if s, ok := c.links.set[l.Name]; ok {
			v.Set = &s
		}
		c.links.mu.Unlock()
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b LinkView) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// booting counts, by pool, the activity's rented hosts whose work is not
// on them yet: not a Nomad node yet, or a node with no allocation. A link
// counts each as full (perHost allocations), so a later round or run does
// not put that work behind the link a second time.
func (a *activity) booting(snap *cluster.Snapshot) map[string]int {
	a.mu.Lock()
	hosts := append(slices.Clone(a.rented), a.pending...)
	a.mu.Unlock()
	out, seen := map[string]int{}, map[string]bool{}
	for _, h := range hosts {
		if seen[h.host.ID] {
			continue
		}
		seen[h.host.ID] = true
		if n, ok := nodeOfInstance(snap, h.host.ID); !ok || n.Allocs == 0 {
			out[h.pool.Name]++
		}
	}
	return out
}

// unmetLink journals, once per activity and link, that a link held back
// hosts of activity a: capacity.unmet with reason link and the numbers
// (bandwidth, in use, per allocation). Every round is counted.
func (a *activity) unmetLink(ctx context.Context, hosts int, limits []pools.LinkLimit, then string) {
	c, r, d := a.c, a.tl.r, a.d
	c.unmetC.Inc()
	l := limits[0]
	why := l.String()
	a.lastUnmet = why
	key := "link\x00" + l.Link
	if a.said[key] {
		return
	}
	if a.said == nil {
		a.said = map[string]bool{}
	}
	a.said[key] = true
	data, _ := json.Marshal(map[string]any{"queued": d.Unplaced(), "hosts": hosts, "blocked": d.Blocked.Reason(), "reasons": why,
		"reason": "link", "link": l.Link, "bandwidth_bps": l.Bandwidth.BitsPerSecond(), "target_utilization": float64(l.TargetUtilization),
		"in_use_bps": l.InUse.BitsPerSecond(), "per_allocation_bps": l.PerAllocation.BitsPerSecond(), "allowed_allocations": l.Allowed,
		"limits": limits})
	c.record(ctx, journal.Event{Time: c.now(), Kind: KindUnmet, Subject: r.Target.String(), Activity: r.Activity, Actor: "controller", Data: data,
		Message: fmt.Sprintf("%d queued allocations of %s have no host: %s; %s", d.Unplaced(), r.Target, why, then)})
}

// linkCollector exports each link's bandwidth and use on scrape.
type linkCollector struct {
	c                         *Controller
	bandwidth, carries, inUse *prometheus.Desc
	allocs                    *prometheus.Desc
}

func newLinkCollector(c *Controller) *linkCollector {
	return &linkCollector{c: c,
		bandwidth: prometheus.NewDesc("spillway_link_bandwidth_bits_per_second", "A dedicated line's bandwidth in force (the pool file's, or what an operator set).", []string{"link"}, nil),
		carries:   prometheus.NewDesc("spillway_link_target_bits_per_second", "What the planner fills of a link: its bandwidth at its target utilization.", []string{"link"}, nil),
		inUse:     prometheus.NewDesc("spillway_link_in_use_bits_per_second", "What the allocations behind a link send, at their services' traffic per allocation.", []string{"link"}, nil),
		allocs:    prometheus.NewDesc("spillway_link_allocations", "Allocations with a traffic figure behind a link.", []string{"link"}, nil),
	}
}

func (l *linkCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- l.bandwidth
	ch <- l.carries
	ch <- l.inUse
	ch <- l.allocs
}

func (l *linkCollector) Collect(ch chan<- prometheus.Metric) {
	for _, v := range l.c.Links() {
		ch <- prometheus.MustNewConstMetric(l.bandwidth, prometheus.GaugeValue, v.Bandwidth.BitsPerSecond(), v.Name)
		ch <- prometheus.MustNewConstMetric(l.carries, prometheus.GaugeValue, v.Carries.BitsPerSecond(), v.Name)
		ch <- prometheus.MustNewConstMetric(l.inUse, prometheus.GaugeValue, v.InUse.BitsPerSecond(), v.Name)
		ch <- prometheus.MustNewConstMetric(l.allocs, prometheus.GaugeValue, float64(v.Allocations), v.Name)
	}
}
