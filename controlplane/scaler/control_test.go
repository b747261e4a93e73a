package scaler

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/evaluate"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/policies"
)

// readingCounts is fakeCounts that can also read the count.
type readingCounts struct {
	fakeCounts
	count int
}

func (r *readingCounts) Count(context.Context, policies.Target) (int, error) { return r.count, nil }

func (r *readingCounts) Scale(ctx context.Context, t policies.Target, count int, msg string, meta map[string]any) error {
	if err := r.fakeCounts.Scale(ctx, t, count, msg, meta); err != nil {
		return err
	}
	r.count = count
	return nil
}

func TestPauseSkipsThePolicyAndSurvivesARestart(t *testing.T) {
	ctx := context.Background()
	db := openJournal(t)
	set := loadSet(t, strings.Replace(policyDoc, "NAME", "a", 1), strings.Replace(policyDoc, "NAME", "b", 1))
	now := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	var evaluated []string
	ev := &fakeEvaluator{decide: func(p *policies.Policy, _ evaluate.State) policies.Decision {
		evaluated = append(evaluated, p.Name)
		return decision(policies.None, 2, 2, "fine")
	}}
	cfg := Config{Policies: func() *policies.Set { return set }, Evaluator: ev, Counts: &fakeCounts{}, Journal: db.Events(), Now: func() time.Time { return now }}
	s := New(cfg)
	if _, _, err := s.Pause(ctx, "nope", "oncall", ""); !errors.Is(err, ErrUnknownPolicy) {
		t.Fatalf("pausing an unknown policy: %v", err)
	}
	p, changed, err := s.Pause(ctx, "a", "oncall", "window")
	if err != nil || !changed || p.By != "oncall" || p.Reason != "window" {
		t.Fatalf("pause: %+v %v %v", p, changed, err)
	}
	if _, changed, _ := s.Pause(ctx, "a", "oncall", ""); changed {
		t.Fatal("a second pause changed something")
	}
	s.Evaluate(ctx, target, Trigger{Target: target, Cause: "test"})
	if len(evaluated) != 1 || evaluated[0] != "b" {
		t.Fatalf("evaluated %v, want only b", evaluated)
	}

	s2 := New(cfg)
	if err := s2.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s2.Paused(); len(got) != 1 || got["a"].Reason != "window" || !got["a"].Since.Equal(now) {
		t.Fatalf("restored pauses: %+v", got)
	}
	if _, changed, err := s2.Resume(ctx, "a", "oncall", ""); err != nil || !changed {
		t.Fatalf("resume: %v %v", changed, err)
	}
	s3 := New(cfg)
	_ = s3.Restore(ctx)
	if len(s3.Paused()) != 0 {
		t.Fatalf("a resumed pause came back: %+v", s3.Paused())
	}
	evs, _ := db.Events().Query(ctx, journal.Filter{Kind: "policy"})
	if len(evs) != 2 || evs[0].Actor != "oncall" || evs[0].Subject != target.String() {
		t.Fatalf("journal: %+v", evs)
	}
}

func TestManualScaleJournalsAndStartsTheCooldown(t *testing.T) {
	ctx := context.Background()
	db := openJournal(t)
	set := loadSet(t, strings.Replace(policyDoc, "NAME", "a", 1))
	now := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	counts := &readingCounts{count: 2}
	s := New(Config{Policies: func() *policies.Set { return set }, Evaluator: &fakeEvaluator{}, Counts: counts, Journal: db.Events(), Now: func() time.Time { return now }})

	if _, err := s.Scale(ctx, Manual{Target: target, By: 1, Actor: "oncall"}); !errors.Is(err, ErrInvalidCount) {
		t.Fatalf("no reason: %v", err)
	}
	if _, err := s.Scale(ctx, Manual{Target: target, By: -3, Reason: "x", Actor: "oncall"}); !errors.Is(err, ErrInvalidCount) {
		t.Fatalf("below zero: %v", err)
	}
	to := 5
	res, err := s.Scale(ctx, Manual{Target: target, To: &to, Reason: "launch", Actor: "oncall"})
	if err != nil || res.Current != 2 || res.Desired != 5 || !res.Changed || res.Activity == "" {
		t.Fatalf("scale: %+v %v", res, err)
	}
	if !s.LastScale(target).Equal(now) {
		t.Fatalf("cooldown not started: %v", s.LastScale(target))
	}
	res, err = s.Scale(ctx, Manual{Target: target, To: &to, Reason: "again", Actor: "oncall"})
	if err != nil || res.Changed || res.Activity != "" {
		t.Fatalf("no-op scale: %+v %v", res, err)
	}
	evs, _ := db.Events().Query(ctx, journal.Filter{})
	if len(evs) != 3 || evs[0].Kind != journal.KindDecision || evs[1].Kind != journal.KindScale || evs[2].Kind != journal.KindDecision {
		t.Fatalf("journal: %+v", evs)
	}
	for _, e := range evs {
		if e.Actor != "oncall" {
			t.Errorf("%s by %q", e.Kind, e.Actor)
		}
	}
	// Counts that cannot read the count refuse a manual scaling.
	s2 := New(Config{Policies: func() *policies.Set { return set }, Evaluator: &fakeEvaluator{}, Counts: &fakeCounts{}, Journal: db.Events()})
	if _, err := s2.Scale(ctx, Manual{Target: target, By: 1, Reason: "x"}); !errors.Is(err, ErrCannotReadCount) {
		t.Fatalf("without a CountReader: %v", err)
	}
}
