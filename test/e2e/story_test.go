package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/controller"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/internal/apiclient"
	"github.com/spillwayhq/spillway/internal/lab"
	"github.com/spillwayhq/spillway/internal/lab/labtest"
	"github.com/spillwayhq/spillway/internal/tools"
	"github.com/spillwayhq/spillway/internal/tools/toolstest"
	"github.com/spillwayhq/spillway/providers"
)

// runningLab is a `spillway lab` process, seen from outside as a person
// sees it: its output, its API.
type runningLab struct {
	cmd        *exec.Cmd
	mu         sync.Mutex
	lines      []string
	done       chan struct{}
	url, token string
	dir        string
	// events are the journal read so far; cursor the last one's Seq.
	events []journal.Event
	cursor string
}

// output is every line the lab printed so far.
func (r *runningLab) output() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...)
}

// startLabCommand runs spillway lab with args from the repository's root,
// as `make run` does, and waits until it is up.
func startLabCommand(t *testing.T, args ...string) *runningLab {
	t.Helper()
	toolstest.Need(t, tools.All...)
	labtest.Slot(t)
	r := &runningLab{cmd: exec.Command(labtest.Spillway(t), append([]string{"lab"}, args...)...), done: make(chan struct{})}
	r.cmd.Dir = "../.."
	r.cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	out, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lockedBuffer{}
	r.cmd.Stderr = stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = r.cmd.Process.Kill()
		<-r.done
		if t.Failed() {
			t.Logf("spillway lab printed:\n%s\n%s", strings.Join(r.output(), "\n"), stderr.String())
		}
	})
	up := make(chan struct{})
	go func() {
		defer close(r.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			r.mu.Lock()
			r.lines = append(r.lines, line)
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Control plane API "); ok {
				r.url = v
			}
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "API token (admin) "); ok {
				r.token = v
			}
			if v, ok := strings.CutPrefix(line, "lab: lab directory "); ok {
				r.dir = v
			}
			if strings.HasPrefix(line, "The lab is up") {
				close(up)
			}
			r.mu.Unlock()
		}
	}()
	select {
	case <-up:
	case <-r.done:
		t.Fatalf("spillway lab exited before it was up: %s", stderr.String())
	case <-time.After(3 * time.Minute):
		t.Fatal("spillway lab not up within 3 minutes")
	}
	// The URL and token follow the "is up" line.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		r.mu.Lock()
		ready := r.url != "" && r.token != ""
		r.mu.Unlock()
		if ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("spillway lab printed no API URL and token")
		}
	}
	return r
}

// journal reads the journal through the API (the project's client),
// oldest first: what it read before, then the events since.
func (r *runningLab) journal(t *testing.T) []journal.Event {
	t.Helper()
	api := apiclient.New(r.url, r.token)
	for {
		var page struct {
			Events []journal.Event `json:"events"`
			Next   string          `json:"next"`
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		err := api.Do(ctx, http.MethodGet, "/v1/events", url.Values{"limit": {"1000"}, "cursor": {r.cursor}}, nil, &page)
		cancel()
		if err != nil {
			t.Fatalf("GET /v1/events: %v", err)
		}
		r.events = append(r.events, page.Events...)
		if len(page.Events) > 0 {
			r.cursor = strconv.FormatInt(page.Events[len(page.Events)-1].Seq, 10)
		}
		if page.Next == "" {
			return r.events
		}
	}
}

// interrupt stops the lab with Ctrl-C (SIGINT): it exits 0 within a
// minute, says it stopped, leaves no process behind, and a clean stop
// removes its directory.
func (r *runningLab) interrupt(t *testing.T) {
	t.Helper()
	if err := r.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.done:
	case <-time.After(time.Minute):
		t.Fatal("spillway lab did not stop within a minute of Ctrl-C")
	}
	if err := r.cmd.Wait(); err != nil {
		t.Fatalf("spillway lab after Ctrl-C: %v", err)
	}
	if !slices.ContainsFunc(r.output(), func(line string) bool { return strings.Contains(line, "lab: stopped") }) {
		t.Errorf("output lacks the stop line:\n%s", strings.Join(r.output(), "\n"))
	}
	if r.dir == "" {
		t.Fatal("spillway lab printed no lab directory")
	}
	if pids := lab.Processes(r.dir); len(pids) > 0 {
		t.Errorf("processes left behind: %v", pids)
	}
	if out, _ := exec.Command("pgrep", "-f", r.dir).Output(); len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("pgrep -f %s still finds: %s", r.dir, out)
	}
	if _, err := os.Stat(r.dir); !os.IsNotExist(err) {
		t.Errorf("after Ctrl-C the lab directory %q remains (%v)", r.dir, err)
	}
}

