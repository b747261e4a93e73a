package controller

import (
	"slices"
	"sort"
	"testing"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/controlplane/demand"
	"github.com/spillwayhq/spillway/controlplane/placement"
	"github.com/spillwayhq/spillway/pools"
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

// TestFitsElsewhereOnlyWhereItsConstraintsHold: room on a node the
// allocation's job may not run on does not count; an allocation whose
// job is not known fits nowhere.
func TestFitsElsewhereOnlyWhereItsConstraintsHold(t *testing.T) {
	alloc := demand.Size{CPUMHz: 250, MemoryMB: 64}
	aliOnly := &placement.Work{NodePool: "all", Constraints: []*nomad.Constraint{nomad.NewConstraint("${meta.spillway.pool}", "=", "alicloud-lab")}}
	host := func(pool string) placement.Host {
		return placement.Host{What: pool, NodePool: "burst", PoolKnown: true, ClassKnown: true, Meta: map[string]string{"spillway.pool": pool}, MetaComplete: true}
	}
	v := servingView{
		free:   map[string]demand.Size{"b": {}, "aws-1": {CPUMHz: 1000, MemoryMB: 1024}},
		allocs: map[string][]demand.Size{"b": {alloc}},
		hosts:  map[string]placement.Host{"b": host("alicloud-lab"), "aws-1": host("aws-lab")},
		works:  map[string][]*placement.Work{"b": {aliOnly}},
	}
	if v.fitsElsewhere("b") {
		t.Fatal("the allocation fits on an aws-lab host, which its constraint rules out")
	}
	v.free["ali-2"], v.hosts["ali-2"] = demand.Size{CPUMHz: 1000, MemoryMB: 1024}, host("alicloud-lab")
	v.roomy = nil // a view is built once; this one changed
	if !v.fitsElsewhere("b") {
		t.Fatal("the allocation does not fit on another alicloud-lab host with room")
	}
	v.works["b"] = []*placement.Work{nil}
	if v.fitsElsewhere("b") {
		t.Fatal("an allocation whose job is not known fits elsewhere")
	}

	// Attributes: a kept one is checked on the node; one the model does
	// not keep cannot be, and doubt keeps the host.
	arm := &placement.Work{NodePool: "all", Constraints: []*nomad.Constraint{nomad.NewConstraint("${attr.cpu.arch}", "=", "arm64")}}
	v.works["b"] = []*placement.Work{arm}
	withAttrs := func(h placement.Host, arch string) placement.Host {
		h.Attrs = map[string]string{"cpu.arch": arch, "kernel.name": "linux"}
		return h
	}
	v.hosts["ali-2"] = withAttrs(host("alicloud-lab"), "amd64")
	if v.fitsElsewhere("b") {
		t.Fatal("an arm64-only allocation fits on an amd64 node")
	}
	v.hosts["ali-2"] = withAttrs(host("alicloud-lab"), "arm64")
	if !v.fitsElsewhere("b") {
		t.Fatal("an arm64-only allocation does not fit on an arm64 node with room")
	}
	v.works["b"] = []*placement.Work{{NodePool: "all", Constraints: []*nomad.Constraint{nomad.NewConstraint("${attr.gpu.model}", "=", "a100")}}}
	if v.fitsElsewhere("b") {
		t.Fatal("an allocation constrained on an attribute the model does not keep fits elsewhere: scale-in gave a host back on doubt")
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

// TestScaleInOrder: rented before borrowed, the priciest first, then the
// emptiest, then spot before on-demand.
func TestScaleInOrder(t *testing.T) {
	alloc := demand.Size{CPUMHz: 250}
	v := &servingView{allocs: map[string][]demand.Size{
		"shared-1": {}, "od-busy": {alloc, alloc}, "od-empty": {}, "spot-empty": {}, "cheap": {}, "dear-busy": {alloc, alloc, alloc},
	}}
	cand := func(node string, cloud bool, price float64, spot bool) candidate {
		return candidate{loan: pools.Loan{Host: node}, node: node, cloud: cloud, price: price, spot: spot}
	}
	cands := []candidate{
		cand("shared-1", false, 0, false),
		cand("cheap", true, 0.05, true),
		cand("od-busy", true, 0.1, false),
		cand("od-empty", true, 0.1, false),
		cand("spot-empty", true, 0.1, true),
		cand("dear-busy", true, 0.2, false),
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].before(cands[j], v) })
	var got []string
	for _, c := range cands {
		got = append(got, c.node)
	}
	want := []string{"dear-busy", "spot-empty", "od-empty", "od-busy", "cheap", "shared-1"}
	if !slices.Equal(got, want) {
		t.Fatalf("scale-in order %v, want %v", got, want)
	}
}
