package controller

import (
	"context"
	"time"
)

// ReconcileEvery is how often Run reconciles the ledger with Nomad and the
// clouds, and collects garbage.
const ReconcileEvery = time.Minute

// Run runs every controller until ctx ends (one term of the leader): first
// the reconcile pass (the ledger against Nomad and the clouds, then the
// resumption of interrupted scale-outs, and the end of the surges whose
// host was given back before a restart), then provisioning (on every change
// of the model), spot interruption notices, the rented hosts' health, the
// leases that ended or were reclaimed (Leases) and disruption every
// interval, and the reconcile pass and the garbage
// collector every ReconcileEvery.
func (c *Controller) Run(ctx context.Context, interval time.Duration) {
	log := c.cfg.Logger
	if err := c.RestoreTimeToReady(ctx, c.cfg.Journal); err != nil {
		log.Warn("restoring measured times-to-ready", "err", err)
	}
	if err := c.RestoreEnded(ctx, c.cfg.Journal); err != nil {
		log.Warn("restoring the scale-outs that ended with work queued", "err", err)
	}
	if err := c.RestoreSurges(ctx, c.cfg.Journal); err != nil {
		log.Warn("restoring the surges in flight", "err", err)
	}
	// The reconcile pass needs to know the cluster: wait for the model.
	for !c.cfg.Cluster.Snapshot().Live() {
		if err := c.pause(ctx, c.cfg.Cluster.Snapshot()); err != nil {
			return
		}
	}
	reconcile := func() {
		if _, err := c.Reconcile(ctx); err != nil {
			log.Warn("reconciling the ledger with nomad", "err", err)
		}
		if _, err := c.ReconcileClouds(ctx); err != nil {
			log.Warn("reconciling the clouds", "err", err)
		}
	}
	reconcile()
	if n, err := c.Resume(ctx); err != nil {
		log.Warn("resuming interrupted scale-outs", "err", err)
	} else if n > 0 {
		log.Info("resumed interrupted scale-outs", "count", n)
	}
	if n := c.resumeSurges(ctx); n > 0 {
		log.Info("ending surges a restart interrupted", "count", n)
	}
	done := make(chan struct{})
	go func() { defer close(done); c.provision(ctx) }()
	defer func() { <-done }()
	t := c.cfg.Clock.NewTicker(interval)
	defer t.Stop()
	r := c.cfg.Clock.NewTicker(ReconcileEvery)
	defer r.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.Chan():
			reconcile()
			if _, err := c.Collect(ctx); err != nil {
				log.Warn("collecting garbage in the clouds", "err", err)
			}
		case <-t.Chan():
			if _, err := c.Interruptions(ctx); err != nil {
				log.Warn("reading spot interruption notices", "err", err)
			}
			if _, err := c.Health(ctx); err != nil {
				log.Warn("following the rented hosts' health", "err", err)
			}
			if _, err := c.Leases(ctx); err != nil {
				log.Warn("giving back expired and reclaimed hosts", "err", err)
			}
			if _, err := c.Consolidate(ctx); err != nil {
				log.Warn("giving back hosts", "err", err)
			}
		}
	}
}
