// Package cluster is Spillway's live model of the Nomad cluster: its nodes
// (pool, class, meta, status, eligibility, resources), the non-terminal
// allocations (resources, client status, deployment health), the jobs and
// their task groups (counts, what each allocation asks for, which business
// unit the group is placed on), what Nomad could not place (the queued
// allocations and the blocked evaluations' reasons) and the deployments.
//
// A Model is fed by Nomad's event stream after one full list, and lists
// again when the stream breaks, its index goes backwards or an event cannot
// be decoded, so an update costs O(changed objects) and no reader polls
// Nomad. Readers take a Snapshot: immutable, consistent, cheap (persistent
// radix trees share structure between versions), with a channel that
// closes when a newer one exists. A snapshot also says whether the model is
// live: when it is not (the stream broke and the list failed), what it
// shows is "unknown", not "gone", and nothing destructive may follow from
// it. A missing object is not an error.
package cluster

import (
	"slices"
	"strings"
	"sync"
	"time"

	iradix "github.com/hashicorp/go-immutable-radix/v2"
	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/controlplane/demand"
	"github.com/spillwayhq/spillway/policies"
	"github.com/spillwayhq/spillway/pools"
)

// Node is a Nomad node as the model keeps it.
type Node struct {
	ID, Name, Datacenter string
	Pool, Class          string
	Meta                 map[string]string
	// Attrs are the attributes pools.KeptAttributes names.
	Attrs map[string]string
	// Status is Nomad's: ready, down, initializing, disconnected.
	Status   string
	Eligible bool
	Draining bool
	// CPU (MHz) and MemoryMB are what the node offers to allocations: its
	// resources minus what is reserved.
	CPU, MemoryMB int64
	ModifyIndex   uint64
}

// Ready reports Nomad status ready.
func (n *Node) Ready() bool { return n.Status == "ready" }

// Alloc is a non-terminal allocation.
type Alloc struct {
	ID, Namespace, JobID, TaskGroup, NodeID string
	JobType                                 string
	ClientStatus, DesiredStatus             string
	// CPU (MHz) and MemoryMB are what its tasks were allocated.
	CPU, MemoryMB int64
	// Healthy is the deployment's verdict, when a deployment tracks it.
	Healthy     *bool
	ModifyIndex uint64
}

// Target is the task group the allocation belongs to.
func (a *Alloc) Target() policies.Target {
	return policies.Target{Namespace: a.Namespace, Job: a.JobID, Group: a.TaskGroup}
}

// Batch reports a batch or sysbatch allocation.
func (a *Alloc) Batch() bool { return a.JobType == "batch" || a.JobType == "sysbatch" }

// Job is a job with its task groups.
type Job struct {
	Namespace, ID string
	Type          string
	NodePool      string
	// Datacenters are the job's datacenters, globs allowed.
	Datacenters []string
	Stop        bool
	Groups      map[string]*Group
	ModifyIndex uint64
}

// Group is a task group.
type Group struct {
	Name  string
	Count int
	// PerAlloc is what one allocation asks for (all tasks summed); Cores
	// the reserved cores among it.
	PerAlloc demand.Size
	Cores    int
	// Serves is the business unit the group runs on, from a constraint
	// ${meta.spillway.serves} = <unit> on the group or its job; "" when it
	// has none.
	Serves string
	// Constraints are the hard constraints a node must meet to take an
	// allocation: the job's, the group's and its tasks'.
	Constraints []*nomad.Constraint
}

// Queue is what Nomad could not place of one job: the queued allocations
// per task group, and why (the failed placement metrics of the
// evaluation that queued them).
type Queue struct {
	Queued map[string]int
	Failed map[string]*demand.Blocked
	// Index is the modify index of the evaluation that said so.
	Index uint64
}

// Deployment is a job's latest deployment.
type Deployment struct {
	ID, Namespace, JobID string
	Status               string
	JobVersion           uint64
	CreateIndex          uint64
	ModifyIndex          uint64
}

