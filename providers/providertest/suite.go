// Package providertest owns the provider contract suite: one set of tests,
// run against every providers.Provider implementation (fake, aws over
// cloudsim, alicloud over cloudsim), that pins down the behaviour the planner
// relies on: idempotent creates, partial fulfilment, typed errors, backoff on
// throttling, tag-based discovery and deletes of instances already gone.
package providertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/providers"
)

// Env is one fresh cloud with everything the suite needs to drive it.
type Env struct {
	// Pool is the pool under test. It has at least two offerings; the suite
	// calls the first A and the second B.
	Pool providers.Pool
	// New returns a new Provider with no in-memory state over the same cloud,
	// as after a restart of the control plane.
	New func(t *testing.T) providers.Provider
	// NewBadCredentials returns a Provider whose credentials the cloud rejects.
	NewBadCredentials func(t *testing.T) providers.Provider
	// SetCapacity sets how many more instances offering o can launch.
	SetCapacity func(t *testing.T, o providers.Offering, n int)
	// ThrottleNextCreate makes the cloud throttle the next n launch requests.
	ThrottleNextCreate func(t *testing.T, n int)
	// LoseNextCreateResponse makes the cloud carry out the next launch request
	// and then fail it with a server error, so the client retries it.
	LoseNextCreateResponse func(t *testing.T)
	// TerminateOutOfBand terminates an instance behind the provider's back.
	TerminateOutOfBand func(t *testing.T, id string)
	// Interrupt gives a spot instance the cloud's interruption notice.
	Interrupt func(t *testing.T, id string)
	// Settle, if set, lets the cloud's clock move on (e.g. so terminated
	// instances finish terminating). It must not sleep on wall-clock time.
	Settle func(t *testing.T)
	// NewGuarded is New with a request guard: guard runs before each HTTP
	// request the provider sends (its RequestGuard option). Nil for a
	// provider that sends none (the fake).
	NewGuarded func(t *testing.T, guard func(context.Context) error) providers.Provider
}

