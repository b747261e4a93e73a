package app

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/config"
	"github.com/spillwayhq/spillway/controlplane/controller"
	"github.com/spillwayhq/spillway/controlplane/journal"
)

// unitA is business unit bu-a, whose own host is the fake Nomad's node.
const unitA = `apiVersion: spillway/v1
kind: BusinessUnit
name: bu-a
selector: {node_pool: bu-a, node_class: internal}
lending: {share: 50%}
borrowing: {quota: 2}
`

// withPools gives the daemon a pools directory of one file holding docs
// (YAML documents, joined by ---).
func withPools(t *testing.T, docs ...string) func(*config.Config) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pools.yaml"), []byte(strings.Join(docs, "---\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return func(c *config.Config) { c.Pools.Dir = dir }
}

// withBusinessUnit gives the daemon one business unit, bu-a.
func withBusinessUnit(t *testing.T) func(*config.Config) { return withPools(t, unitA) }

// phaseEvent is an activity.phase event as the controller journals it.
func phaseEvent(at time.Time, activity, service, phase string, extra map[string]any) journal.Event {
	fields := map[string]any{"phase": phase, "pool": "none"}
	for k, v := range extra {
		fields[k] = v
	}
	data, _ := json.Marshal(fields)
	return journal.Event{Time: at, Kind: controller.KindPhase, Subject: service, Activity: activity, Actor: "controller",
		Message: phase, Data: data}
}

func (h *apiHarness) append(evs ...journal.Event) {
	h.t.Helper()
	if _, err := h.a.journal.Events().Append(context.Background(), evs...); err != nil {
		h.t.Fatal(err)
	}
}

func (h *apiHarness) overview() overview {
	h.t.Helper()
	var v overview
	h.ok("GET", "/v1/overview", "view", "", &v)
	return v
}

func findScaleOut(v overview, activity string) (overviewScaleOut, bool) {
	for _, so := range v.ScaleOuts {
		if so.Activity == activity {
			return so, true
		}
	}
	return overviewScaleOut{}, false
}

