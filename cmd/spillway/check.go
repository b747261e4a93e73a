package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/spillwayhq/spillway/internal/strictyaml"
)

// runCheck is the body of `policy check` and `pool check`: expand the
// arguments into files, load them together, and print every problem, or
// the summary load returns.
func runCheck(cmd *cobra.Command, args []string, what string, load func(files []string) (string, error)) error {
	files, err := strictyaml.ExpandArgs(args, what)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("%s check: no *.yaml or *.yml files in %v", what, args)
	}
	summary, err := load(files)
	if err != nil {
		errs := strictyaml.AsErrors("", err)
		bad := map[string]bool{}
		for _, e := range errs {
			fmt.Fprintln(cmd.ErrOrStderr(), e)
			bad[e.File] = true
		}
		return fmt.Errorf("%s check: %d %s in %d of %d %s", what, len(errs), plural(len(errs), "problem", "problems"),
			len(bad), len(files), plural(len(files), "file", "files"))
	}
	fmt.Fprintf(cmd.OutOrStdout(), "ok: %s in %d %s\n", summary, len(files), plural(len(files), "file", "files"))
	return nil
}
