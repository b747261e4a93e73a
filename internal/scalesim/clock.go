package scalesim

import (
	"container/heap"
	"runtime"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// Clock is the simulation's one clock: every piece of the control plane,
// the providers, the cloud simulator and the simulated Nomad read it. It
// moves only when the driver steps it, to the earliest timer due, and only
// once the process is quiet (Quiet): every goroutine is blocked, so
// whatever the last step set off has run to its next wait.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers timerHeap
	seq    uint64
	closed bool
}

var _ clockwork.Clock = (*Clock)(nil)

// NewClock returns a clock reading start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now implements clockwork.Clock (and cloudsim.Clock).
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Since implements clockwork.Clock.
func (c *Clock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// Until implements clockwork.Clock.
func (c *Clock) Until(t time.Time) time.Duration { return t.Sub(c.Now()) }

// After implements clockwork.Clock.
func (c *Clock) After(d time.Duration) <-chan time.Time { return c.NewTimer(d).Chan() }

// Sleep implements clockwork.Clock.
func (c *Clock) Sleep(d time.Duration) { <-c.After(d) }

// NewTimer implements clockwork.Clock.
func (c *Clock) NewTimer(d time.Duration) clockwork.Timer {
	t := &timer{c: c, ch: make(chan time.Time, 1), idx: -1}
	c.schedule(t, d)
	return t
}

// AfterFunc implements clockwork.Clock: f runs on its own goroutine.
func (c *Clock) AfterFunc(d time.Duration, f func()) clockwork.Timer {
	t := &timer{c: c, fn: f, idx: -1}
	c.schedule(t, d)
	return t
}

// NewTicker implements clockwork.Clock.
func (c *Clock) NewTicker(d time.Duration) clockwork.Ticker {
	if d <= 0 {
		panic("scalesim: non-positive ticker period")
	}
	t := &timer{c: c, ch: make(chan time.Time, 1), period: d, idx: -1}
	c.schedule(t, d)
	return ticker{t}
}

func (c *Clock) schedule(t *timer, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.idx >= 0 {
		heap.Remove(&c.timers, t.idx)
	}
	c.seq++
	t.at, t.seq = c.now.Add(d), c.seq
	if d <= 0 || c.closed {
		t.fire(c.now)
		return
	}
	heap.Push(&c.timers, t)
}

func (c *Clock) stop(t *timer) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.idx < 0 {
		return false
	}
	heap.Remove(&c.timers, t.idx)
	return true
}

// Next returns when the earliest timer is due; false when none is set.
func (c *Clock) Next() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.timers) == 0 {
		return time.Time{}, false
	}
	return c.timers[0].at, true
}

// AdvanceTo moves the clock to t (never back) and fires every timer due by
// then, earliest first.
func (c *Clock) AdvanceTo(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
	for len(c.timers) > 0 && !c.timers[0].at.After(c.now) {
		tm := heap.Pop(&c.timers).(*timer)
		tm.fire(c.now)
		if tm.period > 0 {
			c.seq++
			tm.at, tm.seq = tm.at.Add(tm.period), c.seq
			heap.Push(&c.timers, tm)
		}
	}
}

// Close ends the simulation's time: every timer set fires now, and so does
// every timer set from now on (a ticker once), so whatever waits on the
// clock (a backoff, an API latency, a controller's interval) returns and
// the control plane can stop.
func (c *Clock) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for len(c.timers) > 0 {
		heap.Pop(&c.timers).(*timer).fire(c.now)
	}
}

// timer is a timer, an AfterFunc or a ticker (period > 0).
type timer struct {
	c      *Clock
	at     time.Time
	seq    uint64
	ch     chan time.Time
	fn     func()
	period time.Duration
	idx    int // in the heap, or -1
}

// fire runs with the clock locked.
func (t *timer) fire(now time.Time) {
	if t.fn != nil {
		go t.fn()
		return
	}
	select {
	case t.ch <- now:
	default: // a ticker's reader is behind: drop, as time.Ticker does
	}
}

func (t *timer) Chan() <-chan time.Time { return t.ch }

func (t *timer) Reset(d time.Duration) bool {
	active := t.c.stop(t)
	t.c.schedule(t, d)
	return active
}

func (t *timer) Stop() bool { return t.c.stop(t) }

type ticker struct{ t *timer }

func (k ticker) Chan() <-chan time.Time { return k.t.ch }

func (k ticker) Reset(d time.Duration) {
	k.t.c.stop(k.t)
	k.t.period = d
	k.t.c.schedule(k.t, d)
}

func (k ticker) Stop() { k.t.c.stop(k.t) }

type timerHeap []*timer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *timerHeap) Push(x any) {
	t := x.(*timer)
	t.idx = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.idx = -1
	return t
}

// quietSamples are the scheduler's counts a Quiet detector reads.
var quietSamples = []string{
	"/sched/goroutines/running:goroutines",
	"/sched/goroutines/runnable:goroutines",
	"/sched/goroutines/not-in-go:goroutines",
}

// quietReads is how many reads in a row must find the process quiet.
const quietReads = 3

// Quiet tells when the process is quiet: no goroutine but the caller
// runs or is runnable, and no more are outside Go (in a system call) than
// were before the simulation started. Some goroutines sit in a system
// call for the process's life: os/signal's loop, which a binary that
// handles SIGINT has (it kept spillway bench scaleout from ever being
// quiet, so each step waited its whole limit), and a CPU profile's
// writer, which wakes now and then; they are the baseline.
type Quiet struct {
	base uint64
	s    []metrics.Sample
	// Since is when the process was first seen quiet by the last Wait
	// that returned true (the first of its quiet reads in a row).
	Since time.Time
	// Busy, when set, says that work the scheduler's counts may miss is
	// in flight (a journal write waiting in a system call): the process
	// is not quiet then.
	Busy func() bool
}

// NewQuiet measures the baseline, before the simulation has started any
// goroutine: the count of goroutines outside Go read most often over a
// few milliseconds (one passing through a system call is not counted; a
// profile writer that is mostly asleep in one is).
func NewQuiet() *Quiet {
	q := &Quiet{s: make([]metrics.Sample, len(quietSamples))}
	for i, n := range quietSamples {
		q.s[i].Name = n
	}
	seen := map[uint64]int{}
	for range 64 {
		runtime.Gosched()
		metrics.Read(q.s)
		n := q.s[2].Value.Uint64()
		seen[n]++
		if seen[n] > seen[q.base] || (seen[n] == seen[q.base] && n < q.base) {
			q.base = n
		}
		time.Sleep(50 * time.Microsecond)
	}
	return q
}

// Wait returns once the process is quiet quietReads times in a row:
// everything else waits on a channel, a lock or the Clock. It gives up
// after limit of wall time and reports false (a goroutine that never
// waits: the step goes ahead).
func (q *Quiet) Wait(limit time.Duration) bool {
	start := time.Now()
	quiet := 0
	for spins := 0; quiet < quietReads; spins++ {
		runtime.Gosched()
		metrics.Read(q.s)
		if q.s[0].Value.Uint64() <= 1 && q.s[1].Value.Uint64() == 0 && q.s[2].Value.Uint64() <= q.base && (q.Busy == nil || !q.Busy()) {
			if quiet == 0 {
				q.Since = time.Now()
			}
			quiet++
			continue
		}
		quiet = 0
		if spins > 64 {
			if time.Since(start) > limit {
				return false
			}
			time.Sleep(20 * time.Microsecond)
		}
	}
	return true
}
