package pools

import (
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"
)

func TestAccount(t *testing.T) {
	cfg := ladderCfg(t)
	node := func(name, pool string, meta map[string]string, allocs int, usedCPU int64) NodeUsage {
		return NodeUsage{ID: name, Name: name, NodePool: pool, NodeClass: "internal", Meta: meta, Ready: true, Eligible: true,
			CPU: 2000, MemoryMB: 2048, UsedCPU: usedCPU, UsedMemoryMB: usedCPU, Allocs: allocs}
	}
	nodes := []NodeUsage{
		node("a1", "bu-a", nil, 2, 1500),
		node("a2", "bu-a", nil, 0, 0),
		node("s1", "shared", map[string]string{MetaLentTo: "bu-a"}, 1, 500),
		node("s2", "shared", nil, 0, 0),
		node("c1", "burst", map[string]string{MetaPool: "cheap-slow"}, 1, 100),
		node("c2", "burst", map[string]string{MetaPool: "pricey-fast"}, 0, 0),
		node("x", "elsewhere", nil, 3, 100),
	}
	nodes[1].Eligible = false
	down := node("a3", "bu-a", nil, 0, 0)
	down.Ready = false
	nodes = append(nodes, down)
	now := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	r := Account(cfg, nodes, map[string]float64{"pricey-fast": 1.25}, now)
	if len(r.Pools) != 4 || r.Pools[0].Tier != TierOwn || r.Pools[1].Tier != TierShared || r.Pools[3].Tier != TierCold {
		t.Fatalf("pools = %+v", r.Pools)
	}
	a, _ := r.Pool("bu-a")
	if a.Hosts != (HostCounts{Total: 2, Free: 0, InUse: 1, Borrowed: 1}) || a.CPU != (Resources{Total: 4000, Used: 1500, Free: 2500}) {
		t.Errorf("bu-a = %+v", a)
	}
	s, _ := r.Pool("shared")
	if s.Hosts != (HostCounts{Total: 2, Free: 1, InUse: 1, Borrowed: 1}) || s.CostPerHour != 0.05 {
		t.Errorf("shared = %+v", s)
	}
	c, _ := r.Pool("cheap-slow")
	if c.Hosts != (HostCounts{Total: 1, InUse: 1}) || c.CostPerHour != 0.2 || c.Currency != "USD" {
		t.Errorf("cheap-slow = %+v", c)
	}
	p, _ := r.Pool("pricey-fast")
	if p.Hosts.Free != 1 || p.CostPerHour != 1.25 || p.MemoryMB.Free != 2048 {
		t.Errorf("pricey-fast = %+v", p)
	}
}

func TestOwnedHosts(t *testing.T) {
	cfg := ladderCfg(t)
	nodes := []NodeUsage{
		{Name: "a1", NodePool: "bu-a", NodeClass: "internal"},
		{Name: "a2", NodePool: "bu-a", NodeClass: "internal"},
		{Name: "s1", NodePool: "shared", Meta: map[string]string{MetaBusinessUnit: "bu-a"}},
		{Name: "s2", NodePool: "shared", Meta: map[string]string{MetaBusinessUnit: "bu-b"}},
		{Name: "x", NodePool: "elsewhere"},
	}
	got := OwnedHosts(cfg, nodes)
	if got["bu-a"] != 3 || got["bu-b"] != 1 || len(got) != 2 {
		t.Fatalf("OwnedHosts = %v, want bu-a 3 (2 own + 1 lent), bu-b 1", got)
	}
}

// TestNodeOf pins the one conversion of a Nomad node: what it offers is
// its resources minus what it reserves, and status, eligibility, drain,
// datacenter and an empty meta all come across.
func TestNodeOf(t *testing.T) {
	n := &nomad.Node{ID: "n1", Name: "host-1", Datacenter: "dc1", NodePool: "shared", NodeClass: "internal",
		Status: nomad.NodeStatusReady, SchedulingEligibility: nomad.NodeSchedulingEligible, DrainStrategy: &nomad.DrainStrategy{},
		NodeResources: &nomad.NodeResources{Cpu: nomad.NodeCpuResources{CpuShares: 4000}, Memory: nomad.NodeMemoryResources{MemoryMB: 8192}},
		ReservedResources: &nomad.NodeReservedResources{Cpu: nomad.NodeReservedCpuResources{CpuShares: 500},
			Memory: nomad.NodeReservedMemoryResources{MemoryMB: 1024}},
		Attributes: map[string]string{"kernel.name": "linux", "cpu.arch": "amd64", "cpu.modelname": "Xeon", "nomad.version": "1.6.3"}}
	u := NodeOf(n)
	if len(u.Attrs) != 2 || u.Attrs["kernel.name"] != "linux" || u.Attrs["cpu.arch"] != "amd64" {
		t.Errorf("NodeOf keeps the attributes %v; want only the kept ones (kernel.name, cpu.arch)", u.Attrs)
	}
	if u.ID != "n1" || u.Name != "host-1" || u.Datacenter != "dc1" || u.NodePool != "shared" || u.NodeClass != "internal" ||
		!u.Ready || !u.Eligible || !u.Draining || u.Status != nomad.NodeStatusReady || u.Meta == nil {
		t.Errorf("NodeOf = %+v", u)
	}
	if u.CPU != 3500 || u.MemoryMB != 7168 || u.UsedCPU != 0 || u.UsedMemoryMB != 0 || u.Allocs != 0 {
		t.Errorf("NodeOf offers %d MHz, %d MB (used %d, %d, %d allocs); want 3500 MHz, 7168 MB, no usage",
			u.CPU, u.MemoryMB, u.UsedCPU, u.UsedMemoryMB, u.Allocs)
	}
	down := NodeOf(&nomad.Node{ID: "n2", Status: nomad.NodeStatusDown, SchedulingEligibility: nomad.NodeSchedulingIneligible})
	if down.Ready || down.Eligible || down.Draining || down.Status != nomad.NodeStatusDown || down.CPU != 0 || down.MemoryMB != 0 {
		t.Errorf("NodeOf(down node) = %+v", down)
	}
}
