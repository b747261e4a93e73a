package app

import (
	"path/filepath"
	"testing"

	"github.com/spillwayhq/spillway/controlplane/config"
)

// testConfig is the default configuration with the journal in a temporary
// directory.
func testConfig(t *testing.T) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Journal.Path = filepath.Join(t.TempDir(), "journal.db")
	return cfg
}
