package controller

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/policies"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
)

// governed makes a policy of bu-a with deadline govern web.
func (h *harness) governed(deadline time.Duration) {
	h.t.Helper()
	h.webPolicy("deadline: " + deadline.String() + "\n")
}

// webPolicy makes a policy of bu-a govern web, with extra (YAML lines:
// its deadline, its traffic) besides a fixed check.
func (h *harness) webPolicy(extra string) {
	h.t.Helper()
	doc := `apiVersion: spillway/v1
kind: ScalingPolicy
name: web
business_unit: bu-a
target: {namespace: default, job: web, group: app}
min: 1
max: 40
` + extra + `checks:
  - name: fixed
    fixed: {count: 1}
`
	p := filepath.Join(h.t.TempDir(), "web.yaml")
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		h.t.Fatal(err)
	}
	set, err := policies.LoadFiles(p)
	if err != nil {
		h.t.Fatal(err)
	}
	h.c.cfg.Policies = func() *policies.Set { return set }
}

func eventsOf(evs []journal.Event, activity string) []journal.Event {
	var out []journal.Event
	for _, ev := range evs {
		if ev.Activity == activity {
			out = append(out, ev)
		}
	}
	return out
}

// TestHedgeWhenTheDeadlineIsTight: the policy's deadline leaves aws (60s
// to be ready) too little slack, so ali, which the plan offers and which
// is ready sooner, is asked too, in parallel; the hedge is journaled and
// both clouds are called.
func TestHedgeWhenTheDeadlineIsTight(t *testing.T) {
	h := newHarness(t, 0)
	h.governed(65 * time.Second)
	h.service(4)
	h.start()
	if err := h.k.SetCount(web, 8); err != nil {
		t.Fatal(err)
	}
	h.until("the scale-out is done", func() bool { return len(h.events(KindActivityEnded)) == 1 })
	hedges := h.events(KindHedge)
	if len(hedges) != 1 || !strings.Contains(hedges[0].Message, "also asking ali for 1 host") {
		t.Fatalf("hedges: %+v\n%s", hedges, h.dump())
	}
	if len(h.aws.Creates()) != 1 || len(h.ali.Creates()) != 1 {
		t.Fatalf("creates: aws %d, ali %d; want one each", len(h.aws.Creates()), len(h.ali.Creates()))
	}
}

// TestTopUpWhenTheCountRisesMidActivity: the count rises again while the
// first hosts boot; once they are ready and work is still queued, the
// same activity rents more, and ends once.
func TestTopUpWhenTheCountRisesMidActivity(t *testing.T) {
	h := newHarness(t, 0)
	h.service(4)
	h.boots = false // hold the first host back
	h.start()
	if err := h.k.SetCount(web, 8); err != nil {
		t.Fatal(err)
	}
	h.until("the first host is rented", func() bool { return len(h.events(KindClaimed)) == 1 })
	if err := h.k.SetCount(web, 12); err != nil {
		t.Fatal(err)
	}
	h.boots = true
	h.until("the scale-out is done", func() bool { return len(h.events(KindActivityEnded)) == 1 })
	done := h.events(KindActivityEnded)
	mine := eventsOf(h.events(""), done[0].Activity)
	if got := poolsOf(mine, KindClaimed); len(got) != 2 {
		t.Fatalf("claims in the activity: %v, want the first and the top-up\n%s", got, h.dump())
	}
	if d, _ := h.k.Snapshot().Demand(web); d.Running != 12 || d.Queued != 0 {
		t.Fatalf("after the top-up: %+v", d)
	}
	if got := phasesOf(mine); strings.Join(got, ",") != strings.Join(allPhases, ",") {
		t.Fatalf("phases %v", got)
	}
	if got := outcomeOf(done[0]); got != OutcomeDone {
		t.Fatalf("outcome %q, want done", got)
	}
	if got := testutil.ToFloat64(h.c.ends.WithLabelValues(OutcomeDone)); got != 1 {
		t.Fatalf("spillway_scaleouts_total{outcome=done} = %v, want 1", got)
	}
}

