// Package scalesim is Spillway's scale simulation: the real controllers
// (controlplane/controller: provisioning, disruption, garbage collection,
// reconcile) over the real cluster model (controlplane/cluster), a real
// SQLite journal and ledger, and the real EC2 provider over the real SDK,
// against the cloud simulator (providers/cloudsim) and a simulated Nomad
// (Nomad): on one simulated Clock, so a scale-out of minutes runs in
// seconds. It lives in internal/, not controlplane/, because it is no part
// of the daemon: it only assembles the daemon's pieces, as serve does, and
// measures them (spillway bench scaleout, make bench).
//
// The clock moves to the next timer only once every goroutine waits
// (Quiet), so what Spillway computes takes no simulated time. The figures
// that are Spillway's own processing (decision and fallback latency) are
// busy wall time: the wall time the process computed between the two
// moments, from each move of the clock until every goroutine waits again,
// without the simulated waits (API latencies, sleeps, polls, the launch
// pacing); the simulated time between the same two moments, which holds
// those waits, is reported beside them.
package scalesim

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/controller"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/policies"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/aws"
	"github.com/spillwayhq/spillway/providers/cloudsim"
)

// Latencies of the physical path, and where each comes from. The cloud's
// are the simulator's defaults (cloudsim.Latency).
var (
	// APILatency is RunInstances answering.
	APILatency = 1500 * time.Millisecond
	// PendingMin and PendingMax bound pending to running.
	PendingMin, PendingMax = 5 * time.Second, 17 * time.Second
	// Boot is running to the OS booted.
	Boot = 20 * time.Second
	// Join is the booted host's Nomad client registering ready.
	Join = 10 * time.Second
	// Pull is a placed allocation's image pull and start.
	Pull = 2 * time.Second
)

// Sources cite each latency, for the output.
var Sources = []string{
	"RunInstances answers in 1.5s; pending to running 5-17s; boot 20s: published EC2 launch measurements, the cloud simulator's defaults (docs/cloudsim.md)",
	"Nomad join 10s: measured on the lab (the 10s its cloud pools' time_to_ready adds for the join, docs/cloudsim.md)",
	"image pull and start 2s: a small, pre-pulled image (assumed)",
	"EC2 throttling: DescribeInstances 100 requests burst, 20/s; RunInstances 5 requests burst, 2/s, and 1,000 instances burst, 2/s; other mutating calls 50 burst, 5/s (https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html)",
}

// runInstancesRate is EC2's documented default request bucket of
// RunInstances: the throttled scenario's cloud, and its rate-bound lower
// bound.
var runInstancesRate = cloudsim.Bucket{Burst: 5, Rate: 2}

// Scenario is one scale-out to simulate.
type Scenario struct {
	Name string
	Seed int64
	// Hosts is how many new hosts the burst needs (one allocation each),
	// spread over Groups task groups (one policy each).
	Hosts, Groups int
	// Existing nodes are already in the cluster, full, running Policies
	// jobs (Existing/Policies allocations each).
	Existing, Policies int
	// Exhausted: the first-choice offering has no capacity.
	Exhausted bool
	// Throttle: EC2's default request rates.
	Throttle bool
	// ErrorRate of random 5xx answers.
	ErrorRate float64
	// Restart: the control plane stops and a new one starts, this long
	// after the trigger.
	Restart time.Duration
	// DescribeLag is EC2's eventual consistency.
	DescribeLag time.Duration
	// Horizon is when the simulation gives up. Default 20m.
	Horizon time.Duration
	// HeapProfile, when set, is a file to write a heap profile to when
	// the burst is placed, before the run's pieces are let go.
	HeapProfile string
}

