// Package tools finds the external programs Spillway drives in its lab and
// tests: Nomad, Prometheus, Alertmanager, PostgreSQL and Chromium. It is the one place that knows
// where they live: an explicit SPILLWAY_*_BIN variable wins, then the cache
// that `make tools` fills (under $XDG_CACHE_HOME/spillway/tools), then $PATH.
package tools

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
)

// NomadVersion is the Nomad release `make tools` builds and the lab runs.
// scripts/tools.sh builds the same version.
const NomadVersion = "1.6.3"

// Tool is an external program and how to find it.
type Tool struct {
	// Name is what people call it, e.g. "nomad".
	Name string
	// Env names the variable that points at the binary explicitly.
	Env string
	// Cached is the path below the tools cache where `make tools` puts it, if it does.
	Cached string
	// Paths are absolute paths tried before $PATH, for a package's real
	// binary where $PATH has a wrapper script (Debian's /usr/bin/chromium
	// wraps /usr/lib/chromium/chromium, and warns when run as root).
	Paths []string
	// Commands are the names to look up on $PATH, in order.
	Commands []string
	// Globs are absolute path patterns tried after $PATH, for programs a
	// package installs off $PATH (Debian's PostgreSQL); of several
	// matches the last in lexical order (the newest version) wins.
	Globs []string
	// Install says how to get it, for the error when it is missing.
	Install string
}

var (
	Nomad = Tool{
		Name:     "nomad",
		Env:      "SPILLWAY_NOMAD_BIN",
		Cached:   filepath.Join("nomad-"+NomadVersion, "nomad"),
		Commands: []string{"nomad"},
		Install:  "run 'make tools' (builds Nomad v" + NomadVersion + " into the tools cache)",
	}
	Prometheus = Tool{
		Name:     "prometheus",
		Env:      "SPILLWAY_PROMETHEUS_BIN",
		Commands: []string{"prometheus"},
		Install:  "run 'make tools' as root, or 'apt-get install prometheus'",
	}
	Alertmanager = Tool{
		Name:     "alertmanager",
		Env:      "SPILLWAY_ALERTMANAGER_BIN",
		Commands: []string{"prometheus-alertmanager", "alertmanager"},
		Install:  "run 'make tools' as root, or 'apt-get install prometheus-alertmanager'",
	}
	// Postgres is the PostgreSQL server binary; initdb and pg_ctl are in
	// the same directory (see PostgresBin). The journal's contract tests
	// start a private cluster with it.
	Postgres = Tool{
		Name:     "postgres",
		Env:      "SPILLWAY_POSTGRES_BIN",
		Commands: []string{"postgres"},
		Globs:    []string{"/usr/lib/postgresql/*/bin/postgres"},
		Install:  "run 'make tools' as root, or 'apt-get install postgresql'",
	}
	// Chromium is Debian's browser; the console's browser test drives it
	// over the DevTools protocol (never a browser a test tool downloads).
	Chromium = Tool{
		Name:     "chromium",
		Env:      "SPILLWAY_CHROMIUM_BIN",
		Paths:    []string{"/usr/lib/chromium/chromium"},
		Commands: []string{"chromium", "chromium-browser"},
		Install:  "run 'make tools' as root, or 'apt-get install chromium'",
	}
)

// PostgresBin returns the directory holding postgres, initdb and pg_ctl.
func PostgresBin() (string, error) {
	p, err := Postgres.Path()
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(p)
	if !isExecutable(filepath.Join(dir, "initdb")) {
		return "", fmt.Errorf("postgres: no initdb next to %s: %w", p, ErrNotFound)
	}
	return dir, nil
}

// All lists every tool the lab needs. (Postgres is needed only by the
// journal's tests, and Chromium only by the console's, not by the lab.)
var All = []Tool{Nomad, Prometheus, Alertmanager}

// ErrNotFound is wrapped by Path when a tool is missing.
var ErrNotFound = errors.New("tool not found")

// CacheDir is where `make tools` caches binaries it builds.
func CacheDir() string {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "spillway", "tools")
}

// Path returns the absolute path of the tool's binary.
func (t Tool) Path() (string, error) {
	if p := os.Getenv(t.Env); p != "" {
		if isExecutable(p) {
			return p, nil
		}
		return "", fmt.Errorf("%s: %s=%s is not an executable file: %w", t.Name, t.Env, p, ErrNotFound)
	}
	if t.Cached != "" {
		if p := filepath.Join(CacheDir(), t.Cached); isExecutable(p) {
			return p, nil
		}
	}
	for _, p := range t.Paths {
		if isExecutable(p) {
			return p, nil
		}
	}
	for _, c := range t.Commands {
		if p, err := exec.LookPath(c); err == nil {
			return p, nil
		}
	}
	for _, g := range t.Globs {
		matches, _ := filepath.Glob(g)
		slices.Sort(matches)
		for i := len(matches) - 1; i >= 0; i-- {
			if isExecutable(matches[i]) {
				return matches[i], nil
			}
		}
	}
	return "", fmt.Errorf("%s is not installed: %s, or set %s: %w", t.Name, t.Install, t.Env, ErrNotFound)
}

// Missing returns an error for every tool in ts that cannot be found.
func Missing(ts ...Tool) error {
	var errs []error
	for _, t := range ts {
		if _, err := t.Path(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}
