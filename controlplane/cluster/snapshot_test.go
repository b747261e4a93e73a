package cluster

import "testing"

// A snapshot's node usage is walked once and shared, but each caller of
// NodeUsage gets its own copy, and UsageBy finds nodes by a meta value
// with what they use; a newer snapshot sees its own allocations.
func TestNodeUsageIsSharedPerSnapshot(t *testing.T) {
	s := Empty(true).Edit(func(e *Editor) {
		e.PutNode(&Node{ID: "n1", Name: "n1", Status: "ready", Eligible: true, CPU: 4000, MemoryMB: 8192, Meta: map[string]string{"instance": "i-1"}})
		e.PutNode(&Node{ID: "n2", Name: "n2", Status: "ready", Eligible: true, CPU: 4000, MemoryMB: 8192})
		e.PutAlloc(&Alloc{ID: "a1", Namespace: "default", JobID: "j", TaskGroup: "g", NodeID: "n1", ClientStatus: "running", DesiredStatus: "run", CPU: 500, MemoryMB: 256})
	})
	u := s.NodeUsage()
	if len(u) != 2 || u[0].ID != "n1" || u[0].UsedCPU != 500 || u[0].Allocs != 1 {
		t.Fatalf("usage %+v", u)
	}
	u[0].UsedCPU = 0
	if again := s.NodeUsage(); again[0].UsedCPU != 500 {
		t.Fatalf("a caller's change to its usage reached the next caller: %+v", again[0])
	}
	by := s.UsageBy("instance")
	if len(by) != 1 || by["i-1"].ID != "n1" || by["i-1"].UsedMemoryMB != 256 {
		t.Fatalf("by instance %+v", by)
	}
	next := s.Edit(func(e *Editor) {
		e.PutAlloc(&Alloc{ID: "a2", Namespace: "default", JobID: "j", TaskGroup: "g", NodeID: "n1", ClientStatus: "running", DesiredStatus: "run", CPU: 1000, MemoryMB: 256})
	})
	if got := next.UsageBy("instance")["i-1"].UsedCPU; got != 1500 {
		t.Fatalf("the newer snapshot's node uses %d MHz, want 1500", got)
	}
	if got := s.UsageBy("instance")["i-1"].UsedCPU; got != 500 {
		t.Fatalf("the older snapshot's node uses %d MHz, want 500", got)
	}
}
