// Package tools finds the external programs Spillway drives in its lab and
// tests: Nomad, Prometheus and Alertmanager. It is the one place that knows
// where they live: an explicit SPILLWAY_*_BIN variable wins, then the cache
// that `make tools` fills (under $XDG_CACHE_HOME/spillway/tools), then $PATH.
package tools

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// NomadVersion is the Nomad release `make tools` builds and the lab runs.
// scripts/tools.sh builds the same version.
const NomadVersion = "1.11.0"

// Tool is an external program and how to find it.
type Tool struct {
	// Name is what people call it, e.g. "nomad".
	Name string
	// Env names the variable that points at the binary explicitly.
	Env string
	// Cached is the path below the tools cache where `make tools` puts it, if it does.
	Cached string
	// Commands are the names to look up on $PATH, in order.
	Commands []string
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
)

// All lists every tool the lab needs.
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
	for _, c := range t.Commands {
		if p, err := exec.LookPath(c); err == nil {
			return p, nil
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
