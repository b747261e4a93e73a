package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/scaler"
	"github.com/spillwayhq/spillway/internal/lab"
	"github.com/spillwayhq/spillway/internal/lab/labtest"
)

// relistInterval is the evaluation interval of relistPolicy.
const relistInterval = 2 * time.Second

// nomadDown is how long each restart leaves the Nomad server down: longer
// than the longest time between two evaluations (an interval and the
// sweep's one-second tick), so the model is not live for at least one.
const nomadDown = 2*relistInterval + time.Second

// relistPolicy evaluates the demo every relistInterval and wants the count
// it has: every evaluation that reads the group's count decides.
var relistPolicy = fmt.Sprintf(`apiVersion: spillway/v1
kind: ScalingPolicy
name: demo-steady
business_unit: bu-a
target: {namespace: default, job: demo, group: web}
min: 1
max: 4
evaluation_interval: %s
checks:
  - name: steady
    fixed: {count: 2}
`, relistInterval)

// cpSample is one reading of the control plane's metrics.
type cpSample struct {
	at time.Time
	// decisions counts the evaluations that read the group and decided
	// (spillway_decisions_total, every direction); evaluations counts
	// every attempt (spillway_evaluations_total).
	decisions, evaluations float64
	live                   bool
}

// metricFamily reads every series of one metric family from a /metrics
// page, keyed by the series as written (name and labels).
func metricFamily(body, family string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, family+"{") && !strings.HasPrefix(line, family+" ") {
			continue
		}
		series, value, ok := strings.Cut(line, " ")
		if i := strings.LastIndex(line, "} "); i >= 0 {
			series, value, ok = line[:i+1], line[i+2:], true
		}
		var v float64
		if _, err := fmt.Sscan(value, &v); ok && err == nil {
			out[series] = v
		}
	}
	return out
}

func sum(m map[string]float64) float64 {
	var s float64
	for _, v := range m {
		s += v
	}
	return s
}

