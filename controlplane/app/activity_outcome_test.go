package app

import (
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/controller"
	"github.com/spillwayhq/spillway/controlplane/journal"
)

// TestActivityOutcome: an activity shows how its scale-out ended, from
// its activity.done event; one in flight shows none.
func TestActivityOutcome(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	evs := []journal.Event{
		{Seq: 1, Time: at, Kind: controller.KindPhase, Subject: "default/big/app", Activity: "act-1", Actor: "controller", Message: "trigger after 0.0s"},
		{Seq: 2, Time: at, Kind: controller.KindUnmet, Subject: "default/big/app", Activity: "act-1", Actor: "controller",
			Data: []byte(`{"queued":1,"hosts":0,"reasons":"task group app asks 4000 MHz"}`), Message: "1 queued allocations of default/big/app have no host"},
	}
	if act := buildActivity("act-1", evs); act.Outcome != "" {
		t.Fatalf("outcome %q of an activity in flight", act.Outcome)
	}
	evs = append(evs, journal.Event{Seq: 3, Time: at, Kind: controller.KindActivityEnded, Subject: "default/big/app", Activity: "act-1", Actor: "controller",
		Data: []byte(`{"outcome":"unmet","reason":"task group app asks 4000 MHz","hosts_got":0,"queued":1}`), Message: "scale-out unmet: task group app asks 4000 MHz"})
	act := buildActivity("act-1", evs)
	if act.Outcome != controller.OutcomeUnmet || act.Status != controller.KindActivityEnded {
		t.Fatalf("outcome %q, status %q; want unmet, %s", act.Outcome, act.Status, controller.KindActivityEnded)
	}
}
