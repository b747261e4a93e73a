package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spillwayhq/spillway/controlplane/buildinfo"
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
		kinds      []string
		hosts      int
		seed       int64
		markdown   string
		goBench    string
		cpuProfile string
		memProfile string
		missedOut  string
	)
	cmd := &cobra.Command{
		Use:   "scaleout",
		Short: "Simulate scale-outs and report time-to-capacity and Spillway's overhead",
		Long: `Run the real controllers, cluster model, SQLite journal and EC2 provider
over the real SDK against the cloud simulator and a simulated Nomad, on one
simulated clock, and report for each scenario the time-to-capacity (p50, p95,
p99), Spillway's overhead over the physical lower bound, fallback and decision
latency, peak RSS and CPU seconds. The same seed gives the same simulated
figures; decision and fallback latency are Spillway's processing, the busy
wall time between the two moments (the simulated waits not in it), and the
simulated time between them is reported beside them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var scs []scalesim.Scenario
			for _, k := range kinds {
				sc, err := scalesim.NewScenario(k, hosts, seed)
				if err != nil {
					return err
				}
				if memProfile != "" {
					sc.HeapProfile = fmt.Sprintf("%s.%s", memProfile, k)
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
			started := time.Now()
			var results []*scalesim.Result
			for i, sc := range scs {
				var progress func(done, total int)
				if bar {
					progress = progressBar(errOut, sc.Name)
				}
				sdir := filepath.Join(dir, strconv.Itoa(i))
				if err := os.Mkdir(sdir, 0o700); err != nil {
					return err
				}
				stop, err := startProfile(cpuProfile, kinds[i])
				if err != nil {
					return err
				}
				res, err := scalesim.Run(cmd.Context(), sc, sdir, progress)
				stop()
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
				results = append(results, res)
			}
			fmt.Fprintln(out, "Sources of the latencies:")
			for _, s := range scalesim.Sources {
				fmt.Fprintf(out, "  - %s\n", s)
			}
			if markdown == "" {
				return nil
			}
			var goOut []byte
			if goBench != "" {
				if goOut, err = os.ReadFile(goBench); err != nil {
					return err
				}
			}
			var b strings.Builder
			missed := writeMarkdown(&b, started, scs, results, goOut)
			if missedOut != "" {
				var names []string
				for i, m := range missed {
					if m {
						names = append(names, kinds[i])
					}
				}
				if err := os.WriteFile(missedOut, []byte(strings.Join(names, "\n")), 0o644); err != nil {
					return err
				}
			}
			return os.WriteFile(markdown, []byte(b.String()), 0o644)
		},
	}
	cmd.Flags().StringVar(&markdown, "markdown", "", "also write the report as Markdown to this file (BENCHMARKS.md)")
	cmd.Flags().StringVar(&goBench, "go-bench", "", "go test -bench output to include in the Markdown report")
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of each scenario to this file name with the scenario appended")
	cmd.Flags().StringVar(&missedOut, "missed", "", "write the scenarios that missed a target, one a line, to this file (make bench appends their CPU profiles)")
	cmd.Flags().StringVar(&memProfile, "memprofile", "", "write a heap profile of each scenario, once its burst is placed, to this file name with the scenario appended")
	cmd.Flags().StringSliceVar(&kinds, "scenario", []string{scalesim.Plain}, fmt.Sprintf("scenarios to run, of %s", strings.Join(scalesim.Kinds, ", ")))
	cmd.Flags().IntVar(&hosts, "hosts", 1000, "hosts each scenario's burst needs")
	cmd.Flags().Int64Var(&seed, "seed", 1, "random seed: the same seed gives the same simulated figures")
	return cmd
}

// startProfile starts a CPU profile of scenario kind to path.kind when
// path is set, and returns what stops it.
func startProfile(path, kind string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path + "." + kind)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("profiling: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
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
	fmt.Fprintf(w, "  fallback latency     %s (Spillway's processing)\n", quantiles(r.Fallback))
	fmt.Fprintf(w, "    simulated          %s (capacity error to the next request)\n", quantiles(r.FallbackSim))
	fmt.Fprintf(w, "  decision latency     %s (Spillway's processing)\n", quantiles(r.Decision))
	fmt.Fprintf(w, "    simulated          %s (trigger to the first launch request: pacing, polls)\n", quantiles(r.DecisionSim))
	fmt.Fprintf(w, "  peak RSS %.1f MB, CPU %.1f s, wall %s, %d steps of the clock (%d not waiting for quiet)\n",
		float64(r.PeakRSS)/(1<<20), r.CPU.Seconds(), r.Wall.Round(time.Millisecond), r.Steps, r.Forced)
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "  launch errors %v\n", r.Errors)
	}
}

// writeMarkdown renders BENCHMARKS.md: the machine, the date, the commit,
// a table per scenario and each target met or missed. It returns, per
// scenario, whether it missed a target.
func writeMarkdown(w io.Writer, started time.Time, scs []scalesim.Scenario, rs []*scalesim.Result, goBench []byte) []bool {
	bi := buildinfo.Get()
	ms := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	fmt.Fprintf(w, "# Benchmarks\n\nWritten by `make bench` (`spillway bench scaleout`); every number below comes from that run.\n\n")
	fmt.Fprintf(w, "- Machine: %s, %d CPUs, %s\n", cpuModel(), runtime.NumCPU(), bi.Platform)
	fmt.Fprintf(w, "- Date: %s\n", started.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "- Commit: %s (%s), %s\n\n", bi.Revision, bi.Version, bi.GoVersion)
	fmt.Fprintf(w, "%s\n\n", measuredText)
	missed := 0
	scMissed := make([]bool, len(rs))
	for i, r := range rs {
		sc := scs[i]
		fmt.Fprintf(w, "## %s (seed %d)\n\n", sc.Name, sc.Seed)
		if c := sc.Condition(); c != "" {
			fmt.Fprintf(w, "%s.\n\n", strings.ToUpper(c[:1])+c[1:])
		}
		fmt.Fprintf(w, "+%d hosts in %d task groups (one policy each) on a cluster of %d full nodes and %d policies: "+
			"%d of %d burst allocations placed, %d launch requests, %d instances, %s simulated in %s of wall time.\n\n",
			r.Hosts, sc.Groups, sc.Existing, sc.Policies, r.Placed, r.Hosts, r.Launches, r.Instances, ms(r.Simulated), ms(r.Wall))
		fmt.Fprintf(w, "| figure | p50 | p95 | p99 | n |\n|---|---|---|---|---|\n")
		for _, row := range []struct {
			name string
			xs   []time.Duration
		}{{"time-to-capacity", r.TimeToCapacity}, {"physical lower bound", r.LowerBound},
			{"lower bound at EC2's documented RunInstances request rate", r.RateBound}, {"overhead per allocation", r.Overhead},
			{"fallback latency (Spillway's processing)", r.Fallback}, {"capacity error to the next request (simulated)", r.FallbackSim},
			{"decision latency (Spillway's processing)", r.Decision}, {"trigger to the first launch request (simulated)", r.DecisionSim}} {
			if len(row.xs) == 0 && row.name == "lower bound at EC2's documented RunInstances request rate" {
				continue // only with EC2's throttling on
			}
			if len(row.xs) == 0 {
				fmt.Fprintf(w, "| %s | - | - | - | 0 |\n", row.name)
				continue
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %d |\n", row.name, ms(scalesim.Quantile(row.xs, .5)), ms(scalesim.Quantile(row.xs, .95)),
				ms(scalesim.Quantile(row.xs, .99)), len(row.xs))
		}
		fmt.Fprintf(w, "\nPeak RSS %.1f MB, CPU %.1f s.", float64(r.PeakRSS)/(1<<20), r.CPU.Seconds())
		if len(r.Errors) > 0 {
			fmt.Fprintf(w, " Launch errors: %v.", r.Errors)
		}
		fmt.Fprintf(w, "\n\n| target | measured | |\n|---|---|---|\n")
		for _, v := range scalesim.Verdicts(r) {
			verdict := "met"
			switch {
			case !v.Applies:
				verdict = "n/a"
			case !v.Met:
				verdict = "**missed**"
				missed++
				scMissed[i] = true
			}
			fmt.Fprintf(w, "| %s | %s | %s |\n", v.Target, v.Measured, verdict)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "## Sources of the latencies\n\n")
	for _, s := range scalesim.Sources {
		fmt.Fprintf(w, "- %s\n", s)
	}
	if len(goBench) > 0 {
		// The benchmarks and their failures, not every package's "ok".
		fmt.Fprintf(w, "\n## Go benchmarks of the hot paths\n\n```\n")
		for line := range strings.Lines(string(goBench)) {
			if strings.HasPrefix(line, "Benchmark") || strings.HasPrefix(line, "pkg: ") || strings.HasPrefix(line, "--- ") ||
				strings.HasPrefix(line, "    ") || strings.HasPrefix(line, "FAIL") {
				fmt.Fprint(w, line)
			}
		}
		fmt.Fprintf(w, "```\n")
	}
	if missed > 0 {
		fmt.Fprintf(w, "\n%d target(s) missed.\n", missed)
	}
	return scMissed
}

