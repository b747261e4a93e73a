package app

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/controller"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/policies"
	"github.com/spillwayhq/spillway/pools"
)

// GET /v1/overview: what an on-call engineer looks at during a spike, in
// one answer read from the cluster model, the lending ledger and the
// journal (never from Nomad): capacity and cost per tier, demand per
// scaled service, every scale-out in flight or ended lately with its
// deadline, phases and projected finish, and the journal's last Seq.

// Bounds of the overview's scale-outs.
const (
	// overviewEnded is how long an ended scale-out stays on the overview.
	overviewEnded = 15 * time.Minute
	// overviewLookback is how far back the journal is read for scale-outs:
	// the controller resumes none older (Resume reads the last hour).
	overviewLookback = time.Hour
	// overviewMaxScaleOuts bounds the list, newest first.
	overviewMaxScaleOuts = 50
	// readyLookback is how far back host.ready events teach the
	// time-to-ready, as the controller learns it (RestoreTimeToReady).
	readyLookback = 7 * 24 * time.Hour
	// placedAlone is how long after its change of count a scale-out the
	// controller never took up (Nomad placed the work on hosts it had)
	// waits, with nothing of its group queued, before it counts as done.
	placedAlone = 30 * time.Second
)

// overview is the answer of GET /v1/overview.
type overview struct {
	At time.Time `json:"at"`
	// LastSeq is the journal's newest event when this was read: every
	// event up to it is reflected here, so a client follows
	// GET /v1/events/stream after it (Last-Event-ID: last_seq).
	LastSeq int64 `json:"last_seq"`
	// Cluster says how current the cluster model is; while it is not
	// live, capacity and demand are as of its last live moment.
	Cluster overviewCluster `json:"cluster"`
	// Problems says in words what makes this overview less than current.
	Problems  []string           `json:"problems"`
	Tiers     []overviewTier     `json:"tiers"`
	Cost      overviewCost       `json:"cost"`
	Demand    []overviewDemand   `json:"demand"`
	ScaleOuts []overviewScaleOut `json:"scale_outs"`
}

type overviewCluster struct {
	Live bool `json:"live"`
	// Since is when it last became live, or stopped being live.
	Since *time.Time `json:"since,omitempty"`
	// AsOf is, while it is not live, when it last was.
	AsOf  *time.Time `json:"as_of,omitempty"`
	Error string     `json:"error,omitempty"`
}

// overviewTier is one pool's capacity (pools.PoolCapacity) with its limits.
type overviewTier struct {
	pools.PoolCapacity
	Limits overviewLimits `json:"limits"`
	// TimeToReady is the learnt time a host of the pool takes to be
	// ready (shared and cloud pools), in seconds.
	TimeToReady float64 `json:"time_to_ready_seconds,omitempty"`
	// Paused is set while the controller takes no hosts from the pool.
	Paused *controller.PoolPause `json:"paused,omitempty"`
}

// overviewLimits are what a pool may grow to; zero is no limit.
type overviewLimits struct {
	// MaxHosts caps a cloud pool's hosts.
	MaxHosts int `json:"max_hosts,omitempty"`
	// BudgetPerHour caps what a cloud pool's hosts cost per hour.
	BudgetPerHour float64 `json:"budget_per_hour,omitempty"`
	// Quota is the most shared hosts a business unit holds at once.
	Quota int `json:"quota,omitempty"`
}

type overviewCost struct {
	// PerHour is what the hosts in use cost per hour now, by tier and in
	// all (own hosts cost nothing extra).
	PerHour     float64            `json:"per_hour"`
	PerHourTier map[string]float64 `json:"per_hour_by_tier"`
	Currency    string             `json:"currency,omitempty"`
	// Burst is the current burst: the hosts borrowed and rented now, since
	// the first of them; absent when none is.
	Burst *overviewBurst `json:"burst,omitempty"`
}

type overviewBurst struct {
	Since time.Time `json:"since"`
	Hosts int       `json:"hosts"`
	// CostSoFar is what the burst's hosts (those still held and those
	// given back since it began) have cost until now.
	CostSoFar float64 `json:"cost_so_far"`
}

type overviewDemand struct {
	Service      string `json:"service"`
	Policy       string `json:"policy,omitempty"`
	BusinessUnit string `json:"business_unit,omitempty"`
	Wanted       int    `json:"wanted"`
	Running      int    `json:"running"`
	Starting     int    `json:"starting"`
	Queued       int    `json:"queued"`
}

