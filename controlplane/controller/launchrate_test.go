package controller

import (
	"errors"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/providers"
)

// Launches sent together and throttled together halve the account's
// rate once; a launch sent after that halving and throttled halves it
// again; a launch the cloud takes raises it by a step.
func TestThrottlesOfLaunchesSentTogetherHalveOnce(t *testing.T) {
	h := newHarness(t, 0)
	p := h.aws
	throttled := providers.NewThrottledError(errors.New("RequestLimitExceeded: Request limit exceeded."), 0)
	sent := h.clock.Now()
	h.clock.Advance(1500 * time.Millisecond) // the API's latency
	for range 5 {
		h.c.launched(p, sent, throttled)
	}
	if r := h.c.launchRate(p); r != launchRateMax/2 {
		t.Fatalf("five launches sent together and throttled left the rate at %v, want one halving, %v", r, launchRateMax/2)
	}
	next := h.clock.Now()
	h.clock.Advance(1500 * time.Millisecond)
	h.c.launched(p, next, throttled)
	if r := h.c.launchRate(p); r != launchRateMax/4 {
		t.Fatalf("a launch sent after the halving and throttled left the rate at %v, want %v", r, launchRateMax/4)
	}
	h.c.launched(p, h.clock.Now(), nil)
	if r := h.c.launchRate(p); r != launchRateMax/4+launchRateStep {
		t.Fatalf("a launch taken left the rate at %v, want %v", r, launchRateMax/4+launchRateStep)
	}
}
