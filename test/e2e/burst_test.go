package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/controlplane/app"
	"github.com/spillwayhq/spillway/controlplane/controller"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/internal/lab"
	"github.com/spillwayhq/spillway/internal/lab/labtest"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/cloudsim"
)

// burstTimeScale compresses the simulated clouds: 0.1 runs their
// latencies ten times faster, so the policy's 5-minute deadline is 30s.
const burstTimeScale = 0.1

// burstPolicy follows the demo's request rate: 5 req/s per instance. The
// hot-topic trace at scale 0.1 goes from 6 to 90 req/s, so from 2
// instances to 16 (its max). One 1000 MHz host holds 4 instances of 250 MHz: bu-a's
// own host, the shared host, one AWS host (the only one AWS has left) and
// one Alibaba host hold 16.
const burstPolicy = `apiVersion: spillway/v1
kind: ScalingPolicy
name: demo-burst
business_unit: bu-a
target: {namespace: default, job: demo, group: web}
min: 2
max: 16
evaluation_interval: 2s
cooldown: {scale_up: 2s, scale_down: 4s}
deadline: 30s
stale_after: 30s
checks:
  - name: request-rate
    query: sum(rate(spillway_demo_requests_total[10s]))
    target_value: {target: 5, aggregate: total, max_step_down: 4}
`

