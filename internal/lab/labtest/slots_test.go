package labtest

import (
	"sync/atomic"
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

// A test holding slots runs its subtests within them, and Alone waits
// until every other holder is done.
func TestSlots(t *testing.T) {
	s := labSlots(t)
	if !s.TryAcquire(slotCount) {
		t.Fatal("the slots are not all free at the start")
	}
	s.Release(slotCount)

	t.Run("a test and its subtests hold one slot", func(t *testing.T) {
		Slot(t)
		t.Run("sub", func(t *testing.T) {
			Slot(t) // would wait for ever with one slot, were it taken again
			if !holds(t.Name()) {
				t.Error("the subtest does not count as holding its parent's slot")
			}
		})
		if !s.TryAcquire(slotCount - 1) {
			t.Fatal("a test and its subtest took more than one slot")
		}
		s.Release(slotCount - 1)
	})

	t.Run("alone waits for the others", func(t *testing.T) {
		if !s.TryAcquire(1) {
			t.Fatal("no slot free for the other lab")
		}
		// The other lab ends a moment later, saying so first; Alone must
		// not return before.
		var ended atomic.Bool
		time.AfterFunc(50*time.Millisecond, func() {
			ended.Store(true)
			s.Release(1)
		})
		t.Run("alone", func(t *testing.T) {
			Alone(t)
			if !ended.Load() {
				t.Error("Alone ran beside another lab")
			}
		})
		if !s.TryAcquire(slotCount) {
			t.Error("Alone kept slots after its test ended")
		}
		s.Release(slotCount)
	})
}
