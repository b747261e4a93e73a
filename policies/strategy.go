package policies

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/hashicorp/cronexpr"
)

// Direction is what a vote or decision does to the count.
type Direction string

// The directions, from the least to the most capacity-preserving. Hold is
// "no change, and do not scale in": what a check votes when its data is
// unusable. None is "no opinion at this count".
const (
	None Direction = "none"
	Down Direction = "down"
	Hold Direction = "hold"
	Up   Direction = "up"
)

// StrategyInput is everything a strategy may look at.
type StrategyInput struct {
	// Value is the check's metric value; ignored by fixed and schedule.
	Value float64
	// Current is the task group's count now.
	Current int
	// Min and Max are the policy's bounds.
	Min, Max int
	// Now is the evaluation time. Strategies have no clock of their own.
	Now time.Time
}

// Vote is one check's (or alert rule's) opinion.
type Vote struct {
	Source    string    `json:"source"`   // check name, or "alert:<alertname>"
	Strategy  string    `json:"strategy"` // target_value, threshold, fixed, schedule, alert, on_check_error
	Direction Direction `json:"direction"`
	// Count is the count the vote asks for; for None and Hold it is the
	// current count.
	Count int `json:"count"`
	// Value is the metric value the vote is based on, when it has one.
	Value  *float64 `json:"value,omitempty"`
	Reason string   `json:"reason"`
	// Fingerprints name the firing alerts behind an alert vote (the first
	// ten), so the journal can say which alert decided.
	Fingerprints []string `json:"fingerprints,omitempty"`
}

// Strategy turns a check's input into a vote. Implementations are pure.
type Strategy interface {
	Vote(in StrategyInput) Vote
}

var (
	_ Strategy = (*TargetValue)(nil)
	_ Strategy = (*Threshold)(nil)
	_ Strategy = (*Fixed)(nil)
	_ Strategy = (*Schedule)(nil)
)

// voteFor builds a vote for count, deriving the direction from current.
func voteFor(current, count int, reason string) Vote {
	d := None
	switch {
	case count > current:
		d = Up
	case count < current:
		d = Down
	default:
		count = current
	}
	return Vote{Direction: d, Count: count, Reason: reason}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func fmtValue(f float64) string { return strconv.FormatFloat(f, 'g', 6, 64) }

func unusable(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) }

// Vote implements the target-value strategy. Inside the tolerance band it
// votes None; outside it asks for the count that brings the per-instance
// value back to the target, moving at most MaxStepUp or MaxStepDown.
func (t *TargetValue) Vote(in StrategyInput) Vote {
	v := in.Value
	out := t.vote(in)
	out.Strategy = "target_value"
	if !unusable(v) {
		out.Value = &v
	}
	return out
}

func (t *TargetValue) vote(in StrategyInput) Vote {
	v, cur := in.Value, in.Current
	if unusable(v) || v < 0 {
		return Vote{Direction: Hold, Count: cur, Reason: fmt.Sprintf("metric value %s is not a usable number; holding", fmtValue(v))}
	}
	if !(t.Target > 0) {
		return Vote{Direction: Hold, Count: cur, Reason: "target is not positive; holding"}
	}
	perInstance := v
	if t.Aggregate == AggregateTotal {
		if cur == 0 {
			perInstance = math.Inf(1)
			if v == 0 {
				perInstance = 0
			}
		} else {
			perInstance = v / float64(cur)
		}
	}
	factor := perInstance / t.Target
	desc := fmt.Sprintf("%s per instance vs target %s", fmtValue(perInstance), fmtValue(t.Target))
	if t.Aggregate == AggregateTotal && cur == 0 {
		desc = fmt.Sprintf("total %s with no instances, target %s per instance", fmtValue(v), fmtValue(t.Target))
	}
	if cur > 0 && math.Abs(factor-1) <= t.Tolerance+1e-9 { // 110/100 is 1.1000000000000001
		return Vote{Direction: None, Count: cur, Reason: fmt.Sprintf("%s is within ±%s%% tolerance", desc, fmtValue(t.Tolerance*100))}
	}
	var raw float64
	switch {
	case t.Aggregate == AggregateTotal:
		raw = v / t.Target
	case cur == 0:
		// No instance to average over: treat the value as the load one
		// instance would see.
		raw = factor
	default:
		raw = float64(cur) * factor
	}
	// Guard against float noise such as 10.000000001 → 11.
	desired := int(math.Ceil(raw - 1e-9))
	if raw > float64(math.MaxInt32) {
		desired = math.MaxInt32
	}
	reason := fmt.Sprintf("%s needs %d %s", desc, desired, plural(desired, "instance", "instances"))
	if desired > cur && t.MaxStepUp > 0 && desired-cur > t.MaxStepUp {
		desired = cur + t.MaxStepUp
		reason += fmt.Sprintf(", limited by max_step_up %d to %d", t.MaxStepUp, desired)
	}
	if desired < cur && t.MaxStepDown > 0 && cur-desired > t.MaxStepDown {
		desired = cur - t.MaxStepDown
		reason += fmt.Sprintf(", limited by max_step_down %d to %d", t.MaxStepDown, desired)
	}
	return voteFor(cur, desired, reason)
}

