package evaluate

import (
	"context"
	"errors"
	"fmt"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/demand"
	"github.com/spillwayhq/spillway/policies"
)

// ErrUnknownGroup is wrapped when Nomad has no such job or task group (a
// read error, or a model that is not live, is not this: it is unknown).
var ErrUnknownGroup = errors.New("no such task group")

// NomadGroups reads task groups through the Nomad HTTP API.
type NomadGroups struct {
	client *nomad.Client
}

var _ Groups = (*NomadGroups)(nil)

// NewNomadGroups reads groups with c.
func NewNomadGroups(c *nomad.Client) *NomadGroups { return &NomadGroups{client: c} }

// Group implements [Groups] with Jobs().Info: the group's Count and what
// one allocation asks for ([demand.PerAlloc]).
func (n *NomadGroups) Group(ctx context.Context, t policies.Target) (Group, error) {
	q := (&nomad.QueryOptions{Namespace: t.Namespace}).WithContext(ctx)
	job, _, err := n.client.Jobs().Info(t.Job, q)
	if err != nil {
		return Group{}, fmt.Errorf("reading nomad job %q in namespace %q: %w", t.Job, t.Namespace, err)
	}
	if job.Stop != nil && *job.Stop {
		return Group{}, fmt.Errorf("nomad job %q in namespace %q is stopped", t.Job, t.Namespace)
	}
	for _, tg := range job.TaskGroups {
		if tg.Name == nil || *tg.Name != t.Group {
			continue
		}
		var g Group
		if tg.Count != nil {
			g.Count = *tg.Count
		}
		size, cores := demand.PerAlloc(tg)
		g.CPUMHz, g.Cores, g.MemoryMB = size.CPUMHz, cores, size.MemoryMB
		return g, nil
	}
	return Group{}, fmt.Errorf("%w: nomad job %q in namespace %q has no task group %q", ErrUnknownGroup, t.Job, t.Namespace, t.Group)
}

// ClusterGroups reads task groups from the cluster model: no request to
// Nomad per evaluation. While the model is not live (it lost Nomad's
// event stream and lists again), the count is unknown: for MaxStale after
// the model was last live, Group gives its last known counts and says
// from when (Group.CountsAsOf); after that, or with MaxStale zero, Group
// fails.
type ClusterGroups struct {
	Cluster cluster.Source
	// MaxStale bounds how old the last known counts may be; zero: counts
	// are used only while the model is live.
	MaxStale time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

var _ Groups = ClusterGroups{}

// Group implements [Groups].
func (c ClusterGroups) Group(_ context.Context, t policies.Target) (Group, error) {
	s := c.Cluster.Snapshot()
	var asOf *time.Time
	if !s.Live() {
		sync := s.Sync()
		now := time.Now
		if c.Now != nil {
			now = c.Now
		}
		age := now().Sub(sync.LastLive)
		if c.MaxStale <= 0 || sync.LastLive.IsZero() || age > c.MaxStale {
			why := ""
			if c.MaxStale > 0 && !sync.LastLive.IsZero() {
				why = fmt.Sprintf("; its counts from %s are older than %s", sync.LastLive.UTC().Format(time.RFC3339), c.MaxStale)
			}
			return Group{}, fmt.Errorf("the count of %s is unknown: the cluster model is not following nomad (%s)%s", t, sync.Err, why)
		}
		asOf = &sync.LastLive
	}
	j, ok := s.Job(t.Namespace, t.Job)
	if !ok {
		return Group{}, fmt.Errorf("%w: nomad has no job %q in namespace %q", ErrUnknownGroup, t.Job, t.Namespace)
	}
	if j.Stop {
		return Group{}, fmt.Errorf("nomad job %q in namespace %q is stopped", t.Job, t.Namespace)
	}
	g, ok := j.Groups[t.Group]
	if !ok {
		return Group{}, fmt.Errorf("%w: nomad job %q in namespace %q has no task group %q", ErrUnknownGroup, t.Job, t.Namespace, t.Group)
	}
	return Group{Count: g.Count, CPUMHz: g.PerAlloc.CPUMHz, Cores: g.Cores, MemoryMB: g.PerAlloc.MemoryMB, CountsAsOf: asOf}, nil
}