// overviewScaleOut is one scale-out on its deadline's scale.
type overviewScaleOut struct {
	Activity string `json:"activity"`
	Service  string `json:"service"`
	// StartedBy is "policy" (a decision of Spillway's, or a request to
	// POST /v1/scale) or "nomad" (a count Nomad changed: an operator's
	// `nomad job scale`, a deploy).
	StartedBy    string    `json:"started_by"`
	BusinessUnit string    `json:"business_unit,omitempty"`
	Triggered    time.Time `json:"triggered"`
	Deadline     time.Time `json:"deadline"`
	// Phases are the phases recorded, oldest first.
	Phases []overviewPhase `json:"phases"`
	// Pools are the pools it took hosts from.
	Pools []string `json:"pools"`
	// ProjectedFinish is when it should be healthy: once ended, when it
	// ended; in flight, from the learnt time-to-ready of the pools in use.
	ProjectedFinish *time.Time `json:"projected_finish,omitempty"`
	// CriticalPhase is the phase that took (or, in flight, is taking)
	// longest: the time from the phase before it to it.
	CriticalPhase string `json:"critical_phase,omitempty"`
	// Outcome is in_progress, or how it ended: done, partial, unmet or
	// failed.
	Outcome       string     `json:"outcome"`
	OutcomeReason string     `json:"outcome_reason,omitempty"`
	Ended         *time.Time `json:"ended,omitempty"`
	// MissedDeadline is set once its allocations were not healthy by the
	// deadline.
	MissedDeadline bool `json:"missed_deadline"`
}

// overviewPhase is one phase of a scale-out, and how long it took from
// the phase before it.
type overviewPhase struct {
	Phase   string    `json:"phase"`
	Time    time.Time `json:"time"`
	Seconds float64   `json:"seconds"`
}

// scaleOutPhases are the phases of a scale-out, in order.
var scaleOutPhases = []string{controller.PhaseTrigger, controller.PhaseDecided, controller.PhaseCapacityRequested,
	controller.PhaseHostsRunning, controller.PhaseNodesReady, controller.PhasePlaced, controller.PhaseHealthy}

// Outcomes beside the controller's.
const (
	outcomeInProgress = "in_progress"
	outcomeFailed     = "failed"
)

// handleOverview serves GET /v1/overview.
func (s *api) handleOverview(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	now := s.clock.Now().UTC()
	// The Seq first: whatever is read below is at least as new.
	last, err := s.journal.Events().LastSeq(ctx)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "journal_unavailable", err.Error())
		return
	}
	v := overview{At: now, LastSeq: last, Problems: []string{}, Tiers: []overviewTier{}, Demand: []overviewDemand{},
		ScaleOuts: []overviewScaleOut{}, Cost: overviewCost{PerHourTier: map[string]float64{}}}
	snap := s.model.Snapshot()
	sync := snap.Sync()
	v.Cluster = overviewCluster{Live: sync.Live, Error: sync.Err}
	if !sync.Since.IsZero() {
		t := sync.Since.UTC()
		v.Cluster.Since = &t
	}
	if !sync.Live {
		switch {
		case sync.LastLive.IsZero():
			v.Problems = append(v.Problems, "Nomad's cluster has not been listed yet: capacity and demand are unknown")
		default:
			t := sync.LastLive.UTC()
			v.Cluster.AsOf = &t
			v.Problems = append(v.Problems, fmt.Sprintf("Nomad's event stream is reconnecting since %s: capacity and demand are as of then", sync.Since.UTC().Format(time.RFC3339)))
		}
	}
	ttr, err := s.timesToReady(ctx, now)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "journal_unavailable", err.Error())
		return
	}
	if err := s.overviewCapacity(r, &v, snap, ttr); err != nil {
		writeError(w, http.StatusServiceUnavailable, "journal_unavailable", err.Error())
		return
	}
	v.Demand = s.overviewDemand(snap)
	if v.ScaleOuts, err = s.overviewScaleOuts(ctx, now, snap, ttr); err != nil {
		writeError(w, http.StatusServiceUnavailable, "journal_unavailable", err.Error())
		return
	}
	// A scaled service shows its demand even without a policy.
	for _, so := range v.ScaleOuts {
		if slices.ContainsFunc(v.Demand, func(d overviewDemand) bool { return d.Service == so.Service }) {
			continue
		}
		if t, err := ParseService(so.Service); err == nil && (sync.Live || !sync.LastLive.IsZero()) {
			if d, found := snap.Demand(t); found {
				v.Demand = append(v.Demand, overviewDemand{Service: so.Service, BusinessUnit: so.BusinessUnit, Wanted: d.Count,
					Running: d.Running, Starting: d.Starting, Queued: d.Queued})
			}
		}
	}
	slices.SortFunc(v.Demand, func(a, b overviewDemand) int { return cmp.Compare(a.Service, b.Service) })
	writeJSON(w, http.StatusOK, v)
}

