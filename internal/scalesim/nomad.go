package scalesim

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/policies"
)

// Nomad is a simulated Nomad cluster: the cluster model's Feed (lists and
// an event stream of JSON payloads, as the HTTP API sends them) and the
// controllers' Orchestrator. Nodes register when told (the harness does,
// a join delay after a simulated instance boots); a job's count beyond
// its allocations is placed first fit on ready, eligible nodes of its node
// pool with room, and what does not fit is queued with a blocked
// evaluation, as Nomad's scheduler reports it. A placed allocation runs,
// healthy, Pull after it is placed (the image pull and the task start).
type Nomad struct {
	clock *Clock
	// Pull is how long a placed allocation takes to run.
	Pull time.Duration
	// OnRunning, when set, is called (outside the lock) when an
	// allocation of a group starts running on a node.
	OnRunning func(t policies.Target, node string, at time.Time)

	mu     sync.Mutex
	index  uint64
	seq    int
	nodes  map[string]*nomad.Node
	jobs   map[string]*simJob // by namespace/id
	allocs map[string]*nomad.Allocation
	used   map[string][2]int64 // node -> cpu, memory used
	room   map[string]bool     // nodes that may have room
	subs   []chan *nomad.Events
	batch  []nomad.Event
	// live counts each group's allocations desired running, by
	// namespace/job/group; keys are the jobs' keys sorted (nil when a job
	// was added), rooms the room's nodes, kept sorted; asks are the jobs'
	// groups' distinct asks (nil when a job was added). Each schedule
	// reads them: walking and sorting every job, allocation and node on
	// each change cost most of the simulation's time at 10,000 nodes.
	live  map[string]int
	keys  []string
	rooms []string
	asks  [][2]int64
	// pulls are the allocations whose image pull ends at each instant.
	pulls map[time.Time][]string
	// stubs and asked are what allocations share (jobStub, resources).
	stubs map[string]*nomad.Job
	asked map[[2]int64]*nomad.AllocatedResources
}

type simJob struct {
	job    *nomad.Job
	queued map[string]int
	eval   *nomad.Evaluation
}

var (
	_ cluster.Feed         = (*Nomad)(nil)
	_ cluster.Orchestrator = (*Nomad)(nil)
)

// NewNomad returns an empty cluster on clock.
func NewNomad(clock *Clock) *Nomad {
	return &Nomad{clock: clock, index: 1, nodes: map[string]*nomad.Node{}, jobs: map[string]*simJob{},
		allocs: map[string]*nomad.Allocation{}, used: map[string][2]int64{}, room: map[string]bool{}, live: map[string]int{}}
}

func jobKey(ns, id string) string { return ns + "/" + id }

func ptr[T any](v T) *T { return &v }

// emit queues an event of the change being made; flush sends the batch.
func (n *Nomad) emit(topic nomad.Topic, typ, key, kind string, obj any) {
	raw, err := json.Marshal(obj)
	if err != nil {
		panic(err)
	}
	n.batch = append(n.batch, nomad.Event{Topic: topic, Type: typ, Key: key, Index: n.index,
		Payload: map[string]any{kind: json.RawMessage(raw)}})
}

func (n *Nomad) flush() {
	if len(n.batch) == 0 {
		return
	}
	evs := &nomad.Events{Index: n.index, Events: n.batch}
	n.batch = nil
	live := n.subs[:0]
	for _, ch := range n.subs {
		select {
		case ch <- evs:
			live = append(live, ch)
		default: // a reader too far behind: its stream breaks, it lists again
			close(ch)
		}
	}
	n.subs = live
}

// AddNode registers a ready, eligible node and places what waits for it.
func (n *Nomad) AddNode(node *nomad.Node) {
	n.mu.Lock()
	n.index++
	node.Status, node.SchedulingEligibility = nomad.NodeStatusReady, nomad.NodeSchedulingEligible
	node.CreateIndex, node.ModifyIndex = n.index, n.index
	n.nodes[node.ID] = node
	n.setRoom(node.ID)
	n.emit(nomad.TopicNode, "NodeRegistration", node.ID, "Node", node)
	n.scheduleLocked()
	n.flush()
	n.mu.Unlock()
}