// startBurstLab starts the lab for a burst: bu-a and bu-b own one host
// each, one shared host, and the simulated AWS and Alibaba clouds with the
// lab's pools for them (aws-lab is cheaper, so it comes first).
func startBurstLab(t *testing.T) *lab.Lab {
	t.Helper()
	policyDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(policyDir, "burst.yaml"), []byte(burstPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	zero := 0.0
	opts := lab.DefaultOptions()
	opts.BusinessUnits = []lab.BusinessUnit{{Name: "bu-a", Hosts: 1}, {Name: "bu-b", Hosts: 1}}
	opts.SharedHosts = 1
	opts.HostCPU, opts.HostMemoryMB = 1000, 1024
	opts.Policies = policyDir
	opts.LabPools = true
	opts.Cloud = &lab.CloudOptions{
		Config: cloudsim.Config{
			Seed: 7, TimeScale: burstTimeScale, ErrorRate: &zero,
			AWS: cloudsim.CloudConfig{
				Region:    "us-east-1",
				Accounts:  []cloudsim.Account{{AccessKeyID: "AKIDBURSTE2E", SecretAccessKey: "burst-e2e-secret"}},
				Subnets:   map[string]string{"subnet-0a11": "us-east-1a"},
				Offerings: []cloudsim.OfferingConfig{{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: cloudsim.OnDemand, Price: 0.096, Capacity: refOf(5)}},
			},
			Alicloud: cloudsim.CloudConfig{
				Region:    "cn-hangzhou",
				Accounts:  []cloudsim.Account{{AccessKeyID: "LTAIBURSTE2E", SecretAccessKey: "burst-e2e-ali-secret"}},
				Subnets:   map[string]string{"vsw-hz-i": "cn-hangzhou-i"},
				Offerings: []cloudsim.OfferingConfig{{InstanceType: "ecs.g7.large", Zone: "cn-hangzhou-i", CapacityType: cloudsim.OnDemand, Price: 0.11, Capacity: refOf(5)}},
			},
		},
		HostCPU: 1000, HostMemoryMB: 1024,
	}
	l := labtest.Start(t, opts)
	// AWS runs out after one host (injected): the next claim must fall
	// back to Alibaba.
	if err := l.Cloud().SetCapacity(cloudsim.CloudAWS, "us-east-1a", "m5.large", cloudsim.OnDemand, 1); err != nil {
		t.Fatal(err)
	}
	return l
}

// startHotTopic plays the hot-topic trace 15 times faster at a tenth of
// its rate.
func startHotTopic(t *testing.T, l *lab.Lab) {
	t.Helper()
	trace, err := filepath.Abs("../../testdata/traces/hot-topic.csv")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.StartLoad(lab.LoadOptions{Trace: trace, Speed: 15, Scale: 0.1}); err != nil {
		t.Fatal(err)
	}
}

// waitJournal polls the journal until ok accepts it.
func waitJournal(t *testing.T, l *lab.Lab, what string, timeout time.Duration, ok func([]journal.Event) bool) []journal.Event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		evs := allEvents(t, l)
		if ok(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; journal:\n%s", what, timeout, dump(evs))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// allEvents reads the whole journal, oldest first, from the lab's SQLite
// file: it works while the control plane is down.
func allEvents(t *testing.T, l *lab.Lab) []journal.Event {
	t.Helper()
	db, err := journal.Open(t.Context(), l.JournalPath())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out []journal.Event
	if err := journal.Each(t.Context(), db.Events(), journal.Filter{}, func(ev journal.Event) error {
		out = append(out, ev)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func eventData(ev journal.Event) map[string]any {
	var m map[string]any
	_ = json.Unmarshal(ev.Data, &m)
	return m
}

func claimedFrom(evs []journal.Event, pool string) []journal.Event {
	var out []journal.Event
	for _, ev := range evs {
		if ev.Kind == controller.KindClaimed && eventData(ev)["pool"] == pool {
			out = append(out, ev)
		}
	}
	return out
}

// ourInstances lists the simulator's live instances of the lab cluster.
func ourInstances(l *lab.Lab) []string {
	var out []string
	for _, cloud := range []string{cloudsim.CloudAWS, cloudsim.CloudAlicloud} {
		for _, in := range l.Cloud().Instances(cloud) {
			if in.State != "terminated" && in.State != "shutting-down" && in.Tags["spillway:cluster"] == "lab" {
				out = append(out, in.ID+" ("+in.State+")")
			}
		}
	}
	return out
}

// openLoans reads the ledger's open loans through the API.
func openLoans(t *testing.T, l *lab.Lab) []map[string]any {
	t.Helper()
	code, body := requestStatus(t, l, "GET", "/v1/pools/loans", nil)
	if code != 200 {
		t.Fatalf("GET /v1/pools/loans: %d %s", code, body)
	}
	var page struct {
		Loans []map[string]any `json:"loans"`
	}
	if err := json.Unmarshal([]byte(body), &page); err != nil {
		t.Fatal(err)
	}
	return page.Loans
}

// waitScaledIn waits until the burst is over: the demo is back at its
// minimum, no instance of ours runs in either cloud, and every loan is
// closed.
func waitScaledIn(t *testing.T, l *lab.Lab, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		inst, loans, count := ourInstances(l), openLoans(t, l), demoCount(t, l)
		if len(inst) == 0 && len(loans) == 0 && count == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not scaled in within %s: count %d, instances %v, loans %v; journal:\n%s", timeout, count, inst, loans, dump(allEvents(t, l)))
		}
		time.Sleep(time.Second)
	}
	if err := l.WaitHealthy(t.Context(), lab.DemoJob, 2, time.Minute); err != nil {
		t.Fatal(err)
	}
}

// TestBurstAcrossSharedAWSAndAlibaba is the controller's acceptance test.
// Under the hot-topic trace, Spillway borrows the shared host first, rents
// AWS through the EC2 API, falls back to Alibaba's ECS API when AWS runs
// out, and reaches the count with every allocation healthy, each activity
// within its deadline on the simulator's clock. When the trace decays, the
// cloud hosts are drained and terminated and the shared host returned.
func TestBurstAcrossSharedAWSAndAlibaba(t *testing.T) {
	t.Parallel()
	labtest.Takes(t, 210*time.Second)
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	l := startBurstLab(t)
	startHotTopic(t, l)

	waitJournal(t, l, "the burst reaching Alibaba", 3*time.Minute, func(evs []journal.Event) bool {
		return len(claimedFrom(evs, "alicloud-lab")) > 0
	})
	if err := l.WaitHealthy(t.Context(), lab.DemoJob, 13, 2*time.Minute); err != nil {
		t.Fatalf("%v; journal:\n%s", err, dump(allEvents(t, l)))
	}
	evs := allEvents(t, l)

	// The order of the tiers: shared, then AWS, then Alibaba.
	shared, aws, ali := claimedFrom(evs, "shared"), claimedFrom(evs, "aws-lab"), claimedFrom(evs, "alicloud-lab")
	if len(shared) == 0 || len(aws) == 0 || len(ali) == 0 {
		t.Fatalf("claimed: shared %d, aws %d, alibaba %d; journal:\n%s", len(shared), len(aws), len(ali), dump(evs))
	}
	if !(shared[0].Seq < aws[0].Seq && aws[0].Seq < ali[0].Seq) {
		t.Fatalf("tiers out of order: shared #%d, aws #%d, alibaba #%d", shared[0].Seq, aws[0].Seq, ali[0].Seq)
	}
	// The fallback: AWS said it ran out, and Alibaba was asked within
	// seconds, in the same activity.
	var exhausted *journal.Event
	for i, ev := range evs {
		if ev.Seq < ali[0].Seq && ev.Activity == ali[0].Activity && eventData(ev)["pool"] == "aws-lab" &&
			(ev.Kind == controller.KindClaimFailed || ev.Kind == controller.KindClaimed) && eventData(ev)["reason"] == providers.ErrorKindInsufficientCapacity {
			exhausted = &evs[i]
		}
	}
	if exhausted == nil {
		t.Fatalf("no AWS exhaustion before the Alibaba claim in activity %s; journal:\n%s", ali[0].Activity, dump(evs))
	}
	if gap := ali[0].Time.Sub(exhausted.Time); gap > 10*time.Second {
		t.Errorf("Alibaba was asked %s after AWS ran out; want within seconds", gap)
	}

	// Every activity that rented has all its phases, in order, and none
	// missed its deadline (30s here: 5 minutes on the simulator's clock).
	want := []string{controller.PhaseTrigger, controller.PhaseDecided, controller.PhaseCapacityRequested,
		controller.PhaseHostsRunning, controller.PhaseNodesReady, controller.PhasePlaced, controller.PhaseHealthy}
	for _, act := range []string{aws[0].Activity, ali[0].Activity} {
		var phases, timeline []string
		var healthy float64
		for _, ev := range evs {
			if ev.Activity == act && ev.Kind == controller.KindPhase {
				d := eventData(ev)
				phases = append(phases, d["phase"].(string))
				timeline = append(timeline, fmt.Sprintf("%s %.1fs", d["phase"], d["seconds"]))
				if d["phase"] == controller.PhaseHealthy {
					healthy = d["seconds"].(float64)
				}
			}
		}
		t.Logf("activity %s: %s", act, strings.Join(timeline, ", "))
		if !slices.Equal(phases, want) {
			t.Errorf("activity %s: phases %v, want %v", act, phases, want)
		}
		simulated := time.Duration(healthy / burstTimeScale * float64(time.Second))
		t.Logf("activity %s: healthy after %.1fs, %s on the simulator's clock", act, healthy, simulated.Round(time.Second))
		if simulated > 5*time.Minute {
			t.Errorf("activity %s took %s on the simulator's clock, past its 5-minute deadline", act, simulated)
		}
	}
	for _, ev := range evs {
		if ev.Kind == controller.KindMissed {
			t.Errorf("missed deadline: %s", ev.Message)
		}
	}
	// The rented nodes serve bu-a, and were learnt from.
	if ready := filterKind(evs, controller.KindHostReady); len(ready) < 2 {
		t.Errorf("%d rented hosts reported ready, want at least 2", len(ready))
	}

	// The trace decays: everything goes back.
	waitScaledIn(t, l, 4*time.Minute)
	evs = allEvents(t, l)
	if n := len(filterKind(evs, controller.KindTerminated)); n < 2 {
		t.Errorf("%d rented hosts terminated, want at least 2", n)
	}
	// Scale-in drained each host before giving it back: the intent comes
	// first, cloud hosts before the shared one.
	var order []string
	for _, ev := range filterKind(evs, controller.KindIntentReturn) {
		order = append(order, fmt.Sprint(eventData(ev)["tier"]))
	}
	if len(order) < 3 || order[len(order)-1] != "shared" {
		t.Errorf("scale-in order by tier %v: cloud hosts go before the shared one", order)
	}
	assertNoClaimLaunchedTwice(t, l, allEvents(t, l))

	// The console explains the burst: the activity that fell back from
	// AWS to Alibaba, from the overview.
	t.Run("console", func(t *testing.T) { checkActivityConsole(t, l, ali[0].Activity, allEvents(t, l)) })

	// After the burst, in the same lab: work only Alibaba's hosts may take.
	t.Run("meta", func(t *testing.T) { checkMetaConstrainedToOnePool(t, l) })

	// The whole burst used only the Nomad API that Nomad 1.6 serves.
	serveLog, _ := os.ReadFile(filepath.Join(l.Dir, "logs", "spillway.log"))
	assertNomadCallsPinned(t, l.SpillwayURL, string(serveLog))
}

// checkMetaConstrainedToOnePool: a service of bu-a constrained to
// ${meta.spillway.pool} = alicloud-lab, which only the hosts of the
// Alibaba pool carry, gets hosts from that pool only, although the shared
// host is free and AWS is cheaper; capacity.matched says why the others
// were ruled out. Its host is kept: its allocation may run nowhere else.
func checkMetaConstrainedToOnePool(t *testing.T, l *lab.Lab) {
	job := nomad.NewServiceJob("ali-only", "ali-only", "global", 50)
	job.NodePool = refOf("all")
	job.Datacenters = []string{"*"}
	job.Constrain(nomad.NewConstraint("${meta."+pools.MetaServes+"}", "=", "bu-a"))
	job.Constrain(nomad.NewConstraint("${meta.spillway.pool}", "=", lab.AlicloudCloudPool))
	task := nomad.NewTask("app", "raw_exec").
		SetConfig("command", "/bin/sleep").SetConfig("args", []string{"600"}).
		Require(&nomad.Resources{CPU: refOf(250), MemoryMB: refOf(64)})
	job.AddTaskGroup(nomad.NewTaskGroup("app", 2).AddTask(task))
	if _, _, err := l.Nomad().Jobs().Register(job, nil); err != nil {
		t.Fatal(err)
	}
	const target = "default/ali-only/app"
	if err := l.WaitHealthy(t.Context(), "ali-only", 2, 3*time.Minute); err != nil {
		t.Fatalf("%v; journal:\n%s", err, dump(events(t, l, "subject="+target)))
	}
	evs := events(t, l, "subject="+target)
	var from []string
	for _, ev := range filterKind(evs, controller.KindClaimed) {
		from = append(from, fmt.Sprint(eventData(ev)["pool"]))
	}
	if len(from) == 0 || slices.ContainsFunc(from, func(p string) bool { return p != lab.AlicloudCloudPool }) {
		t.Fatalf("claimed from %v for work only %s's hosts may take\n%s", from, lab.AlicloudCloudPool, dump(evs))
	}
	matched := filterKind(evs, controller.KindMatched)
	if len(matched) == 0 || !strings.Contains(matched[0].Message, lab.AWSCloudPool+": its hosts do not meet the constraint ${meta.spillway.pool} = "+lab.AlicloudCloudPool) {
		t.Fatalf("capacity.matched does not say why %s was ruled out:\n%s", lab.AWSCloudPool, dump(evs))
	}
	t.Logf("%s: %s", target, matched[0].Message)
}

// TestBurstSurvivesCrashes runs the same burst while the control plane is
// killed with SIGKILL after a cloud claim is journaled, after the cloud
// call, and during a drain. After each restart it converges: the end state
// is the same as without the crashes, with no leaked instance and no open
// loan.
func TestBurstSurvivesCrashes(t *testing.T) {
	t.Parallel()
	labtest.Takes(t, 180*time.Second)
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	l := startBurstLab(t)
	// restart starts serve with env; with a failpoint armed, it may crash
	// before it is ready.
	restart := func(env ...string) {
		t.Helper()
		l.SetServeEnv(env...)
		if err := l.StartServe(t.Context()); err != nil && !(len(env) > 0 && l.ServeExited()) {
			t.Fatal(err)
		}
	}
	armed := func(point string) string { return app.FailpointEnv + "=" + point }
	waitCrash := func(point string, timeout time.Duration) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), timeout)
		defer cancel()
		if err := l.WaitServeExit(ctx); err != nil {
			t.Fatalf("serve did not reach failpoint %s: %v; journal:\n%s", point, err, dump(allEvents(t, l)))
		}
		t.Logf("serve crashed at %s", point)
	}

	l.KillServe()
	restart(armed(controller.FailAfterClaimJournaled))
	startHotTopic(t, l)
	waitCrash(controller.FailAfterClaimJournaled, 3*time.Minute)
	evs := allEvents(t, l)
	intents := 0
	for _, ev := range filterKind(evs, controller.KindIntent) {
		if eventData(ev)["provider"] != nil {
			intents++
		}
	}
	if intents != 1 || len(ourInstances(l)) != 0 {
		t.Fatalf("after the first crash: %d cloud intents, instances %v; want 1 and none", intents, ourInstances(l))
	}

	// The restart resumes the activity and calls the cloud: crash again.
	restart(armed(controller.FailAfterCloudCall))
	waitCrash(controller.FailAfterCloudCall, 2*time.Minute)
	launched := ourInstances(l)
	if len(launched) == 0 {
		t.Fatal("no instance was launched before the second crash")
	}
	host, _, _ := strings.Cut(launched[0], " ")

	// The next restart takes over the instance the ledger lacks, and the
	// burst goes on; it crashes again while draining a cloud host on the
	// way down. Which path takes it over depends on when the cloud's API
	// sees it (eventual consistency is on): the reconciler adopts it, or
	// the resumed activity's retried launch finds it by its claim.
	restart(armed(controller.FailDuringDrain))
	takenOver := func(evs []journal.Event) bool {
		for _, ev := range append(filterKind(evs, controller.KindAdopted), filterKind(evs, controller.KindClaimed)...) {
			if strings.Contains(ev.Message, host) {
				return true
			}
		}
		return false
	}
	waitJournal(t, l, "the restart taking over the launched instance", time.Minute, takenOver)
	waitCrash(controller.FailDuringDrain, 5*time.Minute)

	// The last restart finishes the drain, and everything goes back.
	restart()
	waitScaledIn(t, l, 4*time.Minute)
	evs = allEvents(t, l)
	// It borrowed, and rented: the host launched before the second crash was
	// taken over, never launched twice, and terminated at the end.
	if len(claimedFrom(evs, "shared")) == 0 || !takenOver(evs) {
		t.Fatalf("the crashed burst did not borrow and take over %s: journal:\n%s", host, dump(evs))
	}
	terminated := false
	for _, ev := range filterKind(evs, controller.KindTerminated) {
		terminated = terminated || eventData(ev)["host"] == host
	}
	if !terminated {
		t.Errorf("the taken-over host %s was not terminated; journal:\n%s", host, dump(evs))
	}
	finished := false
	for _, ev := range filterKind(evs, controller.KindReturned) {
		finished = finished || ev.Actor == "reconciler"
	}
	if !finished {
		t.Errorf("the reconciler did not finish the interrupted drain; journal:\n%s", dump(evs))
	}
	assertNoClaimLaunchedTwice(t, l, evs)
}

