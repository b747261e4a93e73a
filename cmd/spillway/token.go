package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/spillwayhq/spillway/controlplane/auth"
)

func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage API tokens",
	}
	var name, role, output string
	create := &cobra.Command{
		Use:   "create --name NAME --role viewer|operator|admin",
		Short: "Make a new API token and print it with the config entry to add",
		Long: `Make a new random API token. The token is printed once; the control plane
keeps only its SHA-256, in the api.tokens list of its configuration.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := auth.ParseRole(role)
			if err != nil {
				return err
			}
			if name == "" {
				return fmt.Errorf("--name is required")
			}
			tok, hash, err := auth.Generate()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch output {
			case "json":
				return json.NewEncoder(out).Encode(map[string]string{"name": name, "role": r.String(), "token": tok, "sha256": hash})
			case "text", "":
				fmt.Fprintf(out, "token: %s\n\nAdd to the api.tokens list of the configuration:\n\n", tok)
				fmt.Fprintf(out, "  - name: %s\n    role: %s\n    sha256: %q\n", name, r, hash)
				return nil
			}
			return fmt.Errorf("unknown output format %q: want text or json", output)
		},
	}
	create.Flags().StringVar(&name, "name", "", "who uses the token; it appears in the journal")
	create.Flags().StringVar(&role, "role", "viewer", "viewer, operator or admin")
	create.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	cmd.AddCommand(create)
	return cmd
}
