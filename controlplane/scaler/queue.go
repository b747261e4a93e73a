package scaler

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillwayhq/spillway/policies"
)

// triggerQueue holds the triggers waiting for an evaluation, at most one
// per task group: a trigger for a group that already has one pending
// replaces it (the newest cause and alerts win; the earliest arrival is
// kept, so the scale-out's timeline counts from the first). Nothing is
// dropped, and the queue holds at most one trigger per group. A group
// whose trigger is being evaluated is not handed out again until that
// evaluation is done: a trigger that arrives meanwhile waits, pending,
// and is handed out then. Groups are handed out in the order their first
// pending trigger arrived.
type triggerQueue struct {
	mu sync.Mutex
	// pending is each group's waiting trigger.
	pending map[policies.Target]Trigger
	// order lists the pending groups that may be handed out (not running),
	// oldest first.
	order []policies.Target
	// running marks the groups whose trigger is being evaluated.
	running map[policies.Target]bool
	// wake tells the dispatcher that a group may be handed out.
	wake chan struct{}
	// gauge is spillway_triggers_pending.
	gauge prometheus.Gauge
}

func newTriggerQueue(gauge prometheus.Gauge) *triggerQueue {
	return &triggerQueue{pending: map[policies.Target]Trigger{}, running: map[policies.Target]bool{}, wake: make(chan struct{}, 1), gauge: gauge}
}

// replaced is a pending trigger that a newer one for its group replaced.
type replaced struct{ older, newer Trigger }

// add queues ts, coalescing each with its group's pending trigger, then
// calls queued (when not nil) before any of them can be handed out, and
// returns the triggers that replaced a pending one.
func (q *triggerQueue) add(queued func(), ts ...Trigger) []replaced {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []replaced
	for _, t := range ts {
		if old, ok := q.pending[t.Target]; ok {
			if !old.At.IsZero() && (t.At.IsZero() || old.At.Before(t.At)) {
				t.At = old.At
			}
			q.pending[t.Target] = t
			out = append(out, replaced{older: old, newer: t})
			continue
		}
		q.pending[t.Target] = t
		if !q.running[t.Target] {
			q.order = append(q.order, t.Target)
			q.signal()
		}
	}
	q.gauge.Set(float64(len(q.pending)))
	if queued != nil {
		queued()
	}
	return out
}

// pop hands out the oldest pending trigger whose group is not running,
// and marks its group running until done.
func (q *triggerQueue) pop() (Trigger, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.order) == 0 {
		return Trigger{}, false
	}
	target := q.order[0]
	q.order[0] = policies.Target{}
	q.order = q.order[1:]
	if len(q.order) == 0 {
		q.order = nil // let the backing array go
	}
	t := q.pending[target]
	delete(q.pending, target)
	q.gauge.Set(float64(len(q.pending)))
	q.running[target] = true
	return t, true
}

// done ends the evaluation of a group's trigger; a trigger that arrived
// meanwhile may now be handed out.
func (q *triggerQueue) done(target policies.Target) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.running, target)
	if _, ok := q.pending[target]; ok {
		q.order = append(q.order, target)
		q.signal()
	}
}

// len is the number of pending triggers.
func (q *triggerQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// signal wakes the dispatcher; a wake already pending suffices.
func (q *triggerQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}
