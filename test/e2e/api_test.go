package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/internal/lab"
	"github.com/spillwayhq/spillway/internal/lab/labtest"
)

// apiPolicy keeps the demo at its minimum of 2 on metrics, and its long
// cooldowns keep the policy from undoing a manual scaling during the test.
const apiPolicy = `apiVersion: spillway/v1
kind: ScalingPolicy
name: demo-api
business_unit: bu-a
target: {namespace: default, job: demo, group: web}
min: 2
max: 10
evaluation_interval: 5s
cooldown: {scale_up: 10m, scale_down: 10m}
checks:
  - name: request-rate
    query: sum(rate(spillway_demo_requests_total[30s]))
    target_value: {target: 100000, aggregate: total}
`

// TestOperatorAPIThroughTheCLI drives the lab's control plane with the
// spillway CLI: it pauses and resumes a policy and scales the demo by
// hand, and follows the event stream (SSE) with `spillway events
// --follow`, which must show the scaling with the token's name.
func TestOperatorAPIThroughTheCLI(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	policyDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(policyDir, "demo.yaml"), []byte(apiPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := lab.DefaultOptions()
	opts.SharedHosts = 0
	opts.BusinessUnits = []lab.BusinessUnit{{Name: "bu-a", Hosts: 2}}
	opts.Policies = policyDir
	l := labtest.Start(t, opts)
	bin := labtest.Spillway(t)
	env := append(os.Environ(), "SPILLWAY_ADDR="+l.SpillwayURL, "SPILLWAY_TOKEN="+l.APIToken)
	cli := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("spillway %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	// Follow the journal live.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	follow := exec.CommandContext(ctx, bin, "events", "--follow", "-o", "json")
	follow.Env = env
	stdout, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = follow.Wait() }()
	streamed := make(chan journal.Event, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev journal.Event
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				streamed <- ev
			}
		}
		close(streamed)
	}()
	// Wait for the stream to be connected (the control plane counts its
	// open streams): the pause below must reach it.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if v, _ := metricValue(t, l.SpillwayURL, "spillway_event_streams_open"); v >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the CLI's event stream never connected")
		}
	}

	if out := cli("pause", "demo-api", "--reason", "e2e: hands off"); !strings.Contains(out, "policy demo-api is now paused") {
		t.Fatalf("pause: %s", out)
	}
	if out := cli("policies"); !strings.Contains(out, "paused by lab-admin") {
		t.Fatalf("policies after pause: %s", out)
	}
	if out := cli("scale", "default/demo/web", "--to", "3", "--reason", "e2e manual scaling"); !strings.Contains(out, "default/demo/web: 2 -> 3") {
		t.Fatalf("scale: %s", out)
	}
	if out := cli("resume", "demo-api"); !strings.Contains(out, "policy demo-api is now active") {
		t.Fatalf("resume: %s", out)
	}

	job, _, err := l.Nomad().Jobs().Info(lab.DemoJob, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := *job.TaskGroups[0].Count; n != 3 {
		t.Fatalf("the demo job's count is %d, want 3", n)
	}

	// The stream delivers the pause, the manual decision and the scaling,
	// each with the admin token's name.
	want := map[string]bool{"policy.paused": false, journal.KindDecision: false, journal.KindScale: false, "policy.resumed": false}
	var scale journal.Event
	deadline := time.After(30 * time.Second)
	for missing := len(want); missing > 0; {
		select {
		case ev, ok := <-streamed:
			if !ok {
				t.Fatal("the event stream ended")
			}
			if seen, tracked := want[ev.Kind]; tracked && !seen && ev.Actor == "lab-admin" {
				want[ev.Kind] = true
				missing--
				if ev.Kind == journal.KindScale {
					scale = ev
				}
			}
		case <-deadline:
			t.Fatalf("the stream did not deliver every event: %v", want)
		}
	}
	if scale.Subject != "default/demo/web" || !strings.Contains(scale.Message, "e2e manual scaling") {
		t.Fatalf("streamed scale event: %+v", scale)
	}

	// The activity and the journal say who did it and why.
	var page struct {
		Activities []struct {
			ID, Actor, Status string
			From, To          int
		}
	}
	if err := json.Unmarshal([]byte(cli("activities", "-o", "json")), &page); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range page.Activities {
		if a.ID == scale.Activity {
			found = a.Actor == "lab-admin" && a.Status == "scaled" && a.From == 2 && a.To == 3
		}
	}
	if !found {
		t.Fatalf("activity %s not listed as 2 -> 3 by lab-admin: %+v", scale.Activity, page)
	}
	if out := cli("status"); !strings.Contains(out, "demo-api") || !strings.Contains(out, scale.Activity) {
		t.Fatalf("status: %s", out)
	}
	// The policy is active again, but the cooldown from the manual scaling
	// keeps it from scaling back to its minimum: its next evaluation says so.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		held := false
		for _, ev := range events(t, l, "kind=decision&cursor="+strconv.FormatInt(scale.Seq, 10)) {
			held = held || (ev.Actor == "controller" && strings.Contains(ev.Message, "cooldown lasts until"))
		}
		if held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no evaluation after the manual scaling named its cooldown:\n%s", dump(events(t, l, "kind=decision")))
		}
	}
	if evs := events(t, l, "kind=scale"); len(evs) != 1 {
		t.Fatalf("want only the manual scaling, got:\n%s", dump(evs))
	}

	// Hosts, and a drain with a deadline, marked with the token's name.
	var hosts struct {
		Hosts []struct{ ID, Name, Pool, Tier string }
	}
	if err := json.Unmarshal([]byte(cli("hosts", "-o", "json")), &hosts); err != nil {
		t.Fatal(err)
	}
	if len(hosts.Hosts) != 2 {
		t.Fatalf("want the 2 hosts of bu-a, got %+v", hosts)
	}
	host := hosts.Hosts[0]
	if out := cli("drain", host.Name, "--deadline", "2m", "--reason", "e2e drain"); !strings.Contains(out, "draining "+host.Name) {
		t.Fatalf("drain: %s", out)
	}
	node, _, err := l.Nomad().Nodes().Info(host.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if node.DrainStrategy == nil || node.DrainStrategy.Deadline != 2*time.Minute || node.LastDrain == nil || node.LastDrain.Meta["drained_by"] != "spillway:lab-admin" {
		t.Fatalf("node after drain: strategy %+v, last drain %+v", node.DrainStrategy, node.LastDrain)
	}
	if evs := events(t, l, "kind=host.drain"); len(evs) != 1 || evs[0].Actor != "lab-admin" || evs[0].Subject != host.Name {
		t.Fatalf("drain events:\n%s", dump(evs))
	}
}
