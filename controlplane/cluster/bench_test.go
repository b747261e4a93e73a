package cluster

import (
	"fmt"
	"testing"

	nomad "github.com/hashicorp/nomad/api"
)

// bigSnapshot is the design target: 10,000 nodes and 100,000 allocations.
func bigSnapshot(b *testing.B) *Snapshot {
	b.Helper()
	return Empty(true).Edit(func(e *Editor) {
		for i := range 10000 {
			id := fmt.Sprintf("node-%05d", i)
			e.PutNode(&Node{ID: id, Name: id, Pool: "bu-a", Status: "ready", Eligible: true, CPU: 4000, MemoryMB: 8192,
				Meta: map[string]string{"spillway.serves": "bu-a"}})
			for j := range 10 {
				e.PutAlloc(&Alloc{ID: fmt.Sprintf("%s-%d", id, j), Namespace: "default", JobID: fmt.Sprintf("job-%d", j), TaskGroup: "g",
					NodeID: id, JobType: "service", ClientStatus: "running", DesiredStatus: "run", CPU: 250, MemoryMB: 256})
			}
		}
	})
}

// BenchmarkApplyEvent10kNodes: one allocation event on a model of 10,000
// nodes and 100,000 allocations costs O(log n) and allocates only the
// paths it changes, whatever the size of the model.
func BenchmarkApplyEvent10kNodes(b *testing.B) {
	s := bigSnapshot(b)
	m := New(Options{})
	ev := &nomad.Events{Index: 1, Events: []nomad.Event{{Topic: nomad.TopicAllocation, Type: "AllocationUpdated", Payload: map[string]any{
		"Allocation": map[string]any{"ID": "node-00042-3", "Namespace": "default", "JobID": "job-3", "TaskGroup": "g", "NodeID": "node-00042",
			"ClientStatus": "running", "DesiredStatus": "run", "ModifyIndex": 2}}}}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		bl := newBuilder(s)
		if err := m.apply(bl, &feed{}, ev); err != nil {
			b.Fatal(err)
		}
		_ = bl.commit()
	}
}

// BenchmarkNodeUsage10kNodes: every node with its usage, as planning and
// the capacity gauges read it, from a snapshot no one has read yet (each
// iteration a new one). Each node's sums are kept as allocations change,
// so it walks the nodes, not the 100,000 allocations (18 ms before, on
// the 2-core machine; about 10 now).
func BenchmarkNodeUsage10kNodes(b *testing.B) {
	s := bigSnapshot(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		s = s.Edit(func(*Editor) {})
		if n := len(s.NodeUsage()); n != 10000 {
			b.Fatal(n)
		}
	}
}

// BenchmarkNodeUsageShared10kNodes: a hundred readers of one snapshot's
// nodes by instance, as a hundred scale-outs in flight each look for
// their hosts' nodes when the model changes. The walk is done once per
// snapshot: before, each reader walked every node and allocation (a
// hundred walks of 17 ms on the 2-core machine).
func BenchmarkNodeUsageShared10kNodes(b *testing.B) {
	s := bigSnapshot(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		s = s.Edit(func(*Editor) {})
		for range 100 {
			if n := len(s.UsageBy("spillway.serves")); n != 1 {
				b.Fatal(n)
			}
		}
	}
}
