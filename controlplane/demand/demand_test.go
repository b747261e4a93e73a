package demand

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/internal/lab"
	"github.com/spillwayhq/spillway/internal/lab/labtest"
	"github.com/spillwayhq/spillway/policies"
)

func TestHostsFor(t *testing.T) {
	for _, c := range []struct {
		name            string
		unplaced        int
		alloc, host     Size
		hosts, perHost  int
		wantErrContains string
	}{
		{"nothing to place", 0, Size{250, 64}, Size{2000, 2048}, 0, 0, ""},
		{"cpu bound", 9, Size{250, 64}, Size{2000, 2048}, 2, 8, ""},
		{"exact fit", 16, Size{250, 64}, Size{2000, 2048}, 2, 8, ""},
		{"memory bound", 5, Size{100, 1024}, Size{4000, 2048}, 3, 2, ""},
		{"memory only", 3, Size{0, 512}, Size{4000, 2048}, 1, 4, ""},
		{"too big", 1, Size{4000, 64}, Size{2000, 2048}, 0, 0, "does not fit"},
		{"asks for nothing", 1, Size{}, Size{2000, 2048}, 0, 0, "no CPU or memory"},
	} {
		hosts, per, err := HostsFor(c.unplaced, c.alloc, c.host)
		if c.wantErrContains != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErrContains) {
				t.Errorf("%s: err %v, want %q", c.name, err, c.wantErrContains)
			}
			continue
		}
		if err != nil || hosts != c.hosts || per != c.perHost {
			t.Errorf("%s: HostsFor = %d hosts, %d per host, %v; want %d, %d", c.name, hosts, per, err, c.hosts, c.perHost)
		}
	}
	if _, _, err := HostsFor(1, Size{4000, 1}, Size{2000, 2048}); !errors.Is(err, ErrDoesNotFit) {
		t.Errorf("want ErrDoesNotFit, got %v", err)
	}
}

// TestReadQueuedDemand scales the demo past what its business unit's one
// host holds and reads back exactly what Nomad could not place, and why.
func TestReadQueuedDemand(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the lab")
	}
	opts := lab.DefaultOptions()
	opts.Serve = false
	opts.SharedHosts = 0
	opts.BusinessUnits = []lab.BusinessUnit{{Name: "bu-a", Hosts: 1}}
	l := labtest.Start(t, opts)
	ctx := context.Background()
	target := policies.Target{Namespace: "default", Job: lab.DemoJob, Group: lab.DemoGroup}

	d, err := Read(ctx, l.Nomad(), target)
	if err != nil {
		t.Fatal(err)
	}
	if d.Count != 2 || d.Queued != 0 || d.PerAllocation != (Size{CPUMHz: 250, MemoryMB: 64}) || d.Blocked != nil {
		t.Fatalf("before: %+v", d)
	}

	// One host of 2000 MHz holds 8 allocations of 250 MHz: ask for 11.
	count := 11
	if _, _, err := l.Nomad().Jobs().Scale(lab.DemoJob, lab.DemoGroup, &count, "test: beyond the host", false, nil, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if d, err = Read(ctx, l.Nomad(), target); err != nil {
			t.Fatal(err)
		}
		if d.Queued == 3 && d.Blocked != nil && d.Running+d.Starting == 8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("demand never showed 3 queued: %+v (blocked %+v)", d, d.Blocked)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if d.Unplaced() != 3 || d.Blocked.Exhausted["cpu"] == 0 || !strings.Contains(d.Blocked.Reason(), "cpu exhausted") ||
		!strings.Contains(d.Blocked.Reason(), "node pool all") {
		t.Fatalf("blocked: %+v, reason %q", d.Blocked, d.Blocked.Reason())
	}
	hosts, per, err := HostsFor(d.Unplaced(), d.PerAllocation, Size{CPUMHz: 2000, MemoryMB: 2048})
	if err != nil || hosts != 1 || per != 8 {
		t.Fatalf("HostsFor: %d, %d, %v", hosts, per, err)
	}
}
