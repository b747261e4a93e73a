package metrics

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/spillwayhq/spillway/policies"
)

// fakeProm speaks the Prometheus HTTP API (/api/v1/query and
// /api/v1/query_range) with canned answers per query.
type fakeProm struct {
	t       *testing.T
	mu      sync.Mutex
	answers map[string]answer
	auth    string // expected Authorization header; "" accepts anything
	delay   time.Duration
	last    map[string]string // form of the last request
	started time.Time         // the server's start, for /api/v1/status/runtimeinfo
}

type answer struct {
	// series: labels → points as (seconds since at, value) pairs; the
	// server turns offsets into timestamps relative to the request's end.
	series []fakeSeries
	// errType and errMsg make the answer an API error.
	errType, errMsg string
	status          int
	scalar          *float64
	warnings        []string
}

type fakeSeries struct {
	labels map[string]string
	points []fakePoint
}

type fakePoint struct {
	offset time.Duration // before the query's end (range) or time (instant)
	value  string
}

func newFakeProm(t *testing.T) (*fakeProm, *httptest.Server) {
	f := &fakeProm{t: t, answers: map[string]answer{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func promTime(s string) time.Time {
	sec, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t, _ := time.Parse(time.RFC3339Nano, s)
		return t
	}
	return time.Unix(0, int64(sec*1e9)).UTC()
}

func (f *fakeProm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.last = map[string]string{"path": r.URL.Path}
	for k := range r.Form {
		f.last[k] = r.Form.Get(k)
	}
	a, ok := f.answers[r.Form.Get("query")]
	auth, delay, started := f.auth, f.delay, f.started
	f.mu.Unlock()
	if r.URL.Path == "/api/v1/status/runtimeinfo" && !started.IsZero() {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"startTime": started.Format(time.RFC3339Nano)}})
		return
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if auth != "" && r.Header.Get("Authorization") != auth {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, "Unauthorized")
		return
	}
	if !ok {
		a = answer{errType: "bad_data", errMsg: `1:1: parse error: unexpected character: '@'`, status: http.StatusBadRequest}
	}
	if a.errType != "" {
		w.WriteHeader(a.status)
		json.NewEncoder(w).Encode(map[string]any{"status": "error", "errorType": a.errType, "error": a.errMsg})
		return
	}
	var data map[string]any
	switch r.URL.Path {
	case "/api/v1/query_range":
		end := promTime(r.Form.Get("end"))
		result := []map[string]any{}
		for _, s := range a.series {
			if s.labels == nil {
				s.labels = map[string]string{} // Prometheus writes {} for no labels
			}
			var values [][]any
			for _, p := range s.points {
				values = append(values, []any{float64(end.Add(-p.offset).UnixMilli()) / 1000, p.value})
			}
			result = append(result, map[string]any{"metric": s.labels, "values": values})
		}
		data = map[string]any{"resultType": "matrix", "result": result}
	case "/api/v1/query":
		at := promTime(r.Form.Get("time"))
		ts := float64(at.UnixMilli()) / 1000
		if a.scalar != nil {
			data = map[string]any{"resultType": "scalar", "result": []any{ts, strconv.FormatFloat(*a.scalar, 'g', -1, 64)}}
			break
		}
		result := []map[string]any{}
		for _, s := range a.series {
			if s.labels == nil {
				s.labels = map[string]string{}
			}
			result = append(result, map[string]any{"metric": s.labels, "value": []any{ts, s.points[len(s.points)-1].value}})
		}
		data = map[string]any{"resultType": "vector", "result": result}
	default:
		http.NotFound(w, r)
		return
	}
	body := map[string]any{"status": "success", "data": data}
	if len(a.warnings) > 0 {
		body["warnings"] = a.warnings
	}
	json.NewEncoder(w).Encode(body)
}

func (f *fakeProm) set(query string, a answer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[query] = a
}

func (f *fakeProm) lastForm() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