// Result is what one run measured.
type Result struct {
	Scenario string
	// Placed is how many burst allocations run; Hosts how many were needed.
	Placed, Hosts int
	// TimeToCapacity is each burst allocation's trigger to running;
	// LowerBound each one's physical path (API, its host's pending and
	// boot, join, pull), sorted.
	TimeToCapacity, LowerBound []time.Duration
	// Overhead is each burst allocation's time-to-capacity less its
	// lower bound: what Spillway's decisions, queueing and retries added.
	Overhead []time.Duration
	// RateBound, with EC2's throttling on, is each allocation's lower
	// bound when its claim's request waits its turn at EC2's documented
	// RunInstances request rate (runInstancesRate), the claims taken in
	// the order Spillway sent them: the fastest any client can go there.
	RateBound []time.Duration
	// Decision is each activity's trigger to its first launch request;
	// Fallback each capacity error answered to the next launch request of
	// its claim. Both are Spillway's processing: the busy wall time
	// between the two (see the package doc), which varies from run to
	// run; it holds the simulated Nomad's and cloud's work in the same
	// steps too, so it is an upper bound.
	Decision, Fallback []time.Duration
	// DecisionSim and FallbackSim are the simulated time between the
	// same two moments: Spillway's own waits (the launch pacing, polls)
	// and none of its processing. The same seed gives the same.
	DecisionSim, FallbackSim []time.Duration
	// Launches counts launch requests; Errors the failed ones by code.
	Launches int
	Errors   map[string]int
	// Simulated is the simulated time the run took; Steps how many times
	// the clock moved; Forced how many of those did not wait for quiet.
	Simulated time.Duration
	Steps     int
	Forced    int
	Wall      time.Duration
	// CPU is the process's CPU time during the run, PeakRSS its peak
	// resident memory in bytes (Linux; 0 elsewhere).
	CPU          time.Duration
	PeakRSS      int64
	Instances    int
	Restarted    bool
	ClusterNodes int
	// Existing is how many nodes the cluster had before the burst.
	Existing int
}

const (
	poolName  = "aws-sim"
	bu        = "bu-a"
	allocCPU  = 9000
	allocMem  = 14000
	hostCPU   = 10000
	hostMem   = 15360
	namespace = "default"
)

func poolsYAML(maxHosts int) string {
	return fmt.Sprintf(`apiVersion: spillway/v1
kind: BusinessUnit
name: %[2]s
selector: {node_pool: %[2]s}
lending: {share: 0%%}
borrowing: {quota: 0}
deadline: 5m
---
apiVersion: spillway/v1
kind: CloudPool
name: %[3]s
provider: aws
region: us-east-1
zones: [us-east-1a]
offerings:
  - {instance_type: m5.xlarge, price: {on_demand: 0.192}, cpu_mhz: %[4]d, memory_mb: %[5]d}
  - {instance_type: m6i.xlarge, price: {on_demand: 0.192}, cpu_mhz: %[4]d, memory_mb: %[5]d}
spot: 0%%
launch: {strategy: run-instances}
bootstrap:
  os: flatcar
  images:
    - {region: us-east-1, id: ami-0123456789abcdef0, variant: flatcar, version: 4230.2.3}
  nomad:
    servers: ["nomad.sim.invalid:4647"]
    datacenter: dc1
    node_pool: burst
    install: {method: sysext, version: 1.6.3, url: "https://artifacts.sim.invalid/nomad-1.6.3-x86-64.raw"}
max_hosts: %[1]d
budget_per_hour: 100000
time_to_ready: 50s
`, maxHosts, bu, poolName, hostCPU, hostMem)
}

func policiesYAML(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `---
apiVersion: spillway/v1
kind: ScalingPolicy
name: p%05[1]d
business_unit: %[2]s
target: {namespace: default, job: svc%05[1]d, group: app}
min: 1
max: %[3]d
deadline: 5m
checks:
  - name: load
    query: sum(load{svc="svc%05[1]d"})
    target_value: {target: 1}
`, i, bu, 100000)
	}
	return b.String()
}

func job(i, count int) *nomad.Job {
	j := &nomad.Job{ID: ptr(fmt.Sprintf("svc%05d", i)), Namespace: ptr(namespace), Type: ptr("service"), NodePool: ptr("all"),
		Datacenters: []string{"dc1"},
		Constraints: []*nomad.Constraint{nomad.NewConstraint("${meta.spillway.serves}", "=", bu)},
		TaskGroups: []*nomad.TaskGroup{{Name: ptr("app"), Count: ptr(count),
			Tasks: []*nomad.Task{{Name: "main", Driver: "docker", Resources: &nomad.Resources{CPU: ptr(allocCPU), MemoryMB: ptr(allocMem)}}}}}}
	return j
}

