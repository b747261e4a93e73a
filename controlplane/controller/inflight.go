package controller

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spillwayhq/spillway/pools"
)

// KindReturnWaits is journaled when scale-in has a spare host of a
// business unit but waits for an activity that concerns that capacity.
const KindReturnWaits = "capacity.return_waits"

// inflight is an activity in flight and the capacity it concerns: the
// business unit it finds hosts for, the pools it asked, and the hosts it
// claimed or follows. Scale-in and the collector wait only for the
// activities that concern the capacity they would take away
// (holds); an activity of another business unit never
// holds them up, even one acquiring from the same pool: giving a host
// back to a pool only leaves it more room.
type inflight struct {
	activity string
	// what the activity is, for what the journal says: "the scale-out of
	// default/web/app", "the spot interruption of i-0abc".
	what string
	bu   string
	// pools is every pool the activity asked or follows a host of; hosts
	// every host (instance or node ID) it claimed or follows.
	pools map[string]bool
	hosts map[string]bool
	// refs counts the registrations of this activity ID.
	refs int
}

// track registers an activity in flight, finding hosts for bu; the
// returned func ends it.
func (c *Controller) track(activity, what, bu string) func() {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.flights[activity]
	if f == nil {
		f = &inflight{activity: activity, what: what, bu: bu, pools: map[string]bool{}, hosts: map[string]bool{}}
		c.flights[activity] = f
	}
	f.refs++
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if f.refs--; f.refs <= 0 && c.flights[activity] == f {
			delete(c.flights, activity)
		}
	}
}

// concern records that an activity in flight acquires from pool (when
// not "") and claimed or follows hosts. An activity not in flight is
// ignored.
func (c *Controller) concern(activity, pool string, hosts ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.flights[activity]
	if f == nil {
		return
	}
	if pool != "" {
		f.pools[pool] = true
	}
	for _, h := range hosts {
		f.hosts[h] = true
	}
}

// scaleInHolds is what scale-in waits for, read once per pass: per
// business unit and per host, the first activity in flight (by ID) that
// concerns it.
type scaleInHolds struct {
	byUnit map[string]*inflight
	byHost map[string]*inflight
}

// holds reads what scale-in waits for now.
func (c *Controller) holds() scaleInHolds {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := scaleInHolds{byUnit: map[string]*inflight{}, byHost: map[string]*inflight{}}
	for _, id := range slices.Sorted(maps.Keys(c.flights)) {
		f := c.flights[id].clone()
		if _, ok := h.byUnit[f.bu]; !ok {
			h.byUnit[f.bu] = f
		}
		for host := range f.hosts {
			if _, ok := h.byHost[host]; !ok {
				h.byHost[host] = f
			}
		}
	}
	return h
}

// of says which activity scale-in must wait for before it gives back
// loan's host, or nil when it need not wait: one that finds hosts for the
// same business unit (the work it places lands on that unit's hosts, so
// none of them is spare), or that claimed or follows that host.
func (h scaleInHolds) of(loan pools.Loan) *inflight {
	if f := h.byHost[loan.Host]; f != nil {
		return f
	}
	return h.byUnit[loan.Borrower]
}

// why says what scale-in waits for.
func (f *inflight) why() string {
	return fmt.Sprintf("waits for activity %s (%s for %s)%s", f.activity, f.what, f.bu, f.acquiring())
}

func (f *inflight) clone() *inflight {
	out := *f
	out.pools, out.hosts = maps.Clone(f.pools), maps.Clone(f.hosts)
	return &out
}

// acquiring says which pools the activity is acquiring from.
func (f *inflight) acquiring() string {
	names := slices.Sorted(maps.Keys(f.pools))
	switch len(names) {
	case 0:
		return ", which has not asked any pool yet"
	case 1:
		return ", which is acquiring from pool " + names[0]
	}
	return ", which is acquiring from pools " + strings.Join(names, ", ")
}
