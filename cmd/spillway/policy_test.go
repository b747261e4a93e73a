package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"
)

func runCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRootCmd()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err = root.Execute()
	return out.String(), errb.String(), err
}

func TestPolicyCheck(t *testing.T) {
	examples, _ := filepath.Glob("../../policies/examples/*.yaml")
	out, _, err := runCmd(t, append([]string{"policy", "check"}, examples...)...)
	if err != nil || !strings.Contains(out, "ok: 3 policies in 3 files") {
		t.Fatalf("examples: %v\n%s", err, out)
	}
	out, _, err = runCmd(t, "policy", "check", "../../policies/examples")
	if err != nil || !strings.Contains(out, "ok: 3 policies") {
		t.Fatalf("examples dir: %v\n%s", err, out)
	}

	_, stderr, err := runCmd(t, "policy", "check", "../../policies/testdata/broken")
	if err == nil {
		t.Fatal("broken files passed")
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if !strings.Contains(err.Error(), fmt.Sprintf("%d problems in 4 of 4 files", len(lines))) {
		t.Errorf("summary %q for %d printed errors", err, len(lines))
	}
	for _, want := range []string{
		`bounds-and-types.yaml:10:1: max: must be at least min (10), got 3`,
		`bounds-and-types.yaml:14:3: cooldown.scale_dwon: unknown key (did you mean "scale_down"?)`,
		`checks.yaml:16:5: checks[0].query: is required and must not be empty`,
		`checks.yaml:32:11: checks[2].schedule.windows[0].cron: invalid cron expression`,
		`syntax.yaml:8:1: mapping values are not allowed`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("missing %q in:\n%s", want, stderr)
		}
	}

	if _, _, err := runCmd(t, "policy", "check", "no/such/file.yaml"); err == nil {
		t.Error("missing file passed")
	}
	if _, _, err := runCmd(t, "policy", "check"); err == nil {
		t.Error("no arguments passed")
	}
}

// TestPlan runs plan against fake Prometheus and Nomad servers that speak
// their real HTTP APIs: 1500 req/s on two instances must scale out.
func TestPlan(t *testing.T) {
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		q := r.Form.Get("query")
		end, _ := strconv.ParseFloat(r.Form.Get("end"), 64)
		var result []map[string]any
		value := map[string]string{
			"sum(rate(spillway_demo_requests_total[30s]))": "1500",
			"sum(rate(spillway_demo_requests_total[1m]))":  "1500",
			"sum(rate(spillway_demo_requests_total[5m]))":  "1500",
			"avg(spillway_demo_requests_in_flight)":        "2",
		}[q]
		if value != "" {
			result = append(result, map[string]any{"metric": map[string]string{}, "values": [][]any{{end - 10, value}, {end, value}}})
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"resultType": "matrix", "result": result}})
	}))
	defer prom.Close()
	job := nomad.NewServiceJob("demo", "demo", "global", 50)
	tg := nomad.NewTaskGroup("web", 2)
	task := nomad.NewTask("app", "raw_exec")
	cpu, mem := 250, 64
	task.Resources = &nomad.Resources{CPU: &cpu, MemoryMB: &mem}
	job.AddTaskGroup(tg.AddTask(task))
	nmd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(job)
	}))
	defer nmd.Close()

	out, stderr, err := runCmd(t, "plan", "--policies", "../../policies/examples", "--prometheus", prom.URL, "--nomad", nmd.URL, "-o", "json")
	if err != nil {
		t.Fatalf("plan: %v\n%s", err, stderr)
	}
	var got struct {
		Time    time.Time
		Results []struct {
			Policy   string
			Decision struct {
				Direction string
				Current   int
				Desired   int
				Reason    string
			}
			Capacity struct {
				Allocations int `json:"allocations"`
				CPUMHz      int `json:"cpu_mhz"`
				MemoryMB    int `json:"memory_mb"`
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	found := false
	for _, r := range got.Results {
		if r.Policy != "demo-hot-topic" {
			continue
		}
		found = true
		d := r.Decision
		// 1500 req/s at 80 per instance: 19 instances.
		if d.Direction != "up" || d.Current != 2 || d.Desired != 19 || !strings.Contains(d.Reason, "request-rate wants 19") {
			t.Errorf("decision %+v", d)
		}
		if r.Capacity.Allocations != 17 || r.Capacity.CPUMHz != 17*250 || r.Capacity.MemoryMB != 17*64 {
			t.Errorf("capacity %+v", r.Capacity)
		}
	}
	if !found {
		t.Fatalf("no demo-hot-topic result in %s", out)
	}

	out, _, err = runCmd(t, "plan", "--policies", "../../policies/examples", "--prometheus", prom.URL, "--nomad", nmd.URL)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"demo-hot-topic  default/demo/web", "decision: UP 2 → 19, +17 allocations, +4250 MHz CPU, +1088 MB memory", "CHECK", "request-rate  1500"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if _, _, err := runCmd(t, "plan", "--policies", "../../policies/testdata/broken", "--prometheus", prom.URL); err == nil {
		t.Error("plan with broken policies succeeded")
	}
	if _, _, err := runCmd(t, "plan", "--policies", "../../policies/examples", "-o", "yaml"); err == nil {
		t.Error("unknown output accepted")
	}
}
