package app

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/auth"
	"github.com/spillwayhq/spillway/controlplane/config"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/controlplane/scaler"
	"github.com/spillwayhq/spillway/policies"
)

// fakeNomad answers the few Nomad endpoints the API and the cluster model
// use: one job (demo, group web), one node, and an event stream that
// tells of every change of the job's count.
type fakeNomad struct {
	mu     sync.Mutex
	count  int
	index  int
	scales []int
	drains []string
	tokens map[string]bool
	events chan string
}

func (f *fakeNomad) job() string {
	return `{"ID":"demo","Name":"demo","Namespace":"default","Type":"service","ModifyIndex":` + itoa(f.index) +
		`,"TaskGroups":[{"Name":"web","Count":` + itoa(f.count) + `,"Tasks":[{"Name":"app","Resources":{"CPU":100,"MemoryMB":64}}]}]}`
}

func (f *fakeNomad) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v1/event/stream" {
		f.stream(w, r)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens[r.Header.Get("X-Nomad-Token")] = true
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Nomad-Index", itoa(f.index))
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/job/demo":
		_, _ = io.WriteString(w, f.job())
	case r.Method == http.MethodGet && r.URL.Path == "/v1/jobs":
		_, _ = io.WriteString(w, `[{"ID":"demo","Name":"demo","Namespace":"default","Type":"service"}]`)
	case r.Method == http.MethodGet && r.URL.Path == "/v1/deployments":
		_, _ = io.WriteString(w, `[]`)
	case r.Method != http.MethodGet && r.URL.Path == "/v1/job/demo/scale":
		var req struct{ Count *int }
		_ = json.NewDecoder(r.Body).Decode(&req)
		f.count = *req.Count
		f.index++
		f.scales = append(f.scales, *req.Count)
		f.events <- `{"Index":` + itoa(f.index) + `,"Events":[{"Topic":"Job","Type":"JobRegistered","Index":` + itoa(f.index) +
			`,"Payload":{"Job":` + f.job() + `}}]}`
		_, _ = io.WriteString(w, `{"EvalID":"e1"}`)
	case r.URL.Path == "/v1/nodes":
		_, _ = io.WriteString(w, `[{"ID":"1111aaaa-0000-0000-0000-000000000000","Name":"bu-a-1","NodePool":"bu-a","NodeClass":"internal","Status":"ready","SchedulingEligibility":"eligible","Datacenter":"dc1"}]`)
	case r.URL.Path == "/v1/allocations":
		_, _ = io.WriteString(w, `[]`)
	case r.URL.Path == "/v1/node/1111aaaa-0000-0000-0000-000000000000":
		_, _ = io.WriteString(w, `{"ID":"1111aaaa-0000-0000-0000-000000000000","Name":"bu-a-1","NodePool":"bu-a","NodeClass":"internal","Status":"ready","SchedulingEligibility":"eligible",
			"Meta":{"spillway.business_unit":"bu-a","spillway.tier":"own","private":"do-not-show"},
			"NodeResources":{"Cpu":{"CpuShares":4000},"Memory":{"MemoryMB":8192}}}`)
	case r.Method != http.MethodGet && r.URL.Path == "/v1/node/1111aaaa-0000-0000-0000-000000000000/drain":
		body, _ := io.ReadAll(r.Body)
		f.drains = append(f.drains, string(body))
		_, _ = io.WriteString(w, `{"EvalIDs":[],"NodeModifyIndex":2}`)
	case r.URL.Path == "/v1/status/leader":
		_, _ = io.WriteString(w, `"127.0.0.1:4647"`)
	default:
		http.Error(w, "not found", http.StatusNotFound)
	}
}

// stream serves /v1/event/stream: the changes the fake makes, one JSON
// document a line, as Nomad does.
func (f *fakeNomad) stream(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, "{}\n")
	w.(http.Flusher).Flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case ev := <-f.events:
			_, _ = io.WriteString(w, ev+"\n")
			w.(http.Flusher).Flush()
		}
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

const (
	nomadSecret = "nomad-acl-secret-3f9c"
	promSecret  = "prom-bearer-secret-77ab"
)

type apiHarness struct {
	t     *testing.T
	a     *App
	srv   *httptest.Server
	nomad *fakeNomad
	cfg   config.Config
}

