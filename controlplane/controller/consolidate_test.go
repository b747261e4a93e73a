package controller

import (
	"testing"

	"github.com/spillwayhq/spillway/controlplane/demand"
)

func TestFitsElsewhere(t *testing.T) {
	alloc := demand.Size{CPUMHz: 250, MemoryMB: 64}
	for _, c := range []struct {
		name string
		v    servingView
		want bool
	}{
		{"empty host", servingView{free: map[string]demand.Size{"b": {}, "own": {}}}, true},
		{"room on the own host", servingView{
			free:   map[string]demand.Size{"b": {CPUMHz: 1000}, "own": {CPUMHz: 500, MemoryMB: 1000}},
			allocs: map[string][]demand.Size{"b": {alloc, alloc}},
		}, true},
		{"not enough cpu", servingView{
			free:   map[string]demand.Size{"b": {CPUMHz: 1000}, "own": {CPUMHz: 499, MemoryMB: 1000}},
			allocs: map[string][]demand.Size{"b": {alloc, alloc}},
		}, false},
		{"split across two hosts", servingView{
			free:   map[string]demand.Size{"b": {}, "own1": {CPUMHz: 250, MemoryMB: 64}, "own2": {CPUMHz: 250, MemoryMB: 64}},
			allocs: map[string][]demand.Size{"b": {alloc, alloc}},
		}, true},
		{"memory bound", servingView{
			free:   map[string]demand.Size{"b": {}, "own": {CPUMHz: 2000, MemoryMB: 100}},
			allocs: map[string][]demand.Size{"b": {alloc, alloc}},
		}, false},
	} {
		if got := c.v.fitsElsewhere("b"); got != c.want {
			t.Errorf("%s: fitsElsewhere = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestSpareNeverInterruptsBatch(t *testing.T) {
	alloc := demand.Size{CPUMHz: 250, MemoryMB: 64}
	v := servingView{
		free:   map[string]demand.Size{"b": {}, "own": {CPUMHz: 2000, MemoryMB: 2048}},
		allocs: map[string][]demand.Size{"b": {alloc}},
		batch:  map[string]bool{},
	}
	if !v.spare("b") {
		t.Fatal("a host whose service allocations fit elsewhere is spare")
	}
	v.batch["b"] = true
	if v.spare("b") {
		t.Fatal("a host running a batch allocation must not be given back")
	}
}
