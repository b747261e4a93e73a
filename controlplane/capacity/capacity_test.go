package capacity

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spillwayhq/spillway/pools"
)

func TestGauges(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := New(Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	a.Update(pools.CapacityReport{At: time.Unix(0, 0), Pools: []pools.PoolCapacity{
		{Pool: "bu-a", Tier: pools.TierOwn, Hosts: pools.HostCounts{Total: 3, InUse: 2, Free: 1, Borrowed: 2}},
		{Pool: "shared", Tier: pools.TierShared, Hosts: pools.HostCounts{Total: 2, InUse: 2, Borrowed: 2}, CostPerHour: 0.1},
		{Pool: "aws-lab", Tier: pools.TierCold, Hosts: pools.HostCounts{Total: 1, InUse: 1}, CostPerHour: 0.34},
	}})
	want := `
# HELP spillway_pool_cost_per_hour What each pool's hosts cost per hour now, in the pool's currency.
# TYPE spillway_pool_cost_per_hour gauge
spillway_pool_cost_per_hour{pool="aws-lab"} 0.34
spillway_pool_cost_per_hour{pool="bu-a"} 0
spillway_pool_cost_per_hour{pool="shared"} 0.1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "spillway_pool_cost_per_hour"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(a.hosts); n != 12 {
		t.Errorf("%d host series, want 12", n)
	}
	if v := testutil.ToFloat64(a.hosts.WithLabelValues("shared", "borrowed")); v != 2 {
		t.Errorf("shared borrowed = %v", v)
	}
	// A pool that disappears loses its series.
	a.Update(pools.CapacityReport{Pools: []pools.PoolCapacity{{Pool: "bu-a"}}})
	if n := testutil.CollectAndCount(a.cost); n != 1 {
		t.Errorf("%d cost series after a pool went away, want 1", n)
	}
}
