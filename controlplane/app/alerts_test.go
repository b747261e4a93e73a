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
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

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
	a, err := New(&cfg, "test", slog.New(slog.DiscardHandler), Options{})
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
	// The alert is seen (firing) and its trigger queued; the scaler does
	// not run here, so the trigger waits.
	if n := len(a.alerts.Alerts(a.clock.Now())); n != 1 {
		t.Fatalf("%d alerts firing after the first notification, want 1", n)
	}
	if got := metricValue(t, a, "spillway_triggers_pending"); got != 1 {
		t.Fatalf("%v triggers pending after a new alert, want 1", got)
	}
	for range 3 {
		if code, body := send("am", notificationBody("fp1", "firing")); code != http.StatusOK || !strings.Contains(body, `"repeated": 1`) {
			t.Fatalf("repeat: %d %s", code, body)
		}
	}
	if got := metricValue(t, a, "spillway_triggers_coalesced_total"); got != 0 {
		t.Fatalf("a repeat queued a trigger: %v coalesced, want 0", got)
	}
	// Another new alert for the same group while its trigger waits: the
	// newest trigger replaces the waiting one, nothing is dropped.
	if code, body := send("am", notificationBody("fp2", "firing")); code != http.StatusOK || !strings.Contains(body, `"accepted": 1`) {
		t.Fatalf("a second alert: %d %s", code, body)
	}
	if got := metricValue(t, a, "spillway_triggers_pending"); got != 1 {
		t.Fatalf("%v triggers pending for one group, want 1", got)
	}
	if got := metricValue(t, a, "spillway_triggers_coalesced_total"); got != 1 {
		t.Fatalf("%v triggers coalesced, want 1", got)
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
		journal.KindAlertAccepted: 2, journal.KindAlertRepeated: 3,
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

// TestAlertsAreDurable: a notification is applied only once it is
// journaled, so one that met a journal error is acted on when Alertmanager
// sends it again, and only then; the firing set survives a restart: the
// same notification after it is a repeat, and a resolved one clears it.
func TestAlertsAreDurable(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "demo.yaml"), []byte(alertPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.Policies.Dir = dir
	cfg.API.Tokens = []auth.Token{{Name: "alertmanager", Role: auth.Operator, SHA256: auth.Hash("am")}}
	start := func() (*App, *httptest.Server) {
		a, err := New(&cfg, "test", slog.New(slog.DiscardHandler), Options{})
		if err != nil {
			t.Fatal(err)
		}
		return a, httptest.NewServer(a.Handler())
	}
	send := func(srv *httptest.Server, path string, body []byte) (int, string) {
		method := http.MethodPost
		if body == nil {
			method = http.MethodGet
		}
		req, _ := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer am")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	accepted := func(a *App) int {
		evs, err := a.journal.Events().Query(context.Background(), journal.Filter{Kind: journal.KindAlertAccepted})
		if err != nil {
			t.Fatal(err)
		}
		return len(evs)
	}

	a, srv := start()
	// The journal fails: 503, and nothing changes.
	if err := a.journal.Close(); err != nil {
		t.Fatal(err)
	}
	if code, body := send(srv, "/v1/alerts/alertmanager", notificationBody("fp-9", "firing")); code != http.StatusServiceUnavailable {
		t.Fatalf("with the journal down: %d %s", code, body)
	}
	if n := len(a.alerts.Alerts(a.clock.Now())); n != 0 {
		t.Fatalf("a notification that was not journaled changed the firing set: %d alerts", n)
	}
	if got := metricValue(t, a, "spillway_triggers_pending"); got != 0 {
		t.Fatalf("a notification that was not journaled queued %v triggers", got)
	}
	srv.Close()

	// Back up (a restart): Alertmanager's retry is new, and acted on.
	a, srv = start()
	if code, body := send(srv, "/v1/alerts/alertmanager", notificationBody("fp-9", "firing")); code != http.StatusOK || !strings.Contains(body, `"accepted": 1`) {
		t.Fatalf("the retry: %d %s", code, body)
	}
	srv.Close()
	a.Close()

	// A restart rebuilds the firing set from the journal.
	a, srv = start()
	defer func() { srv.Close(); a.Close() }()
	if code, body := send(srv, "/v1/status", nil); code != http.StatusOK || !strings.Contains(body, `"fingerprint": "fp-9"`) {
		t.Fatalf("status after the restart: %d %s", code, body)
	}
	if code, body := send(srv, "/v1/alerts/alertmanager", notificationBody("fp-9", "firing")); code != http.StatusOK || !strings.Contains(body, `"repeated": 1`) {
		t.Fatalf("the same notification after the restart: %d %s", code, body)
	}
	if n := accepted(a); n != 1 {
		t.Fatalf("the alert was accepted %d times, want once", n)
	}
	// Two copies of a new notification at once (Alertmanager peers in HA):
	// acted on once.
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, body := send(srv, "/v1/alerts/alertmanager", notificationBody("fp-10", "firing")); code != http.StatusOK {
				t.Errorf("a concurrent copy: %d %s", code, body)
			}
		}()
	}
	wg.Wait()
	if n := accepted(a); n != 2 {
		t.Fatalf("%d alerts accepted after two concurrent copies of a new one, want 2 (fp-9 once, fp-10 once)", n)
	}
	if code, body := send(srv, "/v1/alerts/alertmanager", notificationBody("fp-9", "resolved")); code != http.StatusOK || !strings.Contains(body, `"resolved": 1`) {
		t.Fatalf("the resolve: %d %s", code, body)
	}
	if code, body := send(srv, "/v1/status", nil); code != http.StatusOK || strings.Contains(body, "fp-9") {
		t.Fatalf("status after the resolve: %d %s", code, body)
	}
}