// timesToReady is each shared and cloud pool's expected time-to-ready:
// the shared pool's configured one, and each cloud pool's learnt from the
// journal's host.ready events as the controller learns it.
func (s *api) timesToReady(ctx context.Context, now time.Time) (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	cfg := s.Pools()
	if cfg == nil {
		return out, nil
	}
	if cfg.Shared != nil {
		out[cfg.Shared.Name] = cfg.Shared.TimeToReady
	}
	if len(cfg.CloudPools) == 0 {
		return out, nil
	}
	samples := map[string][]time.Duration{}
	err := journal.Each(ctx, s.journal.Events(), journal.Filter{Kind: controller.KindHostReady, Since: now.Add(-readyLookback)}, func(ev journal.Event) error {
		var d struct {
			Pool    string  `json:"pool"`
			Seconds float64 `json:"seconds"`
		}
		if json.Unmarshal(ev.Data, &d) == nil && d.Pool != "" && d.Seconds > 0 {
			samples[d.Pool] = append(samples[d.Pool], time.Duration(d.Seconds*float64(time.Second)))
		}
		return nil
	})
	for _, cp := range cfg.CloudPools {
		out[cp.Name] = pools.EstimateTimeToReady(cp.TimeToReady, samples[cp.Name])
	}
	return out, err
}

// overviewCapacity fills the tiers and their cost from the cluster model,
// and the current burst from the lending ledger.
func (s *api) overviewCapacity(r *http.Request, v *overview, snap *cluster.Snapshot, ttr map[string]time.Duration) error {
	if !s.poolsConfigured() {
		return nil
	}
	cfg := s.Pools()
	report := pools.Account(cfg, snap.NodeUsage(), nil, v.At)
	var paused map[string]controller.PoolPause
	if s.controller != nil {
		paused = s.controller.PausedPools()
	}
	rate := map[string]float64{} // per host and hour, by pool
	for _, p := range report.Pools {
		t := overviewTier{PoolCapacity: p, TimeToReady: ttr[p.Pool].Seconds()}
		switch p.Tier {
		case pools.TierOwn:
			if bu, ok := cfg.BusinessUnit(p.Pool); ok {
				t.Limits.Quota = bu.Borrowing.Quota
			}
		case pools.TierShared:
			rate[p.Pool] = cfg.Shared.CostPerHostHour
		default:
			if cp, ok := cfg.CloudPool(p.Pool); ok {
				t.Limits.MaxHosts, t.Limits.BudgetPerHour = cp.MaxHosts, cp.BudgetPerHour
				if p.Hosts.Total > 0 {
					rate[p.Pool] = p.CostPerHour / float64(p.Hosts.Total)
				} else {
					rate[p.Pool] = pools.CheapestOnDemand(cp)
				}
			}
		}
		if pp, ok := paused[p.Pool]; ok {
			pp.Since = pp.Since.UTC()
			t.Paused = &pp
		}
		v.Cost.PerHourTier[string(p.Tier)] += p.CostPerHour
		v.Cost.PerHour += p.CostPerHour
		if v.Cost.Currency == "" {
			v.Cost.Currency = p.Currency
		}
		v.Tiers = append(v.Tiers, t)
	}
	l, err := s.ledger(r)
	if err != nil {
		return err
	}
	var since time.Time
	hosts := 0
	for _, loan := range l.Loans() {
		hosts++
		if since.IsZero() || loan.Since.Before(since) {
			since = loan.Since
		}
	}
	if hosts == 0 {
		return nil
	}
	b := &overviewBurst{Since: since.UTC(), Hosts: hosts}
	for _, u := range l.Usage(since, v.At) {
		start, end := u.Start, u.End
		if start.Before(since) {
			start = since
		}
		if end.IsZero() || end.After(v.At) {
			end = v.At
		}
		if end.After(start) {
			b.CostSoFar += end.Sub(start).Hours() * rate[u.Pool]
		}
	}
	v.Cost.Burst = b
	return nil
}

// overviewDemand is what each policy's task group wants and has, from the
// cluster model (as of its last live moment, when it is not live).
func (s *api) overviewDemand(snap *cluster.Snapshot) []overviewDemand {
	out := []overviewDemand{}
	if snap.Sync().LastLive.IsZero() && !snap.Live() {
		return out
	}
	seen := map[string]bool{}
	for _, p := range s.Policies().Policies() {
		svc := p.Target.String()
		if seen[svc] {
			continue
		}
		d, ok := snap.Demand(p.Target)
		if !ok {
			continue
		}
		seen[svc] = true
		out = append(out, overviewDemand{Service: svc, Policy: p.Name, BusinessUnit: p.BusinessUnit, Wanted: d.Count,
			Running: d.Running, Starting: d.Starting, Queued: d.Queued})
	}
	return out
}

