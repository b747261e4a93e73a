package cluster_test

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/config"
	"github.com/spillwayhq/spillway/controlplane/nomadapi"
	"github.com/spillwayhq/spillway/internal/lab"
	"github.com/spillwayhq/spillway/internal/lab/labtest"
	"github.com/spillwayhq/spillway/policies"
)

// waitSnap waits for a snapshot ok accepts, following the model's change
// notifications (no polling of Nomad: the model is fed by its events).
func waitSnap(t *testing.T, m *cluster.Model, what string, within time.Duration, ok func(*cluster.Snapshot) bool) *cluster.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		s := m.Snapshot()
		if ok(s) {
			return s
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %s (live %v, %d nodes, %d allocations)", what, within, s.Sync(), s.NodeCount(), s.AllocCount())
		case <-s.Changed():
		}
	}
}

// TestModelFollowsNomad runs the model against a real Nomad (v1.6.3): it
// lists the lab, follows the demo's scale-out and scale-in through the
// event stream, and, cut off from Nomad, keeps what it knew as unknown
// (not live) until it lists again.
func TestModelFollowsNomad(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the lab")
	}
	opts := lab.DefaultOptions()
	opts.Serve = false
	opts.SharedHosts = 0
	opts.BusinessUnits = []lab.BusinessUnit{{Name: "bu-a", Hosts: 1}}
	l := labtest.Start(t, opts)
	p := newProxy(t, l.NomadAddr[len("http://"):])
	nc, err := nomadapi.New(config.Nomad{Address: "http://" + p.addr()}, nomadapi.Options{})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := cluster.New(cluster.Options{Client: nc, Registerer: reg})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Run(ctx)
	target := policies.Target{Namespace: "default", Job: lab.DemoJob, Group: lab.DemoGroup}

	s := waitSnap(t, m, "the model lists the lab", 30*time.Second, func(s *cluster.Snapshot) bool {
		return s.Live() && s.Healthy(target) == 2
	})
	if s.NodeCount() != 1 {
		t.Fatalf("%d nodes, want bu-a's one host", s.NodeCount())
	}
	node := s.Nodes()[0]
	if node.Pool != "bu-a" || node.Meta["spillway.serves"] != "bu-a" || !node.Ready() || !node.Eligible || node.CPU <= 0 {
		t.Fatalf("the node: %+v", node)
	}
	g, ok := s.Group(target)
	if !ok || g.Count != 2 || g.Serves != "bu-a" || g.PerAlloc.CPUMHz != 250 || g.PerAlloc.MemoryMB != 64 {
		t.Fatalf("the demo's group: %+v", g)
	}

	// Beyond the host: Nomad places 8 (2000 MHz / 250) and queues 3.
	count := 11
	if _, _, err := l.Nomad().Jobs().Scale(lab.DemoJob, lab.DemoGroup, &count, "test: beyond the host", false, nil, nil); err != nil {
		t.Fatal(err)
	}
	s = waitSnap(t, m, "the model sees 3 queued", time.Minute, func(s *cluster.Snapshot) bool {
		d, _ := s.Demand(target)
		return d.Count == 11 && d.Queued == 3 && d.Running+d.Starting == 8 && d.Blocked != nil
	})
	d, _ := s.Demand(target)
	if d.Blocked.Exhausted["cpu"] == 0 || d.Blocked.NodePool != "all" {
		t.Fatalf("why they are queued: %+v", d.Blocked)
	}
	if q := s.Queued(); len(q) != 1 || q[0] != target {
		t.Fatalf("queued groups: %v", q)
	}
	if u, _ := s.Usage(node.ID); u.UsedCPU != 8*250 || u.Allocs != 8 {
		t.Fatalf("the host's usage: %+v", u)
	}

	// Back down, through the orchestrator: the deployment of the count
	// change is still running (3 allocations can never be placed), so
	// Nomad refuses the scale endpoint and the orchestrator supersedes the
	// count-only deployment. The queue empties.
	orch := cluster.NomadOrchestrator{Client: l.Nomad()}
	if err := orch.Scale(ctx, target, 2, "test: back", nil); err != nil {
		t.Fatal(err)
	}
	waitSnap(t, m, "the queue empties", time.Minute, func(s *cluster.Snapshot) bool {
		d, _ := s.Demand(target)
		return d.Count == 2 && d.Queued == 0 && len(s.Queued()) == 0 && len(s.AllocsOf(target)) == 2
	})

	// All of that came through the one stream: the model listed once.
	if n := lists(t, reg); n != 1 {
		t.Fatalf("the model listed %v times; it should follow the stream after one list", n)
	}

	// Cut off: not live, but nothing is forgotten.
	p.cut()
	s = waitSnap(t, m, "the model notices the cut", 30*time.Second, func(s *cluster.Snapshot) bool { return !s.Live() })
	if s.NodeCount() != 1 || s.Healthy(target) != 2 || s.Sync().Err == "" {
		t.Fatalf("cut off, the model forgot: %d nodes, %d healthy, sync %+v", s.NodeCount(), s.Healthy(target), s.Sync())
	}
	// A change made while cut off shows once the model lists again.
	if err := orch.Scale(ctx, target, 3, "test: while cut", nil); err != nil {
		t.Fatal(err)
	}
	p.restore()
	waitSnap(t, m, "the model lists again", time.Minute, func(s *cluster.Snapshot) bool {
		g, ok := s.Group(target)
		return s.Live() && ok && g.Count == 3
	})
}

// lists is spillway_cluster_lists_total{result="ok"}.
func lists(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "spillway_cluster_lists_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, lp := range mt.GetLabel() {
				if lp.GetName() == "result" && lp.GetValue() == "ok" {
					return mt.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// proxy forwards TCP to Nomad; cut drops every connection and refuses new
// ones until restore.
type proxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	down   bool
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, target: target}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			down := p.down
			p.mu.Unlock()
			if down {
				c.Close()
				continue
			}
			d, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, d)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(d, c); d.Close() }()
			go func() { _, _ = io.Copy(c, d); c.Close() }()
		}
	}()
	t.Cleanup(func() { l.Close(); p.cut() })
	return p
}

func (p *proxy) addr() string { return p.l.Addr().String() }

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}
