package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
)

// Collect is the garbage collector's pass over the clouds:
//   - an instance tagged as this cluster's that no ledger entry and no
//     journaled claim names (a crash before the intent was durable, a
//     launch from elsewhere) is terminated once it is older than
//     OrphanGrace;
//   - a rented host that never registered as a Nomad node within its ready
//     timeout, and that no activity in flight follows (activities replace
//     their own stuck hosts), is terminated.
//
// It acts only on a live cluster model and on listings that succeeded: a
// node missing from a model that is not following Nomad, or a pool that
// could not be listed, is unknown, not gone. A host whose node registered
// and then went down is not collected here. It returns what it terminated.
func (c *Controller) Collect(ctx context.Context) ([]string, error) {
	if c.cfg.Ledger == nil {
		return nil, nil
	}
	snap := c.cfg.Cluster.Snapshot()
	if !snap.Live() {
		return nil, nil
	}
	claims, err := c.journaledClaims(ctx)
	if err != nil {
		return nil, err
	}
	nodeOf := byInstance(snap.NodeUsage())
	c.mu.Lock()
	busy := len(c.active) > 0
	c.mu.Unlock()
	now := c.now()
	var done []string
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(c.cfg.Clouds)) {
		hosts, err := c.cfg.Clouds[name].List(ctx, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing the hosts of %s: %w", name, err))
			continue
		}
		for _, h := range hosts {
			loan, lent := c.cfg.Ledger.Loan(h.ID)
			switch {
			case !lent:
				if _, known := claims[h.Claim]; known {
					continue // the reconciler adopts it
				}
				age := now.Sub(h.LaunchedAt)
				if h.LaunchedAt.IsZero() || age <= c.cfg.OrphanGrace {
					continue
				}
				if err := c.terminate(ctx, h, "", "collector", fmt.Sprintf("tagged as this cluster's for %s, but no journaled claim names it (claim %q)", age.Round(time.Second), h.Claim)); err != nil {
					errs = append(errs, err)
					continue
				}
				c.fixes.WithLabelValues("repaired").Inc()
				done = append(done, h.ID)
			case loan.Tier != pools.TierShared && !busy:
				if _, registered := nodeOf[h.ID]; registered {
					continue
				}
				cp, ok := c.cfg.Pools.CloudPool(name)
				if !ok || now.Sub(loan.Since) <= readyTimeout(c.ready.estimate(cp)) {
					continue
				}
				host := providers.Host{ID: h.ID, Pool: name, Claim: loan.Claim}
				if err := c.terminate(ctx, host, "", "collector", fmt.Sprintf("it never became a nomad node in %s", now.Sub(loan.Since).Round(time.Second))); err != nil {
					errs = append(errs, err)
					continue
				}
				done = append(done, h.ID)
			}
		}
	}
	return done, errors.Join(errs...)
}
