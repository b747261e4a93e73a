package app

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillwayhq/spillway/controlplane/config"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/cloudsim"
)

// startSim starts a cloud simulator with one account per cloud, no random
// errors and short latencies, on a free loopback port.
func startSim(t *testing.T) *cloudsim.Simulator {
	t.Helper()
	zero := 0.0
	sim, err := cloudsim.New(cloudsim.Config{
		Seed: 1, TimeScale: 0.001, ErrorRate: &zero,
		AWS: cloudsim.CloudConfig{
			Accounts:  []cloudsim.Account{{AccessKeyID: "AKIDAPPTEST", SecretAccessKey: "app-test-secret"}},
			Offerings: []cloudsim.OfferingConfig{{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: cloudsim.OnDemand, Price: 0.096}},
		},
		Alicloud: cloudsim.CloudConfig{
			Accounts:  []cloudsim.Account{{AccessKeyID: "LTAIAPPTEST", SecretAccessKey: "app-test-ali-secret"}},
			Offerings: []cloudsim.OfferingConfig{{InstanceType: "ecs.g7.large", Zone: "cn-hangzhou-i", CapacityType: cloudsim.OnDemand, Price: 0.11}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	return sim
}

// simClouds is the clouds config that reaches sim with its credentials.
func simClouds(sim *cloudsim.Simulator) config.Clouds {
	c := config.Default().Clouds
	c.Cluster = "app-test"
	awsAcct, _ := sim.Credentials(cloudsim.CloudAWS)
	aliAcct, _ := sim.Credentials(cloudsim.CloudAlicloud)
	c.AWS = config.AWSCloud{Endpoint: sim.URL(), AccessKeyID: awsAcct.AccessKeyID, SecretAccessKey: config.Secret(awsAcct.SecretAccessKey)}
	c.Alicloud = config.AlicloudCloud{Endpoint: sim.URL(), AccessKeyID: aliAcct.AccessKeyID, AccessKeySecret: config.Secret(aliAcct.SecretAccessKey)}
	return c
}

func cloudPool(name, provider, region string) *pools.CloudPool {
	return &pools.CloudPool{Header: pools.Header{Name: name}, Provider: provider, Region: region}
}

// TestCloudProviders builds the providers of three cloud pools against the
// simulator: the two AWS pools of one region share a provider, every
// provider reaches the simulator with the configured key and counts its
// calls, and building them twice into one registry does not panic.
func TestCloudProviders(t *testing.T) {
	sim := startSim(t)
	pc := &pools.Config{CloudPools: []*pools.CloudPool{
		cloudPool("aws-a", pools.ProviderAWS, "us-east-1"),
		cloudPool("aws-b", pools.ProviderAWS, "us-east-1"),
		cloudPool("ali", pools.ProviderAlicloud, "cn-hangzhou"),
	}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reg := prometheus.NewRegistry()
	ps, err := cloudProviders(ctx, simClouds(sim), pc, providerOptions{reg: reg})
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 3 || ps["aws-a"] == nil || ps["ali"] == nil {
		t.Fatalf("providers: %v", ps)
	}
	if ps["aws-a"] != ps["aws-b"] {
		t.Error("two AWS pools in one region must share a provider")
	}
	if ps["aws-a"] == ps["ali"] || ps["ali"].Name() != "alicloud" || ps["aws-a"].Name() != "aws" {
		t.Errorf("providers: aws-a %s, ali %s", ps["aws-a"].Name(), ps["ali"].Name())
	}

	// A host created for aws-a is listed for aws-a only, and carries the
	// configured cluster tag.
	claim := providers.Claim{ID: "claim-app-1", Count: 1, Pool: providers.Pool{Name: "aws-a", ImageID: "ami-0a1b2c3d4e5f60718",
		Strategy:  providers.LaunchRunInstances,
		Offerings: []providers.Offering{{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: providers.CapacityOnDemand}}}}
	if _, err := ps["aws-a"].Create(ctx, claim); err != nil {
		t.Fatal(err)
	}
	for pool, want := range map[string]int{"aws-a": 1, "aws-b": 0, "ali": 0} {
		hosts, err := ps[pool].List(ctx, pool)
		if err != nil {
			t.Fatalf("listing %s: %v", pool, err)
		}
		if len(hosts) != want {
			t.Errorf("%s lists %d hosts, want %d", pool, len(hosts), want)
		}
	}
	if in := sim.Instances(cloudsim.CloudAWS); len(in) != 1 || in[0].Tags[providers.TagCluster] != "app-test" {
		t.Errorf("instances: %+v", in)
	}

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	if !strings.Contains(strings.Join(names, " "), providers.MetricCallDuration) {
		t.Errorf("metrics %v lack %s", names, providers.MetricCallDuration)
	}
	// A reload builds the providers again into the same registry.
	if _, err := cloudProviders(ctx, simClouds(sim), pc, providerOptions{reg: reg}); err != nil {
		t.Fatal(err)
	}
}

// TestCloudProvidersWrongSecret: a wrong secret is an authentication error
// on the first call, in both clouds.
func TestCloudProvidersWrongSecret(t *testing.T) {
	sim := startSim(t)
	c := simClouds(sim)
	c.AWS.SecretAccessKey = "not-the-secret"
	c.Alicloud.AccessKeySecret = "not-the-secret"
	pc := &pools.Config{CloudPools: []*pools.CloudPool{
		cloudPool("aws-a", pools.ProviderAWS, "us-east-1"),
		cloudPool("ali", pools.ProviderAlicloud, "cn-hangzhou"),
	}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ps, err := cloudProviders(ctx, c, pc, providerOptions{reg: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	for pool, p := range ps {
		_, err := p.List(ctx, pool)
		if !providers.IsAuth(err) {
			t.Errorf("%s: want an authentication error, got %v", pool, err)
		}
		if err != nil && strings.Contains(err.Error(), "not-the-secret") {
			t.Errorf("%s: the error prints the secret: %v", pool, err)
		}
	}
}

func TestCloudProvidersUnknownProvider(t *testing.T) {
	pc := &pools.Config{CloudPools: []*pools.CloudPool{cloudPool("gcp-1", "gcp", "us-central1")}}
	_, err := cloudProviders(context.Background(), config.Default().Clouds, pc, providerOptions{})
	if err == nil || !strings.Contains(err.Error(), `cloud pool gcp-1: unknown provider "gcp"`) {
		t.Fatalf("got %v", err)
	}
	if ps, err := cloudProviders(context.Background(), config.Default().Clouds, nil, providerOptions{}); err != nil || len(ps) != 0 {
		t.Fatalf("no pools: %v, %v", ps, err)
	}
}
