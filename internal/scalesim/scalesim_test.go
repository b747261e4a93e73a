package scalesim

import (
	"testing"
)

// The plain scenario at +50 hosts: every allocation gets a host, by the
// real controllers and the EC2 provider. It asserts behaviour, never speed. (The same seed does not
// yet give the same figures: activities running side by side interleave
// their launches differently from run to run.)
func TestPlainScaleOutIsPlaced(t *testing.T) {
	// The simulation's cloud is in-process, not behind TLS.
	t.Setenv("AWS_CA_BUNDLE", "")
	sc := Scenario{Name: "plain+50", Seed: 7, Hosts: 50, Groups: 5, Existing: 20, Policies: 10}
	first, err := Run(t.Context(), sc, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if first.Placed != sc.Hosts {
		t.Fatalf("placed %d of %d burst allocations in %s simulated (%d launches, errors %v, %d instances)",
			first.Placed, sc.Hosts, first.Simulated, first.Launches, first.Errors, first.Instances)
	}
	if len(first.LowerBound) != sc.Hosts || len(first.Decision) == 0 {
		t.Fatalf("lower bounds %d, decisions %d", len(first.LowerBound), len(first.Decision))
	}
	t.Logf("p50 %s p99 %s lower bound p99 %s, %d steps, %d forced, wall %s", Quantile(first.TimeToCapacity, .5),
		Quantile(first.TimeToCapacity, .99), Quantile(first.LowerBound, .99), first.Steps, first.Forced, first.Wall)
}
