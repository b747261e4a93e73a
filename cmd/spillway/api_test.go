package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeAPI records the requests the CLI sends and answers from a table.
type fakeAPI struct {
	mu       sync.Mutex
	requests []string
	bodies   []map[string]any
	answers  map[string]string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer tok" {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":{"code":"unauthenticated","message":"the API token is not valid"}}`)
		return
	}
	key := r.Method + " " + r.URL.Path
	f.requests = append(f.requests, key+"?"+r.URL.RawQuery)
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	f.bodies = append(f.bodies, body)
	ans, ok := f.answers[key]
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":{"code":"not_found","message":"no such thing","details":["a detail"]}}`)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, ans)
}

func TestAPICommands(t *testing.T) {
	f := &fakeAPI{answers: map[string]string{
		"POST /v1/scale":                       `{"target":{"namespace":"default","job":"demo","group":"web"},"current":2,"desired":5,"changed":true,"activity":"act-1"}`,
		"POST /v1/policies/demo/pause":         `{"policy":"demo","paused":true,"changed":true}`,
		"POST /v1/policies/demo/resume":        `{"policy":"demo","paused":false,"changed":false}`,
		"POST /v1/hosts/bu-a-1/drain":          `{"host":"bu-a-1","id":"1111","deadline":"10m0s","started":"2026-11-22T08:00:00Z"}`,
		"POST /v1/reload":                      `{"policies":3,"hash":"abcdef0123456789","changed":true}`,
		"GET /v1/pools":                        `{"at":"2026-11-22T08:00:00Z","pools":[{"pool":"bu-a","tier":"own","hosts":{"total":3,"free":1,"in_use":2,"borrowed":0},"cpu_mhz":{"total":12000,"used":2000,"free":10000},"memory_mb":{"total":1,"used":0,"free":1},"cost_per_hour":0}],"links":[{"name":"dc1-ali","bandwidth":"1Gbps","configured":"1Gbps","target_utilization":80,"carries":"800Mbps","in_use":"100Mbps","allocations":5,"pools":["ali"]}]}`,
		"GET /v1/links":                        `{"links":[{"name":"dc1-ali","bandwidth":"10Gbps","configured":"1Gbps","target_utilization":80,"carries":"8Gbps","in_use":"100Mbps","allocations":5,"pools":["ali"],"set":{"bandwidth":"10Gbps","by":"oncall","reason":"holiday","since":"2026-11-22T08:00:00Z"}}]}`,
		"POST /v1/links/dc1-ali":               `{"link":{"name":"dc1-ali","bandwidth":"10Gbps","configured":"1Gbps","target_utilization":80,"carries":"8Gbps","in_use":"0bps","allocations":0,"pools":["ali"]},"changed":true}`,
		"GET /v1/activities":                   `{"activities":[{"id":"act-1","service":"default/demo/web","direction":"up","from":2,"to":5,"status":"scaled","actor":"oncall","started":"2026-11-22T08:00:00Z","hosts":[],"phases":[]}]}`,
		"GET /v1/status":                       `{"version":"dev","policies":1,"policies_hash":"abc","paused":[{"policy":"demo","by":"oncall","since":"2026-11-22T08:00:00Z"}],"pools":0,"nomad":"ok","recent_activities":[],"services":{"demo":"default/demo/web"},"unservable":[{"target":{"namespace":"default","job":"huge","group":"app"},"business_unit":"bu-a","dimension":"size","reason":"task group app asks 8000 MHz / 64 MB per allocation; the largest offering in any pool gives 4000 MHz / 15360 MB (aws m5.xlarge)","since":"2026-11-22T08:00:00Z"}]}`,
		"GET /v1/events":                       `{"events":[{"seq":7,"time":"2026-11-22T08:00:00Z","kind":"scale","subject":"default/demo/web","actor":"oncall","message":"set the count"}]}`,
		"POST /v1/pools/shared/reclaim":        `{"pool":"shared","reclaimed":[{"host":"n2","host_name":"shared-2","tier":"shared","pool":"shared","lender":"bu-b","borrower":"bu-a","since":"2026-11-22T08:00:00Z","until":"2026-11-22T10:00:00Z","reclaim_by":"2026-11-22T09:05:00Z"}]}`,
		"POST /v1/pools/loans/shared-1/extend": `{"host":"n1","host_name":"shared-1","tier":"shared","pool":"shared","lender":"bu-b","borrower":"bu-a","since":"2026-11-22T08:00:00Z","until":"2026-11-22T11:00:00Z"}`,
		"GET /v1/pools/loans":                  `{"loans":[{"host":"n1","host_name":"shared-1","tier":"shared","pool":"shared","lender":"bu-b","borrower":"bu-a","since":"2026-11-22T08:00:00Z","until":"2026-11-22T11:00:00Z"}],"closed":[{"host":"n3","host_name":"shared-3","tier":"shared","pool":"shared","lender":"bu-b","borrower":"bu-a","since":"2026-11-22T06:00:00Z","until":"2026-11-22T08:00:00Z","returned":"2026-11-22T08:01:00Z","reason":"lease expired"}]}`,
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	t.Setenv("SPILLWAY_ADDR", srv.URL)
	t.Setenv("SPILLWAY_TOKEN", "tok")

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"scale", "default/demo/web", "--to", "5", "--reason", "launch"}, "default/demo/web: 2 -> 5 (activity act-1)"},
		{[]string{"scale", "demo/web", "--by", "-1", "--reason", "over"}, "2 -> 5"},
		{[]string{"pause", "demo", "--reason", "window"}, "policy demo is now paused"},
		{[]string{"resume", "demo"}, "policy demo was already active"},
		{[]string{"drain", "bu-a-1", "--deadline", "10m"}, "draining bu-a-1 (1111) with a 10m0s deadline"},
		{[]string{"reload"}, "3 policies in force (hash abcdef012345, changed true)"},
		{[]string{"pools"}, "bu-a"},
		{[]string{"pools"}, "dc1-ali  1Gbps      80%     800Mbps  100Mbps  5"},
		{[]string{"links"}, "oncall: holiday"},
		{[]string{"links", "set", "dc1-ali", "10Gbps", "--reason", "holiday"}, "link dc1-ali is now 10Gbps (the pool file says 1Gbps)"},
		{[]string{"activities"}, "act-1"},
		{[]string{"status"}, "paused by oncall"},
		{[]string{"status"}, "default/huge/app"},
		{[]string{"status"}, "the largest offering in any pool gives 4000 MHz / 15360 MB (aws m5.xlarge)"},
		{[]string{"events", "--kind", "scale"}, "set the count"},
		{[]string{"activities", "-o", "json"}, `"activities":[`},
		{[]string{"pools", "reclaim", "shared", "--count", "1", "--reason", "rack", "--deadline", "5m"}, "shared-2"},
		{[]string{"pools", "extend", "shared-1", "--lease", "3h", "--reason", "late batch"}, "the lease of shared-1 (lent by bu-b to bu-a) now ends at"},
		{[]string{"pools", "loans", "--closed", "24h"}, "lease expired"},
	} {
		out, _, err := runCmd(t, c.args...)
		if err != nil || !strings.Contains(out, c.want) {
			t.Errorf("%v: %v\n%s\nwant %q", c.args, err, out, c.want)
		}
	}
	bodies := f.bodies
	if bodies[0]["to"] != 5.0 || bodies[0]["reason"] != "launch" || bodies[1]["by"] != -1.0 || bodies[2]["reason"] != "window" {
		t.Errorf("request bodies: %v", bodies[:3])
	}
	for i, r := range f.requests {
		switch {
		case strings.HasPrefix(r, "POST /v1/pools/shared/reclaim") && (bodies[i]["count"] != 1.0 || bodies[i]["deadline"] != "5m0s" || bodies[i]["reason"] != "rack"):
			t.Errorf("reclaim body: %v", bodies[i])
		case strings.HasPrefix(r, "POST /v1/pools/loans/shared-1/extend") && (bodies[i]["lease"] != "3h0m0s" || bodies[i]["reason"] != "late batch"):
			t.Errorf("extend body: %v", bodies[i])
		case strings.HasPrefix(r, "GET /v1/pools/loans") && !strings.Contains(r, "closed_since="):
			t.Errorf("loans --closed asked %s", r)
		}
	}
	if f.requests[len(f.requests)-2] == "" || !strings.Contains(strings.Join(f.requests, " "), "kind=scale") {
		t.Errorf("requests: %v", f.requests)
	}

	// Refused before sending: no reason, both or neither of --to and --by.
	n := len(f.requests)
	for _, args := range [][]string{
		{"scale", "demo/web", "--to", "3"},
		{"scale", "demo/web", "--to", "3", "--by", "1", "--reason", "x"},
		{"scale", "demo/web", "--reason", "x"},
	} {
		if _, _, err := runCmd(t, args...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	if len(f.requests) != n {
		t.Errorf("a refused command sent a request")
	}
	// API errors show their message and details.
	_, _, err := runCmd(t, "pause", "nope")
	if err == nil || !strings.Contains(err.Error(), "no such thing (404 not_found)") || !strings.Contains(err.Error(), "a detail") {
		t.Errorf("an API error: %v", err)
	}
	t.Setenv("SPILLWAY_TOKEN", "")
	if _, _, err := runCmd(t, "status"); err == nil || !strings.Contains(err.Error(), "SPILLWAY_TOKEN") {
		t.Errorf("no token: %v", err)
	}
	if _, _, err := runCmd(t, "status", "--token", "wrong"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("a bad token: %v", err)
	}
}
