package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/spillwayhq/spillway/pools"
)

func newPoolCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pool",
		Short: "Work with pool files (business units, the shared pool, cloud pools)",
	}
	cmd.AddCommand(newPoolCheckCmd())
	return cmd
}

func newPoolCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check FILE|DIR...",
		Short: "Validate pool files",
		Long: `Check loads and validates pool files (BusinessUnit, SharedPool and CloudPool
documents) exactly as the control plane does, and prints every problem as
file:line:column: field.path: message. A directory stands for the *.yaml and
*.yml files directly in it. The files are checked together, so names must be
unique across them and there is at most one SharedPool.

It exits 0 when everything is valid and 1 otherwise, for CI and pre-commit.`,
		Example: `  spillway pool check pools/examples/*.yaml
  spillway pool check /etc/spillway/pools/`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCheck(cmd, args, "pool", func(files []string) (string, error) {
				cfg, err := pools.LoadFiles(files...)
				if err != nil {
					return "", err
				}
				shared := 0
				if cfg.Shared != nil {
					shared = 1
				}
				summary := fmt.Sprintf("%d business %s, %d shared pool, %d cloud %s",
					len(cfg.BusinessUnits), plural(len(cfg.BusinessUnits), "unit", "units"), shared,
					len(cfg.CloudPools), plural(len(cfg.CloudPools), "pool", "pools"))
				if len(cfg.Links) > 0 {
					summary += fmt.Sprintf(", %d %s", len(cfg.Links), plural(len(cfg.Links), "link", "links"))
				}
				return summary, nil
			})
		},
	}
}
