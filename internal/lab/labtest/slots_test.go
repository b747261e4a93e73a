package labtest

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestLabsFromTheEnvironment(t *testing.T) {
	for _, c := range []struct {
		env  string
		want int
		bad  bool
	}{{"", DefaultLabs, false}, {"1", 1, false}, {"5", 5, false}, {"0", 0, true}, {"-2", 0, true}, {"three", 0, true}} {
		t.Setenv(LabsEnv, c.env)
		got, err := Labs()
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("%s=%q: got %d, %v; want %d (error: %v)", LabsEnv, c.env, got, err, c.want, c.bad)
		}
	}
}

// order queues waiters on a queue of total slots, then lets each run as
// it is granted (it gives its slots back at once) and returns the order
// of grants.
func order(t *testing.T, total int64, waiters []struct {
	name  string
	n     int64
	takes time.Duration
}) []string {
	t.Helper()
	q := newQueue(total)
	var (
		mu  sync.Mutex
		got []string
		wg  sync.WaitGroup
	)
	ws := make([]*waiter, len(waiters))
	for i, w := range waiters {
		ws[i] = q.enqueue(w.n, w.takes)
	}
	q.openGate()
	for i, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := q.wait(t.Context(), w); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			got = append(got, waiters[i].name)
			mu.Unlock()
			q.release(w.n)
		}()
	}
	wg.Wait()
	return got
}

// With one slot, grants come one at a time: the order is the queue's.
func TestTheLongestTestsGetSlotsFirst(t *testing.T) {
	got := order(t, 1, []struct {
		name  string
		n     int64
		takes time.Duration
	}{
		{"short-1", 1, 0},
		{"long", 1, 4 * time.Minute},
		{"short-2", 1, 0},
		{"longest", 1, 5 * time.Minute},
		{"middle", 1, time.Minute},
		{"alone", 1, first},
	})
	if want := []string{"alone", "longest", "long", "middle", "short-1", "short-2"}; !slices.Equal(got, want) {
		t.Errorf("slots went to %v, want %v", got, want)
	}
}

func TestNoSlotBeforeTheGateOpens(t *testing.T) {
	q := newQueue(2)
	w := q.enqueue(1, 0)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := q.wait(ctx, w); err == nil {
		t.Fatal("a slot was granted before the gate opened")
	}
	if q.free != 2 || len(q.waiters) != 0 {
		t.Fatalf("a waiter that gave up left %d free, %d waiting; want 2, 0", q.free, len(q.waiters))
	}
	w = q.enqueue(1, 0)
	q.openGate()
	if err := q.wait(t.Context(), w); err != nil {
		t.Fatal(err)
	}
}

// A waiter for every slot (Alone) at the head is not passed by a smaller
// one behind it: it runs once the holders are done, and before it.
func TestAloneIsNotStarved(t *testing.T) {
	q := newQueue(3)
	q.openGate()
	first := q.enqueue(1, 0)
	if err := q.wait(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	alone := q.enqueue(3, 0)
	later := q.enqueue(1, 0)
	if q.free != 2 || len(q.waiters) != 2 {
		t.Fatalf("with one slot held and Alone at the head, want 2 free and both waiting; got %d free, %d waiting", q.free, len(q.waiters))
	}
	q.release(1)
	if err := q.wait(t.Context(), alone); err != nil {
		t.Fatal(err)
	}
	if q.free != 0 || len(q.waiters) != 1 || q.waiters[0] != later {
		t.Fatalf("Alone holds every slot and the later waiter waits: got %d free, %d waiting", q.free, len(q.waiters))
	}
	q.release(3)
	if err := q.wait(t.Context(), later); err != nil {
		t.Fatal(err)
	}
}

// A test holding a slot runs its subtests within it.
func TestSubtestsRunInTheirTestsSlot(t *testing.T) {
	t.Setenv("SPILLWAY_BIN", "/bin/true") // no build
	q := labSlots(t)
	Slot(t)
	t.Run("sub", func(t *testing.T) {
		Slot(t) // would wait for ever with one slot, were it taken again
		if !holds(t.Name()) {
			t.Error("the subtest does not count as holding its parent's slot")
		}
	})
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.free != q.total-1 {
		t.Errorf("a test and its subtest hold %d slots, want 1", q.total-q.free)
	}
}
