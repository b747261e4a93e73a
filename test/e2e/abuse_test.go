package e2e

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/controlplane/alerts/alertstest"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/internal/lab"
	"github.com/spillwayhq/spillway/internal/lab/labtest"

	_ "modernc.org/sqlite" // the journal's driver, to measure it
)

// procKB reads a field of /proc/PID/status in kB (VmRSS, VmHWM).
func procKB(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// journalBytes is the space the lab's SQLite journal uses: its pages in
// use once the WAL is checkpointed into it (the WAL file itself is reused,
// so its size says nothing of growth).
func journalBytes(t *testing.T, l *lab.Lab) int64 {
	t.Helper()
	db, err := sql.Open("sqlite", l.JournalPath())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("PRAGMA wal_checkpoint(PASSIVE)"); err != nil {
		t.Fatal(err)
	}
	var pages, free, size int64
	for q, dst := range map[string]*int64{"PRAGMA page_count": &pages, "PRAGMA freelist_count": &free, "PRAGMA page_size": &size} {
		if err := db.QueryRow(q).Scan(dst); err != nil {
			t.Fatal(err)
		}
	}
	return (pages - free) * size
}

// statusWatch calls /v1/status every 50ms until stopped, and keeps the
// slowest answer.
type statusWatch struct {
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	slowest time.Duration
	calls   int
	failed  []string
}

func watchStatus(l *lab.Lab) *statusWatch {
	w := &statusWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			req, _ := http.NewRequest("GET", l.SpillwayURL+"/v1/status", nil)
			req.Header.Set("Authorization", "Bearer "+l.APIToken)
			start := time.Now()
			resp, err := http.DefaultClient.Do(req)
			took := time.Since(start)
			w.mu.Lock()
			w.calls++
			w.slowest = max(w.slowest, took)
			if err != nil {
				w.failed = append(w.failed, err.Error())
			} else {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					w.failed = append(w.failed, resp.Status)
				}
			}
			w.mu.Unlock()
		}
	}()
	return w
}

// wait returns once n more calls have been answered.
func (w *statusWatch) wait(t *testing.T, n int) {
	t.Helper()
	w.mu.Lock()
	want := w.calls + n
	w.mu.Unlock()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		w.mu.Lock()
		done := w.calls >= want
		w.mu.Unlock()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/v1/status was not called %d more times within a minute", n)
		}
	}
}

func (w *statusWatch) end() (time.Duration, int, []string) {
	close(w.stop)
	<-w.done
	return w.slowest, w.calls, w.failed
}