// Active reports a deployment that is still rolling out.
func (d *Deployment) Active() bool {
	return d.Status == "running" || d.Status == "paused" || d.Status == "pending" || d.Status == "initializing" || d.Status == "blocked" || d.Status == "unblocking"
}

// Sync is how current a snapshot is.
type Sync struct {
	// Live says the model is listed and following the event stream.
	Live bool
	// Since is when it last became live, or stopped being live.
	Since time.Time
	// Err is why it is not live.
	Err string
	// LastLive is, when the model is not live, when it last was: what
	// the snapshot shows is as of then. Zero when it never was live.
	LastLive time.Time
}

// Snapshot is one consistent, read-only version of the model. Its methods
// are safe for concurrent use.
type Snapshot struct {
	nodes   *iradix.Tree[*Node]
	allocs  *iradix.Tree[*Alloc]
	onNode  *iradix.Tree[*Alloc]   // key: node \x00 alloc
	use     *iradix.Tree[*nodeUse] // key: node; its allocations' sums
	ofGroup *iradix.Tree[*Alloc]   // key: namespace \x00 job \x00 group \x00 alloc
	jobs    *iradix.Tree[*Job]     // key: namespace \x00 job
	queues  *iradix.Tree[*Queue]   // key: namespace \x00 job
	deploys *iradix.Tree[*Deployment]
	index   uint64
	sync    Sync
	// changed is closed when a newer snapshot is published.
	changed chan struct{}
	// memo holds what is worked out from the snapshot's trees once, for
	// every reader: they never change, and the controllers' loops read the
	// same snapshot many times over (each waiting activity, each pass). A
	// copy of the snapshot with other sync shares it.
	memo *memo
}

// memo is a snapshot's derived views, each computed on first use.
type memo struct {
	usageOnce sync.Once
	usage     []pools.NodeUsage
	mu        sync.Mutex
	byMeta    map[string]map[string]pools.NodeUsage
	idsBy     map[string]map[string]string
}

func emptySnapshot() *Snapshot {
	return &Snapshot{
		nodes: iradix.New[*Node](), allocs: iradix.New[*Alloc](), onNode: iradix.New[*Alloc](), use: iradix.New[*nodeUse](), ofGroup: iradix.New[*Alloc](),
		jobs: iradix.New[*Job](), queues: iradix.New[*Queue](), deploys: iradix.New[*Deployment](), changed: make(chan struct{}),
		memo: &memo{},
	}
}

// Changed is closed when a newer snapshot than this one exists.
func (s *Snapshot) Changed() <-chan struct{} { return s.changed }

// Sync says whether the model was live when the snapshot was taken.
func (s *Snapshot) Sync() Sync { return s.sync }

// Live reports whether the model was listed and following Nomad's events.
// When it is not, absence proves nothing.
func (s *Snapshot) Live() bool { return s.sync.Live }

// Index is the Nomad raft index the snapshot reflects.
func (s *Snapshot) Index() uint64 { return s.index }

func key(parts ...string) []byte { return []byte(strings.Join(parts, "\x00")) }

// Node returns a node by ID.
func (s *Snapshot) Node(id string) (*Node, bool) { return s.nodes.Get([]byte(id)) }

// Nodes returns every node, in ID order.
func (s *Snapshot) Nodes() []*Node {
	out := make([]*Node, 0, s.nodes.Len())
	s.nodes.Root().Walk(func(_ []byte, n *Node) bool {
		out = append(out, n)
		return false
	})
	return out
}

// NodeCount is how many nodes the model holds.
func (s *Snapshot) NodeCount() int { return s.nodes.Len() }

// AllocCount is how many non-terminal allocations the model holds.
func (s *Snapshot) AllocCount() int { return s.allocs.Len() }

// JobCount is how many jobs the model holds.
func (s *Snapshot) JobCount() int { return s.jobs.Len() }