var at = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func pts(offsets ...time.Duration) []fakePoint {
	var out []fakePoint
	for i, o := range offsets {
		out = append(out, fakePoint{offset: o, value: strconv.Itoa(100 + i)})
	}
	return out
}

func TestPrometheusQuery(t *testing.T) {
	f, srv := newFakeProm(t)
	const rate = `sum(rate(spillway_demo_requests_total[30s]))`
	f.set(rate, answer{series: []fakeSeries{{points: pts(30*time.Second, 20*time.Second, 10*time.Second, 0)}}})
	f.set("stopped", answer{series: []fakeSeries{{labels: map[string]string{"job": "demo"}, points: pts(3*time.Minute, 2*time.Minute+10*time.Second)}}})
	f.set("per_instance", answer{series: []fakeSeries{
		{labels: map[string]string{"instance": "a:1"}, points: pts(0)},
		{labels: map[string]string{"instance": "b:1"}, points: pts(0)},
	}})
	f.set("absent", answer{})
	f.set("nan", answer{series: []fakeSeries{{points: []fakePoint{{0, "NaN"}}}}})
	f.set("inf", answer{series: []fakeSeries{{points: []fakePoint{{0, "+Inf"}}}}})
	f.set("warned", answer{series: []fakeSeries{{points: pts(0)}}, warnings: []string{"PromQL info: metric might not be a counter"}})

	var logs bytes.Buffer
	p, err := NewPrometheus(PrometheusOptions{URL: srv.URL, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		query   string
		value   float64
		time    time.Time
		wantErr func(error) bool
		errText string
	}{
		{query: rate, value: 103, time: at},
		{query: "warned", value: 100, time: at},
		{query: "stopped", wantErr: IsStale, errText: "stale data: newest sample is 2m10s old (at 2026-06-01T11:57:50Z), stale after 1m0s"},
		{query: "per_instance", wantErr: IsCardinality, errText: `expected one series, got 2 ({instance="a:1"}, {instance="b:1"}); aggregate the query`},
		{query: "absent", wantErr: func(err error) bool { return errors.Is(err, ErrNoData) }, errText: "no series"},
		{query: "nan", wantErr: func(err error) bool { var e *NotNumberError; return errors.As(err, &e) }, errText: "not a number: NaN"},
		{query: "inf", wantErr: func(err error) bool { var e *NotNumberError; return errors.As(err, &e) }, errText: "+Inf"},
		{query: "sum(@)", wantErr: func(err error) bool { return errors.Is(err, policies.ErrQueryFailed) }, errText: `prometheus refused the query "sum(@)": bad_data: 1:1: parse error`},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			samples, err := p.Query(context.Background(), tt.query, at)
			if err == nil {
				var s Sample
				s, err = One(samples, at, time.Minute)
				if err == nil {
					if tt.wantErr != nil {
						t.Fatalf("got %v, want an error", s)
					}
					if s.Value != tt.value || !s.Time.Equal(tt.time) {
						t.Fatalf("got %v at %s, want %v at %s", s.Value, s.Time, tt.value, tt.time)
					}
					return
				}
			}
			if tt.wantErr == nil || !tt.wantErr(err) {
				t.Fatalf("unexpected error %v", err)
			}
			if !strings.Contains(err.Error(), tt.errText) {
				t.Errorf("error %q does not contain %q", err, tt.errText)
			}
		})
	}

	if !strings.Contains(logs.String(), "metric might not be a counter") {
		t.Errorf("query warning not logged: %q", logs.String())
	}

	// The range covers the look back and ends at the query time.
	if _, err := p.Query(context.Background(), rate, at); err != nil {
		t.Fatal(err)
	}
	form := f.lastForm()
	if form["path"] != "/api/v1/query_range" || !promTime(form["end"]).Equal(at) ||
		!promTime(form["start"]).Equal(at.Add(-5*time.Minute)) || form["step"] != "10" {
		t.Errorf("range request %v", form)
	}
	if form["timeout"] == "" {
		t.Errorf("no server-side timeout sent: %v", form)
	}
}

