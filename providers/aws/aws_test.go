package aws_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/aws"
	"github.com/spillwayhq/spillway/providers/cloudsim"
	"github.com/spillwayhq/spillway/providers/providertest"
)

const (
	accessKey = "AKIDCLOUDSIMTEST"
	secretKey = "cloudsim-test-secret"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func intp(n int) *int { return &n }

func simConfig() cloudsim.Config {
	zero := 0.0
	return cloudsim.Config{
		Seed:      42,
		ErrorRate: &zero,
		AWS: cloudsim.CloudConfig{
			Region:   "us-east-1",
			Accounts: []cloudsim.Account{{ID: "111122223333", AccessKeyID: accessKey, SecretAccessKey: secretKey}},
			Subnets:  map[string]string{"subnet-b": "us-east-1b"},
			Offerings: []cloudsim.OfferingConfig{
				{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: cloudsim.OnDemand, Price: 0.096},
				{InstanceType: "c5.large", Zone: "us-east-1b", CapacityType: cloudsim.Spot, Price: 0.031},
				{InstanceType: "c5.large", Zone: "us-east-1b", CapacityType: cloudsim.OnDemand, Price: 0.085},
				{InstanceType: "m5.large", Zone: "us-east-1b", CapacityType: cloudsim.OnDemand, Price: 0.096, Capacity: intp(100)},
			},
			LaunchTemplates: []cloudsim.LaunchTemplate{{ID: "lt-0123456789abcdef0", Name: "spillway-node", ImageID: "ami-0spillway", UserData: "#!ignition"}},
		},
	}
}

// newSim starts a simulator on loopback with a fake clock and no random
// faults.
func newSim(t *testing.T, opts ...cloudsim.Option) (*cloudsim.Simulator, *cloudsim.FakeClock) {
	return newSimWithConfig(t, simConfig(), opts...)
}

func newSimWithConfig(t *testing.T, cfg cloudsim.Config, opts ...cloudsim.Option) (*cloudsim.Simulator, *cloudsim.FakeClock) {
	t.Helper()
	clock := cloudsim.NewFakeClock(t0)
	sim, err := cloudsim.New(cfg, append([]cloudsim.Option{cloudsim.WithClock(clock)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim, clock
}

func newProvider(t *testing.T, sim *cloudsim.Simulator, key, secret string, with ...func(*aws.Options)) *aws.Provider {
	t.Helper()
	opts := aws.Options{
		Cluster:     "test-cluster",
		Region:      "us-east-1",
		Endpoint:    sim.URL(),
		Credentials: credentials.NewStaticCredentialsProvider(key, secret, ""),
		BaseBackoff: 5 * time.Millisecond,
		MaxBackoff:  50 * time.Millisecond,
		PageSize:    5,
		// The simulator here never lags: a gone instance is gone.
		ConsistencyWindow: 100 * time.Millisecond,
	}
	for _, w := range with {
		w(&opts)
	}
	p, err := aws.New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestContractEventualConsistency: EC2 hides an instance from its API for
// a second after the launch; a delete then still terminates it.
func TestContractEventualConsistency(t *testing.T) {
	providertest.RunConsistency(t, func(t *testing.T) *providertest.ConsistencyEnv {
		cfg := simConfig()
		cfg.Latency.DescribeLag = time.Second
		cfg.Latency.API = time.Millisecond
		sim, err := cloudsim.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := sim.Start("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sim.Close() })
		env := contractEnvOn(sim, providers.LaunchRunInstances, "RunInstances")
		env.New = func(t *testing.T) providers.Provider {
			p, err := aws.New(context.Background(), aws.Options{Cluster: "test-cluster", Region: "us-east-1", Endpoint: sim.URL(),
				Credentials: credentials.NewStaticCredentialsProvider(accessKey, secretKey, "")})
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		return &providertest.ConsistencyEnv{Env: *env, Lag: time.Second, Running: func(t *testing.T, id string) bool {
			for _, in := range sim.Instances(cloudsim.CloudAWS) {
				if in.ID == id {
					return in.State == "pending" || in.State == "running"
				}
			}
			return false
		}}
	})
}

func pool(strategy providers.LaunchStrategy) providers.Pool {
	return providers.Pool{
		Name:           "aws-use1",
		LaunchTemplate: "lt-0123456789abcdef0",
		ImageID:        "ami-0spillway",
		Strategy:       strategy,
		UserData:       []byte("#!user-data"),
		Tags:           map[string]string{"team": "burst"},
		Offerings: []providers.Offering{
			{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: providers.CapacityOnDemand, Price: 0.096},
			{InstanceType: "c5.large", Zone: "us-east-1b", Subnet: "subnet-b", CapacityType: providers.CapacitySpot},
		},
	}
}

func contractEnv(strategy providers.LaunchStrategy, action string) func(t *testing.T) *providertest.Env {
	return func(t *testing.T) *providertest.Env {
		sim, _ := newSim(t)
		return contractEnvOn(sim, strategy, action)
	}
}

func contractEnvOn(sim *cloudsim.Simulator, strategy providers.LaunchStrategy, action string) *providertest.Env {
	return &providertest.Env{
		Pool:              pool(strategy),
		New:               func(t *testing.T) providers.Provider { return newProvider(t, sim, accessKey, secretKey) },
		NewBadCredentials: func(t *testing.T) providers.Provider { return newProvider(t, sim, accessKey, "wrong-secret") },
		NewGuarded: func(t *testing.T, guard func(context.Context) error) providers.Provider {
			return newProvider(t, sim, accessKey, secretKey, func(o *aws.Options) { o.RequestGuard = guard })
		},
		SetCapacity: func(t *testing.T, o providers.Offering, n int) {
			if err := sim.SetCapacity(cloudsim.CloudAWS, o.Zone, o.InstanceType, string(o.CapacityType), n); err != nil {
				t.Fatal(err)
			}
		},
		ThrottleNextCreate: func(t *testing.T, n int) {
			sim.InjectFault(cloudsim.Fault{Cloud: cloudsim.CloudAWS, Action: action, Kind: cloudsim.FaultThrottle, Count: n})
		},
		LoseNextCreateResponse: func(t *testing.T) {
			sim.InjectFault(cloudsim.Fault{Cloud: cloudsim.CloudAWS, Action: action, Kind: cloudsim.FaultServerErrorAfterCommit, Count: 1})
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
		Settle: func(t *testing.T) { sim.Advance(time.Minute) },
	}
}

func TestContractCreateFleet(t *testing.T) {
	providertest.Run(t, contractEnv(providers.LaunchFleet, "CreateFleet"))
}

func TestContractRunInstances(t *testing.T) {
	providertest.Run(t, contractEnv(providers.LaunchRunInstances, "RunInstances"))
}
