package e2e

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spillwayhq/spillway/controlplane/capacity"
	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/internal/lab"
	"github.com/spillwayhq/spillway/internal/lab/labtest"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/fake"
	"github.com/spillwayhq/spillway/providers/internalpool"
)

// labPools is the pool configuration of the lab: bu-a and bu-b each own 3
// hosts and lend 1 to the shared pool, so a 50% share lets each lend 2.
const labPools = `
apiVersion: spillway/v1
kind: BusinessUnit
name: bu-a
selector: {node_pool: bu-a, node_class: internal}
lending: {share: 50%}
borrowing: {quota: 2}
---
apiVersion: spillway/v1
kind: BusinessUnit
name: bu-b
selector: {node_pool: bu-b, node_class: internal}
lending: {share: 50%}
borrowing: {quota: 2}
---
apiVersion: spillway/v1
kind: SharedPool
name: shared
selector:
  node_pool: shared
  meta: {spillway.tier: shared}
lease: 1h
reclaim_notice: 1m
drain_deadline: 5s
time_to_ready: 20s
cost_per_host_hour: 0.05
---
apiVersion: spillway/v1
kind: CloudPool
name: aws-lab
provider: aws
region: us-east-1
zones: [us-east-1a]
offerings: [{instance_type: c6i.2xlarge, price: {on_demand: 0.34}}]
max_hosts: 10
budget_per_hour: 20
time_to_ready: 2m
bootstrap:
  os: flatcar
  images: [{region: us-east-1, id: ami-0a1b2c3d4e5f60718, variant: flatcar, version: 4230.2.3}]
  nomad:
    servers: ["127.0.0.1:4647"]
    datacenter: aws-lab
    install: {method: sysext, version: 1.6.3, url: "https://artifacts.example/nomad-1.6.3.raw"}
`

type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *stepClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// ownedHosts counts each business unit's hosts: its own and those it put
// in the shared pool.
func ownedHosts(t *testing.T, nc *nomad.Client, cfg *pools.Config) map[string]int {
	t.Helper()
	nodes, err := capacity.Nodes(context.Background(), nc)
	if err != nil {
		t.Fatal(err)
	}
	return pools.OwnedHosts(cfg, nodes)
}

