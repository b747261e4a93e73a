package controller

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/policies"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
)

// governed makes a policy of bu-a with deadline govern web.
func (h *harness) governed(deadline time.Duration) {
	h.t.Helper()
	doc := `apiVersion: spillway/v1
kind: ScalingPolicy
name: web
business_unit: bu-a
target: {namespace: default, job: web, group: app}
min: 1
max: 40
deadline: ` + deadline.String() + `
checks:
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
}

// TestStuckLaunchIsReplaced: a rented host that never becomes a Nomad node
// within its ready timeout is journaled as stuck, terminated, and
// replaced by a new claim; the activity ends on the replacement.
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
	i, j, k := slices.Index(kinds, KindHostStuck), slices.Index(kinds, KindTerminated), slices.Index(kinds[slices.Index(kinds, KindClaimed)+1:], KindClaimed)
	if i < 0 || j < i || k < 0 {
		t.Fatalf("want stuck, terminated, then a new claim: %v\n%s", kinds, h.dump())
	}
	deleted := h.aws.Deletes()
	if len(deleted) != 1 || deleted[0].ID != stuck {
		t.Fatalf("deletes %+v, want the stuck %s", deleted, stuck)
	}
	if n := len(h.aws.Creates()) + len(h.ali.Creates()); n != 2 {
		t.Fatalf("%d creates, want the first and the replacement", n)
	}
}

// TestThrottledCloudsBackOffAndRetry: both clouds throttle the launch;
// nothing can be rented, so the need is journaled as unmet with the
// ladder's reasons, and asked again after a backoff (not at once), when
// the clouds take it.
func TestThrottledCloudsBackOffAndRetry(t *testing.T) {
	h := newHarness(t, 0)
	h.service(4)
	h.cloud.ThrottleNext(2)
	h.start()
	if err := h.k.SetCount(web, 8); err != nil {
		t.Fatal(err)
	}
	h.until("the scale-out is done", func() bool { return len(h.events(KindActivityEnded)) == 1 })
	unmet := h.events(KindUnmet)
	claimed := h.events(KindClaimed)
	if len(unmet) == 0 || len(claimed) != 1 {
		t.Fatalf("unmet %d, claimed %d\n%s", len(unmet), len(claimed), h.dump())
	}
	if !strings.Contains(unmet[0].Message, "asking again with backoff") {
		t.Errorf("the unmet need does not say it is retried: %s", unmet[0].Message)
	}
	if wait := claimed[0].Time.Sub(unmet[0].Time); wait < unmetRetry {
		t.Errorf("retried %s after the unmet round, want a backoff of at least %s", wait, unmetRetry)
	}
	failed := h.events(KindClaimFailed)
	if len(failed) < 2 || !strings.Contains(strings.ToLower(failed[0].Message), "throttl") {
		t.Fatalf("throttled claims: %+v", failed)
	}
}

// TestUnmetLadderIsRetriedWithoutLimit: no tier can give (the clouds are
// out of capacity) for many rounds; the activity keeps asking with
// growing backoff, and rents as soon as capacity comes back.
func TestUnmetLadderIsRetriedWithoutLimit(t *testing.T) {
	h := newHarness(t, 0)
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
	// More rounds than one request's rounds (roundsPerRun).
	h.until("many unmet rounds", func() bool { return len(h.events(KindUnmet)) >= 3 })
	unmet := h.events(KindUnmet)
	if gap1, gap2 := unmet[1].Time.Sub(unmet[0].Time), unmet[2].Time.Sub(unmet[1].Time); gap2 <= gap1 {
		t.Errorf("the backoff does not grow: %s then %s", gap1, gap2)
	}
	if !strings.Contains(unmet[0].Message, "aws") || !strings.Contains(unmet[0].Message, "ali") {
		t.Errorf("the unmet need does not name the ladder's reasons: %s", unmet[0].Message)
	}
	h.cloud.SetCapacity(providers.Offering{InstanceType: "ecs.g7.large", Zone: "cn-hangzhou-i", CapacityType: providers.CapacityOnDemand}, -1)
	h.until("the scale-out is done", func() bool { return len(h.events(KindActivityEnded)) == 1 })
	if got := poolsOf(h.events(""), KindClaimed); strings.Join(got, ",") != "ali" {
		t.Fatalf("claimed %v, want ali once it had capacity", got)
	}
}

// TestGiveBackOrderAndNoGiveBackDuringAScaleOut: while a scale-out runs,
// scale-in gives nothing back; once the count falls, it gives back the
// rented host (drained, then terminated) before the borrowed one.
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