// assertNoClaimLaunchedTwice checks every instance the clouds ever made
// for the lab (terminated ones too) against the claims journaled: no claim
// has more instances than the hosts it asked for, however often its intent
// was journaled again after a crash.
func assertNoClaimLaunchedTwice(t *testing.T, l *lab.Lab, evs []journal.Event) {
	t.Helper()
	asked := map[string]int{}
	for _, ev := range filterKind(evs, controller.KindIntent) {
		d := eventData(ev)
		claim, _ := d["claim"].(string)
		hosts, _ := d["hosts"].(float64)
		if claim != "" && d["provider"] != nil {
			asked[claim] = max(asked[claim], int(hosts))
		}
	}
	made := map[string][]string{}
	for _, cloud := range []string{cloudsim.CloudAWS, cloudsim.CloudAlicloud} {
		for _, in := range l.Cloud().Instances(cloud) {
			if in.Tags["spillway:cluster"] == "lab" {
				claim := in.Tags[providers.TagClaim]
				made[claim] = append(made[claim], in.ID+" ("+in.State+")")
			}
		}
	}
	if len(made) == 0 {
		t.Fatal("the clouds made no instance for the lab")
	}
	for claim, ids := range made {
		n, ok := asked[claim]
		switch {
		case !ok:
			t.Errorf("instances %v carry claim %q, which no intent journaled", ids, claim)
		case len(ids) > n:
			t.Errorf("claim %s asked for %d hosts and the clouds made %d: %v (launched twice)", claim, n, len(ids), ids)
		}
	}
}

func filterKind(evs []journal.Event, kind string) []journal.Event {
	var out []journal.Event
	for _, ev := range evs {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}
