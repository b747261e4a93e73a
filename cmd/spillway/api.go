package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/spillwayhq/spillway/internal/apiclient"
)

// apiFlags are the connection and output flags of every API command.
type apiFlags struct {
	addr, token, output string
}

func (f *apiFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.addr, "addr", envOr("SPILLWAY_ADDR", apiclient.DefaultAddr), "control plane address (default $SPILLWAY_ADDR)")
	fs.StringVar(&f.token, "token", "", "API token (default $SPILLWAY_TOKEN)")
	fs.StringVarP(&f.output, "output", "o", "table", "table or json")
}

func (f *apiFlags) client() (*apiclient.Client, error) {
	if f.output != "table" && f.output != "json" {
		return nil, fmt.Errorf("unknown output %q: use table or json", f.output)
	}
	tok := f.token
	if tok == "" {
		tok = os.Getenv("SPILLWAY_TOKEN")
	}
	if tok == "" {
		return nil, fmt.Errorf("no API token: pass --token or set SPILLWAY_TOKEN (make one with 'spillway token create')")
	}
	return apiclient.New(f.addr, tok), nil
}

// show prints the raw JSON answer with -o json, or decodes it into v and
// calls table.
func (f *apiFlags) show(w io.Writer, raw []byte, v any, table func(tw *tabwriter.Writer)) error {
	if f.output == "json" {
		_, err := w.Write(raw)
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decoding the answer: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

// apiCommand builds a command that calls the API.
func apiCommand(use, short string, args cobra.PositionalArgs, run func(ctx context.Context, c *apiclient.Client, f *apiFlags, w io.Writer, args []string) error) (*cobra.Command, *apiFlags) {
	f := &apiFlags{}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  args,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			return run(cmd.Context(), c, f, cmd.OutOrStdout(), args)
		},
	}
	f.register(cmd)
	return cmd, f
}

func ts(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// sinceFlag turns "24h" into an RFC 3339 time for since= parameters.
func sinceParam(q url.Values, name, ago string) error {
	if ago == "" {
		return nil
	}
	if t, err := time.Parse(time.RFC3339, ago); err == nil {
		q.Set(name, t.Format(time.RFC3339))
		return nil
	}
	d, err := time.ParseDuration(ago)
	if err != nil {
		return fmt.Errorf("--%s: want a duration (24h) or an RFC 3339 time, got %q", name, ago)
	}
	q.Set(name, time.Now().Add(-d).UTC().Format(time.RFC3339))
	return nil
}

type activity struct {
	ID        string    `json:"id"`
	Service   string    `json:"service"`
	Direction string    `json:"direction"`
	From      int       `json:"from"`
	To        int       `json:"to"`
	Status    string    `json:"status"`
	Actor     string    `json:"actor"`
	Reason    string    `json:"reason"`
	Started   time.Time `json:"started"`
	Hosts     []string  `json:"hosts"`
	Phases    []struct {
		Kind    string    `json:"kind"`
		Time    time.Time `json:"time"`
		Actor   string    `json:"actor"`
		Message string    `json:"message"`
	} `json:"phases"`
}

func activityRows(tw *tabwriter.Writer, acts []activity) {
	fmt.Fprintln(tw, "STARTED\tACTIVITY\tSERVICE\tCHANGE\tSTATUS\tBY")
	for _, a := range acts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d -> %d\t%s\t%s\n", ts(a.Started), a.ID, a.Service, a.From, a.To, a.Status, a.Actor)
	}
}

