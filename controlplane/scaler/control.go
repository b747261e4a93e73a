package scaler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/spillwayhq/spillway/controlplane/evaluate"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/policies"
)

// Event kinds the scaler's operator controls journal, besides decision and
// scale. A pause or resume names the policy in its data and the policy's
// task group as its subject.
const (
	KindPolicyPaused  = "policy.paused"
	KindPolicyResumed = "policy.resumed"
)

// Errors of the operator controls.
var (
	// ErrUnknownPolicy: no policy in force has that name.
	ErrUnknownPolicy = errors.New("no such policy")
	// ErrInvalidCount: a manual scaling asked for a negative count or none.
	ErrInvalidCount = errors.New("invalid count")
	// ErrCannotReadCount: the Counts in use cannot read a group's count.
	ErrCannotReadCount = errors.New("cannot read the current count")
	// ErrUnknownTarget: Nomad has no such job or task group.
	ErrUnknownTarget = evaluate.ErrUnknownGroup
	// ErrJournal: the change could not be journaled, so it was not made.
	ErrJournal = errors.New("the journal could not record the change")
)

// CountReader reads a task group's current count. Counts that implement it
// (ClusterCounts does) allow manual scaling by a delta.
type CountReader interface {
	Count(ctx context.Context, t policies.Target) (int, error)
}

// CountWaiter is Counts that can wait until a count it set can be read
// back (the cluster model has Nomad's event of it), so that the next
// manual scaling of the group, relative ("by") or not, starts from it.
type CountWaiter interface {
	AwaitCount(ctx context.Context, t policies.Target, count int) error
}

// awaitCountFor bounds the wait for a count to read back: the model
// follows Nomad's events within milliseconds; a longer wait is a model
// that is listing again, and the next read says so.
const awaitCountFor = 5 * time.Second

// Pause is a paused policy: the scaler skips it until it is resumed.
type Pause struct {
	Policy string    `json:"policy"`
	Since  time.Time `json:"since"`
	By     string    `json:"by"`
	Reason string    `json:"reason,omitempty"`
}

// pauseData is the data of a policy.paused or policy.resumed event.
type pauseData struct {
	Policy string          `json:"policy"`
	Target policies.Target `json:"target"`
	Reason string          `json:"reason,omitempty"`
}

// Pause stops the scaler from evaluating policy until Resume. It is
// journaled (with actor, the API token's name) before it takes effect.
// Pausing a paused policy changes nothing and reports changed false.
func (s *Scaler) Pause(ctx context.Context, policy, actor, reason string) (p Pause, changed bool, err error) {
	return s.setPaused(ctx, policy, actor, reason, true)
}

// Resume lets the scaler evaluate policy again. Resuming a policy that is
// not paused changes nothing and reports changed false.
func (s *Scaler) Resume(ctx context.Context, policy, actor, reason string) (p Pause, changed bool, err error) {
	return s.setPaused(ctx, policy, actor, reason, false)
}

func (s *Scaler) setPaused(ctx context.Context, policy, actor, reason string, pause bool) (Pause, bool, error) {
	pol, ok := s.cfg.Policies().Get(policy)
	if !ok {
		return Pause{}, false, fmt.Errorf("policy %q: %w", policy, ErrUnknownPolicy)
	}
	defer s.lock(pol.Target)()
	s.mu.Lock()
	cur, paused := s.paused[policy]
	s.mu.Unlock()
	if paused == pause {
		return cur, false, nil
	}
	now := s.cfg.Now()
	kind, verb := KindPolicyPaused, "paused"
	if !pause {
		kind, verb = KindPolicyResumed, "resumed"
	}
	msg := fmt.Sprintf("policy %s %s by %s", policy, verb, actor)
	if reason != "" {
		msg += ": " + reason
	}
	data, _ := json.Marshal(pauseData{Policy: policy, Target: pol.Target, Reason: reason})
	if _, err := s.cfg.Journal.Append(ctx, journal.Event{
		Time: now, Kind: kind, Subject: pol.Target.String(), Actor: actor, Message: msg, Data: data,
	}); err != nil {
		return Pause{}, false, fmt.Errorf("%w: journaling the %s policy %s: %w", ErrJournal, verb, policy, err)
	}
	p := Pause{Policy: policy, Since: now.UTC(), By: actor, Reason: reason}
	s.mu.Lock()
	if pause {
		s.paused[policy] = p
	} else {
		delete(s.paused, policy)
		p = Pause{Policy: policy}
	}
	s.mu.Unlock()
	s.cfg.Logger.Info("policy "+verb, "policy", policy, "by", actor, "reason", reason)
	return p, true, nil
}

// Paused returns the paused policies by name. It includes pauses of
// policies no longer in force, which apply again if the policy returns.
func (s *Scaler) Paused() map[string]Pause {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Pause, len(s.paused))
	for k, v := range s.paused {
		out[k] = v
	}
	return out
}

