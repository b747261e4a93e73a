package aws_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/aws"
	"github.com/spillwayhq/spillway/providers/cloudsim"
)

func TestInsufficientCapacityIsNeverRetried(t *testing.T) {
	sim, _ := newSim(t)
	pl := pool(providers.LaunchRunInstances)
	a := pl.Offerings[0]
	sim.SetCapacity(cloudsim.CloudAWS, a.Zone, a.InstanceType, string(a.CapacityType), 0)
	p := newProvider(t, sim, accessKey, secretKey)
	_, err := p.Create(context.Background(), providers.Claim{ID: "c1", Pool: pl, Count: 2, Offerings: []providers.Offering{a}})
	if !providers.IsInsufficientCapacity(err) {
		t.Fatalf("err = %v", err)
	}
	// EC2 answers InsufficientInstanceCapacity with a 500, which the
	// standard retryer would retry; ours must not.
	if n := sim.Requests(cloudsim.CloudAWS, "RunInstances"); n != 1 {
		t.Fatalf("RunInstances sent %d times, want 1", n)
	}
}

func TestRetriedCreateFleetReusesClientToken(t *testing.T) {
	sim, _ := newSim(t)
	pl := pool(providers.LaunchFleet)
	sim.InjectFault(cloudsim.Fault{Cloud: cloudsim.CloudAWS, Action: "CreateFleet", Kind: cloudsim.FaultServerErrorAfterCommit, Count: 2})
	p := newProvider(t, sim, accessKey, secretKey)
	hosts, err := p.Create(context.Background(), providers.Claim{ID: "c1", Pool: pl, Count: 4})
	if err != nil || len(hosts) != 4 {
		t.Fatalf("create: %d hosts, %v", len(hosts), err)
	}
	if n := sim.Requests(cloudsim.CloudAWS, "CreateFleet"); n != 3 {
		t.Fatalf("CreateFleet sent %d times, want 3 (two lost responses)", n)
	}
	if n := len(sim.Instances(cloudsim.CloudAWS)); n != 4 {
		t.Fatalf("cloud holds %d instances, want 4", n)
	}
}

func TestAcceptanceTwoOfferingPool(t *testing.T) {
	sim, _ := newSim(t)
	pl := pool(providers.LaunchFleet)
	a, b := pl.Offerings[0], pl.Offerings[1]
	sim.SetCapacity(cloudsim.CloudAWS, a.Zone, a.InstanceType, string(a.CapacityType), 3)
	p := newProvider(t, sim, accessKey, secretKey)
	ctx := context.Background()
	hosts, err := p.Create(ctx, providers.Claim{ID: "claim-7", Pool: pl, Count: 5, Offerings: []providers.Offering{a}})
	ex := providers.ExhaustedOfferings(err)
	if len(hosts) != 3 || len(ex) != 1 || ex[0].Key() != a.Key() {
		t.Fatalf("create of 5 on A(3): %d hosts, err %v", len(hosts), err)
	}
	hosts, err = p.Create(ctx, providers.Claim{ID: "claim-7", Pool: pl, Count: 5, Offerings: []providers.Offering{b}})
	if err != nil || len(hosts) != 5 {
		t.Fatalf("follow-up on B: %d hosts, err %v", len(hosts), err)
	}
	spot := 0
	for _, h := range hosts {
		if h.Offering.CapacityType == providers.CapacitySpot {
			spot++
		}
	}
	if spot != 2 {
		t.Fatalf("%d hosts on spot offering B, want 2", spot)
	}
}

func TestListPaginatesAndReportsLifecycle(t *testing.T) {
	sim, _ := newSim(t)
	pl := pool(providers.LaunchRunInstances)
	p := newProvider(t, sim, accessKey, secretKey) // page size 5
	ctx := context.Background()
	for i := range 3 {
		if _, err := p.Create(ctx, providers.Claim{ID: fmt.Sprintf("c%d", i), Pool: pl, Count: 3}); err != nil {
			t.Fatal(err)
		}
	}
	before := sim.Requests(cloudsim.CloudAWS, "DescribeInstances")
	hosts, err := p.List(ctx, pl.Name)
	if err != nil || len(hosts) != 9 {
		t.Fatalf("list: %d hosts, %v", len(hosts), err)
	}
	if n := sim.Requests(cloudsim.CloudAWS, "DescribeInstances") - before; n != 2 {
		t.Fatalf("list of 9 with page size 5 took %d pages", n)
	}
	for _, h := range hosts {
		if h.State != providers.HostPending || h.PrivateIP == "" || h.Tags["team"] != "burst" {
			t.Fatalf("host = %+v", h)
		}
	}
	sim.Advance(time.Minute)
	h, err := p.Get(ctx, hosts[0].ID)
	if err != nil || h.State != providers.HostRunning {
		t.Fatalf("after a minute: %+v, %v", h, err)
	}
}

func TestThrottledByInstanceBucketThenRefilled(t *testing.T) {
	sim, _ := newSim(t) // instance bucket: burst 1000, 2/s
	pl := pool(providers.LaunchRunInstances)
	p := newProvider(t, sim, accessKey, secretKey)
	ctx := context.Background()
	if _, err := p.Create(ctx, providers.Claim{ID: "big", Pool: pl, Count: 1000}); err != nil {
		t.Fatal(err)
	}
	// The bucket is empty and the fake clock does not move: the retryer
	// backs off, gives up, and the provider says throttled.
	_, err := p.Create(ctx, providers.Claim{ID: "next", Pool: pl, Count: 2, Offerings: pl.Offerings[:1]})
	if !providers.IsThrottled(err) {
		t.Fatalf("err = %v, want throttled", err)
	}
	sim.Advance(time.Second)
	if hosts, err := p.Create(ctx, providers.Claim{ID: "next", Pool: pl, Count: 2, Offerings: pl.Offerings[:1]}); err != nil || len(hosts) != 2 {
		t.Fatalf("after refill: %d hosts, %v", len(hosts), err)
	}
}

