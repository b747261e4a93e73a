package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spillwayhq/spillway/internal/lab"
	"github.com/spillwayhq/spillway/providers/cloudsim"
)

func newLabCmd() *cobra.Command {
	opts := lab.DefaultOptions()
	var (
		units     string
		demoCount int
		serve     bool
		trace     string
		speed     float64
		scale     float64
		cloud     string
		// summaryEvery is how often the live summary prints.
		summaryEvery time.Duration
	)
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run the local hybrid-cloud lab until Ctrl-C",
		Long: `Run the local hybrid-cloud lab on loopback: a Nomad server, Nomad clients
for each business unit's hosts and the shared pool, Prometheus, Alertmanager,
the control plane, and the demo service with its load generator playing a
traffic trace. Ctrl-C stops everything it started.

By default it tells Spillway's story in a loop of about 14 minutes: the
hot-topic trace, four times faster, over little capacity (bu-a and bu-b own
one host each, one host is lent to the shared pool, a host holds four demo
instances). Within 3 minutes the demo borrows the shared host, rents an AWS
host, finds AWS out of capacity and rents on Alibaba Cloud; then, as the
trace decays, everything is given back, rented hosts first. Every option
below allows another setup.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bus, err := parseUnits(units)
			if err != nil {
				return err
			}
			checks := [][2]string{{"cloud", cloud}}
			if serve {
				checks = append(checks, [2]string{"policies", opts.Policies})
			}
			if demoCount > 0 {
				checks = append(checks, [2]string{"trace", trace})
			}
			for _, f := range checks {
				if err := defaultExists(cmd, f[0], f[1]); err != nil {
					return err
				}
			}
			opts.BusinessUnits = bus
			opts.Serve = serve
			opts.LabPools = true
			if opts.Spillway, err = os.Executable(); err != nil {
				return err
			}
			if demoCount > 0 {
				opts.Demo = &lab.DemoOptions{Count: demoCount, BusinessUnit: bus[0].Name, Capacity: 100}
				if trace != "" {
					opts.Load = &lab.LoadOptions{Trace: trace, Speed: speed, Scale: scale, Loop: true}
				}
			} else {
				opts.Demo = nil
			}
			if cloud != "" {
				cfg, err := cloudsim.LoadConfig(cloud)
				if err != nil {
					return err
				}
				opts.Cloud = &lab.CloudOptions{Config: cfg}
			}
			opts.Progress = cmd.OutOrStdout()
			start := time.Now()
			l, err := lab.Start(cmd.Context(), opts)
			if err != nil {
				return err
			}
			defer func() {
				fmt.Fprintln(cmd.OutOrStdout(), "lab: stopping")
				l.Stop()
				fmt.Fprintln(cmd.OutOrStdout(), "lab: stopped")
			}()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "\nThe lab is up (%s). Ctrl-C stops it.\n\n", time.Since(start).Round(time.Second))
			if l.SpillwayURL != "" {
				fmt.Fprintf(out, "  Console           %s/\n", l.SpillwayURL)
				fmt.Fprintf(out, "  Console login     %s\n", l.ConsoleLoginLink())
				fmt.Fprintf(out, "  Control plane API %s\n", l.SpillwayURL)
				fmt.Fprintf(out, "  Metrics           %s/metrics\n", l.SpillwayURL)
				fmt.Fprintf(out, "  API token (admin) %s\n", l.APIToken)
				fmt.Fprintf(out, "  Operator token    %s\n", l.OperatorToken)
				fmt.Fprintf(out, "  Viewer token      %s\n", l.ViewerToken)
			}
			fmt.Fprintf(out, "  Nomad UI and API  %s  (NOMAD_ADDR=%s)\n", l.NomadAddr, l.NomadAddr)
			fmt.Fprintf(out, "  Prometheus        %s\n", l.PrometheusURL)
			fmt.Fprintf(out, "  Alertmanager      %s\n", l.AlertmanagerURL)
			if sim := l.Cloud(); sim != nil {
				for _, c := range []string{cloudsim.CloudAWS, cloudsim.CloudAlicloud} {
					if acct, ok := sim.Credentials(c); ok {
						fmt.Fprintf(out, "  %-17s %s  region %s, key %s (see docs/cloudsim.md)\n",
							"Cloud ("+c+")", sim.Endpoint(c), sim.Region(c), acct.AccessKeyID)
					}
				}
			}
			fmt.Fprintf(out, "  Logs              %s/logs\n\n", l.Dir)
			if summaryEvery > 0 {
				liveSummary(cmd.Context(), out, l, summaryEvery)
			}
			<-cmd.Context().Done()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Dir, "dir", "", "lab directory (default: a new temporary directory, removed on exit)")
	f.BoolVar(&opts.KeepDir, "keep", false, "keep the lab directory on exit")
	f.StringVar(&units, "business-units", "bu-a=1,bu-b=1", "business units and their host counts")
	f.IntVar(&opts.SharedHosts, "shared-hosts", 1, "hosts lent to the shared pool")
	f.IntVar(&opts.HostCPU, "host-cpu", 1000, "CPU (MHz) of every internal and cloud host; a demo instance takes 250")
	f.IntVar(&opts.HostMemoryMB, "host-memory", 1024, "memory (MB) of every internal and cloud host; a demo instance takes 64")
	f.BoolVar(&serve, "serve", true, "run the control plane")
	f.StringVar(&cloud, "cloud", "examples/lab/cloudsim.yaml", "cloud simulator config; its instances boot real Nomad clients (empty: no cloud)")
	f.StringVar(&opts.Policies, "policies", "examples/lab/policies", "the control plane's scaling policy directory (empty: none; policies/examples holds others)")
	f.StringVar(&opts.Pools, "pools", "", "the control plane's pool directory (default: pool files written from the lab's own business units, shared pool and simulated clouds)")
	f.IntVar(&demoCount, "demo", 2, "demo service instances to start with (0: no demo)")
	f.StringVar(&trace, "trace", "testdata/traces/hot-topic.csv", "traffic trace the load generator plays in a loop (empty: no load)")
	f.Float64Var(&speed, "speed", 4, "trace seconds played per second")
	f.Float64Var(&scale, "scale", 1, "multiplier for the trace's request rates")
	f.DurationVar(&summaryEvery, "summary", 5*time.Second, "how often to print the live summary (0: never); redrawn in place on a terminal")
	return cmd
}

// liveSummary prints the lab's summary every interval until ctx ends: a
// block redrawn in place when out is a terminal, else one plain line each
// time.
func liveSummary(ctx context.Context, out io.Writer, l *lab.Lab, every time.Duration) {
	tty := false
	if f, ok := out.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	drawn := 0
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		s := l.Summary(ctx)
		if ctx.Err() != nil {
			return
		}
		if tty {
			if drawn > 0 {
				fmt.Fprintf(out, "\x1b[%dA\x1b[J", drawn) // up, and clear to the end
			}
			lines := s.Block()
			fmt.Fprintln(out, strings.Join(lines, "\n"))
			drawn = len(lines)
		} else {
			fmt.Fprintln(out, s.Line())
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// defaultExists explains a default path (relative to the repository's
// root) that is not there: the lab was started elsewhere.
func defaultExists(cmd *cobra.Command, flag, path string) error {
	if path == "" || cmd.Flags().Changed(flag) {
		return nil
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("--%s: the default %s is not here (%w); run spillway lab from the repository's root, or pass --%s (empty for none)", flag, path, err, flag)
	}
	return nil
}

// parseUnits reads "bu-a=1,bu-b=1".
func parseUnits(s string) ([]lab.BusinessUnit, error) {
	var out []lab.BusinessUnit
	for _, part := range strings.Split(s, ",") {
		name, n, ok := strings.Cut(strings.TrimSpace(part), "=")
		hosts, err := strconv.Atoi(n)
		if !ok || name == "" || err != nil || hosts < 0 {
			return nil, fmt.Errorf("--business-units: want name=hosts[,name=hosts...], got %q", part)
		}
		out = append(out, lab.BusinessUnit{Name: name, Hosts: hosts})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--business-units: at least one is required")
	}
	return out, nil
}
