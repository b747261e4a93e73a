package app

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/controller"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
)

// GET /v1/activities/{id} explains one activity from its journal events
// alone, so it works as well for one that ended before a restart: what
// started it, the decision, the scale-out's phases against its deadline,
// one timeline per host, and the source waterfall (each tier and pool
// tried, in order, and what came of it).

// activityDetail is the answer of GET /v1/activities/{id}.
type activityDetail struct {
	Activity
	Trigger activityTrigger `json:"trigger"`
	// Decision is the decision's event, when a decision started it.
	Decision *journal.Event `json:"decision,omitempty"`
	// ScaleOut is a scale-out's phases on its deadline's scale, as the
	// overview shows them; absent for a scale-in.
	ScaleOut *overviewScaleOut `json:"scale_out,omitempty"`
	// HostTimelines has one row per host the activity borrowed or rented,
	// in the order they were asked for.
	HostTimelines []hostTimeline `json:"host_timelines"`
	// Sources is the source waterfall, in the order things happened.
	Sources []sourceStep `json:"sources"`
}

// activityTrigger says what started an activity.
type activityTrigger struct {
	// By is "alert" (an alert fired and a policy's rule matched it),
	// "policy_check" (a policy's evaluation), "manual" (POST /v1/scale) or
	// "nomad" (a count changed in Nomad).
	By   string    `json:"by"`
	Time time.Time `json:"time"`
	// Text says it in words: the scaler's cause, or the controller's.
	Text string `json:"text"`
	// Alerts are the fingerprints of the alerts that caused it.
	Alerts []string `json:"alerts,omitempty"`
	Policy string   `json:"policy,omitempty"`
}

// hostTimeline is one host's way from requested to serving. Placed and
// Serving are the activity's phases (Nomad places the work, not the host):
// set for a host that was ready by then.
type hostTimeline struct {
	Host string `json:"host"`
	Pool string `json:"pool"`
	// Tier is shared, warm or cold.
	Tier     string `json:"tier"`
	Claim    string `json:"claim,omitempty"`
	Offering string `json:"offering,omitempty"`
	// Node is the Nomad node's ID once it was ready.
	Node      string     `json:"node,omitempty"`
	Requested time.Time  `json:"requested"`
	Running   *time.Time `json:"running,omitempty"`
	Ready     *time.Time `json:"ready,omitempty"`
	Placed    *time.Time `json:"placed,omitempty"`
	Serving   *time.Time `json:"serving,omitempty"`
	// Ended says what became of a host that left early (stuck and
	// terminated, replaced), in words.
	Ended string `json:"ended,omitempty"`
}

// sourceStep is one line of the source waterfall.
type sourceStep struct {
	Seq  int64     `json:"seq"`
	Time time.Time `json:"time"`
	Tier string    `json:"tier,omitempty"`
	Pool string    `json:"pool"`
	// Offerings are the offerings asked, in order of preference.
	Offerings []string `json:"offerings,omitempty"`
	// Result is used (hosts came), skipped (none did, or the plan or the
	// match left the pool out), hedged (asked in parallel as the deadline
	// was at risk) or unmet (what no pool could give).
	Result string `json:"result"`
	// Asked and Hosts are how many hosts were asked for and came.
	Asked int `json:"asked,omitempty"`
	Hosts int `json:"hosts"`
	// Reason is why a pool was skipped: the provider's error kind
	// (insufficient_capacity, quota, throttled, unavailable, …), or the
	// plan's or the match's words.
	Reason string `json:"reason,omitempty"`
	// Error is the provider's error, when there was one.
	Error string `json:"error,omitempty"`
	// Seconds is the time the try cost: from the intent to the answer.
	Seconds float64 `json:"seconds,omitempty"`
}

// Results of a source step.
const (
	sourceUsed    = "used"
	sourceSkipped = "skipped"
	sourceHedged  = "hedged"
	sourceUnmet   = "unmet"
)

// explain builds an activity's detail from its events (oldest first),
// with its scale-out as complete judged it (so; nil for none).
func (s *api) explain(ctx context.Context, act Activity, so *overviewScaleOut, evs []journal.Event, now time.Time, snap *cluster.Snapshot) (activityDetail, error) {
	d := activityDetail{Activity: act, HostTimelines: []hostTimeline{}, Sources: []sourceStep{}, ScaleOut: so}
	d.Trigger = triggerOf(act, evs)
	for i, ev := range evs {
		if ev.Kind == journal.KindDecision {
			d.Decision = &evs[i]
			break
		}
	}
	d.Sources = sourcesOf(evs, s.tierOf)
	hosts, err := s.hostTimelines(ctx, evs)
	if err != nil {
		return d, err
	}
	d.HostTimelines = hosts
	return d, nil
}

