package lab

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"testing"
	"time"
)

// TestFreezeHostStopsAndResumesItsAgent: FreezeHost stops the host's
// agent process (state T) and ThawHost resumes it; a host the lab does not
// have is an error.
func TestFreezeHostStopsAndResumesItsAgent(t *testing.T) {
	l := &Lab{Dir: t.TempDir(), opts: Options{Progress: io.Discard}}
	p, err := l.startProcess("nomad-shared-1", "sleep", []string{"60"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop(time.Second)
	l.Hosts = []*Host{{Name: "shared-1", proc: p}}
	pid := p.cmd.Process.Pid
	waitState := func(want byte) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			got := procState(pid)
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("process %d is in state %q, want %q", pid, got, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if err := l.FreezeHost("shared-1"); err != nil {
		t.Fatal(err)
	}
	waitState('T')
	if err := l.ThawHost("shared-1"); err != nil {
		t.Fatal(err)
	}
	waitState('S')
	if err := l.FreezeHost("shared-2"); err == nil {
		t.Fatal("freezing a host the lab does not have: no error")
	}
}

// procState is the state letter of pid in /proc (R, S, T, Z...), 0 when
// it cannot be read.
func procState(pid int) byte {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	if i := bytes.LastIndexByte(data, ')'); i >= 0 && i+2 < len(data) {
		return data[i+2]
	}
	return 0
}
