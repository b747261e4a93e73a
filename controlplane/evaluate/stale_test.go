package evaluate

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/metrics"
	"github.com/spillwayhq/spillway/policies"
)

var web = policies.Target{Namespace: "default", Job: "demo", Group: "web"}

// TestClusterGroupsOnStaleCounts: while the model lists Nomad again, its
// last known counts are used for MaxStale after it was last live, and say
// from when; then, never live, or with no MaxStale, the count is unknown.
func TestClusterGroupsOnStaleCounts(t *testing.T) {
	lastLive := now.Add(-30 * time.Second)
	snap := func(sync cluster.Sync) cluster.Source {
		return cluster.NewStatic(cluster.Empty(false).Edit(func(e *cluster.Editor) {
			e.PutJob(&cluster.Job{Namespace: "default", ID: "demo", Groups: map[string]*cluster.Group{"web": {Name: "web", Count: 4}}})
			e.SetSync(sync)
		}))
	}
	lost := snap(cluster.Sync{Since: lastLive, LastLive: lastLive, Err: "nomad's event stream closed"})
	at := func(t time.Time) func() time.Time { return func() time.Time { return t } }

	g, err := ClusterGroups{Cluster: lost, MaxStale: time.Minute, Now: at(now)}.Group(context.Background(), web)
	if err != nil || g.Count != 4 || g.CountsAsOf == nil || !g.CountsAsOf.Equal(lastLive) {
		t.Fatalf("within the bound: %+v, %v; want count 4 as of %s", g, err, lastLive)
	}
	for _, c := range []struct {
		name string
		cg   ClusterGroups
		want string
	}{
		{"no bound", ClusterGroups{Cluster: lost, Now: at(now)}, "the count of default/demo/web is unknown"},
		{"past the bound", ClusterGroups{Cluster: lost, MaxStale: time.Minute, Now: at(lastLive.Add(61 * time.Second))}, "older than 1m0s"},
		{"never live", ClusterGroups{Cluster: snap(cluster.Sync{Err: "listing"}), MaxStale: time.Minute, Now: at(now)}, "is unknown"},
	} {
		if _, err := c.cg.Group(context.Background(), web); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.want)
		}
	}
	g, err = ClusterGroups{Cluster: snap(cluster.Sync{Live: true}), MaxStale: time.Minute}.Group(context.Background(), web)
	if err != nil || g.CountsAsOf != nil {
		t.Fatalf("live: %+v, %v", g, err)
	}
}

// TestEvaluateHoldsScaleInOnStaleCounts: on counts that may be out of
// date a scale-out goes ahead and a scale-in is held; after Spillway
// itself changed the count, nothing is changed on them.
func TestEvaluateHoldsScaleInOnStaleCounts(t *testing.T) {
	p := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(p, []byte(`apiVersion: spillway/v1
kind: ScalingPolicy
name: rate
business_unit: bu-a
target: {namespace: default, job: demo, group: web}
min: 1
max: 20
checks:
  - name: rate
    query: rate
    target_value: {target: 100}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := policies.LoadFiles(p)
	if err != nil {
		t.Fatal(err)
	}
	asOf := now.Add(-20 * time.Minute)
	for _, c := range []struct {
		name      string
		perAlloc  float64
		lastScale time.Time
		dir       policies.Direction
		desired   int
		reason    string
	}{
		{"scale-in held", 50, time.Time{}, policies.Hold, 4, "not scaling in on it"},
		{"scale-out goes ahead", 200, time.Time{}, policies.Up, 8, "the count 4 is from " + asOf.Format(time.RFC3339)},
		{"spillway changed the count since", 200, now.Add(-15 * time.Minute), policies.Hold, 4, "spillway changed the count at"},
	} {
		src := &fakeSource{answers: map[string][]metrics.Sample{"rate": {{Value: c.perAlloc, Time: now}}}}
		e := New(src, fakeGroups{web: {Count: 4, CountsAsOf: &asOf}}, func() time.Time { return now }, nil)
		r := e.Evaluate(context.Background(), set.Policies()[0], State{LastScale: c.lastScale})
		if d := r.Decision; d == nil || d.Direction != c.dir || d.Desired != c.desired || !strings.Contains(d.Reason, c.reason) {
			t.Errorf("%s: %+v, want %s to %d because %q", c.name, d, c.dir, c.desired, c.reason)
		}
	}
}