// measuredText says what each figure measures.
const measuredText = `What is measured:

- **Time-to-capacity**: each burst allocation's simulated time from the trigger (its group's count raised in Nomad) to running on a rented host.
- **Physical lower bound**: the same allocation's path with no decision, queueing or retry cost: RunInstances' answer, its host's pending to running and boot as the cloud simulator drew them, the Nomad join and the image pull. **Overhead** is time-to-capacity less the lower bound; the target compares the two p99s.
- **Lower bound at EC2's documented RunInstances request rate** (the throttled scenario only): the physical lower bound plus the wait of the allocation's launch request for its turn in EC2's default request bucket (5, refilled at 2 a second), one request per claim in the order Spillway sent them: the fastest any client can go against those limits.
- **Decision latency (Spillway's processing)**: for each scale-out, the busy wall time from the trigger to its first launch request: the wall time the process computed, from each move of the simulated clock until every goroutine waited again, summed over the steps between the two moments. Simulated waits (API latencies, sleeps, polls, the launch pacing) are not in it; the work of every scale-out in flight is (a hundred start together and share two cores), and so is the simulated Nomad's and cloud's in the same steps, so it is an upper bound of Spillway's own. It varies from run to run.
- **Trigger to the first launch request (simulated)**: the simulated time between the same two moments: Spillway's own waits (the account's launch pacing, model polls), none of its processing. The same seed gives the same.
- **Fallback latency** and **capacity error to the next request**: the same two measures from a capacity error's answer to the next launch request of its claim.
- Peak RSS and CPU seconds are the whole process's (Spillway, the simulated Nomad and cloud, the SQLite journal) during the scenario.

The simulated figures (time-to-capacity, lower bound, overhead, the simulated latencies, the counts) are the same for the same seed on every run: a unit test runs each scenario at +50 twice and compares them, and the seven scenarios at +1,000 gave the same figures in each of several runs of this command. Three causes of runs that differed were found and removed: a hundred plans begun together listed the pool a hundred times and spent EC2's Describe burst, so which of them were throttled depended on the goroutines' timing (plans begun together now share one listing); a journal write waiting for SQLite's fsync sits in a system call that the scheduler's counts do not always show, so the clock sometimes moved on while scale-outs waited for it (the simulation now steps only when no journal call is in flight); and retries side by side drew each other's jitter (it now comes from the seed and the simulated moment). Peak RSS, CPU seconds and the figures of Spillway's processing are wall-clock measures and vary from run to run.`

// cpuModel is the processor's name (Linux), or "unknown CPU".
func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err == nil {
		for line := range strings.Lines(string(data)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				return strings.TrimSpace(v)
			}
		}
	}
	return "unknown CPU"
}
