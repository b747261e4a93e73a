// Package toolstest decides, for tests, what happens when a real component is
// missing: the test is skipped with the reason on a developer's machine, and
// fails when CI=true, where every tool must be present.
package toolstest

import (
	"os"
	"testing"

	"github.com/spillwayhq/spillway/internal/tools"
)

// Need skips or fails tb unless every tool in ts is installed.
func Need(tb testing.TB, ts ...tools.Tool) {
	tb.Helper()
	err := tools.Missing(ts...)
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("CI=true and a required tool is missing: %v", err)
	}
	tb.Skipf("skipping: %v", err)
}