// TestAPIUnderAbuse floods the real control plane's webhook with 400,000
// unique alerts, 10,000 a notification, that match no policy, retrying
// what it is told to retry as Alertmanager does: its peak RSS stays under
// 150 MB, the journal grows by less than 1 MB, and /v1/status answers in
// under 100ms throughout. Then 500 event streams open at once: each is
// answered within a second (headers, or 503 beyond api.max_streams), and
// /v1/status stays under 100ms while they are open.
func TestAPIUnderAbuse(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	opts := lab.DefaultOptions()
	opts.SharedHosts = 0
	opts.BusinessUnits = []lab.BusinessUnit{{Name: "bu-a", Hosts: 1}}
	opts.Demo = nil
	l := labtest.Start(t, opts)
	// The lab's files that hold tokens are its user's alone.
	secrets := 0
	err := filepath.WalkDir(l.Dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch d.Name() {
		case "spillway.yaml", "alertmanager.yml", "agent.hcl":
			secrets++
			if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("%s holds a token and has mode %v, want 0600", path, st.Mode().Perm())
			}
		}
		return nil
	})
	if err != nil || secrets < 3 {
		t.Fatalf("found %d files holding tokens in %s: %v", secrets, l.Dir, err)
	}
	pid := l.ServePID()
	rssBefore, journalBefore := procKB(t, pid, "VmRSS"), journalBytes(t, l)

	watch := watchStatus(l)
	const perNotification, notifications = 10000, 40
	sent, retried := 0, 0
	for i := 0; i < notifications; {
		body := alertstest.Group("NodeDown", perNotification, i*perNotification)
		req, _ := http.NewRequest("POST", l.SpillwayURL+"/v1/alerts/alertmanager", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+l.APIToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
			var r struct{ Unmatched int }
			if err := json.Unmarshal(out, &r); err != nil || r.Unmatched != perNotification {
				t.Fatalf("notification %d: %s", i, out)
			}
			sent += r.Unmatched
			i++
		case resp.StatusCode >= 500 && resp.Header.Get("Retry-After") != "":
			// Alertmanager retries a 5xx; honour Retry-After, as a kind client would.
			retried++
			secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
			time.Sleep(time.Duration(secs) * time.Second)
		default:
			t.Fatalf("notification %d: %d %s", i, resp.StatusCode, out)
		}
	}
	slowest, calls, failed := watch.end()
	rssAfter, peak := procKB(t, pid, "VmRSS"), procKB(t, pid, "VmHWM")
	journalAfter := journalBytes(t, l)
	t.Logf("flood: %d unmatched alerts in %d notifications (%d retried after 503); RSS %d → %d kB, peak %d kB; journal %d → %d bytes; /v1/status %d calls, slowest %s",
		sent, notifications, retried, rssBefore, rssAfter, peak, journalBefore, journalAfter, calls, slowest)
	if len(failed) > 0 {
		t.Errorf("/v1/status failed during the flood: %v", failed)
	}
	if peak > 150*1024 {
		t.Errorf("peak RSS %d kB, want under 150 MB", peak)
	}
	if grew := journalAfter - journalBefore; grew >= 1<<20 {
		t.Errorf("the journal grew by %d bytes, want under 1 MB", grew)
	}
	if slowest >= 100*time.Millisecond {
		t.Errorf("/v1/status took %s during the flood, want under 100ms", slowest)
	}
	if evs := events(t, l, "kind=alert.unmatched"); len(evs) != notifications {
		t.Errorf("%d alert.unmatched events, want one per notification (%d)", len(evs), notifications)
	}
	if evs := events(t, l, "kind=alert.ignored"); len(evs) != 0 {
		t.Errorf("%d alerts journaled one by one, want none", len(evs))
	}

	// 500 event streams at once.
	const streams = 500
	type answer struct {
		code int
		took time.Duration
		body io.ReadCloser
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: streams}}
	answers := make(chan answer, streams)
	watch = watchStatus(l)
	for range streams {
		go func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", l.SpillwayURL+"/v1/events/stream", nil)
			req.Header.Set("Authorization", "Bearer "+l.APIToken)
			start := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				answers <- answer{code: -1, took: time.Since(start)}
				return
			}
			answers <- answer{code: resp.StatusCode, took: time.Since(start), body: resp.Body}
		}()
	}
	var open []io.ReadCloser
	refused := 0
	var slowestStream time.Duration
	for range streams {
		a := <-answers
		slowestStream = max(slowestStream, a.took)
		switch a.code {
		case http.StatusOK:
			open = append(open, a.body)
		case http.StatusServiceUnavailable:
			refused++
			a.body.Close()
		default:
			t.Errorf("a stream answered %d", a.code)
			if a.body != nil {
				a.body.Close()
			}
		}
	}
	watch.wait(t, 10) // ten more calls of /v1/status with every stream open
	slowest, calls, failed = watch.end()
	t.Logf("streams: %d open, %d refused with 503; slowest answer %s; /v1/status %d calls, slowest %s", len(open), refused, slowestStream, calls, slowest)
	if slowestStream > time.Second {
		t.Errorf("the slowest stream answered after %s, want within 1s", slowestStream)
	}
	if slowest >= 100*time.Millisecond || len(failed) > 0 {
		t.Errorf("/v1/status with %d streams open: slowest %s, failures %v; want under 100ms", len(open), slowest, failed)
	}
	if len(open) == 0 || len(open)+refused != streams {
		t.Errorf("open %d, refused %d of %d", len(open), refused, streams)
	}
	// An event reaches an open stream.
	post(t, l, "/v1/reload", nil)
	r := bufio.NewReader(open[0])
	deadline := time.Now().Add(10 * time.Second)
	for {
		line, err := r.ReadString('\n')
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("the stream never carried the pause: %v", err)
		}
		if strings.Contains(line, `"kind":"`+journal.KindReload+`"`) {
			break
		}
	}
	for _, b := range open {
		b.Close()
	}
}

