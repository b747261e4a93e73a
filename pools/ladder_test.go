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
