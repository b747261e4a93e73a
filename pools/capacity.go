package pools

import (
	"slices"
	"time"

	nomad "github.com/hashicorp/nomad/api"
)

// MetaPool is the node meta key naming the cloud pool of a rented host
// (providers/bootstrap writes it on every cloud host it renders).
const MetaPool = "spillway.pool"

// NodeUsage is one Nomad node with what its allocations use, as the
// capacity arithmetic needs it.
type NodeUsage struct {
	ID, Name            string
	Datacenter          string
	NodePool, NodeClass string
	Meta                map[string]string
	// Ready is Nomad status ready; Eligible is scheduling eligibility.
	Ready, Eligible bool
	// Draining says a drain is in progress; Status is Nomad's node status
	// (ready, down, initializing, disconnected).
	Draining bool
	Status   string
	// CPU (MHz) and MemoryMB are what the node offers to allocations (its
	// resources minus reserved).
	CPU, MemoryMB int64
	// UsedCPU and UsedMemoryMB are what its non-terminal allocations use.
	UsedCPU, UsedMemoryMB int64
	// Allocs counts its non-terminal allocations.
	Allocs int
	// Attrs are the node's attributes named in KeptAttributes (the ones
	// job constraints commonly name), so placement can check them on a
	// node that exists; the others are not kept (a node has about a
	// hundred, and the model holds 10,000 nodes).
	Attrs map[string]string
}

// KeptAttributes are the node attributes NodeOf keeps: those that job
// constraints commonly name (${attr.kernel.name}, ${attr.cpu.arch}, …). A
// constraint on any other attribute is one placement cannot check.
var KeptAttributes = []string{
	"kernel.name", "kernel.version", "cpu.arch", "os.name", "os.version", "unique.hostname",
	"platform.aws.instance-type", "platform.aws.placement.availability-zone",
	"driver.exec", "driver.raw_exec", "driver.docker", "driver.java", "driver.qemu",
}

// NodeOf is the one conversion of a Nomad node into a NodeUsage, made by
// the cluster model, the capacity report's reads from Nomad and the shared
// pool: what the node offers is its resources minus what it reserves, a
// nil Meta becomes empty, and the usage is left zero for the caller that
// knows the node's allocations. Every node field is filled (datacenter,
// status and drain too), so a node read from Nomad and one from the model
// look the same to every reader.
func NodeOf(n *nomad.Node) NodeUsage {
	u := NodeUsage{ID: n.ID, Name: n.Name, Datacenter: n.Datacenter, NodePool: n.NodePool, NodeClass: n.NodeClass, Meta: n.Meta,
		Ready: n.Status == nomad.NodeStatusReady, Eligible: n.SchedulingEligibility == nomad.NodeSchedulingEligible,
		Draining: n.DrainStrategy != nil, Status: n.Status}
	if u.Meta == nil {
		u.Meta = map[string]string{}
	}
	u.Attrs = make(map[string]string, 4)
	for _, k := range KeptAttributes {
		if v, ok := n.Attributes[k]; ok {
			u.Attrs[k] = v
		}
	}
	if r := n.NodeResources; r != nil {
		u.CPU, u.MemoryMB = r.Cpu.CpuShares, r.Memory.MemoryMB
	}
	if r := n.ReservedResources; r != nil {
		u.CPU -= int64(r.Cpu.CpuShares)
		u.MemoryMB -= int64(r.Memory.MemoryMB)
	}
	return u
}

// Resources is an amount of CPU (MHz) or memory (MB).
type Resources struct {
	Total int64 `json:"total"`
	Used  int64 `json:"used"`
	Free  int64 `json:"free"`
}

// HostCounts counts a pool's hosts by state.
type HostCounts struct {
	// Total counts ready hosts.
	Total int `json:"total"`
	// Free hosts are ready, eligible, run nothing and are not lent.
	Free int `json:"free"`
	// InUse hosts run allocations.
	InUse int `json:"in_use"`
	// Borrowed is, for the shared pool, how many of its hosts are lent out;
	// for a business unit, how many shared hosts it holds (not part of its
	// Total).
	Borrowed int `json:"borrowed"`
}

// PoolCapacity is one pool's capacity now.
type PoolCapacity struct {
	Pool     string     `json:"pool"`
	Tier     Tier       `json:"tier"`
	Hosts    HostCounts `json:"hosts"`
	CPU      Resources  `json:"cpu_mhz"`
	MemoryMB Resources  `json:"memory_mb"`
	// CostPerHour is what the pool's hosts cost per hour now: rented cloud
	// hosts at their price, lent shared hosts at the internal rate. Own
	// hosts cost nothing extra.
	CostPerHour float64 `json:"cost_per_hour"`
	Currency    string  `json:"currency,omitempty"`
}

// CapacityReport is every pool's capacity at one time.
type CapacityReport struct {
	At    time.Time      `json:"at"`
	Pools []PoolCapacity `json:"pools"`
}

