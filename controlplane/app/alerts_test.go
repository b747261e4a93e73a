package app

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spillwayhq/spillway/controlplane/auth"
	"github.com/spillwayhq/spillway/controlplane/journal"
)

const alertPolicy = `apiVersion: spillway/v1
kind: ScalingPolicy
name: demo
business_unit: bu-a
target: {namespace: default, job: demo, group: web}
min: 2
max: 10
checks:
  - name: rate
    query: sum(rate(x[1m]))
    target_value: {target: 100}
alerts:
  - alert: DemoHighLatency
    matchers: ['service="demo"']
    action: "+50%"
`

func notificationBody(fp, status string) []byte {
	return []byte(`{"version":"4","status":"` + status + `","receiver":"spillway","groupKey":"g",
	  "alerts":[{"status":"` + status + `","fingerprint":"` + fp + `","startsAt":"2026-11-22T08:00:00Z",
	  "labels":{"alertname":"DemoHighLatency","service":"demo"}}]}`)
}

func TestAlertmanagerReceiver(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "demo.yaml"), []byte(alertPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.Policies.Dir = dir
	cfg.API.Tokens = []auth.Token{
		{Name: "alertmanager", Role: auth.Operator, SHA256: auth.Hash("am")},
		{Name: "dashboards", Role: auth.Viewer, SHA256: auth.Hash("view")},
	}
	a, err := New(&cfg, "test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	send := func(token string, body []byte) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/alerts/alertmanager", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}

	if code, _ := send("view", notificationBody("fp1", "firing")); code != http.StatusForbidden {
		t.Fatalf("a viewer token: %d, want 403", code)
	}
	code, body := send("am", notificationBody("fp1", "firing"))
	if code != http.StatusOK || !strings.Contains(body, `"accepted": 1`) {
		t.Fatalf("first notification: %d %s", code, body)
	}
	for range 3 {
		if code, body := send("am", notificationBody("fp1", "firing")); code != http.StatusOK || !strings.Contains(body, `"repeated": 1`) {
			t.Fatalf("repeat: %d %s", code, body)
		}
	}
	if code, body := send("am", []byte(`{"version":"4","alerts":[`)); code != http.StatusBadRequest || !strings.Contains(body, "invalid_payload") {
		t.Fatalf("malformed: %d %s", code, body)
	}
	if code, body := send("am", notificationBody("fp1", "resolved")); code != http.StatusOK || !strings.Contains(body, `"resolved": 1`) {
		t.Fatalf("resolve: %d %s", code, body)
	}

	count := func(kind string) int {
		evs, err := a.journal.Events().Query(context.Background(), journal.Filter{Kind: kind})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if ev.Actor != "alertmanager" {
				t.Errorf("%s event by %q, want the token name", kind, ev.Actor)
			}
		}
		return len(evs)
	}
	for kind, want := range map[string]int{
		journal.KindAlertAccepted: 1, journal.KindAlertRepeated: 3,
		journal.KindAlertRejected: 1, journal.KindAlertResolved: 1,
	} {
		if got := count(kind); got != want {
			t.Errorf("%s events: %d, want %d", kind, got, want)
		}
	}

	// The journal is readable through the API, a page at a time.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/events?kind=alert&limit=2", nil)
	req.Header.Set("Authorization", "Bearer view")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var page eventsPage
	_ = json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	if len(page.Events) != 2 || page.Next == "" {
		t.Fatalf("first page: %+v", page)
	}
}
