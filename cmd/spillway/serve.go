package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/spillwayhq/spillway/controlplane/app"
	"github.com/spillwayhq/spillway/controlplane/config"
	"github.com/spillwayhq/spillway/policies"
	"github.com/spillwayhq/spillway/pools"
)

func newServeCmd() *cobra.Command {
	var (
		file        string
		checkConfig bool
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the control plane",
		Long: `Run the control plane: the API, the console and the controllers.

Configuration comes from --config (YAML), then SPILLWAY_* environment
variables (key nomad.address is SPILLWAY_NOMAD_ADDRESS), then flags.
See examples/spillway.yaml for every key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			flags := []config.Flag{
				{Key: "listen", Flag: cmd.Flags().Lookup("listen")},
				{Key: "log.level", Flag: cmd.Flags().Lookup("log-level")},
				{Key: "log.format", Flag: cmd.Flags().Lookup("log-format")},
				{Key: "nomad.address", Flag: cmd.Flags().Lookup("nomad-address")},
				{Key: "prometheus.address", Flag: cmd.Flags().Lookup("prometheus-address")},
				{Key: "policies.dir", Flag: cmd.Flags().Lookup("policies")},
				{Key: "pools.dir", Flag: cmd.Flags().Lookup("pools")},
			}
			cfg, hash, err := config.Load(file, flags)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return exitError{code: 1}
			}
			if checkConfig {
				name := file
				if name == "" {
					name = "(defaults and environment)"
				}
				if cfg.Pools.Dir != "" {
					if _, err := pools.LoadDir(cfg.Pools.Dir); err != nil {
						fmt.Fprintln(cmd.ErrOrStderr(), err)
						return exitError{code: 1}
					}
				}
				n := 0
				if cfg.Policies.Dir != "" {
					set, err := policies.LoadDir(cfg.Policies.Dir)
					if err != nil {
						fmt.Fprintln(cmd.ErrOrStderr(), err)
						return exitError{code: 1}
					}
					n = set.Len()
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: configuration is valid (hash %s); %d policies\n", name, hash, n)
				return nil
			}
			log := app.NewLogger(cfg.Log, os.Stderr)
			a, err := app.New(cfg, hash, log, app.Options{})
			if err != nil {
				return err
			}
			defer a.Close()
			// SIGHUP reloads the policies, the same path as POST /v1/reload.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for {
					select {
					case <-hup:
						_, _ = a.Reload(cmd.Context())
					case <-cmd.Context().Done():
						return
					}
				}
			}()
			return a.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "config", "c", "", "configuration file (YAML)")
	f.BoolVar(&checkConfig, "check-config", false, "validate the configuration and exit")
	def := config.Default()
	f.String("listen", def.Listen, "address to serve the API, console and /metrics on")
	f.String("log-level", def.Log.Level, "log level: debug, info, warn or error")
	f.String("log-format", def.Log.Format, "log format: text or json")
	f.String("nomad-address", "", "Nomad HTTP address (default $NOMAD_ADDR or http://127.0.0.1:4646)")
	f.String("prometheus-address", def.Prometheus.Address, "Prometheus HTTP address")
	f.String("policies", "", "directory of scaling policy files")
	f.String("pools", "", "directory of pool files")
	return cmd
}
