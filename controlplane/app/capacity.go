package app

import (
	"context"
	"log/slog"
	"os"
	"syscall"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/controlplane/controller"
	"github.com/spillwayhq/spillway/controlplane/scaler"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/internalpool"
)

// FailpointEnv names a controller failpoint (controller.Fail*) at which
// serve kills itself with SIGKILL, for the crash tests. Never set it in
// production.
const FailpointEnv = "SPILLWAY_FAILPOINT"

// counts is how the scaler sets job counts: straight through Nomad, or,
// when a shared pool or cloud pools are configured, through the scale-out
// controller, which also finds hosts for what Nomad cannot place.
func (a *App) counts(nc *nomad.Client) (scaler.Counts, error) {
	next := scaler.NomadCounts{Client: nc}
	if a.pools.Shared == nil && len(a.pools.CloudPools) == 0 {
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
	var shared *internalpool.Provider
	if a.pools.Shared != nil {
		if shared, err = internalpool.New(internalpool.Config{Nomad: nc, Pool: a.pools.Shared, Ledger: ledger, Cluster: a.cfg.Clouds.Cluster}); err != nil {
			return nil, err
		}
	}
	var clouds map[string]providers.Provider
	if len(a.pools.CloudPools) > 0 {
		if clouds, err = cloudProviders(context.Background(), a.cfg.Clouds, a.pools, providerOptions{
			reg: a.reg, log: a.log.With("component", "provider"), guard: a.guard, appID: a.identity(),
		}); err != nil {
			return nil, err
		}
	}
	a.controller = controller.New(controller.Config{
		Nomad: nc, Pools: a.pools, Ledger: ledger, Shared: shared, Clouds: clouds, OrphanGrace: a.cfg.Clouds.OrphanGrace,
		Journal: a.journal.Events(), Logger: a.log.With("component", "controller"), Registerer: a.reg,
		Failpoint: failpoint(a.log),
	})
	if err := a.controller.RestorePauses(context.Background(), a.journal.Events()); err != nil {
		return nil, err
	}
	a.activities, a.stopActivities = context.WithCancel(context.Background())
	return &controller.Counts{Next: next, Controller: a.controller, Policies: a.Policies, Context: a.activities, Now: time.Now}, nil
}

// failpoint returns the controller's failpoint hook when FailpointEnv is
// set: at that point, the process kills itself as a crash would.
func failpoint(log *slog.Logger) func(string) {
	at := os.Getenv(FailpointEnv)
	if at == "" {
		return nil
	}
	log.Warn("crash failpoint armed: serve kills itself with SIGKILL there", "point", at, "env", FailpointEnv)
	return func(point string) {
		if point == at {
			log.Warn("crash failpoint reached: SIGKILL", "point", point)
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}
}
