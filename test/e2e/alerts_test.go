package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/internal/lab"
	"github.com/spillwayhq/spillway/internal/lab/labtest"
)

// alertPolicy scales the demo only on alerts: its metric check wants far
// fewer instances than it has (min holds it at 2), and the long scale-up
// cooldown keeps a still-firing alert from compounding during the test.
const alertPolicy = `apiVersion: spillway/v1
kind: ScalingPolicy
name: demo-alerts
business_unit: bu-a
target: {namespace: default, job: demo, group: web}
min: 2
max: 10
evaluation_interval: 5s
cooldown: {scale_up: 10m, scale_down: 10m}
checks:
  - name: request-rate
    query: sum(rate(spillway_demo_requests_total[30s]))
    target_value: {target: 100000, aggregate: total}
alerts:
  - alert: DemoHighLatency
    matchers: ['service="demo"']
    action: "+50%"
`

// TestAlertmanagerDrivesScaling overloads the demo so the lab's Prometheus
// rule DemoHighLatency fires; the real Alertmanager delivers it to
// Spillway, which scales the demo by the policy's alert rule, once, and
// journals the link to the alert's fingerprint. Re-sending the same
// notification three times changes nothing; nor does it after serve
// crashed and restarted, which finds the firing alert in the journal; a
// resolved notification then clears it.
func TestAlertmanagerDrivesScaling(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	policyDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(policyDir, "alerts.yaml"), []byte(alertPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := lab.DefaultOptions()
	opts.SharedHosts = 0
	opts.BusinessUnits = []lab.BusinessUnit{{Name: "bu-a", Hosts: 2}}
	opts.Policies = policyDir
	l := labtest.Start(t, opts)

	// 350 req/s against 2 × 100: queues build and p95 latency passes 250ms.
	trace := filepath.Join(t.TempDir(), "overload.csv")
	if err := os.WriteFile(trace, []byte("0,350\n600,350\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := l.StartLoad(lab.LoadOptions{Trace: trace}); err != nil {
		t.Fatal(err)
	}

	// Wait for Spillway to scale.
	var scale journal.Event
	deadline := time.Now().Add(2 * time.Minute)
	for {
		evs := events(t, l, "kind=scale")
		if len(evs) > 0 {
			scale = evs[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no scaling within 2 minutes; journal:\n%s", dump(events(t, l, "")))
		}
		time.Sleep(time.Second)
	}
	t.Logf("scaled: %s", scale.Message)

	accepted := events(t, l, "kind=alert.accepted")
	if len(accepted) != 1 {
		t.Fatalf("want one accepted alert, got:\n%s", dump(accepted))
	}
	var alert struct {
		Fingerprint string    `json:"fingerprint"`
		Alert       string    `json:"alert"`
		StartsAt    time.Time `json:"starts_at"`
		Labels      map[string]string
		GroupKey    string `json:"group_key"`
	}
	if err := json.Unmarshal(accepted[0].Data, &alert); err != nil || alert.Alert != "DemoHighLatency" || alert.Fingerprint == "" {
		t.Fatalf("accepted alert: %v %+v", err, alert)
	}
	// Within one group interval (5s in the lab) of the alert's arrival.
	if lag := scale.Time.Sub(accepted[0].Time); lag < 0 || lag > 5*time.Second {
		t.Errorf("scaled %s after the alert arrived, want within the 5s group interval", lag)
	}
	var data struct {
		Current int      `json:"current"`
		Desired int      `json:"desired"`
		Alerts  []string `json:"alerts"`
	}
	if err := json.Unmarshal(scale.Data, &data); err != nil {
		t.Fatal(err)
	}
	if data.Current != 2 || data.Desired != 3 || len(data.Alerts) != 1 || data.Alerts[0] != alert.Fingerprint {
		t.Fatalf("scale event %+v: want 2 -> 3 (+50%%) linked to fingerprint %s", data, alert.Fingerprint)
	}
	job, _, err := l.Nomad().Jobs().Info(lab.DemoJob, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := *job.TaskGroups[0].Count; n != 3 {
		t.Fatalf("the demo job's count is %d, want 3", n)
	}

	// The same notification, re-sent three times: no further action.
	payload, _ := json.Marshal(map[string]any{
		"version": "4", "status": "firing", "receiver": "spillway", "groupKey": alert.GroupKey,
		"alerts": []map[string]any{{
			"status": "firing", "labels": alert.Labels, "startsAt": alert.StartsAt,
			"endsAt": "0001-01-01T00:00:00Z", "fingerprint": alert.Fingerprint,
		}},
	})
	for range 3 {
		resp := post(t, l, "/v1/alerts/alertmanager", payload)
		if !strings.Contains(resp, `"repeated": 1`) {
			t.Fatalf("re-sent notification: %s", resp)
		}
	}
	if n := len(events(t, l, "kind=alert.repeated")); n < 3 {
		t.Errorf("want the 3 repeats journaled, got %d", n)
	}
	if evs := events(t, l, "kind=scale"); len(evs) != 1 {
		t.Fatalf("want exactly one scaling, got:\n%s", dump(evs))
	}

	// The firing set is durable: serve crashes and comes back knowing the
	// alert, the same notification still does nothing, and a resolved one
	// clears it.
	firing := func() []string {
		t.Helper()
		var st struct {
			Firing []struct {
				Fingerprint string `json:"fingerprint"`
			} `json:"firing_alerts"`
		}
		if err := json.Unmarshal([]byte(request(t, l, http.MethodGet, "/v1/status", nil)), &st); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, f := range st.Firing {
			out = append(out, f.Fingerprint)
		}
		return out
	}
	if got := firing(); len(got) != 1 || got[0] != alert.Fingerprint {
		t.Fatalf("firing before the restart: %v, want [%s]", got, alert.Fingerprint)
	}
	l.KillServe()
	if err := l.StartServe(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := firing(); len(got) != 1 || got[0] != alert.Fingerprint {
		t.Fatalf("firing after the restart: %v, want [%s] back from the journal", got, alert.Fingerprint)
	}
	if resp := post(t, l, "/v1/alerts/alertmanager", payload); !strings.Contains(resp, `"repeated": 1`) {
		t.Fatalf("the notification re-sent after the restart: %s", resp)
	}
	if evs := events(t, l, "kind=scale"); len(evs) != 1 {
		t.Fatalf("the restart acted on the alert again:\n%s", dump(evs))
	}
	resolved, _ := json.Marshal(map[string]any{
		"version": "4", "status": "resolved", "receiver": "spillway", "groupKey": alert.GroupKey,
		"alerts": []map[string]any{{
			"status": "resolved", "labels": alert.Labels, "startsAt": alert.StartsAt,
			"endsAt": time.Now().UTC().Format(time.RFC3339Nano), "fingerprint": alert.Fingerprint,
		}},
	})
	if resp := post(t, l, "/v1/alerts/alertmanager", resolved); !strings.Contains(resp, `"resolved": 1`) {
		t.Fatalf("the resolved notification: %s", resp)
	}
	if got := firing(); len(got) != 0 {
		t.Fatalf("firing after the resolve: %v, want none", got)
	}
}

func request(t testing.TB, l *lab.Lab, method, path string, body []byte) string {
	t.Helper()
	code, out := requestStatus(t, l, method, path, body)
	if code != http.StatusOK {
		t.Fatalf("%s %s: %d: %s", method, path, code, out)
	}
	return out
}

// requestStatus calls the lab's API with its admin token.
func requestStatus(t testing.TB, l *lab.Lab, method, path string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, l.SpillwayURL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+l.APIToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

func post(t testing.TB, l *lab.Lab, path string, body []byte) string {
	return request(t, l, http.MethodPost, path, body)
}

func events(t testing.TB, l *lab.Lab, query string) []journal.Event {
	t.Helper()
	var page struct {
		Events []journal.Event `json:"events"`
	}
	if err := json.Unmarshal([]byte(request(t, l, http.MethodGet, "/v1/events?limit=1000&"+query, nil)), &page); err != nil {
		t.Fatal(err)
	}
	return page.Events
}

func dump(evs []journal.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "%d %s %s %s: %s\n", ev.Seq, ev.Time.Format(time.StampMilli), ev.Kind, ev.Subject, ev.Message)
	}
	return b.String()
}