// TestAlertIntakeOnTheDaemonsClock steps the daemon's clock through an
// alert's life: the receiver stamps what it journals with that clock, a
// re-send within alerts.ttl is a repeat, an alert not re-sent for longer
// has ended (a new notification of it is new again), and a restart
// restores the firing set as of the clock's time.
func TestAlertIntakeOnTheDaemonsClock(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "demo.yaml"), []byte(alertPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.Policies.Dir = dir
	cfg.Alerts.TTL = time.Hour
	cfg.API.Tokens = []auth.Token{{Name: "alertmanager", Role: auth.Operator, SHA256: auth.Hash("am")}}
	t0 := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(t0)
	start := func() (*App, *httptest.Server) {
		a, err := New(&cfg, "test", slog.New(slog.DiscardHandler), Options{Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		return a, httptest.NewServer(a.Handler())
	}
	send := func(srv *httptest.Server, status string) string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/alerts/alertmanager", bytes.NewReader(notificationBody("fp1", status)))
		req.Header.Set("Authorization", "Bearer am")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("notification: %d %s", resp.StatusCode, b.String())
		}
		return b.String()
	}

	a, srv := start()
	if body := send(srv, "firing"); !strings.Contains(body, `"accepted": 1`) {
		t.Fatalf("first notification: %s", body)
	}
	evs, err := a.journal.Events().Query(context.Background(), journal.Filter{Kind: journal.KindAlertAccepted})
	if err != nil || len(evs) != 1 || !evs[0].Time.Equal(t0) {
		t.Fatalf("the accepted alert's event: %+v, %v; want one at %s, the daemon's clock", evs, err, t0)
	}
	if got := metricValue(t, a, "spillway_alerts_firing"); got != 1 {
		t.Fatalf("%v alerts firing, want 1", got)
	}
	// Re-sent within the TTL: a repeat, and the TTL counts from the re-send.
	clock.Advance(59 * time.Minute)
	if body := send(srv, "firing"); !strings.Contains(body, `"repeated": 1`) {
		t.Fatalf("a re-send within the TTL: %s", body)
	}
	clock.Advance(59 * time.Minute)
	if got := metricValue(t, a, "spillway_alerts_firing"); got != 1 {
		t.Fatalf("%v alerts firing 59m after the re-send, want 1", got)
	}
	// Not re-sent for longer than the TTL: it has ended.
	clock.Advance(2 * time.Minute)
	if got := metricValue(t, a, "spillway_alerts_firing"); got != 0 {
		t.Fatalf("%v alerts firing 61m after the last re-send, want 0", got)
	}
	if body := send(srv, "firing"); !strings.Contains(body, `"accepted": 1`) {
		t.Fatalf("the alert after it ended: %s, want it new again", body)
	}
	srv.Close()
	a.Close()

	// A restart half a TTL later restores it; past the TTL it has ended.
	clock.Advance(30 * time.Minute)
	a, srv = start()
	defer func() { srv.Close(); a.Close() }()
	if got := metricValue(t, a, "spillway_alerts_firing"); got != 1 {
		t.Fatalf("%v alerts firing after a restart within the TTL, want 1", got)
	}
	clock.Advance(31 * time.Minute)
	if got := metricValue(t, a, "spillway_alerts_firing"); got != 0 {
		t.Fatalf("%v alerts firing past the TTL after the restart, want 0", got)
	}
}

// metricValue is the value of a gauge or counter without labels in a's
// registry.
func metricValue(t *testing.T, a *App, name string) float64 {
	t.Helper()
	mfs, err := a.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) != 1 {
			continue
		}
		m := mf.GetMetric()[0]
		if g := m.GetGauge(); g != nil {
			return g.GetValue()
		}
		return m.GetCounter().GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}