// Pool returns the capacity of pool name.
func (r CapacityReport) Pool(name string) (PoolCapacity, bool) {
	for _, p := range r.Pools {
		if p.Pool == name {
			return p, true
		}
	}
	return PoolCapacity{}, false
}

// Account works out each pool's capacity from Nomad's nodes: business
// units (tier own), the shared pool (tier shared) and cloud pools (tier
// cold; a node belongs to the cloud pool its spillway.pool meta names).
// cloudCost, when it has an entry for a cloud pool, is that pool's cost
// per hour from the provider's hosts; otherwise each host is costed at the
// pool's cheapest configured on-demand price per unit of weight. Nodes
// that match no pool are left out.
func Account(cfg *Config, nodes []NodeUsage, cloudCost map[string]float64, now time.Time) CapacityReport {
	report := CapacityReport{At: now}
	index := map[string]int{}
	add := func(name string, tier Tier, currency string) *PoolCapacity {
		if i, ok := index[name]; ok {
			return &report.Pools[i]
		}
		index[name] = len(report.Pools)
		report.Pools = append(report.Pools, PoolCapacity{Pool: name, Tier: tier, Currency: currency})
		return &report.Pools[len(report.Pools)-1]
	}
	for _, b := range cfg.BusinessUnits {
		add(b.Name, TierOwn, "")
	}
	if cfg.Shared != nil {
		add(cfg.Shared.Name, TierShared, "")
	}
	for _, c := range cfg.CloudPools {
		add(c.Name, TierCold, c.Currency)
	}

	for _, n := range nodes {
		var pc *PoolCapacity
		lent := ""
		switch {
		case cfg.Shared != nil && cfg.Shared.Selector.Matches(n.NodePool, n.NodeClass, n.Meta):
			pc = add(cfg.Shared.Name, TierShared, "")
			lent = n.Meta[MetaLentTo]
			if lent != "" {
				pc.Hosts.Borrowed++
				pc.CostPerHour += cfg.Shared.CostPerHostHour
				if _, ok := cfg.BusinessUnit(lent); ok {
					add(lent, TierOwn, "").Hosts.Borrowed++
				}
			}
		case n.Meta[MetaPool] != "":
			if cp, ok := cfg.CloudPool(n.Meta[MetaPool]); ok {
				pc = add(cp.Name, TierCold, cp.Currency)
			}
		default:
			for _, b := range cfg.BusinessUnits {
				if b.Selector.Matches(n.NodePool, n.NodeClass, n.Meta) {
					pc = add(b.Name, TierOwn, "")
					break
				}
			}
		}
		if pc == nil || !n.Ready {
			continue
		}
		pc.Hosts.Total++
		switch {
		case n.Allocs > 0:
			pc.Hosts.InUse++
		case n.Eligible && lent == "":
			pc.Hosts.Free++
		}
		pc.CPU.Total += n.CPU
		pc.CPU.Used += n.UsedCPU
		pc.MemoryMB.Total += n.MemoryMB
		pc.MemoryMB.Used += n.UsedMemoryMB
	}
	for i := range report.Pools {
		pc := &report.Pools[i]
		pc.CPU.Free = max(pc.CPU.Total-pc.CPU.Used, 0)
		pc.MemoryMB.Free = max(pc.MemoryMB.Total-pc.MemoryMB.Used, 0)
		if pc.Tier != TierCold {
			continue
		}
		if cost, ok := cloudCost[pc.Pool]; ok {
			pc.CostPerHour = cost
		} else if cp, ok := cfg.CloudPool(pc.Pool); ok {
			pc.CostPerHour = float64(pc.Hosts.Total) * CheapestOnDemand(cp)
		}
	}
	slices.SortStableFunc(report.Pools, func(a, b PoolCapacity) int {
		return slices.Index(Tiers, a.Tier) - slices.Index(Tiers, b.Tier)
	})
	return report
}

// CheapestOnDemand is what one host of cp costs per hour at its cheapest
// on-demand offering (per unit of weight): how the capacity report costs
// a cloud pool's hosts when the provider gives no cost.
func CheapestOnDemand(cp *CloudPool) float64 {
	best := 0.0
	for _, o := range cp.Offerings {
		w := o.Weight
		if w <= 0 {
			w = 1
		}
		if p := o.Price.OnDemand / w; best == 0 || p < best {
			best = p
		}
	}
	return best
}

// OwnedHosts counts each business unit's hosts: those its selector matches
// and those it put in the shared pool (by the shared pool's lender meta).
// Lending shares are shares of these counts.
func OwnedHosts(cfg *Config, nodes []NodeUsage) map[string]int {
	out := map[string]int{}
	for _, n := range nodes {
		for _, bu := range cfg.BusinessUnits {
			if bu.Selector.Matches(n.NodePool, n.NodeClass, n.Meta) {
				out[bu.Name]++
			}
		}
		if cfg.Shared != nil && cfg.Shared.Selector.Matches(n.NodePool, n.NodeClass, n.Meta) {
			key := cfg.Shared.LenderMeta
			if key == "" {
				key = MetaBusinessUnit
			}
			out[n.Meta[key]]++
		}
	}
	return out
}
