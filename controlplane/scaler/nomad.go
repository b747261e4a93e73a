package scaler

import (
	"context"
	"errors"
	"fmt"
	"strings"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/controlplane/evaluate"
	"github.com/spillwayhq/spillway/policies"
)

// NomadCounts sets task group counts through Nomad's scale endpoint, which
// records the message and meta in the job's scaling events.
type NomadCounts struct{ Client *nomad.Client }

var (
	_ Counts      = NomadCounts{}
	_ CountReader = NomadCounts{}
)

// Count implements CountReader: the group's count in its job.
func (n NomadCounts) Count(ctx context.Context, t policies.Target) (int, error) {
	g, err := evaluate.NewNomadGroups(n.Client).Group(ctx, t)
	if err != nil {
		return 0, err
	}
	return g.Count, nil
}

// Scale implements Counts.
func (n NomadCounts) Scale(ctx context.Context, t policies.Target, count int, message string, meta map[string]any) error {
	q := (&nomad.WriteOptions{Namespace: t.Namespace}).WithContext(ctx)
	if _, _, err := n.Client.Jobs().Scale(t.Job, t.Group, &count, message, false, meta, q); err != nil {
		if strings.Contains(err.Error(), "active deployment") {
			return fmt.Errorf("scaling %s to %d: %w (%v)", t, count, ErrDeploymentActive, err)
		}
		return fmt.Errorf("scaling %s to %d in nomad: %w", t, count, err)
	}
	return nil
}

// ErrDeploymentActive is returned when Nomad refuses to change a count
// because a deployment of the job is running; retry when it has ended.
var ErrDeploymentActive = errors.New("a deployment of the job is running, and Nomad refuses to scale it until the deployment ends")
