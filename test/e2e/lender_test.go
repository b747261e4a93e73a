package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/controlplane/app"
	"github.com/spillwayhq/spillway/controlplane/controller"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/internal/lab"
	"github.com/spillwayhq/spillway/internal/lab/labtest"
	"github.com/spillwayhq/spillway/pools"
)

// healthyDemo counts the demo's running, healthy allocations: those
// with Nomad's healthy verdict, and those whose verdict a count change
// has just cleared (Nomad updates every allocation in place for the new
// job version and its health watcher starts again: a second or two
// without a verdict) or not given yet, whose HTTP check passes now.
func healthyDemo(nc *nomad.Client) (int, error) {
	allocs, _, err := nc.Jobs().Allocations(lab.DemoJob, false, nil)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, a := range allocs {
		if a.ClientStatus != nomad.AllocClientStatusRunning || a.DesiredStatus != nomad.AllocDesiredStatusRun {
			continue
		}
		if a.DeploymentStatus != nil && a.DeploymentStatus.Healthy != nil {
			if *a.DeploymentStatus.Healthy {
				n++
			}
			continue
		}
		checks, err := nc.Allocations().Checks(a.ID, nil)
		if err != nil {
			return 0, err
		}
		passing := len(checks) > 0
		for _, c := range checks {
			passing = passing && c.Status == "success"
		}
		if passing {
			n++
		}
	}
	return n, nil
}

// watchHealthy samples healthyDemo every 250ms until the returned func
// is called, which gives the fewest healthy instances seen and the
// number of samples.
func watchHealthy(ctx context.Context, nc *nomad.Client, start int) func() (int, int) {
	var mu sync.Mutex
	low, samples := start, 0
	watch, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for watch.Err() == nil {
			if n, err := healthyDemo(nc); err == nil {
				mu.Lock()
				low, samples = min(low, n), samples+1
				mu.Unlock()
			}
			time.Sleep(250 * time.Millisecond)
		}
	}()
	return func() (int, int) {
		stop()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return low, samples
	}
}

// hostStory is the kinds of the lender's events about one host (node ID)
// after seq, in order.
func hostStory(t *testing.T, l *lab.Lab, node string, after int64) []string {
	t.Helper()
	var out []string
	for _, ev := range events(t, l, "") {
		if ev.Seq <= after {
			continue
		}
		switch ev.Kind {
		case controller.KindLeaseExpired, controller.KindLeaseReclaimed, controller.KindLeaseReplaced, controller.KindIntentReturn, controller.KindReturned,
			controller.KindLeaseSurged, controller.KindLeaseSurgeUnmet, controller.KindLeaseSurgeEnded:
			var d struct{ Node, Instance string }
			_ = json.Unmarshal(ev.Data, &d)
			if d.Node == node || d.Instance == node || ev.Subject == "host/"+node {
				out = append(out, ev.Kind)
			}
		case controller.KindReplacing:
			var d struct{ Node string }
			if json.Unmarshal(ev.Data, &d) == nil && d.Node == node {
				out = append(out, ev.Kind)
			}
		}
	}
	return out
}

// returnedWith finds the capacity.returned event of node and its reason.
func returnedWith(t *testing.T, l *lab.Lab, node string) (journal.Event, string, bool) {
	t.Helper()
	for _, ev := range events(t, l, "kind="+controller.KindReturned) {
		var d struct{ Node, Reason string }
		if json.Unmarshal(ev.Data, &d) == nil && d.Node == node {
			return ev, d.Reason, true
		}
	}
	return journal.Event{}, "", false
}

