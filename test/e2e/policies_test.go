package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/evaluate"
	"github.com/spillwayhq/spillway/internal/lab"
	"github.com/spillwayhq/spillway/internal/lab/labtest"
	"github.com/spillwayhq/spillway/policies"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func metricValue(t testing.TB, url, name string) (float64, bool) {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v, true
			}
		}
	}
	return 0, false
}

func waitMetric(t *testing.T, url, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		v, ok := metricValue(t, url, name)
		if ok && v == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v (found %v), want %v", name, v, ok, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestServeReloadsOnSIGHUP breaks a policy file under a running `spillway
// serve`, sends SIGHUP, and checks that the old policies stay in force,
// the failure is reported, and a fixed file loads on the next SIGHUP.
func TestServeReloadsOnSIGHUP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	policyDir := filepath.Join(dir, "policies")
	if err := os.Mkdir(policyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, "../../policies/examples/hot-topic.yaml", filepath.Join(policyDir, "hot-topic.yaml"))
	addr := freeAddr(t)
	cfg := filepath.Join(dir, "spillway.yaml")
	if err := os.WriteFile(cfg, []byte("listen: "+addr+"\npolicies:\n  dir: policies\njournal:\n  path: journal.db\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(labtest.Spillway(t), "serve", "--config", cfg)
	var logs lockedBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := "http://" + addr
	waitMetric(t, url, "spillway_config_last_reload_successful", 1)
	waitMetric(t, url, "spillway_policies", 1)

	broken := filepath.Join(policyDir, "broken.yaml")
	if err := os.WriteFile(broken, []byte("apiVersion: spillway/v1\nkind: ScalingPolicy\nname: broken\ntarget: {job: x, group: y}\nmin: 5\nmax: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, url, "spillway_config_last_reload_successful", 0)
	waitMetric(t, url, "spillway_policies", 1)
	if !strings.Contains(logs.String(), "reload failed") || !strings.Contains(logs.String(), broken+":") {
		t.Errorf("the log does not report the broken file:\n%s", logs.String())
	}

	copyFile(t, "../../policies/examples/gala.yaml", broken)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, url, "spillway_config_last_reload_successful", 1)
	waitMetric(t, url, "spillway_policies", 2)
}

// TestPlanAgainstTheLab overloads the demo service in the lab and checks
// that `spillway plan` reads the real Prometheus and Nomad and proposes a
// scale-up, with the metric value and the reason.
func TestPlanAgainstTheLab(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	opts := lab.DefaultOptions()
	opts.Serve = false
	opts.SharedHosts = 0
	opts.BusinessUnits = []lab.BusinessUnit{{Name: "bu-a", Hosts: 2}}
	l := labtest.Start(t, opts)

	// 300 req/s against two instances of 100 req/s each.
	trace := filepath.Join(t.TempDir(), "flat.csv")
	if err := os.WriteFile(trace, []byte("0,300\n600,300\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := l.StartLoad(lab.LoadOptions{Trace: trace}); err != nil {
		t.Fatal(err)
	}
	policyDir := t.TempDir()
	copyFile(t, "../../policies/examples/hot-topic.yaml", filepath.Join(policyDir, "hot-topic.yaml"))

	// Plan until Prometheus has a full rate window of the load: the
	// request-rate check reads about 300 req/s (positive, not a sleep).
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var report struct {
		Results []evaluate.Result `json:"results"`
	}
	rateOf := func(r evaluate.Result) *policies.CheckResult {
		for i := range r.Checks {
			if r.Checks[i].Check == "request-rate" {
				return &r.Checks[i]
			}
		}
		return nil
	}
	for {
		out, err := exec.CommandContext(ctx, labtest.Spillway(t), "plan", "--policies", policyDir,
			"--prometheus", l.PrometheusURL, "--nomad", l.NomadAddr, "-o", "json").Output()
		if err != nil {
			var stderr string
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("spillway plan: %v\n%s\n%s", err, out, stderr)
		}
		if err := json.Unmarshal(out, &report); err != nil {
			t.Fatalf("plan -o json: %v\n%s", err, out)
		}
		if len(report.Results) != 1 || report.Results[0].Decision == nil {
			t.Fatalf("want one decided policy, got %s", out)
		}
		if rate := rateOf(report.Results[0]); rate != nil && rate.Value != nil && *rate.Value >= 200 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("Prometheus never had a rate of the load: %s", out)
		}
		time.Sleep(2 * time.Second)
	}
	r := report.Results[0]
	d := r.Decision
	t.Logf("decision: %d -> %d (%s): %s", d.Current, d.Desired, d.Direction, d.Reason)
	if d.Current != 2 || d.Desired <= d.Current || d.Direction != policies.Up || d.Reason == "" {
		t.Fatalf("want a scale-up from 2 with a reason, got %+v", d)
	}
	rate := rateOf(r)
	if rate == nil || rate.Value == nil || *rate.Value < 200 || *rate.Value > 330 {
		t.Fatalf("the request-rate check should show about 300 req/s served, got %+v", rate)
	}
	if r.Capacity.Allocations != d.Desired-d.Current || r.Capacity.CPUMHz <= 0 {
		t.Errorf("capacity needed %+v does not match the decision", r.Capacity)
	}
	// The table output shows the same for people.
	table, err := exec.CommandContext(ctx, labtest.Spillway(t), "plan", "--policies", policyDir,
		"--prometheus", l.PrometheusURL, "--nomad", l.NomadAddr).Output()
	if err != nil || !strings.Contains(string(table), "demo-hot-topic") || !strings.Contains(string(table), "request-rate") {
		t.Errorf("table output: %v\n%s", err, table)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