// TestStuckLaunchIsReplaced: a rented host that never becomes a Nomad node
// within its ready timeout is journaled as stuck and replaced: the new
// claim is asked for before the stuck host is terminated; the activity
// ends on the replacement.
func TestStuckLaunchIsReplaced(t *testing.T) {
	h := newHarness(t, 0)
	h.service(4)
	h.boots = false
	h.start()
	if err := h.k.SetCount(web, 8); err != nil {
		t.Fatal(err)
	}
	h.until("the host is rented", func() bool { return len(h.events(KindClaimed)) == 1 })
	stuck := h.cloud.Instances()[0].ID
	h.never[stuck] = true
	h.boots = true
	h.until("the scale-out is done", func() bool { return len(h.events(KindActivityEnded)) == 1 })
	kinds := h.kinds()
	stuckAt, terminatedAt := slices.Index(kinds, KindHostStuck), slices.Index(kinds, KindTerminate)
	replacementAt := stuckAt + slices.Index(kinds[stuckAt:], KindIntent)
	if stuckAt < 0 || replacementAt < stuckAt || terminatedAt < replacementAt {
		t.Fatalf("want stuck, the replacement's claim, then the termination: %v\n%s", kinds, h.dump())
	}
	deleted := h.aws.Deletes()
	if len(deleted) != 1 || deleted[0].ID != stuck {
		t.Fatalf("deletes %+v, want the stuck %s", deleted, stuck)
	}
	if n := len(h.aws.Creates()) + len(h.ali.Creates()); n != 2 {
		t.Fatalf("%d creates, want the first and the replacement", n)
	}
}

// TestThrottledLaunchesBackOff: the cloud throttles aws's launches
// twice. A throttle is about the rate of calls on the account, not about
// the offerings: nothing is marked exhausted, so aws (the cheapest) is
// asked again, at a lower launch rate each time, and rents; the rate
// climbs back as launches go through.
func TestThrottledLaunchesBackOff(t *testing.T) {
	h := newHarness(t, 0)
	h.service(4)
	h.cloud.ThrottleNext(3)
	h.start()
	if err := h.k.SetCount(web, 8); err != nil {
		t.Fatal(err)
	}
	h.until("the scale-out is done", func() bool { return len(h.events(KindActivityEnded)) == 1 })
	failed := h.events(KindClaimFailed)
	claimed := h.events(KindClaimed)
	if len(failed) != 3 || len(claimed) != 1 {
		t.Fatalf("failed %d, claimed %d\n%s", len(failed), len(claimed), h.dump())
	}
	for _, f := range failed {
		var d struct{ Pool, Reason string }
		if err := json.Unmarshal(f.Data, &d); err != nil || d.Reason != providers.ErrorKindThrottled || d.Pool != "aws" {
			t.Fatalf("a failed claim that is not aws's throttle: %s %s", f.Message, f.Data)
		}
	}
	if got := poolsOf(claimed, KindClaimed); strings.Join(got, ",") != "aws" {
		t.Fatalf("rented from %v; a throttle must not push the claim off the cheapest cloud", got)
	}
	// The third attempt waited for the slower rate (1.25 launches/s after
	// three halvings), on the clock.
	intents := h.events(KindIntent)
	if gap := intents[3].Time.Sub(intents[2].Time); gap < 500*time.Millisecond {
		t.Errorf("the retry after three throttles came %s after the previous one; want the account's slower rate", gap)
	}
	if r := h.c.launchRate(h.aws); r >= launchRateMax || r <= launchRateMin {
		t.Errorf("aws's launch rate is %v after three throttles and a success", r)
	}
}