func newStatusCmd() *cobra.Command {
	cmd, _ := apiCommand("status", "Show the control plane's state: policies, pauses, pools, recent scalings", cobra.NoArgs,
		func(ctx context.Context, c *apiclient.Client, f *apiFlags, w io.Writer, _ []string) error {
			raw, err := c.Raw(ctx, "GET", "/v1/status", nil, nil)
			if err != nil {
				return err
			}
			var st struct {
				Version  string `json:"version"`
				Policies int    `json:"policies"`
				Hash     string `json:"policies_hash"`
				Paused   []struct {
					Policy, By, Reason string
					Since              time.Time
				} `json:"paused"`
				Pools      int               `json:"pools"`
				Nomad      string            `json:"nomad"`
				Activities []activity        `json:"recent_activities"`
				Services   map[string]string `json:"services"`
				Unservable []struct {
					Target struct{ Namespace, Job, Group string }
					Reason string
					Since  time.Time
				} `json:"unservable"`
			}
			return f.show(w, raw, &st, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "control plane\t%s (%s)\n", c.Addr, st.Version)
				fmt.Fprintf(tw, "nomad\t%s\n", st.Nomad)
				fmt.Fprintf(tw, "policies\t%d in force (hash %.12s)\n", st.Policies, st.Hash)
				fmt.Fprintf(tw, "pools\t%d configured\n", st.Pools)
				names := make([]string, 0, len(st.Services))
				for n := range st.Services {
					names = append(names, n)
				}
				sort.Strings(names)
				paused := map[string]string{}
				for _, p := range st.Paused {
					paused[p.Policy] = fmt.Sprintf("paused by %s since %s %s", p.By, ts(p.Since), p.Reason)
				}
				fmt.Fprintln(tw)
				fmt.Fprintln(tw, "POLICY\tSERVICE\tSTATE")
				for _, n := range names {
					state := "active"
					if p, ok := paused[n]; ok {
						state = p
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", n, st.Services[n], state)
				}
				if len(st.Unservable) > 0 {
					fmt.Fprintln(tw)
					fmt.Fprintln(tw, "UNSERVABLE\tSINCE\tWHY")
					for _, u := range st.Unservable {
						fmt.Fprintf(tw, "%s/%s/%s\t%s\t%s\n", u.Target.Namespace, u.Target.Job, u.Target.Group, ts(u.Since), u.Reason)
					}
				}
				if len(st.Activities) > 0 {
					fmt.Fprintln(tw)
					activityRows(tw, st.Activities)
				}
			})
		})
	return cmd
}

func newPoliciesCmd() *cobra.Command {
	cmd, _ := apiCommand("policies", "List the policies in force and whether they are paused", cobra.NoArgs,
		func(ctx context.Context, c *apiclient.Client, f *apiFlags, w io.Writer, _ []string) error {
			raw, err := c.Raw(ctx, "GET", "/v1/policies", nil, nil)
			if err != nil {
				return err
			}
			var page struct {
				Policies []struct {
					Name, File, Service string
					Min, Max            int
					Interval            string `json:"evaluation_interval"`
					Paused              *struct{ By string }
				}
			}
			return f.show(w, raw, &page, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "POLICY\tSERVICE\tMIN\tMAX\tINTERVAL\tFILE\tSTATE")
				for _, p := range page.Policies {
					state := "active"
					if p.Paused != nil {
						state = "paused by " + p.Paused.By
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\n", p.Name, p.Service, p.Min, p.Max, p.Interval, p.File, state)
				}
			})
		})
	return cmd
}

