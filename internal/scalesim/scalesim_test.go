package scalesim

import (
	"io"
	"os"
	"os/signal"
	"reflect"
	"runtime/pprof"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Every scenario at +50 hosts, each run twice with the same seed: every
// allocation gets a host, by the real controllers and the EC2 provider,
// no allocation before its physical lower bound, and the two runs give
// the same simulated figures. It asserts behaviour, never speed.
func TestScenariosArePlacedAndRepeatable(t *testing.T) {
	// The simulation's cloud is in-process, not behind TLS.
	t.Setenv("AWS_CA_BUNDLE", "")
	for _, kind := range Kinds {
		t.Run(kind, func(t *testing.T) {
			sc, err := NewScenario(kind, 50, 7)
			if err != nil {
				t.Fatal(err)
			}
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
				if sc.Exhausted && len(res.Fallback) == 0 {
					t.Fatalf("the first choice had no capacity and nothing fell back (errors %v)", res.Errors)
				}
				if sc.Restart > 0 && !res.Restarted {
					t.Fatalf("the control plane did not restart within %s", res.Simulated)
				}
				t.Logf("p50 %s p99 %s lower bound p99 %s, overhead p99 %s, %d launches, errors %v, %d steps, %d forced, wall %s",
					Quantile(res.TimeToCapacity, .5), Quantile(res.TimeToCapacity, .99), Quantile(res.LowerBound, .99),
					Quantile(res.Overhead, .99), res.Launches, res.Errors, res.Steps, res.Forced, res.Wall)
				runs = append(runs, res)
			}
			a, b := reflect.ValueOf(runs[0].Figures()), reflect.ValueOf(runs[1].Figures())
			for i := range a.NumField() {
				if x, y := a.Field(i).Interface(), b.Field(i).Interface(); !reflect.DeepEqual(x, y) {
					t.Errorf("the same seed gave a different %s (steps forced on the time limit: %d, %d):\n%v\n%v",
						a.Type().Field(i).Name, runs[0].Forced, runs[1].Forced, x, y)
				}
			}
		})
	}
}

// A process that handles signals has a goroutine in a system call for
// good (os/signal's loop), and one that writes a CPU profile has one
// there most of the time: the simulation must still see it quiet, and
// never step on its time limit.
func TestQuietWithASignalHandlerAndAProfile(t *testing.T) {
	t.Setenv("AWS_CA_BUNDLE", "")
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR2)
	defer signal.Stop(ch)
	if err := pprof.StartCPUProfile(io.Discard); err == nil { // unless go test profiles already
		defer pprof.StopCPUProfile()
	}
	sc, err := NewScenario(Plain, 10, 3)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(t.Context(), sc, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Placed != sc.Hosts || res.Forced != 0 {
		t.Fatalf("placed %d of %d, %d of %d steps forced", res.Placed, sc.Hosts, res.Forced, res.Steps)
	}
}

// Work the scheduler's counts may miss (a journal write waiting in a
// system call) keeps the process from reading as quiet: Wait asks Busy on
// every quiet read and returns only after quietReads quiet reads in a row
// with nothing in flight.
func TestQuietWaitsForWorkInFlight(t *testing.T) {
	q := NewQuiet()
	const inFlight = 5
	var asked atomic.Int32
	q.Busy = func() bool { return asked.Add(1) <= inFlight }
	if !q.Wait(10 * time.Second) {
		t.Fatal("Wait gave up with nothing running")
	}
	if n := asked.Load(); n < inFlight+quietReads {
		t.Fatalf("Wait returned after asking Busy %d times: at least %d (busy %d times, then %d quiet reads)", n, inFlight+quietReads, inFlight, quietReads)
	}
}