// AddJob registers a job and places it.
func (n *Nomad) AddJob(job *nomad.Job) {
	n.mu.Lock()
	n.index++
	job.ModifyIndex, job.JobModifyIndex, job.CreateIndex = ptr(n.index), ptr(n.index), ptr(n.index)
	job.Status = ptr("running")
	n.jobs[jobKey(*job.Namespace, *job.ID)] = &simJob{job: job, queued: map[string]int{}}
	n.keys, n.asks = nil, nil
	n.emit(nomad.TopicJob, "JobRegistered", *job.ID, "Job", job)
	n.scheduleLocked()
	n.flush()
	n.mu.Unlock()
}

// NodeCount is how many nodes are registered.
func (n *Nomad) NodeCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.nodes)
}

func groupOf(j *nomad.Job, name string) *nomad.TaskGroup {
	for _, g := range j.TaskGroups {
		if *g.Name == name {
			return g
		}
	}
	return nil
}

func askOf(g *nomad.TaskGroup) (cpu, mem int64) {
	for _, t := range g.Tasks {
		if t.Resources != nil {
			cpu += int64(*t.Resources.CPU)
			mem += int64(*t.Resources.MemoryMB)
		}
	}
	return cpu, mem
}

// fits reports whether node may take an allocation of g of job j: its node
// pool, datacenters and the ${meta.*} and ${node.class} equality
// constraints (the ones the simulation's jobs have), and room.
func fits(node *nomad.Node, j *nomad.Job, g *nomad.TaskGroup, used [2]int64) bool {
	if node.Status != nomad.NodeStatusReady || node.SchedulingEligibility != nomad.NodeSchedulingEligible || node.DrainStrategy != nil {
		return false
	}
	pool := "default"
	if j.NodePool != nil && *j.NodePool != "" {
		pool = *j.NodePool
	}
	if pool != "all" && node.NodePool != pool {
		return false
	}
	if len(j.Datacenters) > 0 && !contains(j.Datacenters, node.Datacenter) {
		return false
	}
	for _, c := range append(append([]*nomad.Constraint{}, j.Constraints...), g.Constraints...) {
		var v string
		switch {
		case c.LTarget == "${node.class}":
			v = node.NodeClass
		case strings.HasPrefix(c.LTarget, "${meta.") && strings.HasSuffix(c.LTarget, "}"):
			v = node.Meta[strings.TrimSuffix(strings.TrimPrefix(c.LTarget, "${meta."), "}")]
		default:
			continue
		}
		if (c.Operand == "=" || c.Operand == "==" || c.Operand == "is") && v != c.RTarget {
			return false
		}
	}
	cpu, mem := askOf(g)
	r := node.NodeResources
	return used[0]+cpu <= r.Cpu.CpuShares && used[1]+mem <= r.Memory.MemoryMB
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x || y == "*" {
			return true
		}
	}
	return false
}

// setRoom marks a node as one that may have room.
func (n *Nomad) setRoom(id string) {
	if !n.room[id] {
		n.room[id] = true
		i, _ := slices.BinarySearch(n.rooms, id)
		n.rooms = slices.Insert(n.rooms, i, id)
	}
}

// groupKey is a group's key in live.
func groupKey(ns, job, group string) string { return ns + "/" + job + "/" + group }

