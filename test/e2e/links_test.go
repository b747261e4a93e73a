package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/controller"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/internal/lab"
	"github.com/spillwayhq/spillway/internal/lab/labtest"
	"github.com/spillwayhq/spillway/providers/cloudsim"
)

// linkPolicy asks for 15 demo allocations of 20 Mbit/s each over the
// line: bu-a's one host holds 5 (250 MHz each of 1250), so 10 are queued.
const linkPolicy = `apiVersion: spillway/v1
kind: ScalingPolicy
name: demo-over-the-line
business_unit: bu-a
target: {namespace: default, job: demo, group: web}
min: 2
max: 20
evaluation_interval: 2s
deadline: 2m
traffic: {per_allocation: 20Mbps}
checks:
  - name: burst
    fixed: {count: 15}
`

// linkJSON is a link as GET /v1/links answers it.
type linkJSON struct {
	Name        string `json:"name"`
	Bandwidth   string `json:"bandwidth"`
	InUse       string `json:"in_use"`
	Allocations int    `json:"allocations"`
}

func apiLinks(t *testing.T, l *lab.Lab) []linkJSON {
	t.Helper()
	var r struct{ Links []linkJSON }
	if err := json.Unmarshal([]byte(request(t, l, http.MethodGet, "/v1/links", nil)), &r); err != nil {
		t.Fatal(err)
	}
	return r.Links
}

