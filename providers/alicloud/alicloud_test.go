package alicloud_test

import (
	"context"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/alicloud"
	"github.com/spillwayhq/spillway/providers/cloudsim"
	"github.com/spillwayhq/spillway/providers/providertest"
)

const (
	accessKey = "LTAIcloudsimtest"
	secretKey = "cloudsim-test-secret"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newSim(t *testing.T, opts ...cloudsim.Option) *cloudsim.Simulator {
	t.Helper()
	zero := 0.0
	cfg := cloudsim.Config{
		Seed:      7,
		ErrorRate: &zero,
		Alicloud: cloudsim.CloudConfig{
			Region:   "cn-hangzhou",
			Accounts: []cloudsim.Account{{ID: "1234567890", AccessKeyID: accessKey, SecretAccessKey: secretKey}},
			Subnets:  map[string]string{"vsw-h": "cn-hangzhou-h"},
			Offerings: []cloudsim.OfferingConfig{
				{InstanceType: "ecs.g7.large", Zone: "cn-hangzhou-i", CapacityType: cloudsim.OnDemand, Price: 0.11},
				{InstanceType: "ecs.c7.large", Zone: "cn-hangzhou-h", CapacityType: cloudsim.Spot, Price: 0.02},
			},
		},
	}
	sim, err := cloudsim.New(cfg, append([]cloudsim.Option{cloudsim.WithClock(cloudsim.NewFakeClock(t0))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

func newProvider(t *testing.T, sim *cloudsim.Simulator, key, secret string, with ...func(*alicloud.Options)) *alicloud.Provider {
	t.Helper()
	opts := alicloud.Options{
		Cluster:         "test-cluster",
		Region:          "cn-hangzhou",
		Endpoint:        sim.Addr(),
		Scheme:          "http",
		AccessKeyID:     key,
		AccessKeySecret: secret,
		BaseBackoff:     5 * time.Millisecond,
		MaxBackoff:      50 * time.Millisecond,
		PageSize:        2,
		// The simulator here never lags: a gone instance is gone.
		ConsistencyWindow: 100 * time.Millisecond,
	}
	for _, w := range with {
		w(&opts)
	}
	p, err := alicloud.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func pool() providers.Pool {
	return providers.Pool{
		Name:     "ali-hz",
		ImageID:  "fcos_x64",
		UserData: []byte(`{"ignition":{"version":"3.4.0"}}`),
		Offerings: []providers.Offering{
			{InstanceType: "ecs.g7.large", Zone: "cn-hangzhou-i", CapacityType: providers.CapacityOnDemand},
			{InstanceType: "ecs.c7.large", Zone: "cn-hangzhou-h", Subnet: "vsw-h", CapacityType: providers.CapacitySpot},
		},
	}
}

func TestContract(t *testing.T) {
	providertest.Run(t, func(t *testing.T) *providertest.Env {
		sim := newSim(t)
		return &providertest.Env{
			Pool:              pool(),
			New:               func(t *testing.T) providers.Provider { return newProvider(t, sim, accessKey, secretKey) },
			NewBadCredentials: func(t *testing.T) providers.Provider { return newProvider(t, sim, accessKey, "wrong-secret") },
			NewGuarded: func(t *testing.T, guard func(context.Context) error) providers.Provider {
				return newProvider(t, sim, accessKey, secretKey, func(o *alicloud.Options) { o.RequestGuard = guard })
			},
			SetCapacity: func(t *testing.T, o providers.Offering, n int) {
				if err := sim.SetCapacity(cloudsim.CloudAlicloud, o.Zone, o.InstanceType, string(o.CapacityType), n); err != nil {
					t.Fatal(err)
				}
			},
			ThrottleNextCreate: func(t *testing.T, n int) {
				sim.InjectFault(cloudsim.Fault{Cloud: cloudsim.CloudAlicloud, Action: "RunInstances", Kind: cloudsim.FaultThrottle, Count: n})
			},
			LoseNextCreateResponse: func(t *testing.T) {
				sim.InjectFault(cloudsim.Fault{Cloud: cloudsim.CloudAlicloud, Action: "RunInstances", Kind: cloudsim.FaultServerErrorAfterCommit, Count: 1})
			},
			TerminateOutOfBand: func(t *testing.T, id string) {
				if !sim.Terminate(id) {
					t.Fatalf("simulator has no live instance %s", id)
				}
			},
			Interrupt: func(t *testing.T, id string) {
				if err := sim.InterruptSpot(id); err != nil {
					t.Fatal(err)
				}
			},
		}
	})
}

// TestAppIDNamesTheCaller: every request carries the replica's identity
// in its User-Agent, which the simulator's call log (and ActionTrail) shows.
func TestAppIDNamesTheCaller(t *testing.T) {
	sim := newSim(t)
	p, err := alicloud.New(alicloud.Options{
		Cluster: "test-cluster", Region: "cn-hangzhou", Endpoint: sim.Addr(), Scheme: "http",
		AccessKeyID: accessKey, AccessKeySecret: secretKey, AppID: "replica-b",
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.List(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	calls := sim.Calls("replica-b", time.Time{})
	if len(calls) != 1 || calls[0].Action != "DescribeInstances" || calls[0].Cloud != cloudsim.CloudAlicloud {
		t.Fatalf("calls of replica-b: %+v (all: %+v)", calls, sim.Calls("", time.Time{}))
	}
}

// TestContractEventualConsistency: ECS hides an instance from its API for
// a second after the launch; a delete then still deletes it.
func TestContractEventualConsistency(t *testing.T) {
	providertest.RunConsistency(t, func(t *testing.T) *providertest.ConsistencyEnv {
		zero := 0.0
		sim, err := cloudsim.New(cloudsim.Config{
			Seed: 7, ErrorRate: &zero,
			Latency: cloudsim.Latency{API: time.Millisecond, DescribeLag: time.Second},
			Alicloud: cloudsim.CloudConfig{
				Region:    "cn-hangzhou",
				Accounts:  []cloudsim.Account{{ID: "1234567890", AccessKeyID: accessKey, SecretAccessKey: secretKey}},
				Offerings: []cloudsim.OfferingConfig{{InstanceType: "ecs.g7.large", Zone: "cn-hangzhou-i", CapacityType: cloudsim.OnDemand, Price: 0.11}},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := sim.Start("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sim.Close() })
		p := pool()
		p.Offerings = append(p.Offerings[:1:1], p.Offerings[0])
		return &providertest.ConsistencyEnv{
			Env: providertest.Env{
				Pool: p,
				New: func(t *testing.T) providers.Provider {
					p, err := alicloud.New(alicloud.Options{Cluster: "test-cluster", Region: "cn-hangzhou", Endpoint: sim.Addr(), Scheme: "http",
						AccessKeyID: accessKey, AccessKeySecret: secretKey})
					if err != nil {
						t.Fatal(err)
					}
					return p
				},
				SetCapacity: func(t *testing.T, o providers.Offering, n int) {
					if err := sim.SetCapacity(cloudsim.CloudAlicloud, o.Zone, o.InstanceType, string(o.CapacityType), n); err != nil {
						t.Fatal(err)
					}
				},
			},
			Lag: time.Second,
			Running: func(t *testing.T, id string) bool {
				for _, in := range sim.Instances(cloudsim.CloudAlicloud) {
					if in.ID == id {
						return in.State == "Pending" || in.State == "Starting" || in.State == "Running"
					}
				}
				return false
			},
		}
	})
}