// scheduleLocked places every group's missing allocations and queues the
// rest, stopping the newest beyond a lowered count.
func (n *Nomad) scheduleLocked() {
	if n.keys == nil {
		for k := range n.jobs {
			n.keys = append(n.keys, k)
		}
		sort.Strings(n.keys)
	}
	room := n.rooms
	for _, k := range n.keys {
		sj := n.jobs[k]
		j := sj.job
		changed := map[string]int{}
		for _, g := range j.TaskGroups {
			gk := k + "/" + *g.Name
			have := n.live[gk]
			if have == *g.Count && sj.queued[*g.Name] == 0 {
				continue // nothing missing, nothing queued: nothing changes
			}
			if have > *g.Count {
				var as []*nomad.Allocation
				for _, a := range n.allocs {
					if a.DesiredStatus == "run" && groupKey(a.Namespace, a.JobID, a.TaskGroup) == gk {
						as = append(as, a)
					}
				}
				sort.Slice(as, func(a, b int) bool { return as[a].CreateIndex < as[b].CreateIndex })
				for len(as) > *g.Count {
					n.stopLocked(as[len(as)-1])
					as = as[:len(as)-1]
				}
				have = len(as)
			}
			missing := *g.Count - have
			placed := 0
			for _, id := range room {
				if placed == missing {
					break
				}
				node := n.nodes[id]
				for placed < missing && fits(node, j, g, n.used[id]) {
					n.placeLocked(j, g, node)
					placed++
				}
			}
			if q := missing - placed; q != sj.queued[*g.Name] {
				changed[*g.Name] = q
			}
		}
		if len(changed) > 0 {
			n.index++
			n.seq++
			ev := &nomad.Evaluation{ID: fmt.Sprintf("eval-%06d", n.seq), Namespace: *j.Namespace, JobID: *j.ID, Status: "blocked",
				QueuedAllocations: map[string]int{}, FailedTGAllocs: map[string]*nomad.AllocationMetric{}, CreateIndex: n.index, ModifyIndex: n.index}
			for g, q := range changed {
				ev.QueuedAllocations[g] = q
				if q > 0 {
					sj.queued[g] = q
					ev.FailedTGAllocs[g] = &nomad.AllocationMetric{NodePool: deref(j.NodePool), NodesEvaluated: len(n.nodes),
						NodesExhausted: len(n.room), DimensionExhausted: map[string]int{"cpu": len(n.room)}}
				} else {
					delete(sj.queued, g)
				}
			}
			sj.eval = ev
			n.emit(nomad.TopicEvaluation, "EvaluationUpdated", ev.ID, "Evaluation", ev)
		}
	}
	var left []string // a new slice only when a node is full
	for i, id := range room {
		switch full := n.full(id); {
		case full && left == nil:
			left = append(make([]string, 0, len(room)), room[:i]...)
			delete(n.room, id)
		case full:
			delete(n.room, id)
		case left != nil:
			left = append(left, id)
		}
	}
	if left != nil {
		n.rooms = left
	}
}