// tierOf is a pool's tier in the configuration, or "".
func (s *api) tierOf(pool string) string {
	cfg := s.Pools()
	if cfg == nil {
		return ""
	}
	if cfg.Shared != nil && cfg.Shared.Name == pool {
		return string(pools.TierShared)
	}
	if _, ok := cfg.CloudPool(pool); ok {
		return string(pools.TierCold) // a claim's intent says warm
	}
	return ""
}

// triggerOf says what started an activity: the decision's cause, or the
// controller's trigger phase for a count changed in Nomad.
func triggerOf(act Activity, evs []journal.Event) activityTrigger {
	t := activityTrigger{By: act.StartedBy, Time: act.Started, Policy: act.Policy}
	if act.Triggered != nil {
		t.Time = *act.Triggered
	}
	for _, ev := range evs {
		switch ev.Kind {
		case journal.KindDecision:
			var d struct {
				Cause  string   `json:"cause"`
				Alerts []string `json:"alerts"`
				Reason string   `json:"reason"`
			}
			_ = json.Unmarshal(ev.Data, &d)
			t.Text, t.Alerts = d.Cause, d.Alerts
			switch {
			case act.StartedBy == "manual":
				t.Text = ev.Message
			case len(d.Alerts) > 0:
				t.By = "alert"
			default:
				t.By = "policy_check"
			}
			if t.Text == "" {
				t.Text = ev.Message
			}
			return t
		case controller.KindPhase:
			if t.Text == "" {
				// "trigger after 0.0s: <the controller's cause>"
				_, text, _ := strings.Cut(ev.Message, ": ")
				t.Text = text
			}
		}
	}
	return t
}

