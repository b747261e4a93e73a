package controller

import (
	"strings"
	"testing"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/demand"
	"github.com/spillwayhq/spillway/policies"
)

// TestOnlyTiersOfTheJobsNodePoolAreAsked: a job in node pool burst, which
// the clouds' hosts join and the shared pool's do not, gets a cloud host
// and borrows nothing, although a shared host is free; the plan says why
// the shared pool was left out.
func TestOnlyTiersOfTheJobsNodePoolAreAsked(t *testing.T) {
	h := newHarness(t, 1)
	h.service(4)
	burst := policies.Target{Namespace: "default", Job: "burstjob", Group: "app"}
	h.k.Update(func(_ *cluster.Snapshot, e *cluster.Editor) {
		e.PutJob(&cluster.Job{Namespace: "default", ID: "burstjob", Type: "service", NodePool: "burst",
			Groups: map[string]*cluster.Group{"app": {Name: "app", Count: 4, PerAlloc: demand.Size{CPUMHz: 250, MemoryMB: 64}, Serves: "bu-a"}}})
	})
	h.k.Schedule()
	h.start()
	h.until("the scale-out ends", func() bool { return len(h.events(KindActivityEnded)) == 1 })
	end := h.events(KindActivityEnded)[0]
	if end.Subject != burst.String() || outcomeOf(end) != OutcomeDone {
		t.Fatalf("ended %s %q, want %s done\n%s", end.Subject, outcomeOf(end), burst, h.dump())
	}
	if got := poolsOf(h.events(""), KindClaimed); strings.Join(got, ",") != "aws" {
		t.Fatalf("claimed %v, want aws only: the shared hosts are in another node pool\n%s", got, h.dump())
	}
	if h.shared.creates != 0 {
		t.Fatalf("%d shared claims for a job in node pool burst", h.shared.creates)
	}
}
