// Package clustertest is a fake Nomad cluster for controller tests: a
// cluster.Source whose snapshots a test builds, and a cluster.Orchestrator
// that records every call and applies it the way Nomad would, with a
// first-fit scheduler: a group's allocations go on ready, eligible nodes
// serving its business unit while they have room, and the rest are queued
// with the reason Nomad would give. Tests add and remove nodes (a cloud
// host joining, a host lost) and call Schedule, or let the orchestrator's
// writes do it.
package clustertest

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/demand"
	"github.com/spillwayhq/spillway/policies"
	"github.com/spillwayhq/spillway/pools"
)

// Call is one orchestrator call, or a step of the test recorded among
// them (health: MarkHealthy gave verdicts).
type Call struct {
	Op     string // scale, meta, eligibility, drain, health
	Target policies.Target
	Node   string
	Count  int
	Meta   map[string]*string
	Value  bool
	Drain  time.Duration
}

// Cluster is the fake. Its methods are safe for concurrent use.
type Cluster struct {
	*cluster.Static

	mu    sync.Mutex
	calls []Call
	seq   int
	// NextScaleErr, when set, fails the next Scale.
	NextScaleErr error
	// hold keeps drains in progress until ReleaseDrains; held lists them.
	hold bool
	held []string
	// pending keeps the health verdict of new allocations back until
	// MarkHealthy (HoldHealth).
	pending bool

	watchMu sync.Mutex
	watch   []func(*cluster.Snapshot)
}

// Update is Static.Update, and shows the snapshot it publishes to every
// Watch.
func (c *Cluster) Update(fn func(cur *cluster.Snapshot, e *cluster.Editor)) *cluster.Snapshot {
	s := c.Static.Update(fn)
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	for _, w := range c.watch {
		w(s)
	}
	return s
}

// Watch calls fn with the current snapshot and with every snapshot an
// Update publishes from now on: none is skipped, as a reader of
// Snapshot after Changed may skip some.
func (c *Cluster) Watch(fn func(*cluster.Snapshot)) {
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	c.watch = append(c.watch, fn)
	fn(c.Snapshot())
}

// HoldHealth makes new allocations start running without a health
// verdict (Alloc.Healthy nil), as Nomad's are until min_healthy_time has
// passed, until MarkHealthy or ReleaseHealth. Without it every
// allocation is healthy as soon as it is placed.
func (c *Cluster) HoldHealth() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending = true
}

// MarkHealthy gives every running allocation without a verdict a healthy
// one, and records a "health" call among the orchestrator's, so a test
// can tell what came before and after. New allocations are still held.
func (c *Cluster) MarkHealthy() {
	c.record(Call{Op: "health"})
	yes := true
	c.Update(func(s *cluster.Snapshot, e *cluster.Editor) {
		for _, n := range s.Nodes() {
			for _, a := range s.AllocsOnNode(n.ID) {
				if a.Healthy == nil && a.ClientStatus == "running" && a.DesiredStatus == "run" {
					ac := *a
					ac.Healthy = &yes
					e.PutAlloc(&ac)
				}
			}
		}
	})
}

// ReleaseHealth is MarkHealthy, and holds verdicts no more.
func (c *Cluster) ReleaseHealth() {
	c.mu.Lock()
	c.pending = false
	c.mu.Unlock()
	c.MarkHealthy()
}

// HoldDrains makes the next drains start and not finish: the node is
// draining and ineligible, its allocations keep running, until
// ReleaseDrains.
func (c *Cluster) HoldDrains() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hold = true
}

// ReleaseDrains finishes the drains held, and holds no more.
func (c *Cluster) ReleaseDrains() {
	c.mu.Lock()
	held := c.held
	c.hold, c.held = false, nil
	c.mu.Unlock()
	for _, node := range held {
		c.finishDrain(node)
	}
}

var (
	_ cluster.Source       = (*Cluster)(nil)
	_ cluster.Orchestrator = (*Cluster)(nil)
)

// New returns an empty, live cluster.
func New() *Cluster { return &Cluster{Static: cluster.NewStatic(cluster.Empty(true))} }

// Calls returns the orchestrator calls so far.
func (c *Cluster) Calls() []Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

// CallsOf returns the calls of one operation.
func (c *Cluster) CallsOf(op string) []Call {
	var out []Call
	for _, call := range c.Calls() {
		if call.Op == op {
			out = append(out, call)
		}
	}
	return out
}

func (c *Cluster) record(call Call) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, call)
}

// Host is a node to add.
type Host struct {
	ID, Pool, Serves string
	CPU, MemoryMB    int64
	Meta             map[string]string
}

