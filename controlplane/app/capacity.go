package app

import (
	"context"
	"log/slog"
	"os"
	"syscall"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/controlplane/controller"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/internalpool"
)

// FailpointEnv names a controller failpoint (controller.Fail*) at which
// serve kills itself with SIGKILL, for the crash tests. Never set it in
// production.
const FailpointEnv = "SPILLWAY_FAILPOINT"

// controllers builds the capacity controllers when a shared pool or cloud
// pools are configured: the lending ledger, the shared pool's provider, the
// cloud providers, and the controller that finds hosts for what Nomad
// cannot place (whoever raised the count) and gives them back.
func (a *App) controllers(nc *nomad.Client) error {
	if a.pools.Shared == nil && len(a.pools.CloudPools) == 0 {
		return nil
	}
	// Limits start empty (nothing may be borrowed) and are set from Nomad's
	// hosts before each scale-out.
	ledger, problems, err := pools.NewLedger(context.Background(), a.journal.LedgerStore(), a.pools.Limits(nil))
	if err != nil {
		return err
	}
	for _, p := range problems {
		a.log.Warn("lending ledger entry does not fit the ledger", "problem", p)
	}
	a.ledger = ledger
	var shared controller.SharedPool
	if a.pools.Shared != nil {
		p, err := internalpool.New(internalpool.Config{Nomad: nc, Pool: a.pools.Shared, Ledger: ledger, Cluster: a.cfg.Clouds.Cluster,
			Nodes: a.sharedNodes,
			// The one drain: the controller's, made below.
			Drain: func(ctx context.Context, node string, deadline time.Duration, reason string) error {
				return a.controller.DrainNode(ctx, node, deadline, reason)
			},
			Now: a.clock.Now})
		if err != nil {
			return err
		}
		shared = p
	}
	var clouds map[string]providers.Provider
	if len(a.pools.CloudPools) > 0 {
		if clouds, err = cloudProviders(context.Background(), a.cfg.Clouds, a.pools, providerOptions{
			reg: a.reg, log: a.log.With("component", "provider"), guard: a.guard, appID: a.identity(), clock: a.clock,
		}); err != nil {
			return err
		}
	}
	a.controller = controller.New(controller.Config{
		Cluster: a.model, Orchestrator: a.orchestrator, Policies: a.Policies,
		Pools: a.pools, Ledger: ledger, Shared: shared, Clouds: clouds,
		OrphanGrace: a.cfg.Clouds.OrphanGrace, DownGrace: a.cfg.Clouds.DownGrace, ClusterName: a.cfg.Clouds.Cluster,
		ActivityGrace: a.cfg.ScaleOut.Grace,
		Journal:       a.journal.Events(), Logger: a.log.With("component", "controller"), Registerer: a.reg,
		Failpoint: failpoint(a.log), Clock: a.clock, Traffic: a.trafficPerAllocation,
	})
	if err := a.controller.RestoreLinks(context.Background(), a.journal.Events()); err != nil {
		return err
	}
	if err := a.controller.RestorePauses(context.Background(), a.journal.Events()); err != nil {
		return err
	}
	// Before the scaler's first evaluation: a group a surge raised is held.
	return a.controller.RestoreSurges(context.Background(), a.journal.Events())
}

// sharedNodes gives Nomad's nodes with their usage from the cluster model:
// the shared pool's provider counts free hosts and verifies the ledger
// with them, and the accountant fills the capacity gauges, without
// reading a node from Nomad.
func (a *App) sharedNodes(context.Context) ([]pools.NodeUsage, error) {
	s, err := a.liveSnapshot()
	if err != nil {
		return nil, err
	}
	return s.NodeUsage(), nil
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