// TestOverview: GET /v1/overview gives, from the cluster model and the
// journal, bu-a's capacity, the demo's demand, a scale-out that a count
// raised in Nomad started (no decision: the controller's trigger phase
// comes first), with its deadline, phases and critical phase, and one a
// decision started; once the first ended, a restarted serve builds it
// again from the journal alone, done; one that ended 20 minutes ago is
// left out; and the journal's last Seq.
func TestOverview(t *testing.T) {
	h := newAPIHarness(t, withBusinessUnit(t))
	if code, _ := h.do("GET", "/v1/overview", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("without a token: %d, want 401", code)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	trig := now.Add(-90 * time.Second)
	deadline := trig.Add(5 * time.Minute)
	const nomadStarted, byPolicy, old = "act-nomad", "act-policy", "act-old"
	svc := "default/other/app"
	h.append(
		phaseEvent(trig, nomadStarted, svc, controller.PhaseTrigger, map[string]any{
			"business_unit": "bu-a", "triggered": trig, "decided": trig, "deadline": deadline, "target": map[string]string{"Namespace": "default", "Job": "other", "Group": "app"}}),
		phaseEvent(trig, nomadStarted, svc, controller.PhaseDecided, nil),
		phaseEvent(trig.Add(2*time.Second), nomadStarted, svc, controller.PhaseCapacityRequested, nil),
		journal.Event{Time: trig.Add(2 * time.Second), Kind: controller.KindClaimed, Subject: svc, Activity: nomadStarted, Actor: "controller",
			Data: []byte(`{"pool":"shared-lab","hosts":["h1"]}`), Message: "borrowed 1 host from shared-lab"},
		phaseEvent(trig.Add(50*time.Second), nomadStarted, svc, controller.PhaseHostsRunning, map[string]any{"pool": "shared-lab"}),
		phaseEvent(trig.Add(60*time.Second), nomadStarted, svc, controller.PhaseNodesReady, map[string]any{"pool": "aws-lab+shared-lab"}),
		// A scale-out the scaler decided, which Nomad is placing.
		journal.Event{Time: now.Add(-5 * time.Second), Kind: journal.KindDecision, Subject: "default/demo/web", Activity: byPolicy, Actor: "controller",
			Data: []byte(`{"direction":"up","current":2,"desired":3}`), Message: "demo: 2 -> 3 (up)"},
		journal.Event{Time: now.Add(-4 * time.Second), Kind: journal.KindScale, Subject: "default/demo/web", Activity: byPolicy, Actor: "controller", Message: "scaled 2 -> 3"},
		// One that ended long enough ago to be off the overview.
		phaseEvent(now.Add(-30*time.Minute), old, svc, controller.PhaseTrigger, map[string]any{"triggered": now.Add(-30 * time.Minute), "deadline": now.Add(-25 * time.Minute)}),
		journal.Event{Time: now.Add(-20 * time.Minute), Kind: controller.KindActivityEnded, Subject: svc, Activity: old, Actor: "controller",
			Data: []byte(`{"outcome":"done","reason":"every allocation is healthy"}`), Message: "scale-out done"},
	)

	v := h.overview()
	last, _ := h.a.journal.Events().LastSeq(context.Background())
	if v.LastSeq != last || last == 0 {
		t.Errorf("last_seq %d, want the journal's %d", v.LastSeq, last)
	}
	if !v.Cluster.Live || len(v.Problems) != 0 {
		t.Errorf("cluster %+v, problems %v; want live, none", v.Cluster, v.Problems)
	}
	if len(v.Tiers) != 1 || v.Tiers[0].Pool != "bu-a" || v.Tiers[0].Tier != "own" || v.Tiers[0].Hosts.Total != 1 ||
		v.Tiers[0].CPU.Total != 4000 || v.Tiers[0].Limits.Quota != 2 {
		t.Errorf("tiers %+v, want bu-a's one host of 4000 MHz, quota 2", v.Tiers)
	}
	if v.Cost.PerHour != 0 || v.Cost.Burst != nil {
		t.Errorf("cost %+v, want nothing: no host is borrowed or rented", v.Cost)
	}
	if len(v.Demand) != 1 || v.Demand[0].Service != "default/demo/web" || v.Demand[0].Policy != "demo" || v.Demand[0].Wanted != 2 {
		t.Errorf("demand %+v, want the demo's count of 2", v.Demand)
	}
	if _, ok := findScaleOut(v, old); ok {
		t.Errorf("a scale-out that ended 20 minutes ago is listed: %+v", v.ScaleOuts)
	}
	so, ok := findScaleOut(v, nomadStarted)
	if !ok {
		t.Fatalf("the scale-out a count in Nomad started is not listed: %+v", v.ScaleOuts)
	}
	if so.StartedBy != "nomad" || so.Service != svc || so.BusinessUnit != "bu-a" || !so.Triggered.Equal(trig) || !so.Deadline.Equal(deadline) ||
		so.Outcome != "in_progress" || so.Ended != nil || so.MissedDeadline {
		t.Errorf("the Nomad-started scale-out: %+v", so)
	}
	if len(so.Phases) != 5 || so.Phases[3].Phase != controller.PhaseHostsRunning || so.Phases[3].Seconds != 48 {
		t.Errorf("phases %+v, want five, hosts_running 48s after capacity_requested", so.Phases)
	}
	// 48s to run the hosts is the longest; 30s since the nodes were ready
	// (allocations_placed, under way) is not.
	if so.CriticalPhase != controller.PhaseHostsRunning {
		t.Errorf("critical phase %q, want %s", so.CriticalPhase, controller.PhaseHostsRunning)
	}
	if !slices.Equal(so.Pools, []string{"shared-lab", "aws-lab"}) || so.ProjectedFinish == nil {
		t.Errorf("pools %v, projected finish %v; want shared-lab and aws-lab, one", so.Pools, so.ProjectedFinish)
	}
	pol, ok := findScaleOut(v, byPolicy)
	if !ok || pol.StartedBy != "policy" || pol.Outcome != "in_progress" || !pol.Deadline.Equal(pol.Triggered.Add(5*time.Minute)) || len(pol.Phases) != 2 {
		t.Errorf("the decided scale-out: %+v (found %v)", pol, ok)
	}
	if v.ScaleOuts[0].Activity != byPolicy {
		t.Errorf("scale-outs %+v, want the newest first", v.ScaleOuts)
	}

	// GET /v1/activities lists the Nomad-started one too, with its deadline.
	var page activitiesPage
	h.ok("GET", "/v1/activities?service="+svc, "view", "", &page)
	// In journal order: the old one was appended after it.
	if len(page.Activities) != 2 || page.Activities[0].ID != nomadStarted || page.Activities[0].Direction != "up" ||
		page.Activities[0].Deadline == nil || !page.Activities[0].Deadline.Equal(deadline) {
		t.Errorf("activities of %s: %+v", svc, page.Activities)
	}

	// It ends; serve restarts: the overview is built from the journal.
	h.append(
		phaseEvent(trig.Add(70*time.Second), nomadStarted, svc, controller.PhasePlaced, nil),
		phaseEvent(trig.Add(80*time.Second), nomadStarted, svc, controller.PhaseHealthy, nil),
		journal.Event{Time: trig.Add(80 * time.Second), Kind: controller.KindActivityEnded, Subject: svc, Activity: nomadStarted, Actor: "controller",
			Data: []byte(`{"outcome":"done","reason":"every allocation is healthy","hosts_got":1,"queued":0}`), Message: "scale-out done: every allocation is healthy"},
	)
	h.restart()
	v = h.overview()
	so, ok = findScaleOut(v, nomadStarted)
	if !ok || so.Outcome != controller.OutcomeDone || so.Ended == nil || !so.Ended.Equal(trig.Add(80*time.Second)) || len(so.Phases) != 7 ||
		so.ProjectedFinish == nil || !so.ProjectedFinish.Equal(trig.Add(80*time.Second)) || so.CriticalPhase != controller.PhaseHostsRunning {
		t.Errorf("after a restart, the ended scale-out: %+v (found %v)", so, ok)
	}
}
