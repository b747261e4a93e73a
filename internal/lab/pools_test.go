package lab

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spillwayhq/spillway/controlplane/config"
	"github.com/spillwayhq/spillway/internal/tools"
	"github.com/spillwayhq/spillway/policies"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/bootstrap"
	"github.com/spillwayhq/spillway/providers/cloudsim"
)

// cloudTestLab is a lab that is not started, with a simulator built from
// cfg (started when start is set, for its address).
func cloudTestLab(t *testing.T, cfg cloudsim.Config, maxHosts int, start bool) *Lab {
	t.Helper()
	sim, err := cloudsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if start {
		if err := sim.Start("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sim.Close() })
	}
	return &Lab{Dir: t.TempDir(), cloud: &cloudLab{sim: sim}, opts: Options{
		BusinessUnits: []BusinessUnit{{Name: "bu-a", Hosts: 3}, {Name: "bu-b", Hosts: 3}}, SharedHosts: 2, LabPools: true,
		Cloud: &CloudOptions{Config: cfg, MaxHosts: maxHosts},
	}}
}

// labPools writes l's pool files and loads them as the control plane does.
func labPools(t *testing.T, l *Lab) *pools.Config {
	t.Helper()
	dir, err := l.writePools()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := pools.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

// TestMakeRunsCloudsRunAWSOutAfterOneHost loads the clouds `make run`
// starts (examples/lab/cloudsim.yaml) and the lab's pools for them: AWS is
// the cheaper pool, with one on-demand offering that has room for one
// host, so a burst's second AWS host falls back to Alibaba, which has room
// for the rest of the lab policy's max (16 instances, 4 a host, of which
// the own, shared and AWS hosts hold 12).
func TestMakeRunsCloudsRunAWSOutAfterOneHost(t *testing.T) {
	cfg, err := cloudsim.LoadConfig("../../examples/lab/cloudsim.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if *cfg.ErrorRate != 0 || len(cfg.AWS.Offerings) != 1 || cfg.AWS.Offerings[0].Capacity == nil || *cfg.AWS.Offerings[0].Capacity != 1 {
		t.Fatalf("AWS in the lab's clouds: error rate %v, offerings %+v", *cfg.ErrorRate, cfg.AWS.Offerings)
	}
	if len(cfg.Alicloud.Offerings) != 1 || cfg.Alicloud.Offerings[0].Capacity == nil || *cfg.Alicloud.Offerings[0].Capacity < 1 {
		t.Fatalf("Alibaba in the lab's clouds: %+v", cfg.Alicloud.Offerings)
	}
	l := cloudTestLab(t, cfg, 0, false)
	pc := labPools(t, l)
	aws, okA := pc.CloudPool(AWSCloudPool)
	ali, okB := pc.CloudPool(AlicloudCloudPool)
	if !okA || !okB || aws.Spot != 0 || ali.Spot != 0 || len(aws.Offerings) != 1 || aws.Offerings[0].Price.OnDemand >= ali.Offerings[0].Price.OnDemand {
		t.Fatalf("the lab's cloud pools: aws %+v, alicloud %+v", aws, ali)
	}
	set, err := policies.LoadDir("../../examples/lab/policies")
	if err != nil {
		t.Fatal(err)
	}
	if set.Len() != 1 || set.Policies()[0].Max != 16 {
		t.Fatalf("the lab's policies: %d, want demo-burst with max 16", set.Len())
	}
}

// TestWritePoolsDescribesTheClouds writes the lab's pools for the full
// example simulator config (examples/cloudsim.yaml) and loads them as the control plane does: besides the
// business units and the shared pool there is one valid cloud pool per
// simulated cloud, which describes the simulator and renders a bootstrap
// config.
func TestWritePoolsDescribesTheClouds(t *testing.T) {
	cfg, err := cloudsim.LoadConfig("../../examples/cloudsim.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l := cloudTestLab(t, cfg, 4, false)
	pc := labPools(t, l)
	if len(pc.BusinessUnits) != 2 || pc.Shared == nil || len(pc.CloudPools) != 2 {
		t.Fatalf("pools: %d business units, shared %v, %d cloud pools", len(pc.BusinessUnits), pc.Shared != nil, len(pc.CloudPools))
	}

	aws, ok := pc.CloudPool(AWSCloudPool)
	if !ok {
		t.Fatalf("no pool %s", AWSCloudPool)
	}
	if aws.Provider != "aws" || aws.Region != "us-east-1" || !slices.Equal(aws.Zones, []string{"us-east-1a", "us-east-1b"}) ||
		aws.Subnets["us-east-1a"] != "subnet-0a11" || aws.Subnets["us-east-1b"] != "subnet-0b22" || aws.Spot != 50 ||
		aws.MaxHosts != 4 || aws.BudgetPerHour != 10 || aws.Launch.Strategy != "run-instances" {
		t.Errorf("aws pool: %+v", aws)
	}
	want := []pools.InstanceOffering{
		{InstanceType: "m5.large", Weight: 1, Price: pools.Price{OnDemand: 0.096, Spot: 0.035}},
		{InstanceType: "c5.xlarge", Weight: 1, Price: pools.Price{OnDemand: 0.17, Spot: 0.068}},
	}
	if !slices.Equal(aws.Offerings, want) {
		t.Errorf("aws offerings: %+v, want %+v", aws.Offerings, want)
	}
	// The launch answer, the longest pending and the boot at time scale 1,
	// plus 10s to join: 1.5s + 17s + 20s + 10s, rounded up.
	if aws.TimeToReady != 49*time.Second {
		t.Errorf("aws time_to_ready %s, want 49s", aws.TimeToReady)
	}

	ali, ok := pc.CloudPool(AlicloudCloudPool)
	if !ok {
		t.Fatalf("no pool %s", AlicloudCloudPool)
	}
	if ali.Provider != "alicloud" || ali.Region != "cn-hangzhou" || !slices.Equal(ali.Zones, []string{"cn-hangzhou-i", "cn-hangzhou-h"}) ||
		ali.Subnets["cn-hangzhou-i"] != "vsw-hz-i" || ali.Subnets["cn-hangzhou-h"] != "vsw-hz-h" || ali.Spot != 50 || ali.MaxHosts != 4 {
		t.Errorf("alicloud pool: %+v", ali)
	}
	// ecs.c7.large is spot only in the simulator: its on-demand price is
	// its spot price, and the reverse for ecs.g7.large.
	want = []pools.InstanceOffering{
		{InstanceType: "ecs.g7.large", Weight: 1, Price: pools.Price{OnDemand: 0.11, Spot: 0.11}},
		{InstanceType: "ecs.c7.large", Weight: 1, Price: pools.Price{OnDemand: 0.021, Spot: 0.021}},
	}
	if !slices.Equal(ali.Offerings, want) {
		t.Errorf("alicloud offerings: %+v, want %+v", ali.Offerings, want)
	}

	for _, p := range []*pools.CloudPool{aws, ali} {
		n := p.Bootstrap.Nomad
		if n.Datacenter != Datacenter || n.NodePool != BurstPool || n.NodeClass != BurstClass || n.Install.Version != tools.NomadVersion {
			t.Errorf("%s: nomad %+v", p.Name, n)
		}
		if bootstrap.CloudOfImage(p.ImageID()) != p.Provider {
			t.Errorf("%s: image %q is not a %s image", p.Name, p.ImageID(), p.Provider)
		}
		if _, err := bootstrap.Render(p.Bootstrap, bootstrap.ClaimInfo{Provider: p.Provider, Pool: p.Name, Claim: "claim-1"}); err != nil {
			t.Errorf("%s: rendering the bootstrap config: %v", p.Name, err)
		}
	}
	if aws.Bootstrap.OS != bootstrap.Flatcar || aws.Bootstrap.Nomad.Install.Method != bootstrap.InstallSysext ||
		ali.Bootstrap.OS != bootstrap.FCOS || ali.Bootstrap.Nomad.Install.Method != bootstrap.InstallDownload {
		t.Errorf("bootstrap: aws %s/%s, alicloud %s/%s", aws.Bootstrap.OS, aws.Bootstrap.Nomad.Install.Method, ali.Bootstrap.OS, ali.Bootstrap.Nomad.Install.Method)
	}
	if pp := aws.ProviderPool(); pp.Strategy != providers.LaunchRunInstances || pp.ImageID == "" || len(pp.Offerings) != 8 {
		t.Errorf("aws provider pool: %+v", pp)
	}
}

// TestWritePoolsCloudShapes covers simulator configs unlike make run's: a
// cloud that sells one capacity type, zones without subnets, a cloud with
// no offerings, a shorter time scale, the default max_hosts.
func TestWritePoolsCloudShapes(t *testing.T) {
	zero := 0.0
	cfg := cloudsim.Config{
		TimeScale: 0.02, ErrorRate: &zero,
		AWS: cloudsim.CloudConfig{
			Accounts: []cloudsim.Account{{AccessKeyID: "AKIDLAB", SecretAccessKey: "lab-secret"}},
			Subnets:  map[string]string{"subnet-a": "us-east-1a"},
			Offerings: []cloudsim.OfferingConfig{
				{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: cloudsim.Spot, Price: 0.04},
				{InstanceType: "m5.large", Zone: "us-east-1b", CapacityType: cloudsim.Spot, Price: 0.05},
			},
		},
		Alicloud: cloudsim.CloudConfig{Accounts: []cloudsim.Account{{AccessKeyID: "LTAILAB", SecretAccessKey: "lab-ali-secret"}}},
	}
	l := cloudTestLab(t, cfg, 0, false)
	l.opts.SharedHosts = 0
	pc := labPools(t, l)
	if len(pc.CloudPools) != 1 || pc.CloudPools[0].Name != AWSCloudPool {
		t.Fatalf("want only %s, got %d cloud pools", AWSCloudPool, len(pc.CloudPools))
	}
	p := pc.CloudPools[0]
	// us-east-1b has no subnet: the pool launches by zone.
	if p.Subnets != nil || p.Spot != 100 || p.MaxHosts != defaultCloudMaxHosts ||
		!slices.Equal(p.Offerings, []pools.InstanceOffering{{InstanceType: "m5.large", Weight: 1, Price: pools.Price{OnDemand: 0.04, Spot: 0.04}}}) {
		t.Errorf("pool: %+v", p)
	}
	// (1.5s + 17s + 20s) × 0.02 + 10s = 10.77s, rounded up.
	if p.TimeToReady != 11*time.Second {
		t.Errorf("time_to_ready %s, want 11s", p.TimeToReady)
	}
}

// TestLabCloudPoolsBehindALink: with CloudOptions.Link, every cloud pool
// the lab writes names the link, which is defined once.
func TestLabCloudPoolsBehindALink(t *testing.T) {
	zero := 0.0
	cfg := cloudsim.Config{
		TimeScale: 0.02, ErrorRate: &zero,
		AWS: cloudsim.CloudConfig{
			Accounts:  []cloudsim.Account{{AccessKeyID: "AKIDLAB", SecretAccessKey: "lab-secret"}},
			Subnets:   map[string]string{"subnet-a": "us-east-1a"},
			Offerings: []cloudsim.OfferingConfig{{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: cloudsim.OnDemand, Price: 0.1}},
		},
		Alicloud: cloudsim.CloudConfig{Accounts: []cloudsim.Account{{AccessKeyID: "LTAILAB", SecretAccessKey: "lab-ali-secret"}}},
	}
	l := cloudTestLab(t, cfg, 0, false)
	l.opts.SharedHosts = 0
	l.opts.Cloud.Link = &Link{Name: "lab-line", Bandwidth: "100Mbps", TargetUtilization: 100}
	pc := labPools(t, l)
	k, ok := pc.Link("lab-line")
	if !ok || k.Bandwidth != 100e6 || k.TargetUtilization != 100 {
		t.Fatalf("link %+v", k)
	}
	for _, p := range pc.CloudPools {
		if p.Link != "lab-line" {
			t.Errorf("pool %s names link %q", p.Name, p.Link)
		}
	}
}

// TestCloudsConfigReachesTheSimulator: the clouds key the lab gives the
// control plane loads, and names the simulator and its first accounts.
func TestCloudsConfigReachesTheSimulator(t *testing.T) {
	cfg, err := cloudsim.LoadConfig("../../examples/cloudsim.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l := cloudTestLab(t, cfg, 0, true)
	data, err := yaml.Marshal(map[string]any{"clouds": l.cloudsConfig()})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "spillway.yaml")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, _, err := config.Load(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, sim := loaded.Clouds, l.Cloud()
	awsAcct, _ := sim.Credentials(cloudsim.CloudAWS)
	aliAcct, _ := sim.Credentials(cloudsim.CloudAlicloud)
	if c.Cluster != CloudCluster || c.OrphanGrace != time.Minute || c.AWS.Endpoint != sim.Endpoint(cloudsim.CloudAWS) ||
		c.AWS.AccessKeyID != awsAcct.AccessKeyID || c.AWS.SecretAccessKey.Reveal() != awsAcct.SecretAccessKey ||
		c.Alicloud.AccessKeyID != aliAcct.AccessKeyID || c.Alicloud.AccessKeySecret.Reveal() != aliAcct.SecretAccessKey {
		t.Errorf("clouds: %+v", c)
	}
	if host, scheme := c.Alicloud.Domain(); host != sim.Endpoint(cloudsim.CloudAlicloud) || scheme != "http" {
		t.Errorf("alicloud domain %q, scheme %q; the simulator is at %s", host, scheme, sim.Endpoint(cloudsim.CloudAlicloud))
	}
}
