package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/spillwayhq/spillway/providers/cloudsim"
)

func newCloudsimCmd() *cobra.Command {
	var (
		listen    string
		config    string
		seed      int64
		timeScale float64
	)
	cmd := &cobra.Command{
		Use:   "cloudsim",
		Short: "Run the wire-level EC2 and ECS cloud simulator",
		Long: `Run Spillway's cloud simulator standalone. One HTTP server speaks the EC2
Query API and the Alibaba Cloud ECS RPC API, verifying SigV4 and HMAC-SHA1
signatures against the accounts in the config, and a test API under
/_cloudsim/v1/ to inspect instances, set capacity and inject faults.
Point a stock AWS client at it with --endpoint-url; see docs/cloudsim.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cloudsim.ParseConfig(nil)
			if config != "" {
				cfg, err = cloudsim.LoadConfig(config)
			}
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("seed") {
				cfg.Seed = seed
			}
			if cmd.Flags().Changed("time-scale") {
				cfg.TimeScale = timeScale
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			sim, err := cloudsim.New(cfg, cloudsim.WithLogger(log),
				cloudsim.WithBootHook(func(_ context.Context, ev cloudsim.InstanceEvent) {
					log.Info("instance booted", "provider", ev.Provider, "instance", ev.InstanceID, "zone", ev.Zone, "type", ev.InstanceType, "userDataBytes", len(ev.UserData))
				}),
				cloudsim.WithTerminateHook(func(_ context.Context, ev cloudsim.InstanceEvent) {
					log.Info("instance terminating", "provider", ev.Provider, "instance", ev.InstanceID)
				}))
			if err != nil {
				return err
			}
			if err := sim.Start(listen); err != nil {
				return err
			}
			defer sim.Close()
			eff := sim.Config()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "cloudsim: listening on %s (seed %d, time scale %g, error rate %g)\n", sim.URL(), eff.Seed, eff.TimeScale, *eff.ErrorRate)
			for _, a := range eff.AWS.Accounts {
				fmt.Fprintf(out, "cloudsim: aws region %s: AWS_ACCESS_KEY_ID=%s (account %s) endpoint %s\n", eff.AWS.Region, a.AccessKeyID, a.ID, sim.URL())
			}
			for _, a := range eff.Alicloud.Accounts {
				fmt.Fprintf(out, "cloudsim: alicloud region %s: access key %s endpoint %s (scheme http)\n", eff.Alicloud.Region, a.AccessKeyID, sim.Addr())
			}
			fmt.Fprintf(out, "cloudsim: test API at %s/_cloudsim/v1/\n", sim.URL())
			<-cmd.Context().Done()
			fmt.Fprintln(out, "cloudsim: stopping")
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:4566", "address to serve the cloud APIs and test API on")
	cmd.Flags().StringVar(&config, "config", "", "simulator config YAML (accounts, offerings, quotas, latencies); defaults apply when empty")
	cmd.Flags().Int64Var(&seed, "seed", 0, "random seed, overriding the config's")
	cmd.Flags().Float64Var(&timeScale, "time-scale", 1, "multiply simulated latencies (0.1 = ten times faster), overriding the config's")
	return cmd
}
