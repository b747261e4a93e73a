package controller

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/cluster/clustertest"
	"github.com/spillwayhq/spillway/controlplane/demand"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/policies"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/bootstrap"
	"github.com/spillwayhq/spillway/providers/fake"
)

// The pools of the controller tests: bu-a owns hosts in node pool bu-a;
// bu-b lends all of its hosts to the shared pool (node pool shared); two
// clouds, aws (cheaper, two offerings, 60s to be ready) and ali (30s).
const harnessPools = `apiVersion: spillway/v1
kind: BusinessUnit
name: bu-a
selector: {node_pool: bu-a}
lending: {share: 50%}
borrowing: {quota: 4}
deadline: 2m
---
apiVersion: spillway/v1
kind: BusinessUnit
name: bu-b
selector: {node_pool: bu-b}
lending: {share: 100%}
borrowing: {quota: 0}
---
apiVersion: spillway/v1
kind: SharedPool
name: shared
selector: {node_pool: shared}
lease: 1h
reclaim_notice: 2m
drain_deadline: 30s
time_to_ready: 5s
---
apiVersion: spillway/v1
kind: CloudPool
name: aws
provider: aws
region: us-east-1
zones: [us-east-1a]
offerings:
  - {instance_type: m5.large, price: {on_demand: 0.1}}
  - {instance_type: m5.xlarge, price: {on_demand: 0.2}}
spot: 0%
launch: {strategy: run-instances}
bootstrap:
  os: flatcar
  images:
    - {region: us-east-1, id: ami-0123456789abcdef0, variant: flatcar, version: 4230.2.3}
  nomad:
    servers: ["nomad.test.invalid:4647"]
    datacenter: dc1
    node_pool: burst
    install: {method: sysext, version: 1.6.3, url: "https://artifacts.test.invalid/nomad-1.6.3-x86-64.raw"}
max_hosts: 5
budget_per_hour: 10
time_to_ready: 60s
---
apiVersion: spillway/v1
kind: CloudPool
name: ali
provider: alicloud
region: cn-hangzhou
zones: [cn-hangzhou-i]
offerings:
  - {instance_type: ecs.g7.large, price: {on_demand: 0.3}}
spot: 0%
bootstrap:
  os: flatcar
  images:
    - {region: cn-hangzhou, id: m-bp1test0fcos42x64, variant: flatcar, version: 4230.2.3}
  nomad:
    servers: ["nomad.test.invalid:4647"]
    datacenter: dc1
    node_pool: burst
    install: {method: sysext, version: 1.6.3, url: "https://artifacts.test.invalid/nomad-1.6.3-x86-64.raw"}
max_hosts: 5
budget_per_hour: 10
time_to_ready: 30s
`

var web = policies.Target{Namespace: "default", Job: "web", Group: "app"}

// harness is one controller on fakes: the fake cluster (model and
// orchestrator), a fake shared pool over it, a fake cloud behind the aws
// and ali pools, a SQLite journal and ledger, and a fake clock.
type harness struct {
	t      *testing.T
	clock  *clockwork.FakeClock
	k      *clustertest.Cluster
	db     *journal.DB
	pools  *pools.Config
	ledger *pools.Ledger
	cloud  *fake.Cloud
	aws    *fake.Provider
	ali    *fake.Provider
	shared *fakeShared
	c      *Controller
	cancel context.CancelFunc
	done   chan struct{}

	booted map[string]bool
	// sizes gives the nodes of an instance type their CPU (MHz) and
	// memory (MB); unlisted ones boot with 1000 MHz / 1024 MB.
	sizes map[string][2]int64
	// boots says whether rented instances join as nodes (boot); never
	// holds instances that never do.
	boots bool
	never map[string]bool
	// poolMeta gives a booted node the spillway.pool meta of its pool,
	// as a rented host's Nomad config does.
	poolMeta bool
}

func newHarness(t *testing.T, sharedHosts int) *harness {
	t.Helper()
	return newHarnessOn(t, sharedHosts, harnessPools)
}

