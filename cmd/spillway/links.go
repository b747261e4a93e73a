package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/spillwayhq/spillway/internal/apiclient"
)

// linkRow is a link as GET /v1/links answers it.
type linkRow struct {
	Name              string   `json:"name"`
	Bandwidth         string   `json:"bandwidth"`
	Configured        string   `json:"configured"`
	TargetUtilization float64  `json:"target_utilization"`
	Carries           string   `json:"carries"`
	InUse             string   `json:"in_use"`
	Allocations       int      `json:"allocations"`
	Pools             []string `json:"pools"`
	Set               *struct {
		By, Reason string
	} `json:"set"`
}

func linkRows(tw *tabwriter.Writer, links []linkRow) {
	fmt.Fprintln(tw, "LINK\tBANDWIDTH\tTARGET\tCARRIES\tIN USE\tALLOCS\tPOOLS\tSET BY")
	for _, l := range links {
		set := "pool file"
		if l.Set != nil {
			set = l.Set.By + ": " + l.Set.Reason
		}
		pools := "-"
		if len(l.Pools) > 0 {
			pools = fmt.Sprint(l.Pools)
		}
		fmt.Fprintf(tw, "%s\t%s\t%g%%\t%s\t%s\t%d\t%s\t%s\n", l.Name, l.Bandwidth, l.TargetUtilization, l.Carries, l.InUse, l.Allocations, pools, set)
	}
}

func newLinksCmd() *cobra.Command {
	cmd, _ := apiCommand("links", "Show each dedicated line's bandwidth and what the allocations behind it send", cobra.NoArgs,
		func(ctx context.Context, c *apiclient.Client, f *apiFlags, w io.Writer, _ []string) error {
			raw, err := c.Raw(ctx, "GET", "/v1/links", nil, nil)
			if err != nil {
				return err
			}
			var r struct{ Links []linkRow }
			return f.show(w, raw, &r, func(tw *tabwriter.Writer) {
				if len(r.Links) == 0 {
					fmt.Fprintln(tw, "no links are defined (kind Link in the pool files)")
					return
				}
				linkRows(tw, r.Links)
			})
		})
	var reason string
	set, _ := apiCommand("set LINK BANDWIDTH --reason TEXT", "Raise or lower a link's bandwidth (journaled, in force on the next plan, kept across restarts)", cobra.ExactArgs(2),
		func(ctx context.Context, c *apiclient.Client, f *apiFlags, w io.Writer, args []string) error {
			if reason == "" {
				return fmt.Errorf("--reason is required: it is journaled")
			}
			raw, err := c.Raw(ctx, "POST", "/v1/links/"+url.PathEscape(args[0]), nil, map[string]string{"bandwidth": args[1], "reason": reason})
			if err != nil {
				return err
			}
			var r struct {
				Link    linkRow
				Changed bool
			}
			return f.show(w, raw, &r, func(tw *tabwriter.Writer) {
				if r.Changed {
					fmt.Fprintf(tw, "link %s is now %s (the pool file says %s)\n", r.Link.Name, r.Link.Bandwidth, r.Link.Configured)
				} else {
					fmt.Fprintf(tw, "link %s already was %s\n", r.Link.Name, r.Link.Bandwidth)
				}
			})
		})
	set.Flags().StringVar(&reason, "reason", "", "why (required, journaled)")
	set.Example = `  spillway links set dc1-ali-bj 10Gbps --reason "holiday peak: the 10G line is rented"`
	cmd.AddCommand(set)
	return cmd
}