// active drops the paused policies from ps.
func (s *Scaler) active(ps []*policies.Policy) []*policies.Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := ps[:0:0]
	for _, p := range ps {
		if _, paused := s.paused[p.Name]; !paused {
			out = append(out, p)
		}
	}
	return out
}

// restorePauses replays the journal's pause and resume events.
func (s *Scaler) restorePauses(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := journal.Each(ctx, s.cfg.Journal, journal.Filter{Kind: "policy"}, func(ev journal.Event) error {
		var d pauseData
		if json.Unmarshal(ev.Data, &d) != nil || d.Policy == "" {
			return nil
		}
		switch ev.Kind {
		case KindPolicyPaused:
			s.paused[d.Policy] = Pause{Policy: d.Policy, Since: ev.Time, By: ev.Actor, Reason: d.Reason}
		case KindPolicyResumed:
			delete(s.paused, d.Policy)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restoring the paused policies: %w", err)
	}
	return nil
}

// LastScale is when the scaler last changed t's count; zero if never.
func (s *Scaler) LastScale(t policies.Target) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastScale[t].at
}

// DryRun evaluates p now with the scaler's own state (the last scaling, for
// cooldowns, and the firing alerts) and changes nothing: no journal entry,
// no count. A paused policy is evaluated too.
func (s *Scaler) DryRun(ctx context.Context, p *policies.Policy) evaluate.Result {
	now := s.cfg.Now()
	var firing []policies.Alert
	if s.cfg.Alerts != nil {
		firing = s.cfg.Alerts.Firing(now, policies.AlertNames([]*policies.Policy{p})...)
	}
	s.mu.Lock()
	last := s.lastScale[p.Target]
	s.mu.Unlock()
	return s.cfg.Evaluator.Evaluate(ctx, p, evaluate.State{LastScale: last.at, LastScaleManual: last.manual, Alerts: firing})
}

// Manual is an operator's scaling of a task group.
type Manual struct {
	Target policies.Target
	// To is the count to set; when nil, By is added to the current count.
	To *int
	By int
	// Reason is required; it goes to the journal and to Nomad's scaling event.
	Reason string
	// Actor is who asked: the API token's name.
	Actor string
	// Force sets the count even outside the bounds of the group's
	// policies; otherwise it is clamped to them. The caller checks that
	// the actor may (the API asks for the admin role).
	Force bool
}

// ManualResult is what a manual scaling did.
type ManualResult struct {
	Target   policies.Target `json:"target"`
	Current  int             `json:"current"`
	Desired  int             `json:"desired"`
	Changed  bool            `json:"changed"`
	Activity string          `json:"activity,omitempty"`
	// Requested is the count asked for, when clamping changed it.
	Requested *int `json:"requested,omitempty"`
	// Clamped says why the count differs from the one asked for.
	Clamped string `json:"clamped,omitempty"`
	Forced  bool   `json:"forced,omitempty"`
}

// Bounds are the counts the policies of a group allow: every policy is
// raised to its min and the largest scale-out wins, so the group's floor
// is the largest min and its ceiling the largest max. ok is false when no
// policy scales t.
func Bounds(ps []*policies.Policy) (lo, hi int, ok bool) {
	for i, p := range ps {
		if i == 0 || p.Min > lo {
			lo = p.Min
		}
		if i == 0 || p.Max > hi {
			hi = p.Max
		}
	}
	return lo, hi, len(ps) > 0
}

// MaxManualCount bounds a manual scaling, against typos.
const MaxManualCount = 10000

// Scale sets a task group's count for an operator, the same way an
// evaluation does: the decision is journaled (with the actor) before the
// count changes, the change is journaled as a scale event in the same
// activity, and the group's cooldown starts. A scaling that changes
// nothing is journaled as a decision only.
func (s *Scaler) Scale(ctx context.Context, m Manual) (ManualResult, error) {
	res := ManualResult{Target: m.Target}
	if m.Reason == "" {
		return res, fmt.Errorf("%w: a reason is required", ErrInvalidCount)
	}
	defer s.lock(m.Target)()
	reader, ok := s.cfg.Counts.(CountReader)
	if !ok {
		return res, ErrCannotReadCount
	}
	cur, err := reader.Count(ctx, m.Target)
	if err != nil {
		return res, fmt.Errorf("%w of %s: %w", ErrCannotReadCount, m.Target, err)
	}
	res.Current = cur
	if m.To != nil {
		res.Desired = *m.To
	} else {
		res.Desired = cur + m.By
	}
	if res.Desired < 0 || res.Desired > MaxManualCount {
		return res, fmt.Errorf("%w: %s would go from %d to %d; want 0 to %d", ErrInvalidCount, m.Target, cur, res.Desired, MaxManualCount)
	}
	lo, hi, bounded := Bounds(s.cfg.Policies().ForTarget(m.Target))
	if bounded && (res.Desired < lo || res.Desired > hi) {
		if m.Force {
			res.Forced = true
		} else {
			asked := res.Desired
			res.Requested = &asked
			res.Desired = min(max(res.Desired, lo), hi)
			res.Clamped = fmt.Sprintf("%d is outside the policies' bounds %d to %d; set %d (\"force\": true, with the admin role, sets it anyway)", asked, lo, hi, res.Desired)
		}
	}
	now := s.cfg.Now()
	res.Changed = res.Desired != cur
	dir := policies.Up
	switch {
	case !res.Changed:
		dir = policies.None
	case res.Desired < cur:
		dir = policies.Down
	}
	if res.Changed {
		res.Activity = journal.NewActivity(now)
	}
	fields := map[string]any{
		"target": m.Target, "current": cur, "desired": res.Desired, "direction": dir,
		"manual": true, "reason": m.Reason, "cause": "manual scaling by " + m.Actor,
	}
	note := ""
	switch {
	case res.Forced:
		fields["forced"] = true
		note = fmt.Sprintf(" (forced outside the policies' bounds %d to %d)", lo, hi)
	case res.Clamped != "":
		fields["requested"], fields["clamped"] = *res.Requested, res.Clamped
		note = fmt.Sprintf(" (asked for %d; clamped to the policies' bounds %d to %d)", *res.Requested, lo, hi)
	}
	data, _ := json.Marshal(fields)
	if _, err := s.cfg.Journal.Append(ctx, journal.Event{
		Time: now, Kind: journal.KindDecision, Subject: m.Target.String(), Activity: res.Activity, Actor: m.Actor,
		Message: fmt.Sprintf("manual: %d -> %d (%s) by %s%s: %s", cur, res.Desired, dir, m.Actor, note, m.Reason), Data: data,
	}); err != nil {
		return res, fmt.Errorf("%w: journaling a manual scaling of %s: %w", ErrJournal, m.Target, err)
	}
	if !res.Changed {
		return res, nil
	}
	msg := fmt.Sprintf("spillway: manual scaling by %s: %s", m.Actor, m.Reason)
	meta := map[string]any{MetaActivity: res.Activity, "spillway.actor": m.Actor}
	if err := s.cfg.Counts.Scale(ctx, m.Target, res.Desired, msg, meta); err != nil {
		s.scaleErrors.Inc()
		_, _ = s.cfg.Journal.Append(ctx, journal.Event{
			Time: s.cfg.Now(), Kind: journal.KindScaleFailed, Subject: m.Target.String(), Activity: res.Activity,
			Actor: m.Actor, Message: fmt.Sprintf("setting the count to %d failed: %v", res.Desired, err), Data: data,
		})
		return res, err
	}
	s.mu.Lock()
	s.lastScale[m.Target] = scaling{at: now, manual: true}
	// The next routine decision differs from this one: journal it.
	delete(s.lastNoted, m.Target)
	s.mu.Unlock()
	if s.cfg.OnScaled != nil {
		s.cfg.OnScaled(Scaled{Target: m.Target, From: cur, To: res.Desired, Activity: res.Activity, Triggered: now, Decided: now})
	}
	if _, err := s.cfg.Journal.Append(ctx, journal.Event{
		Time: s.cfg.Now(), Kind: journal.KindScale, Subject: m.Target.String(), Activity: res.Activity, Actor: m.Actor,
		Message: fmt.Sprintf("set the count of %s from %d to %d: manual scaling by %s: %s", m.Target, cur, res.Desired, m.Actor, m.Reason),
		Data:    data,
	}); err != nil {
		s.cfg.Logger.Error("journaling a scaling", "err", err)
	}
	s.cfg.Logger.Info("manual scaling", "target", m.Target.String(), "current", cur, "desired", res.Desired, "by", m.Actor, "reason", m.Reason)
	// Still holding the group's lock: the next scaling of it reads this
	// count, not the one before it (two "by": 1 in a row make 2).
	if w, ok := s.cfg.Counts.(CountWaiter); ok {
		wctx, cancel := context.WithTimeout(ctx, awaitCountFor)
		if err := w.AwaitCount(wctx, m.Target, res.Desired); err != nil {
			s.cfg.Logger.Warn("the new count has not reached the cluster model yet", "target", m.Target.String(), "count", res.Desired, "err", err)
		}
		cancel()
	}
	return res, nil
}

// SortedPauses returns Paused as a list in policy order.
func SortedPauses(m map[string]Pause) []Pause {
	out := make([]Pause, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Policy < out[j].Policy })
	return out
}
