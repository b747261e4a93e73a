package scaler

import (
	"context"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/evaluate"
	"github.com/spillwayhq/spillway/policies"
)

// ClusterCounts reads task group counts from the cluster model and sets
// them through the orchestrator (Nomad's scale endpoint, which records the
// message and meta in the job's scaling events).
type ClusterCounts struct {
	Cluster      cluster.Source
	Orchestrator cluster.Orchestrator
}

var (
	_ Counts      = ClusterCounts{}
	_ CountReader = ClusterCounts{}
	_ CountWaiter = ClusterCounts{}
)

// AwaitCount implements CountWaiter: it returns once the model shows the
// group at count (Nomad's event of the change has arrived), or when ctx
// ends, on the model's own change signal.
func (n ClusterCounts) AwaitCount(ctx context.Context, t policies.Target, count int) error {
	for {
		snap := n.Cluster.Snapshot()
		if g, err := (evaluate.ClusterGroups{Cluster: cluster.NewStatic(snap)}).Group(ctx, t); err == nil && g.Count == count {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-snap.Changed():
		}
	}
}

// Count implements CountReader: the group's count, as the live model has
// it. While the model is not live, the count is unknown: an error.
func (n ClusterCounts) Count(ctx context.Context, t policies.Target) (int, error) {
	g, err := evaluate.ClusterGroups{Cluster: n.Cluster}.Group(ctx, t)
	if err != nil {
		return 0, err
	}
	return g.Count, nil
}

// Scale implements Counts.
func (n ClusterCounts) Scale(ctx context.Context, t policies.Target, count int, message string, meta map[string]any) error {
	return n.Orchestrator.Scale(ctx, t, count, message, meta)
}

// ErrDeploymentActive is returned when Nomad refuses to change a count
// because a deployment of the job is running; retry when it has ended.
var ErrDeploymentActive = cluster.ErrDeploymentActive
