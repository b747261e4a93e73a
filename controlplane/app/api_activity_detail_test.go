package app

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/controller"
	"github.com/spillwayhq/spillway/controlplane/journal"
)

// burstEvents is a scale-out an alert started, as the controller
// journals it: the shared pool skipped (no free host), AWS asked and out
// of capacity, Alibaba asked and giving one host, which registers, is
// ready and serves; done within the deadline.
func burstEvents(t0 time.Time, act, svc string) []journal.Event {
	ev := func(at time.Duration, kind, subject, data, msg string) journal.Event {
		return journal.Event{Time: t0.Add(at), Kind: kind, Subject: subject, Activity: act, Actor: "controller", Data: json.RawMessage(data), Message: msg}
	}
	deadline := t0.Add(30 * time.Second)
	return []journal.Event{
		ev(0, journal.KindDecision, svc, `{"policy":"demo","current":4,"desired":8,"direction":"up","cause":"alert DemoHighLatency fired (fingerprint fp1)","alerts":["fp1"]}`,
			"demo: 4 -> 8 (up): the alert DemoHighLatency asks +50%"),
		ev(0, journal.KindScale, svc, `{}`, "scaled 4 -> 8"),
		phaseEvent(t0, act, svc, controller.PhaseTrigger, map[string]any{"business_unit": "bu-a", "triggered": t0, "decided": t0, "deadline": deadline}),
		phaseEvent(t0, act, svc, controller.PhaseDecided, nil),
		phaseEvent(t0.Add(time.Second), act, svc, controller.PhaseCapacityRequested, map[string]any{
			"steps":   []map[string]any{{"tier": "cold", "pool": "aws-lab", "hosts": 1}},
			"skipped": []map[string]any{{"tier": "shared", "pool": "shared", "reason": "no free host"}}}),
		ev(time.Second, controller.KindIntent, svc, `{"claim":"c-aws","pool":"aws-lab","tier":"cold","hosts":1,"offerings":["m5.large/us-east-1a/on-demand"]}`, "renting 1 host from aws-lab"),
		ev(1500*time.Millisecond, controller.KindClaimFailed, svc,
			`{"claim":"c-aws","pool":"aws-lab","error":"InsufficientInstanceCapacity: none left","reason":"insufficient_capacity"}`, "renting from aws-lab failed: InsufficientInstanceCapacity: none left"),
		ev(2*time.Second, controller.KindIntent, svc, `{"claim":"c-ali","pool":"alicloud-lab","tier":"cold","hosts":1,"offerings":["ecs.g7.large/cn-hangzhou-i/on-demand"]}`, "renting 1 host from alicloud-lab"),
		ev(3*time.Second, controller.KindClaimed, svc, `{"claim":"c-ali","pool":"alicloud-lab","hosts":["i-ali1 (ecs.g7.large/cn-hangzhou-i/on-demand)"]}`, "rented 1 host from alicloud-lab"),
		{Time: t0.Add(10 * time.Second), Kind: controller.KindHostSeen, Subject: "host/i-ali1", Actor: "controller",
			Data: json.RawMessage(`{"host":"i-ali1","node":"n1","pool":"alicloud-lab"}`), Message: "rented host i-ali1 of alicloud-lab registered"},
		phaseEvent(t0.Add(11*time.Second), act, svc, controller.PhaseHostsRunning, nil),
		ev(12*time.Second, controller.KindHostReady, "host/i-ali1", `{"pool":"alicloud-lab","host":"i-ali1","node":"n1","seconds":10,"claim":"c-ali"}`, "rented host i-ali1 is ready"),
		phaseEvent(t0.Add(12*time.Second), act, svc, controller.PhaseNodesReady, nil),
		phaseEvent(t0.Add(14*time.Second), act, svc, controller.PhasePlaced, nil),
		phaseEvent(t0.Add(20*time.Second), act, svc, controller.PhaseHealthy, nil),
		ev(20*time.Second, controller.KindActivityEnded, svc, `{"outcome":"done","reason":"every allocation is healthy"}`, "scale-out done"),
	}
}