// newHarnessOn is newHarness on other pools.
func newHarnessOn(t *testing.T, sharedHosts int, poolsYAML string) *harness {
	t.Helper()
	cfg, err := pools.Parse("pools.yaml", []byte(poolsYAML))
	if err != nil {
		t.Fatal(err)
	}
	db, err := journal.Open(t.Context(), filepath.Join(t.TempDir(), "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clock := clockwork.NewFakeClockAt(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	ledger, _, err := pools.NewLedger(t.Context(), db.LedgerStore(), cfg.Limits(nil))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, clock: clock, k: clustertest.New(), db: db, pools: cfg, ledger: ledger,
		cloud: fake.NewCloud(clock.Now), booted: map[string]bool{}, boots: true, never: map[string]bool{}}
	h.aws = fake.New(h.cloud, "test", fake.Credential)
	h.ali = fake.New(h.cloud, "test", fake.Credential)
	h.aws.MaxRetries, h.ali.MaxRetries = 0, 0
	h.shared = &fakeShared{h: h}
	h.k.AddNode(clustertest.Host{ID: "own-1", Pool: "bu-a", Serves: "bu-a", CPU: 1000, MemoryMB: 1024})
	for i := range sharedHosts {
		h.k.AddNode(clustertest.Host{ID: fmt.Sprintf("shared-%d", i+1), Pool: "shared", CPU: 1000, MemoryMB: 1024,
			Meta: map[string]string{pools.MetaBusinessUnit: "bu-b"}})
	}
	h.c = New(Config{
		Cluster: h.k, Orchestrator: h.k, Pools: cfg, Ledger: ledger, Shared: h.shared,
		Clouds:  map[string]providers.Provider{"aws": h.aws, "ali": h.ali},
		Journal: db.Events(), Clock: clock, OrphanGrace: 10 * time.Minute,
	})
	return h
}

// start runs the controllers, as a term of the leader does.
func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan struct{})
	go func() { defer close(h.done); h.c.Run(ctx, 10*time.Second) }()
	h.t.Cleanup(h.stop)
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		h.t.Error("the controllers did not stop")
	}
	h.c.Wait()
	h.cancel = nil
}

// service adds the web job of bu-a: count allocations of 250 MHz.
func (h *harness) service(count int) {
	h.k.AddJob(clustertest.Service{Target: web, Count: count, Size: demand.Size{CPUMHz: 250, MemoryMB: 64}, Serves: "bu-a"})
}

// events returns the journal's events of a kind (prefix), oldest first.
func (h *harness) events(kind string) []journal.Event {
	h.t.Helper()
	var out []journal.Event
	if err := journal.Each(context.Background(), h.db.Events(), journal.Filter{Kind: kind}, func(ev journal.Event) error {
		out = append(out, ev)
		return nil
	}); err != nil {
		h.t.Fatal(err)
	}
	return out
}

func (h *harness) dump() string {
	var b strings.Builder
	for _, ev := range h.events("") {
		fmt.Fprintf(&b, "  %s %-22s %s\n", ev.Time.Format("15:04:05.000"), ev.Kind, ev.Message)
	}
	return b.String()
}

// until waits (in real time) for cond, stepping the fake clock whenever
// every goroutine of the controllers is waiting on it: the test advances
// time only when nothing else can happen first.
func (h *harness) until(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: not reached; journal:\n%s", what, h.dump())
		}
		h.boot()
		// Let the goroutines run before time moves.
		time.Sleep(2 * time.Millisecond)
		if !cond() {
			h.clock.Advance(250 * time.Millisecond)
		}
	}
}

// boot turns every instance of the fake cloud into a ready Nomad node
// serving nothing yet (the controller marks it), as a booted host that
// joined would be.
func (h *harness) boot() {
	if !h.boots {
		return
	}
	for _, inst := range h.cloud.Instances() {
		if h.booted[inst.ID] || h.never[inst.ID] || inst.State == providers.HostTerminated {
			continue
		}
		h.booted[inst.ID] = true
		size, ok := h.sizes[inst.Offering.InstanceType]
		if !ok {
			size = [2]int64{1000, 1024}
		}
		meta := map[string]string{bootstrap.MetaInstance: inst.ID}
		if h.poolMeta {
			meta[bootstrap.MetaPool] = inst.Pool
		}
		h.k.AddNode(clustertest.Host{ID: "node-" + inst.ID, Pool: "burst", CPU: size[0], MemoryMB: size[1], Meta: meta})
	}
}

