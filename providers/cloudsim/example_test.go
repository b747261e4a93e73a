package cloudsim_test

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/aws"
	"github.com/spillwayhq/spillway/providers/cloudsim"
)

// The lab's use of the simulator: start it in-process on loopback, hand
// booted instances' user data to a hook, and drive Spillway's EC2 provider
// against it.
func Example() {
	cfg, _ := cloudsim.ParseConfig([]byte(`
errorRate: 0
aws:
  accounts: [{accessKeyId: AKIDLAB, secretAccessKey: lab-secret}]
  launchTemplates: [{id: lt-0lab, imageId: ami-0lab, userData: '{"ignition":{"version":"3.4.0"}}'}]
  offerings: [{instanceType: m5.large, zone: us-east-1a, capacityType: on-demand, price: 0.096}]
`))
	sim, _ := cloudsim.New(cfg,
		cloudsim.WithClock(cloudsim.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))),
		cloudsim.WithBootHook(func(_ context.Context, ev cloudsim.InstanceEvent) {
			fmt.Printf("booted on %s, pool %s: %s\n", ev.Provider, ev.Tags[providers.TagPool], ev.UserData)
		}))
	if err := sim.Start("127.0.0.1:0"); err != nil {
		panic(err)
	}
	defer sim.Close()

	acct, _ := sim.Credentials(cloudsim.CloudAWS)
	p, _ := aws.New(context.Background(), aws.Options{
		Cluster:     "lab",
		Region:      sim.Region(cloudsim.CloudAWS),
		Endpoint:    sim.Endpoint(cloudsim.CloudAWS),
		Credentials: credentials.NewStaticCredentialsProvider(acct.AccessKeyID, acct.SecretAccessKey, ""),
	})
	hosts, err := p.Create(context.Background(), providers.Claim{ID: "claim-1", Count: 1, Pool: providers.Pool{
		Name:           "aws-use1",
		LaunchTemplate: "lt-0lab",
		Offerings:      []providers.Offering{{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: providers.CapacityOnDemand}},
	}})
	fmt.Println(len(hosts), err)
	sim.Advance(time.Minute) // pending → running → booted: the hook runs
	// Output:
	// 1 <nil>
	// booted on aws, pool aws-use1: {"ignition":{"version":"3.4.0"}}
}
