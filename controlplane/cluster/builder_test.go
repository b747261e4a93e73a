package cluster

import (
	"encoding/json"
	"errors"
	"testing"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/policies"
)

func ptr[T any](v T) *T { return &v }

func nomadNode(id string, index uint64, meta map[string]string) *nomad.Node {
	return &nomad.Node{ID: id, Name: "n-" + id, NodePool: "bu-a", Status: "ready", SchedulingEligibility: nomad.NodeSchedulingEligible,
		Meta: meta, ModifyIndex: index,
		NodeResources:     &nomad.NodeResources{Cpu: nomad.NodeCpuResources{CpuShares: 2000}, Memory: nomad.NodeMemoryResources{MemoryMB: 2048}},
		ReservedResources: &nomad.NodeReservedResources{Cpu: nomad.NodeReservedCpuResources{CpuShares: 100}}}
}

func nomadAlloc(id, node, status string, index uint64) *nomad.Allocation {
	return &nomad.Allocation{ID: id, Namespace: "default", JobID: "demo", TaskGroup: "web", NodeID: node, ClientStatus: status,
		DesiredStatus: "run", ModifyIndex: index, AllocatedResources: &nomad.AllocatedResources{Tasks: map[string]*nomad.AllocatedTaskResources{
			"app": {Cpu: nomad.AllocatedCpuResources{CpuShares: 250}, Memory: nomad.AllocatedMemoryResources{MemoryMB: 64}}}}}
}

func demoJob(count int, index uint64) *nomad.Job {
	return &nomad.Job{ID: ptr("demo"), Namespace: ptr("default"), Type: ptr("service"), NodePool: ptr("all"), ModifyIndex: ptr(index),
		TaskGroups: []*nomad.TaskGroup{{Name: ptr("web"), Count: ptr(count),
			Constraints: []*nomad.Constraint{nomad.NewConstraint("${meta.spillway.serves}", "=", "bu-a")},
			Tasks:       []*nomad.Task{{Name: "app", Resources: &nomad.Resources{CPU: ptr(250), MemoryMB: ptr(64)}}}}}}
}

func events(index uint64, evs ...nomad.Event) *nomad.Events {
	for i := range evs {
		evs[i].Index = index
	}
	return &nomad.Events{Index: index, Events: evs}
}

func payload(kind string, v any) map[string]any { return map[string]any{kind: v} }

// applyAll applies event batches to an empty live model and returns the
// snapshot and the first error.
func applyAll(t *testing.T, batches ...*nomad.Events) (*Snapshot, error) {
	t.Helper()
	m := New(Options{})
	s := emptySnapshot()
	f := &feed{}
	for _, evs := range batches {
		b := newBuilder(s)
		// Event payloads are maps on the wire; round-trip them as the API does.
		for i := range evs.Events {
			evs.Events[i].Payload = wire(t, evs.Events[i].Payload)
		}
		if err := m.apply(b, f, evs); err != nil {
			return s, err
		}
		s = b.commit()
	}
	return s, nil
}

