package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/alerts/alertstest"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/controlplane/scaler"
)

// errorCode reads the API's error shape, failing the test when the body
// is not it.
func errorCode(t *testing.T, body string) string {
	t.Helper()
	var e apiError
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("not the API's JSON error shape: %s", body)
	}
	return e.Error.Code
}

func TestAPITimeParametersAreRangeChecked(t *testing.T) {
	h := newAPIHarness(t)
	h.ok("POST", "/v1/scale", "op", `{"service":"demo/web","to":3,"reason":"an event to find"}`, nil)
	for _, path := range []string{"/v1/events", "/v1/activities"} {
		for _, bad := range []string{"since=1969-12-31T23:59:59Z", "until=0001-01-01T00:00:00Z", "since=yesterday"} {
			code, body := h.do("GET", path+"?"+bad, "view", "")
			if code != http.StatusBadRequest || errorCode(t, body) != "invalid_query" {
				t.Errorf("%s?%s: %d %s, want 400 invalid_query", path, bad, code, body)
			}
		}
	}
	// Past 2262 the nanoseconds overflow int64: the filter must not invert.
	var page eventsPage
	h.ok("GET", "/v1/events?until=9999-12-31T00:00:00Z", "view", "", &page)
	if len(page.Events) == 0 {
		t.Error("until 9999 found nothing: the bound was inverted")
	}
	h.ok("GET", "/v1/events?since=2300-01-01T00:00:00Z", "view", "", &page)
	if len(page.Events) != 0 {
		t.Errorf("since 2300 found %d events: the bound was inverted", len(page.Events))
	}
	var acts activitiesPage
	h.ok("GET", "/v1/activities?until=9999-12-31T00:00:00Z", "view", "", &acts)
	if len(acts.Activities) != 1 {
		t.Errorf("activities until 9999: %d, want 1", len(acts.Activities))
	}
}

func TestAPIBearerSchemeIsCaseInsensitive(t *testing.T) {
	h := newAPIHarness(t)
	for _, scheme := range []string{"Bearer", "bearer", "BEARER", "bEaReR"} {
		req, _ := http.NewRequest("GET", h.srv.URL+"/v1/policies", nil)
		req.Header.Set("Authorization", scheme+" view")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("scheme %q: %d, want 200", scheme, resp.StatusCode)
		}
	}
}

func TestAPIUnroutedRequestsAnswerJSON(t *testing.T) {
	h := newAPIHarness(t)
	code, body := h.do("GET", "/v1/nothing-here", "view", "")
	if code != http.StatusNotFound || errorCode(t, body) != "not_found" {
		t.Errorf("unknown route: %d %s", code, body)
	}
	req, _ := http.NewRequest("DELETE", h.srv.URL+"/v1/policies", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || errorCode(t, string(b)) != "method_not_allowed" ||
		!strings.Contains(resp.Header.Get("Allow"), "GET") || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("wrong method: %d %q %q %s", resp.StatusCode, resp.Header.Get("Allow"), resp.Header.Get("Content-Type"), b)
	}
}

func TestAPIReloadIsNotRateLimited(t *testing.T) {
	h := newAPIHarness(t)
	for i := range writeBurst + 5 {
		if code, body := h.do("POST", "/v1/reload", "admin", ""); code != http.StatusOK {
			t.Fatalf("reload %d: %d %s, want 200 (reload is not rate-limited)", i+1, code, body)
		}
	}
}

func TestAPIDuplicateKeysAreRefused(t *testing.T) {
	h := newAPIHarness(t)
	for _, c := range []struct{ method, path, token, body string }{
		{"POST", "/v1/scale", "op", `{"service":"demo/web","to":0,"to":5000,"reason":"x"}`},
		{"POST", "/v1/scale", "op", `{"service":"demo/web","reason":"x","by":1,"reason":"y"}`},
		{"POST", "/v1/policies/demo/pause", "op", `{"reason":"a","reason":"b"}`},
		{"POST", "/v1/hosts/bu-a-1/drain", "op", `{"deadline":"1m","deadline":"2m"}`},
		{"POST", "/v1/alerts/alertmanager", "op", `{"version":"4","version":"4","status":"firing","alerts":[]}`},
	} {
		code, body := h.do(c.method, c.path, c.token, c.body)
		if code != http.StatusBadRequest || !strings.Contains(body, "duplicate key") {
			t.Errorf("%s %s %s: %d %s, want 400 naming the duplicate key", c.method, c.path, c.body, code, body)
		}
	}
	if len(h.nomad.scales) != 0 || len(h.nomad.drains) != 0 {
		t.Fatalf("a refused body changed something: scales %v, drains %v", h.nomad.scales, h.nomad.drains)
	}
}