// TestActivityDetail: GET /v1/activities/{id} explains a scale-out from
// the journal alone, also after a restart: the alert that started it and
// the decision; the seven phases against the deadline; one timeline per
// host with its tier; and the source waterfall (the shared pool skipped
// by the plan, AWS skipped for insufficient capacity with the provider's
// error and the time it cost, Alibaba used for one host).
func TestActivityDetail(t *testing.T) {
	h := newAPIHarness(t)
	t0 := time.Now().UTC().Add(-5 * time.Minute).Truncate(time.Millisecond)
	const act, svc = "act-burst", "default/demo/web"
	h.append(burstEvents(t0, act, svc)...)
	h.restart() // nothing but the journal knows it now

	var d activityDetail
	h.ok("GET", "/v1/activities/"+act, "view", "", &d)
	if d.ID != act || d.Outcome != controller.OutcomeDone || d.MissedDeadline || d.BusinessUnit != "bu-a" || d.StartedBy != "policy" {
		t.Errorf("activity: %+v", d.Activity)
	}
	if d.Trigger.By != "alert" || !slices.Equal(d.Trigger.Alerts, []string{"fp1"}) || !strings.Contains(d.Trigger.Text, "DemoHighLatency") || d.Trigger.Policy != "demo" {
		t.Errorf("trigger: %+v", d.Trigger)
	}
	if d.Decision == nil || d.Decision.Kind != journal.KindDecision || d.Decision.Seq == 0 {
		t.Errorf("decision: %+v", d.Decision)
	}
	if d.ScaleOut == nil || len(d.ScaleOut.Phases) != 7 || !d.ScaleOut.Deadline.Equal(t0.Add(30*time.Second)) || d.ScaleOut.CriticalPhase != controller.PhaseHostsRunning {
		t.Errorf("scale-out: %+v", d.ScaleOut)
	}
	var got []string
	for _, st := range d.Sources {
		got = append(got, st.String())
	}
	want := []string{"shared shared: skipped (no free host)", "cold aws-lab: skipped (insufficient_capacity)", "cold alicloud-lab: used 1"}
	if !slices.Equal(got, want) {
		t.Fatalf("sources %q, want %q", got, want)
	}
	if aws := d.Sources[1]; aws.Error != "InsufficientInstanceCapacity: none left" || aws.Seconds != 0.5 || aws.Asked != 1 ||
		!slices.Equal(aws.Offerings, []string{"m5.large/us-east-1a/on-demand"}) {
		t.Errorf("the AWS step: %+v", aws)
	}
	if ali := d.Sources[2]; ali.Seconds != 1 {
		t.Errorf("the Alibaba step: %+v", ali)
	}
	if len(d.HostTimelines) != 1 {
		t.Fatalf("host timelines: %+v", d.HostTimelines)
	}
	ht := d.HostTimelines[0]
	at := func(p *time.Time) time.Duration {
		if p == nil {
			return -1
		}
		return p.Sub(t0)
	}
	if ht.Host != "i-ali1" || ht.Pool != "alicloud-lab" || ht.Tier != "cold" || ht.Offering != "ecs.g7.large/cn-hangzhou-i/on-demand" || ht.Node != "n1" ||
		ht.Requested.Sub(t0) != 2*time.Second || at(ht.Running) != 10*time.Second || at(ht.Ready) != 12*time.Second ||
		at(ht.Placed) != 14*time.Second || at(ht.Serving) != 20*time.Second {
		t.Errorf("host timeline: %+v", ht)
	}
	if code, _ := h.do("GET", "/v1/activities/act-none", "view", ""); code != http.StatusNotFound {
		t.Errorf("an unknown activity: %d, want 404", code)
	}
}