// full: no group of any job could take another allocation on the node
// (the simulation's groups are of few sizes; the smallest ask decides).
// With no job yet, no node is full: the cluster's own nodes register
// before its jobs, and must keep their room for them.
func (n *Nomad) full(id string) bool {
	node := n.nodes[id]
	if node == nil {
		return true
	}
	if len(n.jobs) == 0 {
		return false
	}
	if n.asks == nil {
		seen := map[[2]int64]bool{}
		for _, k := range n.keys {
			for _, g := range n.jobs[k].job.TaskGroups {
				cpu, mem := askOf(g)
				if a := [2]int64{cpu, mem}; !seen[a] {
					seen[a] = true
					n.asks = append(n.asks, a)
				}
			}
		}
	}
	u := n.used[id]
	r := node.NodeResources
	for _, a := range n.asks {
		if u[0]+a[0] <= r.Cpu.CpuShares && u[1]+a[1] <= r.Memory.MemoryMB {
			return false
		}
	}
	return true
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func (n *Nomad) placeLocked(j *nomad.Job, g *nomad.TaskGroup, node *nomad.Node) {
	n.index++
	n.seq++
	cpu, mem := askOf(g)
	a := &nomad.Allocation{ID: fmt.Sprintf("alloc-%07d", n.seq), Namespace: *j.Namespace, JobID: *j.ID, TaskGroup: *g.Name, NodeID: node.ID,
		NodeName: node.Name, Job: n.jobStub(deref(j.Type)), ClientStatus: "pending", DesiredStatus: "run",
		AllocatedResources: n.resources(cpu, mem), CreateIndex: n.index, ModifyIndex: n.index}
	n.allocs[a.ID] = a
	n.live[groupKey(a.Namespace, a.JobID, a.TaskGroup)]++
	u := n.used[node.ID]
	n.used[node.ID] = [2]int64{u[0] + cpu, u[1] + mem}
	n.emit(nomad.TopicAllocation, "PlanResult", a.ID, "Allocation", a)
	if n.Pull <= 0 {
		n.runLocked(a)
		return
	}
	// One timer per instant for every allocation placed then, not one
	// each: the clock runs each on its own goroutine, and the 10,000
	// allocations of the large scenario's cluster, placed at once, were
	// 10,000 goroutines (80 MB of stacks) waking together.
	at := n.clock.Now().Add(n.Pull)
	if n.pulls == nil {
		n.pulls = map[time.Time][]string{}
	}
	if _, set := n.pulls[at]; !set {
		n.clock.AfterFunc(n.Pull, func() { n.pulled(at) })
	}
	n.pulls[at] = append(n.pulls[at], a.ID)
}

// pulled runs the allocations whose pull ends at at, in the order they
// were placed.
func (n *Nomad) pulled(at time.Time) {
	type ran struct {
		t    policies.Target
		node string
	}
	var out []ran
	n.mu.Lock()
	ids := n.pulls[at]
	delete(n.pulls, at)
	now := n.clock.Now()
	for _, id := range ids {
		a := n.allocs[id]
		if a != nil && a.ClientStatus == "pending" && a.DesiredStatus == "run" {
			n.index++
			n.runLocked(a)
			out = append(out, ran{policies.Target{Namespace: a.Namespace, Job: a.JobID, Group: a.TaskGroup}, a.NodeID})
		}
	}
	n.flush()
	n.mu.Unlock()
	if n.OnRunning != nil {
		for _, r := range out {
			n.OnRunning(r.t, r.node, now)
		}
	}
}

// jobStub is the job an allocation names, by the job's type, and
// resources what it was allocated, by its ask: one of each, shared, read
// only, by every allocation alike (one each per allocation was a third of
// the simulated Nomad's memory at 10,000 nodes, counted in the large
// scenario's peak RSS as if it were Spillway's).
func (n *Nomad) jobStub(typ string) *nomad.Job {
	if n.stubs == nil {
		n.stubs = map[string]*nomad.Job{}
	}
	j := n.stubs[typ]
	if j == nil {
		j = &nomad.Job{Type: ptr(typ)}
		n.stubs[typ] = j
	}
	return j
}

func (n *Nomad) resources(cpu, mem int64) *nomad.AllocatedResources {
	if n.asked == nil {
		n.asked = map[[2]int64]*nomad.AllocatedResources{}
	}
	r := n.asked[[2]int64{cpu, mem}]
	if r == nil {
		r = &nomad.AllocatedResources{Tasks: map[string]*nomad.AllocatedTaskResources{
			"main": {Cpu: nomad.AllocatedCpuResources{CpuShares: cpu}, Memory: nomad.AllocatedMemoryResources{MemoryMB: mem}}}}
		n.asked[[2]int64{cpu, mem}] = r
	}
	return r
}

// healthy is a running allocation's deployment status, shared.
var healthy = &nomad.AllocDeploymentStatus{Healthy: ptr(true)}

func (n *Nomad) runLocked(a *nomad.Allocation) {
	a.ClientStatus, a.ModifyIndex = "running", n.index
	a.DeploymentStatus = healthy
	n.emit(nomad.TopicAllocation, "AllocationUpdated", a.ID, "Allocation", a)
}

func (n *Nomad) stopLocked(a *nomad.Allocation) {
	n.index++
	a.DesiredStatus, a.ClientStatus, a.ModifyIndex = "stop", "complete", n.index
	u := n.used[a.NodeID]
	cpu, mem := int64(0), int64(0)
	for _, t := range a.AllocatedResources.Tasks {
		cpu, mem = cpu+t.Cpu.CpuShares, mem+t.Memory.MemoryMB
	}
	n.used[a.NodeID] = [2]int64{u[0] - cpu, u[1] - mem}
	n.live[groupKey(a.Namespace, a.JobID, a.TaskGroup)]--
	n.setRoom(a.NodeID)
	n.emit(nomad.TopicAllocation, "AllocationUpdated", a.ID, "Allocation", a)
	delete(n.allocs, a.ID)
}

// Feed.

// Stream implements cluster.Feed.
func (n *Nomad) Stream(ctx context.Context, _ map[nomad.Topic][]string, _ uint64, _ *nomad.QueryOptions) (<-chan *nomad.Events, error) {
	ch := make(chan *nomad.Events, 1<<16)
	n.mu.Lock()
	n.subs = append(n.subs, ch)
	n.mu.Unlock()
	out := make(chan *nomad.Events)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				n.mu.Lock()
				for i, c := range n.subs {
					if c == ch {
						n.subs = append(n.subs[:i], n.subs[i+1:]...)
						break
					}
				}
				n.mu.Unlock()
				return
			case evs, ok := <-ch:
				if !ok {
					return
				}
				select {
				case out <- evs:
				case <-ctx.Done():
				}
			}
		}
	}()
	return out, nil
}

