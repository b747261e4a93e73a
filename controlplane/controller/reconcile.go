package controller

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spillwayhq/spillway/controlplane/journal"
)

// Journal event kinds of the reconciler.
const (
	KindDiscrepancy = "reconcile.discrepancy"
	KindRepaired    = "reconcile.repaired"
	KindRepairFail  = "reconcile.failed"
)

// Reconcile compares the lending ledger (the record of truth: every change
// reaches it before Nomad) with Nomad's node meta, and repairs what a crash
// or a hand edit left half done: a loan whose node is not marked is marked
// again, a node marked lent without a loan is drained and unmarked, a loan
// of a node Nomad no longer has is closed. Each difference and each repair
// is journaled. It returns how many differences it found.
func (c *Controller) Reconcile(ctx context.Context) (int, error) {
	if c.cfg.Shared == nil {
		return 0, nil
	}
	ds, err := c.cfg.Shared.Verify(ctx)
	if err != nil {
		return 0, fmt.Errorf("comparing the ledger with nomad: %w", err)
	}
	if len(ds) == 0 {
		return 0, nil
	}
	now := c.cfg.Now()
	for _, d := range ds {
		data, _ := json.Marshal(d)
		c.record(ctx, journal.Event{Time: now, Kind: KindDiscrepancy, Subject: "host/" + d.Host, Actor: "controller", Data: data,
			Message: "the ledger and nomad disagree: " + d.String()})
	}
	if err := c.cfg.Shared.Repair(ctx, ds); err != nil {
		c.fixes.WithLabelValues("failed").Add(1)
		c.record(ctx, journal.Event{Time: c.cfg.Now(), Kind: KindRepairFail, Actor: "controller",
			Message: fmt.Sprintf("repairing %d differences failed: %v", len(ds), err)})
		return len(ds), fmt.Errorf("repairing: %w", err)
	}
	c.fixes.WithLabelValues("repaired").Add(float64(len(ds)))
	c.record(ctx, journal.Event{Time: c.cfg.Now(), Kind: KindRepaired, Actor: "controller",
		Message: fmt.Sprintf("repaired %d differences between the ledger and nomad", len(ds))})
	return len(ds), nil
}
