package cluster

import (
	"slices"
	"strings"
	"sync"

	iradix "github.com/hashicorp/go-immutable-radix/v2"
	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/controlplane/demand"
	"github.com/spillwayhq/spillway/pools"
)

// builder makes the next snapshot from one: each change is O(log n) and
// shares everything it does not touch with the snapshot it started from.
type builder struct {
	nodes   *iradix.Txn[*Node]
	allocs  *iradix.Txn[*Alloc]
	onNode  *iradix.Txn[*Alloc]
	use     *iradix.Txn[*nodeUse]
	ofGroup *iradix.Txn[*Alloc]
	jobs    *iradix.Txn[*Job]
	queues  *iradix.Txn[*Queue]
	deploys *iradix.Txn[*Deployment]
	index   uint64
	sync    Sync
}

func newBuilder(s *Snapshot) *builder {
	return &builder{
		nodes: s.nodes.Txn(), allocs: s.allocs.Txn(), onNode: s.onNode.Txn(), use: s.use.Txn(), ofGroup: s.ofGroup.Txn(),
		jobs: s.jobs.Txn(), queues: s.queues.Txn(), deploys: s.deploys.Txn(), index: s.index, sync: s.sync,
	}
}

func (b *builder) commit() *Snapshot {
	return &Snapshot{
		nodes: b.nodes.CommitOnly(), allocs: b.allocs.CommitOnly(), onNode: b.onNode.CommitOnly(), use: b.use.CommitOnly(), ofGroup: b.ofGroup.CommitOnly(),
		jobs: b.jobs.CommitOnly(), queues: b.queues.CommitOnly(), deploys: b.deploys.CommitOnly(),
		index: b.index, sync: b.sync, changed: make(chan struct{}), memo: &memo{},
	}
}

// seen raises the snapshot's index to a list's.
func (b *builder) seen(index uint64) { b.index = max(b.index, index) }

func (b *builder) upsertNode(n *Node) {
	if cur, ok := b.nodes.Get([]byte(n.ID)); ok && cur.ModifyIndex > n.ModifyIndex {
		return
	}
	b.nodes.Insert([]byte(n.ID), n)
}

// deleteNode forgets a node, unless the model has a newer version of it
// (a held event older than the list).
func (b *builder) deleteNode(id string, index uint64) {
	if cur, ok := b.nodes.Get([]byte(id)); ok && cur.ModifyIndex > index {
		return
	}
	b.nodes.Delete([]byte(id))
}

// upsertAlloc keeps a non-terminal allocation and forgets a terminal one.
func (b *builder) upsertAlloc(a *Alloc) {
	cur, ok := b.allocs.Get([]byte(a.ID))
	if ok && cur.ModifyIndex > a.ModifyIndex {
		return
	}
	if ok {
		b.onNode.Delete(key(cur.NodeID, cur.ID))
		b.ofGroup.Delete(key(cur.Namespace, cur.JobID, cur.TaskGroup, cur.ID))
		b.addUse(cur, -1)
	}
	if terminal(a) {
		b.allocs.Delete([]byte(a.ID))
		return
	}
	if a.JobType == "" {
		// Allocation events carry no job; the model has it.
		if j, ok := b.jobs.Get(key(a.Namespace, a.JobID)); ok {
			a.JobType = j.Type
		}
	}
	b.allocs.Insert([]byte(a.ID), a)
	b.onNode.Insert(key(a.NodeID, a.ID), a)
	b.addUse(a, 1)
	b.ofGroup.Insert(key(a.Namespace, a.JobID, a.TaskGroup, a.ID), a)
}

// addUse adds (sign 1) or takes away (-1) what allocation a uses from its
// node's sums, when it is desired running: what usage reads, instead of a
// walk of the node's allocations.
func (b *builder) addUse(a *Alloc, sign int64) {
	if a.DesiredStatus != "run" {
		return
	}
	u := nodeUse{}
	if cur, ok := b.use.Get([]byte(a.NodeID)); ok {
		u = *cur
	}
	u.CPU += sign * a.CPU
	u.MemoryMB += sign * a.MemoryMB
	u.Allocs += int(sign)
	if u == (nodeUse{}) {
		b.use.Delete([]byte(a.NodeID))
		return
	}
	b.use.Insert([]byte(a.NodeID), &u)
}

func terminal(a *Alloc) bool {
	switch a.ClientStatus {
	case "complete", "failed", "lost":
		return true
	}
	return a.DesiredStatus == "stop" || a.DesiredStatus == "evict"
}

func (b *builder) upsertJob(j *Job) {
	k := key(j.Namespace, j.ID)
	if cur, ok := b.jobs.Get(k); ok && cur.ModifyIndex > j.ModifyIndex {
		return
	}
	b.jobs.Insert(k, j)
}

func (b *builder) deleteJob(namespace, id string, index uint64) {
	if cur, ok := b.jobs.Get(key(namespace, id)); ok && cur.ModifyIndex > index {
		return
	}
	b.jobs.Delete(key(namespace, id))
	b.queues.Delete(key(namespace, id))
	b.deploys.Delete(key(namespace, id))
}

