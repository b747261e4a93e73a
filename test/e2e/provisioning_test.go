package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/spillwayhq/spillway/controlplane/controller"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/internal/lab"
	"github.com/spillwayhq/spillway/internal/lab/labtest"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers/cloudsim"
)

// TestNomadScaleIsProvisioned: the demo's count is raised with Nomad's
// own API, not Spillway's, beyond what bu-a's host holds; no policy
// governs it. Spillway sees what Nomad queued, borrows the shared host,
// rents on AWS, and every allocation becomes healthy, with the activity's
// phases journaled. At that quiet point, the web console shows the same
// capacity in a browser (console_test.go). Lowered again with Nomad's API,
// the hosts go back: the rented one first, then the borrowed one. All
// the while, a group of bu-a that no tier's hosts can take stays queued:
// it is reported, not rented for, and freezes neither the burst nor its
// end (checkUnservable).
func TestNomadScaleIsProvisioned(t *testing.T) {
	t.Parallel()
	labtest.Takes(t, 70*time.Second)
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	zero := 0.0
	opts := lab.DefaultOptions()
	opts.BusinessUnits = []lab.BusinessUnit{{Name: "bu-a", Hosts: 1}, {Name: "bu-b", Hosts: 1}}
	opts.SharedHosts = 1
	opts.HostCPU, opts.HostMemoryMB = 1000, 1024
	opts.Policies = t.TempDir() // no policy: only Nomad's count
	opts.LabPools = true
	opts.Cloud = &lab.CloudOptions{
		Config: cloudsim.Config{
			Seed: 13, TimeScale: burstTimeScale, ErrorRate: &zero,
			AWS: cloudsim.CloudConfig{
				Region:    "us-east-1",
				Accounts:  []cloudsim.Account{{AccessKeyID: "AKIDPROVISIONE2E", SecretAccessKey: "provision-e2e-secret"}},
				Subnets:   map[string]string{"subnet-0a11": "us-east-1a"},
				Offerings: []cloudsim.OfferingConfig{{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: cloudsim.OnDemand, Price: 0.096, Capacity: refOf(4)}},
			},
		},
		HostCPU: 1000, HostMemoryMB: 1024,
	}
	l := labtest.Start(t, opts)

	// Queued before the burst, and all through it: work no host can take.
	unservable := queueUnservable(t, l)

	// 2 run on bu-a's host, which holds 4 (250 MHz each): 12 need two more
	// hosts, the shared one and one from AWS.
	count := 12
	if _, _, err := l.Nomad().Jobs().Scale(lab.DemoJob, lab.DemoGroup, &count, "operator: nomad job scale", false, nil, nil); err != nil {
		t.Fatal(err)
	}
	evs := waitJournal(t, l, "the scale-out ends", 3*time.Minute, func(evs []journal.Event) bool {
		return len(filterKind(evs, controller.KindActivityEnded)) > 0
	})
	done := filterKind(evs, controller.KindActivityEnded)[0]
	if !strings.Contains(done.Message, "done") {
		t.Fatalf("the activity ended: %s\n%s", done.Message, dump(evs))
	}
	var phases []string
	for _, ev := range evs {
		if ev.Activity == done.Activity && ev.Kind == controller.KindPhase {
			phases = append(phases, fmt.Sprint(eventData(ev)["phase"]))
		}
	}
	want := []string{controller.PhaseTrigger, controller.PhaseDecided, controller.PhaseCapacityRequested,
		controller.PhaseHostsRunning, controller.PhaseNodesReady, controller.PhasePlaced, controller.PhaseHealthy}
	if strings.Join(phases, ",") != strings.Join(want, ",") {
		t.Fatalf("phases %v, want %v\n%s", phases, want, dump(evs))
	}
	if len(claimedFrom(evs, lab.SharedPool)) != 1 || len(claimedFrom(evs, lab.AWSCloudPool)) != 1 {
		t.Fatalf("claims: shared %d, aws %d; want one each\n%s", len(claimedFrom(evs, lab.SharedPool)), len(claimedFrom(evs, lab.AWSCloudPool)), dump(evs))
	}
	if err := l.WaitHealthy(t.Context(), lab.DemoJob, 12, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitDeployment(t.Context(), lab.DemoJob, 2*time.Minute); err != nil {
		t.Fatal(err)
	}

	// A quiet point, with every tier in use: the web console in a browser.
	t.Run("console", func(t *testing.T) { checkConsole(t, l) })

	count = 2
	if _, _, err := l.Nomad().Jobs().Scale(lab.DemoJob, lab.DemoGroup, &count, "operator: back to normal", false, nil, nil); err != nil {
		t.Fatal(err)
	}
	waitScaledIn(t, l, 4*time.Minute)
	var tiers []string
	for _, ev := range filterKind(allEvents(t, l), controller.KindIntentReturn) {
		tiers = append(tiers, fmt.Sprint(eventData(ev)["tier"]))
	}
	if strings.Join(tiers, ",") != "cold,shared" {
		t.Fatalf("give-back order %v, want the rented host, then the borrowed one", tiers)
	}

	t.Run("unservable", func(t *testing.T) { checkUnservable(t, l, unservable) })
}

// unservableJob is a service of bu-a in node pool gpu, which no host
// Spillway can give joins: the shared pool's hosts are in node pool
// shared, the cloud pools' in burst. Its allocations are small, so the
// node pool alone rules every tier out.
func unservableJob() *nomad.Job {
	job := nomad.NewServiceJob("gpu-train", "gpu-train", "global", 50)
	job.NodePool = refOf("gpu")
	job.Datacenters = []string{"*"}
	job.Constrain(nomad.NewConstraint("${meta."+pools.MetaServes+"}", "=", "bu-a"))
	task := nomad.NewTask("train", "raw_exec").
		SetConfig("command", "/bin/sleep").SetConfig("args", []string{"600"}).
		Require(&nomad.Resources{CPU: refOf(100), MemoryMB: refOf(64)})
	job.AddTaskGroup(nomad.NewTaskGroup("train", 2).AddTask(task))
	return job
}

// queueUnservable registers unservableJob (and its node pool, which Nomad
// requires to exist) and waits until the control plane journals that its
// queued work has no host. It returns the group's target.
func queueUnservable(t *testing.T, l *lab.Lab) string {
	t.Helper()
	if _, err := l.Nomad().NodePools().Register(&nomad.NodePool{Name: "gpu", Description: "no Spillway tier joins it"}, nil); err != nil {
		t.Fatal(err)
	}
	job := unservableJob()
	if _, _, err := l.Nomad().Jobs().Register(job, nil); err != nil {
		t.Fatal(err)
	}
	target := "default/" + *job.ID + "/" + *job.TaskGroups[0].Name
	waitJournal(t, l, "capacity.unmet for "+target, time.Minute, func(evs []journal.Event) bool {
		for _, ev := range filterKind(evs, controller.KindUnmet) {
			if ev.Subject == target {
				return true
			}
		}
		return false
	})
	return target
}

// checkUnservable checks, once the burst is over, what became of the
// unservable group queued before it: it got no host and no scale-out,
// capacity.unmet was journaled once with the reason in words, and it is
// still queued and reported in the status and the metric. Stopped, it is
// reported no more.
func checkUnservable(t *testing.T, l *lab.Lab, target string) {
	const reason = "node pool gpu is not served by Spillway"
	evs := allEvents(t, l)
	var unmet []journal.Event
	for _, ev := range evs {
		switch {
		case ev.Subject != target:
		case ev.Kind == controller.KindUnmet:
			unmet = append(unmet, ev)
		case ev.Activity != "":
			t.Errorf("the unservable group has a scale-out: %s %s: %s", ev.Kind, ev.Activity, ev.Message)
		}
	}
	if len(unmet) != 1 {
		t.Fatalf("%d capacity.unmet for %s, want one for the whole burst:\n%s", len(unmet), target, dump(unmet))
	}
	if d := eventData(unmet[0]); d["unservable"] != "node_pool" || !strings.Contains(fmt.Sprint(d["reasons"]), reason) || !strings.Contains(unmet[0].Message, reason) {
		t.Errorf("capacity.unmet does not say why in words: %s %v", unmet[0].Message, d)
	}
	summary, _, err := l.Nomad().Jobs().Summary("gpu-train", nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := summary.Summary["train"]; s.Queued != 2 || s.Running+s.Starting != 0 {
		t.Errorf("the unservable group: %+v, want 2 queued and none placed", s)
	}

	unservable := func() []controller.Unservable {
		var st struct {
			Unservable []controller.Unservable `json:"unservable"`
		}
		if err := json.Unmarshal([]byte(request(t, l, http.MethodGet, "/v1/status", nil)), &st); err != nil {
			t.Fatal(err)
		}
		return st.Unservable
	}
	if u := unservable(); len(u) != 1 || u[0].Target.String() != target || u[0].BusinessUnit != "bu-a" || u[0].Dimension != "node_pool" || !strings.Contains(u[0].Reason, reason) {
		t.Fatalf("GET /v1/status lists as unservable %+v, want %s in node pool gpu", u, target)
	}
	waitMetric(t, l.SpillwayURL, "spillway_unservable_task_groups", 1)

	// Stopped, the group is reported no more. (Stopped, not purged: a
	// purged job stays queued in the cluster model, which sees no event
	// for it.)
	if _, _, err := l.Nomad().Jobs().Deregister("gpu-train", false, nil); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the stopped group to leave the status", time.Minute, func() bool { return len(unservable()) == 0 })
	waitMetric(t, l.SpillwayURL, "spillway_unservable_task_groups", 0)
}

// nomadRequests is the total of spillway_nomad_requests_total of a serve.
func nomadRequests(t *testing.T, serveURL string) float64 {
	t.Helper()
	resp, err := http.Get(serveURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	if mf := families["spillway_nomad_requests_total"]; mf != nil {
		for _, m := range mf.GetMetric() {
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

// TestSteadyStateRequestsDoNotGrowWithNodes: with nothing changing in the
// cluster, serve's requests to Nomad per minute are the same for a
// cluster of 2 nodes and one of 10: every reader reads the cluster model,
// which Nomad's event stream keeps current.
func TestSteadyStateRequestsDoNotGrowWithNodes(t *testing.T) {
	t.Parallel()
	labtest.Takes(t, 75*time.Second)
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	const window = 30 * time.Second
	measure := func(units []lab.BusinessUnit, shared int) (float64, int) {
		opts := lab.DefaultOptions()
		opts.BusinessUnits = units
		opts.SharedHosts = shared
		opts.Policies = t.TempDir()
		opts.LabPools = true
		l := labtest.Start(t, opts)
		defer l.Stop()
		waitMetric(t, l.SpillwayURL, "spillway_cluster_live", 1)
		nodes := shared
		for _, u := range units {
			nodes += u.Hosts
		}
		waitMetric(t, l.SpillwayURL, `spillway_cluster_objects{kind="node"}`, float64(nodes))
		before := nomadRequests(t, l.SpillwayURL)
		time.Sleep(window) // a measurement over a fixed window, not a wait for absence
		perMinute := (nomadRequests(t, l.SpillwayURL) - before) * float64(time.Minute) / float64(window)
		return perMinute, nodes
	}
	small, n1 := measure([]lab.BusinessUnit{{Name: "bu-a", Hosts: 1}}, 1)
	large, n2 := measure([]lab.BusinessUnit{{Name: "bu-a", Hosts: 4}, {Name: "bu-b", Hosts: 4}}, 2)
	t.Logf("steady-state Nomad requests per minute: %.1f with %d nodes, %.1f with %d nodes", small, n1, large, n2)
	if large > small+2 {
		t.Fatalf("requests per minute grew with the cluster: %.1f with %d nodes, %.1f with %d", small, n1, large, n2)
	}
}
