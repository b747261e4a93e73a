package scaler

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/cluster/clustertest"
	"github.com/spillwayhq/spillway/policies"
)

// laggingOrchestrator is Nomad seen through the cluster model: a count
// it sets reaches the model a moment later, with Nomad's event.
type laggingOrchestrator struct {
	*clustertest.Cluster
	mu     sync.Mutex
	counts []int
}

func (o *laggingOrchestrator) Scale(_ context.Context, t policies.Target, count int, _ string, _ map[string]any) error {
	o.mu.Lock()
	o.counts = append(o.counts, count)
	o.mu.Unlock()
	go func() {
		time.Sleep(20 * time.Millisecond)
		_ = o.SetCount(t, count)
	}()
	return nil
}

// TestManualScalesInARowStartFromEachOther: two relative manual scalings
// of a group in a row (one more, then one more) make two more, although
// the model shows each count only after Nomad's event of it.
func TestManualScalesInARowStartFromEachOther(t *testing.T) {
	ctx := context.Background()
	c := clustertest.New()
	c.AddJob(clustertest.Service{Target: target, Count: 2})
	orch := &laggingOrchestrator{Cluster: c}
	set := loadSet(t, strings.Replace(policyDoc, "NAME", "a", 1))
	s := New(Config{Policies: func() *policies.Set { return set }, Evaluator: &fakeEvaluator{}, Counts: ClusterCounts{Cluster: c, Orchestrator: orch},
		Journal: openJournal(t).Events()})
	for range 2 {
		if _, err := s.Scale(ctx, Manual{Target: target, By: 1, Reason: "one more", Actor: "oncall"}); err != nil {
			t.Fatal(err)
		}
	}
	orch.mu.Lock()
	defer orch.mu.Unlock()
	if len(orch.counts) != 2 || orch.counts[0] != 3 || orch.counts[1] != 4 {
		t.Fatalf("two scalings by one from 2 set the counts %v, want [3 4]", orch.counts)
	}
}

var _ cluster.Orchestrator = (*laggingOrchestrator)(nil)
