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
	activity, _ := meta[scaler.MetaActivity].(string)
	policyName, _ := meta[scaler.MetaPolicy].(string)
	triggered, decided := metaTime(meta, scaler.MetaTriggeredAt, now), metaTime(meta, scaler.MetaDecidedAt, now)
	bu, deadline := "", triggered.Add(policies.DefaultDeadline)
	if p, ok := c.Policies().Get(policyName); ok {
		bu = p.BusinessUnit
		if p.Deadline > 0 {
			deadline = triggered.Add(p.Deadline)
		}
	}
	c.Controller.Start(c.Context, Request{Activity: activity, Target: t, BusinessUnit: bu, Triggered: triggered, Decided: decided, Deadline: deadline})
	return nil
}

// metaTime reads a time the scaler put in meta, or def.
func metaTime(meta map[string]any, key string, def time.Time) time.Time {
	s, _ := meta[key].(string)
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return def
	}
	return t
}
