package tools

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeExe(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestPathOrder(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	t.Setenv("PATH", filepath.Join(dir, "bin"))
	t.Setenv(Nomad.Env, "")

	if _, err := Nomad.Path(); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "make tools") {
		t.Fatalf("missing nomad: got %v", err)
	}

	onPath := filepath.Join(dir, "bin", "nomad")
	writeExe(t, onPath)
	if p, _ := Nomad.Path(); p != onPath {
		t.Fatalf("PATH lookup: got %q want %q", p, onPath)
	}

	cached := filepath.Join(dir, "cache", "spillway", "tools", "nomad-"+NomadVersion, "nomad")
	writeExe(t, cached)
	if p, _ := Nomad.Path(); p != cached {
		t.Fatalf("the cache must win over PATH: got %q want %q", p, cached)
	}

	explicit := filepath.Join(dir, "elsewhere", "nomad")
	writeExe(t, explicit)
	t.Setenv(Nomad.Env, explicit)
	if p, _ := Nomad.Path(); p != explicit {
		t.Fatalf("%s must win: got %q", Nomad.Env, p)
	}

	t.Setenv(Nomad.Env, filepath.Join(dir, "nope"))
	if _, err := Nomad.Path(); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), Nomad.Env) {
		t.Fatalf("a bad %s must be an error naming it, got %v", Nomad.Env, err)
	}
}

func TestAlertmanagerDebianName(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PATH", dir)
	t.Setenv(Alertmanager.Env, "")
	writeExe(t, filepath.Join(dir, "prometheus-alertmanager"))
	if p, err := Alertmanager.Path(); err != nil || filepath.Base(p) != "prometheus-alertmanager" {
		t.Fatalf("got %q, %v", p, err)
	}
}

func TestPostgresDebianLayout(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PATH", filepath.Join(dir, "nothing"))
	t.Setenv(Postgres.Env, "")
	pg := Postgres
	pg.Globs = []string{filepath.Join(dir, "lib", "postgresql", "*", "bin", "postgres")}
	if _, err := pg.Path(); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "postgresql") {
		t.Fatalf("missing postgres: got %v", err)
	}
	writeExe(t, filepath.Join(dir, "lib", "postgresql", "13", "bin", "postgres"))
	newest := filepath.Join(dir, "lib", "postgresql", "15", "bin", "postgres")
	writeExe(t, newest)
	if p, err := pg.Path(); err != nil || p != newest {
		t.Fatalf("got %q, %v; want the newest version %q", p, err, newest)
	}
}

// TestChromiumPrefersTheRealBinary: Debian's /usr/lib/chromium/chromium
// wins over the wrapper script on $PATH.
func TestChromiumPrefersTheRealBinary(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PATH", filepath.Join(dir, "bin"))
	t.Setenv(Chromium.Env, "")
	c := Chromium
	c.Paths = []string{filepath.Join(dir, "lib", "chromium", "chromium")}
	if _, err := c.Path(); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "apt-get install chromium") {
		t.Fatalf("missing chromium: got %v", err)
	}
	wrapper := filepath.Join(dir, "bin", "chromium")
	writeExe(t, wrapper)
	if p, err := c.Path(); err != nil || p != wrapper {
		t.Fatalf("got %q, %v; want the one on PATH %q", p, err, wrapper)
	}
	writeExe(t, c.Paths[0])
	if p, err := c.Path(); err != nil || p != c.Paths[0] {
		t.Fatalf("got %q, %v; want the real binary %q", p, err, c.Paths[0])
	}
}
