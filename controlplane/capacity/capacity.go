// Package capacity owns the capacity report of every pool: it takes
// Nomad's nodes and what their allocations use (in the daemon, from the
// cluster model), works out total, free, in-use and
// borrowed hosts, CPU and memory and the cost per hour of each tier with
// pools.Account, and exports them as Prometheus gauges
// spillway_pool_hosts{pool,state} and spillway_pool_cost_per_hour{pool}
// for the API and the console.
package capacity

import (
	"context"
	"fmt"
	"sync"
	"time"

	nomad "github.com/hashicorp/nomad/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillwayhq/spillway/pools"
)

// Nodes reads every Nomad node with the resources its non-terminal
// allocations use, straight from Nomad (2 + N requests): for one-off
// reads outside the daemon, such as tools and tests. The daemon reads the
// cluster model instead.
func Nodes(ctx context.Context, nc *nomad.Client) ([]pools.NodeUsage, error) {
	stubs, _, err := nc.Nodes().List((&nomad.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	allocs, _, err := nc.Allocations().List((&nomad.QueryOptions{
		Params: map[string]string{"resources": "true"},
		Filter: `ClientStatus == "running" or ClientStatus == "pending"`,
	}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("listing allocations: %w", err)
	}
	type use struct {
		cpu, mem int64
		n        int
	}
	used := map[string]*use{}
	for _, a := range allocs {
		if a.DesiredStatus != nomad.AllocDesiredStatusRun {
			continue
		}
		u := used[a.NodeID]
		if u == nil {
			u = &use{}
			used[a.NodeID] = u
		}
		u.n++
		if r := a.AllocatedResources; r != nil {
			for _, t := range r.Tasks {
				u.cpu += t.Cpu.CpuShares
				u.mem += t.Memory.MemoryMB
			}
		}
	}
	out := make([]pools.NodeUsage, 0, len(stubs))
	for _, s := range stubs {
		// Meta is not in the list stub; read each node (the blocking-query
		// watcher of the daemon can cache these).
		n, _, err := nc.Nodes().Info(s.ID, (&nomad.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("reading node %s: %w", s.Name, err)
		}
		nu := pools.NodeOf(n)
		if u := used[n.ID]; u != nil {
			nu.UsedCPU, nu.UsedMemoryMB, nu.Allocs = u.cpu, u.mem, u.n
		}
		out = append(out, nu)
	}
	return out, nil
}

// Accountant produces capacity reports and keeps the gauges current.
type Accountant struct {
	nodes func(ctx context.Context) ([]pools.NodeUsage, error)
	now   func() time.Time
	// CloudCost, if set, returns each cloud pool's cost per hour from its
	// provider's hosts.
	cloudCost func(ctx context.Context) (map[string]float64, error)

	hosts *prometheus.GaugeVec
	cost  *prometheus.GaugeVec

	mu   sync.Mutex
	last pools.CapacityReport
}

// Options configures an Accountant.
type Options struct {
	// Nodes gives the nodes with their usage (the daemon's cluster model);
	// when nil, they are read from Nomad.
	Nodes func(ctx context.Context) ([]pools.NodeUsage, error)
	Nomad *nomad.Client
	// Registerer receives the gauges; nil means none are registered.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// CloudCost returns each cloud pool's cost per hour; nil means costs
	// come from configured prices.
	CloudCost func(ctx context.Context) (map[string]float64, error)
}

// Host states of spillway_pool_hosts.
var states = []string{"total", "free", "in_use", "borrowed"}

// New returns an Accountant and registers its gauges.
func New(opts Options) (*Accountant, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Nodes == nil {
		nc := opts.Nomad
		opts.Nodes = func(ctx context.Context) ([]pools.NodeUsage, error) { return Nodes(ctx, nc) }
	}
	a := &Accountant{
		nodes: opts.Nodes, now: opts.Now, cloudCost: opts.CloudCost,
		hosts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spillway_pool_hosts",
			Help: "Hosts of each pool by state: total (ready), free, in_use, borrowed (shared pool: lent out; business unit: shared hosts it holds).",
		}, []string{"pool", "state"}),
		cost: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spillway_pool_cost_per_hour",
			Help: "What each pool's hosts cost per hour now, in the pool's currency.",
		}, []string{"pool"}),
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{a.hosts, a.cost} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("registering capacity gauges: %w", err)
			}
		}
	}
	return a, nil
}

// Report reads Nomad, accounts every pool of cfg, updates the gauges and
// returns the report.
func (a *Accountant) Report(ctx context.Context, cfg *pools.Config) (pools.CapacityReport, error) {
	nodes, err := a.nodes(ctx)
	if err != nil {
		return pools.CapacityReport{}, fmt.Errorf("accounting capacity: %w", err)
	}
	var cost map[string]float64
	if a.cloudCost != nil {
		if cost, err = a.cloudCost(ctx); err != nil {
			return pools.CapacityReport{}, fmt.Errorf("accounting cloud cost: %w", err)
		}
	}
	r := pools.Account(cfg, nodes, cost, a.now())
	a.Update(r)
	return r, nil
}

// Update sets the gauges from r, dropping pools r no longer has.
func (a *Accountant) Update(r pools.CapacityReport) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.hosts.Reset()
	a.cost.Reset()
	for _, p := range r.Pools {
		for _, s := range states {
			var v int
			switch s {
			case "total":
				v = p.Hosts.Total
			case "free":
				v = p.Hosts.Free
			case "in_use":
				v = p.Hosts.InUse
			case "borrowed":
				v = p.Hosts.Borrowed
			}
			a.hosts.WithLabelValues(p.Pool, s).Set(float64(v))
		}
		a.cost.WithLabelValues(p.Pool).Set(p.CostPerHour)
	}
	a.last = r
}

// Last returns the most recent report.
func (a *Accountant) Last() pools.CapacityReport {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}
