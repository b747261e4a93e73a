package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spillwayhq/spillway/controlplane/config"
	"github.com/spillwayhq/spillway/controlplane/nomadapi"
	"github.com/spillwayhq/spillway/internal/demo"
)

func newDemoAppCmd() *cobra.Command {
	cfg := demo.DefaultAppConfig()
	var listen string
	cmd := &cobra.Command{
		Use:   "demo-app",
		Short: "Run one instance of the lab's demo service",
		Long: `Run one instance of the demo service: GET / does the work, /metrics
exposes spillway_demo_requests_total, spillway_demo_requests_in_flight and
spillway_demo_request_duration_seconds. Above --capacity requests per second
requests queue, latency rises sharply, and after --max-queue they are shed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := demo.NewApp(cfg)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			return a.Serve(cmd.Context(), listen, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8080", "address to listen on")
	f.Float64Var(&cfg.Capacity, "capacity", cfg.Capacity, "requests per second one instance serves before queueing")
	f.DurationVar(&cfg.BaseLatency, "base-latency", cfg.BaseLatency, "service time of a request on an idle instance")
	f.DurationVar(&cfg.MaxQueue, "max-queue", cfg.MaxQueue, "longest queueing before a request is shed with 503")
	return cmd
}

func newDemoLoadCmd() *cobra.Command {
	var (
		traceFile, service, nomadAddr, targets string
		cfg                                    = demo.LoadConfig{Speed: 1, Scale: 1}
	)
	cmd := &cobra.Command{
		Use:   "demo-load --trace FILE",
		Short: "Play a traffic trace against the demo service",
		Long: `Play a traffic trace (CSV rows of seconds,requests_per_second, linearly
interpolated) as open-loop load, spread over every instance of the demo
service that Nomad's service discovery lists (or over --targets).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if traceFile == "" {
				return fmt.Errorf("--trace is required")
			}
			tr, err := demo.ReadTraceFile(traceFile)
			if err != nil {
				return err
			}
			cfg.Trace = tr
			cfg.Progress = cmd.OutOrStdout()
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			if targets != "" {
				list := strings.Split(targets, ",")
				cfg.Targets = func() []string { return list }
			} else {
				nc, err := nomadapi.New(config.Nomad{Address: nomadAddr}, nomadapi.Options{})
				if err != nil {
					return err
				}
				log := slog.New(slog.NewTextHandler(os.Stderr, nil))
				cfg.Targets = demo.NomadTargets(ctx, nc, service, log)
			}
			g, err := demo.NewGenerator(cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "load: playing %s (%s of trace at %gx speed, scale %g)\n",
				traceFile, tr.Duration(), cfg.Speed, cfg.Scale)
			s, err := g.Run(ctx)
			fmt.Fprintf(cmd.OutOrStdout(), "load: done: sent %d, ok %d, failed %d, dropped %d, without a target %d\n",
				s.Sent, s.OK, s.Failed, s.Dropped, s.NoTarget)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&traceFile, "trace", "", "trace file (CSV: seconds,requests_per_second)")
	f.StringVar(&service, "service", "demo", "Nomad native service to send load to")
	f.StringVar(&nomadAddr, "nomad-address", "", "Nomad HTTP address (default $NOMAD_ADDR or http://127.0.0.1:4646)")
	f.StringVar(&targets, "targets", "", "comma-separated base URLs to use instead of Nomad service discovery")
	f.Float64Var(&cfg.Speed, "speed", 1, "trace seconds played per second")
	f.Float64Var(&cfg.Scale, "scale", 1, "multiplier for every rate in the trace")
	f.BoolVar(&cfg.Loop, "loop", false, "restart the trace when it ends")
	f.DurationVar(&cfg.ProgressEvery, "progress-every", 5*time.Second, "how often to print a progress line")
	return cmd
}
