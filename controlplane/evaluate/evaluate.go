// Package evaluate owns one evaluation pass of scaling policies against the
// live system. It runs each check's query through a [metrics.Source], reads
// the target task group's count and per-allocation resources from Nomad,
// hands both to the pure [policies.Evaluate], and adds what capacity the
// decision needs. It decides nothing itself and changes nothing: acting on
// a decision is the controller's job, and `spillway plan` prints it.
package evaluate

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/spillwayhq/spillway/controlplane/metrics"
	"github.com/spillwayhq/spillway/policies"
)

// Group is a Nomad task group's count and what one allocation of it asks
// for.
type Group struct {
	Count int `json:"count"`
	// CPUMHz, Cores and MemoryMB are summed over the group's tasks.
	CPUMHz   int `json:"cpu_mhz"`
	Cores    int `json:"cores,omitempty"`
	MemoryMB int `json:"memory_mb"`
	// CountsAsOf is set when the count is not current: the cluster model
	// is listing Nomad again, and these are its counts from then.
	CountsAsOf *time.Time `json:"counts_as_of,omitempty"`
}

// Groups reads task groups. Group returns an error when the job or group
// does not exist or Nomad cannot be reached.
type Groups interface {
	Group(ctx context.Context, t policies.Target) (Group, error)
}

// Capacity is what a decision adds (positive) or frees (negative).
type Capacity struct {
	Allocations int `json:"allocations"`
	CPUMHz      int `json:"cpu_mhz"`
	Cores       int `json:"cores,omitempty"`
	MemoryMB    int `json:"memory_mb"`
}

// State is what the caller knows beyond metrics and Nomad.
type State struct {
	// LastScale is when Spillway last scaled the group; zero if never.
	LastScale time.Time
	// LastScaleManual: the last scaling was an operator's (see
	// policies.Input).
	LastScaleManual bool
	// Alerts are the alerts firing now.
	Alerts []policies.Alert
}

// Result is one policy's evaluation.
type Result struct {
	Policy string          `json:"policy"`
	File   string          `json:"file"`
	Target policies.Target `json:"target"`
	// Group is nil when Nomad could not be read.
	Group *Group `json:"group,omitempty"`
	// Decision is nil when the policy could not be evaluated (see Error).
	Decision *policies.Decision `json:"decision,omitempty"`
	// Checks holds each check's value and data error, also when Decision
	// is nil.
	Checks   []policies.CheckResult `json:"checks"`
	Capacity Capacity               `json:"capacity"`
	// Error says why there is no decision.
	Error string `json:"error,omitempty"`
}

// Evaluator runs evaluation passes. Now is the clock; Logger defaults to
// slog.Default().
type Evaluator struct {
	Metrics metrics.Source
	Groups  Groups
	Now     func() time.Time
	Logger  *slog.Logger
	// Parallel bounds concurrent queries; default 8.
	Parallel int
}

// New returns an evaluator reading metrics from src and groups from g.
func New(src metrics.Source, g Groups, now func() time.Time, log *slog.Logger) *Evaluator {
	return &Evaluator{Metrics: src, Groups: g, Now: now, Logger: log}
}

func (e *Evaluator) logger() *slog.Logger {
	if e.Logger == nil {
		return slog.Default()
	}
	return e.Logger
}

// Evaluate evaluates one policy now.
func (e *Evaluator) Evaluate(ctx context.Context, p *policies.Policy, st State) Result {
	return e.evaluate(ctx, p, st, e.Now())
}

// EvaluateAll evaluates every policy of set at the same instant, in set
// order. states holds per-policy state by policy name.
func (e *Evaluator) EvaluateAll(ctx context.Context, set *policies.Set, states map[string]State) []Result {
	now := e.Now()
	ps := set.Policies()
	out := make([]Result, len(ps))
	par := e.Parallel
	if par <= 0 {
		par = 8
	}
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i] = e.evaluate(ctx, p, states[p.Name], now)
		}()
	}
	wg.Wait()
	return out
}

