package controller

import (
	"context"
	"time"

	"github.com/spillwayhq/spillway/controlplane/scaler"
	"github.com/spillwayhq/spillway/policies"
)

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
