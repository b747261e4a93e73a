package demo

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseTrace(t *testing.T) {
	tr, err := ParseTrace("t.csv", strings.NewReader("# comment\nseconds,requests_per_second\n\n0,10\n10, 20\n20,20\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		at   time.Duration
		want float64
	}{{-time.Second, 10}, {0, 10}, {5 * time.Second, 15}, {10 * time.Second, 20}, {time.Hour, 20}} {
		if got := tr.RateAt(c.at); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("RateAt(%s) = %g, want %g", c.at, got, c.want)
		}
	}
	// 0-10s ramps 10→20 (150 requests), 10-20s holds 20 (200 requests).
	if got := tr.Requests(0, 20*time.Second); math.Abs(got-350) > 1e-9 {
		t.Errorf("Requests(0,20s) = %g, want 350", got)
	}
	if got := tr.Requests(5*time.Second, 15*time.Second); math.Abs(got-(87.5+100)) > 1e-9 {
		t.Errorf("Requests(5s,15s) = %g, want 187.5", got)
	}
}

func TestParseTraceErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"0,1\n1\n", "t.csv:2: want 2 columns"},
		{"0,1\nx,2\n", `t.csv:2: seconds: want a number, got "x"`},
		{"0,1\n1,fast\n", `t.csv:2: requests_per_second: want a number, got "fast"`},
		{"0,1\n0,2\n", "t.csv:2: seconds: must increase"},
		{"0,-1\n", "t.csv:1: requests_per_second: must be a non-negative number"},
		{"# only a comment\n", "t.csv: the trace has no rows"},
		{"0,1\nseconds,requests_per_second\n", `t.csv:2: seconds: want a number, got "seconds"`},
	} {
		_, err := ParseTrace("t.csv", strings.NewReader(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.in, err, c.want)
		}
	}
}

func TestShippedTraces(t *testing.T) {
	for _, name := range []string{"hot-topic", "gala", "diurnal"} {
		tr, err := ReadTraceFile("../../testdata/traces/" + name + ".csv")
		if err != nil {
			t.Fatal(err)
		}
		lo, hi := math.Inf(1), 0.0
		for _, p := range tr.Points {
			lo, hi = min(lo, p.Rate), max(hi, p.Rate)
		}
		t.Logf("%s: %s long, %g to %g req/s (%.1fx)", name, tr.Duration(), lo, hi, hi/lo)
		switch name {
		case "hot-topic":
			// 10-20x within 5 minutes of the start of the rise.
			base := tr.RateAt(0)
			if peak := tr.RateAt(5 * time.Minute); peak < 10*base || peak > 20*base {
				t.Errorf("hot-topic reaches %gx within 5 minutes, want 10-20x", peak/base)
			}
		case "gala":
			if r := hi / lo; math.Abs(r-3) > 0.01 {
				t.Errorf("gala ramps %gx, want 3x", r)
			}
		case "diurnal":
			if tr.Duration() != 24*time.Hour {
				t.Errorf("diurnal lasts %s, want 24h", tr.Duration())
			}
		}
	}
}

func TestAppShedsAboveCapacity(t *testing.T) {
	a, err := NewApp(AppConfig{Capacity: 10, BaseLatency: time.Millisecond, MaxQueue: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// All requests arrive at the same instant: 20 of them against 10 req/s
	// with a 300ms queue. The burst (1) and 3 queued ones (waiting 100,
	// 200 and 300ms) are served, the other 16 shed.
	t0 := time.Now()
	a.now = func() time.Time { return t0 }
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(srv.URL + "/")
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[200] != 4 || codes[503] != 16 {
		t.Fatalf("status codes %v: want 4 served and 16 shed", codes)
	}
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body strings.Builder
	buf := make([]byte, 1<<16)
	for {
		n, err := resp.Body.Read(buf)
		body.Write(buf[:n])
		if err != nil {
			break
		}
	}
	for _, m := range []string{`spillway_demo_requests_total{code="503"}`, "spillway_demo_request_duration_seconds_bucket", "spillway_demo_requests_in_flight 0"} {
		if !strings.Contains(body.String(), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
}

func TestGeneratorSendsWhatTheTraceAsks(t *testing.T) {
	var mu sync.Mutex
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
	}))
	defer srv.Close()
	tr, err := ParseTrace("t", strings.NewReader("0,100\n10,300\n"))
	if err != nil {
		t.Fatal(err)
	}
	// 10 trace seconds from 100 to 300 req/s is 2000 requests; at speed 10
	// that is played in one second, so 200 requests, halved by the scale.
	g, err := NewGenerator(LoadConfig{Trace: tr, Speed: 10, Scale: 0.5, Targets: func() []string { return []string{srv.URL} }})
	if err != nil {
		t.Fatal(err)
	}
	stats, err := g.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if stats.Sent != 100 || stats.OK != 100 || hits != 100 {
		t.Fatalf("sent %d, ok %d, server saw %d; want 100", stats.Sent, stats.OK, hits)
	}
}
