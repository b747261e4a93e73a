// Package labtest starts the lab from Go tests: it builds the spillway
// binary once per test process, skips or fails when the real components are
// missing (see toolstest), bounds how many labs run at once (see Slot),
// prints every process's log when a test fails, and stops the lab on test
// end, panic or Ctrl-C.
package labtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/spillwayhq/spillway/internal/lab"
	"github.com/spillwayhq/spillway/internal/tools"
	"github.com/spillwayhq/spillway/internal/tools/toolstest"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
	buildOut  []byte

	liveMu sync.Mutex
	live   = map[*lab.Lab]bool{}
	sigMu  sync.Once

	slotsOnce sync.Once
	slots     *semaphore.Weighted
	slotCount int64
	heldMu    sync.Mutex
	held      = map[string]bool{} // tests (by name) holding slots
)

// LabsEnv names the environment variable that sets how many labs one test
// binary runs at once (DefaultLabs when unset).
const LabsEnv = "SPILLWAY_E2E_LABS"

// WaitedPrefix starts the log line of a test that waited for lab slots,
// followed by the seconds it waited ("labtest: waited 62.5s for ...").
const WaitedPrefix = "labtest: waited "

// DefaultLabs is how many labs run at once by default. Measured on a
// 2-core machine: a lab mostly waits (boots, grace periods, the trace), so
// three at once take about a third of the time of one after another, and
// their assertions hold; at four the Nomad agents' heartbeats begin to
// queue behind one another.
const DefaultLabs = 3

// Labs returns how many labs run at once: $SPILLWAY_E2E_LABS, or
// DefaultLabs. A value that is not a positive integer is an error, not a
// silent default.
func Labs() (int, error) {
	v := os.Getenv(LabsEnv)
	if v == "" {
		return DefaultLabs, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%s=%q: want a positive number of labs", LabsEnv, v)
	}
	return n, nil
}

func labSlots(tb testing.TB) *semaphore.Weighted {
	tb.Helper()
	n, err := Labs()
	if err != nil {
		tb.Fatal(err)
	}
	slotsOnce.Do(func() {
		slotCount = int64(n)
		slots = semaphore.NewWeighted(slotCount)
	})
	return slots
}

// Slot holds one of the test binary's lab slots until tb ends, waiting for
// one when all are taken. Start takes a slot itself; a test that starts a
// lab another way (the spillway lab command, its own serves) calls Slot
// first. A test (or subtest of one) that holds slots already takes no
// more: it runs its labs within what it holds, since a test waiting for a
// second slot while holding one could wait for ever. Tests that hold slots
// run in parallel (t.Parallel), at most Labs() at once.
func Slot(tb testing.TB) {
	tb.Helper()
	acquire(tb, 1)
}

// Alone holds every lab slot until tb ends: no other lab runs beside it.
// It is for tests whose assertions depend on CPU timing (a lease's
// renewal, a latency), which another lab's load could break.
func Alone(tb testing.TB) {
	tb.Helper()
	labSlots(tb)
	acquire(tb, slotCount)
}

// acquire takes n slots for tb, holding them until tb's cleanup.
func acquire(tb testing.TB, n int64) {
	tb.Helper()
	s := labSlots(tb)
	if holds(tb.Name()) {
		return
	}
	start := time.Now()
	if err := s.Acquire(tb.Context(), n); err != nil {
		tb.Fatalf("waiting for a lab slot: %v", err)
	}
	if waited := time.Since(start); waited > time.Second {
		// The time report (internal/testreport) reads this line to tell a
		// test's own time from its wait: keep the two in step.
		tb.Logf("%s%.1fs for %d of %d lab slots ($%s)", WaitedPrefix, waited.Seconds(), n, slotCount, LabsEnv)
	}
	heldMu.Lock()
	held[tb.Name()] = true
	heldMu.Unlock()
	tb.Cleanup(func() {
		heldMu.Lock()
		delete(held, tb.Name())
		heldMu.Unlock()
		s.Release(n)
	})
}

// holds reports whether the test named name, or a test it is a subtest
// of, holds slots.
func holds(name string) bool {
	heldMu.Lock()
	defer heldMu.Unlock()
	for {
		if held[name] {
			return true
		}
		i := strings.LastIndexByte(name, '/')
		if i < 0 {
			return false
		}
		name = name[:i]
	}
}

// Spillway returns the path of a spillway binary built from this checkout,
// or $SPILLWAY_BIN when set.
func Spillway(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("SPILLWAY_BIN"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "spillway-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "spillway")
		cmd := exec.Command("go", "build", "-o", buildPath, "github.com/spillwayhq/spillway/cmd/spillway")
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		tb.Fatalf("building spillway: %v\n%s", buildErr, buildOut)
	}
	return buildPath
}

// Start starts a lab for the test and stops it when the test ends.
func Start(tb testing.TB, opts lab.Options) *lab.Lab {
	tb.Helper()
	toolstest.Need(tb, tools.All...)
	Slot(tb)
	if opts.Spillway == "" {
		opts.Spillway = Spillway(tb)
	}
	if opts.Progress == nil {
		opts.Progress = logWriter{tb}
	}
	stopOnSignal()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l, err := lab.Start(ctx, opts)
	if err != nil {
		tb.Fatalf("starting the lab: %v", err)
	}
	liveMu.Lock()
	live[l] = true
	liveMu.Unlock()
	tb.Cleanup(func() {
		if tb.Failed() {
			var b strings.Builder
			l.Logs(&b, 40)
			tb.Logf("lab logs:\n%s", b.String())
		}
		l.Stop()
		liveMu.Lock()
		delete(live, l)
		liveMu.Unlock()
	})
	return l
}

// stopOnSignal stops every live lab when the test binary is interrupted,
// so Ctrl-C during `go test` leaves nothing behind.
func stopOnSignal() {
	sigMu.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		go func() {
			<-ch
			liveMu.Lock()
			for l := range live {
				l.Stop()
			}
			liveMu.Unlock()
			os.Exit(130)
		}()
	})
}

type logWriter struct{ tb testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
