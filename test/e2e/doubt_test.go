package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/controlplane/controller"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/internal/lab"
	"github.com/spillwayhq/spillway/internal/lab/labtest"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/cloudsim"
)

// The tests of "never destroy capacity on doubt": a flapping line to the
// cloud, a lost journal and a spot interruption, on the lab with the
// clouds' eventual consistency on (its default).

// doubtLab is the lab of these tests: bu-a owns one host (four demo
// allocations), the shared pool has shared hosts (bu-a's, of four demo
// allocations each, borrowed before anything is rented), and the
// simulated clouds sell what aws and ali say.
type doubtLab struct {
	seed      int64
	timeScale float64
	downGrace time.Duration
	shared    int
	// spotNotice is the simulator's latency.spotNotice (before scaling).
	spotNotice time.Duration
	aws, ali   []cloudsim.OfferingConfig
}

func startDoubtLab(t *testing.T, o doubtLab) *lab.Lab {
	t.Helper()
	zero := 0.0
	opts := lab.DefaultOptions()
	opts.BusinessUnits = []lab.BusinessUnit{{Name: "bu-a", Hosts: 1}}
	opts.SharedHosts = o.shared
	opts.HostCPU, opts.HostMemoryMB = 1000, 1024
	opts.Policies = t.TempDir() // no policy: the count is Nomad's
	opts.LabPools = true
	cfg := cloudsim.Config{Seed: o.seed, TimeScale: o.timeScale, ErrorRate: &zero, Latency: cloudsim.Latency{SpotNotice: o.spotNotice}}
	if len(o.aws) > 0 {
		cfg.AWS = cloudsim.CloudConfig{Region: "us-east-1", Subnets: map[string]string{"subnet-0a11": "us-east-1a"}, Offerings: o.aws,
			Accounts: []cloudsim.Account{{AccessKeyID: "AKIDDOUBTE2E", SecretAccessKey: "doubt-e2e-secret"}}}
	}
	if len(o.ali) > 0 {
		cfg.Alicloud = cloudsim.CloudConfig{Region: "cn-hangzhou", Subnets: map[string]string{"vsw-hz-i": "cn-hangzhou-i"}, Offerings: o.ali,
			Accounts: []cloudsim.Account{{AccessKeyID: "LTAIDOUBTE2E", SecretAccessKey: "doubt-e2e-ali-secret"}}}
	}
	opts.Cloud = &lab.CloudOptions{Config: cfg, HostCPU: 1000, HostMemoryMB: 1024, DownGrace: o.downGrace}
	return labtest.Start(t, opts)
}

