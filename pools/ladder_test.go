package pools

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/providers"
)

var ladderConfig = `
apiVersion: spillway/v1
kind: BusinessUnit
name: bu-a
selector: {node_pool: bu-a}
lending: {share: 50%}
borrowing: {quota: 2}
---
apiVersion: spillway/v1
kind: SharedPool
name: shared
selector: {node_pool: shared}
time_to_ready: 20s
cost_per_host_hour: 0.05
---
apiVersion: spillway/v1
kind: CloudPool
name: cheap-slow
provider: aws
region: us-east-1
zones: [us-east-1a]
offerings: [{instance_type: small, price: {on_demand: 0.2}}]
max_hosts: 10
budget_per_hour: 100
time_to_ready: 4m
` + bootstrapYAML("us-east-1", "ami-0a1b2c3d4e5f60718", "flatcar") + `
---
apiVersion: spillway/v1
kind: CloudPool
name: pricey-fast
provider: alicloud
region: cn-beijing
zones: [cn-beijing-h, cn-beijing-k]
offerings:
  - {instance_type: big, weight: 2, price: {on_demand: 1.0, spot: 0.6}}
  - {instance_type: mid, price: {on_demand: 0.45, spot: 0.35}}
spot: 50%
max_hosts: 10
budget_per_hour: 100
time_to_ready: 90s
warm: {hosts: 2, time_to_ready: 30s}
` + bootstrapYAML("cn-beijing", "m-2zefcos42x64spillway", "fcos")

// bootstrapYAML is the smallest valid bootstrap block for a pool.
func bootstrapYAML(region, image, os string) string {
	return fmt.Sprintf(`bootstrap:
  os: %[3]s
  images: [{region: %[1]s, id: %[2]s, variant: %[3]s, version: "1.0"}]
  nomad:
    servers: ["127.0.0.1:4647"]
    datacenter: dc1
    install: {method: download, version: 1.6.3, url: "https://a.example/nomad-1.6.3", sha512: %[4]s}`,
		region, image, os, strings.Repeat("ab", 64))
}

