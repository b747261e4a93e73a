package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/controller"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/internal/lab"
	"github.com/spillwayhq/spillway/internal/lab/labtest"
	"github.com/spillwayhq/spillway/pools"
)

// The demo asks for 12 instances of 250 MHz; bu-a's one 2000 MHz host
// holds 8, so 4 are queued and one shared host must be borrowed.
const scaleOutPolicy = `apiVersion: spillway/v1
kind: ScalingPolicy
name: demo-burst
business_unit: bu-a
target: {namespace: default, job: demo, group: web}
min: 2
max: 20
evaluation_interval: 2s
deadline: 2m
checks:
  - name: burst
    fixed: {count: 12}
`

// TestScaleOutBorrowsFromTheSharedPool: the scaler raises the count, Nomad
// places what fits on bu-a's own host and queues the rest, and the
// controller borrows a shared host for bu-a; every allocation becomes
// healthy, and the activity's phases are journaled and exported.
func TestScaleOutBorrowsFromTheSharedPool(t *testing.T) {
	t.Parallel()
	labtest.Takes(t, 60*time.Second)
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	policyDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(policyDir, "burst.yaml"), []byte(scaleOutPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := lab.DefaultOptions()
	opts.BusinessUnits = []lab.BusinessUnit{{Name: "bu-a", Hosts: 1}, {Name: "bu-b", Hosts: 1}}
	opts.SharedHosts = 2
	opts.Policies = policyDir
	// The lab's own pools: bu-a and bu-b own one host each and lend one.
	opts.LabPools = true
	l := labtest.Start(t, opts)

	var done []journal.Event
	deadline := time.Now().Add(3 * time.Minute)
	for len(done) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no scale-out finished in 3 minutes; journal:\n%s", dump(events(t, l, "")))
		}
		time.Sleep(time.Second)
		done = events(t, l, "kind="+controller.KindActivityEnded)
	}
	activity := done[0].Activity
	evs := events(t, l, "activity="+activity)
	t.Logf("activity %s:\n%s", activity, dump(evs))

	// Every phase, in order, and the claim journaled before it was made.
	var kinds, phases []string
	for _, ev := range evs {
		kinds = append(kinds, ev.Kind)
		if ev.Kind == controller.KindPhase {
			var p struct{ Phase string }
			_ = json.Unmarshal(ev.Data, &p)
			phases = append(phases, p.Phase)
		}
	}
	want := []string{controller.PhaseTrigger, controller.PhaseDecided, controller.PhaseCapacityRequested,
		controller.PhaseHostsRunning, controller.PhaseNodesReady, controller.PhasePlaced, controller.PhaseHealthy}
	if strings.Join(phases, ",") != strings.Join(want, ",") {
		t.Fatalf("phases %v, want %v", phases, want)
	}
	joined := strings.Join(kinds, ",")
	if !strings.Contains(joined, controller.KindIntent+","+controller.KindClaimed) {
		t.Fatalf("the intent must be journaled right before the claim: %v", kinds)
	}
	for _, k := range []string{journal.KindDecision, journal.KindScale} {
		if !strings.Contains(joined, k) {
			t.Errorf("the activity lacks its %s event: %v", k, kinds)
		}
	}

	// One shared host is lent to bu-a and runs the queued allocations.
	nodes, _, err := l.Nomad().Nodes().List(nil)
	if err != nil {
		t.Fatal(err)
	}
	lent := 0
	for _, stub := range nodes {
		n, _, err := l.Nomad().Nodes().Info(stub.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		if n.Meta[pools.MetaLentTo] != "" {
			lent++
			if n.NodePool != lab.SharedPool || n.Meta[pools.MetaLentTo] != "bu-a" || n.Meta[pools.MetaServes] != "bu-a" {
				t.Errorf("node %s: pool %s, meta %v", n.Name, n.NodePool, n.Meta)
			}
			allocs, _, _ := l.Nomad().Nodes().Allocations(n.ID, nil)
			running := 0
			for _, a := range allocs {
				if a.JobID == lab.DemoJob && a.ClientStatus == "running" {
					running++
				}
			}
			if running != 4 {
				t.Errorf("the borrowed host %s runs %d demo allocations, want the 4 queued ones", n.Name, running)
			}
		}
	}
	if lent != 1 {
		t.Fatalf("%d shared hosts lent, want 1", lent)
	}
	if err := l.WaitHealthy(t.Context(), lab.DemoJob, 12, time.Minute); err != nil {
		t.Fatal(err)
	}

	// The capacity gauges show the loan (they refresh every 15s).
	deadline = time.Now().Add(30 * time.Second)
	for {
		v, ok := metricValue(t, l.SpillwayURL, `spillway_pool_hosts{pool="shared",state="borrowed"}`)
		if ok && v == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf(`spillway_pool_hosts{pool="shared",state="borrowed"} = %v (found %v), want 1`, v, ok)
		}
		time.Sleep(time.Second)
	}

	// The phases are exported.
	if v, ok := metricValue(t, l.SpillwayURL, `spillway_scaleout_phase_seconds_count{phase="allocations_healthy",pool="shared"}`); !ok || v != 1 {
		t.Errorf("spillway_scaleout_phase_seconds for allocations_healthy: %v %v", v, ok)
	}

	// Pausing a pool is journaled and idempotent; a host that was not
	// borrowed cannot be released.
	if body := post(t, l, "/v1/pools/shared/pause", []byte(`{"reason":"e2e"}`)); !strings.Contains(body, `"changed": true`) || !strings.Contains(body, `"paused": true`) {
		t.Fatalf("pause: %s", body)
	}
	if body := post(t, l, "/v1/pools/shared/pause", []byte(`{"reason":"e2e"}`)); !strings.Contains(body, `"changed": false`) {
		t.Fatalf("second pause: %s", body)
	}
	if body := post(t, l, "/v1/pools/shared/resume", []byte(`{"reason":"e2e"}`)); !strings.Contains(body, `"paused": false`) {
		t.Fatalf("resume: %s", body)
	}
	if code, body := requestStatus(t, l, "POST", "/v1/hosts/bu-a-1/release", []byte(`{"reason":"e2e"}`)); code != 404 || !strings.Contains(body, "not_borrowed") {
		t.Fatalf("releasing an own host: %d %s", code, body)
	}
	if evs := events(t, l, "kind=pool"); len(evs) != 2 || evs[0].Actor != "lab-admin" {
		t.Fatalf("pool events: %s", dump(evs))
	}

	// Scale in: pause the policy (its fixed count would scale out again),
	// lower the count by hand, and the borrowed host goes back once what
	// runs on it fits on bu-a's own host.
	post(t, l, "/v1/policies/demo-burst/pause", []byte(`{"reason":"e2e: scale in"}`))
	// Nomad refuses to scale a job while the scale-out's deployment runs.
	if err := l.WaitDeployment(t.Context(), lab.DemoJob, time.Minute); err != nil {
		t.Fatal(err)
	}
	post(t, l, "/v1/scale", []byte(`{"service":"default/demo/web","to":4,"reason":"e2e: the burst is over"}`))
	var returned []journal.Event
	deadline = time.Now().Add(2 * time.Minute)
	for len(returned) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the borrowed host was not returned in 2 minutes; journal:\n%s", dump(events(t, l, "")))
		}
		time.Sleep(time.Second)
		returned = events(t, l, "kind="+controller.KindReturned)
	}
	t.Logf("returned: %s", returned[0].Message)
	intents := events(t, l, "kind="+controller.KindIntentReturn)
	if len(intents) != 1 || intents[0].Seq > returned[0].Seq {
		t.Fatalf("the return's intent must be journaled before it: %s", dump(intents))
	}
	for _, stub := range nodes {
		n, _, err := l.Nomad().Nodes().Info(stub.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{pools.MetaLentTo, pools.MetaServes, pools.MetaLease, pools.MetaClaim} {
			if v, ok := n.Meta[k]; ok && n.NodePool == lab.SharedPool {
				t.Errorf("shared host %s still carries %s=%s after the return", n.Name, k, v)
			}
		}
	}
	if err := l.WaitHealthy(t.Context(), lab.DemoJob, 4, time.Minute); err != nil {
		t.Fatal(err)
	}
}
