// Command spillway is the one Spillway binary: the control plane daemon
// (serve), the local hybrid-cloud lab (lab), the lab's demo service and load
// generator, and the tools operators run against policies, pools and the API.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// exitError carries an exit code up to main without printing more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "spillway",
		Short:         "Hybrid-cloud burst autoscaling for Nomad",
		Long:          "Spillway shifts Nomad workloads between a shared internal pool and rented cloud hosts when traffic spikes, and gives the capacity back afterwards.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newServeCmd(),
		newLabCmd(),
		newVersionCmd(),
		newDemoAppCmd(),
		newDemoLoadCmd(),
		newPolicyCmd(),
		newPlanCmd(),
		newCloudsimCmd(),
		newBenchCmd(),
		newPoolCmd(),
		newTokenCmd(),
		newStatusCmd(),
		newPoliciesCmd(),
		newPoolsCmd(),
		newLinksCmd(),
		newHostsCmd(),
		newActivitiesCmd(),
		newEventsCmd(),
		newScaleCmd(),
		newDrainCmd(),
		newPauseCmd(),
		newResumeCmd(),
		newReloadCmd(),
	)
	return root
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "spillway:", err)
		os.Exit(1)
	}
}