// kinds returns the kinds of the journal, in order.
func (h *harness) kinds() []string {
	var out []string
	for _, ev := range h.events("") {
		out = append(out, ev.Kind)
	}
	return out
}

// fakeShared is the shared pool over the fake cluster: lending a host
// marks its node as serving the borrower and records the loan.
type fakeShared struct {
	h  *harness
	mu sync.Mutex
	// creates counts Create calls; err fails the next; repaired holds
	// what Repair was asked to repair.
	creates  int
	err      error
	repaired []pools.Discrepancy
	returns  []fakeReturn
}

func (f *fakeShared) free() []string {
	var out []string
	for _, n := range f.h.k.Snapshot().Nodes() {
		if _, lent := f.h.ledger.Loan(n.ID); n.Pool == "shared" && n.Ready() && !lent {
			out = append(out, n.ID)
		}
	}
	return out
}

func (f *fakeShared) Create(ctx context.Context, claim providers.Claim) ([]providers.Host, error) {
	f.mu.Lock()
	f.creates++
	err := f.err
	f.err = nil
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	borrower := claim.Pool.Tags["spillway:borrower"]
	var out []providers.Host
	for _, id := range f.free() {
		if len(out) == claim.Count {
			break
		}
		if _, err := f.h.ledger.Borrow(ctx, pools.BorrowRequest{Host: id, HostName: id, Tier: pools.TierShared, Pool: "shared", Lender: "bu-b",
			Borrower: borrower, At: f.h.clock.Now(), Lease: time.Hour, Claim: claim.ID}); err != nil {
			return out, err
		}
		v := borrower
		if err := f.h.k.SetNodeMeta(ctx, id, map[string]*string{pools.MetaServes: &v, pools.MetaLentTo: &v}); err != nil {
			return out, err
		}
		out = append(out, providers.Host{ID: id, Pool: "shared", Claim: claim.ID, Tags: map[string]string{"spillway:node-name": id}})
	}
	if len(out) < claim.Count {
		return out, providers.NewInsufficientCapacityError(fmt.Errorf("%d of %d shared hosts free", len(out), claim.Count))
	}
	return out, nil
}

// Return drains the host through the controller (the one drain, as
// internalpool.Config.Drain does) and gives it back with reason.
func (f *fakeShared) Return(ctx context.Context, host providers.Host, deadline time.Duration, reason string) error {
	f.mu.Lock()
	f.returns = append(f.returns, fakeReturn{host: host.ID, deadline: deadline, reason: reason})
	f.mu.Unlock()
	if _, lent := f.h.ledger.Loan(host.ID); !lent {
		return providers.NewNotFoundError(host.ID, errors.New("host is not lent"))
	}
	if err := f.h.c.DrainNode(ctx, host.ID, deadline, "shared host returned"); err != nil {
		return err
	}
	if err := f.h.k.SetNodeMeta(ctx, host.ID, map[string]*string{pools.MetaServes: nil, pools.MetaLentTo: nil}); err != nil {
		return err
	}
	if err := f.h.k.SetEligibility(ctx, host.ID, true); err != nil {
		return err
	}
	_, err := f.h.ledger.Return(ctx, host.ID, f.h.clock.Now(), reason)
	return err
}

// fakeReturn is one call of fakeShared.Return.
type fakeReturn struct {
	host     string
	deadline time.Duration
	reason   string
}

func (f *fakeShared) Free(context.Context) (int, error) { return len(f.free()), nil }

// Verify compares the ledger with the fake cluster's shared nodes, as
// internalpool does with Nomad's.
func (f *fakeShared) Verify(context.Context) ([]pools.Discrepancy, error) {
	var obs []pools.ObservedHost
	for _, n := range f.h.k.Snapshot().Nodes() {
		if n.Pool == "shared" {
			obs = append(obs, pools.ObservedHost{Host: n.ID, Name: n.Name, LentTo: n.Meta[pools.MetaLentTo], Lease: n.Meta[pools.MetaLease],
				Lender: n.Meta[pools.MetaBusinessUnit]})
		}
	}
	return f.h.ledger.Verify(obs), nil
}

// Repair records what it was asked to repair.
func (f *fakeShared) Repair(_ context.Context, ds []pools.Discrepancy) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.repaired = append(f.repaired, ds...)
	return nil
}

var _ cluster.Source = (*clustertest.Cluster)(nil)