func TestApplyEvents(t *testing.T) {
	target := policies.Target{Namespace: "default", Job: "demo", Group: "web"}
	s, err := applyAll(t,
		events(10,
			nomad.Event{Topic: nomad.TopicNode, Type: "NodeRegistration", Payload: payload("Node", nomadNode("n1", 10, map[string]string{"spillway.serves": "bu-a"}))},
			nomad.Event{Topic: nomad.TopicJob, Type: "JobRegistered", Payload: payload("Job", demoJob(10, 10))}),
		events(11,
			nomad.Event{Topic: nomad.TopicAllocation, Type: "AllocationUpdated", Payload: payload("Allocation", nomadAlloc("a1", "n1", "running", 11))},
			nomad.Event{Topic: nomad.TopicAllocation, Type: "AllocationUpdated", Payload: payload("Allocation", nomadAlloc("a2", "n1", "pending", 11))},
			nomad.Event{Topic: nomad.TopicEvaluation, Type: "EvaluationUpdated", Payload: payload("Evaluation", &nomad.Evaluation{
				ID: "e1", Namespace: "default", JobID: "demo", Status: "complete", BlockedEval: "e2", ModifyIndex: 11,
				QueuedAllocations: map[string]int{"web": 8},
				FailedTGAllocs:    map[string]*nomad.AllocationMetric{"web": {NodesEvaluated: 1, NodesExhausted: 1, DimensionExhausted: map[string]int{"cpu": 1}}}})}),
	)
	if err != nil {
		t.Fatal(err)
	}
	n, ok := s.Node("n1")
	if !ok || n.CPU != 1900 || n.MemoryMB != 2048 || !n.Ready() || !n.Eligible || n.Meta["spillway.serves"] != "bu-a" {
		t.Fatalf("node: %+v", n)
	}
	g, ok := s.Group(target)
	if !ok || g.Count != 10 || g.Serves != "bu-a" || g.PerAlloc.CPUMHz != 250 || g.PerAlloc.MemoryMB != 64 {
		t.Fatalf("group: %+v", g)
	}
	d, _ := s.Demand(target)
	if d.Running != 1 || d.Starting != 1 || d.Queued != 8 || d.Blocked == nil || d.Blocked.EvalID != "e2" || d.Blocked.NodePool != "all" || d.Blocked.Exhausted["cpu"] != 1 {
		t.Fatalf("demand: %+v (blocked %+v)", d, d.Blocked)
	}
	if q := s.Queued(); len(q) != 1 || q[0] != target {
		t.Fatalf("queued groups: %v", q)
	}
	if u, _ := s.Usage("n1"); u.UsedCPU != 500 || u.Allocs != 2 || u.Draining {
		t.Fatalf("usage: %+v", u)
	}
	if a := s.AllocsOnNode("n1"); len(a) != 2 || a[0].JobType != "service" {
		t.Fatalf("allocations on n1: %+v", a)
	}

	// An older version of an object never overwrites a newer one; a
	// terminal allocation is forgotten; placements clear the queue.
	s2, err := applyAll(t, append([]*nomad.Events{},
		events(10,
			nomad.Event{Topic: nomad.TopicNode, Type: "NodeRegistration", Payload: payload("Node", nomadNode("n1", 12, map[string]string{"spillway.serves": "bu-a"}))},
			nomad.Event{Topic: nomad.TopicJob, Type: "JobRegistered", Payload: payload("Job", demoJob(10, 10))},
			nomad.Event{Topic: nomad.TopicAllocation, Type: "AllocationUpdated", Payload: payload("Allocation", nomadAlloc("a1", "n1", "running", 11))},
			nomad.Event{Topic: nomad.TopicEvaluation, Type: "EvaluationUpdated", Payload: payload("Evaluation", &nomad.Evaluation{
				ID: "e1", Namespace: "default", JobID: "demo", ModifyIndex: 11, QueuedAllocations: map[string]int{"web": 8}})}),
		events(13,
			nomad.Event{Topic: nomad.TopicNode, Type: "NodeDrain", Payload: payload("Node", nomadNode("n1", 9, map[string]string{"stale": "yes"}))},
			nomad.Event{Topic: nomad.TopicAllocation, Type: "AllocationUpdated", Payload: payload("Allocation", nomadAlloc("a1", "n1", "complete", 13))},
			nomad.Event{Topic: nomad.TopicEvaluation, Type: "EvaluationUpdated", Payload: payload("Evaluation", &nomad.Evaluation{
				ID: "e2", Namespace: "default", JobID: "demo", ModifyIndex: 13, QueuedAllocations: map[string]int{"web": 0}})}),
	)...)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := s2.Node("n1"); n.Meta["stale"] != "" || n.ModifyIndex != 12 {
		t.Errorf("an older node event overwrote a newer one: %+v", n)
	}
	if s2.AllocCount() != 0 || len(s2.AllocsOf(target)) != 0 {
		t.Errorf("a terminal allocation is still in the model: %d", s2.AllocCount())
	}
	if d, _ := s2.Demand(target); d.Queued != 0 || d.Blocked != nil || len(s2.Queued()) != 0 {
		t.Errorf("placements did not clear the queue: %+v", d)
	}

	// Deregistrations remove.
	s3, _ := applyAll(t,
		events(10, nomad.Event{Topic: nomad.TopicNode, Type: "NodeRegistration", Payload: payload("Node", nomadNode("n1", 10, nil))},
			nomad.Event{Topic: nomad.TopicJob, Type: "JobRegistered", Payload: payload("Job", demoJob(1, 10))}),
		events(11, nomad.Event{Topic: nomad.TopicNode, Type: "NodeDeregistration", Payload: payload("Node", nomadNode("n1", 11, nil))},
			nomad.Event{Topic: nomad.TopicJob, Type: "JobDeregistered", Payload: payload("Job", demoJob(1, 11))}))
	if s3.NodeCount() != 0 || s3.JobCount() != 0 {
		t.Errorf("deregistered objects remain: %d nodes, %d jobs", s3.NodeCount(), s3.JobCount())
	}
	if _, ok := s3.Demand(target); ok {
		t.Error("the demand of a deregistered job")
	}

	// An index that goes backwards ends the follow: the model lists again.
	_, err = applyAll(t, events(20), events(19))
	if !errors.Is(err, errIndexBackwards) {
		t.Errorf("an index going backwards: %v", err)
	}

	// The stream starts with Nomad's buffered events, older than the list:
	// those a topic's list covers are skipped, so a replayed event cannot
	// bring back an allocation the list no longer has.
	m := New(Options{})
	b := newBuilder(emptySnapshot())
	f := &feed{covered: map[nomad.Topic]uint64{nomad.TopicAllocation: 15}}
	old := events(12, nomad.Event{Topic: nomad.TopicAllocation, Type: "AllocationUpdated", Payload: wire(t, payload("Allocation", nomadAlloc("ghost", "n1", "running", 12)))})
	fresh := events(16, nomad.Event{Topic: nomad.TopicAllocation, Type: "AllocationUpdated", Payload: wire(t, payload("Allocation", nomadAlloc("new", "n1", "running", 16)))})
	for _, evs := range []*nomad.Events{old, fresh} {
		if err := m.apply(b, f, evs); err != nil {
			t.Fatal(err)
		}
	}
	s4 := b.commit()
	if _, ok := s4.allocs.Get([]byte("ghost")); ok {
		t.Error("a replayed event the list covers brought back an allocation")
	}
	if _, ok := s4.allocs.Get([]byte("new")); !ok {
		t.Error("an event after the list was not applied")
	}
}

func TestServesOf(t *testing.T) {
	for _, c := range []struct {
		cs   []*nomad.Constraint
		want string
	}{
		{nil, ""},
		{[]*nomad.Constraint{nomad.NewConstraint("${meta.spillway.serves}", "=", "bu-a")}, "bu-a"},
		{[]*nomad.Constraint{nomad.NewConstraint("${meta.spillway.serves}", "==", "bu-b")}, "bu-b"},
		{[]*nomad.Constraint{nomad.NewConstraint("bu-c", "=", "${meta.spillway.serves}")}, "bu-c"},
		{[]*nomad.Constraint{nomad.NewConstraint("${meta.spillway.serves}", "!=", "bu-a")}, ""},
		{[]*nomad.Constraint{nomad.NewConstraint("${meta.spillway.serves}", "=", "${meta.x}")}, ""},
		{[]*nomad.Constraint{nomad.NewConstraint("${attr.kernel.name}", "=", "linux")}, ""},
	} {
		if got := servesOf(c.cs); got != c.want {
			t.Errorf("servesOf(%v) = %q, want %q", c.cs, got, c.want)
		}
	}
}

// wire turns a payload of Nomad structs into what the event stream's JSON
// decodes to.
func wire(t *testing.T, p map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