// sourcesOf is the source waterfall of an activity's events: the pools
// the match ruled out, the plan's skips, each claim's intent and answer
// (used, or skipped with the provider's error kind and the time it
// cost), the hedges, and what stayed unmet.
func sourcesOf(evs []journal.Event, tierOf func(string) string) []sourceStep {
	out := []sourceStep{}
	type intent struct {
		at        time.Time
		tier      string
		hosts     int
		offerings []string
	}
	intents := map[string]intent{} // by claim
	tier := func(pool, fallback string) string {
		if fallback != "" {
			return fallback
		}
		return tierOf(pool)
	}
	for _, ev := range evs {
		var d struct {
			Phase     string            `json:"phase"`
			Claim     string            `json:"claim"`
			Pool      string            `json:"pool"`
			Tier      string            `json:"tier"`
			Hosts     json.RawMessage   `json:"hosts"`
			Offerings []string          `json:"offerings"`
			Error     string            `json:"error"`
			Reason    string            `json:"reason"`
			Reasons   string            `json:"reasons"`
			RuledOut  map[string]string `json:"ruled_out"`
			Skipped   []struct {
				Tier, Pool, Reason string
			} `json:"skipped"`
		}
		_ = json.Unmarshal(ev.Data, &d)
		var hostList []string
		var hostCount int
		if json.Unmarshal(d.Hosts, &hostList) != nil {
			_ = json.Unmarshal(d.Hosts, &hostCount)
		}
		switch ev.Kind {
		case controller.KindMatched:
			for _, pool := range sortedKeys(d.RuledOut) {
				out = append(out, sourceStep{Seq: ev.Seq, Time: ev.Time, Tier: tierOf(pool), Pool: pool, Result: sourceSkipped,
					Reason: "ruled out: " + d.RuledOut[pool]})
			}
		case controller.KindPhase:
			if d.Phase == controller.PhaseCapacityRequested {
				for _, sk := range d.Skipped {
					out = append(out, sourceStep{Seq: ev.Seq, Time: ev.Time, Tier: tier(sk.Pool, sk.Tier), Pool: sk.Pool, Result: sourceSkipped, Reason: sk.Reason})
				}
			}
		case controller.KindIntent:
			intents[d.Claim] = intent{at: ev.Time, tier: d.Tier, hosts: hostCount, offerings: d.Offerings}
		case controller.KindClaimed, controller.KindClaimFailed:
			in, ok := intents[d.Claim]
			st := sourceStep{Seq: ev.Seq, Time: ev.Time, Tier: tier(d.Pool, in.tier), Pool: d.Pool, Offerings: in.offerings,
				Asked: in.hosts, Hosts: len(hostList), Error: d.Error, Reason: d.Reason}
			if ok {
				st.Seconds = max(ev.Time.Sub(in.at).Seconds(), 0)
			}
			if st.Hosts > 0 {
				st.Result = sourceUsed
			} else {
				st.Result = sourceSkipped
				if st.Error == "" && ev.Kind == controller.KindClaimFailed {
					_, st.Error, _ = strings.Cut(ev.Message, "failed: ")
				}
				if st.Reason == "" {
					st.Reason = providers.ErrorKindOther
				}
			}
			out = append(out, st)
		case controller.KindHedge:
			out = append(out, sourceStep{Seq: ev.Seq, Time: ev.Time, Tier: tier(d.Pool, d.Tier), Pool: d.Pool, Result: sourceHedged, Asked: hostCount, Reason: ev.Message})
		case controller.KindUnmet:
			out = append(out, sourceStep{Seq: ev.Seq, Time: ev.Time, Pool: "", Result: sourceUnmet, Asked: hostCount, Reason: d.Reasons})
		}
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// hostID is the host's ID in a claim's host list: a cloud claim names
// "i-0abc (m5.large/us-east-1a/on-demand)", the shared pool the node.
func hostID(s string) (id, offering string) {
	id, rest, ok := strings.Cut(s, " (")
	if ok {
		offering = strings.TrimSuffix(rest, ")")
	}
	return id, offering
}

// hostTimelines builds one row per host the activity borrowed or rented:
// requested at its claim's intent, running when its Nomad node registered
// (host.registered) or by the activity's hosts_running phase, ready at
// host.ready (a borrowed host is a ready node at once), then the
// activity's placed and healthy phases.
func (s *api) hostTimelines(ctx context.Context, evs []journal.Event) ([]hostTimeline, error) {
	out := []hostTimeline{}
	index := map[string]int{}
	intents := map[string]time.Time{}
	intentTier := map[string]string{}
	var running, placed, healthy time.Time
	for _, ev := range evs {
		var d struct {
			Phase string          `json:"phase"`
			Claim string          `json:"claim"`
			Pool  string          `json:"pool"`
			Tier  string          `json:"tier"`
			Host  string          `json:"host"`
			Node  string          `json:"node"`
			Hosts json.RawMessage `json:"hosts"`
		}
		_ = json.Unmarshal(ev.Data, &d)
		switch ev.Kind {
		case controller.KindIntent:
			intents[d.Claim], intentTier[d.Claim] = ev.Time, d.Tier
		case controller.KindClaimed:
			var list []string
			_ = json.Unmarshal(d.Hosts, &list)
			for _, h := range list {
				id, offering := hostID(h)
				if _, dup := index[id]; dup || id == "" {
					continue
				}
				tier := intentTier[d.Claim]
				if tier == "" {
					tier = s.tierOf(d.Pool)
				}
				req, ok := intents[d.Claim]
				if !ok {
					req = ev.Time
				}
				row := hostTimeline{Host: id, Pool: d.Pool, Tier: tier, Claim: d.Claim, Offering: offering, Requested: req.UTC()}
				if tier == string(pools.TierShared) {
					t := ev.Time.UTC() // a borrowed host is a ready node at once
					row.Running, row.Ready = &t, &t
				}
				index[id] = len(out)
				out = append(out, row)
			}
		case controller.KindHostReady:
			if i, ok := index[d.Host]; ok {
				t := ev.Time.UTC()
				out[i].Ready, out[i].Node = &t, d.Node
			}
		case controller.KindHostStuck, controller.KindTerminated:
			if i, ok := index[d.Host]; ok && out[i].Ready == nil {
				out[i].Ended = ev.Message
			}
		case controller.KindPhase:
			switch d.Phase {
			case controller.PhaseHostsRunning:
				running = ev.Time
			case controller.PhasePlaced:
				placed = ev.Time
			case controller.PhaseHealthy:
				healthy = ev.Time
			}
		}
	}
	for i := range out {
		h := &out[i]
		if h.Tier != string(pools.TierShared) {
			// The node registered: the host ran by then (a rented host's
			// registration has no activity: it is found by its subject).
			var seen time.Time
			if err := journal.Each(ctx, s.journal.Events(), journal.Filter{Kind: controller.KindHostSeen, Subject: "host/" + h.Host, Limit: 10}, func(ev journal.Event) error {
				if seen.IsZero() {
					seen = ev.Time
				}
				return nil
			}); err != nil {
				return nil, err
			}
			at := seen
			if !running.IsZero() && running.After(h.Requested) && (at.IsZero() || running.Before(at)) {
				at = running
			}
			if h.Ready != nil && (at.IsZero() || h.Ready.Before(at)) {
				at = *h.Ready
			}
			if !at.IsZero() {
				t := at.UTC()
				h.Running = &t
			}
		}
		if h.Ready == nil {
			continue
		}
		if !placed.IsZero() && !placed.Before(*h.Ready) {
			t := placed.UTC()
			h.Placed = &t
		}
		if !healthy.IsZero() && !healthy.Before(*h.Ready) {
			t := healthy.UTC()
			h.Serving = &t
		}
	}
	return out, nil
}

// String says a source step in words (for logs and tests).
func (st sourceStep) String() string {
	if st.Result == sourceUsed {
		return fmt.Sprintf("%s %s: used %d", st.Tier, st.Pool, st.Hosts)
	}
	return fmt.Sprintf("%s %s: %s (%s)", st.Tier, st.Pool, st.Result, st.Reason)
}