func TestAPIUnknownJobIsNotFound(t *testing.T) {
	h := newAPIHarness(t)
	for _, svc := range []string{"nope/web", "demo/nope", "other-ns/demo/web"} {
		code, body := h.do("POST", "/v1/scale", "op", `{"service":"`+svc+`","to":3,"reason":"x"}`)
		if code != http.StatusNotFound || errorCode(t, body) != "unknown_target" {
			t.Errorf("%s: %d %s, want 404 unknown_target", svc, code, body)
		}
	}
}

// fixedPolicy asks for 3 whatever the metrics say, within 2 to 10, with
// a five-minute scale-down cooldown.
const fixedPolicy = `apiVersion: spillway/v1
kind: ScalingPolicy
name: demo
business_unit: bu-a
target: {namespace: default, job: demo, group: web}
min: 2
max: 10
cooldown: {scale_up: 1m, scale_down: 5m}
checks:
  - name: floor
    fixed: {count: 3}
`

func TestAPIManualScalingKeepsThePolicyBounds(t *testing.T) {
	h := newAPIHarness(t)
	if err := os.WriteFile(filepath.Join(h.cfg.Policies.Dir, "demo.yaml"), []byte(fixedPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	h.ok("POST", "/v1/reload", "admin", "", nil)

	var res scaler.ManualResult
	h.ok("POST", "/v1/scale", "op", `{"service":"demo/web","to":5000,"reason":"typo"}`, &res)
	if res.Desired != 10 || res.Requested == nil || *res.Requested != 5000 || res.Clamped == "" || res.Forced {
		t.Fatalf("above max: %+v, want clamped to 10", res)
	}
	res = scaler.ManualResult{}
	h.ok("POST", "/v1/scale", "op", `{"service":"demo/web","to":0,"reason":"typo"}`, &res)
	if res.Desired != 2 || res.Clamped == "" {
		t.Fatalf("below min: %+v, want clamped to 2", res)
	}
	code, body := h.do("POST", "/v1/scale", "op", `{"service":"demo/web","to":50,"reason":"load test","force":true}`)
	if code != http.StatusForbidden || errorCode(t, body) != "forbidden" {
		t.Fatalf("force by an operator: %d %s, want 403", code, body)
	}
	res = scaler.ManualResult{}
	h.ok("POST", "/v1/scale", "admin", `{"service":"demo/web","to":50,"reason":"load test","force":true}`, &res)
	if res.Desired != 50 || !res.Forced || res.Clamped != "" {
		t.Fatalf("forced: %+v, want 50", res)
	}
	if got := h.nomad.scales; len(got) != 3 || got[0] != 10 || got[1] != 2 || got[2] != 50 {
		t.Fatalf("nomad got counts %v, want [10 2 50]", got)
	}
	decisions := h.events(journal.KindDecision)
	if last := decisions[len(decisions)-1]; last.Actor != "platform" || !strings.Contains(last.Message, "forced outside the policies' bounds 2 to 10") {
		t.Fatalf("the forced decision: %s by %s", last.Message, last.Actor)
	}
	if !strings.Contains(decisions[0].Message, "asked for 5000; clamped") {
		t.Fatalf("the clamped decision: %s", decisions[0].Message)
	}

	// The next evaluation wants 3, but the cooldown the manual scaling
	// started holds, though 50 is above the max: and after a restart too.
	for range 2 {
		waitCount(t, h, 50)
		h.a.scaler.Evaluate(context.Background(), policiesTarget(), scaler.Trigger{Target: policiesTarget(), Cause: scaler.CauseInterval})
		decisions = h.events(journal.KindDecision)
		last := decisions[len(decisions)-1]
		if last.Actor != "controller" || !strings.Contains(last.Message, "scale-down cooldown lasts until") {
			t.Fatalf("the evaluation after a forced scaling: %s", last.Message)
		}
		if n := len(h.nomad.scales); n != 3 {
			t.Fatalf("the evaluation changed the count: %v", h.nomad.scales)
		}
		h.restart()
	}
}

// waitCount waits until the cluster model has the demo group's count.
func waitCount(t *testing.T, h *apiHarness, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, ok := h.a.model.Snapshot().Job("default", "demo")
		if ok && j.Groups["web"].Count == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the model never saw count %d", want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAlertmanagerBodyLimits(t *testing.T) {
	h := newAPIHarness(t)
	// A real group of 10,000 alerts (about 3 MB) is taken whole.
	body := alertstest.Group("NodeDown", 10000, 0)
	if len(body) < 2<<20 {
		t.Fatalf("the notification is %d bytes; want a realistic 2+ MB", len(body))
	}
	var resp alertResponse
	h.ok("POST", "/v1/alerts/alertmanager", "op", string(body), &resp)
	if resp.Unmatched != 10000 || resp.Accepted != 0 {
		t.Fatalf("10k unmatched alerts: %+v", resp)
	}
	// Over alerts.max_body_bytes: 413, and nothing stored.
	h.srv.Close()
	h.a.Close()
	h.cfg.Alerts.MaxBodyBytes = 1 << 20
	h.start()
	code, out := h.do("POST", "/v1/alerts/alertmanager", "op", string(body))
	if code != http.StatusRequestEntityTooLarge || errorCode(t, out) != "too_large" || !strings.Contains(out, "alerts.max_body_bytes") {
		t.Fatalf("over the limit: %d %s, want 413 naming alerts.max_body_bytes", code, out)
	}
}

// TestFiveHundredStreams opens 500 event streams at once: each is answered,
// with headers or, beyond api.max_streams, 503 and Retry-After; /v1/status
// answers while they are open, and an appended event reaches every open
// stream. (How fast, against the real binary, is TestAPIUnderAbuse's.)
func TestFiveHundredStreams(t *testing.T) {
	h := newAPIHarness(t)
	ctx := context.Background()
	batch := make([]journal.Event, 1000)
	for i := range 3 {
		for j := range batch {
			batch[j] = journal.Event{Kind: "test.filler", Message: fmt.Sprintf("filler %d", i*1000+j)}
		}
		if _, err := h.a.journal.Events().Append(ctx, batch...); err != nil {
			t.Fatal(err)
		}
	}
	const n = 500
	type answer struct {
		code  int
		took  time.Duration
		retry string
		body  io.ReadCloser
	}
	answers := make(chan answer, n)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range n {
		go func() {
			req, _ := http.NewRequestWithContext(sctx, "GET", h.srv.URL+"/v1/events/stream?kind=test.marker", nil)
			req.Header.Set("Authorization", "Bearer view")
			start := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				answers <- answer{code: -1}
				return
			}
			answers <- answer{code: resp.StatusCode, took: time.Since(start), retry: resp.Header.Get("Retry-After"), body: resp.Body}
		}()
	}
	var open []io.ReadCloser
	refused := 0
	var slowest time.Duration
	for range n {
		a := <-answers
		slowest = max(slowest, a.took)
		switch {
		case a.code == http.StatusOK:
			open = append(open, a.body)
		case a.code == http.StatusServiceUnavailable && a.retry != "":
			refused++
			a.body.Close()
		default:
			t.Fatalf("a stream answered %d (Retry-After %q)", a.code, a.retry)
		}
	}
	t.Logf("%d streams open, %d refused with 503; the slowest answer took %s", len(open), refused, slowest)
	if len(open) != h.cfg.API.MaxStreams || refused != n-h.cfg.API.MaxStreams {
		t.Errorf("open %d, refused %d: want api.max_streams (%d) open and the rest refused", len(open), refused, h.cfg.API.MaxStreams)
	}
	var worst time.Duration
	for range 10 {
		start := time.Now()
		h.ok("GET", "/v1/status", "view", "", nil)
		worst = max(worst, time.Since(start))
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("/v1/status with %d streams open: at worst %s", len(open), worst)
	// One event reaches every open stream.
	if _, err := h.a.journal.Events().Append(ctx, journal.Event{Kind: "test.marker", Message: "to every stream"}); err != nil {
		t.Fatal(err)
	}
	got := make(chan bool, len(open))
	for _, body := range open {
		go func() {
			defer body.Close()
			buf := make([]byte, 4096)
			var seen []byte
			for !bytes.Contains(seen, []byte("to every stream")) {
				k, err := body.Read(buf)
				if err != nil {
					got <- false
					return
				}
				seen = append(seen, buf[:k]...)
			}
			got <- true
		}()
	}
	timeout := time.After(10 * time.Second)
	for range open {
		select {
		case ok := <-got:
			if !ok {
				t.Fatal("a stream ended before the event came")
			}
		case <-timeout:
			t.Fatal("the event did not reach every stream within 10s")
		}
	}
}

// matchedNotification is a group of n DemoHighLatency alerts for the demo,
// which the harness's policy matches.
func matchedNotification(n, offset int) string {
	var b strings.Builder
	b.WriteString(`{"version":"4","status":"firing","receiver":"spillway","groupKey":"g","alerts":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"status":"firing","fingerprint":"m%04d","startsAt":"2026-11-22T08:00:00Z","labels":{"alertname":"DemoHighLatency","service":"demo","pod":"p%d"}}`, offset+i, offset+i)
	}
	b.WriteString(`]}`)
	return b.String()
}

func TestAlertmanagerFiringSetIsCapped(t *testing.T) {
	h := newAPIHarness(t)
	h.srv.Close()
	h.a.Close()
	h.cfg.Alerts.MaxFiring = 3
	h.start()

	// Unmatched alerts cost a counter and one summary event.
	var resp alertResponse
	h.ok("POST", "/v1/alerts/alertmanager", "op", string(alertstest.Group("NodeDown", 50, 0)), &resp)
	if resp.Unmatched != 50 || len(h.events(journal.KindAlertIgnored)) != 0 {
		t.Fatalf("unmatched: %+v, %d alert.ignored events", resp, len(h.events(journal.KindAlertIgnored)))
	}
	if evs := h.events(journal.KindAlertUnmatched); len(evs) != 1 || !strings.Contains(evs[0].Message, "50 firing alerts match no policy's alert rule (NodeDown ×50)") {
		t.Fatalf("the unmatched summary: %+v", evs)
	}
	h.ok("POST", "/v1/alerts/alertmanager", "op", matchedNotification(2, 0), &resp)
	if resp.Accepted != 2 {
		t.Fatalf("two matched alerts: %+v", resp)
	}
	// Two more would make 4 of 3: refused whole, with 503 and Retry-After,
	// which Alertmanager retries; alert.full is journaled once.
	for range 2 {
		req, _ := http.NewRequest("POST", h.srv.URL+"/v1/alerts/alertmanager", strings.NewReader(matchedNotification(2, 2)))
		req.Header.Set("Authorization", "Bearer op")
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" || errorCode(t, string(b)) != "firing_set_full" {
			t.Fatalf("over the cap: %d %q %s", r.StatusCode, r.Header.Get("Retry-After"), b)
		}
	}
	if evs := h.events(journal.KindAlertFull); len(evs) != 1 || !strings.Contains(evs[0].Message, "alerts.max_firing") {
		t.Fatalf("alert.full events: %+v, want one", evs)
	}
	var st status
	h.ok("GET", "/v1/status", "view", "", &st)
	if st.FiringTotal != 2 || len(st.Firing) != 2 {
		t.Fatalf("status: %d firing (%d listed), want the 2 accepted", st.FiringTotal, len(st.Firing))
	}
	// Repeats at the cap still go through.
	h.ok("POST", "/v1/alerts/alertmanager", "op", matchedNotification(2, 0), &resp)
	if resp.Repeated != 2 {
		t.Fatalf("repeats at the cap: %+v", resp)
	}
}
