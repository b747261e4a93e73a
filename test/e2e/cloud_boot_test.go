package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/internal/lab"
	"github.com/spillwayhq/spillway/internal/lab/labtest"
	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/alicloud"
	"github.com/spillwayhq/spillway/providers/aws"
	"github.com/spillwayhq/spillway/providers/bootstrap"
	"github.com/spillwayhq/spillway/providers/cloudsim"
)

// Secrets of the AWS pool: they reach the hosts' files, never a log.
const (
	cloudACLToken = "e2e-acl-token-7d0c9b1e-never-logged"
	cloudTLSKey   = "E2EKEYBODYneverLoggedE2EKEYBODYneverLogged"
)

func awsBootstrap() *bootstrap.Spec {
	return &bootstrap.Spec{
		OS:     bootstrap.Flatcar,
		Images: []bootstrap.Image{{Region: "us-east-1", ID: "ami-0a1b2c3d4e5f60718", Variant: bootstrap.Flatcar, Version: "4230.2.3"}},
		Nomad: bootstrap.Nomad{
			Servers:    []string{"nomad.dc1.example.com:4647"},
			Datacenter: "aws-use1", NodePool: "burst-aws", NodeClass: "burst",
			Meta: map[string]string{"team": "payments"},
			Install: bootstrap.Install{Method: bootstrap.InstallSysext, Version: "1.6.3",
				URL: "https://artifacts.dc1.example.com/sysext/nomad-1.6.3-x86-64.raw"},
			TLS: &bootstrap.TLS{
				CA:   "-----BEGIN CERTIFICATE-----\nMIIBe2eCA\n-----END CERTIFICATE-----",
				Cert: "-----BEGIN CERTIFICATE-----\nMIIBe2eClient\n-----END CERTIFICATE-----",
				Key:  bootstrap.NewSecret("-----BEGIN EC PRIVATE KEY-----\n" + cloudTLSKey + "\n-----END EC PRIVATE KEY-----"),
			},
			ACLToken: bootstrap.NewSecret(cloudACLToken),
		},
		RegistryMirror: &bootstrap.RegistryMirror{Endpoint: "https://registry.dc1.example.com:5000"},
		Sysctls:        map[string]string{"net.core.somaxconn": "4096"},
		PrePull:        []string{"docker.io/library/nginx:1.27"},
	}
}

func alicloudBootstrap() *bootstrap.Spec {
	return &bootstrap.Spec{
		OS:     bootstrap.FCOS,
		Images: []bootstrap.Image{{Region: "cn-hangzhou", ID: "m-bp1fcos42x64spillway", Variant: bootstrap.FCOS, Version: "42.20250705.3.0"}},
		Nomad: bootstrap.Nomad{
			RetryJoin:  []string{"nomad.dc1.example.com"},
			Datacenter: "ali-hz", NodePool: "burst-ali", NodeClass: "burst",
			Install: bootstrap.Install{Method: bootstrap.InstallDownload, Version: "1.6.3",
				URL:    "https://artifacts.dc1.example.com/nomad/1.6.3/linux_amd64/nomad",
				SHA512: strings.Repeat("0f", 64)},
		},
		Sysctls: map[string]string{"net.ipv4.ip_forward": "1"},
	}
}

