package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spillwayhq/spillway/policies"
)

// runModel runs a model of f on a fake clock until the test ends.
func runModel(t *testing.T, f *fakeNomad, o Options) (*Model, *clockwork.FakeClock, *recorder) {
	t.Helper()
	clock := clockwork.NewFakeClock()
	rec := newRecorder()
	reg := prometheus.NewRegistry()
	o.Client, o.Clock, o.Logger, o.Registerer = f.client(), clock, slog.New(rec), reg
	m := New(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return m, clock, rec
}

// waitFor waits for a snapshot ok accepts.
func waitFor(t *testing.T, m *Model, what string, ok func(*Snapshot) bool) *Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		s := m.Snapshot()
		if ok(s) {
			return s
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within 10s (sync %+v)", what, s.Sync())
		case <-s.Changed():
		}
	}
}

func live(s *Snapshot) bool    { return s.Live() }
func notLive(s *Snapshot) bool { return !s.Live() }

// retry waits for the model's retry after a break (its wait on the clock)
// and steps the clock past it.
func retry(t *testing.T, clock *clockwork.FakeClock, wait time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatalf("the model does not wait to list again: %v", err)
	}
	clock.Advance(wait)
}

// TestBackoffResetsAfterHealthyStream: every break after the first waits
// twice as long as the one before, until the stream has been healthy for
// Options.Healthy; the next break is then retried after the first wait.
func TestBackoffResetsAfterHealthyStream(t *testing.T) {
	f := newFakeNomad(t)
	m, clock, rec := runModel(t, f, Options{Healthy: time.Minute, MaxBackoff: 30 * time.Second})
	f.waitStream(t)
	waitFor(t, m, "the model lists", live)

	breakOnce := func(want time.Duration) {
		t.Helper()
		f.breakStream()
		attrs := rec.next(t, "the cluster model lost Nomad; listing again")
		if got := attrs["retry_in"].Duration(); got != want {
			t.Fatalf("after a break the model retries in %s, want %s", got, want)
		}
		retry(t, clock, want)
		f.waitStream(t)
		waitFor(t, m, "the model lists again", live)
	}
	// Breaks in quick succession back off.
	breakOnce(time.Second)
	breakOnce(2 * time.Second)
	breakOnce(4 * time.Second)
	// Healthy for a while: the next break is retried quickly again.
	clock.Advance(time.Minute)
	breakOnce(time.Second)
	breakOnce(2 * time.Second)
}

// TestUndecodableEventRelists: an event the model cannot read makes it
// list again (a metric and a log line say why), which brings the change
// it could not read.
func TestUndecodableEventRelists(t *testing.T) {
	f := newFakeNomad(t)
	m, clock, rec := runModel(t, f, Options{})
	f.waitStream(t)
	waitFor(t, m, "the model lists", live)

	idx := f.edit(func(index uint64) {
		f.nodes["n1"] = nomadNode("n1", index, map[string]string{"spillway.serves": "bu-a"})
	})
	// A node whose ID is a number: Nomad's Node cannot hold it.
	f.send(fmt.Sprintf(`{"Index":%d,"Events":[{"Topic":"Node","Type":"NodeRegistration","Key":"n1","Index":%d,"Payload":{"Node":{"ID":7}}}]}`, idx, idx))
	waitFor(t, m, "the model stops being live", notLive)
	attrs := rec.next(t, "the cluster model lost Nomad; listing again")
	if attrs["reason"].String() != "undecodable_event" {
		t.Errorf("the log line gives the reason %q", attrs["reason"])
	}
	if got := testutil.ToFloat64(m.relists.WithLabelValues("undecodable_event")); got != 1 {
		t.Errorf("spillway_cluster_relists_total{reason=undecodable_event} = %v, want 1", got)
	}
	retry(t, clock, time.Second)
	s := waitFor(t, m, "the model lists again", live)
	if n, ok := s.Node("n1"); !ok || n.Meta["spillway.serves"] != "bu-a" {
		t.Fatalf("the node the event was about, after the list: %+v", n)
	}
	if got := testutil.ToFloat64(m.lists.WithLabelValues("ok")); got != 2 {
		t.Errorf("%v lists, want 2", got)
	}
}

