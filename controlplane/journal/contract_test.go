package journal_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/controlplane/journal/journaltest"
)

func TestContractSQLite(t *testing.T) {
	journaltest.Run(t, func(t *testing.T) func(*testing.T) journal.Store {
		path := filepath.Join(t.TempDir(), "journal.db")
		return func(t *testing.T) journal.Store {
			db, err := journal.Open(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			return db
		}
	})
}

// TestContractPostgres runs the contract against a real PostgreSQL (from
// Debian's package), started for the test on a free loopback port.
func TestContractPostgres(t *testing.T) {
	srv := journaltest.StartPostgres(t)
	journaltest.Run(t, func(t *testing.T) func(*testing.T) journal.Store {
		dsn := srv.NewDatabase(t)
		return func(t *testing.T) journal.Store {
			db, err := journal.OpenPostgres(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			return db
		}
	})
}
