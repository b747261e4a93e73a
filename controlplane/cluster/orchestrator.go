package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/policies"
)

// Orchestrator is what Spillway changes in Nomad. Reads go through the
// Model; these are the writes, so a controller's test can fake both.
type Orchestrator interface {
	// Scale sets a task group's count, recording message and meta in the
	// job's scaling events. It returns an error wrapping
	// ErrDeploymentActive when Nomad refuses during a deployment that
	// rolls out more than a count.
	Scale(ctx context.Context, t policies.Target, count int, message string, meta map[string]any) error
	// SetNodeMeta sets (or, with a nil value, removes) dynamic node meta.
	SetNodeMeta(ctx context.Context, node string, meta map[string]*string) error
	// SetEligibility marks a node eligible for placements, or not.
	SetEligibility(ctx context.Context, node string, eligible bool) error
	// Drain drains a node: its allocations move elsewhere within deadline,
	// after which Nomad stops what is left. meta is recorded on the drain
	// (DrainMeta: who drained it, and why). A node Nomad does not have is
	// a NotFound error (IsNotFound). It is the one way Spillway drains:
	// scale-in, the shared pool's returns, spot interruptions and the
	// API's drain endpoint all come here.
	Drain(ctx context.Context, node string, deadline time.Duration, meta map[string]string) error
}

// ErrDeploymentActive is returned when Nomad refuses to change a count
// because a deployment of the job is running; retry when it has ended.
var ErrDeploymentActive = errors.New("a deployment of the job is running, and Nomad refuses to scale it until the deployment ends")

// ErrNotFound is wrapped when Nomad does not have the object.
var ErrNotFound = errors.New("not found in nomad")

// IsNotFound reports an error wrapping ErrNotFound or Nomad's 404.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) || isNotFound(err) }

// NomadOrchestrator is the Orchestrator of a real Nomad.
type NomadOrchestrator struct{ Client *nomad.Client }

var _ Orchestrator = NomadOrchestrator{}

// Scale implements Orchestrator. While a deployment that only rolls out a
// count change runs (an earlier scale-out still placing), Nomad refuses
// the scale endpoint; the job is then registered again with the new
// count, compare-and-set on its modify index, so the new deployment
// supersedes the old one. A deployment that rolls out anything else (an
// operator's update) is left alone.
func (n NomadOrchestrator) Scale(ctx context.Context, t policies.Target, count int, message string, meta map[string]any) error {
	q := (&nomad.WriteOptions{Namespace: t.Namespace}).WithContext(ctx)
	_, _, err := n.Client.Jobs().Scale(t.Job, t.Group, &count, message, false, meta, q)
	if err == nil {
		return nil
	}
	if !n.deploymentRefusal(ctx, t, err) {
		return fmt.Errorf("scaling %s to %d in nomad: %w", t, count, err)
	}
	ok, rerr := n.supersede(ctx, t, count)
	if ok {
		return nil
	}
	if rerr != nil {
		err = fmt.Errorf("%v; superseding it: %v", err, rerr)
	}
	return fmt.Errorf("scaling %s to %d: %w (%v)", t, count, ErrDeploymentActive, err)
}

// deploymentRefusal recognises Nomad's answer to a scale during a
// deployment: a 400 from the scale endpoint while the job's latest
// deployment is active.
func (n NomadOrchestrator) deploymentRefusal(ctx context.Context, t policies.Target, err error) bool {
	var ue nomad.UnexpectedResponseError
	if !errors.As(err, &ue) || ue.StatusCode() != http.StatusBadRequest {
		return false
	}
	d, _, derr := n.Client.Jobs().LatestDeployment(t.Job, (&nomad.QueryOptions{Namespace: t.Namespace}).WithContext(ctx))
	return derr == nil && d != nil && (&Deployment{Status: d.Status}).Active()
}

func (n NomadOrchestrator) supersede(ctx context.Context, t policies.Target, count int) (bool, error) {
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

// SetNodeMeta implements Orchestrator.
func (n NomadOrchestrator) SetNodeMeta(ctx context.Context, node string, meta map[string]*string) error {
	_, err := n.Client.Nodes().Meta().Apply(&nomad.NodeMetaApplyRequest{NodeID: node, Meta: meta}, (&nomad.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("setting the meta of node %s: %w", node, notFound(err))
	}
	return nil
}

// SetEligibility implements Orchestrator.
func (n NomadOrchestrator) SetEligibility(ctx context.Context, node string, eligible bool) error {
	if _, err := n.Client.Nodes().ToggleEligibility(node, eligible, (&nomad.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("setting the eligibility of node %s: %w", node, notFound(err))
	}
	return nil
}

// DrainMeta is the metadata every drain Spillway asks for carries: who
// drained the node ("spillway", or "spillway:<token name>" through the
// API) and why.
func DrainMeta(by, reason string) map[string]string {
	return map[string]string{"drained_by": by, "reason": reason}
}

// Drain implements Orchestrator. System jobs stay on the node (they are
// the node's own, such as log shippers).
func (n NomadOrchestrator) Drain(ctx context.Context, node string, deadline time.Duration, meta map[string]string) error {
	_, err := n.Client.Nodes().UpdateDrainOpts(node, &nomad.DrainOptions{
		DrainSpec: &nomad.DrainSpec{Deadline: deadline, IgnoreSystemJobs: true}, MarkEligible: false, Meta: meta,
	}, (&nomad.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("draining node %s: %w", node, notFound(err))
	}
	return nil
}

func notFound(err error) error {
	if isNotFound(err) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}