func TestPrometheusInstant(t *testing.T) {
	f, srv := newFakeProm(t)
	f.set("up", answer{series: []fakeSeries{{labels: map[string]string{"job": "demo"}, points: pts(0)}}})
	two := 2.0
	f.set("scalar(1+1)", answer{scalar: &two})
	p, err := NewPrometheus(PrometheusOptions{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Instant(context.Background(), "up", at)
	if err != nil || len(got) != 1 || got[0].Value != 100 || got[0].Labels["job"] != "demo" || !got[0].Time.Equal(at) {
		t.Fatalf("vector: %v %v", got, err)
	}
	got, err = p.Instant(context.Background(), "scalar(1+1)", at)
	if err != nil || len(got) != 1 || got[0].Value != 2 {
		t.Fatalf("scalar: %v %v", got, err)
	}
	if _, err := p.Instant(context.Background(), "nope(", at); err == nil {
		t.Fatal("bad query returned no error")
	}
}

func TestPrometheusAuth(t *testing.T) {
	tests := []struct {
		name  string
		opts  PrometheusOptions
		want  string
		fails bool
	}{
		{"basic", PrometheusOptions{Username: "ops", Password: "s3cret"}, "Basic b3BzOnMzY3JldA==", false},
		{"bearer", PrometheusOptions{BearerToken: "tok"}, "Bearer tok", false},
		{"wrong token", PrometheusOptions{BearerToken: "other"}, "Bearer tok", true},
		{"no auth", PrometheusOptions{}, "Bearer tok", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newFakeProm(t)
			f.auth = tt.want
			f.set("up", answer{series: []fakeSeries{{points: pts(0)}}})
			tt.opts.URL = srv.URL
			p, err := NewPrometheus(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.Query(context.Background(), "up", at)
			if (err != nil) != tt.fails {
				t.Fatalf("error %v, want failure %v", err, tt.fails)
			}
			if tt.fails && !strings.Contains(err.Error(), "401") {
				t.Errorf("error %q does not mention 401", err)
			}
		})
	}
}

func TestPrometheusTimeout(t *testing.T) {
	f, srv := newFakeProm(t)
	f.delay = 2 * time.Second
	f.set("up", answer{series: []fakeSeries{{points: pts(0)}}})
	p, err := NewPrometheus(PrometheusOptions{URL: srv.URL, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = p.Query(context.Background(), "up", at)
	if err == nil || !strings.Contains(err.Error(), "timed out after 100ms") {
		t.Fatalf("got %v, want a timeout", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("timeout took %s", d)
	}
	// A cancelled context stops the query too.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Query(ctx, "up", at); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v", err)
	}
}

func TestNewPrometheusOptions(t *testing.T) {
	for _, o := range []PrometheusOptions{
		{URL: ""},
		{URL: "127.0.0.1:9090"},
		{URL: "ftp://127.0.0.1"},
		{URL: "http://127.0.0.1:9090", Username: "a", BearerToken: "b"},
	} {
		if _, err := NewPrometheus(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func TestOne(t *testing.T) {
	tests := []struct {
		name    string
		samples []Sample
		stale   time.Duration
		err     string
	}{
		{"fresh", []Sample{{Value: 1, Time: at}}, time.Minute, ""},
		{"exactly at the limit", []Sample{{Value: 1, Time: at.Add(-time.Minute)}}, time.Minute, ""},
		{"just stale", []Sample{{Value: 1, Time: at.Add(-time.Minute - time.Millisecond)}}, time.Minute, "stale data"},
		{"no timestamp", []Sample{{Value: 1}}, time.Minute, "stale data"},
		{"age check off", []Sample{{Value: 1}}, 0, ""},
		{"none", nil, time.Minute, "no series"},
		{"NaN", []Sample{{Value: math.NaN(), Time: at}}, time.Minute, "not a number"},
		{"a stopped series is ignored next to a fresh one", []Sample{{Labels: map[string]string{"v": "old"}, Value: 1, Time: at.Add(-3 * time.Minute)}, {Labels: map[string]string{"v": "new"}, Value: 2, Time: at}}, time.Minute, ""},
		{"all stopped: the newest is still stale, and several", []Sample{{Value: 1, Time: at.Add(-3 * time.Minute)}, {Value: 2, Time: at.Add(-2 * time.Minute)}}, time.Minute, "expected one series, got 2"},
		{"many", []Sample{{Labels: map[string]string{"a": "1"}}, {Labels: map[string]string{"a": "2"}}, {}, {}, {}}, time.Minute, `got 5 ({a="1"}, {a="2"}, {}, and 2 more)`},
	}
	for _, tt := range tests {
		_, err := One(tt.samples, at, tt.stale)
		if (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%s: got %v, want %q", tt.name, err, tt.err)
		}
	}
}

// TestPrometheusSaysWhyThereIsNoData tells the three failures apart: a
// Prometheus that does not answer, a query it refuses, and no series, which
// is "no data yet" while Prometheus has been up for less than the query's
// range.
func TestPrometheusSaysWhyThereIsNoData(t *testing.T) {
	f, srv := newFakeProm(t)
	const q = `sum(rate(spillway_demo_requests_total[5m]))`
	f.set(q, answer{})
	clock := clockwork.NewFakeClockAt(at)
	p, err := NewPrometheus(PrometheusOptions{URL: srv.URL, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.started = at.Add(-90 * time.Second)
	f.mu.Unlock()
	_, err = p.Query(context.Background(), q, at)
	want := fmt.Sprintf("prometheus started at %s, and the query %q needs 5m0s of its data: there is some from %s",
		at.Add(-90*time.Second).UTC().Format(time.TimeOnly), q, at.Add(-90*time.Second+5*time.Minute).UTC().Format(time.TimeOnly))
	if !errors.Is(err, policies.ErrNotYet) || !strings.Contains(err.Error(), want) {
		t.Fatalf("no series 90s after Prometheus started, for a 5m range: %v, want ErrNotYet saying %q", err, want)
	}
	// Said the same way a moment later (the journal notes a hold once).
	if _, again := p.Query(context.Background(), q, at.Add(20*time.Second)); again == nil || again.Error() != err.Error() {
		t.Fatalf("20s later the same wait reads %v, not %v", again, err)
	}
	// Up for longer than the range: no series is a missing series, once
	// the cached start time (startedTTL) is read again.
	f.mu.Lock()
	f.started = at.Add(-10 * time.Minute)
	f.mu.Unlock()
	clock.Advance(startedTTL - time.Second)
	if _, err := p.Query(context.Background(), q, at); !errors.Is(err, policies.ErrNotYet) {
		t.Fatalf("within %s of reading the start time: %v, want the cached start (ErrNotYet)", startedTTL, err)
	}
	clock.Advance(time.Second)
	samples, err := p.Query(context.Background(), q, at)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := One(samples, at, time.Minute); !errors.Is(err, ErrNoData) || errors.Is(err, policies.ErrNotYet) {
		t.Fatalf("no series 10m after Prometheus started: %v, want ErrNoData", err)
	}
	// Nobody answers.
	srv.Close()
	if _, err := p.Query(context.Background(), q, at); !errors.Is(err, policies.ErrUnreachable) {
		t.Fatalf("a closed Prometheus: %v, want ErrUnreachable", err)
	}
}

func TestQueryRange(t *testing.T) {
	for q, want := range map[string]time.Duration{
		`sum(rate(x[30s]))`:                      30 * time.Second,
		`max_over_time(rate(x[1m])[1h:30s]) / y`: time.Hour,
		`sum(x) + rate(y[5m]) - rate(z[2m])`:     5 * time.Minute,
		`up{job="a[1m]"}`:                        time.Minute, // a label value: over-estimating only waits longer
		`up`:                                     0,
	} {
		if got := QueryRange(q); got != want {
			t.Errorf("QueryRange(%q) = %s, want %s", q, got, want)
		}
	}
}
