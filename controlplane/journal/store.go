package journal

import (
	"context"
	"fmt"

	"github.com/jonboulle/clockwork"

	"github.com/spillwayhq/spillway/controlplane/config"
	"github.com/spillwayhq/spillway/pools"
)

// Journal drivers, as config's journal.driver names them.
const (
	// DriverSQLite is the embedded single-node default.
	DriverSQLite = "sqlite"
	// DriverPostgres is the shared journal of several replicas.
	DriverPostgres = "postgres"
)

// EventLog is the journal's append-only record of events.
//
// Append makes the events durable, in order, in one transaction, and
// returns them with Seq set; an event needs a Kind and a Message, and a
// zero Time is set to now. Seq is assigned in commit order and only grows,
// so a reader that pages with Filter.After (the largest Seq it has seen)
// never misses an event, even with several writers.
//
// Query returns the events a Filter selects, oldest (smallest Seq) first.
type EventLog interface {
	Append(ctx context.Context, evs ...Event) ([]Event, error)
	Query(ctx context.Context, f Filter) ([]Event, error)
	// LastSeq is the Seq of the newest event (0 when there is none), at a
	// cost that does not grow with the log: where a stream starts.
	LastSeq(ctx context.Context) (int64, error)
}

// Store is a journal backend: the event log and the lending ledger's store
// in one durable database. SQLite ([Open]) and PostgreSQL ([OpenPostgres])
// implement it and pass the same contract suite (journaltest).
//
// The ledger store's Append returns once the entry is durable, and refuses
// an entry whose Seq is not the store's last Seq plus one with an error
// wrapping [ErrSeqConflict]: of several writers (replicas, or ledgers
// rebuilt from the same state) extending the ledger from the same entry,
// exactly one succeeds.
type Store interface {
	Events() EventLog
	LedgerStore() pools.LedgerStore
	// Driver is DriverSQLite or DriverPostgres.
	Driver() string
	Close() error
}

var (
	_ Store = (*DB)(nil)
	_ Store = (*Postgres)(nil)
)

// Options are what OpenConfig takes besides the configuration.
type Options struct {
	// Clock stamps the events appended without a time (default: the real
	// clock, as for a journal opened with Open or OpenPostgres).
	Clock clockwork.Clock
}

// OpenConfig opens the journal the daemon's configuration names: the
// SQLite file journal.path, exclusively (OpenExclusive), or the PostgreSQL
// database journal.dsn.
func OpenConfig(ctx context.Context, cfg config.Journal, opts Options) (Store, error) {
	switch cfg.Driver {
	case DriverSQLite, "":
		db, err := OpenExclusive(ctx, cfg.Path)
		if err != nil {
			return nil, err
		}
		if opts.Clock != nil {
			db.clock = opts.Clock
		}
		return db, nil
	case DriverPostgres:
		db, err := OpenPostgres(ctx, cfg.DSN.Reveal())
		if err != nil {
			return nil, err
		}
		if opts.Clock != nil {
			db.clock = opts.Clock
		}
		return db, nil
	}
	return nil, fmt.Errorf("opening the journal: unknown driver %q (want %s or %s)", cfg.Driver, DriverSQLite, DriverPostgres)
}