func ladderCfg(t *testing.T) *Config {
	t.Helper()
	cfg, err := Parse("ladder.yaml", []byte(ladderConfig))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// planString renders the taken steps as "tier:pool=hosts ..." and the
// fallbacks in brackets.
func planString(p Plan) string {
	var parts []string
	for _, s := range p.Steps {
		part := fmt.Sprintf("%s:%s=%d", s.Tier, s.Pool, s.Hosts)
		if s.Hosts == 0 {
			part = "[" + part + "]"
		}
		parts = append(parts, part)
	}
	if p.Unmet > 0 {
		parts = append(parts, fmt.Sprintf("unmet=%d", p.Unmet))
	}
	return strings.Join(parts, " ")
}

func TestLadder(t *testing.T) {
	cfg := ladderCfg(t)
	now := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	fiveMin := now.Add(5 * time.Minute)
	mem := NewOfferingMemory(3 * time.Minute)
	pricey, _ := cfg.CloudPool("pricey-fast")
	for _, o := range pricey.ProviderOfferings() {
		if o.InstanceType == "mid" {
			mem.MarkUnavailable("pricey-fast", now.Add(-time.Minute), 0, o)
		}
	}
	warm2 := map[string]CloudState{"pricey-fast": {Warm: 2}}
	dear := map[string]CloudState{"cheap-slow": {Catalog: []providers.Offering{
		{InstanceType: "small", Zone: "us-east-1a", CapacityType: providers.CapacityOnDemand, Price: 5, Available: true}}}}
	allFailed := NewOfferingMemory(3 * time.Minute)
	allFailed.MarkUnavailable("pricey-fast", now, 0, pricey.ProviderOfferings()...)

	for _, tc := range []struct {
		name string
		in   LadderInput
		want string
	}{
		{"own idle first", LadderInput{Need: 2, OwnIdle: 3, SharedFree: 2},
			"own:=2 [shared:shared=0] [cold:cheap-slow=0] [cold:pricey-fast=0]"},
		{"then shared within quota, then warm, then cold by cost", LadderInput{Need: 8, OwnIdle: 1, SharedFree: 5, Cloud: warm2},
			"own:=1 shared:shared=2 warm:pricey-fast=2 cold:cheap-slow=3 [cold:pricey-fast=0]"},
		{"quota already held skips shared", LadderInput{Need: 1, SharedFree: 5, Borrowed: 2, Cloud: warm2},
			"warm:pricey-fast=1 [cold:cheap-slow=0] [cold:pricey-fast=0]"},
		{"deadline puts the fast pool first", LadderInput{Need: 5, Deadline: now.Add(2 * time.Minute), Cloud: map[string]CloudState{"pricey-fast": {Warm: 0}}},
			"cold:pricey-fast=5 [cold:cheap-slow=0]"},
		{"measured ttr overrides configuration", LadderInput{Need: 1, Deadline: fiveMin, Cloud: map[string]CloudState{"pricey-fast": {TimeToReady: 6 * time.Minute}}},
			"cold:cheap-slow=1 [cold:pricey-fast=0]"},
		{"max_hosts caps a pool", LadderInput{Need: 12, Cloud: map[string]CloudState{"cheap-slow": {Hosts: 8}, "pricey-fast": {Hosts: 9}}},
			"cold:cheap-slow=2 cold:pricey-fast=1 unmet=9"},
		{"budget caps a pool", LadderInput{Need: 4, Cloud: map[string]CloudState{"cheap-slow": {CostPerHour: 99.5}}},
			"cold:cheap-slow=2 cold:pricey-fast=2"},
		{"catalog price makes a pool dearer", LadderInput{Need: 2, Cloud: dear},
			"cold:pricey-fast=2 [cold:cheap-slow=0]"},
		{"recent failures rank a pool lower than cost", LadderInput{Need: 2, Unavailable: mem, Cloud: dear},
			"cold:cheap-slow=2 [cold:pricey-fast=0]"},
		{"a pool whose offerings all failed is skipped", LadderInput{Need: 3, Unavailable: allFailed},
			"cold:cheap-slow=3"},
		{"failures are forgotten after the window", LadderInput{Need: 3, Unavailable: allFailed, Now: now.Add(4 * time.Minute), Deadline: now.Add(7 * time.Minute)},
			"cold:pricey-fast=3 [cold:cheap-slow=0]"},
		{"catalog unavailability drops an offering", LadderInput{Need: 1, Cloud: map[string]CloudState{"cheap-slow": {Catalog: []providers.Offering{{InstanceType: "small", Zone: "us-east-1a", CapacityType: providers.CapacityOnDemand, Available: false}}}}},
			"cold:pricey-fast=1"},
		{"nothing needed", LadderInput{Need: 0, OwnIdle: 1},
			"[own:=0] [cold:cheap-slow=0] [cold:pricey-fast=0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			in.Config, in.BusinessUnit = cfg, "bu-a"
			if in.Now.IsZero() {
				in.Now = now
			}
			if got := planString(Ladder(in)); got != tc.want {
				t.Errorf("plan\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestLadderDetails(t *testing.T) {
	cfg := ladderCfg(t)
	now := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	plan := Ladder(LadderInput{Config: cfg, BusinessUnit: "bu-a", Need: 12, Now: now, Deadline: now.Add(2 * time.Minute),
		Cloud: map[string]CloudState{"pricey-fast": {Warm: 0}, "cheap-slow": {}}})
	if !plan.AtRisk {
		t.Error("plan takes hosts from a 4m pool with a 2m deadline but is not at risk")
	}
	s := plan.Steps[0]
	if s.Pool != "pricey-fast" || s.Hosts != 10 || s.Spot != 5 || !s.MeetsDeadline {
		t.Fatalf("first step = %+v", s)
	}
	// big spot is 0.30 per unit of weight, cheaper than mid spot at 0.35.
	if o := s.Offerings[0]; o.InstanceType != "big" || o.CapacityType != providers.CapacitySpot {
		t.Errorf("cheapest offering = %v, want big spot", o)
	}
	// 5 spot units at 0.30 + 5 on-demand units at 0.45 (mid) = 3.75.
	if s.CostPerHour < 3.7499 || s.CostPerHour > 3.7501 {
		t.Errorf("cost per hour = %v, want 3.75", s.CostPerHour)
	}
	plan = Ladder(LadderInput{Config: cfg, BusinessUnit: "nobody", Need: 1, Now: now, SharedFree: 3})
	if len(plan.Skipped) == 0 || !strings.Contains(plan.Skipped[0].Reason, "quota of 0") {
		t.Errorf("unknown business unit borrowed: %+v", plan)
	}
}

func TestOfferingMemory(t *testing.T) {
	now := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	a := providers.Offering{InstanceType: "a", Zone: "z", CapacityType: providers.CapacitySpot}
	b := providers.Offering{InstanceType: "b", Zone: "z", CapacityType: providers.CapacitySpot}
	m := NewOfferingMemory(time.Minute)
	m.RecordError("p", now, providers.NewInsufficientCapacityError(errors.New("ice"), a), a, b)
	if !m.Unavailable("p", a, now) || m.Unavailable("p", b, now) || m.Unavailable("q", a, now) {
		t.Error("insufficient capacity should mark only the named offering of the pool")
	}
	m.RecordError("p", now, providers.NewThrottledError(errors.New("slow down"), 5*time.Minute), b)
	if !m.Unavailable("p", b, now.Add(4*time.Minute)) {
		t.Error("throttling should be remembered for its retry-after")
	}
	// Throttling without a retry-after is about the rate of calls, not
	// the offering: it is left alone briefly, not for the whole window.
	c := providers.Offering{InstanceType: "c", Zone: "z", CapacityType: providers.CapacitySpot}
	m.RecordError("p", now, providers.NewThrottledError(errors.New("slow down"), 0), c)
	if !m.Unavailable("p", c, now.Add(ThrottleBackoff-time.Second)) || m.Unavailable("p", c, now.Add(ThrottleBackoff)) {
		t.Errorf("a throttle without retry-after should be remembered for %s", ThrottleBackoff)
	}
	if m.Unavailable("p", a, now.Add(time.Minute)) {
		t.Error("failure remembered past the window")
	}
	if n := m.Forget(now.Add(2 * time.Minute)); n != 1 {
		t.Errorf("Forget left %d, want 1", n)
	}
	m.RecordError("p", now, errors.New("other"), a)
	var nilMem *OfferingMemory
	nilMem.MarkUnavailable("p", now, 0, a)
	if nilMem.Unavailable("p", a, now) {
		t.Error("nil memory remembers")
	}
}

func TestEstimateTimeToReady(t *testing.T) {
	s := func(secs ...int) []time.Duration {
		out := make([]time.Duration, len(secs))
		for i, x := range secs {
			out[i] = time.Duration(x) * time.Second
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		samples []time.Duration
		want    time.Duration
	}{
		{"no history", nil, 180 * time.Second},
		{"one sample blends", s(60), 156 * time.Second},
		{"enough samples: p90", s(60, 70, 80, 90, 100, 110, 120, 130, 140, 200), 140 * time.Second},
		{"only the last 20 count", append(s(900, 900, 900, 900, 900), s(60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 61)...), 60 * time.Second},
	} {
		if got := EstimateTimeToReady(3*time.Minute, tc.samples); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}

var linkConfig = `
apiVersion: spillway/v1
kind: BusinessUnit
name: bu-a
selector: {node_pool: bu-a}
lending: {share: 50%}
borrowing: {quota: 2}
---
apiVersion: spillway/v1
kind: Link
name: dc1-ali
bandwidth: 100Mbps
target_utilization: 100%
---
apiVersion: spillway/v1
kind: CloudPool
name: ali-a
provider: alicloud
region: cn-beijing
zones: [cn-beijing-h]
offerings: [{instance_type: small, price: {on_demand: 0.1}}]
max_hosts: 10
budget_per_hour: 100
link: dc1-ali
` + bootstrapYAML("cn-beijing", "m-2zefcos42x64spillway", "fcos") + `
---
apiVersion: spillway/v1
kind: CloudPool
name: ali-b
provider: alicloud
region: cn-beijing
zones: [cn-beijing-k]
offerings: [{instance_type: small, price: {on_demand: 0.2}}]
max_hosts: 10
budget_per_hour: 100
link: dc1-ali
` + bootstrapYAML("cn-beijing", "m-2zefcos42x64spillway", "fcos") + `
---
apiVersion: spillway/v1
kind: CloudPool
name: aws-far
provider: aws
region: us-east-1
zones: [us-east-1a]
offerings: [{instance_type: small, price: {on_demand: 0.5}}]
max_hosts: 10
budget_per_hour: 100
` + bootstrapYAML("us-east-1", "ami-0a1b2c3d4e5f60718", "flatcar")

// TestLadderLinks: a pool behind a link takes no more allocations than
// the link carries at its target utilization, rounded down, on as many
// hosts as they need, rounded up; the rest goes to the next pool.
func TestLadderLinks(t *testing.T) {
	cfg, err := Parse("links.yaml", []byte(linkConfig))
	if err != nil {
		t.Fatal(err)
	}
	noAWS := map[string]CloudState{"aws-far": {Hosts: 10}}
	const mbps = 1e6
	for _, tc := range []struct {
		name   string
		in     LadderInput
		want   string
		allocs string // allocations per taken step
		limits string // the links that held the plan back: allowed/wanted
	}{
		{"no traffic figure: no link limit", LadderInput{Need: 3, PerHost: 4}, "cold:ali-a=3 [cold:ali-b=0] [cold:aws-far=0]", "", ""},
		{"the link carries them all", LadderInput{Need: 1, PerHost: 4, Traffic: 20 * mbps}, "cold:ali-a=1 [cold:ali-b=0] [cold:aws-far=0]", "ali-a=4", ""},
		{"5 of 12 behind the link on 2 hosts, 7 on the next pool without it", LadderInput{Need: 3, Allocs: 12, PerHost: 4, Traffic: 20 * mbps},
			"cold:ali-a=2 [cold:ali-b=0] cold:aws-far=2", "ali-a=5 aws-far=7", "ali-a 5/12 ali-b 0/7"},
		{"allocations round down: 4.5 fit, 4 are placed", LadderInput{Need: 3, Allocs: 10, PerHost: 4, Traffic: 22 * mbps, Cloud: noAWS},
			"cold:ali-a=1 [cold:ali-b=0] unmet=2", "ali-a=4", "ali-a 4/10 ali-b 0/6"},
		{"in use counts against the link", LadderInput{Need: 2, Allocs: 5, PerHost: 4, Traffic: 20 * mbps, Cloud: noAWS,
			Links: map[string]LinkState{"dc1-ali": {InUse: 60 * mbps}}},
			"cold:ali-a=1 [cold:ali-b=0] unmet=1", "ali-a=2", "ali-a 2/5 ali-b 0/3"},
		{"a full link gives nothing", LadderInput{Need: 2, Allocs: 5, PerHost: 4, Traffic: 20 * mbps, Cloud: noAWS,
			Links: map[string]LinkState{"dc1-ali": {InUse: 100 * mbps}}},
			"[cold:ali-a=0] [cold:ali-b=0] unmet=2", "", "ali-a 0/5 ali-b 0/5"},
		{"a bandwidth set at run time replaces the file's", LadderInput{Need: 3, Allocs: 12, PerHost: 4, Traffic: 20 * mbps, Cloud: noAWS,
			Links: map[string]LinkState{"dc1-ali": {Bandwidth: 1e9, Set: true}}},
			"cold:ali-a=3 [cold:ali-b=0]", "ali-a=12", ""},
		{"a link lowered to zero at run time", LadderInput{Need: 1, PerHost: 4, Traffic: 20 * mbps, Cloud: noAWS,
			Links: map[string]LinkState{"dc1-ali": {Bandwidth: 0, Set: true}}},
			"[cold:ali-a=0] [cold:ali-b=0] unmet=1", "", "ali-a 0/4 ali-b 0/4"},
		{"a full pool behind the link leaves room to the next pool behind it", LadderInput{Need: 3, Allocs: 12, PerHost: 4, Traffic: 10 * mbps,
			Cloud: map[string]CloudState{"ali-a": {Hosts: 9}, "aws-far": {Hosts: 10}}},
			"cold:ali-a=1 cold:ali-b=2 unmet=1", "ali-a=4 ali-b=6", "ali-b 6/8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			in.Config = cfg
			plan := Ladder(in)
			if got := planString(plan); got != tc.want {
				t.Errorf("plan = %q, want %q", got, tc.want)
			}
			var allocs, limits []string
			for _, s := range plan.Taken() {
				if s.Allocs > 0 {
					allocs = append(allocs, fmt.Sprintf("%s=%d", s.Pool, s.Allocs))
				}
			}
			for _, l := range plan.Links {
				limits = append(limits, fmt.Sprintf("%s %d/%d", l.Pool, l.Allowed, l.Wanted))
			}
			if got := strings.Join(allocs, " "); tc.in.Traffic > 0 && got != tc.allocs {
				t.Errorf("allocations = %q, want %q", got, tc.allocs)
			}
			if got := strings.Join(limits, " "); got != tc.limits {
				t.Errorf("link limits = %q, want %q", got, tc.limits)
			}
			for _, s := range plan.Steps {
				if s.Hosts > s.Available || s.Hosts < 0 {
					t.Errorf("bad step %+v", s)
				}
			}
		})
	}
}

func TestLinkLimitString(t *testing.T) {
	l := LinkLimit{Link: "dc1-ali", Pool: "ali-a", Bandwidth: 100e6, TargetUtilization: 100, Carries: 100e6, InUse: 0, PerAllocation: 20e6, Allowed: 5, Wanted: 8}
	want := "link dc1-ali (100Mbps at 100% carries 100Mbps; 0bps in use) takes 5 more allocations of 20Mbps, not 8"
	if got := l.String(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
