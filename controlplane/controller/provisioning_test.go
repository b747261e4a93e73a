package controller

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
)

func phasesOf(evs []journal.Event) []string {
	var out []string
	for _, ev := range evs {
		if ev.Kind == KindPhase {
			var p struct{ Phase string }
			_ = json.Unmarshal(ev.Data, &p)
			out = append(out, p.Phase)
		}
	}
	return out
}

func poolsOf(evs []journal.Event, kind string) []string {
	var out []string
	for _, ev := range evs {
		if ev.Kind == kind {
			var d struct{ Pool string }
			_ = json.Unmarshal(ev.Data, &d)
			out = append(out, d.Pool)
		}
	}
	return out
}

var allPhases = []string{PhaseTrigger, PhaseDecided, PhaseCapacityRequested, PhaseHostsRunning, PhaseNodesReady, PhasePlaced, PhaseHealthy}

// TestProvisionQueuedWorkWhoeverRaisedTheCount: the count is raised the
// way `nomad job scale` would, not by Spillway's scaler. The provisioner
// sees what Nomad queued, borrows the one free shared host, rents the rest
// on the cheapest cloud, marks the rented node as serving bu-a, and the
// activity's seven phases are journaled in order.
func TestProvisionQueuedWorkWhoeverRaisedTheCount(t *testing.T) {
	h := newHarness(t, 1)
	h.service(4) // fits on bu-a's own host
	h.start()
	if err := h.k.SetCount(web, 12); err != nil {
		t.Fatal(err)
	}
	h.until("the scale-out is done", func() bool { return len(h.events(KindActivityEnded)) == 1 })

	evs := h.events("")
	act := h.events(KindActivityEnded)[0].Activity
	var mine []journal.Event
	for _, ev := range evs {
		if ev.Activity == act {
			mine = append(mine, ev)
		}
	}
	if got := phasesOf(mine); strings.Join(got, ",") != strings.Join(allPhases, ",") {
		t.Fatalf("phases %v, want %v\n%s", got, allPhases, h.dump())
	}
	// The tiers are asked in parallel: the order of the two is free.
	got := poolsOf(mine, KindIntent)
	slices.Sort(got)
	if strings.Join(got, ",") != "aws,shared" {
		t.Fatalf("claims journaled for %v, want the shared pool and aws\n%s", got, h.dump())
	}
	if n := len(h.cloud.Instances()); n != 1 {
		t.Fatalf("%d instances rented, want 1", n)
	}
	if d, _ := h.k.Snapshot().Demand(web); d.Queued != 0 || d.Running != 12 {
		t.Fatalf("after the scale-out: %+v", d)
	}
	// The rented node was told whom it serves.
	marked := false
	for _, c := range h.k.CallsOf("meta") {
		if v := c.Meta[pools.MetaServes]; v != nil && *v == "bu-a" && strings.HasPrefix(c.Node, "node-") {
			marked = true
		}
	}
	if !marked {
		t.Fatalf("the rented node was never marked as serving bu-a: %+v", h.k.Calls())
	}
	// The deadline came from the business unit (no policy governs web).
	var trig struct{ Triggered, Deadline time.Time }
	for _, ev := range mine {
		if ev.Kind == KindPhase && strings.HasPrefix(ev.Message, PhaseTrigger) {
			_ = json.Unmarshal(ev.Data, &trig)
		}
	}
	if got := trig.Deadline.Sub(trig.Triggered); got != 2*time.Minute {
		t.Errorf("deadline %s after the trigger, want bu-a's 2m", got)
	}
}

// TestFallbackAcrossOfferingsThenClouds: aws's first offering has no
// capacity, so its second is tried in the same claim; when aws has none
// at all, the next plan rents from ali, in the same activity.
func TestFallbackAcrossOfferingsThenClouds(t *testing.T) {
	h := newHarness(t, 0)
	h.cloud.SetCapacity(providers.Offering{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: providers.CapacityOnDemand}, 0)
	h.cloud.SetCapacity(providers.Offering{InstanceType: "m5.xlarge", Zone: "us-east-1a", CapacityType: providers.CapacityOnDemand}, 0)
	h.service(4)
	h.start()
	if err := h.k.SetCount(web, 8); err != nil {
		t.Fatal(err)
	}
	h.until("the scale-out is done", func() bool { return len(h.events(KindActivityEnded)) == 1 })
	if got := poolsOf(h.events(""), KindIntent); strings.Join(got, ",") != "aws,ali" {
		t.Fatalf("claims %v, want aws then ali\n%s", got, h.dump())
	}
	failed := h.events(KindClaimFailed)
	if len(failed) != 1 {
		t.Fatalf("aws's failure: %+v", failed)
	}
	var d struct{ Pool, Reason string }
	if err := json.Unmarshal(failed[0].Data, &d); err != nil || d.Pool != "aws" || d.Reason != providers.ErrorKindInsufficientCapacity {
		t.Fatalf("aws's failure: %s %s, want pool aws, reason %s", failed[0].Message, failed[0].Data, providers.ErrorKindInsufficientCapacity)
	}
	// Both of aws's offerings were in the one claim, in order.
	calls := h.aws.Creates()
	if len(calls) != 1 || len(calls[0].EffectiveOfferings()) != 2 || calls[0].EffectiveOfferings()[0].InstanceType != "m5.large" {
		t.Fatalf("aws create calls: %+v", calls)
	}
	if len(h.ali.Creates()) != 1 {
		t.Fatalf("ali create calls: %+v", h.ali.Creates())
	}
}