// Run runs the contract suite. newEnv is called once per test and must
// return an Env over a fresh, empty cloud.
func Run(t *testing.T, newEnv func(t *testing.T) *Env) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, env *Env)
	}{
		{"IdempotentCreateUnderRetriedRequest", testIdempotentCreate},
		{"PartialCapacityThenFallbackCompletesClaim", testPartialCapacity},
		{"ExhaustedOfferingIsTypedError", testExhaustedOffering},
		{"ThrottlingBacksOffThenSucceeds", testThrottling},
		{"ListByTagAfterRestart", testListAfterRestart},
		{"DeleteOfGoneInstanceIsNotFound", testDeleteGone},
		{"BadCredentialsIsAuthError", testBadCredentials},
		{"CatalogListsPoolOfferings", testCatalog},
		{"SpotNoticeIsListed", testSpotNotice},
		{"RefusedRequestEndsTheCall", testRefusedRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t)
			if len(env.Pool.Offerings) < 2 {
				t.Fatalf("env pool %q needs at least two offerings", env.Pool.Name)
			}
			tc.run(t, env)
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func claim(env *Env, id string, count int, offerings ...providers.Offering) providers.Claim {
	return providers.Claim{ID: id, Pool: env.Pool, Count: count, Offerings: offerings}
}

func ids(hosts []providers.Host) []string {
	out := make([]string, len(hosts))
	for i, h := range hosts {
		out[i] = h.ID
	}
	slices.Sort(out)
	return out
}

func offeringsOf(hosts []providers.Host, o providers.Offering) int {
	n := 0
	for _, h := range hosts {
		if h.Offering.InstanceType == o.InstanceType && h.Offering.Zone == o.Zone {
			n++
		}
	}
	return n
}

func checkOwned(t *testing.T, env *Env, hosts []providers.Host, claimID string) {
	t.Helper()
	for _, h := range hosts {
		if h.ID == "" {
			t.Errorf("host with empty ID: %+v", h)
		}
		if h.Pool != env.Pool.Name || h.Claim != claimID {
			t.Errorf("host %s: pool/claim = %q/%q, want %q/%q", h.ID, h.Pool, h.Claim, env.Pool.Name, claimID)
		}
		if h.Tags[providers.TagPool] != env.Pool.Name || h.Tags[providers.TagClaim] != claimID || h.Tags[providers.TagCluster] == "" {
			t.Errorf("host %s: ownership tags missing: %v", h.ID, h.Tags)
		}
	}
}

func testIdempotentCreate(t *testing.T, env *Env) {
	a := env.Pool.Offerings[0]
	env.SetCapacity(t, a, 10)
	p := env.New(t)
	env.LoseNextCreateResponse(t)
	hosts, err := p.Create(ctx(t), claim(env, "claim-idem", 3, a))
	if err != nil {
		t.Fatalf("create under a retried request: %v", err)
	}
	if len(hosts) != 3 {
		t.Fatalf("create returned %d hosts, want 3", len(hosts))
	}
	checkOwned(t, env, hosts, "claim-idem")
	listed, err := p.List(ctx(t), env.Pool.Name)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if got, want := ids(listed), ids(hosts); !slices.Equal(got, want) {
		t.Fatalf("cloud holds %v after a retried create, want exactly %v", got, want)
	}
	// The same claim again, from a fresh provider: no new instances.
	again, err := env.New(t).Create(ctx(t), claim(env, "claim-idem", 3, a))
	if err != nil {
		t.Fatalf("repeated create: %v", err)
	}
	if got, want := ids(again), ids(hosts); !slices.Equal(got, want) {
		t.Fatalf("repeated create returned %v, want %v", got, want)
	}
	listed, _ = p.List(ctx(t), env.Pool.Name)
	if len(listed) != 3 {
		t.Fatalf("cloud holds %d hosts after repeated create, want 3", len(listed))
	}
}

func testPartialCapacity(t *testing.T, env *Env) {
	a, b := env.Pool.Offerings[0], env.Pool.Offerings[1]
	env.SetCapacity(t, a, 3)
	env.SetCapacity(t, b, 10)
	p := env.New(t)
	hosts, err := p.Create(ctx(t), claim(env, "claim-partial", 5, a))
	if !providers.IsInsufficientCapacity(err) {
		t.Fatalf("create of 5 on an offering with capacity 3: err = %v, want InsufficientCapacity", err)
	}
	if len(hosts) != 3 {
		t.Fatalf("partial create returned %d hosts, want 3", len(hosts))
	}
	checkOwned(t, env, hosts, "claim-partial")
	exhausted := providers.ExhaustedOfferings(err)
	if !slices.ContainsFunc(exhausted, func(o providers.Offering) bool { return o.Key() == a.Key() }) {
		t.Fatalf("InsufficientCapacity names %v, want %s", exhausted, a.Key())
	}
	// Fall back to B: the claim completes with 2 more hosts.
	hosts, err = p.Create(ctx(t), claim(env, "claim-partial", 5, b))
	if err != nil {
		t.Fatalf("follow-up create on offering B: %v", err)
	}
	if len(hosts) != 5 {
		t.Fatalf("claim has %d hosts after follow-up, want 5", len(hosts))
	}
	checkOwned(t, env, hosts, "claim-partial")
	if na, nb := offeringsOf(hosts, a), offeringsOf(hosts, b); na != 3 || nb != 2 {
		t.Fatalf("claim hosts on A/B = %d/%d, want 3/2", na, nb)
	}
}

func testExhaustedOffering(t *testing.T, env *Env) {
	a := env.Pool.Offerings[0]
	env.SetCapacity(t, a, 0)
	p := env.New(t)
	start := time.Now()
	hosts, err := p.Create(ctx(t), claim(env, "claim-exhausted", 2, a))
	if !providers.IsInsufficientCapacity(err) {
		t.Fatalf("create on an exhausted offering: err = %v, want InsufficientCapacity", err)
	}
	if len(hosts) != 0 {
		t.Fatalf("create on an exhausted offering returned %d hosts", len(hosts))
	}
	if !strings.Contains(err.Error(), a.InstanceType) || !strings.Contains(err.Error(), a.Zone) {
		t.Fatalf("error %q does not name offering %s", err, a.Key())
	}
	// Insufficient capacity must not be retried blindly: the planner falls
	// back at once.
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("insufficient capacity took %s to surface; it must not be retried", d)
	}
}