// lentHost is the node ID of the one shared host lent to bu-a.
func lentHost(t *testing.T, l *lab.Lab) (string, string) {
	t.Helper()
	stubs, _, err := l.Nomad().Nodes().List(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stubs {
		n, _, err := l.Nomad().Nodes().Info(s.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		if n.Meta[pools.MetaLentTo] == "bu-a" {
			return n.ID, n.Name
		}
	}
	return "", ""
}

// TestLeasesEndAndOwnersReclaim is the lender's side on the lab, in one
// lab: bu-a bursts to 12 demo instances and borrows a shared host under a
// 2-minute lease. When the lease ends, the other shared host is borrowed
// first, then the demo's count is raised by the 4 instances the expired
// host runs (the surge) until 16 are healthy, then the host is drained
// and returned and the count lowered to 12 again: the demo never has
// fewer healthy instances than the 12 before the expiry, and the loan
// closes with "lease expired". Then an owner reclaims the replacement
// through the API while it serves the burst, and serve is killed
// (SIGKILL, at the failpoint after-surge) once its surge is healthy,
// before the drain; after a restart the reclaim completes within its
// deadline, without a second replacement or surge, the count is lowered
// (the policy, which wants 12, leaves the held count alone meanwhile),
// the demo still never below 12, and the loan closes with "reclaimed";
// an operator extends the lease of the reclaim's replacement.
func TestLeasesEndAndOwnersReclaim(t *testing.T) {
	t.Parallel()
	labtest.Takes(t, 320*time.Second)
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	policyDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(policyDir, "burst.yaml"), []byte(scaleOutPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := lab.DefaultOptions()
	opts.BusinessUnits = []lab.BusinessUnit{{Name: "bu-a", Hosts: 1}, {Name: "bu-b", Hosts: 1}}
	opts.SharedHosts = 2
	opts.SharedLease = 2 * time.Minute
	// Nomad's drain migrates one allocation at a time (the demo's
	// migrate defaults: max_parallel 1, min_healthy_time 10s), about 12s
	// each, and stops what is left at the deadline: 4 allocations need
	// about 50s.
	opts.SharedDrainDeadline = 90 * time.Second
	opts.Policies = policyDir
	opts.LabPools = true
	l := labtest.Start(t, opts)
	ctx := t.Context()
	nc := l.Nomad()

	// The burst borrows one shared host.
	waitUntil(t, "the burst's scale-out ends", 2*time.Minute, func() bool { return len(events(t, l, "kind="+controller.KindActivityEnded)) > 0 })
	if err := l.WaitHealthy(ctx, lab.DemoJob, 12, time.Minute); err != nil {
		t.Fatal(err)
	}
	first, firstName := lentHost(t, l)
	if first == "" {
		t.Fatalf("no shared host lent to bu-a; journal:\n%s", dump(events(t, l, "")))
	}
	evs := events(t, l, "")
	seq := evs[len(evs)-1].Seq

	// The demo's healthy instances are watched from now until the
	// expired host is back and the surge over.
	lowest := watchHealthy(ctx, nc, 12)
	// At most: the rest of the 2m lease, the surge, the drain (up to its
	// 90s deadline when the replacement has room for the surge only and
	// Nomad's drainer waits for the moved allocations, docs/pools.md),
	// and the wait for nothing to be starting before the surge ends (up
	// to the drain deadline again).
	waitUntil(t, "the expired host is returned and its surge ended", 5*time.Minute, func() bool {
		_, _, ok := returnedWith(t, l, first)
		return ok && slices.Contains(hostStory(t, l, first, seq), controller.KindLeaseSurgeEnded)
	})
	if err := l.WaitHealthy(ctx, lab.DemoJob, 12, time.Minute); err != nil {
		t.Fatal(err)
	}
	low, samples := lowest()
	story := hostStory(t, l, first, seq)
	want := []string{controller.KindLeaseExpired, controller.KindReplacing, controller.KindLeaseReplaced, controller.KindLeaseSurged,
		controller.KindIntentReturn, controller.KindReturned, controller.KindLeaseSurgeEnded}
	if !slices.Equal(story, want) {
		t.Fatalf("the expiry of %s journaled %v, want %v; journal:\n%s", firstName, story, want, dump(events(t, l, "")))
	}
	if _, reason, _ := returnedWith(t, l, first); reason != pools.ReasonLeaseExpired {
		t.Fatalf("%s was returned with reason %q, want %q", firstName, reason, pools.ReasonLeaseExpired)
	}
	// The replacement is ready before the drain starts, and the surge's 4
	// extra instances are healthy before the drain moves any: the drain
	// stops each allocation it moves before its replacement is healthy,
	// and the demo still has its 12.
	t.Logf("the demo's healthy instances during the expiry: at least %d in %d samples", low, samples)
	if low < 12 {
		t.Errorf("the demo had %d healthy instances during the expiry, fewer than the 12 before it", low)
	}
	if n := demoCount(t, l); n != 12 {
		t.Fatalf("the demo's count after the surge is %d, want 12", n)
	}
	second, secondName := lentHost(t, l)
	if second == "" || second == first {
		t.Fatalf("the replacement: lent host %q after the expiry of %s", secondName, firstName)
	}

	// The owner reclaims the replacement; serve dies once its surge is
	// healthy, before the drain.
	l.KillServe()
	l.SetServeEnv(app.FailpointEnv + "=" + controller.FailAfterSurge)
	if err := l.StartServe(ctx); err != nil {
		t.Fatal(err)
	}
	evs = events(t, l, "")
	seq = evs[len(evs)-1].Seq
	lowest = watchHealthy(ctx, nc, 12)
	if code, body := requestStatus(t, l, "POST", "/v1/pools/shared/reclaim", []byte(`{"count":3,"reason":"e2e"}`)); code != 422 || !strings.Contains(body, "1 host is lent") {
		t.Fatalf("reclaiming 3: %d %s", code, body)
	}
	code, body := requestStatus(t, l, "POST", "/v1/pools/shared/reclaim", []byte(`{"count":1,"reason":"bu-b needs its host back","deadline":"3m"}`))
	if code != 202 || !strings.Contains(body, second) {
		t.Fatalf("reclaim: %d %s", code, body)
	}
	reclaimed := time.Now()
	exit, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := l.WaitServeExit(exit); err != nil {
		t.Fatalf("serve did not die at the failpoint after the surge: %v", err)
	}
	l.SetServeEnv()
	if err := l.StartServe(ctx); err != nil {
		t.Fatal(err)
	}
	// The reclaim's replacement is the first host again: an operator
	// extends its lease, so it does not end before the lab does.
	if body := post(t, l, "/v1/pools/loans/"+firstName+"/extend", []byte(`{"reason":"e2e: keep the replacement","lease":"1h"}`)); !strings.Contains(body, first) {
		t.Fatalf("extending the replacement's lease: %s", body)
	}
	if evs := events(t, l, "kind="+controller.KindLeaseExtended); len(evs) != 1 || evs[0].Actor != "lab-admin" {
		t.Fatalf("lease.extended: %s", dump(evs))
	}
	// At most the reclaim's 3m deadline, then the surge's end (up to the
	// drain deadline), as for the expiry.
	waitUntil(t, "the reclaimed host is returned and its surge ended", 5*time.Minute, func() bool {
		_, _, ok := returnedWith(t, l, second)
		return ok && slices.Contains(hostStory(t, l, second, seq), controller.KindLeaseSurgeEnded)
	})
	ret, reason, _ := returnedWith(t, l, second)
	if reason != pools.ReasonReclaimed {
		t.Fatalf("%s was returned with reason %q, want reclaimed", secondName, reason)
	}
	// The ledger closes the loan by the deadline; capacity.returned
	// follows once the lending meta is off the node.
	if ret.Time.After(reclaimed.Add(3*time.Minute + 15*time.Second)) {
		t.Errorf("%s was returned %s after the reclaim, past its 3m deadline", secondName, ret.Time.Sub(reclaimed))
	}
	t.Logf("%s was returned %s after the reclaim", secondName, ret.Time.Sub(reclaimed).Round(time.Second))
	story = hostStory(t, l, second, seq)
	want = []string{controller.KindLeaseReclaimed, controller.KindReplacing, controller.KindLeaseReplaced, controller.KindLeaseSurged,
		controller.KindIntentReturn, controller.KindReturned, controller.KindLeaseSurgeEnded}
	if !slices.Equal(story, want) {
		t.Fatalf("the reclaim of %s journaled %v, want %v (one replacement and one surge, before the crash); journal:\n%s", secondName, story, want, dump(events(t, l, "")))
	}
	n, _, err := nc.Nodes().Info(second, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{pools.MetaLentTo, pools.MetaServes, pools.MetaLease, pools.MetaClaim} {
		if v, ok := n.Meta[k]; ok {
			t.Errorf("%s still carries %s=%s after the reclaim", secondName, k, v)
		}
	}
	if err := l.WaitHealthy(ctx, lab.DemoJob, 12, time.Minute); err != nil {
		t.Fatal(err)
	}
	low, samples = lowest()
	t.Logf("the demo's healthy instances during the reclaim and the restart: at least %d in %d samples", low, samples)
	if low < 12 {
		t.Errorf("the demo had %d healthy instances during the reclaim, fewer than the 12 before it", low)
	}
	if n := demoCount(t, l); n != 12 {
		t.Fatalf("the demo's count after the reclaim's surge is %d, want 12", n)
	}
}