// newAPIHarness starts a daemon on a fake Nomad; each configure step
// changes its configuration first.
func newAPIHarness(t *testing.T, configure ...func(*config.Config)) *apiHarness {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "demo.yaml"), []byte(alertPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	fn := &fakeNomad{count: 2, index: 1, tokens: map[string]bool{}, events: make(chan string, 16)}
	nsrv := httptest.NewServer(fn)
	t.Cleanup(nsrv.Close)
	cfg := testConfig(t)
	cfg.Policies.Dir = dir
	cfg.Nomad.Address = nsrv.URL
	cfg.Nomad.Token = nomadSecret
	cfg.Prometheus.Address = "http://127.0.0.1:1"
	cfg.Prometheus.Timeout = 200 * time.Millisecond
	cfg.Prometheus.BearerToken = promSecret
	cfg.API.Tokens = []auth.Token{
		{Name: "dashboards", Role: auth.Viewer, SHA256: auth.Hash("view")},
		{Name: "oncall", Role: auth.Operator, SHA256: auth.Hash("op")},
		{Name: "burst", Role: auth.Operator, SHA256: auth.Hash("burst")},
		{Name: "platform", Role: auth.Admin, SHA256: auth.Hash("admin")},
	}
	for _, c := range configure {
		c(&cfg)
	}
	h := &apiHarness{t: t, nomad: fn, cfg: cfg}
	h.start()
	return h
}

func (h *apiHarness) start() {
	a, err := New(&h.cfg, "test", slog.New(slog.DiscardHandler), Options{})
	if err != nil {
		h.t.Fatal(err)
	}
	h.a = a
	h.srv = httptest.NewServer(a.Handler())
	// The cluster model follows the fake, as serve's does Nomad.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.model.Run(ctx) }()
	h.t.Cleanup(func() { cancel(); h.srv.Close(); <-done; a.Close() })
	live, lcancel := context.WithTimeout(ctx, 10*time.Second)
	defer lcancel()
	if _, err := a.model.WaitLive(live); err != nil {
		h.t.Fatalf("the cluster model never listed the fake nomad: %v (%s)", err, a.model.Snapshot().Sync().Err)
	}
}

// restart builds a new daemon on the same journal, as after a restart.
func (h *apiHarness) restart() {
	h.srv.Close()
	h.a.Close()
	h.start()
}

func (h *apiHarness) do(method, path, token, body string) (int, string) {
	h.t.Helper()
	req, _ := http.NewRequest(method, h.srv.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (h *apiHarness) ok(method, path, token, body string, v any) {
	h.t.Helper()
	code, out := h.do(method, path, token, body)
	if code != http.StatusOK {
		h.t.Fatalf("%s %s: %d %s", method, path, code, out)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(out), v); err != nil {
			h.t.Fatalf("%s %s: %v: %s", method, path, err, out)
		}
	}
}

func (h *apiHarness) events(kind string) []journal.Event {
	h.t.Helper()
	evs, err := h.a.journal.Events().Query(context.Background(), journal.Filter{Kind: kind})
	if err != nil {
		h.t.Fatal(err)
	}
	return evs
}

func TestAPIRolesOnWrites(t *testing.T) {
	h := newAPIHarness(t)
	scale := `{"service":"default/demo/web","to":3,"reason":"test"}`
	for _, c := range []struct {
		method, path, token, body string
		want                      int
	}{
		{"GET", "/v1/policies", "", "", 401},
		{"GET", "/v1/policies", "bogus", "", 401},
		{"POST", "/v1/scale", "", scale, 401},
		{"POST", "/v1/scale", "view", scale, 403},
		{"POST", "/v1/policies/demo/pause", "view", "", 403},
		{"POST", "/v1/policies/demo/resume", "view", "", 403},
		{"POST", "/v1/hosts/bu-a-1/drain", "view", "", 403},
		{"POST", "/v1/reload", "op", "", 403},
		{"GET", "/v1/policies", "view", "", 200},
		{"GET", "/v1/openapi.yaml", "", "", 200},
	} {
		code, body := h.do(c.method, c.path, c.token, c.body)
		if code != c.want {
			t.Errorf("%s %s with %q: %d, want %d: %s", c.method, c.path, c.token, code, c.want, body)
			continue
		}
		if code >= 400 {
			var e apiError
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Errorf("%s %s: not the API's error shape: %s", c.method, c.path, body)
			}
		}
	}
	if len(h.nomad.scales) != 0 || len(h.events("")) != 0 {
		t.Fatalf("refused writes changed something: scales %v, events %d", h.nomad.scales, len(h.events("")))
	}
}