func (e *Evaluator) evaluate(ctx context.Context, p *policies.Policy, st State, now time.Time) Result {
	res := Result{Policy: p.Name, File: p.File(), Target: p.Target}
	readings := e.read(ctx, p, now)

	g, err := e.Groups.Group(ctx, p.Target)
	if err != nil {
		res.Error = fmt.Sprintf("reading task group %s: %s", p.Target, err)
		e.logger().Warn("cannot evaluate policy", "policy", p.Name, "err", err)
		// Still show what the metrics say.
		for _, c := range p.Checks {
			cr := policies.CheckResult{Check: c.Name, Query: c.Query}
			if r, ok := readings[c.Name]; ok {
				if s, err := r.Value(now, p.StaleAfter); err != nil {
					cr.DataError = err.Error()
				} else {
					v, t := s.Value, s.Time
					cr.Value, cr.SampleTime = &v, &t
				}
			}
			res.Checks = append(res.Checks, cr)
		}
		return res
	}
	res.Group = &g
	d := policies.Evaluate(p, policies.Input{
		Now:             now,
		Current:         g.Count,
		LastScale:       st.LastScale,
		LastScaleManual: st.LastScaleManual,
		Readings:        readings,
		Alerts:          st.Alerts,
	})
	if g.CountsAsOf != nil {
		holdOnStaleCounts(&d, *g.CountsAsOf, st.LastScale)
	}
	res.Decision = &d
	res.Checks = d.Checks
	delta := d.Delta()
	res.Capacity = Capacity{Allocations: delta, CPUMHz: delta * g.CPUMHz, Cores: delta * g.Cores, MemoryMB: delta * g.MemoryMB}
	return res
}

// holdOnStaleCounts keeps the count of a decision made on counts from
// asOf, not current ones: doubt must not become action. A scale-in on a
// count that may be out of date could stop allocations the group needs,
// so it is held. A scale-out is let through: the group needs more, and
// more is the safe side. Either is held when Spillway set the count after
// asOf, since the count it would change is then known to be out of date
// (Nomad's scale endpoint sets a count; it does not add to one).
func holdOnStaleCounts(d *policies.Decision, asOf, lastScale time.Time) {
	stale := fmt.Sprintf("the count %d is from %s, while the cluster model lists nomad again", d.Current, asOf.UTC().Format(time.RFC3339))
	switch {
	case d.Changes() && lastScale.After(asOf):
		d.Reason = fmt.Sprintf("wanted %d → %d (%s), but %s, and spillway changed the count at %s", d.Current, d.Desired, d.Reason, stale, lastScale.UTC().Format(time.RFC3339))
	case d.Direction == policies.Down:
		d.Reason = fmt.Sprintf("wanted %d → %d (%s), but %s: not scaling in on it", d.Current, d.Desired, d.Reason, stale)
	default:
		d.Reason += "; " + stale
		return
	}
	d.Desired, d.Direction = d.Current, policies.Hold
}

// read runs the queries of p's metric checks concurrently. Each reading
// holds one usable sample or the error that explains why there is none.
func (e *Evaluator) read(ctx context.Context, p *policies.Policy, now time.Time) map[string]policies.Reading {
	out := map[string]policies.Reading{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range p.Checks {
		if !c.NeedsMetric() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.query(ctx, c.Query, now, p.StaleAfter)
			if r.Err != nil {
				e.logger().Debug("check has no usable data", "policy", p.Name, "check", c.Name, "err", r.Err)
			}
			mu.Lock()
			out[c.Name] = r
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func (e *Evaluator) query(ctx context.Context, q string, now time.Time, staleAfter time.Duration) policies.Reading {
	samples, err := e.Metrics.Query(ctx, q, now)
	if err != nil {
		return policies.Reading{Err: err}
	}
	s, err := metrics.One(samples, now, staleAfter)
	if err != nil {
		return policies.Reading{Err: err}
	}
	return policies.Reading{Samples: []policies.Sample{s}}
}

// FiringAlerts reads the alerts Prometheus is firing now from its ALERTS
// series, for callers without an Alertmanager webhook (such as plan).
// Alerts whose newest sample is older than maxAge are left out.
func FiringAlerts(ctx context.Context, src metrics.Source, now time.Time, maxAge time.Duration) ([]policies.Alert, error) {
	samples, err := src.Query(ctx, `ALERTS{alertstate="firing"}`, now)
	if err != nil {
		return nil, fmt.Errorf("reading firing alerts: %w", err)
	}
	var out []policies.Alert
	for _, s := range samples {
		if maxAge > 0 && now.Sub(s.Time) > maxAge {
			continue
		}
		ls := make(map[string]string, len(s.Labels))
		for k, v := range s.Labels {
			if k != "__name__" && k != "alertstate" {
				ls[k] = v
			}
		}
		out = append(out, policies.Alert{Name: s.Labels["alertname"], Labels: ls})
	}
	return out, nil
}
