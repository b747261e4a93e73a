package main

import (
	"fmt"

	"github.com/spf13/cobra"

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
			return runCheck(cmd, args, "policy", func(files []string) (string, error) {
				set, err := policies.LoadFiles(files...)
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("%d %s", set.Len(), plural(set.Len(), "policy", "policies")), nil
			})
		},
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
