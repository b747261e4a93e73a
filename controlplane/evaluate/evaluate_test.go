package evaluate

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/controlplane/metrics"
	"github.com/spillwayhq/spillway/policies"
)

var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// fakeSource answers queries from a map and records them.
type fakeSource struct {
	mu      sync.Mutex
	answers map[string][]metrics.Sample
	errs    map[string]error
	queries []string
}

func (f *fakeSource) Query(_ context.Context, q string, _ time.Time) ([]metrics.Sample, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries = append(f.queries, q)
	if err := f.errs[q]; err != nil {
		return nil, err
	}
	return f.answers[q], nil
}

type fakeGroups map[policies.Target]Group

func (f fakeGroups) Group(_ context.Context, t policies.Target) (Group, error) {
	g, ok := f[t]
	if !ok {
		return Group{}, errors.New("no such group")
	}
	return g, nil
}

const (
	rateQ     = "sum(rate(spillway_demo_requests_total[30s]))"
	inflightQ = "avg(spillway_demo_requests_in_flight)"
	latencyQ  = "histogram_quantile(0.99, sum by (le) (rate(spillway_demo_request_duration_seconds_bucket[30s])))"
)

func loadHotTopic(t *testing.T) *policies.Set {
	t.Helper()
	set, err := policies.LoadFiles("../../policies/examples/hot-topic.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func TestEvaluateHotTopic(t *testing.T) {
	set := loadHotTopic(t)
	demo := policies.Target{Namespace: "default", Job: "demo", Group: "web"}
	src := &fakeSource{answers: map[string][]metrics.Sample{
		rateQ:     {{Value: 1500, Time: now.Add(-2 * time.Second)}},
		inflightQ: {{Value: 3, Time: now}},
		latencyQ:  {{Labels: map[string]string{"le": "a"}, Value: 0.1, Time: now}, {Labels: map[string]string{"le": "b"}, Value: 0.2, Time: now}},
	}}
	e := New(src, fakeGroups{demo: {Count: 2, CPUMHz: 250, MemoryMB: 64}}, func() time.Time { return now }, nil)
	res := e.EvaluateAll(context.Background(), set, nil)
	if len(res) != 1 {
		t.Fatalf("got %d results", len(res))
	}
	r := res[0]
	if r.Error != "" || r.Decision == nil {
		t.Fatalf("no decision: %s", r.Error)
	}
	d := r.Decision
	// 1500 req/s at 80 per instance needs 19.
	if d.Direction != policies.Up || d.Desired != 19 || d.Winner != "request-rate" {
		t.Fatalf("got %s %d by %s: %s", d.Direction, d.Desired, d.Winner, d.Reason)
	}
	if r.Capacity != (Capacity{Allocations: 17, CPUMHz: 17 * 250, MemoryMB: 17 * 64}) {
		t.Errorf("capacity %+v", r.Capacity)
	}
	if lat := r.Checks[2]; lat.DataError == "" || !strings.Contains(lat.DataError, "expected one series, got 2") {
		t.Errorf("latency check should report the cardinality problem: %+v", lat)
	}
	if v := r.Checks[0].Value; v == nil || *v != 1500 {
		t.Errorf("rate value %v", v)
	}
}

func TestEvaluateStaleAndFailingData(t *testing.T) {
	set := loadHotTopic(t)
	demo := policies.Target{Namespace: "default", Job: "demo", Group: "web"}
	src := &fakeSource{
		answers: map[string][]metrics.Sample{
			rateQ:     {{Value: 10, Time: now.Add(-5 * time.Minute)}}, // stale: would scale in
			inflightQ: {{Value: 1, Time: now}},
		},
		errs: map[string]error{latencyQ: errors.New("querying prometheus: connection refused")},
	}
	e := New(src, fakeGroups{demo: {Count: 10, CPUMHz: 250, MemoryMB: 64}}, func() time.Time { return now }, nil)
	r := e.Evaluate(context.Background(), set.Policies()[0], State{})
	if r.Decision == nil || r.Decision.Direction != policies.Hold || r.Decision.Desired != 10 {
		t.Fatalf("stale data must hold, got %+v", r.Decision)
	}
	if !strings.Contains(r.Checks[0].DataError, "stale data") || !strings.Contains(r.Checks[2].DataError, "connection refused") {
		t.Errorf("data errors: %q, %q", r.Checks[0].DataError, r.Checks[2].DataError)
	}
	if r.Capacity != (Capacity{}) {
		t.Errorf("hold needs no capacity, got %+v", r.Capacity)
	}
}

func TestEvaluateAlertsAndNomadFailure(t *testing.T) {
	set := loadHotTopic(t)
	src := &fakeSource{answers: map[string][]metrics.Sample{
		rateQ:     {{Value: 160, Time: now}},
		inflightQ: {{Value: 1, Time: now}},
		latencyQ:  {{Value: 0.01, Time: now}},
		`ALERTS{alertstate="firing"}`: {
			{Labels: map[string]string{"__name__": "ALERTS", "alertname": "DemoSheddingLoad", "alertstate": "firing", "severity": "page", "service": "demo"}, Value: 1, Time: now},
			{Labels: map[string]string{"alertname": "Old", "alertstate": "firing"}, Value: 1, Time: now.Add(-10 * time.Minute)},
		},
	}}
	alerts, err := FiringAlerts(context.Background(), src, now, time.Minute)
	if err != nil || len(alerts) != 1 || alerts[0].Name != "DemoSheddingLoad" || alerts[0].Labels["alertstate"] != "" {
		t.Fatalf("alerts %+v, %v", alerts, err)
	}
	demo := policies.Target{Namespace: "default", Job: "demo", Group: "web"}
	e := New(src, fakeGroups{demo: {Count: 2}}, func() time.Time { return now }, nil)
	r := e.Evaluate(context.Background(), set.Policies()[0], State{Alerts: alerts})
	if r.Decision.Direction != policies.Up || r.Decision.Desired != 3 || r.Decision.Winner != "alert:DemoSheddingLoad" {
		t.Fatalf("got %+v", r.Decision)
	}

	e = New(src, fakeGroups{}, func() time.Time { return now }, nil)
	r = e.Evaluate(context.Background(), set.Policies()[0], State{})
	if r.Decision != nil || !strings.Contains(r.Error, "no such group") {
		t.Fatalf("nomad failure: %+v", r)
	}
	if len(r.Checks) != 3 || r.Checks[0].Value == nil || *r.Checks[0].Value != 160 {
		t.Errorf("metric values missing without nomad: %+v", r.Checks)
	}
}

func TestNomadGroups(t *testing.T) {
	job := nomad.NewServiceJob("demo", "demo", "global", 50)
	tg := nomad.NewTaskGroup("web", 3)
	task := nomad.NewTask("app", "raw_exec")
	cpu, mem := 250, 64
	task.Resources = &nomad.Resources{CPU: &cpu, MemoryMB: &mem}
	side := nomad.NewTask("sidecar", "raw_exec")
	cpu2, mem2 := 50, 32
	side.Resources = &nomad.Resources{CPU: &cpu2, MemoryMB: &mem2}
	tg.AddTask(task).AddTask(side)
	job.AddTaskGroup(tg)
	var gotNS string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotNS = r.URL.Query().Get("namespace")
		if r.URL.Path != "/v1/job/demo" {
			http.Error(w, "job not found", http.StatusNotFound)
			return
		}
		w.Header().Set("X-Nomad-Index", "7")
		json.NewEncoder(w).Encode(job)
	}))
	defer srv.Close()
	cfg := nomad.DefaultConfig()
	cfg.Address = srv.URL
	c, err := nomad.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g := NewNomadGroups(c)
	got, err := g.Group(context.Background(), policies.Target{Namespace: "default", Job: "demo", Group: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if got != (Group{Count: 3, CPUMHz: 300, MemoryMB: 96}) || gotNS != "default" {
		t.Errorf("got %+v in namespace %q", got, gotNS)
	}
	if _, err := g.Group(context.Background(), policies.Target{Namespace: "default", Job: "demo", Group: "api"}); err == nil || !strings.Contains(err.Error(), `no task group "api"`) {
		t.Errorf("missing group: %v", err)
	}
	if _, err := g.Group(context.Background(), policies.Target{Namespace: "default", Job: "other", Group: "web"}); err == nil || !strings.Contains(err.Error(), `reading nomad job "other"`) {
		t.Errorf("missing job: %v", err)
	}
}