func newPoolsCmd() *cobra.Command {
	cmd, _ := apiCommand("pools", "Show each pool's capacity by tier", cobra.NoArgs,
		func(ctx context.Context, c *apiclient.Client, f *apiFlags, w io.Writer, _ []string) error {
			raw, err := c.Raw(ctx, "GET", "/v1/pools", nil, nil)
			if err != nil {
				return err
			}
			type res struct{ Total, Used, Free int64 }
			var r struct {
				Pools []struct {
					Pool, Tier string
					Hosts      struct {
						Total, Free, Borrowed int
						InUse                 int `json:"in_use"`
					}
					CPU      res     `json:"cpu_mhz"`
					Memory   res     `json:"memory_mb"`
					Cost     float64 `json:"cost_per_hour"`
					Currency string
				}
				Links []linkRow
			}
			return f.show(w, raw, &r, func(tw *tabwriter.Writer) {
				if len(r.Pools) == 0 {
					fmt.Fprintln(tw, "no pools are configured (pools.dir)")
					return
				}
				fmt.Fprintln(tw, "POOL\tTIER\tHOSTS\tFREE\tIN USE\tBORROWED\tCPU FREE (MHz)\tMEMORY FREE (MB)\tCOST/H")
				for _, p := range r.Pools {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d/%d\t%d/%d\t%.2f %s\n", p.Pool, p.Tier, p.Hosts.Total, p.Hosts.Free, p.Hosts.InUse,
						p.Hosts.Borrowed, p.CPU.Free, p.CPU.Total, p.Memory.Free, p.Memory.Total, p.Cost, p.Currency)
				}
				if len(r.Links) > 0 {
					fmt.Fprintln(tw)
					linkRows(tw, r.Links)
				}
			})
		})
	var closed string
	loans, _ := apiCommand("loans", "Show the hosts lent or rented now (the lending ledger), each lease's end, and with --closed the loans that ended and why", cobra.NoArgs,
		func(ctx context.Context, c *apiclient.Client, f *apiFlags, w io.Writer, _ []string) error {
			q := url.Values{}
			if err := sinceParam(q, "closed_since", closed); err != nil {
				return err
			}
			raw, err := c.Raw(ctx, "GET", "/v1/pools/loans", q, nil)
			if err != nil {
				return err
			}
			var r struct {
				Loans []struct {
					Host, Tier, Pool, Lender, Borrower string
					HostName                           string `json:"host_name"`
					Since, Until                       time.Time
					ReclaimBy                          time.Time `json:"reclaim_by"`
					Adopted                            string
				}
				Closed []struct {
					Host, Pool, Lender, Borrower, Reason string
					HostName                             string `json:"host_name"`
					Since, Until, Returned               time.Time
				}
			}
			return f.show(w, raw, &r, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "HOST\tPOOL\tTIER\tLENDER\tBORROWER\tSINCE\tLEASE ENDS\tRECLAIM BY\tRECORD")
				var adopted []string
				for _, l := range r.Loans {
					record := "ledger"
					if l.Adopted != "" {
						record = "adopted"
						adopted = append(adopted, dash(l.HostName)+": "+l.Adopted)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", dash(l.HostName), l.Pool, l.Tier, dash(l.Lender), l.Borrower, ts(l.Since), ts(l.Until),
						ts(l.ReclaimBy), record)
				}
				for _, a := range adopted {
					fmt.Fprintln(tw, "\nadopted "+a)
				}
				if closed != "" {
					fmt.Fprintln(tw, "\nCLOSED\tPOOL\tLENDER\tBORROWER\tSINCE\tLEASE ENDED\tRETURNED\tREASON")
					for _, l := range r.Closed {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cmp.Or(l.HostName, l.Host), l.Pool, dash(l.Lender), l.Borrower, ts(l.Since), ts(l.Until), ts(l.Returned), l.Reason)
					}
				}
			})
		})
	loans.Flags().StringVar(&closed, "closed", "", "also list the loans that ended since: a duration ago (24h) or an RFC 3339 time")
	var from, to string
	chargeback, _ := apiCommand("chargeback", "Show host-hours per borrower, lender and tier", cobra.NoArgs,
		func(ctx context.Context, c *apiclient.Client, f *apiFlags, w io.Writer, _ []string) error {
			q := url.Values{}
			if err := sinceParam(q, "from", from); err != nil {
				return err
			}
			if err := sinceParam(q, "to", to); err != nil {
				return err
			}
			raw, err := c.Raw(ctx, "GET", "/v1/pools/chargeback", q, nil)
			if err != nil {
				return err
			}
			var r struct {
				From, To   time.Time
				ByBorrower map[string]float64 `json:"by_borrower"`
				ByLender   map[string]float64 `json:"by_lender"`
				ByTier     map[string]float64 `json:"by_tier"`
				Total      float64            `json:"total_host_hours"`
			}
			return f.show(w, raw, &r, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "from %s to %s: %.2f host-hours\n\n", ts(r.From), ts(r.To), r.Total)
				fmt.Fprintln(tw, "BY\tNAME\tHOST-HOURS")
				for _, g := range []struct {
					by string
					m  map[string]float64
				}{{"borrower", r.ByBorrower}, {"lender", r.ByLender}, {"tier", r.ByTier}} {
					keys := make([]string, 0, len(g.m))
					for k := range g.m {
						keys = append(keys, k)
					}
					sort.Strings(keys)
					for _, k := range keys {
						fmt.Fprintf(tw, "%s\t%s\t%.2f\n", g.by, k, g.m[k])
					}
				}
			})
		})
	chargeback.Flags().StringVar(&from, "from", "24h", "start: a duration ago (24h) or an RFC 3339 time")
	chargeback.Flags().StringVar(&to, "to", "", "end: a duration ago or an RFC 3339 time (default now)")
	cmd.AddCommand(loans, chargeback, newReclaimCmd(), newExtendCmd())
	return cmd
}