// testRefusedRequest: the request guard starts refusing after n requests
// of a launch that needs several (the first offering is exhausted, so it
// falls back to the second). The refused request is the last one: no
// retry, no next offering, and the call fails with the guard's error.
func testRefusedRequest(t *testing.T, env *Env) {
	if env.NewGuarded == nil {
		t.Skip("this provider sends no HTTP requests to guard")
	}
	a, b := env.Pool.Offerings[0], env.Pool.Offerings[1]
	env.SetCapacity(t, a, 0)
	env.SetCapacity(t, b, 10)
	errTermOver := errors.New("the term is over")
	// The launch needs at least two requests (A, then B): with 0 or 1
	// allowed, the guard must end it.
	for allowed := range 2 {
		var mu sync.Mutex
		calls := 0
		p := env.NewGuarded(t, func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if calls > allowed {
				return errTermOver
			}
			return nil
		})
		hosts, err := p.Create(ctx(t), claim(env, fmt.Sprintf("claim-guarded-%d", allowed), 1, a, b))
		mu.Lock()
		n := calls
		mu.Unlock()
		if err == nil {
			t.Fatalf("after %d allowed requests (the guard asked %d times) the launch succeeded with %d hosts: its requests were not guarded", allowed, n, len(hosts))
		}
		var refused *providers.RefusedRequest
		if !errors.Is(err, errTermOver) || !errors.As(err, &refused) {
			t.Fatalf("after %d allowed requests: err = %v, want the guard's refusal", allowed, err)
		}
		if n != allowed+1 {
			t.Fatalf("after %d allowed requests the guard was asked %d times: a refused request was retried or followed", allowed, n)
		}
	}
}

func testThrottling(t *testing.T, env *Env) {
	a := env.Pool.Offerings[0]
	env.SetCapacity(t, a, 10)
	p := env.New(t)
	env.ThrottleNextCreate(t, 2)
	hosts, err := p.Create(ctx(t), claim(env, "claim-throttled", 2, a))
	if err != nil {
		t.Fatalf("create after throttling: %v", err)
	}
	if len(hosts) != 2 {
		t.Fatalf("create after throttling returned %d hosts, want 2", len(hosts))
	}
}

func testListAfterRestart(t *testing.T, env *Env) {
	a := env.Pool.Offerings[0]
	env.SetCapacity(t, a, 10)
	created, err := env.New(t).Create(ctx(t), claim(env, "claim-restart", 2, a))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	p := env.New(t) // restarted: no in-memory state
	listed, err := p.List(ctx(t), env.Pool.Name)
	if err != nil {
		t.Fatalf("list after restart: %v", err)
	}
	if got, want := ids(listed), ids(created); !slices.Equal(got, want) {
		t.Fatalf("list after restart = %v, want %v", got, want)
	}
	checkOwned(t, env, listed, "claim-restart")
	h, err := p.Get(ctx(t), created[0].ID)
	if err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	if h.ID != created[0].ID || h.Claim != "claim-restart" || h.Offering.InstanceType != a.InstanceType {
		t.Fatalf("get after restart = %+v", h)
	}
	other, err := p.List(ctx(t), env.Pool.Name+"-other")
	if err != nil {
		t.Fatalf("list of another pool: %v", err)
	}
	if len(other) != 0 {
		t.Fatalf("list of another pool returned %d hosts", len(other))
	}
}

func testDeleteGone(t *testing.T, env *Env) {
	a := env.Pool.Offerings[0]
	env.SetCapacity(t, a, 10)
	p := env.New(t)
	hosts, err := p.Create(ctx(t), claim(env, "claim-delete", 2, a))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := p.Delete(ctx(t), hosts[0]); err != nil {
		t.Fatalf("delete: %v", err)
	}
	env.TerminateOutOfBand(t, hosts[1].ID)
	if env.Settle != nil {
		env.Settle(t)
	}
	for _, h := range hosts {
		if err := p.Delete(ctx(t), h); !providers.IsNotFound(err) {
			t.Fatalf("delete of gone instance %s: err = %v, want NotFound", h.ID, err)
		}
		if _, err := p.Get(ctx(t), h.ID); !providers.IsNotFound(err) {
			t.Fatalf("get of gone instance %s: err = %v, want NotFound", h.ID, err)
		}
	}
	listed, err := p.List(ctx(t), env.Pool.Name)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(listed) != 0 {
		t.Fatalf("list after delete returned %v", ids(listed))
	}
}

