package scalesim

import (
	"fmt"
	"time"
)

// Verdict is one target of issue #34 checked against one run's figures.
// Targets are measured and reported, never asserted in a unit test.
type Verdict struct {
	Target   string
	Measured string
	// Met is false for a missed target; Applies is false when the run has
	// nothing to measure it by (no capacity error, no fallback).
	Met, Applies bool
}

// Verdicts checks r against the targets.
func Verdicts(r *Result) []Verdict {
	ms := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	var out []Verdict
	p99 := Quantile(r.TimeToCapacity, .99)
	out = append(out, Verdict{Target: "p99 time-to-capacity ≤ 5m, every allocation placed",
		Measured: fmt.Sprintf("%s, %d of %d placed", ms(p99), r.Placed, r.Hosts),
		Met:      r.Placed == r.Hosts && p99 <= 5*time.Minute, Applies: true})
	if lb := Quantile(r.LowerBound, .99); lb > 0 {
		over := float64(p99)/float64(lb) - 1
		v := Verdict{Target: "overhead over the physical lower bound ≤ 10% (p99 against p99)",
			Measured: fmt.Sprintf("%+.1f%% (%s against %s)", 100*over, ms(p99), ms(lb)), Met: over <= 0.10, Applies: true}
		if rb := Quantile(r.RateBound, .99); rb > 0 {
			v.Measured += fmt.Sprintf("; %+.1f%% over the lower bound at EC2's documented RunInstances request rate (%s)",
				100*(float64(p99)/float64(rb)-1), ms(rb))
		}
		out = append(out, v)
	}
	fb := Verdict{Target: "fallback ≤ 100ms of Spillway's time at p99", Measured: "no capacity error"}
	if len(r.Fallback) > 0 {
		f := Quantile(r.Fallback, .99)
		fb.Measured, fb.Met, fb.Applies = ms(f), f <= 100*time.Millisecond, true
	}
	out = append(out, fb)
	d := Quantile(r.Decision, .99)
	out = append(out, Verdict{Target: "decision latency ≤ 1s at p99", Measured: ms(d), Met: d <= time.Second, Applies: len(r.Decision) > 0})
	mem := Verdict{Target: "memory ≤ 200 MB RSS at 10,000 nodes", Measured: fmt.Sprintf("%.1f MB peak", float64(r.PeakRSS)/(1<<20)),
		Met: r.PeakRSS <= 200<<20, Applies: r.PeakRSS > 0 && r.Existing >= 10000}
	if r.PeakRSS > 0 && r.Existing < 10000 {
		mem.Measured += fmt.Sprintf(" on %d nodes (the target is at 10,000)", r.Existing)
	}
	out = append(out, mem)
	return out
}
