package controller

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/providers"
)

// Launches sent together and throttled together halve the account's
// rate once; a launch sent after that halving and throttled halves it
// again; a launch the cloud takes raises it by a step, unless it is read
// at the moment of a halving (answers read together change the rate
// alike in any order).
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
	h.c.launched(p, next, nil) // read at the moment of the halving: alike in any order
	if r := h.c.launchRate(p); r != launchRateMax/4 {
		t.Fatalf("a launch taken at the moment of a halving left the rate at %v, want %v", r, launchRateMax/4)
	}
	h.clock.Advance(time.Second)
	h.c.launched(p, h.clock.Now(), nil)
	if r := h.c.launchRate(p); r != launchRateMax/4+launchRateStep {
		t.Fatalf("a launch taken left the rate at %v, want %v", r, launchRateMax/4+launchRateStep)
	}
}

// A launch taken and a launch throttled, read at the same moment, leave
// the account's rate the same whichever is read first.
func TestAnswersReadTogetherChangeTheRateInAnyOrder(t *testing.T) {
	throttled := providers.NewThrottledError(errors.New("RequestLimitExceeded"), 0)
	rates := make([]float64, 2)
	for i := range rates {
		h := newHarness(t, 0)
		sent := h.clock.Now()
		h.clock.Advance(1500 * time.Millisecond)
		h.c.launched(h.aws, sent, throttled) // a first halving, to climb from
		h.clock.Advance(time.Second)
		sent = h.clock.Now()
		h.clock.Advance(1500 * time.Millisecond)
		if i == 0 {
			h.c.launched(h.aws, sent, nil)
			h.c.launched(h.aws, sent, throttled)
		} else {
			h.c.launched(h.aws, sent, throttled)
			h.c.launched(h.aws, sent, nil)
		}
		rates[i] = h.c.launchRate(h.aws)
	}
	if rates[0] != rates[1] || rates[0] != launchRateMax/4 {
		t.Fatalf("taken then throttled: %v; throttled then taken: %v; want %v both", rates[0], rates[1], launchRateMax/4)
	}
}

// Plans begun together share one listing of a pool (a hundred scale-outs
// triggered at once listed it a hundred times, and spent the account's
// whole Describe burst in one moment); a plan never counts from a listing
// begun before Spillway changed the pool (a rental, a termination), while
// following does; a listing older than listingFresh serves nobody; a
// failed one is not kept.
func TestPlansShareAListingBegunAfterTheLastRental(t *testing.T) {
	h := newHarness(t, 0)
	ctx := t.Context()
	lists := func() int {
		n := 0
		for _, pool := range h.aws.Lists() {
			if pool == "aws" {
				n++
			}
		}
		return n
	}
	for range 3 {
		if _, err := h.c.poolListing(ctx, "aws", true); err != nil {
			t.Fatal(err)
		}
	}
	if n := lists(); n != 1 {
		t.Fatalf("three plans at one moment listed the pool %d times, want once", n)
	}
	h.c.poolChanged("aws", h.clock.Now())
	if _, err := h.c.listPool(ctx, "aws"); err != nil {
		t.Fatal(err)
	}
	if n := lists(); n != 1 {
		t.Fatalf("following after a rental listed the pool again (%d listings): the listing is fresh for it", n)
	}
	if _, err := h.c.poolListing(ctx, "aws", true); err != nil {
		t.Fatal(err)
	}
	if n := lists(); n != 2 {
		t.Fatalf("a plan after a rental at the listing's moment listed %d times in all, want a second listing", n)
	}
	h.clock.Advance(listingFresh)
	h.aws.NextListErr = errors.New("DescribeInstances: connection reset")
	if _, err := h.c.listPool(ctx, "aws"); err == nil {
		t.Fatal("a failed listing after listingFresh was not reported")
	}
	if _, err := h.c.poolListing(ctx, "aws", true); err != nil {
		t.Fatalf("the failed listing was kept: %v", err)
	}
	if n := lists(); n != 4 {
		t.Fatalf("%d listings in all, want 4: a stale listing, then a failed one, serve nobody", n)
	}
}

// A listing its owner gave up (its context ended: its activity ended, a
// reclaim's deadline came) is no answer for the plans waiting on it: they
// list again, and get the pool's hosts.
func TestAListingItsOwnerGaveUpIsListedAgain(t *testing.T) {
	h := newHarness(t, 0)
	gate := make(chan struct{})
	h.aws.ListGate = gate
	owner, cancel := context.WithCancel(t.Context())
	ownerErr := make(chan error, 1)
	go func() {
		_, err := h.c.poolListing(owner, "aws", true)
		ownerErr <- err
	}()
	lists := func() int { return len(h.aws.Lists()) }
	for lists() < 1 {
		runtime.Gosched()
	}
	waiterErr := make(chan error, 1)
	go func() {
		_, err := h.c.poolListing(t.Context(), "aws", true)
		waiterErr <- err
	}()
	// Until the waiter waits on the owner's listing: a goroutine in
	// sharedListing's select, not in the provider's List.
	for !waitingOnListing() {
		runtime.Gosched()
	}
	cancel()
	if err := <-ownerErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("the owner's listing ended with %v, want its own cancellation", err)
	}
	// The waiter lists again: a second List, held at the gate.
	for lists() < 2 {
		select {
		case err := <-waiterErr:
			t.Fatalf("a plan waiting on a listing its owner gave up got %v, and did not list again", err)
		default:
			runtime.Gosched()
		}
	}
	gate <- struct{}{}
	if err := <-waiterErr; err != nil {
		t.Fatalf("a plan waiting on a listing its owner gave up got %v, want the pool's hosts", err)
	}
}

// waitingOnListing reports whether a goroutine waits on another's listing.
func waitingOnListing() bool {
	buf := make([]byte, 1<<20)
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "(*Controller).sharedListing") && strings.Contains(g, "[select") && !strings.Contains(g, "(*Provider).List") {
			return true
		}
	}
	return false
}