// sweepPolicies writes n policies for count-0 jobs idle-0..idle-(n-1),
// every one with a Prometheus query, evaluated every 10s.
func sweepPolicies(t *testing.T, dir string, n int) {
	t.Helper()
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `---
apiVersion: spillway/v1
kind: ScalingPolicy
name: idle-%d
business_unit: bu-a
target: {namespace: default, job: idle-%d, group: web}
min: 0
max: 1
evaluation_interval: 10s
checks:
  - name: request-rate
    query: sum(rate(spillway_demo_requests_total[30s]))
    target_value: {target: 1000000000, aggregate: total}
`, i, i)
	}
	if err := os.WriteFile(filepath.Join(dir, "idle.yaml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// registerIdleJobs registers n count-0 raw_exec jobs in node pool "idle".
func registerIdleJobs(t *testing.T, l *lab.Lab, n int) {
	t.Helper()
	if _, err := l.Nomad().NodePools().Register(&nomad.NodePool{Name: "idle", Description: "count-0 jobs of the sweep test"}, nil); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		job := nomad.NewServiceJob(fmt.Sprintf("idle-%d", i), fmt.Sprintf("idle-%d", i), "global", 50)
		job.NodePool = ptrTo("idle")
		job.Datacenters = []string{"*"}
		tg := nomad.NewTaskGroup("web", 0)
		task := nomad.NewTask("app", "raw_exec").SetConfig("command", "/bin/sleep").SetConfig("args", []string{"3600"})
		task.Resources = &nomad.Resources{CPU: ptrTo(10), MemoryMB: ptrTo(16)}
		tg.AddTask(task)
		job.AddTaskGroup(tg)
		if _, _, err := l.Nomad().Jobs().Register(job, nil); err != nil {
			t.Fatalf("registering %s: %v", *job.ID, err)
		}
	}
}

// TestAlertDuringASweepOfAThousandPolicies posts an alert just as a sweep
// of 1,000 policies starts: its scale event follows in under a second, and
// carries the alert's fingerprint.
func TestAlertDuringASweepOfAThousandPolicies(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	const n = 1000
	policyDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(policyDir, "alerts.yaml"), []byte(alertPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	sweepPolicies(t, policyDir, n)
	opts := lab.DefaultOptions()
	opts.SharedHosts = 0
	opts.BusinessUnits = []lab.BusinessUnit{{Name: "bu-a", Hosts: 2}}
	opts.Policies = policyDir
	l := labtest.Start(t, opts)
	registerIdleJobs(t, l, n)

	// Wait until the sweeps evaluate every group: 1,001 decisions journaled.
	deadline := time.Now().Add(2 * time.Minute)
	for len(events(t, l, "kind=decision&limit=1000")) < 1000 {
		if time.Now().After(deadline) {
			t.Fatalf("the sweeps never evaluated the 1,000 groups: %d decisions", len(events(t, l, "kind=decision")))
		}
		time.Sleep(time.Second)
	}
	// Post the alert the moment the next sweep starts.
	const interval = `spillway_evaluations_total{reason="interval"}`
	sweeps := func() float64 { v, _ := metricValue(t, l.SpillwayURL, interval); return v }
	// The demo's own policy is evaluated every 5s, one at a time; the
	// 1,000 groups every 10s, eight at once: a jump of several is theirs.
	base := sweeps()
	for {
		v := sweeps()
		if v-base >= 4 {
			break
		}
		base = v
		if time.Now().After(deadline) {
			t.Fatal("no sweep of the 1,000 groups started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	sweepStart := time.Now()
	started := base
	fp := "e2e-sweep-alert"
	body := []byte(`{"version":"4","status":"firing","receiver":"spillway","groupKey":"g","alerts":[{"status":"firing","fingerprint":"` + fp +
		`","startsAt":"` + time.Now().UTC().Format(time.RFC3339) + `","labels":{"alertname":"DemoHighLatency","service":"demo"}}]}`)
	post(t, l, "/v1/alerts/alertmanager", body)
	var accepted, scale journal.Event
	for scale.Seq == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no scale event for the alert; journal:\n%s", dump(events(t, l, "subject=default/demo/web")))
		}
		for _, ev := range events(t, l, "subject=default/demo/web") {
			switch {
			case ev.Kind == journal.KindAlertAccepted && strings.Contains(string(ev.Data), fp):
				accepted = ev
			case ev.Kind == journal.KindScale && accepted.Seq != 0:
				scale = ev
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	lag := scale.Time.Sub(accepted.Time)
	for sweeps()-started < n {
		if time.Now().After(deadline) {
			t.Fatalf("the sweep never finished: %.0f of %d evaluated", sweeps()-started, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("the alert, posted as a sweep of %d groups started, reached its scale event %s after it was accepted; the sweep took about %s: %s",
		n, lag, time.Since(sweepStart).Round(10*time.Millisecond), scale.Message)
	var data struct {
		Alerts []string `json:"alerts"`
		Cause  string   `json:"cause"`
	}
	if err := json.Unmarshal(scale.Data, &data); err != nil {
		t.Fatal(err)
	}
	if len(data.Alerts) == 0 || data.Alerts[0] != fp || !strings.Contains(data.Cause, fp) {
		t.Errorf("the scale event's cause %q and alerts %v do not name the alert %s", data.Cause, data.Alerts, fp)
	}
	if lag >= time.Second {
		t.Errorf("the alert reached its scale event after %s, want under 1s", lag)
	}
}