// loanRow is a loan as reclaim and extend print it.
type loanRow struct {
	Host, Pool, Lender, Borrower string
	HostName                     string    `json:"host_name"`
	Until                        time.Time `json:"until"`
	ReclaimBy                    time.Time `json:"reclaim_by"`
}

func newReclaimCmd() *cobra.Command {
	var count int
	var hosts []string
	var reason, lender string
	var deadline time.Duration
	cmd, _ := apiCommand("reclaim POOL", "Take lent hosts back for their owner: replacement first, then the drain, then the return", cobra.ExactArgs(1),
		func(ctx context.Context, c *apiclient.Client, f *apiFlags, w io.Writer, args []string) error {
			body := map[string]any{"reason": reason}
			if count > 0 {
				body["count"] = count
			}
			if len(hosts) > 0 {
				body["hosts"] = hosts
			}
			if lender != "" {
				body["lender"] = lender
			}
			if deadline > 0 {
				body["deadline"] = deadline.String()
			}
			raw, err := c.Raw(ctx, "POST", "/v1/pools/"+url.PathEscape(args[0])+"/reclaim", nil, body)
			if err != nil {
				return err
			}
			var res struct {
				Pool      string
				Reclaimed []loanRow
			}
			return f.show(w, raw, &res, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "HOST\tBORROWER\tLENDER\tBACK BY")
				for _, l := range res.Reclaimed {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", dash(l.HostName), l.Borrower, l.Lender, ts(l.ReclaimBy))
				}
			})
		})
	cmd.Long = "Give --count (hosts come back in reclaim order: the lowest-priority borrower's first, then the emptiest host) or --host (repeatable: node names or IDs). " +
		"Each host's allocations get replacement capacity first, then it is drained and returned by the deadline, replaced or not. Needs an operator token."
	cmd.Flags().IntVar(&count, "count", 0, "how many hosts to take back")
	cmd.Flags().StringSliceVar(&hosts, "host", nil, "a host to take back (repeatable)")
	cmd.Flags().StringVar(&lender, "lender", "", "only hosts this business unit lent")
	cmd.Flags().StringVar(&reason, "reason", "", "why (journaled)")
	cmd.Flags().DurationVar(&deadline, "deadline", 0, "when the hosts must be back (default the pool's reclaim_notice)")
	return cmd
}

func newExtendCmd() *cobra.Command {
	var reason string
	var lease time.Duration
	cmd, _ := apiCommand("extend HOST", "Extend a lent host's lease", cobra.ExactArgs(1),
		func(ctx context.Context, c *apiclient.Client, f *apiFlags, w io.Writer, args []string) error {
			body := map[string]any{"reason": reason}
			if lease > 0 {
				body["lease"] = lease.String()
			}
			raw, err := c.Raw(ctx, "POST", "/v1/pools/loans/"+url.PathEscape(args[0])+"/extend", nil, body)
			if err != nil {
				return err
			}
			var l loanRow
			return f.show(w, raw, &l, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "the lease of %s (lent by %s to %s) now ends at %s\n", dash(l.HostName), l.Lender, l.Borrower, ts(l.Until))
			})
		})
	cmd.Long = "HOST is a lent host's node name or ID. The lease runs --lease from now (default the pool's lease); journaled as lease.extended. Needs an operator token."
	cmd.Flags().StringVar(&reason, "reason", "", "why (journaled)")
	cmd.Flags().DurationVar(&lease, "lease", 0, "the new lease, from now")
	return cmd
}

