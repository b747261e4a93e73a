package demand

import (
	"errors"
	"strings"
	"testing"

	nomad "github.com/hashicorp/nomad/api"
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

// TestPerAlloc pins the one sizing rule: CPU and memory are summed over
// the tasks, cores are counted apart and never turned into MHz, and a task
// without resources (or a field left unset) asks for nothing.
func TestPerAlloc(t *testing.T) {
	n := func(v int) *int { return &v }
	tg := &nomad.TaskGroup{Tasks: []*nomad.Task{
		{Name: "app", Resources: &nomad.Resources{CPU: n(250), MemoryMB: n(64)}},
		{Name: "pinned", Resources: &nomad.Resources{Cores: n(2), MemoryMB: n(128)}},
		{Name: "sidecar", Resources: &nomad.Resources{CPU: n(50)}},
		{Name: "bare"},
	}}
	size, cores := PerAlloc(tg)
	if size != (Size{CPUMHz: 300, MemoryMB: 192}) || cores != 2 {
		t.Errorf("PerAlloc = %+v, %d cores; want 300 MHz, 192 MB, 2 cores", size, cores)
	}
	if size, cores := PerAlloc(&nomad.TaskGroup{}); size != (Size{}) || cores != 0 {
		t.Errorf("PerAlloc of no tasks = %+v, %d", size, cores)
	}
}