// TestLinkHoldsTheBurst: the lab's AWS pool is behind a dedicated line of
// 100 Mbit/s filled to 100%, and each demo allocation sends 20 Mbit/s. The
// burst queues 10 allocations (5 to a host): the line carries 5, so one
// host is rented for them and the rest is unmet with reason link, with
// the numbers; GET /v1/links shows the 5 allocations using the whole
// line. An operator raises the line to 1 Gbit/s through the API (a
// negative bandwidth is refused with a 422 naming the field); the next
// plan rents the second host and the burst completes. The journal shows
// both.
func TestLinkHoldsTheBurst(t *testing.T) {
	t.Parallel()
	labtest.Takes(t, 60*time.Second)
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	policyDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(policyDir, "burst.yaml"), []byte(linkPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	zero := 0.0
	opts := lab.DefaultOptions()
	opts.BusinessUnits = []lab.BusinessUnit{{Name: "bu-a", Hosts: 1}}
	opts.SharedHosts = 0
	opts.HostCPU, opts.HostMemoryMB = 1250, 1024
	opts.Policies = policyDir
	opts.LabPools = true
	opts.Cloud = &lab.CloudOptions{
		Config: cloudsim.Config{
			Seed: 35, TimeScale: burstTimeScale, ErrorRate: &zero,
			AWS: cloudsim.CloudConfig{
				Region:    "us-east-1",
				Accounts:  []cloudsim.Account{{AccessKeyID: "AKIDLINKE2E", SecretAccessKey: "link-e2e-secret"}},
				Subnets:   map[string]string{"subnet-0a35": "us-east-1a"},
				Offerings: []cloudsim.OfferingConfig{{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: cloudsim.OnDemand, Price: 0.096, Capacity: refOf(4)}},
			},
		},
		HostCPU: 1250, HostMemoryMB: 1024,
		Link: &lab.Link{Name: "lab-line", Bandwidth: "100Mbps", TargetUtilization: 100},
	}
	l := labtest.Start(t, opts)

	isLinkUnmet := func(ev journal.Event) bool {
		return ev.Kind == controller.KindUnmet && eventData(ev)["reason"] == "link"
	}
	evs := waitJournal(t, l, "the line holds the burst back", 2*time.Minute, func(evs []journal.Event) bool {
		for _, ev := range evs {
			if isLinkUnmet(ev) {
				return true
			}
		}
		return false
	})
	var unmet journal.Event
	for _, ev := range evs {
		if isLinkUnmet(ev) {
			unmet = ev
		}
	}
	d := eventData(unmet)
	short, _ := d["hosts"].(float64)
	if d["link"] != "lab-line" || d["bandwidth_bps"] != 100e6 || d["per_allocation_bps"] != 20e6 || d["in_use_bps"] != 0.0 || d["allowed_allocations"] != 5.0 || short < 1 {
		t.Fatalf("capacity.unmet %s: %s, want lab-line, 100 Mbit/s, none in use, 20 Mbit/s per allocation, 5 allowed, hosts short\n%s", unmet.Message, unmet.Data, dump(evs))
	}
	t.Logf("held back: %s", unmet.Message)

	// The one host behind the line runs its 5 allocations: the line is full.
	deadline := time.Now().Add(90 * time.Second)
	for {
		ls := apiLinks(t, l)
		if len(ls) == 1 && ls[0].Allocations == 5 && ls[0].InUse == "100Mbps" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /v1/links never showed 5 allocations using 100Mbps: %+v\n%s", ls, dump(allEvents(t, l)))
		}
		time.Sleep(500 * time.Millisecond)
	}
	evs = allEvents(t, l)
	if n := len(claimedFrom(evs, lab.AWSCloudPool)); n != 1 {
		t.Fatalf("%d claims behind the line before it was raised, want 1\n%s", n, dump(evs))
	}
	if n := len(ourInstances(l)); n != 1 {
		t.Fatalf("%d instances behind the line, want 1", n)
	}
	if v, ok := metricValue(t, l.SpillwayURL, `spillway_link_in_use_bits_per_second{link="lab-line"}`); !ok || v != 100e6 {
		t.Errorf("spillway_link_in_use_bits_per_second = %v (%v), want 1e8", v, ok)
	}

	// A negative bandwidth is refused; 1 Gbit/s lets the burst complete.
	if code, out := requestStatus(t, l, http.MethodPost, "/v1/links/lab-line", []byte(`{"bandwidth":"-5Mbps","reason":"typo"}`)); code != http.StatusUnprocessableEntity || !strings.Contains(out, `"bandwidth: must not be negative`) {
		t.Fatalf("a negative bandwidth: %d %s", code, out)
	}
	post(t, l, "/v1/links/lab-line", []byte(`{"bandwidth":"1Gbps","reason":"holiday: the 1G line is rented"}`))
	evs = waitJournal(t, l, "the burst completes", 2*time.Minute, func(evs []journal.Event) bool {
		return len(filterKind(evs, controller.KindActivityEnded)) > 0
	})
	done := filterKind(evs, controller.KindActivityEnded)[0]
	if eventData(done)["outcome"] != controller.OutcomeDone {
		t.Fatalf("the scale-out ended: %s\n%s", done.Message, dump(evs))
	}
	if n := len(claimedFrom(evs, lab.AWSCloudPool)); n < 2 {
		t.Fatalf("%d claims from %s, want the first and more once the line was raised\n%s", n, lab.AWSCloudPool, dump(evs))
	}
	set := filterKind(evs, controller.KindLinkSet)
	if len(set) != 1 || !strings.Contains(set[0].Message, "link lab-line set to 1Gbps (was 100Mbps)") {
		t.Fatalf("link.set events: %s", dump(set))
	}
	var links int
	for _, ev := range evs {
		if isLinkUnmet(ev) {
			links++
		}
	}
	if links != 1 {
		t.Errorf("capacity.unmet with reason link journaled %d times, want once\n%s", links, dump(evs))
	}
	if err := l.WaitHealthy(t.Context(), lab.DemoJob, 15, time.Minute); err != nil {
		t.Fatal(err)
	}
	if ls := apiLinks(t, l); len(ls) != 1 || ls[0].Bandwidth != "1Gbps" {
		t.Errorf("after the raise, GET /v1/links: %+v", ls)
	}
	t.Logf("journal:\n%s", dump(evs))
}
