package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/spillwayhq/spillway/internal/strictyaml"
	"github.com/spillwayhq/spillway/policies"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Work with scaling policy files",
	}
	cmd.AddCommand(newPolicyCheckCmd())
	return cmd
}

func newPolicyCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check FILE|DIR...",
		Short: "Validate scaling policy files",
		Long: `Check loads and validates scaling policy files exactly as the control plane
does, and prints every problem as file:line:column: field.path: message.
A directory stands for the *.yaml and *.yml files directly in it. The files
are checked together, so names must be unique across them.

It exits 0 when everything is valid and 1 otherwise, for CI and pre-commit.`,
		Example: `  spillway policy check policies/examples/*.yaml
  spillway policy check policies/`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var files []string
			for _, arg := range args {
				fi, err := os.Stat(arg)
				if err != nil || !fi.IsDir() {
					files = append(files, arg) // LoadFiles reports unreadable files
					continue
				}
				fs, err := policies.Files(arg)
				if err != nil {
					return err
				}
				files = append(files, fs...)
			}
			if len(files) == 0 {
				return fmt.Errorf("policy check: no *.yaml or *.yml files in %v", args)
			}
			set, err := policies.LoadFiles(files...)
			if err != nil {
				errs := strictyaml.AsErrors("", err)
				bad := map[string]bool{}
				for _, e := range errs {
					fmt.Fprintln(cmd.ErrOrStderr(), e)
					bad[e.File] = true
				}
				return fmt.Errorf("policy check: %d %s in %d of %d %s", len(errs), plural(len(errs), "problem", "problems"),
					len(bad), len(files), plural(len(files), "file", "files"))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %d %s in %d %s\n", set.Len(), plural(set.Len(), "policy", "policies"),
				len(files), plural(len(files), "file", "files"))
			return nil
		},
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
