package leader_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spillwayhq/spillway/controlplane/config"
	"github.com/spillwayhq/spillway/controlplane/lab"
	"github.com/spillwayhq/spillway/controlplane/lab/labtest"
	"github.com/spillwayhq/spillway/controlplane/leader"
)

// startNomad starts a lab with the Nomad server only: the election needs
// nothing else.
func startNomad(t *testing.T) string {
	t.Helper()
	// No control plane or demo runs, so no spillway binary is built.
	l := labtest.Start(t, lab.Options{Spillway: "/bin/false"})
	return l.NomadAddr
}

func client(t *testing.T, addr string) *nomad.Client {
	t.Helper()
	cfg := nomad.DefaultConfig()
	cfg.Address, cfg.SecretID, cfg.Region, cfg.Namespace = addr, "", "", ""
	c, err := nomad.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// candidate is a replica in a test: its elector, and a record of its work.
type candidate struct {
	e       *leader.Elector
	reg     *prometheus.Registry
	cancel  context.CancelFunc
	stopped chan struct{}

	mu                 sync.Mutex
	started, cancelled []time.Time
	running            atomic.Bool
}

// active counts candidates running the leader's work, across a test.
type tracker struct {
	active  atomic.Int32
	overlap atomic.Bool
}

func newCandidate(t *testing.T, addr, path, id string, tr *tracker) *candidate {
	t.Helper()
	c := &candidate{reg: prometheus.NewRegistry(), stopped: make(chan struct{})}
	var err error
	c.e, err = leader.New(leader.Options{
		Client: client(t, addr), Path: path, Identity: id,
		TTL: leader.MinTTL, LockDelay: time.Second, RetryInterval: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(testWriter{t, id}, nil)), Registerer: c.reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go func() {
		defer close(c.stopped)
		_ = c.e.Run(ctx, func(ctx context.Context) {
			if tr.active.Add(1) > 1 {
				tr.overlap.Store(true)
			}
			c.running.Store(true)
			c.mu.Lock()
			c.started = append(c.started, time.Now())
			c.mu.Unlock()
			<-ctx.Done()
			c.mu.Lock()
			c.cancelled = append(c.cancelled, time.Now())
			c.mu.Unlock()
			c.running.Store(false)
			tr.active.Add(-1)
		})
	}()
	t.Cleanup(func() { c.stop(t) })
	return c
}

func (c *candidate) stop(t *testing.T) {
	c.cancel()
	select {
	case <-c.stopped:
	case <-time.After(30 * time.Second):
		t.Errorf("%s: Run did not return after its context ended", c.e.Identity())
	}
}

func waitLeader(t *testing.T, within time.Duration, cs ...*candidate) *candidate {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, c := range cs {
			if c.e.IsLeader() && c.running.Load() {
				return c
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no leader within %s", within)
	return nil
}

func TestElection(t *testing.T) {
	addr := startNomad(t)

	t.Run("ExactlyOneLeads", func(t *testing.T) {
		tr := &tracker{}
		a := newCandidate(t, addr, "spillway/test-one", "a", tr)
		b := newCandidate(t, addr, "spillway/test-one", "b", tr)
		first := waitLeader(t, 15*time.Second, a, b)
		other := b
		if first == b {
			other = a
		}
		// For over a TTL (renewals included), one leads and the other waits.
		for end := time.Now().Add(leader.MinTTL + 2*time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			if !first.e.IsLeader() || other.e.IsLeader() || other.running.Load() {
				t.Fatalf("leadership moved or doubled: %s leader=%v, %s leader=%v", first.e.Identity(), first.e.IsLeader(), other.e.Identity(), other.e.IsLeader())
			}
		}
		if tr.overlap.Load() {
			t.Fatal("two candidates ran the leader's work at once")
		}
		if got := other.e.Leader(); got != first.e.Identity() {
			t.Errorf("the follower sees leader %q, want %q", got, first.e.Identity())
		}
		if v := testutil.ToFloat64(gauge(t, first.reg)); v != 1 {
			t.Errorf("leader's spillway_leader = %v", v)
		}
		if v := testutil.ToFloat64(gauge(t, other.reg)); v != 0 {
			t.Errorf("follower's spillway_leader = %v", v)
		}
	})

	t.Run("CancelledLeaderHandsOverWithinTTL", func(t *testing.T) {
		tr := &tracker{}
		a := newCandidate(t, addr, "spillway/test-cancel", "a", tr)
		b := newCandidate(t, addr, "spillway/test-cancel", "b", tr)
		first := waitLeader(t, 15*time.Second, a, b)
		next := b
		if first == b {
			next = a
		}
		killed := time.Now()
		first.stop(t)
		if first.e.IsLeader() || first.running.Load() {
			t.Fatal("a stopped candidate still leads")
		}
		waitLeader(t, leader.MinTTL, next)
		t.Logf("handover took %s", time.Since(killed).Round(time.Millisecond))
		if tr.overlap.Load() {
			t.Fatal("two candidates ran the leader's work at once")
		}
		first.mu.Lock()
		defer first.mu.Unlock()
		next.mu.Lock()
		defer next.mu.Unlock()
		if len(first.cancelled) != 1 || !first.cancelled[0].Before(next.started[0]) {
			t.Fatalf("the old leader's work must stop before the new one's starts: %v, %v", first.cancelled, next.started)
		}
		if v := testutil.ToFloat64(transitions(t, first.reg, "follower")); v != 1 {
			t.Errorf("stopped leader's follower transitions = %v", v)
		}
	})

	t.Run("LeaderWhoseLockIsTakenCancelsItsWork", func(t *testing.T) {
		// An operator force-releases the lock (as management can) and the
		// other candidate takes it: the old leader's next renewal is refused,
		// and it cancels its work at once instead of waiting for the TTL.
		path := "spillway/test-stolen"
		tr := &tracker{}
		a := newCandidate(t, addr, path, "a", tr)
		waitLeader(t, 15*time.Second, a)
		b := newCandidate(t, addr, path, "b", tr)
		nc := client(t, addr)
		v, _, err := nc.Variables().Peek(path, nil)
		if err != nil || v == nil || v.LockID() == "" {
			t.Fatalf("reading the lock as management: %+v, %v", v, err)
		}
		if v.Items["holder"] != "a" {
			t.Errorf("the lock variable names holder %q, want a", v.Items["holder"])
		}
		stolen := time.Now()
		if _, _, err := nc.Variables().ReleaseLock(&nomad.Variable{Path: path, Lock: &nomad.VariableLock{ID: v.LockID()}}, nil); err != nil {
			t.Fatal(err)
		}
		waitLeader(t, 5*time.Second, b)
		deadline := time.Now().Add(leader.MinTTL)
		for a.running.Load() || a.e.IsLeader() {
			if time.Now().After(deadline) {
				t.Fatal("the leader whose lock was taken still runs its work")
			}
			time.Sleep(20 * time.Millisecond)
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		// Renewals come every TTL/3: the refusal is seen within one.
		if took := a.cancelled[0].Sub(stolen); took > leader.MinTTL/3+2*time.Second {
			t.Errorf("the old leader stopped %s after losing the lock; want within a renewal period", took)
		}
	})

	t.Run("PartitionedLeaderStopsBeforeHandover", func(t *testing.T) {
		// The leader talks to Nomad through a proxy the test cuts: it can no
		// longer renew, so it must cancel its work by the TTL, and the other
		// candidate takes over only after that (TTL + lock delay).
		p := newProxy(t, addr)
		tr := &tracker{}
		a := newCandidate(t, p.addr(), "spillway/test-partition", "a", tr)
		first := waitLeader(t, 15*time.Second, a)
		b := newCandidate(t, addr, "spillway/test-partition", "b", tr)
		time.Sleep(500 * time.Millisecond)
		if b.e.IsLeader() {
			t.Fatal("a second candidate leads while the first holds the lock")
		}
		cut := time.Now()
		p.cut()
		// Nomad frees an unrenewed lock after twice its TTL, then the delay.
		waitLeader(t, 2*leader.MinTTL+5*time.Second, b)
		t.Logf("handover after the partition took %s", time.Since(cut).Round(time.Millisecond))
		if tr.overlap.Load() {
			t.Fatal("two candidates ran the leader's work at once")
		}
		first.mu.Lock()
		defer first.mu.Unlock()
		b.mu.Lock()
		defer b.mu.Unlock()
		if len(first.cancelled) != 1 {
			t.Fatal("the partitioned leader did not cancel its work")
		}
		if lost := first.cancelled[0].Sub(cut); lost > leader.MinTTL {
			t.Errorf("the partitioned leader stopped %s after losing Nomad, beyond the TTL", lost)
		}
		if !first.cancelled[0].Before(b.started[0]) {
			t.Fatalf("the old leader's work must stop before the new one's starts: %v, %v", first.cancelled, b.started)
		}
		if first.e.IsLeader() {
			t.Fatal("the partitioned candidate still claims leadership")
		}
	})
}

func gauge(t *testing.T, reg *prometheus.Registry) prometheus.Collector {
	return collector(t, reg, "spillway_leader", nil)
}

func transitions(t *testing.T, reg *prometheus.Registry, to string) prometheus.Collector {
	return collector(t, reg, "spillway_leader_transitions_total", map[string]string{"to": to})
}

// collector finds a metric in reg as a constant collector for testutil.
func collector(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metrics
				}
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: name}, func() float64 { return v })
		}
	}
	t.Fatalf("no metric %s%v", name, labels)
	return nil
}

