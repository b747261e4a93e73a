package controller

import (
	"context"
	"fmt"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/controlplane/scaler"
	"github.com/spillwayhq/spillway/policies"
	"github.com/spillwayhq/spillway/pools"
)

// OwnedHosts counts each business unit's hosts in Nomad: the hosts its
// selector matches and those it put in the shared pool. Lending shares are
// a share of them.
func OwnedHosts(ctx context.Context, nc *nomad.Client, cfg *pools.Config) (map[string]int, error) {
	stubs, _, err := nc.Nodes().List((&nomad.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	out := map[string]int{}
	for _, s := range stubs {
		n, _, err := nc.Nodes().Info(s.ID, (&nomad.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("reading node %s: %w", s.Name, err)
		}
		for _, bu := range cfg.BusinessUnits {
			if bu.Selector.Matches(n.NodePool, n.NodeClass, n.Meta) {
				out[bu.Name]++
			}
		}
		if cfg.Shared != nil && cfg.Shared.Selector.Matches(n.NodePool, n.NodeClass, n.Meta) {
			lenderKey := cfg.Shared.LenderMeta
			if lenderKey == "" {
				lenderKey = pools.MetaBusinessUnit
			}
			out[n.Meta[lenderKey]]++
		}
	}
	return out, nil
}

// Counts sets task group counts through Next and starts a scale-out
// activity when a count rises, so the hosts for it are found.
type Counts struct {
	Next       scaler.Counts
	Controller *Controller
	Policies   func() *policies.Set
	// Context bounds the activities; they outlive the scaling request.
	Context context.Context
	Now     func() time.Time
}

var (
	_ scaler.Counts      = (*Counts)(nil)
	_ scaler.CountReader = (*Counts)(nil)
)

// Count implements scaler.CountReader through Next.
func (c *Counts) Count(ctx context.Context, t policies.Target) (int, error) {
	r, ok := c.Next.(scaler.CountReader)
	if !ok {
		return 0, scaler.ErrCannotReadCount
	}
	return r.Count(ctx, t)
}

// Scale implements scaler.Counts.
func (c *Counts) Scale(ctx context.Context, t policies.Target, count int, message string, meta map[string]any) error {
	before, err := c.Count(ctx, t)
	if err != nil {
		before = -1 // unknown: scale, but start no activity
	}
	if err := c.Next.Scale(ctx, t, count, message, meta); err != nil {
		return err
	}
	if before < 0 || count <= before {
		return nil
	}
	now := c.Now()
	activity, _ := meta["spillway.activity"].(string)
	policyName, _ := meta["spillway.policy"].(string)
	bu, deadline := "", now.Add(policies.DefaultDeadline)
	if p, ok := c.Policies().Get(policyName); ok {
		bu = p.BusinessUnit
		if p.Deadline > 0 {
			deadline = now.Add(p.Deadline)
		}
	}
	c.Controller.Start(c.Context, Request{Activity: activity, Target: t, BusinessUnit: bu, Triggered: now, Decided: now, Deadline: deadline})
	return nil
}