// applyEval takes what an evaluation says Nomad could not place: its
// queued allocations per task group (as Nomad's job summary does) and the
// failed placements that explain them.
func (b *builder) applyEval(e *nomad.Evaluation) {
	if len(e.QueuedAllocations) == 0 && len(e.FailedTGAllocs) == 0 {
		return
	}
	k := key(e.Namespace, e.JobID)
	cur, ok := b.queues.Get(k)
	if ok && cur.Index > e.ModifyIndex {
		return
	}
	q := &Queue{Queued: map[string]int{}, Failed: map[string]*demand.Blocked{}, Index: e.ModifyIndex}
	if ok {
		for g, n := range cur.Queued {
			q.Queued[g] = n
		}
		for g, f := range cur.Failed {
			q.Failed[g] = f
		}
	}
	for g, n := range e.QueuedAllocations {
		if n > 0 {
			q.Queued[g] = n
		} else {
			delete(q.Queued, g)
			delete(q.Failed, g)
		}
	}
	for g, m := range e.FailedTGAllocs {
		if m == nil {
			continue
		}
		bl := &demand.Blocked{EvalID: e.ID, NodePool: m.NodePool, NodesEvaluated: m.NodesEvaluated, NodesExhausted: m.NodesExhausted,
			Exhausted: m.DimensionExhausted, Filtered: m.ConstraintFiltered}
		if e.BlockedEval != "" {
			bl.EvalID = e.BlockedEval
		}
		q.Failed[g] = bl
	}
	if len(q.Queued) == 0 {
		b.queues.Delete(k)
		return
	}
	b.queues.Insert(k, q)
}

func (b *builder) upsertDeployment(d *Deployment) {
	k := key(d.Namespace, d.JobID)
	if cur, ok := b.deploys.Get(k); ok && (cur.CreateIndex > d.CreateIndex || (cur.ID == d.ID && cur.ModifyIndex > d.ModifyIndex)) {
		return
	}
	b.deploys.Insert(k, d)
}

// --- from Nomad's types --------------------------------------------------

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// fromNomadNode keeps what pools.NodeOf makes of n, and its index.
func fromNomadNode(n *nomad.Node) *Node {
	u := pools.NodeOf(n)
	return &Node{ID: u.ID, Name: u.Name, Datacenter: u.Datacenter, Pool: u.NodePool, Class: u.NodeClass, Meta: u.Meta, Attrs: u.Attrs,
		Status: u.Status, Eligible: u.Eligible, Draining: u.Draining, CPU: u.CPU, MemoryMB: u.MemoryMB, ModifyIndex: n.ModifyIndex}
}

func allocatedSize(r *nomad.AllocatedResources) (cpu, mem int64) {
	if r == nil {
		return 0, 0
	}
	for _, t := range r.Tasks {
		if t == nil {
			continue
		}
		cpu += t.Cpu.CpuShares
		mem += t.Memory.MemoryMB
	}
	return cpu, mem
}

func fromNomadAlloc(a *nomad.Allocation) *Alloc {
	out := &Alloc{ID: a.ID, Namespace: a.Namespace, JobID: a.JobID, TaskGroup: a.TaskGroup, NodeID: a.NodeID,
		ClientStatus: a.ClientStatus, DesiredStatus: a.DesiredStatus, ModifyIndex: a.ModifyIndex}
	if a.Job != nil {
		out.JobType = deref(a.Job.Type)
	}
	out.CPU, out.MemoryMB = allocatedSize(a.AllocatedResources)
	if a.DeploymentStatus != nil {
		out.Healthy = a.DeploymentStatus.Healthy
	}
	return out
}

func fromNomadAllocStub(a *nomad.AllocationListStub) *Alloc {
	out := &Alloc{ID: a.ID, Namespace: a.Namespace, JobID: a.JobID, TaskGroup: a.TaskGroup, NodeID: a.NodeID, JobType: a.JobType,
		ClientStatus: a.ClientStatus, DesiredStatus: a.DesiredStatus, ModifyIndex: a.ModifyIndex}
	out.CPU, out.MemoryMB = allocatedSize(a.AllocatedResources)
	if a.DeploymentStatus != nil {
		out.Healthy = a.DeploymentStatus.Healthy
	}
	return out
}

func fromNomadJob(j *nomad.Job) *Job {
	out := &Job{Namespace: deref(j.Namespace), ID: deref(j.ID), Type: deref(j.Type), NodePool: deref(j.NodePool), Stop: deref(j.Stop),
		Datacenters: j.Datacenters, Groups: map[string]*Group{}, ModifyIndex: deref(j.ModifyIndex)}
	jobServes := servesOf(j.Constraints)
	for _, tg := range j.TaskGroups {
		g := &Group{Name: deref(tg.Name), Count: deref(tg.Count), Serves: jobServes}
		g.Constraints = append(slices.Clone(j.Constraints), tg.Constraints...)
		if s := servesOf(tg.Constraints); s != "" {
			g.Serves = s
		}
		g.PerAlloc, g.Cores = demand.PerAlloc(tg)
		for _, t := range tg.Tasks {
			g.Constraints = append(g.Constraints, t.Constraints...)
			if s := servesOf(t.Constraints); s != "" && g.Serves == "" {
				g.Serves = s
			}
		}
		out.Groups[g.Name] = g
	}
	return out
}