// proxy forwards TCP to Nomad until cut, then refuses and drops everything.
type proxy struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
	done  bool
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l}
	dst := target[len("http://"):]
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			d, err := net.Dial("tcp", dst)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			if p.done {
				p.mu.Unlock()
				c.Close()
				d.Close()
				continue
			}
			p.conns = append(p.conns, c, d)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(d, c); d.Close() }()
			go func() { _, _ = io.Copy(c, d); c.Close() }()
		}
	}()
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) addr() string { return "http://" + p.l.Addr().String() }

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = true
	p.l.Close()
	for _, c := range p.conns {
		c.Close()
	}
}

type testWriter struct {
	t  *testing.T
	id string
}

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Logf("%s: %s", w.id, b)
	return len(b), nil
}

func TestNewChecksOptions(t *testing.T) {
	if _, err := leader.New(leader.Options{}); err == nil {
		t.Error("an elector without a Nomad client must be refused")
	}
	c, err := nomad.NewClient(nomad.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leader.New(leader.Options{Client: c, TTL: 5 * time.Second}); err == nil {
		t.Error("a TTL below Nomad's minimum must be refused")
	}
	reg := prometheus.NewRegistry()
	e, err := leader.New(leader.Options{Client: c, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if e.IsLeader() || e.Leader() != "" || e.Identity() == "" || e.TTL() != leader.DefaultTTL {
		t.Fatalf("a new elector: leader=%v holder=%q identity=%q ttl=%s", e.IsLeader(), e.Leader(), e.Identity(), e.TTL())
	}
	if v := testutil.ToFloat64(gauge(t, reg)); v != 0 {
		t.Errorf("spillway_leader = %v before running", v)
	}
}

func TestConfigOptions(t *testing.T) {
	c := config.Default().Leader
	o := leader.ConfigOptions(c, "ops")
	if o.Path != "spillway/leader" || o.Namespace != "ops" || o.TTL != 10*time.Second || o.LockDelay != 2*time.Second {
		t.Fatalf("defaults: %+v", o)
	}
	c.Namespace = "spillway"
	if o := leader.ConfigOptions(c, "ops"); o.Namespace != "spillway" {
		t.Fatalf("leader.namespace must win over nomad.namespace: %+v", o)
	}
}