func lendingMeta(t *testing.T, nc *nomad.Client, id string) map[string]string {
	t.Helper()
	n, _, err := nc.Nodes().Info(id, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, k := range []string{pools.MetaLentTo, pools.MetaLease, pools.MetaClaim} {
		if v, ok := n.Meta[k]; ok {
			out[k] = v
		}
	}
	return out
}

// sharedBurstJob is service S's burst task group: it runs in the shared pool's
// node pool, constrained to hosts lent to its business unit.
func sharedBurstJob(shared *pools.SharedPool, borrower string, count int) *nomad.Job {
	nodePool, constraints := internalpool.Placement(shared, borrower)
	job := nomad.NewServiceJob("s-burst", "s-burst", "global", 50)
	job.NodePool = &nodePool
	job.Datacenters = []string{lab.Datacenter}
	job.Constraints = constraints
	task := nomad.NewTask("sleep", "raw_exec").
		SetConfig("command", "/bin/sleep").SetConfig("args", []string{"600"}).
		Require(&nomad.Resources{CPU: ptrTo(100), MemoryMB: ptrTo(64)})
	task.KillTimeout = ptrTo(time.Second)
	group := nomad.NewTaskGroup("web", count).AddTask(task).
		Constrain(nomad.NewConstraint("", "distinct_hosts", "true"))
	group.Update = &nomad.UpdateStrategy{HealthCheck: ptrTo("task_states"), MinHealthyTime: ptrTo(time.Second)}
	job.AddTaskGroup(group)
	return job
}

func ptrTo[T any](v T) *T { return &v }

// runningOn returns the nodes the job's allocations run on.
func runningOn(t *testing.T, nc *nomad.Client, job string) map[string]bool {
	t.Helper()
	allocs, _, err := nc.Jobs().Allocations(job, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, a := range allocs {
		if a.ClientStatus == nomad.AllocClientStatusRunning && a.DesiredStatus == nomad.AllocDesiredStatusRun {
			out[a.NodeID] = true
		}
	}
	return out
}

func waitUntil(t *testing.T, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestSharedPoolBorrowAndReturn is the acceptance test of the capacity
// ladder and the lending ledger on the lab: service S of bu-a needs 3 more
// hosts; the ladder takes 2 from the shared pool and 1 from the cloud
// pool; the shared hosts are marked lent to bu-a and S's burst allocations
// land on them; a restarted ledger rebuilt from SQLite mid-lease agrees
// with Nomad; after return the shared hosts carry no lending meta, and the
// ledger charges the right host-hours.
func TestSharedPoolBorrowAndReturn(t *testing.T) {
	t.Parallel()
	labtest.Takes(t, 90*time.Second)
	opts := lab.DefaultOptions()
	opts.Serve, opts.Demo = false, nil
	l := labtest.Start(t, opts)
	nc := l.Nomad()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	cfg, err := pools.Parse("lab-pools.yaml", []byte(labPools))
	if err != nil {
		t.Fatal(err)
	}
	owned := ownedHosts(t, nc, cfg)
	if owned["bu-a"] != 4 || owned["bu-b"] != 4 {
		t.Fatalf("owned hosts = %v, want 4 each (3 own + 1 lent)", owned)
	}
	limits := cfg.Limits(owned)

	t0 := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	clock := &stepClock{t: t0}
	dbPath := filepath.Join(t.TempDir(), "journal.db")
	db, err := journal.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	ledger, problems, err := pools.NewLedger(ctx, db.LedgerStore(), limits)
	if err != nil || len(problems) > 0 {
		t.Fatal(err, problems)
	}
	shared, err := internalpool.New(internalpool.Config{Nomad: nc, Pool: cfg.Shared, Ledger: ledger, Cluster: "lab", Now: clock.Now, Drain: drainOn(nc)})
	if err != nil {
		t.Fatal(err)
	}
	cloud := fake.NewCloud(clock.Now)
	awsPool, _ := cfg.CloudPool("aws-lab")
	cloudProvider := fake.New(cloud, "lab", fake.Credential)

	// 1. Service S of bu-a needs 3 more hosts; bu-a's own hosts are busy.
	free, err := shared.Free(ctx)
	if err != nil {
		t.Fatal(err)
	}
	plan := pools.Ladder(pools.LadderInput{Config: cfg, BusinessUnit: "bu-a", Need: 3, Now: clock.Now(),
		Deadline: clock.Now().Add(5 * time.Minute), SharedFree: free, Borrowed: ledger.Borrowed("bu-a")})
	taken := plan.Taken()
	if len(taken) != 2 || taken[0].Tier != pools.TierShared || taken[0].Hosts != 2 ||
		taken[1].Tier != pools.TierCold || taken[1].Pool != "aws-lab" || taken[1].Hosts != 1 || plan.Unmet != 0 {
		t.Fatalf("plan = %+v, want 2 shared + 1 cold aws-lab", plan)
	}

	// 2. Two shared hosts are borrowed and marked lent to bu-a ...
	sharedHosts, err := shared.Create(ctx, internalpool.Claim(cfg.Shared, "s-claim-1", "bu-a", taken[0].Hosts))
	if err != nil {
		t.Fatalf("borrowing shared hosts: %v", err)
	}
	if len(sharedHosts) != 2 {
		t.Fatalf("borrowed %d shared hosts, want 2", len(sharedHosts))
	}
	lease := t0.Add(time.Hour).Format(time.RFC3339)
	for _, h := range sharedHosts {
		waitUntil(t, "lending meta on "+h.Tags[internalpool.TagNodeName], 20*time.Second, func() bool {
			m := lendingMeta(t, nc, h.ID)
			return m[pools.MetaLentTo] == "bu-a" && m[pools.MetaLease] == lease && m[pools.MetaClaim] == "s-claim-1"
		})
	}
	// ... idempotently: the same claim again borrows nothing more.
	again, err := shared.Create(ctx, internalpool.Claim(cfg.Shared, "s-claim-1", "bu-a", 2))
	if err != nil || len(again) != 2 {
		t.Fatalf("repeated claim: %d hosts, %v", len(again), err)
	}
	if n := len(ledger.Entries()); n != 2 {
		t.Fatalf("ledger has %d entries after a repeated claim, want 2", n)
	}
	// bu-a's quota of 2 is used up.
	if _, err := shared.Create(ctx, internalpool.Claim(cfg.Shared, "s-claim-2", "bu-a", 1)); !providers.IsQuota(err) && !providers.IsInsufficientCapacity(err) {
		t.Fatalf("borrowing past the quota: %v", err)
	}

	// ... and 1 from the cloud pool.
	cloudHosts, err := cloudProvider.Create(ctx, providers.Claim{ID: "s-claim-1-cloud", Pool: awsPool.ProviderPool(), Count: taken[1].Hosts,
		Offerings: taken[1].Offerings})
	if err != nil || len(cloudHosts) != 1 {
		t.Fatalf("renting a cloud host: %d, %v", len(cloudHosts), err)
	}
	if _, err := ledger.Borrow(ctx, pools.BorrowRequest{Host: cloudHosts[0].ID, Tier: pools.TierCold, Pool: "aws-lab", Lender: "aws-lab",
		Borrower: "bu-a", At: clock.Now(), Lease: time.Hour, Reason: "claim s-claim-1-cloud", Claim: "s-claim-1-cloud"}); err != nil {
		t.Fatal(err)
	}

	// S's burst allocations land on the borrowed hosts.
	if _, _, err := nc.Jobs().Register(sharedBurstJob(cfg.Shared, "bu-a", 2), nil); err != nil {
		t.Fatal(err)
	}
	defer nc.Jobs().Deregister("s-burst", true, nil) //nolint:errcheck
	waitUntil(t, "s-burst running on the two borrowed hosts", 60*time.Second, func() bool {
		on := runningOn(t, nc, "s-burst")
		return len(on) == 2 && on[sharedHosts[0].ID] && on[sharedHosts[1].ID]
	})

	// Capacity accounting sees the loans: per tier hosts, CPU and cost.
	reg := prometheus.NewRegistry()
	acct, err := capacity.New(capacity.Options{Nomad: nc, Registerer: reg, Now: clock.Now,
		CloudCost: func(ctx context.Context) (map[string]float64, error) {
			hosts, err := cloudProvider.List(ctx, "aws-lab")
			total := 0.0
			for _, h := range hosts {
				for _, o := range awsPool.Offerings {
					if o.InstanceType == h.Offering.InstanceType {
						total += o.Price.Of(h.Offering.CapacityType)
					}
				}
			}
			return map[string]float64{"aws-lab": total}, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	report, err := acct.Report(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := report.Pool("shared")
	if sp.Hosts != (pools.HostCounts{Total: 2, InUse: 2, Borrowed: 2}) || sp.CPU.Used != 200 || sp.CPU.Total != 4000 || math.Abs(sp.CostPerHour-0.1) > 1e-9 {
		t.Errorf("shared pool capacity = %+v", sp)
	}
	if a, _ := report.Pool("bu-a"); a.Hosts.Total != 3 || a.Hosts.Borrowed != 2 {
		t.Errorf("bu-a capacity = %+v", a)
	}
	if c, _ := report.Pool("aws-lab"); c.Tier != pools.TierCold || math.Abs(c.CostPerHour-0.34) > 1e-9 {
		t.Errorf("aws-lab capacity = %+v", c)
	}
	if v := testutil.ToFloat64(mustGauge(t, reg, "spillway_pool_hosts", map[string]string{"pool": "shared", "state": "borrowed"})); v != 2 {
		t.Errorf("spillway_pool_hosts{pool=shared,state=borrowed} = %v, want 2", v)
	}

	// 3. The process restarts in the middle of the lease: a new ledger
	// rebuilt from the same SQLite file agrees with Nomad.
	clock.Set(t0.Add(30 * time.Minute))
	db.Close()
	db2, err := journal.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	ledger2, problems, err := pools.NewLedger(ctx, db2.LedgerStore(), limits)
	if err != nil || len(problems) > 0 {
		t.Fatal(err, problems)
	}
	// Reclaims ask for a replacement first; record what the host was doing
	// at that moment.
	var replacements []string
	replace := func(ctx context.Context, loan pools.Loan) error {
		state := "already-gone"
		if lendingMeta(t, nc, loan.Host)[pools.MetaLentTo] == loan.Borrower && runningOn(t, nc, "s-burst")[loan.Host] && loan.Reclaiming() {
			state = "still-serving"
		}
		replacements = append(replacements, loan.Borrower+":"+state)
		return nil
	}
	shared2, err := internalpool.New(internalpool.Config{Nomad: nc, Pool: cfg.Shared, Ledger: ledger2, Cluster: "lab", Now: clock.Now, Replace: replace,
		Drain: drainOn(nc)})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := shared2.Verify(ctx); err != nil || len(d) != 0 {
		t.Fatalf("rebuilt ledger vs Nomad: %v %v", d, err)
	}
	if got := len(ledger2.Loans()); got != 3 {
		t.Fatalf("rebuilt ledger has %d loans, want 3", got)
	}
	listed, err := shared2.List(ctx, "shared")
	if err != nil || len(listed) != 2 {
		t.Fatalf("restarted provider lists %d borrowed hosts (%v), want 2", len(listed), err)
	}

	// 4. Return the first shared host at 1h30. The lender reclaims the
	// second at the same time: replacement capacity is requested while the
	// host still serves bu-a, then it is drained and returned.
	clock.Set(t0.Add(90 * time.Minute))
	returned := func(h providers.Host) {
		t.Helper()
		if m := lendingMeta(t, nc, h.ID); len(m) != 0 {
			t.Errorf("returned host %s still carries lending meta %v", h.Tags[internalpool.TagNodeName], m)
		}
		n, _, _ := nc.Nodes().Info(h.ID, nil)
		if n.SchedulingEligibility != nomad.NodeSchedulingIneligible {
			t.Errorf("returned host %s is %s", n.Name, n.SchedulingEligibility)
		}
		if on := runningOn(t, nc, "s-burst"); on[h.ID] {
			t.Errorf("s-burst still runs on returned host %s", n.Name)
		}
	}
	if err := shared2.Delete(ctx, sharedHosts[0]); err != nil {
		t.Fatalf("returning %s: %v", sharedHosts[0].Tags[internalpool.TagNodeName], err)
	}
	returned(sharedHosts[0])
	if err := shared2.Reclaim(ctx, sharedHosts[1].ID, "lender bu-b needs its host"); err != nil {
		t.Fatalf("reclaiming %s: %v", sharedHosts[1].Tags[internalpool.TagNodeName], err)
	}
	if len(replacements) != 1 || replacements[0] != "bu-a:still-serving" {
		t.Errorf("replacement requests %v, want one for bu-a while the host still served it", replacements)
	}
	returned(sharedHosts[1])
	if err := shared2.Delete(ctx, sharedHosts[0]); !providers.IsNotFound(err) {
		t.Errorf("returning a host twice: %v, want NotFound", err)
	}
	clock.Set(t0.Add(2 * time.Hour))
	if err := cloudProvider.Delete(ctx, cloudHosts[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := ledger2.Return(ctx, cloudHosts[0].ID, clock.Now(), "scale-in"); err != nil {
		t.Fatal(err)
	}

	// 5. The ledger shows each borrow and return with the right host-hours.
	var kinds []string
	for _, e := range ledger2.Entries() {
		kinds = append(kinds, string(e.Kind)+":"+string(e.Tier))
	}
	if got, want := strings.Join(kinds, " "), "borrow:shared borrow:shared borrow:cold return:shared reclaim:shared return:shared return:cold"; got != want {
		t.Errorf("ledger entries %q, want %q", got, want)
	}
	c := ledger2.Chargeback(t0, time.Time{}, clock.Now())
	near := func(name string, got, want float64) {
		if math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v host-hours, want %v", name, got, want)
		}
	}
	near("bu-a borrowed", c.ByBorrower["bu-a"], 1.5+1.5+2)
	near("shared tier", c.ByTier[pools.TierShared], 3)
	near("cold tier", c.ByTier[pools.TierCold], 2)
	near("lent by bu-a", c.ByLender["bu-a"], 1.5)
	near("lent by bu-b", c.ByLender["bu-b"], 1.5)
	if d, err := shared2.Verify(ctx); err != nil || len(d) != 0 {
		t.Errorf("ledger vs Nomad after return: %v %v", d, err)
	}

	// A difference is reported: a host marked lent behind the ledger's back.
	rogue := "bu-b"
	if _, err := nc.Nodes().Meta().Apply(&nomad.NodeMetaApplyRequest{NodeID: sharedHosts[0].ID,
		Meta: map[string]*string{pools.MetaLentTo: &rogue}}, nil); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the rogue lending meta", 20*time.Second, func() bool {
		return lendingMeta(t, nc, sharedHosts[0].ID)[pools.MetaLentTo] == rogue
	})
	d, err := shared2.Verify(ctx)
	if err != nil || len(d) != 1 || !strings.Contains(d[0].String(), "node meta marks it lent to bu-b, but the ledger has no loan") {
		t.Fatalf("a host marked lent behind the ledger's back: %v %v", d, err)
	}
	// Repair does not drain on that doubt: the mark may be a loan the
	// ledger never recorded (it names no lease, so it cannot be told
	// from one). The loan is adopted; the host keeps its meta.
	if err := shared2.Repair(ctx, d); err != nil {
		t.Fatalf("repair: %v", err)
	}
	if d, err := shared2.Verify(ctx); err != nil || len(d) != 0 {
		t.Errorf("after repair: %v %v", d, err)
	}
	if loan, ok := ledger2.Loan(sharedHosts[0].ID); !ok || loan.Borrower != rogue || loan.Adopted == "" {
		t.Fatalf("after repair, the ledger has %+v for the host marked lent behind its back, want an adopted loan to %s", loan, rogue)
	}
	if m := lendingMeta(t, nc, sharedHosts[0].ID); m[pools.MetaLentTo] != rogue {
		t.Fatalf("repair changed the lending meta of a host it adopted: %v", m)
	}
	// An operator releases it: it is drained and returned.
	if err := shared2.Delete(ctx, providers.Host{ID: sharedHosts[0].ID, Pool: "shared"}); err != nil {
		t.Fatalf("releasing the adopted host: %v", err)
	}
	returned(sharedHosts[0])

	// A crash between the ledger's borrow and the node meta: the loan is
	// durable, the node unmarked. Verify reports it and Repair marks it.
	if _, err := ledger2.Borrow(ctx, pools.BorrowRequest{Host: sharedHosts[1].ID, HostName: sharedHosts[1].Tags[internalpool.TagNodeName],
		Pool: "shared", Lender: sharedHosts[1].Tags[internalpool.TagLender], Borrower: "bu-a", At: clock.Now(), Lease: time.Hour,
		Reason: "claim s-claim-3", Claim: "s-claim-3"}); err != nil {
		t.Fatal(err)
	}
	d, err = shared2.Verify(ctx)
	if err != nil || len(d) != 1 || !strings.Contains(d[0].String(), "ledger lends it to bu-a, but its node meta does not mark it lent") {
		t.Fatalf("a loan whose node was never marked: %v %v", d, err)
	}
	if err := shared2.Repair(ctx, d); err != nil {
		t.Fatalf("repair: %v", err)
	}
	if m := lendingMeta(t, nc, sharedHosts[1].ID); m[pools.MetaLentTo] != "bu-a" || m[pools.MetaClaim] != "s-claim-3" {
		t.Errorf("repaired node meta = %v", m)
	}
	if err := shared2.Delete(ctx, sharedHosts[1]); err != nil {
		t.Fatal(err)
	}
	returned(sharedHosts[1])
}

// mustGauge finds one series of a gathered gauge as a collector.
func mustGauge(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metrics
				}
			}
			return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name}, func() float64 { return m.GetGauge().GetValue() })
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return nil
}

// TestPoolCheckCLI: the examples pass, broken files are refused with
// file:line:column and the field, exit status 1.
func TestPoolCheckCLI(t *testing.T) {
	t.Parallel()
	bin := labtest.Spillway(t)
	root := filepath.Join("..", "..")
	examples, _ := filepath.Glob(filepath.Join(root, "pools", "examples", "*.yaml"))
	if len(examples) < 4 {
		t.Fatalf("found %d example pool files", len(examples))
	}
	out, err := exec.Command(bin, append([]string{"pool", "check"}, examples...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("pool check of the examples: %v\n%s", err, out)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(`apiVersion: spillway/v1
kind: BusinessUnit
name: feed
selector: {node_pool: feed}
colour: blue
lending:
  share: 110%
borrowing:
  quota: -1
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "pool", "check", bad)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("pool check of a broken file: %v, want exit status 1", err)
	}
	for _, want := range []string{
		bad + ":5:1: colour: unknown key",
		bad + ":7:3: lending.share: must be between 0% and 100%, got 110%",
		bad + ":9:3: borrowing.quota: must not be negative, got -1",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
}

// drainOn is the shared pool's Config.Drain for this test, which runs the
// provider without a control plane: the orchestrator's drain (Spillway's
// one drain), then blocking queries until Nomad says it is over, where
// serve waits on its cluster model instead.
func drainOn(nc *nomad.Client) func(context.Context, string, time.Duration, string) error {
	return func(ctx context.Context, node string, deadline time.Duration, reason string) error {
		if err := (cluster.NomadOrchestrator{Client: nc}).Drain(ctx, node, deadline, cluster.DrainMeta("spillway", reason)); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, deadline+30*time.Second)
		defer cancel()
		var index uint64
		for {
			n, meta, err := nc.Nodes().Info(node, (&nomad.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Second}).WithContext(ctx))
			if err != nil {
				return err
			}
			if n.DrainStrategy == nil {
				return nil
			}
			index = meta.LastIndex
		}
	}
}