func TestAPIManualScaleIsJournaledWithTheTokenName(t *testing.T) {
	h := newAPIHarness(t)
	for _, bad := range []string{
		`{"service":"default/demo/web","to":3}`,
		`{"service":"default/demo/web","to":3,"by":1,"reason":"x"}`,
		`{"service":"demo","to":3,"reason":"x"}`,
		`{"service":"default/demo/web","to":3,"reason":"x","extra":1}`,
		`not json`,
	} {
		if code, body := h.do("POST", "/v1/scale", "op", bad); code != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", bad, code, body)
		}
	}
	if code, body := h.do("POST", "/v1/scale", "op", `{"service":"demo/web","by":-5,"reason":"x"}`); code != http.StatusUnprocessableEntity {
		t.Errorf("below zero: %d %s", code, body)
	}

	var res struct {
		Current, Desired int
		Changed          bool
		Activity         string
	}
	h.ok("POST", "/v1/scale", "op", `{"service":"default/demo/web","to":4,"reason":"hot topic on the front page"}`, &res)
	if res.Current != 2 || res.Desired != 4 || !res.Changed || res.Activity == "" {
		t.Fatalf("scale to 4: %+v", res)
	}
	h.ok("POST", "/v1/scale", "op", `{"service":"demo/web","by":1,"reason":"one more"}`, &res)
	if res.Current != 4 || res.Desired != 5 {
		t.Fatalf("scale by 1: %+v", res)
	}
	if got := h.nomad.scales; len(got) != 2 || got[0] != 4 || got[1] != 5 {
		t.Fatalf("nomad got counts %v, want [4 5]", got)
	}
	scales := h.events(journal.KindScale)
	if len(scales) != 2 {
		t.Fatalf("want 2 scale events, got %d", len(scales))
	}
	for _, ev := range append(scales, h.events(journal.KindDecision)...) {
		if ev.Actor != "oncall" || ev.Subject != "default/demo/web" {
			t.Errorf("%s event by %q about %q, want oncall and the service", ev.Kind, ev.Actor, ev.Subject)
		}
	}
	// The cooldown runs from the manual scaling.
	if last := h.a.scaler.LastScale(policiesTarget()); !last.Equal(scales[1].Time) && last.Before(scales[0].Time) {
		t.Errorf("the scaler's last scaling is %s, want the manual one", last)
	}

	// The activities list shows both, with their phases.
	var page activitiesPage
	h.ok("GET", "/v1/activities", "view", "", &page)
	if len(page.Activities) != 2 {
		t.Fatalf("want 2 activities, got %+v", page)
	}
	act := page.Activities[0]
	if act.ID != scales[0].Activity || act.Status != "scaled" || act.Actor != "oncall" || act.From != 2 || act.To != 4 || len(act.Phases) != 2 {
		t.Fatalf("first activity: %+v", act)
	}
	var one Activity
	h.ok("GET", "/v1/activities/"+act.ID, "view", "", &one)
	if one.ID != act.ID || len(one.Phases) != 2 {
		t.Fatalf("GET activity: %+v", one)
	}
	if code, _ := h.do("GET", "/v1/activities/act-nope", "view", ""); code != http.StatusNotFound {
		t.Errorf("unknown activity: %d", code)
	}
	// A page at a time.
	h.ok("GET", "/v1/activities?limit=1", "view", "", &page)
	if len(page.Activities) != 1 || page.Next == "" {
		t.Fatalf("limit 1: %+v", page)
	}
	h.ok("GET", "/v1/activities?limit=1&cursor="+page.Next, "view", "", &page)
	if len(page.Activities) != 1 || page.Activities[0].ID != scales[1].Activity {
		t.Fatalf("second page: %+v", page)
	}
	// The journal filters by service.
	var evs eventsPage
	h.ok("GET", "/v1/events?service=default/demo/web&kind=scale", "view", "", &evs)
	if len(evs.Events) != 2 {
		t.Fatalf("events by service: %+v", evs)
	}
}

func policiesTarget() policies.Target {
	return policies.Target{Namespace: "default", Job: "demo", Group: "web"}
}