func newHostsCmd() *cobra.Command {
	var pool, tier string
	cmd, _ := apiCommand("hosts", "List the Nomad client nodes with their pool, tier and lending", cobra.NoArgs,
		func(ctx context.Context, c *apiclient.Client, f *apiFlags, w io.Writer, _ []string) error {
			q := url.Values{}
			if pool != "" {
				q.Set("pool", pool)
			}
			if tier != "" {
				q.Set("tier", tier)
			}
			raw, err := c.Raw(ctx, "GET", "/v1/hosts", q, nil)
			if err != nil {
				return err
			}
			var r struct {
				Hosts []struct {
					ID, Name, Status, Pool, Tier string
					NodePool                     string `json:"node_pool"`
					LentTo                       string `json:"lent_to"`
					Eligible, Draining           bool
					Allocations                  int
				}
			}
			return f.show(w, raw, &r, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "NAME\tID\tSTATUS\tNODE POOL\tPOOL\tTIER\tALLOCS\tLENT TO\tSCHEDULING")
				for _, h := range r.Hosts {
					sched := "eligible"
					switch {
					case h.Draining:
						sched = "draining"
					case !h.Eligible:
						sched = "ineligible"
					}
					fmt.Fprintf(tw, "%s\t%.8s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", h.Name, h.ID, h.Status, h.NodePool, dash(h.Pool), dash(h.Tier), h.Allocations, dash(h.LentTo), sched)
				}
			})
		})
	cmd.Flags().StringVar(&pool, "pool", "", "only hosts of this pool")
	cmd.Flags().StringVar(&tier, "tier", "", "only hosts of this tier (own, shared, warm, cold)")
	return cmd
}

func newActivitiesCmd() *cobra.Command {
	var service, since string
	var limit int
	cmd, _ := apiCommand("activities [ID]", "List scaling operations, or show one with its phases", cobra.MaximumNArgs(1),
		func(ctx context.Context, c *apiclient.Client, f *apiFlags, w io.Writer, args []string) error {
			if len(args) == 1 {
				raw, err := c.Raw(ctx, "GET", "/v1/activities/"+url.PathEscape(args[0]), nil, nil)
				if err != nil {
					return err
				}
				var a activity
				return f.show(w, raw, &a, func(tw *tabwriter.Writer) {
					fmt.Fprintf(tw, "activity\t%s\nservice\t%s\nchange\t%d -> %d (%s)\nstatus\t%s\nby\t%s\nhosts\t%s\n\n",
						a.ID, a.Service, a.From, a.To, a.Direction, a.Status, a.Actor, dash(strings.Join(a.Hosts, ", ")))
					fmt.Fprintln(tw, "TIME\tPHASE\tBY\tMESSAGE")
					for _, p := range a.Phases {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", ts(p.Time), p.Kind, p.Actor, p.Message)
					}
				})
			}
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			if service != "" {
				q.Set("service", service)
			}
			if err := sinceParam(q, "since", since); err != nil {
				return err
			}
			raw, err := c.Raw(ctx, "GET", "/v1/activities", q, nil)
			if err != nil {
				return err
			}
			var page struct {
				Activities []activity `json:"activities"`
				Next       string     `json:"next"`
			}
			return f.show(w, raw, &page, func(tw *tabwriter.Writer) {
				activityRows(tw, page.Activities)
				if page.Next != "" {
					fmt.Fprintf(tw, "(more: GET /v1/activities?cursor=%s)\n", page.Next)
				}
			})
		})
	cmd.Flags().StringVar(&service, "service", "", "only this task group (namespace/job/group)")
	cmd.Flags().StringVar(&since, "since", "24h", "a duration ago or an RFC 3339 time; empty for all")
	cmd.Flags().IntVar(&limit, "limit", 50, "at most this many (1 to 200)")
	return cmd
}