// Vote implements the threshold strategy: the action of the band the value
// falls in, or None when it is in no band.
func (t *Threshold) Vote(in StrategyInput) Vote {
	v := in.Value
	out := t.vote(in)
	out.Strategy = "threshold"
	if !unusable(v) {
		out.Value = &v
	}
	return out
}

func (t *Threshold) vote(in StrategyInput) Vote {
	v := in.Value
	if unusable(v) {
		return Vote{Direction: Hold, Count: in.Current, Reason: fmt.Sprintf("metric value %s is not a usable number; holding", fmtValue(v))}
	}
	for i, b := range t.Bands {
		if b.LowerBound != nil && v < *b.LowerBound {
			continue
		}
		if b.UpperBound != nil && v >= *b.UpperBound {
			continue
		}
		want := b.Action.Apply(in.Current, in.Min, in.Max)
		return voteFor(in.Current, want, fmt.Sprintf("value %s is in band %d %s: %s", fmtValue(v), i, b.describe(), b.Action))
	}
	return Vote{Direction: None, Count: in.Current, Reason: fmt.Sprintf("value %s is in no band", fmtValue(v))}
}

func (b Band) describe() string {
	lo, hi := "-inf", "+inf"
	if b.LowerBound != nil {
		lo = fmtValue(*b.LowerBound)
	}
	if b.UpperBound != nil {
		hi = fmtValue(*b.UpperBound)
	}
	return "[" + lo + ", " + hi + ")"
}

// Vote implements the fixed strategy.
func (f *Fixed) Vote(in StrategyInput) Vote {
	out := voteFor(in.Current, f.Count, fmt.Sprintf("fixed count %d", f.Count))
	out.Strategy = "fixed"
	return out
}

// Vote implements the schedule strategy: inside a window, or within its
// lead time before it starts, it asks for at least the window's count.
// Outside every window, or when the count is already high enough, it votes
// None: a schedule is a floor and never scales in.
func (s *Schedule) Vote(in StrategyInput) Vote {
	out := s.vote(in)
	out.Strategy = "schedule"
	return out
}

func (s *Schedule) vote(in StrategyInput) Vote {
	w, start, ok := s.Active(in.Now)
	if !ok {
		return Vote{Direction: None, Count: in.Current, Reason: "no scheduled window is active"}
	}
	name := w.Name
	if name == "" {
		name = strconv.Quote(w.Cron)
	}
	when := fmt.Sprintf("window %s (%s to %s)", name, start.Format(time.RFC3339), start.Add(w.Duration).Format(time.RFC3339))
	if in.Current >= w.Count {
		return Vote{Direction: None, Count: in.Current, Reason: fmt.Sprintf("%s asks for at least %d; already %d", when, w.Count, in.Current)}
	}
	verb := "is active"
	if in.Now.Before(start) {
		verb = fmt.Sprintf("starts in %s", start.Sub(in.Now).Round(time.Second))
	}
	return voteFor(in.Current, w.Count, fmt.Sprintf("%s %s: pre-scaling to %d", when, verb, w.Count))
}

// Active returns the window that applies at now, with the start of its
// current occurrence (in the schedule's time zone), preferring the one
// asking for the most instances. A window applies from start-lead_time
// (inclusive) to start+duration (exclusive).
func (s *Schedule) Active(now time.Time) (Window, time.Time, bool) {
	loc := s.loc
	if loc == nil {
		// A Schedule built in code rather than loaded.
		loc = time.UTC
		if s.TimeZone != "" {
			l, err := time.LoadLocation(s.TimeZone)
			if err != nil {
				return Window{}, time.Time{}, false
			}
			loc = l
		}
	}
	var (
		best      Window
		bestStart time.Time
		found     bool
	)
	for _, w := range s.Windows {
		// cronexpr.Expression mutates itself in Next, so parse per call:
		// a shared compiled expression would race between evaluations.
		e, err := cronexpr.Parse(w.Cron)
		if err != nil || w.Duration <= 0 {
			continue
		}
		// The occurrence that matters is the first start strictly after
		// now-duration: it is still running, or it is upcoming.
		start := e.Next(now.Add(-w.Duration).In(loc))
		if start.IsZero() || start.After(now.Add(w.LeadTime)) {
			continue
		}
		if !found || w.Count > best.Count {
			best, bestStart, found = w, start, true
		}
	}
	return best, bestStart, found
}