// Run runs sc and returns what it measured. dir holds the journal.
func Run(ctx context.Context, sc Scenario, dir string, progress func(done, total int)) (*Result, error) {
	if sc.Horizon <= 0 {
		sc.Horizon = 20 * time.Minute
	}
	if sc.Groups <= 0 {
		sc.Groups = 1
	}
	if sc.Policies < sc.Groups {
		sc.Policies = sc.Groups
	}
	quiet := NewQuiet()
	// Each scenario's peak from what the process needs now: the heap the
	// runs before it freed goes back to the OS first.
	debug.FreeOSMemory()
	resetPeak()
	cpuStart, _ := usage()
	wallStart := time.Now()
	start := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	clock := NewClock(start)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The cloud.
	zero := 0
	errRate := sc.ErrorRate
	ccfg := cloudsim.Config{Seed: sc.Seed, ErrorRate: &errRate,
		Latency: cloudsim.Latency{API: APILatency, PendingMin: PendingMin, PendingMax: PendingMax, Boot: Boot, DescribeLag: sc.DescribeLag},
		AWS: cloudsim.CloudConfig{Region: "us-east-1",
			Accounts: []cloudsim.Account{{ID: "123456789012", AccessKeyID: "AKIDSPILLWAYSIM", SecretAccessKey: "spillway-sim-secret"}},
			Subnets:  map[string]string{"subnet-0a11": "us-east-1a"},
			Offerings: []cloudsim.OfferingConfig{
				{InstanceType: "m5.xlarge", Zone: "us-east-1a", CapacityType: cloudsim.OnDemand, Price: 0.192},
				{InstanceType: "m6i.xlarge", Zone: "us-east-1a", CapacityType: cloudsim.OnDemand, Price: 0.192},
			},
			Throttle: cloudsim.Throttle{Disabled: !sc.Throttle, Describe: cloudsim.Bucket{Burst: 100, Rate: 20},
				Launch: runInstancesRate, Mutate: cloudsim.Bucket{Burst: 50, Rate: 5}, Instances: cloudsim.Bucket{Burst: 1000, Rate: 2}},
		}}
	if sc.Exhausted {
		ccfg.AWS.Offerings[0].Capacity = &zero
	}
	sn := NewNomad(clock)
	rec := newRecorder(poolName)
	booted := map[string]time.Time{}
	var boots bootConfigs
	var bootErr error
	sim, err := cloudsim.New(ccfg, cloudsim.WithClock(clock), cloudsim.WithBootHook(func(_ context.Context, ev cloudsim.InstanceEvent) {
		node, err := boots.nodeOfInstance(ev, hostCPU, hostMem)
		rec.mu.Lock()
		defer rec.mu.Unlock()
		booted[ev.InstanceID] = clock.Now()
		if err != nil {
			bootErr = err
			return
		}
		clock.AfterFunc(Join, func() { sn.AddNode(node) })
	}), cloudsim.WithTerminateHook(func(_ context.Context, ev cloudsim.InstanceEvent) {
		clock.AfterFunc(0, func() { sn.RemoveNode("node-" + ev.InstanceID) })
	}))
	if err != nil {
		return nil, err
	}

	// The cluster: full nodes of the business unit, its jobs.
	perJob := max(1, sc.Existing/sc.Policies)
	// They share their meta and resources, read only (SetNodeMeta gives a
	// node a new map): 10,000 copies were the simulated Nomad's memory,
	// counted in the large scenario's peak RSS.
	ownMeta := map[string]string{pools.MetaServes: bu}
	ownResources := &nomad.NodeResources{Cpu: nomad.NodeCpuResources{CpuShares: hostCPU}, Memory: nomad.NodeMemoryResources{MemoryMB: hostMem}}
	for i := range sc.Existing {
		id := fmt.Sprintf("own-%05d", i)
		sn.AddNode(&nomad.Node{ID: id, Name: id, Datacenter: "dc1", NodePool: bu, Meta: ownMeta, NodeResources: ownResources})
	}
	for i := range sc.Policies {
		count := 0
		if sc.Existing > 0 {
			count = perJob
		}
		sn.AddJob(job(i, count))
	}
	// The cluster's own allocations run already, as they do in a
	// cluster the control plane starts on: placed with a pull, its
	// 10,000 allocations all started two seconds into the control
	// plane's first list, one burst of events no cluster sends at a
	// start (and the large scenario's peak memory, held in the events'
	// JSON). The burst's allocations wait for their pull.
	sn.Pull = Pull

	pcfg, err := pools.Parse("sim.yaml", []byte(poolsYAML(sc.Hosts+10)))
	if err != nil {
		return nil, err
	}
	ppath := filepath.Join(dir, "policies.yaml")
	if err := os.WriteFile(ppath, []byte(policiesYAML(sc.Policies)), 0o644); err != nil {
		return nil, err
	}
	set, err := policies.LoadFiles(ppath)
	if err != nil {
		return nil, err
	}
	db, err := journal.Open(ctx, filepath.Join(dir, "journal.db"))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var writes inFlight
	quiet.Busy = writes.busy
	events := countedEvents{db.Events(), &writes}
	// The retries' jitter comes from the seed, the simulated moment and
	// the backoff's span, not from a stream drawn in the order retries
	// arrive: retries side by side at one moment race for a stream, and
	// each drew another's value (the throttled scenario's figures
	// differed from run to run). Retries at one moment with the same
	// span wait alike.
	draw := func(n int64) int64 {
		r := rand.New(rand.NewPCG(uint64(sc.Seed)^0x6a177e5, uint64(clock.Now().UnixNano())^uint64(n)<<1))
		return r.Int64N(n)
	}
	prov, err := aws.New(ctx, aws.Options{Cluster: "sim", Region: "us-east-1", Endpoint: "http://cloudsim.sim.invalid",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDSPILLWAYSIM", "spillway-sim-secret", ""),
		HTTPClient:  awssdk.HTTPClient(&transport{h: sim.Handler(), clock: clock, apiLatency: APILatency, rec: rec}),
		Clock:       clock, Jitter: draw, ConsistencyWindow: sc.DescribeLag + 5*time.Second})
	if err != nil {
		return nil, err
	}

	// One control plane: the model and the controllers, as a term of the
	// leader runs them.
	type plane struct {
		stop func()
	}
	startPlane := func() (*plane, error) {
		pctx, pcancel := context.WithCancel(ctx)
		log := slog.New(slog.DiscardHandler)
		if os.Getenv("SPILLWAY_SIM_LOG") != "" {
			log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
		model := cluster.New(cluster.Options{Feed: sn, Clock: clock, Logger: log})
		ledger, _, err := pools.NewLedger(pctx, countedLedger{db.LedgerStore(), &writes}, pcfg.Limits(nil))
		if err != nil {
			pcancel()
			return nil, err
		}
		c := controller.New(controller.Config{Cluster: model, Orchestrator: sn, Pools: pcfg, Ledger: ledger,
			Clouds: map[string]providers.Provider{poolName: prov}, Policies: func() *policies.Set { return set },
			ClusterName: "sim", Journal: events, Clock: clock, Logger: log})
		done := make(chan struct{}, 2)
		go func() { model.Run(pctx); done <- struct{}{} }()
		go func() { c.Run(pctx, 10*time.Second); c.Wait(); done <- struct{}{} }()
		return &plane{stop: func() {
			pcancel()
			<-done
			<-done
		}}, nil
	}
	cp, err := startPlane()
	if err != nil {
		return nil, err
	}
	defer func() {
		// The simulation's time ends first, so what waits on it returns.
		clock.Close()
		cp.stop()
	}()

	res := &Result{Scenario: sc.Name, Hosts: sc.Hosts, Errors: map[string]int{}, Existing: sc.Existing}
	var trigger time.Time
	running := map[string]time.Time{} // node -> when its burst allocation ran
	burst := map[policies.Target]int{}
	sn.OnRunning = func(t policies.Target, node string, at time.Time) {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if _, ok := burst[t]; ok && strings.HasPrefix(node, "node-") {
			running[node] = at
		}
	}
	placed := func() int {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(running)
	}
	step := func() bool {
		if quiet.Wait(2 * time.Second) {
			rec.idle(quiet.Since)
		} else {
			res.Forced++
			rec.idle(time.Now())
		}
		// The clock moves to its next timer or the cloud's next lifecycle
		// event, whichever is first: a boot is seen when it happens.
		next, ok := clock.Next()
		if at, due := sim.NextEvent(); due && (!ok || at.Before(next)) {
			next, ok = at, true
		}
		if !ok {
			return false
		}
		rec.busy(time.Now())
		clock.AdvanceTo(next)
		sim.Step()
		res.Steps++
		return true
	}
	// Let the model list and the controllers start, then raise counts.
	for clock.Since(start) < 5*time.Second {
		if !step() {
			break
		}
	}
	quiet.Wait(2 * time.Second)
	trigger = clock.Now()
	rec.triggered(trigger)
	// The burst is one change of the cluster (Nomad.ScaleAll).
	counts := make([]Count, 0, sc.Groups)
	for g := range sc.Groups {
		add := sc.Hosts / sc.Groups
		if g < sc.Hosts%sc.Groups {
			add++
		}
		t := policies.Target{Namespace: namespace, Job: fmt.Sprintf("svc%05d", g), Group: "app"}
		rec.mu.Lock()
		burst[t] = add
		rec.mu.Unlock()
		count := 0
		if sc.Existing > 0 {
			count = perJob
		}
		counts = append(counts, Count{t, count + add})
	}
	if err := sn.ScaleAll(counts); err != nil {
		return nil, err
	}
	restarted := false
	for placed() < sc.Hosts && clock.Since(trigger) < sc.Horizon && ctx.Err() == nil {
		rec.mu.Lock()
		err := bootErr
		rec.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if sc.Restart > 0 && !restarted && clock.Since(trigger) >= sc.Restart {
			restarted = true
			cp.stop()
			if cp, err = startPlane(); err != nil {
				return nil, err
			}
		}
		if progress != nil {
			progress(placed(), sc.Hosts)
		}
		if !step() {
			break
		}
	}
	res.Simulated = clock.Since(trigger)
	res.Restarted = restarted
	if sc.HeapProfile != "" {
		if err := writeHeapProfile(sc.HeapProfile); err != nil {
			return nil, err
		}
	}
	res.Wall = time.Since(wallStart)
	cpu, peak := usage()
	res.CPU, res.PeakRSS = cpu-cpuStart, peak
	res.Placed = placed()
	res.ClusterNodes = sn.NodeCount()
	launch := map[string]time.Time{}
	claimOf := map[string]string{}
	for _, in := range sim.Instances(cloudsim.CloudAWS) {
		launch[in.ID] = in.LaunchTime
		claimOf[in.ID] = in.Tags["spillway:claim"]
	}
	res.Instances = len(launch)
	rec.mu.Lock()
	slot := map[string]time.Duration{}
	if sc.Throttle {
		// The claims that launched hosts: a throttled claim is asked
		// again as a new claim (its round), which the ideal client never
		// needs.
		launched := map[string]bool{}
		for _, c := range claimOf {
			launched[c] = true
		}
		var claims []string
		for c := range rec.claimSent {
			if launched[c] {
				claims = append(claims, c)
			}
		}
		slices.SortFunc(claims, func(a, b string) int {
			if c := rec.claimSent[a].Compare(rec.claimSent[b]); c != 0 {
				return c
			}
			return strings.Compare(a, b)
		})
		for k, c := range claims {
			if over := k + 1 - int(runInstancesRate.Burst); over > 0 {
				slot[c] = time.Duration(float64(over) / runInstancesRate.Rate * float64(time.Second))
			}
		}
	}
	for node, at := range running {
		id := strings.TrimPrefix(node, "node-")
		res.TimeToCapacity = append(res.TimeToCapacity, at.Sub(trigger))
		if l, ok := launch[id]; ok {
			lb := APILatency + booted[id].Sub(l) + Join + Pull
			res.LowerBound = append(res.LowerBound, lb)
			res.Overhead = append(res.Overhead, at.Sub(trigger)-lb)
			if sc.Throttle {
				res.RateBound = append(res.RateBound, lb+slot[claimOf[id]])
			}
		}
	}
	for _, s := range rec.first {
		res.Decision = append(res.Decision, s.busy)
		res.DecisionSim = append(res.DecisionSim, s.sim.Sub(trigger))
	}
	res.Fallback = slices.Clone(rec.fallbacks)
	res.FallbackSim = slices.Clone(rec.fallbacksSim)
	res.Launches = rec.launches
	for k, v := range rec.errors {
		res.Errors[k] = v
	}
	rec.mu.Unlock()
	for _, xs := range [][]time.Duration{res.TimeToCapacity, res.LowerBound, res.RateBound, res.Overhead, res.Decision, res.Fallback, res.DecisionSim, res.FallbackSim} {
		slices.Sort(xs)
	}
	if progress != nil {
		progress(res.Placed, sc.Hosts)
	}
	return res, nil
}

// writeHeapProfile writes the heap's profile to path, after a GC.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Figures are a run's simulated figures: what the same seed reproduces
// (every figure but decision and fallback latency, which are wall time,
// the step counts, peak memory and CPU time).
type Figures struct {
	Placed, Launches, Instances, ClusterNodes int
	Simulated                                 time.Duration
	TimeToCapacity, LowerBound, Overhead      []time.Duration
	RateBound                                 []time.Duration
	DecisionSimulated, FallbackSimulated      []time.Duration
	Errors                                    map[string]int
	Restarted                                 bool
}

// Figures returns r's simulated figures.
func (r *Result) Figures() Figures {
	return Figures{Placed: r.Placed, Launches: r.Launches, Instances: r.Instances, ClusterNodes: r.ClusterNodes,
		Simulated: r.Simulated, TimeToCapacity: r.TimeToCapacity, LowerBound: r.LowerBound, Overhead: r.Overhead, RateBound: r.RateBound,
		DecisionSimulated: r.DecisionSim, FallbackSimulated: r.FallbackSim, Errors: r.Errors, Restarted: r.Restarted}
}

// Quantile is the q-quantile (0..1) of sorted xs, nearest rank.
func Quantile(xs []time.Duration, q float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	i := int(q*float64(len(xs))+0.999999) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}