func newEventsCmd() *cobra.Command {
	var kind, service, activityID, since string
	var limit int
	var follow bool
	cmd, _ := apiCommand("events", "Show the journal (why did it scale?), or follow it live with --follow", cobra.NoArgs,
		func(ctx context.Context, c *apiclient.Client, f *apiFlags, w io.Writer, _ []string) error {
			q := url.Values{}
			for k, v := range map[string]string{"kind": kind, "service": service, "activity": activityID} {
				if v != "" {
					q.Set(k, v)
				}
			}
			line := func(ev apiclient.Event) string {
				return fmt.Sprintf("%s  %-6d %-16s %-22s %-12s %s\n", ts(ev.Time), ev.Seq, ev.Kind, dash(ev.Subject), dash(ev.Actor), ev.Message)
			}
			if follow {
				return c.Stream(ctx, q, 0, func(raw []byte, ev apiclient.Event) error {
					var err error
					if f.output == "json" {
						_, err = fmt.Fprintf(w, "%s\n", raw)
					} else {
						_, err = io.WriteString(w, line(ev))
					}
					return err
				})
			}
			if err := sinceParam(q, "since", since); err != nil {
				return err
			}
			q.Set("limit", strconv.Itoa(limit))
			raw, err := c.Raw(ctx, "GET", "/v1/events", q, nil)
			if err != nil {
				return err
			}
			var page struct {
				Events []apiclient.Event `json:"events"`
				Next   string            `json:"next"`
			}
			return f.show(w, raw, &page, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "TIME\tSEQ\tKIND\tSUBJECT\tBY\tMESSAGE")
				for _, ev := range page.Events {
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", ts(ev.Time), ev.Seq, ev.Kind, dash(ev.Subject), dash(ev.Actor), ev.Message)
				}
				if page.Next != "" {
					fmt.Fprintf(tw, "(more: --since or GET /v1/events?cursor=%s)\n", page.Next)
				}
			})
		})
	fs := cmd.Flags()
	fs.StringVar(&kind, "kind", "", `event kind or dotted prefix ("alert", "scale", "decision")`)
	fs.StringVar(&service, "service", "", "only events about this task group (namespace/job/group)")
	fs.StringVar(&activityID, "activity", "", "only events of this activity")
	fs.StringVar(&since, "since", "1h", "a duration ago or an RFC 3339 time; empty for all")
	fs.IntVar(&limit, "limit", 100, "at most this many (1 to 1000)")
	fs.BoolVarP(&follow, "follow", "f", false, "stream new events as they are journaled (Server-Sent Events)")
	return cmd
}

func newScaleCmd() *cobra.Command {
	var to, by int
	var reason string
	var force bool
	var cmd *cobra.Command
	cmd, _ = apiCommand("scale SERVICE (--to N | --by ±N) --reason TEXT [--force]", "Set a task group's count, or change it, with a reason", cobra.ExactArgs(1),
		func(ctx context.Context, c *apiclient.Client, f *apiFlags, w io.Writer, args []string) error {
			toSet, bySet := cmd.Flags().Changed("to"), cmd.Flags().Changed("by")
			if toSet == bySet {
				return fmt.Errorf("give exactly one of --to and --by")
			}
			if strings.TrimSpace(reason) == "" {
				return fmt.Errorf("--reason is required: it is journaled and shown in Nomad's scaling events")
			}
			req := map[string]any{"service": args[0], "reason": reason}
			if force {
				req["force"] = true
			}
			if toSet {
				req["to"] = to
			} else {
				req["by"] = by
			}
			raw, err := c.Raw(ctx, "POST", "/v1/scale", nil, req)
			if err != nil {
				return err
			}
			var res struct {
				Current, Desired int
				Changed          bool
				Activity         string
				Clamped          string
			}
			return f.show(w, raw, &res, func(tw *tabwriter.Writer) {
				if res.Clamped != "" {
					fmt.Fprintf(tw, "clamped: %s\n", res.Clamped)
				}
				if !res.Changed {
					fmt.Fprintf(tw, "%s is already at %d; nothing changed\n", args[0], res.Current)
					return
				}
				fmt.Fprintf(tw, "%s: %d -> %d (activity %s)\n", args[0], res.Current, res.Desired, res.Activity)
			})
		})
	cmd.Long = `Scale sets the count of a Nomad task group (SERVICE is namespace/job/group,
or job/group in the default namespace) through the control plane. It is
journaled with your token's name like any scaling and starts the group's
cooldown, so the policies do not undo it at once. The count is clamped to
the bounds of the group's policies; --force sets it anyway, and needs an
admin token. Needs an operator token.`
	cmd.Example = `  spillway scale default/demo/web --to 6 --reason "product launch at 10:00"
  spillway scale demo/web --by -2 --reason "launch over"`
	cmd.Flags().IntVar(&to, "to", 0, "the count to set")
	cmd.Flags().IntVar(&by, "by", 0, "the change of count, e.g. 2 or -1")
	cmd.Flags().StringVar(&reason, "reason", "", "why (required)")
	cmd.Flags().BoolVar(&force, "force", false, "set a count outside the policies' bounds (admin token)")
	return cmd
}