// AllocsOnNode returns the non-terminal allocations placed on a node.
func (s *Snapshot) AllocsOnNode(node string) []*Alloc {
	var out []*Alloc
	s.onNode.Root().WalkPrefix(key(node, ""), func(_ []byte, a *Alloc) bool {
		out = append(out, a)
		return false
	})
	return out
}

// AllocsOf returns the non-terminal allocations of a task group.
func (s *Snapshot) AllocsOf(t policies.Target) []*Alloc {
	var out []*Alloc
	s.ofGroup.Root().WalkPrefix(key(t.Namespace, t.Job, t.Group, ""), func(_ []byte, a *Alloc) bool {
		out = append(out, a)
		return false
	})
	return out
}

// Job returns a job.
func (s *Snapshot) Job(namespace, id string) (*Job, bool) { return s.jobs.Get(key(namespace, id)) }

// Jobs returns every job, in namespace and ID order.
func (s *Snapshot) Jobs() []*Job {
	out := make([]*Job, 0, s.jobs.Len())
	s.jobs.Root().Walk(func(_ []byte, j *Job) bool {
		out = append(out, j)
		return false
	})
	return out
}

// Group returns a task group.
func (s *Snapshot) Group(t policies.Target) (*Group, bool) {
	j, ok := s.Job(t.Namespace, t.Job)
	if !ok {
		return nil, false
	}
	g, ok := j.Groups[t.Group]
	return g, ok
}

// Deployment returns a job's latest deployment.
func (s *Snapshot) Deployment(namespace, job string) (*Deployment, bool) {
	return s.deploys.Get(key(namespace, job))
}

// Demand is a task group's placement state: its count, what is running,
// starting and queued, what each allocation asks for, and why Nomad could
// not place the queued ones. ok is false when the model has no such group.
func (s *Snapshot) Demand(t policies.Target) (demand.Demand, bool) {
	g, ok := s.Group(t)
	if !ok {
		return demand.Demand{Target: t}, false
	}
	d := demand.Demand{Target: t, Count: g.Count, PerAllocation: g.PerAlloc}
	for _, a := range s.AllocsOf(t) {
		if a.DesiredStatus != "run" {
			continue
		}
		switch a.ClientStatus {
		case "running":
			d.Running++
		case "pending":
			d.Starting++
		}
	}
	if q, ok := s.queues.Get(key(t.Namespace, t.Job)); ok {
		d.Queued = q.Queued[t.Group]
		if bl := q.Failed[t.Group]; d.Queued > 0 && bl != nil {
			cp := *bl
			if cp.NodePool == "" {
				// Nomad 1.6 does not say where it looked; the job does.
				if j, ok := s.Job(t.Namespace, t.Job); ok {
					cp.NodePool = j.NodePool
				}
			}
			d.Blocked = &cp
		}
	}
	return d, true
}

// Queued returns every task group with allocations Nomad could not place.
func (s *Snapshot) Queued() []policies.Target {
	var out []policies.Target
	s.queues.Root().Walk(func(k []byte, q *Queue) bool {
		ns, job, _ := strings.Cut(string(k), "\x00")
		for g, n := range q.Queued {
			if n > 0 {
				out = append(out, policies.Target{Namespace: ns, Job: job, Group: g})
			}
		}
		return false
	})
	return out
}

// Healthy counts a task group's allocations that run and, where a
// deployment tracks health, are healthy.
func (s *Snapshot) Healthy(t policies.Target) int {
	n := 0
	for _, a := range s.AllocsOf(t) {
		if a.ClientStatus != "running" || a.DesiredStatus != "run" {
			continue
		}
		if a.Healthy != nil && !*a.Healthy {
			continue
		}
		n++
	}
	return n
}

// NodeUsage returns every node with what its non-terminal allocations use,
// in the form the capacity arithmetic of package pools takes.
// It walks the nodes and their allocations once per snapshot; each call
// returns a copy of that walk, the caller's to change.
func (s *Snapshot) NodeUsage() []pools.NodeUsage {
	return slices.Clone(s.nodeUsage())
}