// servesOf is the business unit a constraint ${meta.spillway.serves} = X
// names: the convention a service that bursts is placed by.
func servesOf(cs []*nomad.Constraint) string {
	for _, c := range cs {
		if c == nil {
			continue
		}
		op := c.Operand
		if op != "" && op != "=" && op != "==" && op != "is" {
			continue
		}
		l, r := strings.TrimSpace(c.LTarget), strings.TrimSpace(c.RTarget)
		if r == "${meta."+pools.MetaServes+"}" {
			l, r = r, l
		}
		if l == "${meta."+pools.MetaServes+"}" && r != "" && !strings.HasPrefix(r, "${") {
			return r
		}
	}
	return ""
}

func fromNomadDeployment(d *nomad.Deployment) *Deployment {
	return &Deployment{ID: d.ID, Namespace: d.Namespace, JobID: d.JobID, Status: d.Status, JobVersion: d.JobVersion,
		CreateIndex: d.CreateIndex, ModifyIndex: d.ModifyIndex}
}

// Editor changes a snapshot's copy, for fakes of the model (clustertest)
// and tests; the model itself changes only through Nomad's events.
type Editor struct{ b *builder }

// Edit returns a new snapshot: s with fn's changes. s is unchanged.
func (s *Snapshot) Edit(fn func(*Editor)) *Snapshot {
	b := newBuilder(s)
	fn(&Editor{b})
	b.index++
	return b.commit()
}

// Empty is a snapshot of an empty cluster; live says whether it claims
// to follow Nomad.
func Empty(live bool) *Snapshot {
	s := emptySnapshot()
	s.sync.Live = live
	return s
}

// PutNode adds or replaces a node.
func (e *Editor) PutNode(n *Node) {
	if n.Meta == nil {
		n.Meta = map[string]string{}
	}
	e.b.nodes.Insert([]byte(n.ID), n)
}

// DeleteNode removes a node.
func (e *Editor) DeleteNode(id string) { e.b.nodes.Delete([]byte(id)) }

// PutAlloc adds or replaces an allocation; a terminal one is removed.
func (e *Editor) PutAlloc(a *Alloc) {
	a.ModifyIndex = max(a.ModifyIndex, e.b.index+1)
	e.b.upsertAlloc(a)
}

// PutJob adds or replaces a job.
func (e *Editor) PutJob(j *Job) { e.b.jobs.Insert(key(j.Namespace, j.ID), j) }

// DeleteJob removes a job with its queue and deployment.
func (e *Editor) DeleteJob(namespace, id string) { e.b.deleteJob(namespace, id, ^uint64(0)) }

// SetQueue sets what Nomad could not place of a job; nil clears it.
func (e *Editor) SetQueue(namespace, job string, q *Queue) {
	if q == nil || len(q.Queued) == 0 {
		e.b.queues.Delete(key(namespace, job))
		return
	}
	e.b.queues.Insert(key(namespace, job), q)
}

// PutDeployment sets a job's latest deployment.
func (e *Editor) PutDeployment(d *Deployment) { e.b.deploys.Insert(key(d.Namespace, d.JobID), d) }

// SetLive sets whether the snapshot claims to follow Nomad.
func (e *Editor) SetLive(live bool) { e.b.sync.Live = live }

// SetSync sets how current the snapshot claims to be: a model that lost
// Nomad at a time, say.
func (e *Editor) SetSync(s Sync) { e.b.sync = s }

// Source gives the current snapshot: a Model, or a Static one.
type Source interface {
	Snapshot() *Snapshot
}

var (
	_ Source = (*Model)(nil)
	_ Source = (*Static)(nil)
)

// Static is a Source whose snapshots a program sets by hand: the base of
// fakes, and a fixed view for tools. It is safe for concurrent use.
type Static struct {
	mu   sync.Mutex
	snap *Snapshot
}

// NewStatic returns a Static source of s.
func NewStatic(s *Snapshot) *Static { return &Static{snap: s} }

// Snapshot implements Source.
func (st *Static) Snapshot() *Snapshot {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.snap
}

// Update applies fn to the current snapshot (cur; fn must not call
// Snapshot) and publishes the result, waking the readers of the previous
// one. Updates are serialised.
func (st *Static) Update(fn func(cur *Snapshot, e *Editor)) *Snapshot {
	st.mu.Lock()
	prev := st.snap
	st.snap = prev.Edit(func(e *Editor) { fn(prev, e) })
	next := st.snap
	st.mu.Unlock()
	close(prev.changed)
	return next
}