// scrape reads the control plane's metrics page.
func scrape(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// TestEvaluationSurvivesNomadRestarts restarts the lab's Nomad server
// twice, down for a few seconds each time, the cluster model live again in
// between: each restart breaks the model's event stream, and the model
// lists Nomad again (spillway_cluster_relists_total). Evaluation goes on
// through each break on the last known counts: no gap between decisions is
// longer than one failed interval, the journal says once per break that
// the counts were stale and since when (counts.stale), and nothing is
// scaled.
func TestEvaluationSurvivesNomadRestarts(t *testing.T) {
	t.Parallel()
	labtest.Takes(t, 40*time.Second)
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	policyDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(policyDir, "steady.yaml"), []byte(relistPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := lab.DefaultOptions()
	opts.SharedHosts = 0
	opts.BusinessUnits = []lab.BusinessUnit{{Name: "bu-a", Hosts: 1}}
	opts.Policies = policyDir
	l := labtest.Start(t, opts)
	ctx := t.Context()

	// The control plane's metrics, read every 200ms for the whole test.
	var (
		mu      sync.Mutex
		samples []cpSample
	)
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if body, err := scrape(sctx, l.SpillwayURL); err == nil {
				s := cpSample{
					at:          time.Now(),
					decisions:   sum(metricFamily(body, "spillway_decisions_total")),
					evaluations: sum(metricFamily(body, "spillway_evaluations_total")),
					live:        sum(metricFamily(body, "spillway_cluster_live")) == 1,
				}
				mu.Lock()
				samples = append(samples, s)
				mu.Unlock()
			}
			select {
			case <-sctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	defer func() { stop(); wg.Wait() }()
	// waitSample waits for a sample taken after since that ok accepts.
	waitSample := func(what string, since time.Time, within time.Duration, ok func(cpSample) bool) cpSample {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			mu.Lock()
			for _, s := range samples {
				if s.at.After(since) && ok(s) {
					mu.Unlock()
					return s
				}
			}
			mu.Unlock()
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s", what, within)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	relists := func() map[string]float64 {
		t.Helper()
		body, err := scrape(ctx, l.SpillwayURL)
		if err != nil {
			t.Fatal(err)
		}
		return metricFamily(body, "spillway_cluster_relists_total")
	}

	up := waitSample("a live model and a decision", time.Time{}, time.Minute, func(s cpSample) bool { return s.live && s.decisions > 0 })
	// A decision seen as it is made: the first restart's window opens with it.
	first := waitSample("the next decision", up.at, 3*relistInterval, func(s cpSample) bool { return s.decisions > up.decisions })
	t.Logf("before the restarts: %v decisions, %v evaluations", first.decisions, first.evaluations)

	type restart struct{ start, up, live time.Time }
	var restarts []restart
	for i := 1; i <= 2; i++ {
		before := relists()
		r := restart{start: time.Now()}
		if err := l.RestartNomadServer(ctx, nomadDown); err != nil {
			t.Fatal(err)
		}
		r.up = time.Now()
		// The model noticed, then follows Nomad again.
		down := waitSample(fmt.Sprintf("restart %d: the model not live", i), r.start, 30*time.Second, func(s cpSample) bool { return !s.live })
		live := waitSample(fmt.Sprintf("restart %d: the model live again", i), down.at, 90*time.Second, func(s cpSample) bool { return s.live })
		r.live = live.at
		// A decision after the model is live: on the current counts again.
		waitSample(fmt.Sprintf("restart %d: a decision after the model is live", i), r.live, 3*relistInterval,
			func(s cpSample) bool { return s.decisions > live.decisions })
		after := relists()
		t.Logf("restart %d: nomad down and up in %s, the model live again %s after the restart began; relists %v",
			i, r.up.Sub(r.start).Round(100*time.Millisecond), r.live.Sub(r.start).Round(100*time.Millisecond), after)
		broke := after[`spillway_cluster_relists_total{reason="stream_broke"}`] - before[`spillway_cluster_relists_total{reason="stream_broke"}`] +
			after[`spillway_cluster_relists_total{reason="list_failed"}`] - before[`spillway_cluster_relists_total{reason="list_failed"}`]
		if broke < 1 {
			t.Errorf("restart %d: no re-list for a broken stream or a failed list: before %v, after %v", i, before, after)
		}
		restarts = append(restarts, r)
	}
	stop()
	wg.Wait()

	// Evaluation did not fail for more than one interval around each
	// restart: between one decision and the next there is at most one
	// failed evaluation (two intervals), plus the sweep's one-second tick
	// and the sampling.
	const maxGap = 2*relistInterval + 1500*time.Millisecond
	var changes []cpSample // the first sample of each new decision count
	for i, s := range samples {
		if i > 0 && s.decisions > samples[i-1].decisions {
			changes = append(changes, s)
		}
	}
	for i, r := range restarts {
		// From the last decision before the restart to the first after the
		// model was live again.
		var window []cpSample
		for _, c := range changes {
			switch {
			case c.at.Before(r.start):
				window = append(window[:0], c)
			case len(window) == 0 || !window[len(window)-1].at.After(r.live):
				window = append(window, c)
			}
		}
		var longest time.Duration
		for j := 1; j < len(window); j++ {
			longest = max(longest, window[j].at.Sub(window[j-1].at))
		}
		t.Logf("restart %d: %d decisions from the last before it to the first after the model was live; the longest gap between two %s",
			i+1, len(window), longest.Round(100*time.Millisecond))
		if len(window) < 2 {
			t.Fatalf("restart %d: no decisions around it: decisions at%s", i+1, decisionTimes(changes, r.start))
		}
		if longest > maxGap {
			t.Errorf("restart %d: evaluation stopped deciding for %s (at most %s: one failed interval); decisions at%s",
				i+1, longest.Round(100*time.Millisecond), maxGap, decisionTimes(changes, r.start))
		}
	}
	// Every evaluation counts (spillway_evaluations_total) before it runs
	// and decides after: just after a decision none is in flight.
	last := changes[len(changes)-1]
	evaluated, decided := last.evaluations-first.evaluations, last.decisions-first.decisions
	t.Logf("during the test: %v evaluations, %v of them decided", evaluated, decided)
	if failed := evaluated - decided; failed > float64(len(restarts)) {
		t.Errorf("%v evaluations failed during %d restarts, at most one each", failed, len(restarts))
	}

	// The journal says why: once per break, evaluated on the counts from
	// when the model last followed Nomad, with no scale-in.
	stale := events(t, l, "kind="+scaler.KindStaleCounts)
	t.Logf("journal, %s:\n%s", scaler.KindStaleCounts, dump(stale))
	for i, r := range restarts {
		var found []time.Time
		for _, ev := range stale {
			var d struct {
				CountsAsOf time.Time `json:"counts_as_of"`
			}
			if err := json.Unmarshal(ev.Data, &d); err != nil {
				t.Fatalf("%s event %d: %v", ev.Kind, ev.Seq, err)
			}
			if !d.CountsAsOf.Before(r.start.Add(-time.Second)) && d.CountsAsOf.Before(r.live) {
				found = append(found, d.CountsAsOf)
				if !strings.Contains(ev.Message, "listing nomad again") || !strings.Contains(ev.Message, "no scale-in") {
					t.Errorf("restart %d: the journal does not say why: %s", i+1, ev.Message)
				}
			}
		}
		if len(found) != 1 {
			t.Errorf("restart %d (%s to %s): %d %s events with counts from then, want 1 (the model was not live for %s, longer than between two evaluations)",
				i+1, r.start.Format(time.StampMilli), r.live.Format(time.StampMilli), len(found), scaler.KindStaleCounts, r.live.Sub(r.start).Round(100*time.Millisecond))
		}
	}

	// Nothing was scaled, and the restarted server kept the cluster: the
	// demo job and its count are still there.
	if scales := events(t, l, "kind=scale"); len(scales) != 0 {
		t.Errorf("scaled during the restarts:\n%s", dump(scales))
	}
	if n := demoCount(t, l); n != opts.Demo.Count {
		t.Errorf("the demo's count is %d after the restarts, want %d", n, opts.Demo.Count)
	}
}

// decisionTimes lists when the decision count rose, relative to t0, for
// a failure message.
func decisionTimes(changes []cpSample, t0 time.Time) string {
	var b strings.Builder
	for _, c := range changes {
		fmt.Fprintf(&b, " %+.1fs", c.at.Sub(t0).Seconds())
	}
	return b.String()
}
