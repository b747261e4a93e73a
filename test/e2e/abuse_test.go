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
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/controlplane/alerts/alertstest"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/controlplane/scaler"
	"github.com/spillwayhq/spillway/internal/lab"
	"github.com/spillwayhq/spillway/internal/lab/labtest"

	_ "modernc.org/sqlite" // the journal's driver, to measure it
)

// procKB reads a field of /proc/PID/status in kB (VmRSS, VmHWM).
func procKB(t testing.TB, pid int, field string) int {
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
func journalBytes(t testing.TB, l *lab.Lab) int64 {
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
func (w *statusWatch) wait(t testing.TB, n int) {
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

// abuse is what abuseTheAPI saw.
type abuse struct {
	// Sent counts the unmatched alerts the webhook accepted.
	sent, retried int
	// PeakKB is the control plane's peak RSS; journalGrew what the
	// flood added to the journal.
	peakKB      int
	journalGrew int64
	// FloodStatus and streamsStatus are the slowest /v1/status answers
	// during the flood and with every stream open.
	floodStatus, streamsStatus time.Duration
	// SlowestStream is the slowest answer (headers or 503) to a stream.
	slowestStream time.Duration
	open, refused int
}

const abuseNotifications, abuseAlertsPer, abuseStreams = 40, 10000, 500

// startAbuseLab starts a lab with one internal host and no demo.
func startAbuseLab(tb testing.TB) *lab.Lab {
	opts := lab.DefaultOptions()
	opts.SharedHosts = 0
	opts.BusinessUnits = []lab.BusinessUnit{{Name: "bu-a", Hosts: 1}}
	opts.Demo = nil
	return labtest.Start(tb, opts)
}

// abuseTheAPI floods the real control plane's webhook with 400,000 unique
// alerts, 10,000 a notification, that match no policy, retrying what it is
// told to retry as Alertmanager does, while it calls /v1/status every
// 50ms. Then it opens 500 event streams at once and calls /v1/status ten
// more times with them open. It fails tb on a behaviour gone wrong (a
// failed status call, an alert journaled one by one, a stream left
// unanswered, an event that never reaches a stream); the figures it
// returns are for TestAPIUnderAbuse and BenchmarkAPIUnderAbuse to judge.
func abuseTheAPI(tb testing.TB, l *lab.Lab) abuse {
	tb.Helper()
	var a abuse
	pid := l.ServePID()
	journalBefore := journalBytes(tb, l)
	unmatchedBefore := len(events(tb, l, "kind=alert.unmatched"))

	watch := watchStatus(l)
	// A notification refused with a 5xx is retried, as Alertmanager
	// would, but not for ever: at most abuseRetries times, within
	// abuseRetryFor of its first attempt.
	const abuseRetries, abuseRetryFor = 20, time.Minute
	retries, firstTry := 0, time.Now()
	for i := 0; i < abuseNotifications; {
		body := alertstest.Group("NodeDown", abuseAlertsPer, i*abuseAlertsPer)
		req, _ := http.NewRequest("POST", l.SpillwayURL+"/v1/alerts/alertmanager", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+l.APIToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			tb.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
			var r struct{ Unmatched int }
			if err := json.Unmarshal(out, &r); err != nil || r.Unmatched != abuseAlertsPer {
				tb.Fatalf("notification %d: %s", i, out)
			}
			a.sent += r.Unmatched
			i++
			retries, firstTry = 0, time.Now()
		case resp.StatusCode >= 500 && resp.Header.Get("Retry-After") != "":
			// Alertmanager retries a 5xx; honour Retry-After, as a kind client would.
			a.retried++
			retries++
			secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
			wait := time.Duration(secs) * time.Second
			if retries > abuseRetries || time.Since(firstTry)+wait > abuseRetryFor {
				tb.Fatalf("notification %d: POST /v1/alerts/alertmanager kept answering %d (Retry-After %q) to %d attempts over %s: %s",
					i, resp.StatusCode, resp.Header.Get("Retry-After"), retries, time.Since(firstTry).Round(time.Millisecond), out)
			}
			time.Sleep(wait)
		default:
			tb.Fatalf("notification %d: %d %s", i, resp.StatusCode, out)
		}
	}
	slowest, calls, failed := watch.end()
	a.floodStatus = slowest
	a.peakKB = procKB(tb, pid, "VmHWM")
	a.journalGrew = journalBytes(tb, l) - journalBefore
	tb.Logf("flood: %d unmatched alerts in %d notifications (%d retried after 503); peak RSS %d kB; journal +%d bytes; /v1/status %d calls, slowest %s",
		a.sent, abuseNotifications, a.retried, a.peakKB, a.journalGrew, calls, slowest)
	if len(failed) > 0 {
		tb.Errorf("/v1/status failed during the flood: %v", failed)
	}
	if evs := events(tb, l, "kind=alert.unmatched"); len(evs)-unmatchedBefore != abuseNotifications {
		tb.Errorf("%d alert.unmatched events, want one per notification (%d)", len(evs)-unmatchedBefore, abuseNotifications)
	}
	if evs := events(tb, l, "kind=alert.ignored"); len(evs) != 0 {
		tb.Errorf("%d alerts journaled one by one, want none", len(evs))
	}
	var st struct {
		FiringTotal int `json:"firing_alerts_total"`
	}
	if err := json.Unmarshal([]byte(request(tb, l, http.MethodGet, "/v1/status", nil)), &st); err != nil || st.FiringTotal != 0 {
		tb.Errorf("after the flood /v1/status counts %d firing alerts (%v), want 0: an alert that matches no policy is not kept", st.FiringTotal, err)
	}

	// 500 event streams at once.
	type answer struct {
		code int
		took time.Duration
		body io.ReadCloser
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: abuseStreams}}
	answers := make(chan answer, abuseStreams)
	watch = watchStatus(l)
	for range abuseStreams {
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
	defer func() {
		for _, b := range open {
			b.Close()
		}
	}()
	for range abuseStreams {
		ans := <-answers
		a.slowestStream = max(a.slowestStream, ans.took)
		switch ans.code {
		case http.StatusOK:
			open = append(open, ans.body)
		case http.StatusServiceUnavailable:
			a.refused++
			ans.body.Close()
		default:
			tb.Errorf("a stream answered %d", ans.code)
			if ans.body != nil {
				ans.body.Close()
			}
		}
	}
	a.open = len(open)
	watch.wait(tb, 10) // ten more calls of /v1/status with every stream open
	slowest, calls, failed = watch.end()
	a.streamsStatus = slowest
	tb.Logf("streams: %d open, %d refused with 503; slowest answer %s; /v1/status %d calls, slowest %s", a.open, a.refused, a.slowestStream, calls, slowest)
	if len(failed) > 0 {
		tb.Errorf("/v1/status failed with %d streams open: %v", a.open, failed)
	}
	if a.open == 0 || a.open+a.refused != abuseStreams {
		tb.Fatalf("open %d, refused %d of %d", a.open, a.refused, abuseStreams)
	}
	// An event reaches an open stream.
	post(tb, l, "/v1/reload", nil)
	r := bufio.NewReader(open[0])
	deadline := time.Now().Add(10 * time.Second)
	for {
		line, err := r.ReadString('\n')
		if err != nil || time.Now().After(deadline) {
			tb.Fatalf("the stream never carried the reload: %v", err)
		}
		if strings.Contains(line, `"kind":"`+journal.KindReload+`"`) {
			break
		}
	}
	return a
}

// TestAPIUnderAbuse runs abuseTheAPI and checks what must hold whatever
// the machine's speed: the lab's files that hold tokens are 0600, every
// /v1/status call is answered, unmatched alerts are neither kept nor
// journaled one by one (the journal grows by less than 1 MB), and every
// stream is answered, with 503 beyond api.max_streams. How fast it
// answers, and the peak RSS, are BenchmarkAPIUnderAbuse's to judge.
func TestAPIUnderAbuse(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	l := startAbuseLab(t)
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
	a := abuseTheAPI(t, l)
	if a.journalGrew >= 1<<20 {
		t.Errorf("the journal grew by %d bytes, want under 1 MB", a.journalGrew)
	}
	if a.refused == 0 {
		t.Errorf("all %d streams were opened; api.max_streams should have refused some", abuseStreams)
	}
}

// BenchmarkAPIUnderAbuse measures abuseTheAPI (make bench) against the
// goals: peak RSS under 150 MB; /v1/status under 100ms during the flood
// and with the streams open; every stream answered within a second.
func BenchmarkAPIUnderAbuse(b *testing.B) {
	l := startAbuseLab(b)
	var worst abuse
	for b.Loop() {
		a := abuseTheAPI(b, l)
		worst.peakKB = max(worst.peakKB, a.peakKB)
		worst.floodStatus = max(worst.floodStatus, a.floodStatus)
		worst.streamsStatus = max(worst.streamsStatus, a.streamsStatus)
		worst.slowestStream = max(worst.slowestStream, a.slowestStream)
	}
	b.ReportMetric(float64(worst.peakKB)/1024, "peak-RSS-MB")
	b.ReportMetric(float64(worst.floodStatus.Microseconds())/1000, "flood-status-max-ms")
	b.ReportMetric(float64(worst.streamsStatus.Microseconds())/1000, "streams-status-max-ms")
	b.ReportMetric(float64(worst.slowestStream.Microseconds())/1000, "stream-answer-max-ms")
	if worst.peakKB > 150*1024 {
		b.Errorf("peak RSS %d kB, want under 150 MB", worst.peakKB)
	}
	if worst.floodStatus >= 100*time.Millisecond || worst.streamsStatus >= 100*time.Millisecond {
		b.Errorf("/v1/status took %s during the flood and %s with the streams open, want under 100ms", worst.floodStatus, worst.streamsStatus)
	}
	if worst.slowestStream > time.Second {
		b.Errorf("the slowest stream answered after %s, want within 1s", worst.slowestStream)
	}
}

// idleAlert is the alertname of the sweep lab's idle groups' alert rules;
// its nomad_job label names the group's job.
const idleAlert = "IdleBacklog"

// sweepPolicies writes n policies for count-0 jobs idle-0..idle-(n-1),
// every one with a Prometheus query, evaluated every 10s, and an alert
// rule: an idleAlert whose nomad_job label is the policy's job triggers
// an evaluation of its group. The rule's action, "to 0", holds the group
// where it is, so an alert is evaluated and journaled without renting a
// host for the idle node pool.
func sweepPolicies(t testing.TB, dir string, n int) {
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
alerts:
  - {alert: %s, matchers: ['nomad_job="idle-%d"'], action: "to 0"}
`, i, i, idleAlert, i)
	}
	if err := os.WriteFile(filepath.Join(dir, "idle.yaml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// registerIdleJobs registers n count-0 raw_exec jobs in node pool "idle".
func registerIdleJobs(t testing.TB, l *lab.Lab, n int) {
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

// sweepGroups is how many idle groups the sweep lab's sweeps evaluate.
const sweepGroups = 1000

// startSweepLab starts a lab whose control plane evaluates 1,000 idle
// groups every 10s (an idleAlert triggers one at once), beside the demo's
// alert-driven policy.
func startSweepLab(tb testing.TB) *lab.Lab {
	policyDir := tb.TempDir()
	if err := os.WriteFile(filepath.Join(policyDir, "alerts.yaml"), []byte(alertPolicy), 0o644); err != nil {
		tb.Fatal(err)
	}
	sweepPolicies(tb, policyDir, sweepGroups)
	opts := lab.DefaultOptions()
	opts.SharedHosts = 0
	opts.BusinessUnits = []lab.BusinessUnit{{Name: "bu-a", Hosts: 2}}
	opts.Policies = policyDir
	l := labtest.Start(tb, opts)
	registerIdleJobs(tb, l, sweepGroups)
	return l
}

// sweptAlert is what alertDuringASweep saw.
type sweptAlert struct {
	// Lag is from the alert's acceptance to its scale event.
	lag time.Duration
	// BeforeSweepEnd says the scale event came before the sweep was seen
	// to finish: the alert did not wait behind it.
	beforeSweepEnd bool
	scale          journal.Event
}

// alertDuringASweep posts an alert the moment a sweep of the 1,000 groups
// starts, and waits for its scale event and for the sweep's end.
func alertDuringASweep(t testing.TB, l *lab.Lab) sweptAlert {
	t.Helper()
	const n = sweepGroups

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
	// Watch for the sweep's end beside the wait for the scale event, so
	// that when it ended does not depend on when the scale was seen.
	sweepEnded := make(chan time.Time, 1)
	go func() {
		defer close(sweepEnded)
		for time.Now().Before(deadline) {
			if sweeps()-started >= n {
				sweepEnded <- time.Now()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
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
	sweepEnd, ok := <-sweepEnded
	if !ok {
		t.Fatalf("the sweep never finished: %.0f of %d evaluated", sweeps()-started, n)
	}
	t.Logf("the alert, posted as a sweep of %d groups started, reached its scale event %s after it was accepted; the sweep took about %s: %s",
		n, lag, sweepEnd.Sub(sweepStart).Round(10*time.Millisecond), scale.Message)
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
	return sweptAlert{lag: lag, beforeSweepEnd: scale.Time.Before(sweepEnd), scale: scale}
}

// alertedGroups is how many of the sweep lab's idle groups
// alertsForManyGroups alerts, one alert each.
const alertedGroups = 200

// alertBatches splits alertsForManyGroups' alerts into notifications of
// several sizes, as Alertmanager sends one per alert group: 200 in all.
var alertBatches = []int{1, 2, 5, 12, 20, 40, 50, 70}

// alertsForManyGroups posts 200 distinct alerts (fingerprints and labels),
// each for a different idle group (every fifth of the 1,000), within one
// second: eight notifications of 1 to 70 alerts, sent at once. No trigger
// may be lost: it waits, for up to two minutes, until every one of the 200
// groups has a decision journaled that its alert caused (the decision's
// alerts name the alert's fingerprint, and its cause is not the interval).
// The webhook's alert.accepted events prove nothing here: they are
// written before the triggers are queued. Then the triggered evaluations
// counted rose by at least 200, none was coalesced (each group had one
// trigger), and none is pending.
func alertsForManyGroups(t *testing.T, l *lab.Lab) {
	t.Helper()
	sum := 0
	for _, n := range alertBatches {
		sum += n
	}
	if sum != alertedGroups || alertedGroups*5 > sweepGroups {
		t.Fatalf("the batches hold %d alerts for %d groups of %d", sum, alertedGroups, sweepGroups)
	}
	const (
		triggered = `spillway_evaluations_total{reason="trigger"}`
		coalesced = `spillway_triggers_coalesced_total`
		pending   = `spillway_triggers_pending`
	)
	metric := func(name string) float64 {
		t.Helper()
		v, ok := metricValue(t, l.SpillwayURL, name)
		if !ok {
			t.Fatalf("/metrics has no %s", name)
		}
		return v
	}
	triggeredBefore, coalescedBefore := metric(triggered), metric(coalesced)

	// The alert of each group, by the group's subject: fingerprint.
	stamp := time.Now().UnixNano()
	want := map[string]string{}
	var bodies [][]byte
	g := 0
	for k, n := range alertBatches {
		var as []map[string]any
		for range n {
			job := fmt.Sprintf("idle-%d", g*5)
			fp := fmt.Sprintf("e2e-%s-%x", job, stamp)
			want["default/"+job+"/web"] = fp
			as = append(as, map[string]any{
				"status": "firing", "fingerprint": fp, "startsAt": time.Now().UTC().Format(time.RFC3339Nano),
				"endsAt": "0001-01-01T00:00:00Z",
				"labels": map[string]string{"alertname": idleAlert, "nomad_job": job, "severity": "page"},
			})
			g++
		}
		body, err := json.Marshal(map[string]any{
			"version": "4", "status": "firing", "receiver": "spillway",
			"groupKey": fmt.Sprintf(`{}:{alertname="%s",batch="%d"}`, idleAlert, k), "alerts": as,
		})
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, body)
	}

	// Post every notification at once.
	type answer struct {
		code int
		body string
		err  error
	}
	answers := make([]answer, len(bodies))
	var wg sync.WaitGroup
	start := time.Now()
	for i, body := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequest(http.MethodPost, l.SpillwayURL+"/v1/alerts/alertmanager", bytes.NewReader(body))
			if err != nil {
				answers[i].err = err
				return
			}
			req.Header.Set("Authorization", "Bearer "+l.APIToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				answers[i].err = err
				return
			}
			defer resp.Body.Close()
			out, _ := io.ReadAll(resp.Body)
			answers[i] = answer{code: resp.StatusCode, body: string(out)}
		}()
	}
	wg.Wait()
	posted := time.Since(start)
	accepted := 0
	for i, a := range answers {
		var r struct{ Accepted int }
		if a.err != nil || a.code != http.StatusOK || json.Unmarshal([]byte(a.body), &r) != nil {
			t.Fatalf("notification %d (%d alerts): %d %s %v", i, alertBatches[i], a.code, a.body, a.err)
		}
		accepted += r.Accepted
	}
	if posted > time.Second {
		t.Fatalf("posting %d alerts in %d notifications took %s, want within 1s", alertedGroups, len(bodies), posted)
	}
	if accepted != alertedGroups {
		t.Fatalf("the webhook accepted %d alerts, want %d", accepted, alertedGroups)
	}

	// Wait until each group has a decision its alert caused.
	since := start.Add(-time.Second).UTC().Format(time.RFC3339Nano)
	decided := map[string]journal.Event{}
	missing := func() []string {
		var out []string
		for subject := range want {
			if _, ok := decided[subject]; !ok {
				out = append(out, subject)
			}
		}
		sort.Strings(out)
		return out
	}
	cursor := ""
	deadline := time.Now().Add(2 * time.Minute)
	for len(decided) < alertedGroups {
		q := url.Values{"kind": {journal.KindDecision}, "since": {since}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		evs := events(t, l, q.Encode())
		for _, ev := range evs {
			fp, ok := want[ev.Subject]
			if !ok {
				continue
			}
			var data struct {
				Alerts []string `json:"alerts"`
				Cause  string   `json:"cause"`
			}
			if err := json.Unmarshal(ev.Data, &data); err != nil {
				t.Fatalf("decision %d: %v", ev.Seq, err)
			}
			if slices.Contains(data.Alerts, fp) && !strings.HasPrefix(data.Cause, scaler.CauseInterval) {
				decided[ev.Subject] = ev
			}
		}
		if len(evs) > 0 {
			cursor = strconv.FormatInt(evs[len(evs)-1].Seq, 10)
		}
		if len(evs) == 1000 {
			continue // more on the next page
		}
		if len(decided) == alertedGroups {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 2 minutes, %d of the %d alerted groups have no decision caused by their alert (%s %.0f → %.0f, %s %.0f): %v",
				alertedGroups-len(decided), alertedGroups, triggered, triggeredBefore, metric(triggered), pending, metric(pending), missing())
		}
		time.Sleep(200 * time.Millisecond)
	}
	var last time.Time
	for _, ev := range decided {
		if ev.Time.After(last) {
			last = ev.Time
		}
	}
	t.Logf("%d alerts for %d groups posted in %d notifications in %s; the last group's triggered decision came %s after the first post",
		alertedGroups, alertedGroups, len(bodies), posted.Round(time.Millisecond), last.Sub(start).Round(time.Millisecond))

	if got := metric(triggered) - triggeredBefore; got < alertedGroups {
		t.Errorf("%s rose by %.0f, want at least %d", triggered, got, alertedGroups)
	}
	if got := metric(coalesced) - coalescedBefore; got != 0 {
		t.Errorf("%s rose by %.0f, want 0: each group had one trigger", coalesced, got)
	}
	if got := metric(pending); got != 0 {
		t.Errorf("%s is %.0f once every group was evaluated, want 0", pending, got)
	}
}

// TestAlertDuringASweepOfAThousandPolicies runs two checks in one lab
// evaluating 1,000 policies. First it posts an alert just as a sweep of
// the 1,000 starts: its scale event names the alert as its cause, and
// comes before the sweep ends (how soon is BenchmarkAlertDuringASweep's to
// judge). Then it posts 200 alerts for 200 groups within a second, and
// every one of them triggers an evaluation of its group
// (alertsForManyGroups).
func TestAlertDuringASweepOfAThousandPolicies(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	l := startSweepLab(t)
	t.Run("an alert as a sweep starts", func(t *testing.T) {
		a := alertDuringASweep(t, l)
		if !a.beforeSweepEnd {
			t.Errorf("the alert's scale event (%s) came after the sweep ended: it waited behind the sweep", a.scale.Time.Format(time.StampMilli))
		}
	})
	t.Run("200 alerts for 200 groups within a second", func(t *testing.T) {
		alertsForManyGroups(t, l)
	})
}

// BenchmarkAlertDuringASweep measures, for make bench, how soon an alert
// posted as a sweep of 1,000 groups starts reaches its scale event
// (goal: under 1s).
func BenchmarkAlertDuringASweep(b *testing.B) {
	l := startSweepLab(b)
	var lag time.Duration
	for b.Loop() {
		lag = max(lag, alertDuringASweep(b, l).lag)
	}
	b.ReportMetric(float64(lag.Microseconds())/1000, "alert-to-scale-ms")
	if lag >= time.Second {
		b.Errorf("the alert reached its scale event after %s, want under 1s", lag)
	}
}