func (n *Nomad) meta() *nomad.QueryMeta { return &nomad.QueryMeta{LastIndex: n.index} }

func roundTrip[T any](v *T) *T {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	out := new(T)
	if err := json.Unmarshal(b, out); err != nil {
		panic(err)
	}
	return out
}

func notFound(what string) error {
	// Nomad's 404 has no exported constructor: the model takes
	// cluster.ErrNotFound for one (cluster.IsNotFound).
	return fmt.Errorf("%s: %w", what, cluster.ErrNotFound)
}

// Nodes implements cluster.Feed (one page).
func (n *Nomad) Nodes(*nomad.QueryOptions) ([]*nomad.NodeListStub, *nomad.QueryMeta, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]*nomad.NodeListStub, 0, len(n.nodes))
	for _, x := range n.nodes {
		out = append(out, &nomad.NodeListStub{ID: x.ID, Name: x.Name, NodePool: x.NodePool, NodeClass: x.NodeClass, Datacenter: x.Datacenter,
			Status: x.Status, SchedulingEligibility: x.SchedulingEligibility, CreateIndex: x.CreateIndex, ModifyIndex: x.ModifyIndex})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, n.meta(), nil
}

// Node implements cluster.Feed.
func (n *Nomad) Node(id string, _ *nomad.QueryOptions) (*nomad.Node, *nomad.QueryMeta, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	x, ok := n.nodes[id]
	if !ok {
		return nil, nil, notFound("node " + id)
	}
	return roundTrip(x), n.meta(), nil
}

// Allocations implements cluster.Feed: the non-terminal ones, which is
// what the model's filter asks for.
func (n *Nomad) Allocations(*nomad.QueryOptions) ([]*nomad.AllocationListStub, *nomad.QueryMeta, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]*nomad.AllocationListStub, 0, len(n.allocs))
	for _, a := range n.allocs {
		st := &nomad.AllocationListStub{ID: a.ID, Namespace: a.Namespace, JobID: a.JobID, TaskGroup: a.TaskGroup, NodeID: a.NodeID,
			JobType: deref(a.Job.Type), ClientStatus: a.ClientStatus, DesiredStatus: a.DesiredStatus, DeploymentStatus: a.DeploymentStatus,
			AllocatedResources: roundTrip(a.AllocatedResources), CreateIndex: a.CreateIndex, ModifyIndex: a.ModifyIndex}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, n.meta(), nil
}

// Jobs implements cluster.Feed.
func (n *Nomad) Jobs(*nomad.QueryOptions) ([]*nomad.JobListStub, *nomad.QueryMeta, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]*nomad.JobListStub, 0, len(n.jobs))
	for _, sj := range n.jobs {
		j := sj.job
		sum := &nomad.JobSummary{JobID: *j.ID, Namespace: *j.Namespace, Summary: map[string]nomad.TaskGroupSummary{}}
		for g, q := range sj.queued {
			sum.Summary[g] = nomad.TaskGroupSummary{Queued: q}
		}
		out = append(out, &nomad.JobListStub{ID: *j.ID, Namespace: *j.Namespace, Name: *j.ID, Type: *j.Type,
			JobSummary: sum, ModifyIndex: *j.ModifyIndex, JobModifyIndex: *j.JobModifyIndex, CreateIndex: *j.CreateIndex})
	}
	sort.Slice(out, func(i, k int) bool { return out[i].ID < out[k].ID })
	return out, n.meta(), nil
}

// Job implements cluster.Feed.
func (n *Nomad) Job(id string, q *nomad.QueryOptions) (*nomad.Job, *nomad.QueryMeta, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	sj, ok := n.jobs[jobKey(q.Namespace, id)]
	if !ok {
		return nil, nil, notFound("job " + id)
	}
	return roundTrip(sj.job), n.meta(), nil
}

// JobEvaluations implements cluster.Feed: the job's last blocked
// evaluation.
func (n *Nomad) JobEvaluations(id string, q *nomad.QueryOptions) ([]*nomad.Evaluation, *nomad.QueryMeta, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	sj, ok := n.jobs[jobKey(q.Namespace, id)]
	if !ok {
		return nil, nil, notFound("job " + id)
	}
	if sj.eval == nil {
		return nil, n.meta(), nil
	}
	return []*nomad.Evaluation{roundTrip(sj.eval)}, n.meta(), nil
}