func TestAPIPauseAndResumeSurviveARestart(t *testing.T) {
	h := newAPIHarness(t)
	if code, _ := h.do("POST", "/v1/policies/nope/pause", "op", ""); code != http.StatusNotFound {
		t.Fatalf("pausing an unknown policy: %d", code)
	}
	var pr pauseResponse
	h.ok("POST", "/v1/policies/demo/pause", "op", `{"reason":"maintenance window"}`, &pr)
	if !pr.Paused || !pr.Changed || pr.Pause == nil || pr.Pause.By != "oncall" {
		t.Fatalf("pause: %+v", pr)
	}
	h.ok("POST", "/v1/policies/demo/pause", "op", "", &pr)
	if pr.Changed {
		t.Fatalf("a second pause changed something: %+v", pr)
	}
	if evs := h.events(scalerKindPaused); len(evs) != 1 || evs[0].Actor != "oncall" {
		t.Fatalf("pause events: %+v", evs)
	}
	// The scaler skips the paused policy: no decision is journaled.
	h.a.scaler.Evaluate(context.Background(), policiesTarget(), scalerTrigger())
	if evs := h.events(journal.KindDecision); len(evs) != 0 {
		t.Fatalf("a paused policy was evaluated: %+v", evs)
	}

	h.restart()
	var list policiesPage
	h.ok("GET", "/v1/policies", "view", "", &list)
	if len(list.Policies) != 1 || list.Policies[0].Paused == nil || list.Policies[0].Paused.Reason != "maintenance window" {
		t.Fatalf("after a restart the pause is gone: %+v", list)
	}
	h.ok("POST", "/v1/policies/demo/resume", "op", "", &pr)
	if pr.Paused || !pr.Changed {
		t.Fatalf("resume: %+v", pr)
	}
	h.restart()
	list = policiesPage{}
	h.ok("GET", "/v1/policies", "view", "", &list)
	if list.Policies[0].Paused != nil {
		t.Fatalf("after resume and restart the policy is paused: %+v", list)
	}
}

func TestAPIReadsAndValidation(t *testing.T) {
	h := newAPIHarness(t)
	var detail struct {
		policySummary
		Spec json.RawMessage
	}
	h.ok("GET", "/v1/policies/demo", "view", "", &detail)
	if detail.Name != "demo" || detail.Service != "default/demo/web" || !strings.Contains(string(detail.Spec), `"+50%"`) {
		t.Fatalf("policy: %+v", detail)
	}
	if code, _ := h.do("GET", "/v1/policies/nope", "view", ""); code != http.StatusNotFound {
		t.Errorf("unknown policy: %d", code)
	}
	// The dry run reads Nomad; Prometheus is down, so the checks say so.
	var ev struct {
		Policy string
		Group  *struct{ Count int }
		Checks []struct {
			DataError string `json:"data_error"`
		}
	}
	h.ok("GET", "/v1/policies/demo/evaluation", "view", "", &ev)
	if ev.Policy != "demo" || ev.Group == nil || ev.Group.Count != 2 {
		t.Fatalf("evaluation: %+v", ev)
	}

	var v validation
	h.ok("POST", "/v1/policies/validate?name=new.yaml", "view", "apiVersion: spillway/v1\nkind: ScalingPolicy\nname: x\nbogus: 1\n", &v)
	if v.Valid || len(v.Errors) == 0 || !strings.Contains(strings.Join(v.Errors, "\n"), "new.yaml:4:1: bogus: unknown key") {
		t.Fatalf("validation of a broken policy: %+v", v)
	}
	h.ok("POST", "/v1/policies/validate", "view", alertPolicy, &v)
	if !v.Valid || len(v.Policies) != 1 || v.Policies[0] != "demo" {
		t.Fatalf("validation of a good policy: %+v", v)
	}
	if h.a.Policies().Len() != 1 {
		t.Fatal("validation loaded something")
	}
	big := strings.Repeat("#", maxPolicyBody+1)
	if code, _ := h.do("POST", "/v1/policies/validate", "view", big); code != http.StatusRequestEntityTooLarge {
		t.Errorf("a body over the limit: %d", code)
	}

	// No pools configured: empty data, not errors.
	var report struct{ Pools []any }
	h.ok("GET", "/v1/pools", "view", "", &report)
	var loans loansPage
	h.ok("GET", "/v1/pools/loans", "view", "", &loans)
	var cb chargebackView
	h.ok("GET", "/v1/pools/chargeback?from=2026-11-01T00:00:00Z", "view", "", &cb)
	if report.Pools == nil || len(report.Pools) != 0 || len(loans.Loans) != 0 || cb.Total != 0 {
		t.Fatalf("pools without configuration: %+v %+v %+v", report, loans, cb)
	}
	if code, _ := h.do("GET", "/v1/pools/chargeback?from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z", "view", ""); code != http.StatusBadRequest {
		t.Errorf("from after to: %d", code)
	}

	// Hosts: pool, tier and spillway meta only.
	var hosts hostsPage
	h.ok("GET", "/v1/hosts", "view", "", &hosts)
	if len(hosts.Hosts) != 1 || hosts.Hosts[0].Name != "bu-a-1" || hosts.Hosts[0].Meta["spillway.tier"] != "own" || hosts.Hosts[0].Meta["private"] != "" {
		t.Fatalf("hosts: %+v", hosts)
	}
	var host hostDetail
	h.ok("GET", "/v1/hosts/1111aaaa", "view", "", &host)
	if host.Name != "bu-a-1" {
		t.Fatalf("host by prefix: %+v", host)
	}
	var st status
	h.ok("GET", "/v1/status", "view", "", &st)
	if st.Policies != 1 || st.Nomad != "ok" {
		t.Fatalf("status: %+v", st)
	}
}

