package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/internal/lab/labtest"
)

func TestServeRejectsABadConfig(t *testing.T) {
	t.Parallel()
	bin := labtest.Spillway(t)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("listen: 127.0.0.1:0\nnomad:\n  adress: http://127.0.0.1:4646\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"serve", "--config", bad}, {"serve", "--check-config", "--config", bad}} {
		cmd := exec.Command(bin, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("%v: want exit status 1, got %v", args, err)
		}
		want := bad + `:3:3: key "nomad.adress": unknown key (did you mean "address"?)`
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("%v: stderr %q lacks %q", args, stderr.String(), want)
		}
	}
}

// TestSecondServeOnOneSQLiteJournalIsRefused: the SQLite journal is for
// one replica, so a second `spillway serve` on the same file exits at once,
// naming the file and the process that holds it; once the first stops, the
// file is free again.
func TestSecondServeOnOneSQLiteJournalIsRefused(t *testing.T) {
	t.Parallel()
	bin := labtest.Spillway(t)
	dir := t.TempDir()
	journalPath := filepath.Join(dir, "journal.db")
	config := func(name string) (string, string) {
		addr := freeAddr(t)
		path := filepath.Join(dir, name+".yaml")
		// Nomad and Prometheus are not needed to start: nothing is there.
		body := "listen: " + addr + "\nnomad: {address: http://127.0.0.1:1}\nprometheus: {address: http://127.0.0.1:1}\njournal: {path: " + journalPath + "}\n"
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path, addr
	}
	firstCfg, firstAddr := config("first")
	first := exec.Command(bin, "serve", "--config", firstCfg)
	firstLog := &lockedBuffer{}
	first.Stdout, first.Stderr = firstLog, firstLog
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = first.Process.Kill(); _ = first.Wait() })
	waitUntil(t, "the first serve listens", 30*time.Second, func() bool {
		resp, err := http.Get("http://" + firstAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	})

	secondCfg, _ := config("second")
	out, err := exec.Command(bin, "serve", "--config", secondCfg).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("a second serve on %s: want a non-zero exit, got %v\n%s", journalPath, err, out)
	}
	for _, want := range []string{journalPath, "in use", fmt.Sprintf("process %d", first.Process.Pid)} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the second serve's error lacks %q:\n%s", want, out)
		}
	}

	// A clean stop frees the file for the next serve.
	if err := first.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := first.Wait(); err != nil {
		t.Fatalf("the first serve's stop: %v\n%s", err, firstLog.String())
	}
	third := exec.Command(bin, "serve", "--check-config", "--config", secondCfg)
	if out, err := third.CombinedOutput(); err != nil {
		t.Fatalf("--check-config after the first stopped: %v\n%s", err, out)
	}
	restart := exec.Command(bin, "serve", "--config", secondCfg)
	restartLog := &lockedBuffer{}
	restart.Stdout, restart.Stderr = restartLog, restartLog
	if err := restart.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = restart.Process.Kill(); _ = restart.Wait() })
	waitUntil(t, "a serve on the freed journal logs that it serves", 30*time.Second, func() bool {
		return strings.Contains(restartLog.String(), "serving")
	})
}

func TestServeCheckConfigAcceptsTheExample(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(labtest.Spillway(t), "serve", "--check-config", "--config", "../../examples/spillway.yaml").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(string(out), "configuration is valid") {
		t.Fatalf("unexpected output: %s", out)
	}
}

// lockedBuffer collects output written by one goroutine and read by another.
// It is an io.Writer, so it can be a command's Stdout or Stderr.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) WriteString(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(s)
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.WriteString(string(p))
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
