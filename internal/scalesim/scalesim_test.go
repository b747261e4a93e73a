package scalesim

import (
	"reflect"
	"testing"
)

// The plain scenario at +50 hosts: every allocation gets a host, by the
// real controllers and the EC2 provider, no allocation before its
// physical lower bound, and the same seed gives the same simulated
// figures. It asserts behaviour, never speed.
func TestPlainScaleOutIsPlaced(t *testing.T) {
	// The simulation's cloud is in-process, not behind TLS.
	t.Setenv("AWS_CA_BUNDLE", "")
	sc := Scenario{Name: "plain+50", Seed: 7, Hosts: 50, Groups: 5, Existing: 20, Policies: 10}
	var runs []*Result
	for range 2 {
		res, err := Run(t.Context(), sc, t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Placed != sc.Hosts {
			t.Fatalf("placed %d of %d burst allocations in %s simulated (%d launches, errors %v, %d instances)",
				res.Placed, sc.Hosts, res.Simulated, res.Launches, res.Errors, res.Instances)
		}
		if len(res.LowerBound) != sc.Hosts || len(res.Decision) != sc.Groups {
			t.Fatalf("lower bounds %d, decisions %d", len(res.LowerBound), len(res.Decision))
		}
		if res.Overhead[0] < 0 {
			t.Fatalf("an allocation ran %s before its physical lower bound", -res.Overhead[0])
		}
		t.Logf("p50 %s p99 %s lower bound p99 %s, overhead p99 %s, %d launches, %d steps, %d forced, wall %s",
			Quantile(res.TimeToCapacity, .5), Quantile(res.TimeToCapacity, .99), Quantile(res.LowerBound, .99),
			Quantile(res.Overhead, .99), res.Launches, res.Steps, res.Forced, res.Wall)
		runs = append(runs, res)
	}
	a, b := reflect.ValueOf(runs[0].Figures()), reflect.ValueOf(runs[1].Figures())
	for i := range a.NumField() {
		if x, y := a.Field(i).Interface(), b.Field(i).Interface(); !reflect.DeepEqual(x, y) {
			t.Errorf("the same seed gave a different %s:\n%v\n%v", a.Type().Field(i).Name, x, y)
		}
	}
}
