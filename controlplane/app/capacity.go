package app

import (
	"context"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/controlplane/controller"
	"github.com/spillwayhq/spillway/controlplane/scaler"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers/internalpool"
)

// counts is how the scaler sets job counts: straight through Nomad, or,
// when a shared pool is configured, through the scale-out controller,
// which also finds hosts for what Nomad cannot place.
func (a *App) counts(nc *nomad.Client) (scaler.Counts, error) {
	next := scaler.NomadCounts{Client: nc}
	if a.pools.Shared == nil {
		return next, nil
	}
	// Limits start empty (nothing may be borrowed) and are set from Nomad's
	// hosts before each scale-out.
	ledger, problems, err := pools.NewLedger(context.Background(), a.journal.LedgerStore(), a.pools.Limits(nil))
	if err != nil {
		return nil, err
	}
	for _, p := range problems {
		a.log.Warn("lending ledger entry does not fit the ledger", "problem", p)
	}
	a.ledger = ledger
	shared, err := internalpool.New(internalpool.Config{Nomad: nc, Pool: a.pools.Shared, Ledger: ledger, Cluster: "spillway"})
	if err != nil {
		return nil, err
	}
	a.controller = controller.New(controller.Config{
		Nomad: nc, Pools: a.pools, Ledger: ledger, Shared: shared, Journal: a.journal.Events(),
		Logger: a.log.With("component", "controller"), Registerer: a.reg,
	})
	if err := a.controller.RestorePauses(context.Background(), a.journal.Events()); err != nil {
		return nil, err
	}
	a.activities, a.stopActivities = context.WithCancel(context.Background())
	return &controller.Counts{Next: next, Controller: a.controller, Policies: a.Policies, Context: a.activities, Now: time.Now}, nil
}
