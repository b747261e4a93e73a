package providers

import (
	"context"
	"time"

	"github.com/jonboulle/clockwork"
)

// DefaultConsistencyWindow is how long after a launch a cloud's API may
// not see an instance yet: EC2's DescribeInstances answers
// InvalidInstanceID.NotFound for an instance launched seconds ago, and ECS
// behaves alike.
const DefaultConsistencyWindow = 30 * time.Second

// Visible reads a host with get, and, while the host may still be too new
// for the cloud's API to see (launched less than window ago, or at an
// unknown time), takes "not found" for "not yet" and reads again, with
// backoff, until the window has passed or ctx ends. Only then is a
// NotFoundError an answer: a delete right after a launch must not take the
// cloud's lag for proof that the instance is gone, or it would leave the
// instance running and unowned. clock measures the window and the backoff
// (nil: the real clock); h.LaunchedAt must be on the same clock.
func Visible(ctx context.Context, clock clockwork.Clock, h Host, window time.Duration, get func(context.Context, string) (Host, error)) (Host, error) {
	if window <= 0 {
		window = DefaultConsistencyWindow
	}
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	deadline := clock.Now().Add(window)
	if !h.LaunchedAt.IsZero() && h.LaunchedAt.Add(window).Before(deadline) {
		deadline = h.LaunchedAt.Add(window)
	}
	wait := 250 * time.Millisecond
	for {
		got, err := get(ctx, h.ID)
		if err == nil || !IsNotFound(err) {
			return got, err
		}
		left := clock.Until(deadline)
		if left <= 0 {
			return got, err
		}
		t := clock.NewTimer(min(wait, left))
		select {
		case <-ctx.Done():
			// Not knowing is not "gone": the caller must not take the
			// NotFound of a lagging API for an answer.
			t.Stop()
			return got, ctx.Err()
		case <-t.Chan():
		}
		wait = min(2*wait, 4*time.Second)
	}
}
