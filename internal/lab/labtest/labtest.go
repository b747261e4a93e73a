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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

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
)

// Spillway returns the path of a spillway binary built from this checkout,
// or $SPILLWAY_BIN when set.
func Spillway(tb testing.TB) string {
	tb.Helper()
	path, err := buildSpillway()
	if err != nil {
		tb.Fatal(err)
	}
	return path
}

// buildSpillway returns $SPILLWAY_BIN, or builds the spillway binary once
// per test process.
func buildSpillway() (string, error) {
	if p := os.Getenv("SPILLWAY_BIN"); p != "" {
		return p, nil
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
		return "", fmt.Errorf("building spillway: %w\n%s", buildErr, buildOut)
	}
	return buildPath, nil
}

// Start starts a lab for the test and stops it when the test ends.
func Start(tb testing.TB, opts lab.Options) *lab.Lab {
	tb.Helper()
	toolstest.Need(tb, tools.All...)
	acquire(tb, 1, opts.Spillway == "")
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
