package alicloud_test

import (
	"context"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/cloudsim"
)

func TestCreateSplitsIntoCallsOfAtMost100(t *testing.T) {
	sim := newSim(t)
	p := newProvider(t, sim, accessKey, secretKey)
	hosts, err := p.Create(context.Background(), providers.Claim{ID: "big", Pool: pool(), Count: 150})
	if err != nil || len(hosts) != 150 {
		t.Fatalf("create 150: %d hosts, %v", len(hosts), err)
	}
	if n := sim.Requests(cloudsim.CloudAlicloud, "RunInstances"); n != 2 {
		t.Fatalf("RunInstances calls = %d, want 2", n)
	}
	listed, err := p.List(context.Background(), pool().Name) // page size 2: 75 pages
	if err != nil || len(listed) != 150 {
		t.Fatalf("list: %d hosts, %v", len(listed), err)
	}
}

func TestQuotaExceedIsQuotaError(t *testing.T) {
	sim := newSimWithQuota(t, 2)
	p := newProvider(t, sim, accessKey, secretKey)
	hosts, err := p.Create(context.Background(), providers.Claim{ID: "b", Pool: pool(), Count: 3})
	if !providers.IsQuota(err) || len(hosts) != 2 {
		t.Fatalf("create 3 with quota 2: %d hosts, %v", len(hosts), err)
	}
}

func newSimWithQuota(t *testing.T, n int) *cloudsim.Simulator {
	t.Helper()
	zero := 0.0
	cfg := cloudsim.Config{ErrorRate: &zero, Alicloud: cloudsim.CloudConfig{
		Region:    "cn-hangzhou",
		Accounts:  []cloudsim.Account{{AccessKeyID: accessKey, SecretAccessKey: secretKey}},
		Subnets:   map[string]string{"vsw-h": "cn-hangzhou-h"},
		Quota:     cloudsim.Quota{Instances: n},
		Offerings: []cloudsim.OfferingConfig{{InstanceType: "ecs.g7.large", Zone: "cn-hangzhou-i", CapacityType: cloudsim.OnDemand, Price: 0.11}},
	}}
	sim, err := cloudsim.New(cfg, cloudsim.WithClock(cloudsim.NewFakeClock(t0)))
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

func TestThrottlingBackoffCountsAttempts(t *testing.T) {
	sim := newSim(t)
	p := newProvider(t, sim, accessKey, secretKey)
	sim.InjectFault(cloudsim.Fault{Cloud: cloudsim.CloudAlicloud, Action: "RunInstances", Kind: cloudsim.FaultThrottle, Count: 3})
	if _, err := p.Create(context.Background(), providers.Claim{ID: "c", Pool: pool(), Count: 1}); err != nil {
		t.Fatal(err)
	}
	if n := sim.Requests(cloudsim.CloudAlicloud, "RunInstances"); n != 4 {
		t.Fatalf("RunInstances sent %d times, want 4", n)
	}
	// Throttled beyond the attempt budget: a typed Throttled error.
	sim.InjectFault(cloudsim.Fault{Cloud: cloudsim.CloudAlicloud, Action: "DescribeInstances", Kind: cloudsim.FaultThrottle, Count: 10})
	if _, err := p.List(context.Background(), "x"); !providers.IsThrottled(err) {
		t.Fatalf("err = %v, want throttled", err)
	}
}

func TestHostsReachRunning(t *testing.T) {
	sim := newSim(t)
	p := newProvider(t, sim, accessKey, secretKey)
	hosts, err := p.Create(context.Background(), providers.Claim{ID: "c", Pool: pool(), Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	sim.Advance(time.Minute)
	h, err := p.Get(context.Background(), hosts[0].ID)
	if err != nil || h.State != providers.HostRunning || h.PrivateIP == "" || h.Offering.Zone != "cn-hangzhou-i" {
		t.Fatalf("host = %+v, %v", h, err)
	}
}