// TestUnmetLadderIsRetriedUntilTheGrace: no tier can give (the clouds are
// out of capacity) for many rounds; the activity keeps asking with
// growing backoff, journals capacity.unmet once for its one reason, and
// rents as soon as capacity comes back, within its deadline plus grace.
func TestUnmetLadderIsRetriedUntilTheGrace(t *testing.T) {
	h := newHarness(t, 0)
	h.c.cfg.ActivityGrace = time.Hour
	for _, o := range []providers.Offering{
		{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: providers.CapacityOnDemand},
		{InstanceType: "m5.xlarge", Zone: "us-east-1a", CapacityType: providers.CapacityOnDemand},
		{InstanceType: "ecs.g7.large", Zone: "cn-hangzhou-i", CapacityType: providers.CapacityOnDemand},
	} {
		h.cloud.SetCapacity(o, 0)
	}
	h.service(4)
	h.start()
	if err := h.k.SetCount(web, 8); err != nil {
		t.Fatal(err)
	}
	// More rounds than one request's rounds (roundsPerRun); each is
	// counted in spillway_capacity_unmet_total.
	var rounds []time.Time
	h.until("many unmet rounds", func() bool {
		if n := int(testutil.ToFloat64(h.c.unmetC)); n > len(rounds) {
			rounds = append(rounds, h.clock.Now())
		}
		return len(rounds) >= 4
	})
	if gap1, gap2 := rounds[2].Sub(rounds[1]), rounds[3].Sub(rounds[2]); gap2 <= gap1 {
		t.Errorf("the backoff does not grow: %s then %s", gap1, gap2)
	}
	unmet := h.events(KindUnmet)
	if len(unmet) != 1 {
		t.Fatalf("capacity.unmet journaled %d times for one reason, want once\n%s", len(unmet), h.dump())
	}
	if !strings.Contains(unmet[0].Message, "aws") || !strings.Contains(unmet[0].Message, "ali") || !strings.Contains(unmet[0].Message, "asking again with backoff until") {
		t.Errorf("the unmet need does not name the ladder's reasons and what comes next: %s", unmet[0].Message)
	}
	h.cloud.SetCapacity(providers.Offering{InstanceType: "ecs.g7.large", Zone: "cn-hangzhou-i", CapacityType: providers.CapacityOnDemand}, -1)
	h.until("the scale-out is done", func() bool { return len(h.events(KindActivityEnded)) == 1 })
	if got := poolsOf(h.events(""), KindClaimed); strings.Join(got, ",") != "ali" {
		t.Fatalf("claimed %v, want ali once it had capacity", got)
	}
	if got := outcomeOf(h.events(KindActivityEnded)[0]); got != OutcomeDone {
		t.Fatalf("outcome %q, want done", got)
	}
}

// TestGiveBackOrderAndNoGiveBackDuringAScaleOut: while a scale-out of
// bu-a runs, scale-in gives nothing of bu-a's back; once the count falls,
// it gives back the rented host (drained, then terminated) before the
// borrowed one.
func TestGiveBackOrderAndNoGiveBackDuringAScaleOut(t *testing.T) {
	h := newHarness(t, 1)
	h.service(4)
	h.boots = false
	h.start()
	if err := h.k.SetCount(web, 12); err != nil {
		t.Fatal(err)
	}
	h.until("the hosts are claimed", func() bool { return len(h.events(KindClaimed)) == 2 })
	// Mid scale-out: nothing is spare.
	h.clock.Advance(MinLoanAge + time.Second)
	if got, err := h.c.Consolidate(t.Context()); err != nil || len(got) != 0 {
		t.Fatalf("gave back %v (%v) during a scale-out", got, err)
	}
	if n := len(h.events(KindIntentReturn)); n != 0 {
		t.Fatalf("%d returns journaled during a scale-out", n)
	}
	h.boots = true
	h.until("the scale-out is done", func() bool { return len(h.events(KindActivityEnded)) == 1 })

	if err := h.k.SetCount(web, 4); err != nil {
		t.Fatal(err)
	}
	h.until("both hosts are given back", func() bool { return len(h.events(KindReturned)) == 2 })
	var tiers []string
	for _, ev := range h.events(KindIntentReturn) {
		var d struct{ Tier string }
		_ = json.Unmarshal(ev.Data, &d)
		tiers = append(tiers, d.Tier)
	}
	if strings.Join(tiers, ",") != "cold,shared" {
		t.Fatalf("give-back order %v, want the rented host before the borrowed one\n%s", tiers, h.dump())
	}
	// The rented host was drained before it was terminated.
	calls := h.k.CallsOf("drain")
	if len(calls) < 1 || !strings.HasPrefix(calls[0].Node, "node-") {
		t.Fatalf("drains %+v", calls)
	}
	if len(h.aws.Deletes()) != 1 {
		t.Fatalf("aws deletes %+v", h.aws.Deletes())
	}
	if loans := h.ledger.Loans(); len(loans) != 0 {
		t.Fatalf("open loans after scale-in: %+v", loans)
	}
}