// AddNode adds a ready, eligible node and schedules.
func (c *Cluster) AddNode(h Host) {
	meta := map[string]string{}
	for k, v := range h.Meta {
		meta[k] = v
	}
	if h.Serves != "" {
		meta[pools.MetaServes] = h.Serves
	}
	c.Update(func(cur *cluster.Snapshot, e *cluster.Editor) {
		e.PutNode(&cluster.Node{ID: h.ID, Name: h.ID, Pool: h.Pool, Meta: meta, Status: "ready", Eligible: true, CPU: h.CPU, MemoryMB: h.MemoryMB})
	})
	c.Schedule()
}

// SetNodeStatus sets a node's Nomad status (ready, down) and schedules.
// On a node that is not ready, allocations are lost, as Nomad marks them
// once the node misses its heartbeats, and placed again elsewhere.
func (c *Cluster) SetNodeStatus(id, status string) {
	c.Update(func(cur *cluster.Snapshot, e *cluster.Editor) {
		if n, ok := cur.Node(id); ok {
			cp := *n
			cp.Status = status
			e.PutNode(&cp)
			if status != "ready" {
				for _, a := range cur.AllocsOnNode(id) {
					ac := *a
					ac.ClientStatus = "lost"
					e.PutAlloc(&ac)
				}
			}
		}
	})
	c.Schedule()
}

// RemoveNode removes a node with its allocations and schedules.
func (c *Cluster) RemoveNode(id string) {
	c.Update(func(s *cluster.Snapshot, e *cluster.Editor) {
		for _, a := range s.AllocsOnNode(id) {
			cp := *a
			cp.ClientStatus = "lost"
			e.PutAlloc(&cp)
		}
		e.DeleteNode(id)
	})
	c.Schedule()
}

// Service is a job of one group to add.
type Service struct {
	Target policies.Target
	Count  int
	Size   demand.Size
	Serves string
	Batch  bool
}

// AddJob adds a job and schedules.
func (c *Cluster) AddJob(s Service) {
	typ := "service"
	if s.Batch {
		typ = "batch"
	}
	c.Update(func(cur *cluster.Snapshot, e *cluster.Editor) {
		e.PutJob(&cluster.Job{Namespace: s.Target.Namespace, ID: s.Target.Job, Type: typ, NodePool: "all",
			Groups: map[string]*cluster.Group{s.Target.Group: {Name: s.Target.Group, Count: s.Count, PerAlloc: s.Size, Serves: s.Serves}}})
	})
	c.Schedule()
}

// SetCount sets a group's count, as `nomad job scale` would, and
// schedules.
func (c *Cluster) SetCount(t policies.Target, count int) error {
	var err error
	c.Update(func(cur *cluster.Snapshot, e *cluster.Editor) {
		j, ok := cur.Job(t.Namespace, t.Job)
		if !ok || j.Groups[t.Group] == nil {
			err = fmt.Errorf("no task group %s: %w", t, cluster.ErrNotFound)
			return
		}
		cp := *j
		cp.Groups = map[string]*cluster.Group{}
		for k, g := range j.Groups {
			gc := *g
			cp.Groups[k] = &gc
		}
		cp.Groups[t.Group].Count = count
		e.PutJob(&cp)
	})
	if err == nil {
		c.Schedule()
	}
	return err
}

