package providers_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/spillwayhq/spillway/providers"
)

// lagging answers "not found" for a host until it has been asked `lag`
// times, as a cloud's API does for an instance launched moments ago.
type lagging struct {
	lag   int64
	asked atomic.Int64
}

func (l *lagging) get(_ context.Context, id string) (providers.Host, error) {
	if l.asked.Add(1) <= l.lag {
		return providers.Host{}, providers.NewNotFoundError(id, nil)
	}
	return providers.Host{ID: id}, nil
}

// visible runs providers.Visible in the background and returns its answer.
func visible(ctx context.Context, clock clockwork.Clock, h providers.Host, window time.Duration, get func(context.Context, string) (providers.Host, error)) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := providers.Visible(ctx, clock, h, window, get)
		done <- err
	}()
	return done
}

// A host launched moments ago that the API does not see yet is asked for
// again, with a backoff that doubles (250ms, 500ms, 1s), stepped on the
// clock rather than slept.
func TestVisibleRetriesNotFoundWithinTheWindow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t0 := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(t0)
	api := &lagging{lag: 3}
	done := visible(ctx, clock, providers.Host{ID: "i-1", LaunchedAt: t0}, 30*time.Second, api.get)
	for i, wait := range []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second} {
		if err := clock.BlockUntilContext(ctx, 1); err != nil {
			t.Fatalf("waiting for the backoff of %s: %v", wait, err)
		}
		if got := api.asked.Load(); got != int64(i+1) {
			t.Fatalf("asked %d times before the backoff of %s, want %d", got, wait, i+1)
		}
		clock.Advance(wait)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("a host the API sees on the fourth read: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Visible did not return")
	}
	if got := api.asked.Load(); got != 4 {
		t.Fatalf("asked %d times, want 4", got)
	}
	if got := clock.Since(t0); got != 1750*time.Millisecond {
		t.Fatalf("waited %s, want 1.75s", got)
	}
}

// Once the window since the launch has passed, "not found" is the answer:
// the last wait is cut to what is left of the window.
func TestVisibleTakesNotFoundOnceTheWindowHasPassed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t0 := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(t0)
	api := &lagging{lag: 1 << 30}
	launched := t0.Add(-29*time.Second - 900*time.Millisecond) // 100ms of the window left
	done := visible(ctx, clock, providers.Host{ID: "i-1", LaunchedAt: launched}, 30*time.Second, api.get)
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(100 * time.Millisecond)
	select {
	case err := <-done:
		if !providers.IsNotFound(err) {
			t.Fatalf("after the window: %v, want a NotFoundError", err)
		}
	case <-ctx.Done():
		t.Fatal("Visible did not return once the window had passed")
	}
	if got := api.asked.Load(); got != 2 {
		t.Fatalf("asked %d times, want 2", got)
	}

	// A host past its window is answered at once; a cancelled wait is not
	// taken for "gone".
	api.asked.Store(0)
	if _, err := providers.Visible(ctx, clock, providers.Host{ID: "i-2", LaunchedAt: t0.Add(-time.Hour)}, 30*time.Second, api.get); !providers.IsNotFound(err) || api.asked.Load() != 1 {
		t.Fatalf("an old host: %v after %d reads, want a NotFoundError after 1", err, api.asked.Load())
	}
	cctx, ccancel := context.WithCancel(ctx)
	done = visible(cctx, clock, providers.Host{ID: "i-3", LaunchedAt: clock.Now()}, 30*time.Second, api.get)
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	ccancel()
	if err := <-done; !errors.Is(err, context.Canceled) || providers.IsNotFound(err) {
		t.Fatalf("a cancelled wait: %v, want context.Canceled", err)
	}
}