// startedAsMakeRun checks what `make run` shows once it is up: a progress
// line for every part of the lab, the addresses to open (the console's
// login link among them), and the lab's processes running.
func (r *runningLab) startedAsMakeRun(t *testing.T) {
	t.Helper()
	out := strings.Join(r.output(), "\n")
	for _, step := range []string{"nomad server: ready", "nomad clients: ready", "prometheus: ready", "alertmanager: ready", "control plane: ready", "job demo: ready", "load generator: playing", "cloud simulator: EC2 and ECS on"} {
		if !strings.Contains(out, step) {
			t.Errorf("progress output lacks %q", step)
		}
	}
	for _, line := range []string{"Console login     " + r.url + "/#token=", "Viewer token", "Control plane API", "Cloud (aws)", "Cloud (alicloud)"} {
		if !strings.Contains(out, line) {
			t.Errorf("output lacks %q", line)
		}
	}
	// The server, 3 clients (bu-a, bu-b, shared), Prometheus, Alertmanager,
	// serve and the load generator, and a task for each of the 2 demo
	// instances (besides their executors).
	if n := len(lab.Processes(r.dir)); n < 10 {
		t.Errorf("want the lab's processes running, found %d", n)
	}
}

// cli runs a spillway command against the lab's API.
func (r *runningLab) cli(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(labtest.Spillway(t), args...)
	cmd.Env = append(os.Environ(), "SPILLWAY_ADDR="+r.url, "SPILLWAY_TOKEN="+r.token)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("spillway %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return out
}

// story is the burst's milestones in the journal: the first of each.
type story struct {
	shared, aws, exhausted, ali *journal.Event
}

func readStory(evs []journal.Event) story {
	var s story
	for i, ev := range evs {
		pool := eventData(ev)["pool"]
		switch {
		case ev.Kind == controller.KindClaimed && pool == lab.SharedPool && s.shared == nil:
			s.shared = &evs[i]
		case ev.Kind == controller.KindClaimed && pool == lab.AWSCloudPool && s.aws == nil:
			s.aws = &evs[i]
		case ev.Kind == controller.KindClaimed && pool == lab.AlicloudCloudPool && s.ali == nil:
			s.ali = &evs[i]
		}
		if (ev.Kind == controller.KindClaimFailed || ev.Kind == controller.KindClaimed) && pool == lab.AWSCloudPool &&
			eventData(ev)["reason"] == providers.ErrorKindInsufficientCapacity && s.exhausted == nil {
			s.exhausted = &evs[i]
		}
	}
	return s
}

// TestLabTellsTheBurstStory runs `spillway lab` as `make run` does, from
// the repository's root with its defaults, but plays the trace twice as
// fast (--speed 8). It shows every part of the lab starting and the
// addresses to open. Within 5 minutes the journal shows, in this order,
// the shared host borrowed, an AWS host rented, AWS out of capacity and an
// Alibaba host rented, and `spillway pools` and the live summary show the
// hosts; within 15 minutes everything is given back, the rented hosts
// before the shared one. Ctrl-C then leaves nothing behind.
func TestLabTellsTheBurstStory(t *testing.T) {
	t.Parallel()
	labtest.Takes(t, 220*time.Second)
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	r := startLabCommand(t, "--speed", "8", "--summary", "2s")
	start := time.Now()
	r.startedAsMakeRun(t)

	// The burst: every tier in turn, within 5 minutes.
	var s story
	for s.ali == nil {
		if time.Since(start) > 5*time.Minute {
			t.Fatalf("the burst did not reach Alibaba within 5 minutes: %+v; journal:\n%s", s, dump(r.journal(t)))
		}
		time.Sleep(time.Second)
		s = readStory(r.journal(t))
	}
	if s.shared == nil || s.aws == nil || s.exhausted == nil {
		t.Fatalf("the burst reached Alibaba without every step before it: %+v; journal:\n%s", s, dump(r.journal(t)))
	}
	if !(s.shared.Seq < s.aws.Seq && s.aws.Seq <= s.exhausted.Seq && s.exhausted.Seq < s.ali.Seq) {
		t.Errorf("out of order: borrowed #%d, AWS #%d, AWS exhausted #%d, Alibaba #%d", s.shared.Seq, s.aws.Seq, s.exhausted.Seq, s.ali.Seq)
	}
	t.Logf("after %s: borrowed (%s), rented on AWS (%s), AWS ran out (%s), rented on Alibaba (%s)", time.Since(start).Round(time.Second),
		s.shared.Message, s.aws.Message, s.exhausted.Message, s.ali.Message)

	// spillway pools and the live summary show the hosts of every tier
	// (each at some point: the tiers come and go at their own times).
	type poolRow struct {
		Pool  string
		Hosts struct{ Total, Borrowed int }
	}
	pools := map[string]bool{}
	summary := map[string]string{}
	wantSummary := []string{"borrowed 1 of 1 shared", "aws 1", "alicloud 1", "out of capacity: " + lab.AWSCloudPool}
	for len(pools) < 3 || len(summary) < len(wantSummary) {
		if time.Since(start) > 5*time.Minute {
			t.Fatalf("within 5 minutes, spillway pools showed hosts in %v and the live summary showed %v of %q", pools, summary, wantSummary)
		}
		var out struct{ Pools []poolRow }
		raw := r.cli(t, "pools", "-o", "json")
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("spillway pools -o json: %v: %s", err, raw)
		}
		for _, p := range out.Pools {
			if (p.Pool == lab.SharedPool && p.Hosts.Borrowed > 0) || ((p.Pool == lab.AWSCloudPool || p.Pool == lab.AlicloudCloudPool) && p.Hosts.Total > 0) {
				if !pools[p.Pool] {
					t.Logf("spillway pools, after %s:\n%s", time.Since(start).Round(time.Second), r.cli(t, "pools"))
				}
				pools[p.Pool] = true
			}
		}
		for _, line := range r.output() {
			for _, want := range wantSummary {
				if strings.Contains(line, want) && summary[want] == "" {
					summary[want] = line
					t.Logf("the live summary shows %q: %s", want, line)
				}
			}
		}
		time.Sleep(time.Second)
	}

	// The decay: everything given back within 15 minutes of the start.
	var evs []journal.Event
	for {
		evs = r.journal(t)
		rented, terminated := 0, 0
		for _, ev := range evs {
			switch {
			case ev.Kind == controller.KindClaimed && eventData(ev)["pool"] != lab.SharedPool:
				hosts, _ := eventData(ev)["hosts"].([]any)
				rented += len(hosts)
			case ev.Kind == controller.KindTerminated:
				terminated++
			}
		}
		var loans struct {
			Loans []json.RawMessage `json:"loans"`
		}
		if err := json.Unmarshal(r.cli(t, "pools", "loans", "-o", "json"), &loans); err != nil {
			t.Fatal(err)
		}
		if rented > 0 && terminated >= rented && len(loans.Loans) == 0 {
			t.Logf("everything given back after %s: %d rented hosts terminated, no open loan", time.Since(start).Round(time.Second), terminated)
			break
		}
		if time.Since(start) > 15*time.Minute {
			t.Fatalf("not everything given back within 15 minutes: %d rented, %d terminated, loans %s; journal:\n%s", rented, terminated, loans.Loans, dump(evs))
		}
		time.Sleep(2 * time.Second)
	}
	// Rented hosts go back before the borrowed one.
	var order []string
	for _, ev := range filterKind(evs, controller.KindIntentReturn) {
		order = append(order, fmt.Sprint(eventData(ev)["tier"]))
	}
	if len(order) < 3 || order[len(order)-1] != "shared" {
		t.Errorf("the give-back by tier went %v: the rented hosts go first, the shared one last", order)
	}

	r.interrupt(t)
}
