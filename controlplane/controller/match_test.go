package controller

import (
	"strings"
	"testing"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/cluster/clustertest"
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

// TestAClassOnlyOnePoolsHostsCarryGetsHostsFromItOnly: a job in node pool
// all constrained to node class big, which only the ali pool's bootstrap
// gives its hosts, gets hosts from ali only, although a shared host is
// free and aws is cheaper; capacity.matched says why the others were
// ruled out.
func TestAClassOnlyOnePoolsHostsCarryGetsHostsFromItOnly(t *testing.T) {
	big := strings.Replace(harnessPools, "    node_pool: burst\n    install: {method: sysext, version: 1.6.3, url: \"https://artifacts.test.invalid/nomad-1.6.3-x86-64.raw\"}\nmax_hosts: 5\nbudget_per_hour: 10\ntime_to_ready: 30s",
		"    node_pool: burst\n    node_class: big\n    install: {method: sysext, version: 1.6.3, url: \"https://artifacts.test.invalid/nomad-1.6.3-x86-64.raw\"}\nmax_hosts: 5\nbudget_per_hour: 10\ntime_to_ready: 30s", 1)
	if big == harnessPools {
		t.Fatal("the harness's pools changed: the ali pool's bootstrap was not found")
	}
	h := newHarnessOn(t, 1, big)
	h.service(4) // fills the own host
	classy := policies.Target{Namespace: "default", Job: "classy", Group: "app"}
	h.k.Update(func(_ *cluster.Snapshot, e *cluster.Editor) {
		e.PutJob(&cluster.Job{Namespace: "default", ID: "classy", Type: "service", NodePool: "all",
			Groups: map[string]*cluster.Group{"app": {Name: "app", Count: 2, PerAlloc: demand.Size{CPUMHz: 250, MemoryMB: 64}, Serves: "bu-a",
				Constraints: []*nomad.Constraint{nomad.NewConstraint("${meta.spillway.serves}", "=", "bu-a"), nomad.NewConstraint("${node.class}", "=", "big")}}}})
	})
	h.k.Schedule()
	h.start()
	h.until("the scale-out ends", func() bool { return len(h.events(KindActivityEnded)) == 1 })
	if end := h.events(KindActivityEnded)[0]; end.Subject != classy.String() || outcomeOf(end) != OutcomeDone {
		t.Fatalf("ended %s %q, want %s done\n%s", end.Subject, outcomeOf(end), classy, h.dump())
	}
	if got := poolsOf(h.events(""), KindClaimed); strings.Join(got, ",") != "ali" {
		t.Fatalf("claimed %v, want ali only\n%s", got, h.dump())
	}
	if h.shared.creates != 0 {
		t.Fatalf("%d shared claims for work constrained to class big", h.shared.creates)
	}
	matched := h.events(KindMatched)
	if len(matched) != 1 || !strings.Contains(matched[0].Message, `aws: its hosts do not meet the constraint ${node.class} = big (on aws m5.large, ${node.class} is "")`) ||
		!strings.Contains(matched[0].Message, "shared: its hosts do not meet the constraint ${node.class} = big") {
		t.Fatalf("capacity.matched %+v; want it once, naming aws and shared with the constraint", matched)
	}
}

// TestWorkTooBigForTheSharedHostsRentsAnOfferingThatFits: an allocation
// larger than a shared host but within an m5.large (the pool files give
// the sizes) is not borrowed for and not judged unservable: the shared
// pool is ruled out, an m5.large is rented, and the scale-out ends done.
func TestWorkTooBigForTheSharedHostsRentsAnOfferingThatFits(t *testing.T) {
	h := newHarnessOn(t, 1, sizedPools)
	h.sizes = map[string][2]int64{"m5.large": {2000, 7680}, "m5.xlarge": {4000, 15360}, "ecs.g7.large": {2000, 7680}}
	wide := policies.Target{Namespace: "default", Job: "wide", Group: "app"}
	h.k.AddJob(clustertest.Service{Target: wide, Count: 1, Size: demand.Size{CPUMHz: 1500, MemoryMB: 512}, Serves: "bu-a"})
	h.start()
	h.until("the scale-out ends", func() bool { return len(h.events(KindActivityEnded)) == 1 })
	if end := h.events(KindActivityEnded)[0]; end.Subject != wide.String() || outcomeOf(end) != OutcomeDone {
		t.Fatalf("ended %s %q, want %s done\n%s", end.Subject, outcomeOf(end), wide, h.dump())
	}
	if h.shared.creates != 0 {
		t.Fatalf("%d shared claims for work larger than a shared host", h.shared.creates)
	}
	var types []string
	for _, inst := range h.cloud.Instances() {
		types = append(types, inst.Offering.InstanceType)
	}
	if strings.Join(types, ",") != "m5.large" {
		t.Fatalf("rented %v, want one m5.large\n%s", types, h.dump())
	}
	if len(h.events(KindUnmet)) != 0 || len(h.c.Unservable()) != 0 {
		t.Fatalf("judged unmet or unservable:\n%s", h.dump())
	}
}

// TestAUnitThatMayNotBorrowIsSizedByTheOfferings: bu-a may not borrow
// (quota 0), so a shared host does not size its need: an allocation larger
// than a shared host but within an m5.large gets an m5.large, and the
// scale-out ends done.
func TestAUnitThatMayNotBorrowIsSizedByTheOfferings(t *testing.T) {
	noBorrow := strings.Replace(sizedPools, "borrowing: {quota: 4}", "borrowing: {quota: 0}", 1)
	if noBorrow == sizedPools {
		t.Fatal("the harness's pools changed: bu-a's quota was not found")
	}
	h := newHarnessOn(t, 1, noBorrow)
	h.sizes = map[string][2]int64{"m5.large": {2000, 7680}, "m5.xlarge": {4000, 15360}, "ecs.g7.large": {2000, 7680}}
	wide := policies.Target{Namespace: "default", Job: "wide", Group: "app"}
	h.k.AddJob(clustertest.Service{Target: wide, Count: 1, Size: demand.Size{CPUMHz: 1500, MemoryMB: 512}, Serves: "bu-a"})
	h.start()
	h.until("the scale-out ends", func() bool { return len(h.events(KindActivityEnded)) == 1 })
	if end := h.events(KindActivityEnded)[0]; outcomeOf(end) != OutcomeDone {
		t.Fatalf("ended %q, want done\n%s", outcomeOf(end), h.dump())
	}
	if n := len(h.cloud.Instances()); n != 1 || h.cloud.Instances()[0].Offering.InstanceType != "m5.large" {
		t.Fatalf("rented %v, want one m5.large\n%s", h.cloud.Instances(), h.dump())
	}
}