// TestReconcileAdoptsAndFinishesHalfDoneWork: a previous term crashed
// after it journaled a claim and the cloud launched the host (the ledger
// lacks it), and after it journaled a host's return (the host still
// runs). The reconcile pass at the start of the next term adopts the
// first into the ledger and finishes the return of the second.
func TestReconcileAdoptsAndFinishesHalfDoneWork(t *testing.T) {
	h := newHarness(t, 0)
	h.service(4)
	ctx := t.Context()
	pool, _ := h.pools.CloudPool("aws")
	// The crash after the cloud call: intent journaled, host launched.
	intent, _ := json.Marshal(map[string]any{"claim": "act-old-aws-0o", "pool": "aws", "tier": pools.TierCold, "hosts": 1, "borrower": "bu-a"})
	if _, err := h.db.Events().Append(ctx, journal.Event{Time: h.clock.Now(), Kind: KindIntent, Activity: "act-old", Actor: "controller", Message: "renting", Data: intent}); err != nil {
		t.Fatal(err)
	}
	launched, err := h.aws.Create(ctx, providers.Claim{ID: "act-old-aws-0o", Pool: pool.ProviderPool(), Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	// The crash during a return: a rented host in the ledger, its return
	// journaled, not finished.
	back, err := h.aws.Create(ctx, providers.Claim{ID: "act-older-aws-0o", Pool: pool.ProviderPool(), Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.c.recordRental(ctx, back[0], pools.TierCold, "bu-a", "act-older-aws-0o", "rented"); err != nil {
		t.Fatal(err)
	}
	h.boot()
	ret, _ := json.Marshal(map[string]any{"host": back[0].ID, "instance": back[0].ID, "pool": "aws", "tier": pools.TierCold, "borrower": "bu-a"})
	if _, err := h.db.Events().Append(ctx, journal.Event{Time: h.clock.Now(), Kind: KindIntentReturn, Actor: "controller", Message: "returning", Data: ret}); err != nil {
		t.Fatal(err)
	}
	h.aws.Reset()

	h.start()
	h.until("the half-done work is finished", func() bool {
		return len(h.events(KindAdopted)) == 1 && len(h.events(KindReturned)) == 1
	})
	if _, ok := h.ledger.Loan(launched[0].ID); !ok {
		t.Fatalf("the launched host %s is not in the ledger", launched[0].ID)
	}
	if _, ok := h.ledger.Loan(back[0].ID); ok {
		t.Fatalf("the returned host %s is still lent", back[0].ID)
	}
	if d := h.aws.Deletes(); len(d) != 1 || d[0].ID != back[0].ID {
		t.Fatalf("aws deletes %+v, want only %s", d, back[0].ID)
	}
	if n := len(h.aws.Creates()); n != 0 {
		t.Fatalf("the reconcile pass launched %d claims", n)
	}
}

// TestDownHostIsKeptThroughItsGrace: a rented host's node goes down (a link
// flap). It is journaled as down with when it was last ready; its work is
// queued again and replacement capacity is rented, journaled as such; the
// down host is not terminated. It comes back within the grace and serves
// again. Down a second time for longer than the grace, it is terminated,
// and the journal says what was seen.
func TestDownHostIsKeptThroughItsGrace(t *testing.T) {
	h := newHarness(t, 0)
	h.c.cfg.DownGrace = time.Minute
	h.service(4)
	h.start()
	if err := h.k.SetCount(web, 8); err != nil {
		t.Fatal(err)
	}
	h.until("the scale-out is done", func() bool { return len(h.events(KindActivityEnded)) == 1 })
	rented := h.cloud.Instances()[0].ID
	node := "node-" + rented

	h.k.SetNodeStatus(node, "down")
	h.until("the host is journaled down", func() bool { return len(h.events(KindHostDown)) == 1 })
	down := h.events(KindHostDown)[0]
	if !strings.Contains(down.Message, "last ready at") || !strings.Contains(down.Message, rented) {
		t.Fatalf("host.down: %s", down.Message)
	}
	h.until("a replacement is rented", func() bool { return len(h.events(KindReplacing)) == 1 && len(h.events(KindActivityEnded)) == 2 })
	if !strings.Contains(h.events(KindReplacing)[0].Message, rented) {
		t.Fatalf("the replacement does not name the down host: %s", h.events(KindReplacing)[0].Message)
	}
	if n := len(h.aws.Deletes()) + len(h.ali.Deletes()); n != 0 {
		t.Fatalf("%d hosts terminated within the grace", n)
	}

	h.k.SetNodeStatus(node, "ready")
	h.until("the host is back", func() bool { return len(h.events(KindHostBack)) == 1 })
	if n := len(h.events(KindTerminate)); n != 0 {
		t.Fatalf("%d terminations for a host that came back", n)
	}

	h.k.SetNodeStatus(node, "down")
	h.until("the host down past its grace is terminated", func() bool { return len(h.aws.Deletes()) == 1 })
	term := h.events(KindTerminate)
	if len(term) != 1 || !strings.Contains(term[0].Message, "past clouds.down_grace") || !strings.Contains(term[0].Message, "last ready at") ||
		!strings.Contains(term[0].Message, "since") {
		t.Fatalf("the termination of the down host: %+v", term)
	}
	if d := h.aws.Deletes(); d[0].ID != rented {
		t.Fatalf("terminated %s, want the down host %s", d[0].ID, rented)
	}
	// The grace is counted from the second time down, not the first.
	downs := h.events(KindHostDown)
	if len(downs) != 2 || term[0].Time.Sub(downs[1].Time) < h.c.cfg.DownGrace {
		t.Fatalf("terminated at %s, within the grace of %s after going down again at %s", term[0].Time, h.c.cfg.DownGrace, downs[len(downs)-1].Time)
	}
}

// TestOrphanCollectionNeedsTheJournalsWitness: an instance tagged as ours
// that no claim names is terminated only after two passes the grace apart
// and once older than the grace; one older than the journal (a lost or
// new journal) is refused, journaled and counted, until an operator keeps
// or terminates it.
func TestOrphanCollectionNeedsTheJournalsWitness(t *testing.T) {
	h := newHarness(t, 0)
	h.c.cfg.OrphanGrace = 2 * time.Minute
	ctx := t.Context()
	pool, _ := h.pools.CloudPool("aws")
	// Two instances from before the journal: a lost journal's.
	old, err := h.aws.Create(ctx, providers.Claim{ID: "lost-journal", Pool: pool.ProviderPool(), Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(time.Minute)
	if _, err := h.db.Events().Append(ctx, journal.Event{Time: h.clock.Now(), Kind: "test.begin", Message: "the journal begins"}); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(time.Minute)
	// One launched since, no claim journaled: an orphan.
	orphan, err := h.aws.Create(ctx, providers.Claim{ID: "never-journaled", Pool: pool.ProviderPool(), Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	h.aws.Reset()
	h.start()
	h.until("the old instances are refused", func() bool { return len(h.events(KindGCRefused)) == 1 })
	refused := h.events(KindGCRefused)[0]
	if !strings.Contains(refused.Message, "spillway:cluster=spillway") || !strings.Contains(refused.Message, old[0].ID) || !strings.Contains(refused.Message, old[1].ID) ||
		strings.Contains(refused.Message, orphan[0].ID) {
		t.Fatalf("gc.refused: %s", refused.Message)
	}
	if v := testutil.ToFloat64(h.c.refusedGauge); v != 2 {
		t.Fatalf("spillway_gc_refused_instances = %v, want 2", v)
	}
	h.until("the orphan is collected", func() bool { return len(h.aws.Deletes()) == 1 })
	if d := h.aws.Deletes(); d[0].ID != orphan[0].ID {
		t.Fatalf("collected %s, want the orphan %s", d[0].ID, orphan[0].ID)
	}
	term := h.events(KindTerminate)
	if len(term) != 1 || term[0].Actor != "collector" || !strings.Contains(term[0].Message, "in passes") {
		t.Fatalf("the orphan's termination: %+v", term)
	}
	// The first pass (the one that refused) saw the orphan too: the
	// termination came at least the grace later.
	if gap := term[0].Time.Sub(refused.Time); gap < h.c.cfg.OrphanGrace {
		t.Fatalf("the orphan was terminated %s after it was first seen, within the grace of %s", gap, h.c.cfg.OrphanGrace)
	}
	// The operator adopts one refused instance and terminates the other.
	// The adopted one has no Nomad node: the collector only leaves it be.
	if bu, err := h.c.AdoptOrphan(ctx, old[0].ID, "oncall", "a host of the previous journal we adopt by hand"); err != nil || bu != "" {
		t.Fatalf("adopting a refused instance with no node: %q, %v", bu, err)
	}
	if err := h.c.TerminateOrphan(ctx, old[1].ID, "oncall", "left over"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.c.AdoptOrphan(ctx, orphan[0].ID, "oncall", "x"); !errors.Is(err, ErrNotRefused) {
		t.Fatalf("adopting an instance that was not refused: %v", err)
	}
	h.until("nothing is refused any more", func() bool { return testutil.ToFloat64(h.c.refusedGauge) == 0 })
	if d := h.aws.Deletes(); len(d) != 2 || d[1].ID != old[1].ID {
		t.Fatalf("deletes %+v; the adopted instance must stay", d)
	}
}

// TestSpotInterruptionIsReplacedThenDrained: a rented spot host's
// interruption notice asks for a replacement at once, drains the host
// within the notice and terminates it after the replacement was asked
// for, all in one activity; the group is healthy again at the end.
func TestSpotInterruptionIsReplacedThenDrained(t *testing.T) {
	spotPools := strings.NewReplacer(
		"{instance_type: m5.large, price: {on_demand: 0.1}}", "{instance_type: m5.large, price: {on_demand: 0.1, spot: 0.03}}",
		"{instance_type: m5.xlarge, price: {on_demand: 0.2}}", "{instance_type: m5.xlarge, price: {on_demand: 0.2, spot: 0.06}}",
		"spot: 0%\nlaunch", "spot: 100%\nlaunch").Replace(harnessPools)
	h := newHarnessOn(t, 0, spotPools)
	h.service(4)
	h.start()
	if err := h.k.SetCount(web, 8); err != nil {
		t.Fatal(err)
	}
	h.until("the scale-out is done", func() bool { return len(h.events(KindActivityEnded)) == 1 })
	insts := h.cloud.Instances()
	if len(insts) != 1 || insts[0].Offering.CapacityType != providers.CapacitySpot {
		t.Fatalf("rented %+v, want one spot host", insts)
	}
	spot := insts[0]
	noticed := h.clock.Now()
	h.cloud.Interrupt(spot.ID)

	h.until("the interruption is handled", func() bool { return len(h.events(KindActivityEnded)) == 2 })
	in := h.events(KindInterrupted)
	if len(in) != 1 || !strings.Contains(in[0].Message, spot.ID) || in[0].Activity == "" {
		t.Fatalf("host.interrupted: %+v\n%s", in, h.dump())
	}
	act := in[0].Activity
	// The journal tells the story in order, in one activity: the notice,
	// the replacement asked for, the drain, the termination, the end.
	var story []string
	for _, ev := range h.events("") {
		if ev.Activity == act && ev.Kind != KindPhase {
			story = append(story, ev.Kind)
		}
	}
	at := func(kind string) int { return slices.Index(story, kind) }
	if at(KindInterrupted) != 0 || at(KindReplacing) < 0 || at(KindIntent) < at(KindReplacing) || at(KindDrained) < 0 ||
		at(KindTerminate) < max(at(KindIntent), at(KindDrained)) || at(KindActivityEnded) != len(story)-1 {
		t.Fatalf("the interruption's activity journaled %v, want interrupted, replacing, claim, drained, terminate, done\n%s", story, h.dump())
	}
	drains := h.k.CallsOf("drain")
	if len(drains) != 1 || drains[0].Node != "node-"+spot.ID {
		t.Fatalf("drains: %+v", drains)
	}
	if d := drains[0].Drain; d <= 0 || d > time.Duration(float64(providers.SpotNotice)*drainShare) {
		t.Fatalf("the drain's deadline is %s, want within %.0f%% of a %s notice", d, drainShare*100, providers.SpotNotice)
	}
	if del := h.aws.Deletes(); len(del) != 1 || del[0].ID != spot.ID {
		t.Fatalf("deletes: %+v", del)
	}
	if ended := h.events(KindTerminated); len(ended) != 1 || !ended[0].Time.Before(noticed.Add(providers.SpotNotice)) {
		t.Fatalf("the interrupted host was not terminated before its notice ran out: %+v", ended)
	}
	var live []providers.Host
	for _, i := range h.cloud.Instances() {
		if i.State != providers.HostTerminated {
			live = append(live, i)
		}
	}
	if len(live) != 1 || live[0].ID == spot.ID || live[0].Offering == spot.Offering {
		t.Fatalf("live hosts after the interruption: %+v; want one replacement on another offering than %+v", live, spot.Offering)
	}
	if got := h.k.Snapshot().Healthy(web); got != 8 {
		t.Fatalf("%d of 8 allocations healthy after the interruption", got)
	}
	if v := testutil.ToFloat64(h.c.interruptions.WithLabelValues("aws")); v != 1 {
		t.Fatalf("spillway_spot_interruptions_total{pool=aws} = %v", v)
	}
}