// Schedule places and stops allocations to match every group's count,
// first fit on the nodes that may take them, and queues what does not fit.
func (c *Cluster) Schedule() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Update(func(s *cluster.Snapshot, e *cluster.Editor) {
		free := map[string]demand.Size{}
		var ids []string
		for _, n := range s.Nodes() {
			if !n.Ready() || !n.Eligible || n.Draining {
				continue
			}
			u, _ := s.Usage(n.ID)
			free[n.ID] = demand.Size{CPUMHz: int(n.CPU - u.UsedCPU), MemoryMB: int(n.MemoryMB - u.UsedMemoryMB)}
			ids = append(ids, n.ID)
		}
		sort.Strings(ids)
		var verdict *bool
		if !c.pending {
			yes := true
			verdict = &yes
		}
		for _, j := range s.Jobs() {
			queue := &cluster.Queue{Queued: map[string]int{}, Failed: map[string]*demand.Blocked{}}
			for _, g := range j.Groups {
				t := policies.Target{Namespace: j.Namespace, Job: j.ID, Group: g.Name}
				live := s.AllocsOf(t)
				// Fewer: stop the newest first.
				sort.Slice(live, func(a, b int) bool { return live[a].ID < live[b].ID })
				for len(live) > g.Count {
					a := *live[len(live)-1]
					a.DesiredStatus, a.ClientStatus = "stop", "complete"
					e.PutAlloc(&a)
					free[a.NodeID] = demand.Size{CPUMHz: free[a.NodeID].CPUMHz + int(a.CPU), MemoryMB: free[a.NodeID].MemoryMB + int(a.MemoryMB)}
					live = live[:len(live)-1]
				}
				missing := g.Count - len(live)
				exhausted := 0
				for ; missing > 0; missing-- {
					placed := false
					for _, id := range ids {
						n, _ := s.Node(id)
						if g.Serves != "" && n.Meta[pools.MetaServes] != g.Serves {
							continue
						}
						f := free[id]
						if f.CPUMHz < g.PerAlloc.CPUMHz || f.MemoryMB < g.PerAlloc.MemoryMB {
							continue
						}
						f.CPUMHz -= g.PerAlloc.CPUMHz
						f.MemoryMB -= g.PerAlloc.MemoryMB
						free[id] = f
						c.seq++
						e.PutAlloc(&cluster.Alloc{ID: fmt.Sprintf("alloc-%04d", c.seq), Namespace: j.Namespace, JobID: j.ID, TaskGroup: g.Name,
							NodeID: id, JobType: j.Type, ClientStatus: "running", DesiredStatus: "run", CPU: int64(g.PerAlloc.CPUMHz), MemoryMB: int64(g.PerAlloc.MemoryMB),
							Healthy: verdict})
						placed = true
						break
					}
					if !placed {
						exhausted++
					}
				}
				if exhausted > 0 {
					queue.Queued[g.Name] = exhausted
					queue.Failed[g.Name] = &demand.Blocked{EvalID: "blocked-" + j.ID, NodePool: j.NodePool, NodesEvaluated: len(ids),
						NodesExhausted: len(ids), Exhausted: map[string]int{"cpu": len(ids)}}
				}
			}
			e.SetQueue(j.Namespace, j.ID, queue)
		}
	})
}

// Scale implements cluster.Orchestrator.
func (c *Cluster) Scale(_ context.Context, t policies.Target, count int, _ string, _ map[string]any) error {
	c.record(Call{Op: "scale", Target: t, Count: count})
	c.mu.Lock()
	err := c.NextScaleErr
	c.NextScaleErr = nil
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return c.SetCount(t, count)
}

// SetNodeMeta implements cluster.Orchestrator.
func (c *Cluster) SetNodeMeta(_ context.Context, node string, meta map[string]*string) error {
	c.record(Call{Op: "meta", Node: node, Meta: meta})
	return c.editNode(node, func(n *cluster.Node) {
		m := map[string]string{}
		for k, v := range n.Meta {
			m[k] = v
		}
		for k, v := range meta {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = *v
			}
		}
		n.Meta = m
	})
}

// SetEligibility implements cluster.Orchestrator.
func (c *Cluster) SetEligibility(_ context.Context, node string, eligible bool) error {
	c.record(Call{Op: "eligibility", Node: node, Value: eligible})
	return c.editNode(node, func(n *cluster.Node) { n.Eligible = eligible })
}

// Drain implements cluster.Orchestrator: the node becomes ineligible, its
// allocations stop at once and are placed again elsewhere.
func (c *Cluster) Drain(_ context.Context, node string, deadline time.Duration, _ map[string]string) error {
	c.record(Call{Op: "drain", Node: node, Drain: deadline})
	if _, ok := c.Snapshot().Node(node); !ok {
		return fmt.Errorf("draining node %s: %w", node, cluster.ErrNotFound)
	}
	c.mu.Lock()
	hold := c.hold
	if hold {
		c.held = append(c.held, node)
	}
	c.mu.Unlock()
	if hold {
		return c.editNode(node, func(n *cluster.Node) { n.Eligible, n.Draining = false, true })
	}
	c.finishDrain(node)
	return nil
}

// finishDrain ends a node's drain: its allocations stop and are placed
// again elsewhere.
func (c *Cluster) finishDrain(node string) {
	c.Update(func(s *cluster.Snapshot, e *cluster.Editor) {
		n, ok := s.Node(node)
		if !ok {
			return
		}
		cp := *n
		cp.Eligible, cp.Draining = false, false
		e.PutNode(&cp)
		for _, a := range s.AllocsOnNode(node) {
			ac := *a
			ac.DesiredStatus, ac.ClientStatus = "stop", "complete"
			e.PutAlloc(&ac)
		}
	})
	c.Schedule()
}

func (c *Cluster) editNode(id string, fn func(*cluster.Node)) error {
	if _, ok := c.Snapshot().Node(id); !ok {
		return fmt.Errorf("node %s: %w", id, cluster.ErrNotFound)
	}
	c.Update(func(s *cluster.Snapshot, e *cluster.Editor) {
		n, ok := s.Node(id)
		if !ok {
			return
		}
		cp := *n
		fn(&cp)
		e.PutNode(&cp)
	})
	c.Schedule()
	return nil
}