// overviewScaleOuts reads the scale-outs of the last hour from the
// journal: those the controller followed (an activity.phase trigger, also
// for a count Nomad changed) and those a decision started that the
// controller never needed to take up. It keeps those in flight and those
// that ended in the last 15 minutes, newest first.
func (s *api) overviewScaleOuts(ctx context.Context, now time.Time, snap *cluster.Snapshot, ttr map[string]time.Duration) ([]overviewScaleOut, error) {
	since := now.Add(-overviewLookback)
	type start struct {
		seq int64
		id  string
	}
	var starts []start
	seen := map[string]bool{}
	add := func(ev journal.Event) {
		if ev.Activity != "" && !seen[ev.Activity] {
			seen[ev.Activity] = true
			starts = append(starts, start{ev.Seq, ev.Activity})
		}
	}
	if err := journal.Each(ctx, s.journal.Events(), journal.Filter{Kind: controller.KindPhase, Since: since}, func(ev journal.Event) error {
		if ev.Kind == controller.KindPhase {
			add(ev)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := journal.Each(ctx, s.journal.Events(), journal.Filter{Kind: journal.KindDecision, Since: since}, func(ev journal.Event) error {
		var d struct {
			Direction string `json:"direction"`
		}
		if ev.Activity != "" && json.Unmarshal(ev.Data, &d) == nil && d.Direction == "up" {
			add(ev)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	slices.SortFunc(starts, func(a, b start) int { return cmp.Compare(b.seq, a.seq) })
	out := []overviewScaleOut{}
	for _, st := range starts {
		if len(out) == overviewMaxScaleOuts {
			break
		}
		evs, err := s.activityEvents(ctx, st.id)
		if err != nil {
			return nil, err
		}
		so, ok := s.scaleOut(st.id, evs, now, snap, ttr)
		if !ok || (so.Ended != nil && now.Sub(*so.Ended) > overviewEnded) {
			continue
		}
		out = append(out, so)
	}
	return out, nil
}

// scaleOut builds one scale-out from its events (oldest first); ok is
// false for what is not one (a scale-in).
func (s *api) scaleOut(id string, evs []journal.Event, now time.Time, snap *cluster.Snapshot, ttr map[string]time.Duration) (overviewScaleOut, bool) {
	so := overviewScaleOut{Activity: id, Phases: []overviewPhase{}, Pools: []string{}, Outcome: outcomeInProgress, StartedBy: "policy"}
	if len(evs) == 0 {
		return so, false
	}
	so.Service = evs[0].Subject
	at := map[string]time.Time{}
	var decided, scaled time.Time
	controlled, failed := false, ""
	// A phase names the pools it took hosts from joined with "+".
	addPool := func(names string) {
		for _, p := range strings.Split(names, "+") {
			if p != "" && p != "none" && !slices.Contains(so.Pools, p) {
				so.Pools = append(so.Pools, p)
			}
		}
	}
	for i, ev := range evs {
		var d struct {
			Phase        string    `json:"phase"`
			Pool         string    `json:"pool"`
			BusinessUnit string    `json:"business_unit"`
			Triggered    time.Time `json:"triggered"`
			Deadline     time.Time `json:"deadline"`
			Direction    string    `json:"direction"`
			Outcome      string    `json:"outcome"`
			Reason       string    `json:"reason"`
			Hosts        []string  `json:"hosts"`
		}
		_ = json.Unmarshal(ev.Data, &d)
		switch ev.Kind {
		case journal.KindDecision:
			if d.Direction != "up" {
				return so, false
			}
			if decided.IsZero() {
				decided = ev.Time
			}
		case journal.KindScale:
			scaled = ev.Time
		case journal.KindScaleFailed:
			failed = ev.Message
		case controller.KindPhase:
			controlled = true
			if i == 0 {
				so.StartedBy = "nomad"
			}
			if d.Phase == controller.PhaseTrigger {
				so.BusinessUnit = d.BusinessUnit
				if !d.Triggered.IsZero() {
					so.Triggered = d.Triggered
				}
				if !d.Deadline.IsZero() {
					so.Deadline = d.Deadline
				}
			}
			if d.Phase != "" {
				if _, dup := at[d.Phase]; !dup {
					at[d.Phase] = ev.Time
				}
			}
			addPool(d.Pool)
		case controller.KindClaimed:
			if len(d.Hosts) > 0 || !strings.Contains(ev.Message, "rented 0") {
				addPool(d.Pool)
			}
		case controller.KindMissed:
			so.MissedDeadline = true
		case controller.KindActivityEnded:
			t := ev.Time.UTC()
			so.Ended, so.Outcome, so.OutcomeReason = &t, d.Outcome, d.Reason
		}
	}
	if !controlled {
		// A decision the controller never took up: Nomad placed the new
		// allocations on the hosts it had, or is about to.
		if decided.IsZero() {
			return so, false
		}
		so.Triggered = decided
		at[controller.PhaseTrigger] = decided
		if !scaled.IsZero() {
			at[controller.PhaseDecided] = scaled
		}
		so.Deadline = decided.Add(s.deadlineOf(so.Service))
		t, err := ParseService(so.Service)
		ok := err == nil
		switch {
		case failed != "":
			so.Outcome, so.OutcomeReason, so.Ended = outcomeFailed, failed, &scaled
			if scaled.IsZero() {
				e := evs[len(evs)-1].Time
				so.Ended = &e
			}
		case !scaled.IsZero() && ok && snap.Live() && now.Sub(scaled) >= placedAlone:
			if d, found := snap.Demand(t); !found || d.Queued == 0 {
				e := scaled.UTC()
				so.Outcome, so.OutcomeReason, so.Ended = controller.OutcomeDone, "Nomad placed the new allocations on hosts it had", &e
			}
		}
	}
	if so.Triggered.IsZero() {
		so.Triggered = evs[0].Time
	}
	if so.Deadline.IsZero() {
		so.Deadline = so.Triggered.Add(s.deadlineOf(so.Service))
	}
	so.Triggered, so.Deadline = so.Triggered.UTC(), so.Deadline.UTC()
	if !so.MissedDeadline && so.Ended == nil && now.After(so.Deadline) {
		so.MissedDeadline = true
	}
	// The phases in their order, each timed from the one before.
	prev := so.Triggered
	longest := -1.0
	for _, p := range scaleOutPhases {
		t, ok := at[p]
		if !ok {
			continue
		}
		secs := max(t.Sub(prev).Seconds(), 0)
		so.Phases = append(so.Phases, overviewPhase{Phase: p, Time: t.UTC(), Seconds: secs})
		if p != controller.PhaseTrigger && secs > longest {
			longest, so.CriticalPhase = secs, p
		}
		prev = t
	}
	if so.Ended == nil {
		// The phase under way, so far.
		if next := nextPhase(at); next != "" && now.Sub(prev).Seconds() > longest {
			so.CriticalPhase = next
		}
	}
	so.ProjectedFinish = projectFinish(so, at, now, ttr)
	return so, true
}

// nextPhase is the first phase after the last one recorded, or "".
func nextPhase(at map[string]time.Time) string {
	last := -1
	for i, p := range scaleOutPhases {
		if _, ok := at[p]; ok {
			last = i
		}
	}
	if last+1 < len(scaleOutPhases) {
		return scaleOutPhases[last+1]
	}
	return ""
}

// projectFinish is when a scale-out should be healthy: when it ended, once
// it has; in flight, the time its capacity was asked for plus the longest
// learnt time-to-ready of the pools it takes hosts from (never before
// now); nil while that is unknown.
func projectFinish(so overviewScaleOut, at map[string]time.Time, now time.Time, ttr map[string]time.Duration) *time.Time {
	var t time.Time
	switch {
	case so.Ended != nil:
		t = *so.Ended
		if h, ok := at[controller.PhaseHealthy]; ok {
			t = h
		}
	case !at[controller.PhaseHealthy].IsZero():
		t = at[controller.PhaseHealthy]
	case !at[controller.PhaseNodesReady].IsZero() || !at[controller.PhasePlaced].IsZero():
		t = now // the hosts are there: the allocations are starting
	case !at[controller.PhaseCapacityRequested].IsZero():
		var longest time.Duration
		for _, p := range so.Pools {
			longest = max(longest, ttr[p])
		}
		if t = at[controller.PhaseCapacityRequested].Add(longest); t.Before(now) {
			t = now
		}
	default:
		return nil // capacity not asked for yet: where it comes from is not known
	}
	t = t.UTC()
	return &t
}

// deadlineOf is how soon a scale-out of service must be healthy: its
// policy's deadline, else its business unit's default.
func (s *api) deadlineOf(service string) time.Duration {
	if t, err := ParseService(service); err == nil {
		for _, p := range s.Policies().ForTarget(t) {
			if p.Deadline > 0 {
				return p.Deadline
			}
		}
	}
	return policies.DefaultDeadline
}
