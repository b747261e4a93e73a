package controller

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spillwayhq/spillway/internal/bandwidth"
	"github.com/spillwayhq/spillway/policies"
)

// linkedPools are the harness's pools with aws, the cheaper cloud, behind
// a dedicated line of 80 Mbit/s filled to 100%, and ali, which has room
// for one host, behind none.
var linkedPools = strings.Replace(strings.Replace(harnessPools, "time_to_ready: 60s\n", "time_to_ready: 60s\nlink: dc1-aws\n", 1),
	"max_hosts: 5\nbudget_per_hour: 10\ntime_to_ready: 30s\n", "max_hosts: 1\nbudget_per_hour: 10\ntime_to_ready: 30s\n", 1) + `---
apiVersion: spillway/v1
kind: Link
name: dc1-aws
bandwidth: 80Mbps
target_utilization: 100%
`

// trafficPolicy makes a policy with traffic govern web.
func (h *harness) trafficPolicy(traffic string) {
	h.t.Helper()
	h.webPolicy("deadline: 2m\ntraffic: " + traffic + "\n")
}

// TestBurstLimitedByALink: 12 allocations of 20 Mbit/s are queued (4 to a
// host). The link carries 4 of them, so aws rents 1 host for those, ali
// (no link) its one host for 4 more, and the 4 left are unmet with reason
// link, journaled once however often the activity asks again (with the 4
// behind the link in use, it takes no more). Raised to
// 1 Gbit/s by an operator, the link takes the rest on the next plan; the
// change is journaled and a new controller restores it.
func TestBurstLimitedByALink(t *testing.T) {
	h := newHarnessOn(t, 0, linkedPools)
	h.poolMeta = true
	h.c.cfg.ActivityGrace = time.Hour
	h.trafficPolicy("{per_allocation: 20Mbps}")
	h.service(4) // fits on bu-a's own host
	h.start()
	if err := h.k.SetCount(web, 16); err != nil {
		t.Fatal(err)
	}
	h.until("the link's unmet need is journaled and asked again", func() bool {
		return len(h.events(KindUnmet)) == 1 && testutil.ToFloat64(h.c.unmetC) >= 3
	})
	count := map[string]int{}
	for _, inst := range h.cloud.Instances() {
		count[inst.Pool]++
	}
	if count["aws"] != 1 || count["ali"] != 1 {
		t.Fatalf("rented %v, want 1 host behind the link (aws) and 1 without (ali)\n%s", count, h.dump())
	}
	unmet := h.events(KindUnmet)
	if len(unmet) != 1 {
		t.Fatalf("capacity.unmet journaled %d times, want once\n%s", len(unmet), h.dump())
	}
	var d struct {
		Reason        string  `json:"reason"`
		Link          string  `json:"link"`
		Bandwidth     float64 `json:"bandwidth_bps"`
		InUse         float64 `json:"in_use_bps"`
		PerAllocation float64 `json:"per_allocation_bps"`
		Allowed       int     `json:"allowed_allocations"`
		Hosts         int     `json:"hosts"`
	}
	if err := json.Unmarshal(unmet[0].Data, &d); err != nil {
		t.Fatal(err)
	}
	if d.Reason != "link" || d.Link != "dc1-aws" || d.Bandwidth != 80e6 || d.InUse != 0 || d.PerAllocation != 20e6 || d.Allowed != 4 || d.Hosts != 1 {
		t.Fatalf("unmet data %s, want reason link, 80Mbps, none in use, 20Mbps per allocation, 4 allowed, 1 host short", unmet[0].Data)
	}
	if !strings.Contains(unmet[0].Message, "link dc1-aws (80Mbps at 100% carries 80Mbps; 0bps in use) takes 4 more allocations of 20Mbps") {
		t.Errorf("unmet message: %s", unmet[0].Message)
	}
	// The link's use shows the 4 allocations placed behind it.
	h.until("allocations run behind the link", func() bool {
		v := h.c.Links()
		return len(v) == 1 && v[0].Allocations == 4 && v[0].InUse == 80e6
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(newLinkCollector(h.c))
	if n, err := testutil.GatherAndCount(reg, "spillway_link_bandwidth_bits_per_second", "spillway_link_in_use_bits_per_second"); err != nil || n != 2 {
		t.Fatalf("link gauges: %d, %v", n, err)
	}

	if _, err := h.c.SetLinkBandwidth(t.Context(), "dc1-aws", 1e9, "ops", "holiday"); err != nil {
		t.Fatal(err)
	}
	h.until("the scale-out is done", func() bool { return len(h.events(KindActivityEnded)) == 1 })
	if got := outcomeOf(h.events(KindActivityEnded)[0]); got != OutcomeDone {
		t.Fatalf("outcome %q, want done\n%s", got, h.dump())
	}
	if set := h.events(KindLinkSet); len(set) != 1 || set[0].Actor != "ops" {
		t.Fatalf("link.set events %+v", set)
	}
	if v := h.c.Links()[0]; v.Bandwidth != 1e9 || v.Configured != 80e6 || v.Set == nil || v.Set.By != "ops" {
		t.Fatalf("link view %+v", v)
	}
	// A new controller (a restart, a new leader) restores the change.
	c2 := New(Config{Cluster: h.k, Pools: h.pools, Journal: h.db.Events(), Clock: h.clock})
	if err := c2.RestoreLinks(t.Context(), h.db.Events()); err != nil {
		t.Fatal(err)
	}
	if v := c2.Links()[0]; v.Bandwidth != 1e9 || v.Set == nil || v.Set.Reason != "holiday" {
		t.Fatalf("restored link %+v", v)
	}
	if _, err := h.c.SetLinkBandwidth(t.Context(), "nope", 1e9, "ops", "x"); err == nil {
		t.Error("an unknown link was set")
	}
	if _, err := h.c.SetLinkBandwidth(t.Context(), "dc1-aws", -1, "ops", "x"); err == nil {
		t.Error("a negative bandwidth was set")
	}
}

// TestTrafficFromAQuery: a policy's traffic query is read through
// Config.Traffic when the planner plans; a failed read keeps the last
// value, which is also what the link's use counts.
func TestTrafficFromAQuery(t *testing.T) {
	h := newHarnessOn(t, 0, linkedPools)
	h.trafficPolicy("{query: 'sum(rate(tx_bits[1m])) / count(up)'}")
	var next error
	h.c.cfg.Traffic = func(_ context.Context, p *policies.Policy) (bandwidth.Bandwidth, error) {
		if next != nil {
			return 0, next
		}
		return 25e6, nil
	}
	if got := h.c.knownTraffic(web); got != 0 {
		t.Fatalf("before any read: %s", got)
	}
	if got := h.c.trafficOf(t.Context(), web); got != 25e6 {
		t.Fatalf("read %s, want 25Mbps", got)
	}
	next = errors.New("prometheus is down")
	if got := h.c.trafficOf(t.Context(), web); got != 25e6 {
		t.Fatalf("after a failed read %s, want the last value", got)
	}
	if got := h.c.knownTraffic(web); got != 25e6 {
		t.Fatalf("known %s, want 25Mbps", got)
	}
	if got := h.c.trafficOf(t.Context(), policies.Target{Namespace: "default", Job: "other", Group: "g"}); got != 0 {
		t.Fatalf("a group no policy governs: %s", got)
	}
}
