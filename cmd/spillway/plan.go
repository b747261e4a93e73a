package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/spillwayhq/spillway/controlplane/config"
	"github.com/spillwayhq/spillway/controlplane/evaluate"
	"github.com/spillwayhq/spillway/controlplane/metrics"
	"github.com/spillwayhq/spillway/controlplane/nomadapi"
	"github.com/spillwayhq/spillway/internal/strictyaml"
	"github.com/spillwayhq/spillway/policies"
)

func newPlanCmd() *cobra.Command {
	var (
		dir, promURL, promUser, promToken, nomadURL, output string
		timeout                                             time.Duration
		alerts                                              bool
	)
	cmd := &cobra.Command{
		Use:   "plan --policies DIR",
		Short: "Dry run: show what every policy would decide now, and why",
		Long: `Plan evaluates every scaling policy in DIR against the live system without
changing anything. For each policy it shows the metric values, each check's
vote, the combined decision and its reason, and the capacity the decision
needs (allocations, CPU and memory, from the Nomad task group's resources).

Metrics come from Prometheus; firing alerts are read from its ALERTS series.
Current counts come from Nomad. Cooldowns are not applied: plan does not
know when Spillway last scaled.

Prometheus auth: --prometheus-token (or $PROMETHEUS_BEARER_TOKEN) for a
bearer token, or --prometheus-user with $PROMETHEUS_PASSWORD for basic auth.
Nomad: --nomad, else $NOMAD_ADDR; the ACL token is $NOMAD_TOKEN.`,
		Example: `  spillway plan --policies policies/examples
  spillway plan --policies policies/ --prometheus http://127.0.0.1:9090 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("plan: unknown output %q: use table or json", output)
			}
			set, err := policies.LoadDir(dir)
			if err != nil {
				for _, e := range strictyaml.AsErrors(dir, err) {
					fmt.Fprintln(cmd.ErrOrStderr(), e)
				}
				return fmt.Errorf("plan: policies in %s do not load", dir)
			}
			src, err := metrics.NewPrometheus(metrics.PrometheusOptions{
				URL: promURL, Timeout: timeout, Username: promUser, Password: os.Getenv("PROMETHEUS_PASSWORD"), BearerToken: promToken,
			})
			if err != nil {
				return fmt.Errorf("plan: %w", err)
			}
			nc, err := nomadapi.New(config.Nomad{Address: nomadURL}, nomadapi.Options{})
			if err != nil {
				return fmt.Errorf("plan: %w", err)
			}
			// Problems show in the output; the log only carries the unexpected.
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelError}))
			now := time.Now().UTC()
			ev := evaluate.New(src, evaluate.NewNomadGroups(nc), func() time.Time { return now }, log)

			var (
				firing   []policies.Alert
				alertErr error
			)
			if alerts {
				firing, alertErr = evaluate.FiringAlerts(cmd.Context(), src, now, time.Minute)
			}
			states := map[string]evaluate.State{}
			for _, p := range set.Policies() {
				states[p.Name] = evaluate.State{Alerts: firing}
			}
			results := ev.EvaluateAll(cmd.Context(), set, states)

			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				out := planJSON{Time: now, Prometheus: promURL, Nomad: nc.Address(), Alerts: firing, Results: results}
				if alertErr != nil {
					out.AlertsError = alertErr.Error()
				}
				if err := enc.Encode(out); err != nil {
					return err
				}
			} else {
				writePlanTable(cmd.OutOrStdout(), now, firing, alertErr, results)
			}
			failed := 0
			for _, r := range results {
				if r.Decision == nil {
					failed++
				}
			}
			if failed > 0 {
				return fmt.Errorf("plan: %d of %d policies could not be evaluated", failed, len(results))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "policies", "", "directory of policy files (*.yaml, *.yml)")
	_ = cmd.MarkFlagRequired("policies")
	f.StringVar(&promURL, "prometheus", envOr("PROMETHEUS_URL", "http://127.0.0.1:9090"), "Prometheus URL (default $PROMETHEUS_URL)")
	f.StringVar(&promUser, "prometheus-user", "", "Prometheus basic auth user; the password is $PROMETHEUS_PASSWORD")
	f.StringVar(&promToken, "prometheus-token", os.Getenv("PROMETHEUS_BEARER_TOKEN"), "Prometheus bearer token (default $PROMETHEUS_BEARER_TOKEN)")
	f.StringVar(&nomadURL, "nomad", "", "Nomad URL (default $NOMAD_ADDR or http://127.0.0.1:4646)")
	f.StringVarP(&output, "output", "o", "table", "output format: table or json")
	f.DurationVar(&timeout, "timeout", 10*time.Second, "timeout of each Prometheus query")
	f.BoolVar(&alerts, "alerts", true, "apply alert rules to the alerts Prometheus is firing (ALERTS series)")
	return cmd
}

type planJSON struct {
	Time        time.Time         `json:"time"`
	Prometheus  string            `json:"prometheus"`
	Nomad       string            `json:"nomad"`
	Alerts      []policies.Alert  `json:"firing_alerts"`
	AlertsError string            `json:"alerts_error,omitempty"`
	Results     []evaluate.Result `json:"results"`
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// writePlanTable prints one block per policy: the decision line, its
// reason, and a table of the checks.
func writePlanTable(w io.Writer, now time.Time, firing []policies.Alert, alertErr error, results []evaluate.Result) {
	fmt.Fprintf(w, "plan at %s, %d %s\n", now.Format(time.RFC3339), len(results), plural(len(results), "policy", "policies"))
	switch {
	case alertErr != nil:
		fmt.Fprintf(w, "alerts: not used, %s\n", alertErr)
	case len(firing) > 0:
		names := make([]string, len(firing))
		for i, a := range firing {
			names[i] = a.Name
		}
		fmt.Fprintf(w, "alerts firing: %s\n", strings.Join(names, ", "))
	}
	for _, r := range results {
		fmt.Fprintf(w, "\n%s  %s  (%s)\n", r.Policy, r.Target, r.File)
		if r.Decision == nil {
			fmt.Fprintf(w, "  decision: none, %s\n", r.Error)
		} else {
			d := r.Decision
			line := fmt.Sprintf("  decision: %s %d → %d", strings.ToUpper(string(d.Direction)), d.Current, d.Desired)
			if d.Changes() {
				line += fmt.Sprintf(", %s allocations, %s MHz CPU, %s MB memory", signed(r.Capacity.Allocations), signed(r.Capacity.CPUMHz), signed(r.Capacity.MemoryMB))
				if r.Capacity.Cores != 0 {
					line += fmt.Sprintf(", %s cores", signed(r.Capacity.Cores))
				}
			}
			if d.Direction == policies.Up {
				line += ", deadline " + d.Deadline.Format(time.RFC3339)
			}
			fmt.Fprintln(w, line)
			fmt.Fprintf(w, "  why: %s\n", d.Reason)
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  CHECK\tVALUE\tAGE\tVOTE\tREASON")
		for _, c := range r.Checks {
			value, age := "-", "-"
			if c.Value != nil {
				value = strconv.FormatFloat(*c.Value, 'g', 6, 64)
			}
			if c.SampleTime != nil {
				age = now.Sub(*c.SampleTime).Round(time.Second).String()
			}
			vote, reason := "-", c.DataError
			if reason == "" {
				reason = "-"
			}
			if c.Vote.Direction != "" {
				vote = string(c.Vote.Direction)
				if c.Vote.Direction == policies.Up || c.Vote.Direction == policies.Down {
					vote += " " + strconv.Itoa(c.Vote.Count)
				}
				reason = c.Vote.Reason
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", c.Check, value, age, vote, reason)
		}
		if r.Decision != nil {
			for _, a := range r.Decision.Alerts {
				vote := string(a.Direction)
				if a.Direction == policies.Up {
					vote += " " + strconv.Itoa(a.Count)
				}
				fmt.Fprintf(tw, "  %s\t-\t-\t%s\t%s\n", a.Source, vote, a.Reason)
			}
		}
		tw.Flush()
	}
}

func signed(n int) string {
	if n > 0 {
		return "+" + strconv.Itoa(n)
	}
	return strconv.Itoa(n)
}
