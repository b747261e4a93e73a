package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/internal/lab"
	"github.com/spillwayhq/spillway/internal/lab/labtest"
)

// outagePolicy would scale the demo in from 4 to 2 at 40 req/s.
const outagePolicy = `apiVersion: spillway/v1
kind: ScalingPolicy
name: demo-outage
business_unit: bu-a
target: {namespace: default, job: demo, group: web}
min: 2
max: 10
evaluation_interval: 2s
cooldown: {scale_up: 5s, scale_down: 5s}
stale_after: 30s
checks:
  - name: request-rate
    query: sum(rate(spillway_demo_requests_total[10s]))
    target_value: {target: 50, aggregate: total}
`

func demoCount(t *testing.T, l *lab.Lab) int {
	t.Helper()
	job, _, err := l.Nomad().Jobs().Info(lab.DemoJob, nil)
	if err != nil {
		t.Fatal(err)
	}
	return *job.TaskGroups[0].Count
}

// TestMetricOutageNeverScalesIn stops Prometheus while the demo is
// over-provisioned: nothing is scaled in, the journal says why, and scaling
// resumes once Prometheus is back.
func TestMetricOutageNeverScalesIn(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	policyDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(policyDir, "outage.yaml"), []byte(outagePolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := lab.DefaultOptions()
	opts.SharedHosts = 0
	opts.BusinessUnits = []lab.BusinessUnit{{Name: "bu-a", Hosts: 1}}
	opts.Demo.Count = 4
	opts.Policies = policyDir
	trace := filepath.Join(t.TempDir(), "low.csv")
	if err := os.WriteFile(trace, []byte("0,40\n600,40\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	opts.Load = &lab.LoadOptions{Trace: trace}
	l := labtest.Start(t, opts)

	// The outage starts before Prometheus has a rate to give.
	l.StopPrometheus()
	// Wait for evaluations during the outage (positive: the scaler's own
	// count of them), not for a while.
	const evaluations = `spillway_evaluations_total{reason="interval"}`
	before, _ := metricValue(t, l.SpillwayURL, evaluations)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
		if v, _ := metricValue(t, l.SpillwayURL, evaluations); v >= before+5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("fewer than 5 evaluations in a minute of outage")
		}
	}
	if n := demoCount(t, l); n != 4 {
		t.Fatalf("the count changed to %d during the outage", n)
	}
	var holds []journal.Event
	for _, ev := range events(t, l, "kind=decision") {
		var d struct {
			Direction string `json:"direction"`
		}
		_ = json.Unmarshal(ev.Data, &d)
		if d.Direction != "hold" {
			t.Fatalf("a %s decision during the outage: %s", d.Direction, ev.Message)
		}
		holds = append(holds, ev)
	}
	t.Logf("during the outage:\n%s", dump(holds))
	last := holds[len(holds)-1]
	if !strings.Contains(last.Message, "never scale in") || !strings.Contains(last.Message, "prometheus") {
		t.Fatalf("the journal does not say that Prometheus is unreachable: %s", last.Message)
	}
	if len(holds) > 3 {
		t.Errorf("the hold was journaled %d times in 5 evaluations; a repeated decision must be journaled once", len(holds))
	}

	// Back: the policy sees 40 req/s against a target of 50 per total and
	// scales in to its minimum.
	if err := l.StartPrometheus(t.Context()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for demoCount(t, l) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no scale-in within 90s of Prometheus coming back; journal:\n%s", dump(events(t, l, "")))
		}
		time.Sleep(time.Second)
	}
	scales := events(t, l, "kind=scale")
	if len(scales) != 1 || !strings.Contains(scales[0].Message, "from 4 to 2") {
		t.Fatalf("scale events: %s", dump(scales))
	}
}