func TestAPIDrainIsJournaled(t *testing.T) {
	h := newAPIHarness(t)
	if code, body := h.do("POST", "/v1/hosts/bu-a-1/drain", "op", `{"deadline":"soon"}`); code != http.StatusBadRequest {
		t.Fatalf("bad deadline: %d %s", code, body)
	}
	if code, _ := h.do("POST", "/v1/hosts/nope-host/drain", "op", ""); code != http.StatusNotFound {
		t.Fatalf("unknown host: %d", code)
	}
	var res drainResponse
	h.ok("POST", "/v1/hosts/bu-a-1/drain", "op", `{"deadline":"10m","reason":"kernel update"}`, &res)
	if res.Deadline != "10m0s" || len(h.nomad.drains) != 1 || !strings.Contains(h.nomad.drains[0], "spillway:oncall") ||
		!strings.Contains(h.nomad.drains[0], `"Deadline":600000000000`) {
		t.Fatalf("drain: %+v, nomad got %v", res, h.nomad.drains)
	}
	evs := h.events("host.drain")
	if len(evs) != 1 || evs[0].Actor != "oncall" || evs[0].Subject != "bu-a-1" {
		t.Fatalf("drain events: %+v", evs)
	}
	// Reload is journaled with its token too.
	h.ok("POST", "/v1/reload", "admin", "", nil)
	if evs := h.events(journal.KindReload); len(evs) != 1 || evs[0].Actor != "platform" {
		t.Fatalf("reload events: %+v", evs)
	}
}

func TestAPIRateLimitsWritesPerToken(t *testing.T) {
	h := newAPIHarness(t)
	limited := false
	for i := 0; i < writeBurst+5 && !limited; i++ {
		path := "/v1/policies/demo/pause"
		if i%2 == 1 {
			path = "/v1/policies/demo/resume"
		}
		code, body := h.do("POST", path, "burst", "")
		switch code {
		case http.StatusTooManyRequests:
			limited = strings.Contains(body, "rate_limited")
		case http.StatusOK:
		default:
			t.Fatalf("%s: %d %s", path, code, body)
		}
	}
	if !limited {
		t.Fatal("no 429 after a burst of writes")
	}
	// Another token is not affected.
	if code, _ := h.do("POST", "/v1/policies/demo/resume", "op", ""); code != http.StatusOK {
		t.Fatalf("another token was limited too: %d", code)
	}
}

