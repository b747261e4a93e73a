package cluster

import (
	"context"
	"errors"

	nomad "github.com/hashicorp/nomad/api"
)

// Feed is what the model reads of Nomad: the event stream it follows, and
// the lists (and the single reads a list needs) it starts from and goes
// back to when the stream breaks. NomadFeed is the real one; the scale
// simulation (internal/scalesim) feeds the model a simulated Nomad
// through it. Each method has the contract of the Nomad API call it is
// named after: the same query options, paging and errors (a 404 as
// nomad.UnexpectedResponseError, or ErrNotFound: IsNotFound).
type Feed interface {
	// Stream is EventStream().Stream.
	Stream(ctx context.Context, topics map[nomad.Topic][]string, index uint64, q *nomad.QueryOptions) (<-chan *nomad.Events, error)
	// Nodes is Nodes().List; Node is Nodes().Info.
	Nodes(q *nomad.QueryOptions) ([]*nomad.NodeListStub, *nomad.QueryMeta, error)
	Node(id string, q *nomad.QueryOptions) (*nomad.Node, *nomad.QueryMeta, error)
	// Allocations is Allocations().List.
	Allocations(q *nomad.QueryOptions) ([]*nomad.AllocationListStub, *nomad.QueryMeta, error)
	// Jobs is Jobs().List; Job is Jobs().Info; JobEvaluations is
	// Jobs().Evaluations.
	Jobs(q *nomad.QueryOptions) ([]*nomad.JobListStub, *nomad.QueryMeta, error)
	Job(id string, q *nomad.QueryOptions) (*nomad.Job, *nomad.QueryMeta, error)
	JobEvaluations(id string, q *nomad.QueryOptions) ([]*nomad.Evaluation, *nomad.QueryMeta, error)
	// Deployments is Deployments().List.
	Deployments(q *nomad.QueryOptions) ([]*nomad.Deployment, *nomad.QueryMeta, error)
}

// NomadFeed is the Feed of a real Nomad.
type NomadFeed struct{ Client *nomad.Client }

var (
	_ Feed   = NomadFeed{}
	_ Prober = NomadFeed{}
)

// Leader implements Prober.
func (f NomadFeed) Leader(ctx context.Context) (string, error) { return Leader(ctx, f.Client) }

// Leader is the address of Nomad's leader, asked within ctx
// (Status().Leader takes no options, so it asks the raw endpoint): an
// error when Nomad does not answer or has no leader. The model's probe,
// the daemon's readiness and its status all ask it so.
func Leader(ctx context.Context, c *nomad.Client) (string, error) {
	var leader string
	if _, err := c.Raw().Query("/v1/status/leader", &leader, (&nomad.QueryOptions{}).WithContext(ctx)); err != nil {
		return "", err
	}
	if leader == "" {
		return "", errors.New("no leader")
	}
	return leader, nil
}

// Stream implements Feed.
func (f NomadFeed) Stream(ctx context.Context, topics map[nomad.Topic][]string, index uint64, q *nomad.QueryOptions) (<-chan *nomad.Events, error) {
	return f.Client.EventStream().Stream(ctx, topics, index, q)
}

// Nodes implements Feed.
func (f NomadFeed) Nodes(q *nomad.QueryOptions) ([]*nomad.NodeListStub, *nomad.QueryMeta, error) {
	return f.Client.Nodes().List(q)
}

// Node implements Feed.
func (f NomadFeed) Node(id string, q *nomad.QueryOptions) (*nomad.Node, *nomad.QueryMeta, error) {
	return f.Client.Nodes().Info(id, q)
}

// Allocations implements Feed.
func (f NomadFeed) Allocations(q *nomad.QueryOptions) ([]*nomad.AllocationListStub, *nomad.QueryMeta, error) {
	return f.Client.Allocations().List(q)
}

// Jobs implements Feed.
func (f NomadFeed) Jobs(q *nomad.QueryOptions) ([]*nomad.JobListStub, *nomad.QueryMeta, error) {
	return f.Client.Jobs().List(q)
}

// Job implements Feed.
func (f NomadFeed) Job(id string, q *nomad.QueryOptions) (*nomad.Job, *nomad.QueryMeta, error) {
	return f.Client.Jobs().Info(id, q)
}

// JobEvaluations implements Feed.
func (f NomadFeed) JobEvaluations(id string, q *nomad.QueryOptions) ([]*nomad.Evaluation, *nomad.QueryMeta, error) {
	return f.Client.Jobs().Evaluations(id, q)
}

// Deployments implements Feed.
func (f NomadFeed) Deployments(q *nomad.QueryOptions) ([]*nomad.Deployment, *nomad.QueryMeta, error) {
	return f.Client.Deployments().List(q)
}
