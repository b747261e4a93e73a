package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/spillwayhq/spillway/internal/strictyaml"
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
			var files []string
			for _, arg := range args {
				fi, err := os.Stat(arg)
				if err != nil || !fi.IsDir() {
					files = append(files, arg) // LoadFiles reports unreadable files
					continue
				}
				fs, err := pools.Files(arg)
				if err != nil {
					return err
				}
				files = append(files, fs...)
			}
			if len(files) == 0 {
				return fmt.Errorf("pool check: no *.yaml or *.yml files in %v", args)
			}
			cfg, err := pools.LoadFiles(files...)
			if err != nil {
				errs := strictyaml.AsErrors("", err)
				bad := map[string]bool{}
				for _, e := range errs {
					fmt.Fprintln(cmd.ErrOrStderr(), e)
					bad[e.File] = true
				}
				return fmt.Errorf("pool check: %d %s in %d of %d %s", len(errs), plural(len(errs), "problem", "problems"),
					len(bad), len(files), plural(len(files), "file", "files"))
			}
			shared := 0
			if cfg.Shared != nil {
				shared = 1
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %d business %s, %d shared pool, %d cloud %s in %d %s\n",
				len(cfg.BusinessUnits), plural(len(cfg.BusinessUnits), "unit", "units"), shared,
				len(cfg.CloudPools), plural(len(cfg.CloudPools), "pool", "pools"),
				len(files), plural(len(files), "file", "files"))
			return nil
		},
	}
}