// TestAPINeverShowsSecrets reads every GET route and checks that no
// configured secret (the Nomad and Prometheus tokens, the API token hashes)
// appears in an answer.
func TestAPINeverShowsSecrets(t *testing.T) {
	h := newAPIHarness(t)
	h.ok("POST", "/v1/scale", "op", `{"service":"demo/web","to":3,"reason":"x"}`, nil)
	h.ok("POST", "/v1/hosts/bu-a-1/drain", "op", "", nil)
	secrets := []string{nomadSecret, promSecret}
	for _, tok := range h.cfg.API.Tokens {
		secrets = append(secrets, tok.SHA256)
	}
	for _, path := range []string{
		"/v1/status", "/v1/policies", "/v1/policies/demo", "/v1/policies/demo/evaluation", "/v1/events?limit=1000",
		"/v1/activities", "/v1/hosts", "/v1/hosts/bu-a-1", "/v1/pools", "/v1/pools/loans", "/v1/pools/chargeback",
		"/v1/openapi.yaml", "/metrics",
	} {
		code, body := h.do("GET", path, "admin", "")
		if code != http.StatusOK {
			t.Errorf("%s: %d %s", path, code, body)
		}
		for _, s := range secrets {
			if strings.Contains(body, s) {
				t.Errorf("%s shows a secret", path)
			}
		}
	}
	if !h.nomad.tokens[nomadSecret] {
		t.Fatal("the fake Nomad never saw the ACL token: the test proves nothing")
	}
}

func TestEventStream(t *testing.T) {
	h := newAPIHarness(t)
	h.ok("POST", "/v1/policies/demo/pause", "op", "", nil) // before the stream: not sent

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	open := func(lastID string) (*bufio.Reader, func()) {
		req, _ := http.NewRequestWithContext(ctx, "GET", h.srv.URL+"/v1/events/stream", nil)
		req.Header.Set("Authorization", "Bearer view")
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("stream: %s %s", resp.Status, resp.Header.Get("Content-Type"))
		}
		return bufio.NewReader(resp.Body), func() { resp.Body.Close() }
	}
	type msg struct {
		id string
		ev journal.Event
	}
	next := func(r *bufio.Reader) msg {
		var m msg
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("reading the stream: %v", err)
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case strings.HasPrefix(line, "id: "):
				m.id = line[4:]
			case strings.HasPrefix(line, "data: "):
				if err := json.Unmarshal([]byte(line[6:]), &m.ev); err != nil {
					t.Fatal(err)
				}
			case line == "" && m.id != "":
				return m
			}
		}
	}
	r, closeStream := open("")
	h.ok("POST", "/v1/scale", "op", `{"service":"demo/web","to":3,"reason":"stream test"}`, nil)
	first := next(r)
	if first.ev.Kind != journal.KindDecision || first.ev.Actor != "oncall" {
		t.Fatalf("first streamed event: %+v", first.ev)
	}
	second := next(r)
	if second.ev.Kind != journal.KindScale || second.ev.Activity != first.ev.Activity {
		t.Fatalf("second streamed event: %+v", second.ev)
	}
	closeStream()

	// Resume after the first: the second comes again.
	r, closeStream = open(first.id)
	defer closeStream()
	if again := next(r); again.id != second.id {
		t.Fatalf("resumed at %s, want %s", again.id, second.id)
	}
	// The daemon's shutdown ends open streams.
	h.a.streams.close()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, r)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream stayed open after shutdown")
	}
}

const scalerKindPaused = scaler.KindPolicyPaused

func scalerTrigger() scaler.Trigger {
	return scaler.Trigger{Target: policiesTarget(), Cause: "test"}
}

// TestAPIGarbageCollector: /v1/gc shows what the collector refused (here,
// with no pools, nothing), and deciding on an instance needs pools.
func TestAPIGarbageCollector(t *testing.T) {
	h := newAPIHarness(t)
	var gc struct {
		Cluster   string `json:"cluster"`
		Instances []any  `json:"instances"`
	}
	h.ok("GET", "/v1/gc", "view", "", &gc)
	if gc.Cluster != h.cfg.Clouds.Cluster || len(gc.Instances) != 0 {
		t.Fatalf("GET /v1/gc: %+v", gc)
	}
	for _, c := range []struct {
		token, body string
		code        int
	}{
		{"view", `{"reason":"x"}`, 403},
		{"op", `{}`, 400},
		{"op", `{"reason":"adopted by hand"}`, 409},
	} {
		if code, body := h.do("POST", "/v1/gc/orphans/i-0123/adopt", c.token, c.body); code != c.code {
			t.Errorf("keep with %s %s: %d %s, want %d", c.token, c.body, code, body, c.code)
		}
	}
	if code, body := h.do("POST", "/v1/gc/orphans/i-0123/terminate", "op", `{"reason":"left over"}`); code != 409 || !strings.Contains(body, "no_pools") {
		t.Errorf("terminate without pools: %d %s", code, body)
	}
}