func newDrainCmd() *cobra.Command {
	var deadline time.Duration
	var reason string
	cmd, _ := apiCommand("drain HOST", "Drain a Nomad node through the control plane, with a deadline", cobra.ExactArgs(1),
		func(ctx context.Context, c *apiclient.Client, f *apiFlags, w io.Writer, args []string) error {
			raw, err := c.Raw(ctx, "POST", "/v1/hosts/"+url.PathEscape(args[0])+"/drain", nil,
				map[string]string{"deadline": deadline.String(), "reason": reason})
			if err != nil {
				return err
			}
			var res struct{ Host, ID, Deadline string }
			return f.show(w, raw, &res, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "draining %s (%s) with a %s deadline\n", res.Host, res.ID, res.Deadline)
			})
		})
	cmd.Long = "HOST is a node name, ID or ID prefix. Allocations still running at the deadline are stopped. Needs an operator token."
	cmd.Flags().DurationVar(&deadline, "deadline", time.Hour, "stop the remaining allocations after this long")
	cmd.Flags().StringVar(&reason, "reason", "", "why (journaled and set in the node's drain meta)")
	return cmd
}

func pauseCmd(pause bool) *cobra.Command {
	use, short, verb := "pause POLICY", "Stop evaluating a policy until it is resumed (survives restarts)", "pause"
	if !pause {
		use, short, verb = "resume POLICY", "Evaluate a paused policy again", "resume"
	}
	var reason string
	cmd, _ := apiCommand(use, short, cobra.ExactArgs(1),
		func(ctx context.Context, c *apiclient.Client, f *apiFlags, w io.Writer, args []string) error {
			var body any
			if reason != "" {
				body = map[string]string{"reason": reason}
			}
			raw, err := c.Raw(ctx, "POST", "/v1/policies/"+url.PathEscape(args[0])+"/"+verb, nil, body)
			if err != nil {
				return err
			}
			var res struct {
				Policy          string
				Paused, Changed bool
			}
			return f.show(w, raw, &res, func(tw *tabwriter.Writer) {
				state := "active"
				if res.Paused {
					state = "paused"
				}
				if res.Changed {
					fmt.Fprintf(tw, "policy %s is now %s\n", res.Policy, state)
				} else {
					fmt.Fprintf(tw, "policy %s was already %s\n", res.Policy, state)
				}
			})
		})
	cmd.Flags().StringVar(&reason, "reason", "", "why (journaled)")
	return cmd
}

func newPauseCmd() *cobra.Command  { return pauseCmd(true) }
func newResumeCmd() *cobra.Command { return pauseCmd(false) }

func newReloadCmd() *cobra.Command {
	cmd, _ := apiCommand("reload", "Load the control plane's policies again (admin)", cobra.NoArgs,
		func(ctx context.Context, c *apiclient.Client, f *apiFlags, w io.Writer, _ []string) error {
			raw, err := c.Raw(ctx, "POST", "/v1/reload", nil, nil)
			if err != nil {
				return err
			}
			var res struct {
				Policies int
				Hash     string
				Changed  bool
			}
			return f.show(w, raw, &res, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "%d policies in force (hash %.12s, changed %t)\n", res.Policies, res.Hash, res.Changed)
			})
		})
	return cmd
}
