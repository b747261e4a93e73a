// Package demand owns what Nomad cannot place. After a scale-out raises a
// task group's count, Nomad places what fits at once and queues the rest
// in a blocked evaluation; the queued allocations, and the resources each
// one asks for, are the demand the capacity planner must find hosts for.
// Sizing is pure: PerAlloc is what one allocation asks for, HostsFor turns
// unplaced allocations into hosts of a given size. The cluster model reads
// the demand from Nomad (cluster.Snapshot.Demand).
package demand

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/policies"
)

// Size is what one allocation asks for, or what one host offers.
type Size struct {
	CPUMHz   int `json:"cpu_mhz"`
	MemoryMB int `json:"memory_mb"`
}

// Demand is a task group's placement state.
type Demand struct {
	Target policies.Target `json:"target"`
	// Count is the group's desired count.
	Count int `json:"count"`
	// Running and Starting are placed allocations.
	Running  int `json:"running"`
	Starting int `json:"starting"`
	// Queued allocations could not be placed: there is no room for them.
	Queued int `json:"queued"`
	// PerAllocation is what each allocation asks for (all tasks summed).
	PerAllocation Size `json:"per_allocation"`
	// Blocked describes the blocked evaluation holding the queued
	// allocations, when there is one.
	Blocked *Blocked `json:"blocked,omitempty"`
}

// Blocked is why Nomad could not place some allocations.
type Blocked struct {
	EvalID string `json:"eval_id"`
	// NodePool is where Nomad looked.
	NodePool       string `json:"node_pool,omitempty"`
	NodesEvaluated int    `json:"nodes_evaluated"`
	NodesExhausted int    `json:"nodes_exhausted"`
	// Exhausted counts nodes by the resource that ran out ("cpu", "memory").
	Exhausted map[string]int `json:"exhausted,omitempty"`
	// Filtered counts nodes rejected by constraints, by constraint.
	Filtered map[string]int `json:"filtered,omitempty"`
}

// Reason summarises the blocked evaluation in one line.
func (b *Blocked) Reason() string {
	if b == nil {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(b.Exhausted)) {
		parts = append(parts, fmt.Sprintf("%s exhausted on %d nodes", k, b.Exhausted[k]))
	}
	for _, k := range slices.Sorted(maps.Keys(b.Filtered)) {
		parts = append(parts, fmt.Sprintf("%d nodes filtered by %s", b.Filtered[k], k))
	}
	if len(parts) == 0 {
		parts = append(parts, fmt.Sprintf("%d of %d nodes exhausted", b.NodesExhausted, b.NodesEvaluated))
	}
	where := ""
	if b.NodePool != "" {
		where = " in node pool " + b.NodePool
	}
	return "no room" + where + ": " + strings.Join(parts, ", ")
}

// Unplaced is how many allocations need room.
func (d Demand) Unplaced() int { return d.Queued }

// PerAlloc is what one allocation of tg asks for: its tasks' CPU and
// memory summed, and apart from them the cores the tasks reserve (what a
// core is worth in MHz depends on the node, so cores are not in Size).
// The evaluator, the cluster model and through it the planner all size a
// task group here.
func PerAlloc(tg *nomad.TaskGroup) (size Size, cores int) {
	for _, t := range tg.Tasks {
		if t == nil || t.Resources == nil {
			continue
		}
		size.CPUMHz += deref(t.Resources.CPU)
		size.MemoryMB += deref(t.Resources.MemoryMB)
		cores += deref(t.Resources.Cores)
	}
	return size, cores
}

func deref(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}

// BlockedFor finds the newest blocked evaluation's failure for group.
func BlockedFor(evals []*nomad.Evaluation, group string) *Blocked {
	var newest *nomad.Evaluation
	for _, e := range evals {
		if e.FailedTGAllocs[group] == nil {
			continue
		}
		if newest == nil || e.ModifyIndex > newest.ModifyIndex {
			newest = e
		}
	}
	if newest == nil {
		return nil
	}
	m := newest.FailedTGAllocs[group]
	b := &Blocked{EvalID: newest.ID, NodePool: m.NodePool, NodesEvaluated: m.NodesEvaluated, NodesExhausted: m.NodesExhausted,
		Exhausted: m.DimensionExhausted, Filtered: m.ConstraintFiltered}
	if newest.BlockedEval != "" {
		b.EvalID = newest.BlockedEval
	}
	return b
}

// ErrDoesNotFit is returned by HostsFor when one allocation is larger than a host.
var ErrDoesNotFit = errors.New("an allocation does not fit on one host")

// HostsFor returns how many hosts of size host the unplaced allocations
// need, and how many allocations fit on one host.
func HostsFor(unplaced int, alloc, host Size) (hosts, perHost int, err error) {
	if unplaced <= 0 {
		return 0, 0, nil
	}
	perHost = -1
	for _, dim := range []struct{ need, have int }{{alloc.CPUMHz, host.CPUMHz}, {alloc.MemoryMB, host.MemoryMB}} {
		if dim.need <= 0 {
			continue
		}
		n := dim.have / dim.need
		if perHost < 0 || n < perHost {
			perHost = n
		}
	}
	if perHost < 0 {
		return 0, 0, fmt.Errorf("sizing hosts: the allocation asks for no CPU or memory")
	}
	if perHost == 0 {
		return 0, 0, fmt.Errorf("sizing hosts: %d MHz / %d MB per allocation on hosts of %d MHz / %d MB: %w",
			alloc.CPUMHz, alloc.MemoryMB, host.CPUMHz, host.MemoryMB, ErrDoesNotFit)
	}
	return (unplaced + perHost - 1) / perHost, perHost, nil
}
