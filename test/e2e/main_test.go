package e2e

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/spillwayhq/spillway/internal/lab/labtest"
)

// TestMain lets the package's lab tests run side by side. Every test calls
// t.Parallel; those that start a lab hold one of labtest's slots
// ($SPILLWAY_E2E_LABS, 3 by default), handed out the longest first
// (labtest.Takes). So -parallel must not be the bound: every test must be
// waiting for a slot when the first is handed out. An explicit -parallel
// still wins.
func TestMain(m *testing.M) {
	flag.Parse()
	labs, err := labtest.Labs()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		// The slots bound the labs; the tests without a lab are cheap.
		if err := flag.Set("test.parallel", fmt.Sprint(max(labs, 64))); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	os.Exit(m.Run())
}
