// Package e2e holds the end-to-end suites that run on the local lab: real
// Nomad, Prometheus, Alertmanager and the spillway binary, on loopback.
package e2e

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"
	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/spillwayhq/spillway/internal/lab"
	"github.com/spillwayhq/spillway/internal/lab/labtest"
)

// TestLabDemoTraffic runs the demo service on the internal hosts, plays a
// two-step trace, and checks that the lab's Prometheus sees the request
// rate of each step within 10%.
func TestLabDemoTraffic(t *testing.T) {
	t.Parallel()
	labtest.Takes(t, 65*time.Second)
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	opts := lab.DefaultOptions()
	l := labtest.Start(t, opts)
	ctx := context.Background()

	// The demo runs on business unit bu-a's internal hosts.
	allocs, _, err := l.Nomad().Jobs().Allocations(lab.DemoJob, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	running := 0
	for _, a := range allocs {
		if a.ClientStatus != nomad.AllocClientStatusRunning {
			continue
		}
		running++
		node, _, err := l.Nomad().Nodes().Info(a.NodeID, nil)
		if err != nil {
			t.Fatal(err)
		}
		if node.NodePool != "bu-a" || node.NodeClass != lab.InternalClass || node.Meta[lab.MetaBusinessUnit] != "bu-a" {
			t.Errorf("allocation %s runs on %s (pool %q, class %q, meta %v), want an internal host of bu-a",
				a.ID, node.Name, node.NodePool, node.NodeClass, node.Meta)
		}
	}
	if running != opts.Demo.Count {
		t.Fatalf("%d demo allocations running, want %d", running, opts.Demo.Count)
	}

	// 50 req/s for 30 s, then 150 req/s for 30 s.
	trace := filepath.Join(t.TempDir(), "steps.csv")
	if err := os.WriteFile(trace, []byte("seconds,requests_per_second\n0,50\n30,50\n30.5,150\n60,150\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := l.StartLoad(lab.LoadOptions{Trace: trace}); err != nil {
		t.Fatal(err)
	}

	client, err := promapi.NewClient(promapi.Config{Address: l.PrometheusURL})
	if err != nil {
		t.Fatal(err)
	}
	prom := promv1.NewAPI(client)
	const query = `sum(rate(spillway_demo_requests_total[15s]))`
	for _, step := range []struct {
		at   time.Duration
		want float64
	}{{27 * time.Second, 50}, {58 * time.Second, 150}} {
		time.Sleep(time.Until(start.Add(step.at)))
		got := instant(t, ctx, prom, query)
		t.Logf("at %s: %s = %.1f (trace: %.0f)", step.at, query, got, step.want)
		if math.Abs(got-step.want) > 0.10*step.want {
			t.Errorf("at %s the request rate is %.1f req/s, want %.0f ± 10%%", step.at, got, step.want)
		}
	}

	// Prometheus scrapes the control plane too.
	if up := instant(t, ctx, prom, `up{job="spillway"}`); up != 1 {
		t.Errorf(`up{job="spillway"} = %v, want 1`, up)
	}

	dir := l.Dir
	l.Stop()
	if pids := lab.Processes(dir); len(pids) > 0 {
		t.Errorf("processes of the lab still running after Stop: %v", pids)
	}
}

func instant(t *testing.T, ctx context.Context, prom promv1.API, q string) float64 {
	t.Helper()
	v, warnings, _, err := prom.Query(ctx, q, time.Now())
	if err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	if len(warnings) > 0 {
		t.Logf("query %s: warnings %v", q, warnings)
	}
	vec, ok := v.(model.Vector)
	if !ok || len(vec) != 1 {
		t.Fatalf("query %s: want one sample, got %s", q, fmt.Sprint(v))
	}
	return float64(vec[0].Value)
}

// TestLabThatFailsToStartKeepsItsLogs starts `spillway lab` with a Nomad
// that exits at once: the command fails, prints the tail of the failing
// process's log and where the kept directory is, and the directory holds
// the log.
func TestLabThatFailsToStartKeepsItsLogs(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	broken := filepath.Join(t.TempDir(), "nomad")
	if err := os.WriteFile(broken, []byte("#!/bin/sh\necho 'nomad: this binary fails on purpose for the test' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, labtest.Spillway(t), "lab", "--demo", "0", "--cloud", "", "--policies", "", "--trace", "")
	cmd.Env = append(os.Environ(), "SPILLWAY_NOMAD_BIN="+broken, "TMPDIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the lab started with a Nomad that exits:\n%s", out)
	}
	text := string(out)
	if !strings.Contains(text, "this binary fails on purpose") {
		t.Errorf("the output lacks the tail of the failing process's log:\n%s", text)
	}
	_, rest, ok := strings.Cut(text, "the lab's directory is kept with every log: ")
	if !ok {
		t.Fatalf("the output does not say where the lab's directory is:\n%s", text)
	}
	dir, _, _ := strings.Cut(rest, " ")
	logs, err := filepath.Glob(filepath.Join(dir, "logs", "nomad-*.log"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("the kept directory %s has no Nomad log: %v", dir, err)
	}
	b, _ := os.ReadFile(logs[0])
	if !strings.Contains(string(b), "this binary fails on purpose") {
		t.Errorf("%s lacks the failure: %s", logs[0], b)
	}
	t.Logf("kept %s; the output:\n%s", dir, text)
}

// TestLabPrintsALiveSummary runs `spillway lab` as `make run` does, reads
// its live summary (plain lines without a terminal) until it shows the
// demo healthy on the business unit's host, then stops it with Ctrl-C,
// which removes the lab's directory.
func TestLabPrintsALiveSummary(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	r := startLabCommand(t, "--cloud", "", "--policies", "", "--business-units", "bu-a=1", "--shared-hosts", "0", "--summary", "1s")
	var summary string
	for deadline := time.Now().Add(2 * time.Minute); summary == ""; time.Sleep(200 * time.Millisecond) {
		for _, line := range r.output() {
			if strings.Contains(line, "req/s | demo 2 wanted, 2 healthy | hosts own 1, borrowed 0 of 0 shared") {
				summary = line
			}
		}
		if summary != "" {
			break
		}
		select {
		case <-r.done:
			t.Fatal("spillway lab ended before its summary showed the demo")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no summary line showed the demo healthy within 2 minutes")
		}
	}
	t.Logf("summary: %s", summary)
	r.interrupt(t)
}
