package fake_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/fake"
	"github.com/spillwayhq/spillway/providers/providertest"
)

func TestContract(t *testing.T) {
	providertest.Run(t, func(t *testing.T) *providertest.Env {
		cloud := fake.NewCloud(nil)
		pool := providers.Pool{Name: "fake-pool", Offerings: []providers.Offering{
			{InstanceType: "small", Zone: "zone-a", CapacityType: providers.CapacityOnDemand, Price: 0.1},
			{InstanceType: "large", Zone: "zone-b", CapacityType: providers.CapacitySpot, Price: 0.05},
		}}
		for _, o := range pool.Offerings {
			cloud.SetPrice(o, o.Price)
		}
		return &providertest.Env{
			Pool:                   pool,
			New:                    func(*testing.T) providers.Provider { return fake.New(cloud, "test", fake.Credential) },
			NewBadCredentials:      func(*testing.T) providers.Provider { return fake.New(cloud, "test", "wrong") },
			SetCapacity:            func(_ *testing.T, o providers.Offering, n int) { cloud.SetCapacity(o, n) },
			ThrottleNextCreate:     func(_ *testing.T, n int) { cloud.ThrottleNext(n) },
			LoseNextCreateResponse: func(*testing.T) { cloud.LoseNextResponse(1) },
			TerminateOutOfBand:     func(_ *testing.T, id string) { cloud.Terminate(id) },
			Interrupt:              func(_ *testing.T, id string) { cloud.Interrupt(id) },
		}
	})
}

func TestRecordsCallsAndInjectsErrors(t *testing.T) {
	p := fake.New(fake.NewCloud(nil), "test", fake.Credential)
	p.NextCreateErr = providers.NewQuotaError(nil)
	if _, err := p.Create(t.Context(), providers.Claim{ID: "c", Count: 1}); !providers.IsQuota(err) {
		t.Fatalf("injected error not returned: %v", err)
	}
	if _, err := p.Create(t.Context(), providers.Claim{ID: "c", Count: 0}); err != nil {
		t.Fatalf("second create: %v", err)
	}
	if len(p.CreateCalls) != 2 {
		t.Fatalf("recorded %d create calls, want 2", len(p.CreateCalls))
	}
	p.Reset()
	if len(p.CreateCalls) != 0 || p.NextCreateErr != nil {
		t.Fatal("reset did not clear state")
	}
}

// The metrics decorator must not change what a provider does.
func TestContractInstrumented(t *testing.T) {
	providertest.Run(t, func(t *testing.T) *providertest.Env {
		cloud := fake.NewCloud(nil)
		reg := prometheus.NewRegistry()
		pool := providers.Pool{Name: "fake-pool", Offerings: []providers.Offering{
			{InstanceType: "small", Zone: "zone-a", CapacityType: providers.CapacityOnDemand, Price: 0.1},
			{InstanceType: "large", Zone: "zone-b", CapacityType: providers.CapacitySpot, Price: 0.05},
		}}
		for _, o := range pool.Offerings {
			cloud.SetPrice(o, o.Price)
		}
		wrap := func(cred string) providers.Provider {
			return providers.Instrument(fake.New(cloud, "test", cred), reg, nil)
		}
		return &providertest.Env{
			Pool:                   pool,
			New:                    func(*testing.T) providers.Provider { return wrap(fake.Credential) },
			NewBadCredentials:      func(*testing.T) providers.Provider { return wrap("wrong") },
			SetCapacity:            func(_ *testing.T, o providers.Offering, n int) { cloud.SetCapacity(o, n) },
			ThrottleNextCreate:     func(_ *testing.T, n int) { cloud.ThrottleNext(n) },
			LoseNextCreateResponse: func(*testing.T) { cloud.LoseNextResponse(1) },
			TerminateOutOfBand:     func(_ *testing.T, id string) { cloud.Terminate(id) },
			Interrupt:              func(_ *testing.T, id string) { cloud.Interrupt(id) },
		}
	})
}
