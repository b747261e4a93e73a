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
			if ok, rerr := n.supersede(ctx, t, count); ok {
				return nil
			} else if rerr != nil {
				err = fmt.Errorf("%v; superseding it: %v", err, rerr)
			}
			return fmt.Errorf("scaling %s to %d: %w (%v)", t, count, ErrDeploymentActive, err)
		}
		return fmt.Errorf("scaling %s to %d in nomad: %w", t, count, err)
	}
	return nil
}

// supersede sets the count while a deployment runs, when that deployment
// only rolls out a count change (an earlier scale-out still placing its
// allocations): Nomad refuses the scale endpoint then, so the job is
// registered again with the new count, compare-and-set on its modify
// index, and the new deployment supersedes the old one. A deployment that
// rolls out anything else (an operator's update) is left alone. It reports
// whether the count was set.
func (n NomadCounts) supersede(ctx context.Context, t policies.Target, count int) (bool, error) {
	q := (&nomad.QueryOptions{Namespace: t.Namespace}).WithContext(ctx)
	versions, diffs, _, err := n.Client.Jobs().Versions(t.Job, true, q)
	if err != nil || len(versions) < 2 || len(diffs) == 0 || !countOnly(diffs[0]) {
		return false, err
	}
	job, _, err := n.Client.Jobs().Info(t.Job, q)
	if err != nil || job.JobModifyIndex == nil {
		return false, err
	}
	found := false
	for _, g := range job.TaskGroups {
		if g.Name != nil && *g.Name == t.Group {
			g.Count, found = &count, true
		}
	}
	if !found {
		return false, nil
	}
	w := (&nomad.WriteOptions{Namespace: t.Namespace}).WithContext(ctx)
	if _, _, err := n.Client.Jobs().EnforceRegister(job, *job.JobModifyIndex, w); err != nil {
		return false, err
	}
	return true, nil
}

// countOnly reports whether a job version differs from the one before only
// in task group counts.
func countOnly(d *nomad.JobDiff) bool {
	if d == nil || d.Type != "Edited" {
		return false
	}
	changed := func(t string) bool { return t != "" && t != "None" }
	for _, f := range d.Fields {
		if changed(f.Type) {
			return false
		}
	}
	for _, o := range d.Objects {
		if changed(o.Type) {
			return false
		}
	}
	counts := 0
	for _, g := range d.TaskGroups {
		if !changed(g.Type) {
			continue
		}
		for _, f := range g.Fields {
			if !changed(f.Type) {
				continue
			}
			if f.Name != "Count" {
				return false
			}
			counts++
		}
		for _, o := range g.Objects {
			if changed(o.Type) {
				return false
			}
		}
		for _, tk := range g.Tasks {
			if changed(tk.Type) {
				return false
			}
		}
	}
	return counts > 0
}

// ErrDeploymentActive is returned when Nomad refuses to change a count
// because a deployment of the job is running; retry when it has ended.
var ErrDeploymentActive = errors.New("a deployment of the job is running, and Nomad refuses to scale it until the deployment ends")
