package labtest

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// LabsEnv names the environment variable that sets how many labs one test
// binary runs at once (DefaultLabs when unset).
const LabsEnv = "SPILLWAY_E2E_LABS"

// WaitedPrefix starts the log line of a test that waited for lab slots,
// followed by the seconds it waited ("labtest: waited 62.5s for ...").
const WaitedPrefix = "labtest: waited "

// DefaultLabs is how many labs run at once by default. Measured on a
// 2-core machine: a lab mostly waits (boots, grace periods, the trace), and
// the end-to-end suite took 1,601 s one lab after another and 525 s three
// at once, longest first, with every assertion holding; the load average
// stays near the core count, which leaves the labs' own timers their
// margin. More is for bigger machines.
const DefaultLabs = 3

// Labs returns how many labs run at once: $SPILLWAY_E2E_LABS, or
// DefaultLabs. A value that is not a positive integer is an error, not a
// silent default.
func Labs() (int, error) {
	v := os.Getenv(LabsEnv)
	if v == "" {
		return DefaultLabs, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%s=%q: want a positive number of labs", LabsEnv, v)
	}
	return n, nil
}

var (
	queueOnce sync.Once
	slots     *queue

	heldMu sync.Mutex
	held   = map[string]bool{}          // tests (by name) holding slots
	takes  = map[string]time.Duration{} // tests' expected lab time (Takes)
)

func labSlots(tb testing.TB) *queue {
	tb.Helper()
	n, err := Labs()
	if err != nil {
		tb.Fatal(err)
	}
	queueOnce.Do(func() { slots = newQueue(int64(n)) })
	return slots
}

// Takes says how long tb's lab usually runs, before it asks for a slot:
// the longest tests get slots first, so that the suite does not end with
// one long test running alone. (A wrong figure costs time, never a
// failure.) Tests that say nothing go after, in order of arrival.
func Takes(tb testing.TB, d time.Duration) {
	heldMu.Lock()
	defer heldMu.Unlock()
	takes[tb.Name()] = d
}

// Slot holds one of the test binary's lab slots until tb ends, waiting for
// one when all are taken. Start takes a slot itself; a test that starts a
// lab another way (the spillway lab command, its own serves) calls Slot
// first. A test (or subtest of one) that holds slots already takes no
// more: it runs its labs within what it holds, since a test waiting for a
// second slot while holding one could wait for ever. Tests that hold slots
// run in parallel (t.Parallel), at most Labs() at once.
func Slot(tb testing.TB) {
	tb.Helper()
	acquire(tb, 1, true)
}

// Alone holds every lab slot until tb ends: no other lab runs beside it.
// It is for tests whose assertions depend on CPU timing (a lease's
// renewal, a latency), which another lab's load could break.
func Alone(tb testing.TB) {
	tb.Helper()
	// Alone goes first: when the gate opens every slot is free, and no
	// slot stands idle while the others drain for it.
	heldMu.Lock()
	takes[tb.Name()] = first
	heldMu.Unlock()
	acquire(tb, labSlots(tb).total, true)
}

// first is the place in the queue of a test that runs alone.
const first = time.Duration(math.MaxInt64)

// acquire takes n slots for tb, holding them until tb's cleanup. With
// build (the test runs the spillway binary), no slot is handed out before
// the binary is built, so that every test of the binary is waiting by
// then and the longest go first.
func acquire(tb testing.TB, n int64, build bool) {
	tb.Helper()
	q := labSlots(tb)
	if holds(tb.Name()) {
		return
	}
	heldMu.Lock()
	d := takes[tb.Name()]
	heldMu.Unlock()
	start := time.Now()
	w := q.enqueue(n, d)
	if build {
		if _, err := buildSpillway(); err != nil {
			q.drop(w)
			tb.Fatal(err)
		}
	}
	q.openGate()
	if err := q.wait(tb.Context(), w); err != nil {
		tb.Fatalf("waiting for a lab slot: %v", err)
	}
	if waited := time.Since(start); waited > time.Second {
		// The time report (internal/testreport) reads this line to tell a
		// test's own time from its wait: keep the two in step.
		tb.Logf("%s%.1fs for %d of %d lab slots ($%s)", WaitedPrefix, waited.Seconds(), n, q.total, LabsEnv)
	}
	heldMu.Lock()
	held[tb.Name()] = true
	heldMu.Unlock()
	tb.Cleanup(func() {
		heldMu.Lock()
		delete(held, tb.Name())
		heldMu.Unlock()
		q.release(n)
	})
}

// holds reports whether the test named name, or a test it is a subtest
// of, holds slots.
func holds(name string) bool {
	heldMu.Lock()
	defer heldMu.Unlock()
	for {
		if held[name] {
			return true
		}
		i := strings.LastIndexByte(name, '/')
		if i < 0 {
			return false
		}
		name = name[:i]
	}
}

// queue hands out lab slots: a waiter for every slot (Alone) first, then
// the waiter that takes longest, then in order of arrival. The head of the
// queue is never passed by a smaller waiter behind it, so Alone (every
// slot) is not starved.
type queue struct {
	mu      sync.Mutex
	total   int64
	free    int64
	open    bool // slots are handed out once the gate opens
	seq     int
	waiters []*waiter
}

type waiter struct {
	n       int64
	takes   time.Duration
	seq     int
	granted chan struct{}
}

func newQueue(total int64) *queue { return &queue{total: total, free: total} }

// enqueue joins the queue.
func (q *queue) enqueue(n int64, takes time.Duration) *waiter {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.seq++
	w := &waiter{n: min(n, q.total), takes: takes, seq: q.seq, granted: make(chan struct{})}
	i, _ := slices.BinarySearchFunc(q.waiters, w, func(a, b *waiter) int {
		return cmp.Or(cmp.Compare(b.takes, a.takes), cmp.Compare(a.seq, b.seq)) // longer first, then first come
	})
	q.waiters = slices.Insert(q.waiters, i, w)
	q.dispatch()
	return w
}

// wait waits until w holds its slots, or ctx ends (w then leaves the
// queue, giving back slots granted meanwhile).
func (q *queue) wait(ctx context.Context, w *waiter) error {
	select {
	case <-w.granted:
		return nil
	case <-ctx.Done():
		q.drop(w)
		return ctx.Err()
	}
}

// drop takes w out of the queue, giving back slots it was granted.
func (q *queue) drop(w *waiter) {
	q.mu.Lock()
	defer q.mu.Unlock()
	select {
	case <-w.granted:
		q.free += w.n
	default:
		q.waiters = slices.DeleteFunc(q.waiters, func(o *waiter) bool { return o == w })
	}
	q.dispatch()
}

func (q *queue) openGate() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.open = true
	q.dispatch()
}

func (q *queue) release(n int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.free += min(n, q.total)
	q.dispatch()
}

// dispatch grants slots to the head of the queue while they last.
func (q *queue) dispatch() {
	for q.open && len(q.waiters) > 0 && q.waiters[0].n <= q.free {
		w := q.waiters[0]
		q.waiters = q.waiters[1:]
		q.free -= w.n
		close(w.granted)
	}
}