// NodeUsageShared is NodeUsage without the copy: the snapshot's one walk,
// shared by every caller, which must not change it. For readers on a hot
// path: a hundred scale-outs starting at once each held a copy (1.6 MB
// at 10,000 nodes), most of the scale simulation's peak memory.
func (s *Snapshot) NodeUsageShared() []pools.NodeUsage { return s.nodeUsage() }

// nodeUsage is the snapshot's one walk of every node's usage, shared:
// never to be changed.
func (s *Snapshot) nodeUsage() []pools.NodeUsage {
	s.memo.usageOnce.Do(func() {
		out := make([]pools.NodeUsage, 0, s.nodes.Len())
		s.nodes.Root().Walk(func(_ []byte, n *Node) bool {
			out = append(out, s.usage(n))
			return false
		})
		s.memo.usage = out
	})
	return s.memo.usage
}

// NodeIDBy returns the ID of the node whose meta key has value value
// (the last in node order when two have). The index of the key's values
// is worked out once per snapshot from the nodes alone, without their
// allocations: a cheap look-up for a caller that wants a few nodes (an
// activity its rented hosts' nodes) on every change of the model.
func (s *Snapshot) NodeIDBy(key, value string) (string, bool) {
	s.memo.mu.Lock()
	ids, ok := s.memo.idsBy[key]
	if !ok {
		ids = map[string]string{}
		s.nodes.Root().Walk(func(_ []byte, n *Node) bool {
			if v := n.Meta[key]; v != "" {
				ids[v] = n.ID
			}
			return false
		})
		if s.memo.idsBy == nil {
			s.memo.idsBy = map[string]map[string]string{}
		}
		s.memo.idsBy[key] = ids
	}
	s.memo.mu.Unlock()
	id, ok := ids[value]
	return id, ok
}

// UsageBy returns the nodes that carry meta key, by its value, with
// their usage (the last in node order for a value two nodes carry). The
// map is worked out once per snapshot and key and shared by every caller:
// it must not be changed.
func (s *Snapshot) UsageBy(key string) map[string]pools.NodeUsage {
	s.memo.mu.Lock()
	defer s.memo.mu.Unlock()
	if m, ok := s.memo.byMeta[key]; ok {
		return m
	}
	m := map[string]pools.NodeUsage{}
	for _, n := range s.nodeUsage() {
		if v := n.Meta[key]; v != "" {
			m[v] = n
		}
	}
	if s.memo.byMeta == nil {
		s.memo.byMeta = map[string]map[string]pools.NodeUsage{}
	}
	s.memo.byMeta[key] = m
	return m
}

// Usage is one node's usage.
func (s *Snapshot) Usage(id string) (pools.NodeUsage, bool) {
	n, ok := s.Node(id)
	if !ok {
		return pools.NodeUsage{}, false
	}
	return s.usage(n), true
}

func (s *Snapshot) usage(n *Node) pools.NodeUsage {
	u := pools.NodeUsage{ID: n.ID, Name: n.Name, Datacenter: n.Datacenter, NodePool: n.Pool, NodeClass: n.Class, Meta: n.Meta, Attrs: n.Attrs,
		Ready: n.Ready(), Eligible: n.Eligible, Draining: n.Draining, Status: n.Status, CPU: n.CPU, MemoryMB: n.MemoryMB}
	if used, ok := s.use.Get([]byte(n.ID)); ok {
		u.UsedCPU, u.UsedMemoryMB, u.Allocs = used.CPU, used.MemoryMB, used.Allocs
	}
	return u
}

// nodeUse is what a node's allocations desired running use, kept as they
// change (builder.addUse): reading a node's usage is a look-up, not a
// walk of its allocations (every node's usage at 10,000 nodes and 100,000
// allocations took 17 ms, and the controllers read it on the hot path).
type nodeUse struct {
	CPU, MemoryMB int64
	Allocs        int
}
