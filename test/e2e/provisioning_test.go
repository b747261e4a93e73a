package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
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
// phases journaled, while the console's overview, open in a browser,
// shows its deadline bar pass the phases and end (overview_test.go). At
// that quiet point, the web console shows the same capacity in a browser
// (console_test.go). Lowered again with Nomad's API,
// the hosts go back: the rented one first, then the borrowed one. All
// the while, a group of bu-a that no tier's hosts can take stays queued:
// it is reported, not rented for, and freezes neither the burst nor its
// end (checkUnservable).
func TestNomadScaleIsProvisioned(t *testing.T) {
	t.Parallel()
	labtest.Takes(t, 75*time.Second)
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
	// hosts, the shared one and one from AWS. The console's overview is
	// open in a browser when the count rises, and follows the scale-out
	// to its end (overview_test.go); without a browser, the count rises
	// all the same.
	count := 12
	raised := false
	var raiseErr error
	raise := func() error {
		raised = true
		_, _, raiseErr = l.Nomad().Jobs().Scale(lab.DemoJob, lab.DemoGroup, &count, "operator: nomad job scale", false, nil, nil)
		return raiseErr
	}
	t.Run("overview", func(t *testing.T) { checkOverview(t, l, raise) })
	if !raised {
		_ = raise()
	}
	if raiseErr != nil {
		t.Fatal(raiseErr)
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

// unservableGroup is a group of bu-a queued all through the burst that
// no host Spillway can give may take, and why.
type unservableGroup struct {
	job       *nomad.Job
	dimension string
	reason    string
}

// target is the group's.
func (u unservableGroup) target() string {
	return "default/" + *u.job.ID + "/" + *u.job.TaskGroups[0].Name
}

// unservableGroups are two services of bu-a with small allocations that
// no tier can take: one in node pool gpu, which no host Spillway can give
// joins (the shared pool's hosts are in node pool shared, the cloud
// pools' in burst); one in node pool all constrained to node class gpu,
// which no tier's hosts have.
func unservableGroups() []unservableGroup {
	job := func(id string) *nomad.Job {
		job := nomad.NewServiceJob(id, id, "global", 50)
		job.Datacenters = []string{"*"}
		job.Constrain(nomad.NewConstraint("${meta."+pools.MetaServes+"}", "=", "bu-a"))
		task := nomad.NewTask("train", "raw_exec").
			SetConfig("command", "/bin/sleep").SetConfig("args", []string{"600"}).
			Require(&nomad.Resources{CPU: refOf(100), MemoryMB: refOf(64)})
		job.AddTaskGroup(nomad.NewTaskGroup("train", 2).AddTask(task))
		return job
	}
	inPool := job("gpu-train")
	inPool.NodePool = refOf("gpu")
	ofClass := job("gpu-class")
	ofClass.NodePool = refOf("all")
	ofClass.Constrain(nomad.NewConstraint("${node.class}", "=", "gpu"))
	return []unservableGroup{
		{inPool, "node_pool", "node pool gpu is not served by Spillway"},
		{ofClass, "constraint", "do not meet the constraint ${node.class} = gpu"},
	}
}

// queueUnservable registers unservableGroups (and node pool gpu, which
// Nomad requires to exist) and waits until the control plane journals
// that their queued work has no host.
func queueUnservable(t *testing.T, l *lab.Lab) []unservableGroup {
	t.Helper()
	if _, err := l.Nomad().NodePools().Register(&nomad.NodePool{Name: "gpu", Description: "no Spillway tier joins it"}, nil); err != nil {
		t.Fatal(err)
	}
	groups := unservableGroups()
	for _, g := range groups {
		if _, _, err := l.Nomad().Jobs().Register(g.job, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitJournal(t, l, "capacity.unmet for every unservable group", time.Minute, func(evs []journal.Event) bool {
		seen := 0
		for _, g := range groups {
			if slices.ContainsFunc(filterKind(evs, controller.KindUnmet), func(ev journal.Event) bool { return ev.Subject == g.target() }) {
				seen++
			}
		}
		return seen == len(groups)
	})
	return groups
}

// checkUnservable checks, once the burst is over, what became of the
// unservable groups queued before it: they got no host and no scale-out,
// capacity.unmet was journaled once each with the reason in words, and
// they are still queued and reported in the status and the metric.
// Stopped, they are reported no more.
func checkUnservable(t *testing.T, l *lab.Lab, groups []unservableGroup) {
	evs := allEvents(t, l)
	for _, g := range groups {
		var unmet []journal.Event
		for _, ev := range evs {
			switch {
			case ev.Subject != g.target():
			case ev.Kind == controller.KindUnmet:
				unmet = append(unmet, ev)
			case ev.Activity != "":
				t.Errorf("the unservable group %s has a scale-out: %s %s: %s", g.target(), ev.Kind, ev.Activity, ev.Message)
			}
		}
		if len(unmet) != 1 {
			t.Fatalf("%d capacity.unmet for %s, want one for the whole burst:\n%s", len(unmet), g.target(), dump(unmet))
		}
		if d := eventData(unmet[0]); d["unservable"] != g.dimension || !strings.Contains(fmt.Sprint(d["reasons"]), g.reason) || !strings.Contains(unmet[0].Message, g.reason) {
			t.Errorf("capacity.unmet for %s does not say why in words (%s: %s): %s %v", g.target(), g.dimension, g.reason, unmet[0].Message, d)
		}
		summary, _, err := l.Nomad().Jobs().Summary(*g.job.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s := summary.Summary["train"]; s.Queued != 2 || s.Running+s.Starting != 0 {
			t.Errorf("the unservable group %s: %+v, want 2 queued and none placed", g.target(), s)
		}
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
	listed := unservable()
	for _, g := range groups {
		if !slices.ContainsFunc(listed, func(u controller.Unservable) bool {
			return u.Target.String() == g.target() && u.BusinessUnit == "bu-a" && u.Dimension == g.dimension && strings.Contains(u.Reason, g.reason)
		}) {
			t.Errorf("GET /v1/status lists as unservable %+v, without %s (%s)", listed, g.target(), g.reason)
		}
	}
	if len(listed) != len(groups) {
		t.Fatalf("GET /v1/status lists %d unservable groups, want %d: %+v", len(listed), len(groups), listed)
	}
	waitMetric(t, l.SpillwayURL, "spillway_unservable_task_groups", float64(len(groups)))

	// Stopped, the groups are reported no more. (Stopped, not purged: a
	// purged job stays queued in the cluster model, which sees no event
	// for it.)
	for _, g := range groups {
		if _, _, err := l.Nomad().Jobs().Deregister(*g.job.ID, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "the stopped groups to leave the status", time.Minute, func() bool { return len(unservable()) == 0 })
	waitMetric(t, l.SpillwayURL, "spillway_unservable_task_groups", 0)
}

// nomadRequests is the total of spillway_nomad_requests_total of a serve.
// It fails t when serve exports no such family, or one without a sample:
// a count of 0 must mean no requests, not no metric.
func nomadRequests(t *testing.T, serveURL string) float64 {
	t.Helper()
	const name = "spillway_nomad_requests_total"
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
	mf := families[name]
	if mf == nil || len(mf.GetMetric()) == 0 {
		t.Fatalf("%s/metrics exports no %s sample: the requests to Nomad cannot be counted", serveURL, name)
	}
	total := 0.0
	for _, m := range mf.GetMetric() {
		total += m.GetCounter().GetValue()
	}
	return total
}

// TestSteadyStateRequestsDoNotGrowWithNodes: with nothing changing in the
// cluster, serve's requests to Nomad per minute are the same for a
// cluster of 2 nodes and one of 10: every reader reads the cluster model,
// which Nomad's event stream keeps current. The counter must be exported
// and have counted the requests that made the model live, so that two
// zeros compared mean no requests, not no metric.
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
		// The model went live on a full list of the cluster: those
		// requests were counted.
		if before <= 0 {
			t.Fatalf("spillway_nomad_requests_total is %v with the cluster model live on %d nodes; want the requests that listed them counted", before, nodes)
		}
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