// burstOnto raises the demo's count with Nomad's API and waits until the
// scale-out is done and every allocation healthy; it returns the rented
// hosts serving, wanting hosts of them.
func burstOnto(t *testing.T, l *lab.Lab, count, hosts int) []string {
	t.Helper()
	if _, _, err := l.Nomad().Jobs().Scale(lab.DemoJob, lab.DemoGroup, &count, "operator: burst", false, nil, nil); err != nil {
		t.Fatal(err)
	}
	waitJournal(t, l, "the scale-out ends", 3*time.Minute, func(evs []journal.Event) bool {
		return len(filterKind(evs, controller.KindActivityEnded)) > 0
	})
	if err := l.WaitHealthy(t.Context(), lab.DemoJob, count, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	rented := liveCloudHosts(l)
	if len(rented) != hosts {
		t.Fatalf("rented %v for a count of %d, want %d hosts; journal:\n%s", rented, count, hosts, dump(allEvents(t, l)))
	}
	return rented
}

// liveCloudHosts lists the cloud hosts that joined Nomad and still run.
func liveCloudHosts(l *lab.Lab) []string {
	var out []string
	for _, h := range l.CloudHosts() {
		if h.Booted && !h.Terminated && h.NodeID != "" {
			out = append(out, h.ID)
		}
	}
	return out
}

// hostEvents returns the events of kind about host (subject host/<id>).
func hostEvents(evs []journal.Event, kind, host string) []journal.Event {
	var out []journal.Event
	for _, ev := range evs {
		if ev.Kind == kind && ev.Subject == "host/"+host {
			out = append(out, ev)
		}
	}
	return out
}

// instanceState is the simulator's state of an instance, "" when gone.
func instanceState(l *lab.Lab, id string) string {
	for _, cloud := range []string{cloudsim.CloudAWS, cloudsim.CloudAlicloud} {
		for _, in := range l.Cloud().Instances(cloud) {
			if in.ID == id {
				return in.State
			}
		}
	}
	return ""
}

func running(state string) bool { return state == "running" || state == "Running" }

// labNode reads the Nomad node of the lab host called name (shared-1).
func labNode(t *testing.T, l *lab.Lab, name string) *nomad.Node {
	t.Helper()
	stubs, _, err := l.Nomad().Nodes().List(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range stubs {
		if st.Name == name {
			n, _, err := l.Nomad().Nodes().Info(st.ID, nil)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("nomad has no node %s", name)
	return nil
}

// runningDemo counts the demo allocations Nomad runs on node and means to
// keep running there.
func runningDemo(t *testing.T, l *lab.Lab, node string) int {
	t.Helper()
	allocs, _, err := l.Nomad().Nodes().Allocations(node, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, a := range allocs {
		if a.JobID == lab.DemoJob && a.ClientStatus == nomad.AllocClientStatusRunning && a.DesiredStatus == nomad.AllocDesiredStatusRun {
			n++
		}
	}
	return n
}

// returnsOf returns the scale-in intents (intent.return) to give back
// host, a rented host's instance ID or a borrowed host's node ID.
func returnsOf(evs []journal.Event, host string) []journal.Event {
	var out []journal.Event
	for _, ev := range filterKind(evs, controller.KindIntentReturn) {
		if eventData(ev)["instance"] == host {
			out = append(out, ev)
		}
	}
	return out
}

// TestLinkFlapKeepsTheRentedHosts: the agents of a burst's rented hosts
// are frozen for 45 s, as a flap of the line to the cloud looks to Nomad.
// (clouds.down_grace is 1 minute here, 5 by default: the rule tested is the
// same, a flap shorter than the grace, at a fraction of the wait.)
// Nothing is terminated, the instances still run, and the allocations
// serve again. Then one host stays frozen past clouds.down_grace: it is
// replaced, the replacement asked for before it is terminated, and the
// journal tells the story.
func TestLinkFlapKeepsTheRentedHosts(t *testing.T) {
	t.Parallel()
	labtest.Takes(t, 165*time.Second)
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	l := startDoubtLab(t, doubtLab{seed: 17, timeScale: burstTimeScale, downGrace: time.Minute,
		aws: []cloudsim.OfferingConfig{{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: cloudsim.OnDemand, Price: 0.096, Capacity: refOf(6)}}})
	// bu-a's host holds 4 of the 12: two rented hosts hold the rest.
	rented := burstOnto(t, l, 12, 2)

	// A 45-second flap of every rented host: Nomad takes some 20 s to
	// mark a silent node down, and the host is back well within the grace.
	const flap = 45 * time.Second
	frozen := time.Now()
	for _, id := range rented {
		if err := l.FreezeCloudHost(id); err != nil {
			t.Fatal(err)
		}
	}
	waitJournal(t, l, "the frozen hosts are journaled down", 2*time.Minute, func(evs []journal.Event) bool {
		return !slices.ContainsFunc(rented, func(id string) bool { return len(hostEvents(evs, controller.KindHostDown, id)) == 0 })
	})
	// The flap's length is the scenario's, not a wait for something not
	// to happen; what is asserted below are the signals that follow.
	time.Sleep(time.Until(frozen.Add(flap)))
	for _, id := range rented {
		if err := l.ThawCloudHost(id); err != nil {
			t.Fatal(err)
		}
	}
	evs := waitJournal(t, l, "the frozen hosts are back", 2*time.Minute, func(evs []journal.Event) bool {
		return !slices.ContainsFunc(rented, func(id string) bool { return len(hostEvents(evs, controller.KindHostBack, id)) == 0 })
	})
	for _, id := range rented {
		back := hostEvents(evs, controller.KindHostBack, id)[0]
		terminated := false
		for _, ev := range hostEvents(evs, controller.KindTerminate, id) {
			if ev.Time.Before(back.Time) {
				t.Fatalf("rented host %s was terminated during the flap: %s\n%s", id, ev.Message, dump(evs))
			}
			terminated = true // given back by scale-in since it came back: it was spare
		}
		if state := instanceState(l, id); !terminated && !running(state) {
			t.Fatalf("rented host %s is %q in the simulator after the flap, want running", id, state)
		}
		t.Logf("host %s: %s", id, back.Message)
	}
	replaced := false
	for _, ev := range filterKind(evs, controller.KindReplacing) {
		replaced = replaced || strings.Contains(ev.Message, rented[0]) || strings.Contains(ev.Message, rented[1])
	}
	if !replaced {
		t.Errorf("the lost allocations' hosts were not journaled as replacing the down hosts:\n%s", dump(evs))
	}
	if err := l.WaitHealthy(t.Context(), lab.DemoJob, 12, 2*time.Minute); err != nil {
		t.Fatal(err)
	}

	// Scale-in gives back what the flap added; then one host stays down.
	var fleet []string
	deadline := time.Now().Add(4 * time.Minute)
	for fleet = liveCloudHosts(l); len(fleet) != 2; fleet = liveCloudHosts(l) {
		if time.Now().After(deadline) {
			t.Fatalf("the fleet did not settle at two rented hosts: %v\n%s", fleet, dump(allEvents(t, l)))
		}
		time.Sleep(time.Second)
	}
	if err := l.WaitHealthy(t.Context(), lab.DemoJob, 12, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	victim := fleet[0]
	mark := len(allEvents(t, l))
	if err := l.FreezeCloudHost(victim); err != nil {
		t.Fatal(err)
	}
	evs = waitJournal(t, l, "the host down past its grace is terminated", 5*time.Minute, func(evs []journal.Event) bool {
		return len(hostEvents(evs, controller.KindTerminated, victim)) > 0
	})
	_ = l.ThawCloudHost(victim) // its agent is gone with the instance
	story := evs[mark:]
	at := func(match func(journal.Event) bool) int { return slices.IndexFunc(story, match) }
	down := at(func(ev journal.Event) bool { return ev.Kind == controller.KindHostDown && ev.Subject == "host/"+victim })
	replacing := at(func(ev journal.Event) bool {
		return ev.Kind == controller.KindReplacing && strings.Contains(ev.Message, victim)
	})
	claim := at(func(ev journal.Event) bool { return ev.Kind == controller.KindIntent })
	term := at(func(ev journal.Event) bool {
		return ev.Kind == controller.KindTerminate && ev.Subject == "host/"+victim
	})
	// The provisioner may see the node down in the model a moment before
	// the health pass journals it: host.down and capacity.replacing come
	// in either order, both before the claim and the termination.
	if down < 0 || replacing < 0 || claim < replacing || term < claim || term < down {
		t.Fatalf("want host.down and capacity.replacing, then intent.claim, then intent.terminate of %s; got indexes %d %d %d %d:\n%s",
			victim, down, replacing, claim, term, dump(story))
	}
	why := story[term].Message
	if !strings.Contains(why, "past clouds.down_grace") || !strings.Contains(why, "last ready at") || !strings.Contains(why, "since") {
		t.Fatalf("the termination does not say what was seen: %s", why)
	}
	t.Logf("%s", why)
	if err := l.WaitHealthy(t.Context(), lab.DemoJob, 12, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
}

// TestHungBorrowedHostIsKeptThroughTheGrace: the agent of the shared
// host a burst borrowed hangs (SIGSTOP), and demand then falls low enough
// to give everything back. Scale-in gives back the rented hosts, one at a
// time, and the borrowed one only once clouds.down_grace (1 minute here)
// has passed since it was journaled down, to its lender in the ledger.
// (It is not in TestLinkFlapKeepsTheRentedHosts's lab: there, while the
// flapping rented hosts are down and their replacements younger than
// MinLoanAge, scale-in may give the borrowed host back first.)
func TestHungBorrowedHostIsKeptThroughTheGrace(t *testing.T) {
	t.Parallel()
	labtest.Takes(t, 135*time.Second)
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	const downGrace = time.Minute
	l := startDoubtLab(t, doubtLab{seed: 29, timeScale: burstTimeScale, downGrace: downGrace, shared: 1,
		aws: []cloudsim.OfferingConfig{{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: cloudsim.OnDemand, Price: 0.096, Capacity: refOf(4)}}})
	// bu-a's host and the shared host it borrows first hold 8 of the 16:
	// two rented hosts hold the rest.
	fleet := burstOnto(t, l, 16, 2)

	// The borrowed host's agent hangs. Once Nomad has it down (its work
	// is placed again, on a host rented for it), demand falls to what
	// bu-a's own host holds: scale-in gives back the rented hosts, one at
	// a time, and would give back the borrowed one next, but not before
	// clouds.down_grace has passed since it was journaled down. (The count
	// falls only after host.down: until Nomad sees it, a hung host looks
	// like a ready one.)
	shared := labNode(t, l, "shared-1").ID
	mark := len(allEvents(t, l))
	if err := l.FreezeHost("shared-1"); err != nil {
		t.Fatal(err)
	}
	evs := waitJournal(t, l, "the frozen borrowed host is journaled down", 2*time.Minute, func(evs []journal.Event) bool {
		return len(hostEvents(evs[mark:], controller.KindHostDown, shared)) > 0
	})
	hung := hostEvents(evs[mark:], controller.KindHostDown, shared)[0]
	if !strings.Contains(hung.Message, "borrowed host") {
		t.Fatalf("host.down of shared-1 does not say it is borrowed: %s", hung.Message)
	}
	low := 4
	if _, _, err := l.Nomad().Jobs().Scale(lab.DemoJob, lab.DemoGroup, &low, "operator: the burst is over", false, nil, nil); err != nil {
		t.Fatal(err)
	}
	// The give-back ends, its outcome journaled: while the agent hangs,
	// Nomad cannot take the lending meta off the node (the reconcile
	// pass does, once it is back), but the ledger has closed the loan.
	evs = waitJournal(t, l, "the borrowed host is given back", 4*time.Minute, func(evs []journal.Event) bool {
		return slices.ContainsFunc(evs[mark:], func(ev journal.Event) bool {
			return (ev.Kind == controller.KindReturned || ev.Kind == controller.KindReturnFailed) && eventData(ev)["instance"] == shared
		})
	})
	if err := l.ThawHost("shared-1"); err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(openLoans(t, l), func(m map[string]any) bool { return m["host"] == shared }) {
		t.Fatalf("the ledger still lends shared-1 after its give-back:\n%s", dump(evs[mark:]))
	}
	story := evs[mark:]
	ret := returnsOf(story, shared)[0]
	t.Logf("host.down %s; %s %s", hung.Time.Format(time.StampMilli), ret.Time.Format(time.StampMilli), ret.Message)
	if ret.Time.Before(hung.Time.Add(downGrace)) {
		t.Fatalf("shared-1 was given back %s after it was journaled down, within clouds.down_grace (%s):\n%s",
			ret.Time.Sub(hung.Time), downGrace, dump(story))
	}
	if back := hostEvents(story, controller.KindHostBack, shared); len(back) > 0 && back[0].Time.Before(ret.Time) {
		t.Fatalf("shared-1 came back while frozen: %s", back[0].Message)
	}
	for _, id := range fleet {
		if r := returnsOf(story, id); len(r) == 0 || r[0].Seq > ret.Seq {
			t.Fatalf("rented host %s was not given back before the borrowed one:\n%s", id, dump(story))
		}
	}
	if err := l.WaitHealthy(t.Context(), lab.DemoJob, low, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("after shared-1 was frozen:\n%s", dump(story))
}

// TestLostJournalTerminatesNothing: serve is stopped and its SQLite file
// deleted while a borrowed shared host and rented hosts run. The restarted
// serve terminates no instance: the collector journals gc.refused and
// logs an error naming the cluster. The shared host, which Nomad's meta
// shows lent to bu-a and the new ledger never recorded, keeps serving: its
// loan is adopted (reconcile.adopted_loan), it is not drained, and
// scale-in leaves it to an operator. The operator then adopts one rented
// instance (back into the ledger) and terminates the other through the API.
func TestLostJournalTerminatesNothing(t *testing.T) {
	t.Parallel()
	labtest.Takes(t, 80*time.Second)
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	l := startDoubtLab(t, doubtLab{seed: 19, timeScale: burstTimeScale, shared: 1,
		aws: []cloudsim.OfferingConfig{{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: cloudsim.OnDemand, Price: 0.096, Capacity: refOf(4)}}})
	// bu-a's host and the shared host it borrows first hold 8 of the 16:
	// two rented hosts hold the rest.
	rented := burstOnto(t, l, 16, 2)
	slices.Sort(rented)
	shared := labNode(t, l, "shared-1").ID
	if !slices.ContainsFunc(openLoans(t, l), func(m map[string]any) bool { return m["host"] == shared && m["borrower"] == "bu-a" }) {
		t.Fatalf("the burst did not borrow shared-1 (%s): %v", shared, openLoans(t, l))
	}
	if n := runningDemo(t, l, shared); n != 4 {
		t.Fatalf("shared-1 runs %d demo allocations before the restart, want 4", n)
	}

	l.KillServe()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(l.JournalPath() + suffix); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	if err := l.StartServe(t.Context()); err != nil {
		t.Fatal(err)
	}
	evs := waitJournal(t, l, "the collector refuses and the loan is adopted", 3*time.Minute, func(evs []journal.Event) bool {
		return len(filterKind(evs, controller.KindGCRefused)) > 0 && len(hostEvents(evs, controller.KindLoanAdopted, shared)) > 0
	})
	if adopted := hostEvents(evs, controller.KindLoanAdopted, shared)[0]; !strings.Contains(adopted.Message, "shared-1") {
		t.Fatalf("reconcile.adopted_loan does not name shared-1: %s", adopted.Message)
	}
	refused := filterKind(evs, controller.KindGCRefused)[0]
	var data struct {
		Cluster   string   `json:"cluster"`
		Instances []string `json:"instances"`
	}
	if err := json.Unmarshal(refused.Data, &data); err != nil {
		t.Fatal(err)
	}
	if data.Cluster != lab.CloudCluster || !slices.Equal(data.Instances, rented) || !strings.Contains(refused.Message, "spillway:cluster="+lab.CloudCluster) {
		t.Fatalf("gc.refused: %s %s; want cluster %s and instances %v", refused.Message, refused.Data, lab.CloudCluster, rented)
	}
	if term := filterKind(evs, controller.KindTerminate); len(term) > 0 {
		t.Fatalf("the restart without its journal terminated instances:\n%s", dump(term))
	}
	for _, id := range rented {
		if state := instanceState(l, id); !running(state) {
			t.Fatalf("instance %s is %q after the restart, want running", id, state)
		}
	}
	log, err := os.ReadFile(filepath.Join(l.Dir, "logs", "spillway.log"))
	if err != nil {
		t.Fatal(err)
	}
	said := false
	for _, line := range strings.Split(string(log), "\n") {
		said = said || (strings.Contains(line, "level=ERROR") && strings.Contains(line, "spillway:cluster="+lab.CloudCluster) && strings.Contains(line, rented[0]))
	}
	if !said {
		t.Fatalf("serve logged no error naming the cluster and the instances")
	}

	// The operator's way out (docs/operations.md): look, adopt one,
	// terminate the other.
	var gc controller.Refused
	if err := json.Unmarshal([]byte(request(t, l, http.MethodGet, "/v1/gc", nil)), &gc); err != nil {
		t.Fatal(err)
	}
	if len(gc.Instances) != 2 || gc.Cluster != lab.CloudCluster {
		t.Fatalf("GET /v1/gc: %+v", gc)
	}
	var adopted struct {
		BusinessUnit string `json:"business_unit"`
		InLedger     bool   `json:"in_ledger"`
	}
	resp := post(t, l, "/v1/gc/orphans/"+rented[0]+"/adopt", []byte(`{"reason":"it serves bu-a's burst"}`))
	if err := json.Unmarshal([]byte(resp), &adopted); err != nil || !adopted.InLedger || adopted.BusinessUnit != "bu-a" {
		t.Fatalf("adopt: %s", resp)
	}
	post(t, l, "/v1/gc/orphans/"+rented[1]+"/terminate", []byte(`{"reason":"left over from the lost journal"}`))
	if state := instanceState(l, rented[1]); running(state) {
		t.Fatalf("the instance the operator terminated is still %s", state)
	}
	loans := openLoans(t, l)
	if !slices.ContainsFunc(loans, func(m map[string]any) bool { return m["host"] == rented[0] && m["borrower"] == "bu-a" }) {
		t.Fatalf("the adopted instance %s is not bu-a's in the ledger: %v", rented[0], loans)
	}
	if !running(instanceState(l, rented[0])) {
		t.Fatalf("the adopted instance %s does not run", rented[0])
	}

	// Well after its adoption (the operator's work above came after it),
	// the shared host still serves bu-a: lent, not drained, its work in
	// place, and no give-back was ever meant for it.
	if !slices.ContainsFunc(loans, func(m map[string]any) bool {
		adopted, _ := m["adopted"].(string)
		return m["host"] == shared && m["borrower"] == "bu-a" && adopted != ""
	}) {
		t.Fatalf("GET /v1/pools/loans does not list shared-1 (%s) as adopted by bu-a: %v", shared, loans)
	}
	n := labNode(t, l, "shared-1")
	if n.Meta[pools.MetaLentTo] != "bu-a" || n.DrainStrategy != nil || n.SchedulingEligibility != nomad.NodeSchedulingEligible {
		t.Fatalf("shared-1 is lent to %q, drain %+v, %s; want lent to bu-a, not draining, eligible",
			n.Meta[pools.MetaLentTo], n.DrainStrategy, n.SchedulingEligibility)
	}
	if got := runningDemo(t, l, shared); got != 4 {
		t.Fatalf("shared-1 runs %d demo allocations after the restart, want its 4", got)
	}
	if ret := returnsOf(allEvents(t, l), shared); len(ret) > 0 {
		t.Fatalf("scale-in meant to give back the adopted shared host:\n%s", dump(ret))
	}
}

// TestSpotInterruptionIsReplacedAndDrained: a rented spot host gets its
// interruption notice through the simulator's API. Spillway asks for a
// replacement at once, drains the host before the notice runs out and
// terminates it, in one activity; every allocation is healthy again.
func TestSpotInterruptionIsReplacedAndDrained(t *testing.T) {
	t.Parallel()
	labtest.Takes(t, 90*time.Second)
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	// 0.25: a boot takes about 15s. The notice is EC2's two minutes on the
	// wall clock, as the providers assume it is.
	const scale = 0.25
	l := startDoubtLab(t, doubtLab{seed: 23, timeScale: scale, spotNotice: time.Duration(float64(providers.SpotNotice) / scale),
		aws: []cloudsim.OfferingConfig{{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: cloudsim.Spot, Price: 0.03, Capacity: refOf(4)}},
		ali: []cloudsim.OfferingConfig{{InstanceType: "ecs.g7.large", Zone: "cn-hangzhou-i", CapacityType: cloudsim.OnDemand, Price: 0.11, Capacity: refOf(4)}}})
	rented := burstOnto(t, l, 8, 1)
	spot := rented[0]

	resp, err := http.Post(l.Cloud().URL()+"/_cloudsim/v1/instances/"+spot+"/interrupt", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("interrupting %s: %s", spot, resp.Status)
	}
	var act string
	evs := waitJournal(t, l, "the interruption is handled", 3*time.Minute, func(evs []journal.Event) bool {
		in := hostEvents(evs, controller.KindInterrupted, spot)
		if len(in) == 0 {
			return false
		}
		act = in[0].Activity
		return slices.ContainsFunc(evs, func(ev journal.Event) bool { return ev.Kind == controller.KindActivityEnded && ev.Activity == act })
	})
	var story []journal.Event
	for _, ev := range evs {
		if ev.Activity == act && ev.Kind != controller.KindPhase {
			story = append(story, ev)
		}
	}
	kinds := make([]string, len(story))
	for i, ev := range story {
		kinds[i] = ev.Kind
	}
	at := func(kind string) int { return slices.Index(kinds, kind) }
	if at(controller.KindInterrupted) != 0 || at(controller.KindReplacing) < 0 || at(controller.KindIntent) < 0 || at(controller.KindDrained) < 0 ||
		at(controller.KindTerminate) < max(at(controller.KindIntent), at(controller.KindDrained)) || at(controller.KindActivityEnded) != len(kinds)-1 {
		t.Fatalf("the interruption's activity journaled %v; want the notice, the replacement asked for, the drain, the termination, the end:\n%s", kinds, dump(story))
	}
	var notice struct {
		InterruptAt time.Time `json:"interrupt_at"`
	}
	if err := json.Unmarshal(story[0].Data, &notice); err != nil || notice.InterruptAt.IsZero() {
		t.Fatalf("host.interrupted data %s: %v", story[0].Data, err)
	}
	// The simulator's own reclaim time, and how the instance ended: by
	// Spillway's termination, before the cloud reclaimed it.
	var reclaim time.Time
	reason := ""
	for _, in := range l.Cloud().Instances(cloudsim.CloudAWS) {
		if in.ID == spot {
			reclaim, reason = in.InterruptAt, in.StateReason
		}
	}
	if reclaim.IsZero() || notice.InterruptAt.After(reclaim.Add(time.Second)) {
		t.Fatalf("the provider says the reclaim is at %s, the simulator %s", notice.InterruptAt, reclaim)
	}
	drained := story[at(controller.KindDrained)]
	terminated := story[at(controller.KindTerminate)]
	if !drained.Time.Before(reclaim) || !terminated.Time.Before(reclaim) || strings.Contains(reason, "SpotInstanceTermination") {
		t.Fatalf("drained at %s and terminated at %s (%q); the cloud reclaims it at %s", drained.Time, terminated.Time, reason, reclaim)
	}
	for _, ev := range story {
		t.Logf("%s %-18s %s", ev.Time.Format("15:04:05.000"), ev.Kind, ev.Message)
	}
	if len(claimedFrom(story, lab.AlicloudCloudPool)) == 0 {
		t.Errorf("the replacement did not come from another offering (alicloud-lab):\n%s", dump(story))
	}
	if err := l.WaitHealthy(t.Context(), lab.DemoJob, 8, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
}