func TestBootHookGetsLaunchTemplateUserData(t *testing.T) {
	var got []cloudsim.InstanceEvent
	sim, _ := newSim(t, cloudsim.WithBootHook(func(_ context.Context, ev cloudsim.InstanceEvent) { got = append(got, ev) }))
	p := newProvider(t, sim, accessKey, secretKey)
	hosts, err := p.Create(context.Background(), providers.Claim{ID: "c1", Pool: pool(providers.LaunchFleet), Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	sim.Advance(time.Minute)
	if len(got) != 1 || got[0].InstanceID != hosts[0].ID || string(got[0].UserData) != "#!ignition" || got[0].Tags[providers.TagClaim] != "c1" {
		t.Fatalf("boot events = %+v", got)
	}
}

func TestQuotaIsQuotaError(t *testing.T) {
	for _, strategy := range []providers.LaunchStrategy{providers.LaunchRunInstances, providers.LaunchFleet} {
		t.Run(string(strategy), func(t *testing.T) {
			cfg := simConfig()
			cfg.AWS.Quota.Instances = 2
			sim, _ := newSimWithConfig(t, cfg)
			p := newProvider(t, sim, accessKey, secretKey)
			pl := pool(strategy)
			hosts, err := p.Create(context.Background(), providers.Claim{ID: "q", Pool: pl, Count: 3, Offerings: pl.Offerings[:1]})
			if !providers.IsQuota(err) || len(hosts) != 2 {
				t.Fatalf("create 3 with quota 2: %d hosts, %v", len(hosts), err)
			}
		})
	}
}

func TestOneFleetSpansOfferingsInPriorityOrder(t *testing.T) {
	sim, _ := newSim(t)
	pl := pool(providers.LaunchFleet)
	a := pl.Offerings[0]
	b := providers.Offering{InstanceType: "c5.large", Zone: "us-east-1b", CapacityType: providers.CapacityOnDemand}
	pl.Offerings = []providers.Offering{a, b}
	sim.SetCapacity(cloudsim.CloudAWS, a.Zone, a.InstanceType, string(a.CapacityType), 2)
	p := newProvider(t, sim, accessKey, secretKey)
	hosts, err := p.Create(context.Background(), providers.Claim{ID: "span", Pool: pl, Count: 5})
	if err != nil || len(hosts) != 5 {
		t.Fatalf("create: %d hosts, %v", len(hosts), err)
	}
	perType := map[string]int{}
	for _, h := range hosts {
		perType[h.Offering.InstanceType+"/"+h.Offering.Zone]++
	}
	if perType["m5.large/us-east-1a"] != 2 || perType["c5.large/us-east-1b"] != 3 {
		t.Fatalf("hosts per offering = %v, want 2 on A then 3 on B", perType)
	}
	if n := sim.Requests(cloudsim.CloudAWS, "CreateFleet"); n != 1 {
		t.Fatalf("CreateFleet calls = %d, want 1", n)
	}
}

// TestAppIDNamesTheCaller: every request carries the replica's identity
// in its User-Agent, which the simulator's call log (and CloudTrail) shows.
func TestAppIDNamesTheCaller(t *testing.T) {
	sim, _ := newSim(t)
	p, err := aws.New(context.Background(), aws.Options{
		Cluster: "test-cluster", Region: "us-east-1", Endpoint: sim.URL(),
		Credentials: credentials.NewStaticCredentialsProvider(accessKey, secretKey, ""),
		AppID:       "replica a:1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.List(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	calls := sim.Calls("replica-a-1", time.Time{})
	if len(calls) != 1 || calls[0].Action != "DescribeInstances" || calls[0].Cloud != cloudsim.CloudAWS {
		t.Fatalf("calls of replica-a-1: %+v (all: %+v)", calls, sim.Calls("", time.Time{}))
	}
}

// TestCancelledContextEndsBackoff: on the real clock a retry's backoff
// (here at least 5 s) ends as soon as the request's context is cancelled,
// so a control plane shutting down is not held by the retryer.
func TestCancelledContextEndsBackoff(t *testing.T) {
	sim, _ := newSim(t)
	sim.InjectFault(cloudsim.Fault{Cloud: cloudsim.CloudAWS, Action: "RunInstances", Kind: cloudsim.FaultThrottle, Count: 100})
	p := newProvider(t, sim, accessKey, secretKey, func(o *aws.Options) {
		o.BaseBackoff = 10 * time.Second
		o.MaxBackoff = 20 * time.Second
	})
	pl := pool(providers.LaunchRunInstances)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := p.Create(ctx, providers.Claim{ID: "c1", Pool: pl, Count: 1, Offerings: pl.Offerings[:1]})
		done <- err
	}()
	// Cancel once the first attempt has been answered, so the retryer is
	// in its backoff.
	for sim.Requests(cloudsim.CloudAWS, "RunInstances") == 0 {
		select {
		case err := <-done:
			t.Fatalf("create returned before its first attempt was answered: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("create succeeded through a throttle")
		}
		if n := sim.Requests(cloudsim.CloudAWS, "RunInstances"); n != 1 {
			t.Fatalf("RunInstances sent %d times, want 1", n)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("backoff not ended by the cancelled context within 2 s")
	}
}
