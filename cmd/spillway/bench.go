package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spillwayhq/spillway/internal/scalesim"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure Spillway against simulated clouds and clusters",
	}
	cmd.AddCommand(newBenchScaleoutCmd())
	return cmd
}

func newBenchScaleoutCmd() *cobra.Command {
	var (
		kinds []string
		hosts int
		seed  int64
	)
	cmd := &cobra.Command{
		Use:   "scaleout",
		Short: "Simulate scale-outs and report time-to-capacity and Spillway's overhead",
		Long: `Run the real controllers, cluster model, SQLite journal and EC2 provider
over the real SDK against the cloud simulator and a simulated Nomad, on one
simulated clock, and report for each scenario the time-to-capacity (p50, p95,
p99), Spillway's overhead over the physical lower bound, fallback and decision
latency, peak RSS and CPU seconds. The same seed gives the same simulated
figures; decision and fallback latency add the wall time Spillway computed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var scs []scalesim.Scenario
			for _, k := range kinds {
				sc, err := scalesim.NewScenario(k, hosts, seed)
				if err != nil {
					return err
				}
				scs = append(scs, sc)
			}
			// The simulated cloud is in-process and plain HTTP: a CA
			// bundle from the environment would make the SDK fail to load.
			os.Unsetenv("AWS_CA_BUNDLE")
			dir, err := os.MkdirTemp("", "spillway-bench-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			bar := isTerminal(errOut)
			for i, sc := range scs {
				var progress func(done, total int)
				if bar {
					progress = progressBar(errOut, sc.Name)
				}
				sdir := filepath.Join(dir, strconv.Itoa(i))
				if err := os.Mkdir(sdir, 0o700); err != nil {
					return err
				}
				res, err := scalesim.Run(cmd.Context(), sc, sdir, progress)
				if bar {
					fmt.Fprintln(errOut)
				}
				if err != nil {
					return fmt.Errorf("scenario %s: %w", sc.Name, err)
				}
				if !bar {
					fmt.Fprintf(errOut, "%s: placed %d of %d in %s simulated, %s wall\n", sc.Name, res.Placed, res.Hosts,
						res.Simulated.Round(time.Millisecond), res.Wall.Round(time.Millisecond))
				}
				writeFigures(out, sc, res)
			}
			fmt.Fprintln(out, "Sources of the latencies:")
			for _, s := range scalesim.Sources {
				fmt.Fprintf(out, "  - %s\n", s)
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&kinds, "scenario", []string{scalesim.Plain}, fmt.Sprintf("scenarios to run, of %s", strings.Join(scalesim.Kinds, ", ")))
	cmd.Flags().IntVar(&hosts, "hosts", 1000, "hosts each scenario's burst needs")
	cmd.Flags().Int64Var(&seed, "seed", 1, "random seed: the same seed gives the same simulated figures")
	return cmd
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressBar redraws one line: the scenario, a bar and done/total.
func progressBar(w io.Writer, name string) func(done, total int) {
	last := -1
	return func(done, total int) {
		const width = 40
		n := 0
		if total > 0 {
			n = done * width / total
		}
		if n == last && done != total {
			return
		}
		last = n
		fmt.Fprintf(w, "\r%-16s [%s%s] %d/%d", name, strings.Repeat("#", n), strings.Repeat(".", width-n), done, total)
	}
}

// writeFigures prints one scenario's figures.
func writeFigures(w io.Writer, sc scalesim.Scenario, r *scalesim.Result) {
	q := func(xs []time.Duration, p float64) string {
		if len(xs) == 0 {
			return "-"
		}
		return scalesim.Quantile(xs, p).Round(time.Millisecond).String()
	}
	quantiles := func(xs []time.Duration) string {
		if len(xs) == 0 {
			return "none"
		}
		return fmt.Sprintf("p50 %s  p95 %s  p99 %s  (n=%d)", q(xs, .5), q(xs, .95), q(xs, .99), len(xs))
	}
	fmt.Fprintf(w, "%s (seed %d): placed %d of %d burst allocations, %d launch requests, %d instances, %s simulated\n",
		sc.Name, sc.Seed, r.Placed, r.Hosts, r.Launches, r.Instances, r.Simulated.Round(time.Millisecond))
	fmt.Fprintf(w, "  time to capacity     %s\n", quantiles(r.TimeToCapacity))
	fmt.Fprintf(w, "  physical lower bound %s\n", quantiles(r.LowerBound))
	over := "-"
	if lb := scalesim.Quantile(r.LowerBound, .99); lb > 0 {
		over = fmt.Sprintf("%+.1f%%", 100*(float64(scalesim.Quantile(r.TimeToCapacity, .99))/float64(lb)-1))
	}
	fmt.Fprintf(w, "  overhead             %s over the lower bound at p99; per allocation %s\n", over, quantiles(r.Overhead))
	fmt.Fprintf(w, "  fallback latency     %s\n", quantiles(r.Fallback))
	fmt.Fprintf(w, "  decision latency     %s\n", quantiles(r.Decision))
	fmt.Fprintf(w, "  peak RSS %.1f MB, CPU %.1f s, wall %s\n", float64(r.PeakRSS)/(1<<20), r.CPU.Seconds(), r.Wall.Round(time.Millisecond))
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "  launch errors %v\n", r.Errors)
	}
}