// TestListPagesAndReadsOnlyChanges: a list is one paged request per kind;
// nodes and jobs are read one by one (Nomad 1.6 lists neither a node's
// meta nor a job's groups) the first time only, and after a break only
// those that changed meanwhile.
func TestListPagesAndReadsOnlyChanges(t *testing.T) {
	f := newFakeNomad(t)
	f.edit(func(index uint64) {
		for i := range 3 {
			id := fmt.Sprintf("n%d", i)
			f.nodes[id] = nomadNode(id, index, map[string]string{"spillway.serves": "bu-a"})
		}
		for i := range 5 {
			j := demoJob(2, index)
			j.ID = ptr(fmt.Sprintf("job-%d", i))
			f.jobs[*j.ID] = j
		}
		for i := range 7 {
			a := nomadAlloc(fmt.Sprintf("a%d", i), "n0", "running", index)
			f.allocs[a.ID] = a
		}
	})
	m, clock, _ := runModel(t, f, Options{PageSize: 2})
	f.waitStream(t)
	s := waitFor(t, m, "the model lists", live)
	if s.NodeCount() != 3 || s.JobCount() != 5 || s.AllocCount() != 7 {
		t.Fatalf("listed %d nodes, %d jobs, %d allocations; want 3, 5, 7", s.NodeCount(), s.JobCount(), s.AllocCount())
	}
	if n, _ := s.Node("n2"); n.Meta["spillway.serves"] != "bu-a" || n.CPU != 1900 {
		t.Fatalf("node n2: %+v", n)
	}
	if g, ok := s.Group(policies.Target{Namespace: "default", Job: "job-4", Group: "web"}); !ok || g.Count != 2 || g.PerAlloc.CPUMHz != 250 {
		t.Fatalf("job-4's group: %+v", g)
	}
	if u, _ := s.Usage("n0"); u.UsedCPU != 7*250 {
		t.Fatalf("n0's usage: %+v", u)
	}
	want := map[string]int{"stream": 1, "nodes": 2, "node": 3, "allocations": 4, "jobs": 3, "job": 5, "deployments": 1}
	if got := f.requestCounts(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the first list made requests %v, want %v", got, want)
	}

	// Meanwhile one node and one job change, one job goes, one comes.
	f.breakStream()
	waitFor(t, m, "the model notices the break", notLive)
	f.edit(func(index uint64) {
		f.nodes["n1"] = nomadNode("n1", index, map[string]string{"spillway.serves": "bu-b"})
		j := demoJob(6, index)
		j.ID = ptr("job-1")
		f.jobs["job-1"] = j
		delete(f.jobs, "job-3")
		j = demoJob(1, index)
		j.ID = ptr("job-9")
		f.jobs["job-9"] = j
	})
	retry(t, clock, time.Second)
	f.waitStream(t)
	s = waitFor(t, m, "the model lists again", live)
	if n, _ := s.Node("n1"); n.Meta["spillway.serves"] != "bu-b" {
		t.Errorf("the changed node: %+v", n)
	}
	if g, _ := s.Group(policies.Target{Namespace: "default", Job: "job-1", Group: "web"}); g == nil || g.Count != 6 {
		t.Errorf("the changed job's group: %+v", g)
	}
	if _, ok := s.Job("default", "job-3"); ok {
		t.Error("a job Nomad no longer has is still in the model")
	}
	if _, ok := s.Job("default", "job-9"); !ok {
		t.Error("a new job is not in the model")
	}
	want = map[string]int{"stream": 1, "nodes": 2, "node": 1, "allocations": 4, "jobs": 3, "job": 2, "deployments": 1}
	if got := f.requestCounts(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the list after the break made requests %v, want %v", got, want)
	}
}

// advanceUntil steps the clock by step until ok accepts a snapshot, up to
// n steps, giving the model a moment after each.
func advanceUntil(t *testing.T, m *Model, clock *clockwork.FakeClock, step time.Duration, n int, what string, ok func(*Snapshot) bool) time.Duration {
	t.Helper()
	var advanced time.Duration
	for range n {
		clock.Advance(step)
		advanced += step
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		for s := m.Snapshot(); !ok(s); s = m.Snapshot() {
			select {
			case <-ctx.Done():
			case <-s.Changed():
				continue
			}
			break
		}
		cancel()
		if ok(m.Snapshot()) {
			return advanced
		}
	}
	t.Fatalf("%s: not within %s of the model's clock (sync %+v)", what, advanced, m.Snapshot().Sync())
	return advanced
}

// TestSilentNomadIsNotLive: a Nomad that keeps the event stream open but
// answers nothing (a hung server), or answers without a leader, leaves the
// model live for at most StaleAfter: then it is unknown (not live), says
// why, and lists again once Nomad answers.
func TestSilentNomadIsNotLive(t *testing.T) {
	for _, tc := range []struct {
		name   string
		silent func(f *fakeNomad)
	}{
		{"hung", func(f *fakeNomad) { f.hang = true }},
		{"no leader", func(f *fakeNomad) { f.leader = "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeNomad(t)
			m, clock, rec := runModel(t, f, Options{StaleAfter: 30 * time.Second})
			f.waitStream(t)
			waitFor(t, m, "the model lists", live)
			// Answering: the model stays live however long the stream is quiet.
			clock.Advance(10 * time.Second)
			for f.requestCounts()["leader"] == 0 {
				time.Sleep(10 * time.Millisecond)
			}
			f.mu.Lock()
			tc.silent(f)
			f.mu.Unlock()
			took := advanceUntil(t, m, clock, 10*time.Second, 10, "the model stops being live", notLive)
			if took < 30*time.Second {
				t.Errorf("the model stopped being live %s after Nomad went silent, before StaleAfter (30s)", took)
			}
			attrs := rec.next(t, "the cluster model lost Nomad; listing again")
			if attrs["reason"].String() != "silent" {
				t.Errorf("the log line gives the reason %q, want silent (%s)", attrs["reason"], attrs["err"])
			}
			if got := testutil.ToFloat64(m.relists.WithLabelValues("silent")); got != 1 {
				t.Errorf("spillway_cluster_relists_total{reason=silent} = %v, want 1", got)
			}
			// Nomad answers again: the model lists and is live.
			f.mu.Lock()
			f.hang, f.leader = false, "127.0.0.1:4647"
			f.mu.Unlock()
			retry(t, clock, time.Second)
			waitFor(t, m, "the model lists again", live)
		})
	}
}