// TestActivitiesOrderAndFilters: GET /v1/activities lists newest first
// with order=desc, paging back with its cursor, and filters by direction,
// outcome (missed_deadline included), business unit and time.
func TestActivitiesOrderAndFilters(t *testing.T) {
	h := newAPIHarness(t)
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
	const svc = "default/demo/web"
	h.append(burstEvents(t0, "act-1", svc)...)
	// A scale-in the policy decided and Nomad took.
	h.append(
		journal.Event{Time: t0.Add(10 * time.Minute), Kind: journal.KindDecision, Subject: svc, Activity: "act-2", Actor: "controller",
			Data: json.RawMessage(`{"policy":"demo","current":8,"desired":4,"direction":"down"}`), Message: "demo: 8 -> 4 (down)"},
		journal.Event{Time: t0.Add(10 * time.Minute), Kind: journal.KindScale, Subject: svc, Activity: "act-2", Actor: "controller", Message: "scaled 8 -> 4"},
	)
	// A scale-out Nomad's count started, which missed its deadline, unmet.
	other := "default/other/app"
	t3 := t0.Add(20 * time.Minute)
	h.append(
		phaseEvent(t3, "act-3", other, controller.PhaseTrigger, map[string]any{"business_unit": "bu-b", "triggered": t3, "deadline": t3.Add(time.Minute)}),
		journal.Event{Time: t3.Add(time.Minute), Kind: controller.KindMissed, Subject: other, Activity: "act-3", Actor: "controller", Message: "missed"},
		journal.Event{Time: t3.Add(2 * time.Minute), Kind: controller.KindActivityEnded, Subject: other, Activity: "act-3", Actor: "controller",
			Data: json.RawMessage(`{"outcome":"unmet"}`), Message: "scale-out unmet"},
	)
	ids := func(path string) ([]string, string) {
		t.Helper()
		var page activitiesPage
		h.ok("GET", path, "view", "", &page)
		var out []string
		for _, a := range page.Activities {
			out = append(out, a.ID)
		}
		return out, page.Next
	}
	for _, c := range []struct {
		path string
		want []string
	}{
		{"/v1/activities", []string{"act-1", "act-2", "act-3"}},
		{"/v1/activities?order=desc", []string{"act-3", "act-2", "act-1"}},
		{"/v1/activities?order=desc&direction=down", []string{"act-2"}},
		{"/v1/activities?order=desc&direction=up", []string{"act-3", "act-1"}},
		{"/v1/activities?order=desc&outcome=done", []string{"act-2", "act-1"}},
		{"/v1/activities?outcome=unmet", []string{"act-3"}},
		{"/v1/activities?outcome=missed_deadline", []string{"act-3"}},
		{"/v1/activities?outcome=in_progress", nil},
		{"/v1/activities?business_unit=bu-b", []string{"act-3"}},
		{"/v1/activities?business_unit=bu-a&order=desc", []string{"act-2", "act-1"}},
		{"/v1/activities?order=desc&since=" + t0.Add(5*time.Minute).Format(time.RFC3339) + "&until=" + t0.Add(15*time.Minute).Format(time.RFC3339), []string{"act-2"}},
		{"/v1/activities?service=" + other + "&order=desc", []string{"act-3"}},
	} {
		if got, _ := ids(c.path); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.path, got, c.want)
		}
	}
	// Newest first, a page at a time.
	first, next := ids("/v1/activities?order=desc&limit=2")
	if !slices.Equal(first, []string{"act-3", "act-2"}) || next == "" {
		t.Fatalf("the first page: %v, next %q", first, next)
	}
	if rest, _ := ids("/v1/activities?order=desc&limit=2&cursor=" + next); !slices.Equal(rest, []string{"act-1"}) {
		t.Errorf("the second page: %v, want act-1", rest)
	}
	for _, bad := range []string{"order=up", "direction=sideways", "outcome=great"} {
		if code, _ := h.do("GET", "/v1/activities?"+bad, "view", ""); code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", bad, code)
		}
	}
}

// TestEventsSearch: GET /v1/events searches by text, actor and host, and
// lists newest first with order=desc.
func TestEventsSearch(t *testing.T) {
	h := newAPIHarness(t)
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
	h.append(burstEvents(t0, "act-1", "default/demo/web")...)
	seqs := func(path string) []string {
		t.Helper()
		var page eventsPage
		h.ok("GET", path, "view", "", &page)
		var out []string
		for _, ev := range page.Events {
			out = append(out, ev.Kind)
		}
		return out
	}
	if got := seqs("/v1/events?host=i-ali1"); !slices.Equal(got, []string{controller.KindClaimed, controller.KindHostSeen, controller.KindHostReady}) {
		t.Errorf("host i-ali1: %v", got)
	}
	if got := seqs("/v1/events?text=insufficientinstance"); !slices.Equal(got, []string{controller.KindClaimFailed}) {
		t.Errorf("text: %v", got)
	}
	if got := seqs("/v1/events?actor=nobody"); len(got) != 0 {
		t.Errorf("actor nobody: %v", got)
	}
	if got := seqs("/v1/events?activity=act-1&order=desc&limit=2"); !slices.Equal(got, []string{controller.KindActivityEnded, controller.KindPhase}) {
		t.Errorf("newest first: %v", got)
	}
	if code, _ := h.do("GET", "/v1/events?order=sideways", "view", ""); code != http.StatusBadRequest {
		t.Errorf("a bad order: %d, want 400", code)
	}
}
