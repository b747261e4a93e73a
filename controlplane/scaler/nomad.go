package scaler

import (
	"context"
	"fmt"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/policies"
)

// NomadCounts sets task group counts through Nomad's scale endpoint, which
// records the message and meta in the job's scaling events.
type NomadCounts struct{ Client *nomad.Client }

var _ Counts = NomadCounts{}

// Scale implements Counts.
func (n NomadCounts) Scale(ctx context.Context, t policies.Target, count int, message string, meta map[string]any) error {
	q := (&nomad.WriteOptions{Namespace: t.Namespace}).WithContext(ctx)
	if _, _, err := n.Client.Jobs().Scale(t.Job, t.Group, &count, message, false, meta, q); err != nil {
		return fmt.Errorf("scaling %s to %d in nomad: %w", t, count, err)
	}
	return nil
}