// Deployments implements cluster.Feed: the simulation has none.
func (n *Nomad) Deployments(*nomad.QueryOptions) ([]*nomad.Deployment, *nomad.QueryMeta, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return nil, n.meta(), nil
}

// Orchestrator.

// Scale implements cluster.Orchestrator.
func (n *Nomad) Scale(_ context.Context, t policies.Target, count int, _ string, _ map[string]any) error {
	return n.ScaleAll([]Count{{t, count}})
}

// Count is a group's new count.
type Count struct {
	Target policies.Target
	Count  int
}

// ScaleAll sets the counts of several groups in one change: one batch of
// events, which the cluster model takes in as one. The scenarios' burst
// is one: raised one by one while the control plane was still reading the
// raises before, which groups a provisioning pass saw together depended
// on the goroutines' timing, and a scale-out now and then waited a poll
// (the same seed gave other figures about one test run in ten).
func (n *Nomad) ScaleAll(counts []Count) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	defer n.flush()
	for _, c := range counts {
		sj, ok := n.jobs[jobKey(c.Target.Namespace, c.Target.Job)]
		if !ok {
			return fmt.Errorf("scaling %s: %w", c.Target, cluster.ErrNotFound)
		}
		g := groupOf(sj.job, c.Target.Group)
		if g == nil {
			return fmt.Errorf("scaling %s: %w", c.Target, cluster.ErrNotFound)
		}
		n.index++
		g.Count = ptr(c.Count)
		sj.job.ModifyIndex, sj.job.JobModifyIndex = ptr(n.index), ptr(n.index)
		n.emit(nomad.TopicJob, "JobRegistered", c.Target.Job, "Job", sj.job)
	}
	n.scheduleLocked()
	return nil
}

func (n *Nomad) editNode(id string, fn func(*nomad.Node)) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	x, ok := n.nodes[id]
	if !ok {
		return fmt.Errorf("node %s: %w", id, cluster.ErrNotFound)
	}
	n.index++
	fn(x)
	x.ModifyIndex = n.index
	n.emit(nomad.TopicNode, "NodeEvent", x.ID, "Node", x)
	n.setRoom(id)
	n.scheduleLocked()
	n.flush()
	return nil
}

// SetNodeMeta implements cluster.Orchestrator.
func (n *Nomad) SetNodeMeta(_ context.Context, node string, meta map[string]*string) error {
	return n.editNode(node, func(x *nomad.Node) {
		// A new map: nodes may share theirs (the scenario's own nodes do).
		m := maps.Clone(x.Meta)
		if m == nil {
			m = map[string]string{}
		}
		for k, v := range meta {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = *v
			}
		}
		x.Meta = m
	})
}

// SetEligibility implements cluster.Orchestrator.
func (n *Nomad) SetEligibility(_ context.Context, node string, eligible bool) error {
	return n.editNode(node, func(x *nomad.Node) {
		x.SchedulingEligibility = nomad.NodeSchedulingIneligible
		if eligible {
			x.SchedulingEligibility = nomad.NodeSchedulingEligible
		}
	})
}

// Drain implements cluster.Orchestrator: the node's allocations stop at
// once and are placed again elsewhere; the drain is then over.
func (n *Nomad) Drain(_ context.Context, node string, _ time.Duration, _ map[string]string) error {
	return n.editNode(node, func(x *nomad.Node) {
		x.SchedulingEligibility = nomad.NodeSchedulingIneligible
		for _, a := range n.allocs {
			if a.NodeID == node && a.DesiredStatus == "run" {
				n.stopLocked(a)
			}
		}
	})
}

// RemoveNode deregisters a node (its instance is gone); its allocations
// are lost and placed again.
func (n *Nomad) RemoveNode(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	x, ok := n.nodes[id]
	if !ok {
		return
	}
	for _, a := range n.allocs {
		if a.NodeID == id {
			n.stopLocked(a)
		}
	}
	n.index++
	x.ModifyIndex = n.index
	n.emit(nomad.TopicNode, "NodeDeregistration", id, "Node", x)
	delete(n.nodes, id)
	if n.room[id] {
		delete(n.room, id)
		n.rooms = slices.DeleteFunc(n.rooms, func(x string) bool { return x == id })
	}
	delete(n.used, id)
	n.scheduleLocked()
	n.flush()
}