// TestCloudHostsBootIntoNomad is the acceptance test of host bootstrap: 3
// hosts claimed through the EC2 provider and 2 through the ECS provider
// from the lab's cloud simulator boot their rendered Ignition configs into
// ready Nomad nodes with the pool, class and claim meta; a job constrained
// to them runs; terminating them stops their agents and takes the nodes
// down; each host's timeline has every phase; no secret reaches a log.
func TestCloudHostsBootIntoNomad(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	zero := 0.0
	simCfg := cloudsim.Config{
		Seed:      42,
		TimeScale: 0.02, // pending 0.1–0.34s, boot 0.4s
		ErrorRate: &zero,
		AWS: cloudsim.CloudConfig{
			Region:    "us-east-1",
			Accounts:  []cloudsim.Account{{AccessKeyID: "AKIDLABE2E", SecretAccessKey: "lab-e2e-secret"}},
			Offerings: []cloudsim.OfferingConfig{{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: cloudsim.OnDemand, Price: 0.096}},
		},
		Alicloud: cloudsim.CloudConfig{
			Region:    "cn-hangzhou",
			Accounts:  []cloudsim.Account{{AccessKeyID: "LTAILABE2E", SecretAccessKey: "lab-e2e-secret"}},
			Offerings: []cloudsim.OfferingConfig{{InstanceType: "ecs.g7.large", Zone: "cn-hangzhou-i", CapacityType: cloudsim.OnDemand, Price: 0.11}},
		},
	}
	var timeline bootstrap.Recorder
	progress := &cloudLogBuffer{}
	l := labtest.Start(t, lab.Options{
		BusinessUnits: []lab.BusinessUnit{{Name: "bu-a", Hosts: 1}},
		HostCPU:       2000, HostMemoryMB: 2048,
		Cloud:    &lab.CloudOptions{Config: simCfg, Timeline: &timeline, HostCPU: 1000, HostMemoryMB: 1024},
		Progress: cloudTeeLog{t, progress},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sim := l.Cloud()

	// The real providers, against the simulator.
	awsAcct, _ := sim.Credentials(cloudsim.CloudAWS)
	awsP, err := aws.New(ctx, aws.Options{Cluster: "lab", Region: sim.Region(cloudsim.CloudAWS), Endpoint: sim.Endpoint(cloudsim.CloudAWS),
		Credentials: credentials.NewStaticCredentialsProvider(awsAcct.AccessKeyID, awsAcct.SecretAccessKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	aliAcct, _ := sim.Credentials(cloudsim.CloudAlicloud)
	aliP, err := alicloud.New(alicloud.Options{Cluster: "lab", Region: sim.Region(cloudsim.CloudAlicloud), Endpoint: sim.Endpoint(cloudsim.CloudAlicloud),
		Scheme: "http", AccessKeyID: aliAcct.AccessKeyID, AccessKeySecret: aliAcct.SecretAccessKey})
	if err != nil {
		t.Fatal(err)
	}

	type claim struct {
		provider providers.Provider
		spec     *bootstrap.Spec
		pool     providers.Pool
		id       string
		count    int
	}
	claims := []*claim{
		{provider: awsP, spec: awsBootstrap(), id: "claim-aws-1", count: 3, pool: providers.Pool{Name: "aws-burst", Strategy: providers.LaunchRunInstances,
			Offerings: []providers.Offering{{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: providers.CapacityOnDemand}}}},
		{provider: aliP, spec: alicloudBootstrap(), id: "claim-ali-1", count: 2, pool: providers.Pool{Name: "ali-burst",
			Offerings: []providers.Offering{{InstanceType: "ecs.g7.large", Zone: "cn-hangzhou-i", CapacityType: providers.CapacityOnDemand}}}},
	}
	type want struct {
		provider, pool, claim, nodePool string
	}
	wantNodes := map[string]want{} // instance ID → expectations
	var hosts []providers.Host
	for _, c := range claims {
		region := sim.Region(c.provider.Name())
		im, err := c.spec.Image(region)
		if err != nil {
			t.Fatal(err)
		}
		r, err := bootstrap.Render(c.spec, bootstrap.ClaimInfo{Provider: c.provider.Name(), Pool: c.pool.Name, Claim: c.id})
		if err != nil {
			t.Fatal(err)
		}
		c.pool.ImageID, c.pool.UserData = im.ID, r.UserData
		got, err := c.provider.Create(ctx, providers.Claim{ID: c.id, Pool: c.pool, Count: c.count})
		if err != nil || len(got) != c.count {
			t.Fatalf("%s: create %d hosts: got %d, %v", c.provider.Name(), c.count, len(got), err)
		}
		for _, h := range got {
			wantNodes[h.ID] = want{c.provider.Name(), c.pool.Name, c.id, c.spec.Nomad.NodePool}
		}
		hosts = append(hosts, got...)
	}

	// All five become ready Nomad nodes with the pool, class and meta.
	nodes := waitCloudNodes(t, ctx, l, func(ns []*nomad.NodeListStub) error {
		ready := 0
		for _, n := range ns {
			if _, ok := wantNodes[n.Name]; ok && n.Status == nomad.NodeStatusReady && n.SchedulingEligibility == nomad.NodeSchedulingEligible {
				ready++
			}
		}
		if ready < len(wantNodes) {
			return fmt.Errorf("%d of %d cloud hosts are ready nodes", ready, len(wantNodes))
		}
		// Ready includes the images pre-pulled, where the pool pre-pulls.
		for id := range wantNodes {
			if !slices.Contains(timeline.Phases(id), bootstrap.PhaseReady) {
				return fmt.Errorf("host %s has reached %v", id, timeline.Phases(id))
			}
		}
		return nil
	})
	nodeOf := map[string]string{}
	for _, n := range nodes {
		w, ok := wantNodes[n.Name]
		if !ok {
			continue
		}
		nodeOf[n.Name] = n.ID
		node, _, err := l.Nomad().Nodes().Info(n.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		m := node.Meta
		if node.NodePool != w.nodePool || node.NodeClass != "burst" || m[bootstrap.MetaInstance] != n.Name || m[bootstrap.MetaClaim] != w.claim ||
			m[bootstrap.MetaPool] != w.pool || m[bootstrap.MetaProvider] != w.provider {
			t.Errorf("node %s: pool %q class %q meta %v, want pool %s, class burst, %+v", n.Name, node.NodePool, node.NodeClass, m, w.nodePool, w)
		}
		if w.provider == "aws" && (m["team"] != "payments" || m[bootstrap.MetaPrePull] != bootstrap.PrePullDone) {
			t.Errorf("aws node %s: meta %v, want team=payments and the pre-pull done", n.Name, m)
		}
		if dc := map[string]string{"aws": "aws-use1", "alicloud": "ali-hz"}[w.provider]; node.Datacenter != dc {
			t.Errorf("node %s is in datacenter %s, want %s", n.Name, node.Datacenter, dc)
		}
	}

	// The AWS hosts ran the rendered pre-pull unit against their agents
	// (the lab stands in only for the container engine).
	for id, w := range wantNodes {
		if w.provider != "aws" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(l.Dir, "nomad", id, "boot.log"))
		if err != nil || !bytes.Contains(b, []byte("spillway-prepull.service: done")) || !bytes.Contains(b, []byte("ineligible")) {
			t.Errorf("host %s did not run the pre-pull unit (%v):\n%s", id, err, b)
		}
	}

	// A job constrained to them runs, one allocation per cloud host.
	job := burstJob(len(wantNodes))
	if _, _, err := l.Nomad().Jobs().Register(job, nil); err != nil {
		t.Fatal(err)
	}
	waitCloud(t, ctx, "burst job running on every cloud host", func() error {
		allocs, _, err := l.Nomad().Jobs().Allocations(*job.ID, false, nil)
		if err != nil {
			return err
		}
		on := map[string]bool{}
		for _, a := range allocs {
			if a.ClientStatus == nomad.AllocClientStatusRunning {
				on[a.NodeID] = true
			}
		}
		for id, node := range nodeOf {
			if !on[node] {
				return fmt.Errorf("no running allocation on %s", id)
			}
		}
		return nil
	})
	for _, h := range hosts {
		if len(lab.InstanceProcesses(h.ID)) < 2 {
			t.Errorf("instance %s: want its agent and task processes, got %v", h.ID, lab.InstanceProcesses(h.ID))
		}
	}

	// Terminating them stops every agent and task, and the nodes go down.
	for _, h := range hosts {
		p := providers.Provider(awsP)
		if h.Provider == alicloud.Name {
			p = aliP
		}
		if err := p.Delete(ctx, h); err != nil {
			t.Fatalf("deleting %s: %v", h.ID, err)
		}
	}
	waitCloud(t, ctx, "cloud host processes gone", func() error {
		for _, h := range hosts {
			if pids := lab.InstanceProcesses(h.ID); len(pids) > 0 {
				return fmt.Errorf("instance %s still has processes %v", h.ID, pids)
			}
		}
		return nil
	})
	waitCloudNodes(t, ctx, l, func(ns []*nomad.NodeListStub) error {
		for _, n := range ns {
			if _, ok := wantNodes[n.Name]; ok && n.Status != nomad.NodeStatusDown {
				return fmt.Errorf("node %s is %s, %s", n.Name, n.Status, n.SchedulingEligibility)
			}
		}
		return nil
	})

	// Every host has the whole timeline, in order.
	for id := range wantNodes {
		if !timeline.Complete(id) {
			t.Errorf("host %s timeline: %v", id, timeline.Events(id))
		}
	}
	evs := timeline.Events("")
	sort.Slice(evs, func(i, j int) bool { return evs[i].At.Before(evs[j].At) })
	for _, e := range evs {
		if e.Phase == bootstrap.PhaseReady {
			first := timeline.Events(e.Host)[0]
			t.Logf("%s (%s %s): ready %s after the request", e.Host, e.Provider, e.Pool, e.At.Sub(first.At).Round(time.Millisecond))
		}
	}
	for _, h := range l.CloudHosts() {
		if h.Err != nil || !h.Terminated {
			t.Errorf("cloud host %s: err %v, terminated %v", h.ID, h.Err, h.Terminated)
		}
	}

	// No secret reached a log: the lab's progress, every process log and
	// every boot log.
	logs := []string{progress.String()}
	files, _ := filepath.Glob(filepath.Join(l.Dir, "logs", "*.log"))
	boots, _ := filepath.Glob(filepath.Join(l.Dir, "nomad", "*", "boot.log"))
	for _, f := range append(files, boots...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, string(b))
	}
	if len(boots) != len(wantNodes) {
		t.Errorf("%d boot logs, want %d", len(boots), len(wantNodes))
	}
	for i, s := range logs {
		if strings.Contains(s, cloudACLToken) || strings.Contains(s, cloudTLSKey) {
			t.Errorf("a secret appears in log %d", i)
		}
	}
	// The secrets did reach the AWS hosts, where they belong.
	env, err := os.ReadFile(filepath.Join(l.Dir, "nomad", hosts[0].ID, "root", bootstrap.NomadEnvFile))
	if err != nil || !bytes.Contains(env, []byte(cloudACLToken)) {
		t.Errorf("the ACL token is not on the host: %v", err)
	}
}

func burstJob(count int) *nomad.Job {
	job := nomad.NewBatchJob("burst-sleep", "burst-sleep", "global", 50)
	job.Datacenters = []string{"aws-use1", "ali-hz"}
	job.NodePool = refOf("all")
	job.Constrain(nomad.NewConstraint("${node.class}", "=", "burst"))
	job.Constrain(nomad.NewConstraint("", "distinct_hosts", "true"))
	tg := nomad.NewTaskGroup("sleep", count)
	tg.RestartPolicy = &nomad.RestartPolicy{Attempts: refOf(0), Mode: refOf("fail")}
	tg.ReschedulePolicy = &nomad.ReschedulePolicy{Attempts: refOf(0), Unlimited: refOf(false)}
	task := nomad.NewTask("sleep", "raw_exec").SetConfig("command", "/bin/sleep").SetConfig("args", []string{"600"})
	task.Resources = &nomad.Resources{CPU: refOf(50), MemoryMB: refOf(32)}
	tg.AddTask(task)
	job.AddTaskGroup(tg)
	return job
}

func refOf[T any](v T) *T { return &v }

func waitCloudNodes(t *testing.T, ctx context.Context, l *lab.Lab, ok func([]*nomad.NodeListStub) error) []*nomad.NodeListStub {
	t.Helper()
	var nodes []*nomad.NodeListStub
	waitCloud(t, ctx, "nomad nodes", func() error {
		var err error
		if nodes, _, err = l.Nomad().Nodes().List(nil); err != nil {
			return err
		}
		return ok(nodes)
	})
	return nodes
}

// waitCloud polls cond on Nomad and process state (not on the simulator's
// lifecycle, which the time scale drives) until it holds or ctx ends.
func waitCloud(t *testing.T, ctx context.Context, what string, cond func() error) {
	t.Helper()
	start := time.Now()
	for {
		err := cond()
		if err == nil {
			t.Logf("%s after %s", what, time.Since(start).Round(100*time.Millisecond))
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

type cloudLogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *cloudLogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *cloudLogBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type cloudTeeLog struct {
	t *testing.T
	b *cloudLogBuffer
}

func (w cloudTeeLog) Write(p []byte) (int, error) {
	w.b.Write(p)
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