func testBadCredentials(t *testing.T, env *Env) {
	a := env.Pool.Offerings[0]
	env.SetCapacity(t, a, 10)
	p := env.NewBadCredentials(t)
	start := time.Now()
	_, err := p.List(ctx(t), env.Pool.Name)
	if !providers.IsAuth(err) {
		t.Fatalf("list with bad credentials: err = %v, want an auth error", err)
	}
	hosts, err := p.Create(ctx(t), claim(env, "claim-badcreds", 1, a))
	if !providers.IsAuth(err) || len(hosts) != 0 {
		t.Fatalf("create with bad credentials: hosts=%d err = %v, want an auth error", len(hosts), err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("bad credentials took %s to surface; they must not be retried", d)
	}
	listed, err := env.New(t).List(ctx(t), env.Pool.Name)
	if err != nil || len(listed) != 0 {
		t.Fatalf("bad-credential create left hosts %v (err %v)", ids(listed), err)
	}
}

func testCatalog(t *testing.T, env *Env) {
	p := env.New(t)
	offerings, err := p.Catalog(ctx(t), env.Pool)
	if err != nil {
		t.Fatalf("catalog: %v", err)
	}
	for _, want := range env.Pool.Offerings {
		i := slices.IndexFunc(offerings, func(o providers.Offering) bool { return o.Key() == want.Key() })
		if i < 0 {
			t.Fatalf("catalog %v lacks pool offering %s", offerings, want.Key())
		}
		if !offerings[i].Available {
			t.Errorf("catalog reports %s unavailable", want.Key())
		}
		if offerings[i].Price <= 0 {
			t.Errorf("catalog reports no price for %s", want.Key())
		}
	}
}

// testSpotNotice: a spot host that got the cloud's interruption notice is
// listed with InterruptAt, and only that one, also by a provider that did
// not see the notice arrive (after a restart).
func testSpotNotice(t *testing.T, env *Env) {
	i := slices.IndexFunc(env.Pool.Offerings, func(o providers.Offering) bool { return o.CapacityType == providers.CapacitySpot })
	if i < 0 {
		t.Fatalf("env pool %q needs a spot offering", env.Pool.Name)
	}
	spot := env.Pool.Offerings[i]
	env.SetCapacity(t, spot, 10)
	p := env.New(t)
	hosts, err := p.Create(ctx(t), claim(env, "claim-spot", 2, spot))
	if err != nil || len(hosts) != 2 {
		t.Fatalf("create: %v, %v", hosts, err)
	}
	interrupted := hosts[0].ID
	listed := func(p providers.Provider) map[string]providers.Host {
		t.Helper()
		got, err := p.List(ctx(t), env.Pool.Name)
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		out := map[string]providers.Host{}
		for _, h := range got {
			out[h.ID] = h
		}
		return out
	}
	for id, h := range listed(p) {
		if !h.InterruptAt.IsZero() {
			t.Fatalf("host %s is listed with a notice (%v) before any", id, h.InterruptAt)
		}
	}
	env.Interrupt(t, interrupted)
	for name, p := range map[string]providers.Provider{"the same provider": p, "a restarted provider": env.New(t)} {
		got := listed(p)
		if h, ok := got[interrupted]; !ok || h.InterruptAt.IsZero() {
			t.Fatalf("%s lists interrupted host %s as %+v, want it with InterruptAt", name, interrupted, h)
		}
		if h := got[hosts[1].ID]; !h.InterruptAt.IsZero() {
			t.Fatalf("%s lists host %s with a notice it did not get (%v)", name, h.ID, h.InterruptAt)
		}
	}
}

// ConsistencyEnv is a cloud whose API does not see an instance for a
// while after its launch (EC2's and ECS's eventual consistency), on the
// wall clock.
type ConsistencyEnv struct {
	Env
	// Lag is how long a just-launched instance stays invisible.
	Lag time.Duration
	// Running reports whether the cloud itself (not its API) runs the
	// instance: launched and not terminated or terminating.
	Running func(t *testing.T, id string) bool
}

// RunConsistency runs the contract's cases for an eventually consistent
// cloud: a delete right after a launch terminates the instance instead of
// taking the API's "not found" for proof that it is gone.
func RunConsistency(t *testing.T, newEnv func(t *testing.T) *ConsistencyEnv) {
	t.Helper()
	t.Run("DeleteRightAfterCreateTerminates", func(t *testing.T) {
		env := newEnv(t)
		a := env.Pool.Offerings[0]
		env.SetCapacity(t, a, 10)
		p := env.New(t)
		hosts, err := p.Create(ctx(t), claim(&env.Env, "claim-lagged", 1, a))
		if err != nil || len(hosts) != 1 {
			t.Fatalf("create: %v, %v", hosts, err)
		}
		if _, err := p.Get(ctx(t), hosts[0].ID); !providers.IsNotFound(err) {
			t.Fatalf("the cloud should not see the instance yet: get = %v", err)
		}
		started := time.Now()
		if err := p.Delete(ctx(t), hosts[0]); err != nil {
			t.Fatalf("delete right after create: %v; want the instance terminated", err)
		}
		t.Logf("the delete waited %s for the cloud to see the instance (lag %s)", time.Since(started).Round(10*time.Millisecond), env.Lag)
		if env.Running(t, hosts[0].ID) {
			t.Fatalf("instance %s still runs after Delete returned", hosts[0].ID)
		}
	})
}
