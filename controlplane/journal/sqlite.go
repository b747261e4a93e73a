// Package journal owns the control plane's durable record: the lending
// ledger's store (pools.LedgerStore) and the event log ([EventLog]):
// alerts, decisions and the scaling they caused. [Store] is the contract
// both backends keep. The default is an embedded SQLite database ([Open]:
// pure Go, modernc.org/sqlite) in WAL mode with synchronous=FULL, so an
// entry is on disk when Append returns. Several replicas share a
// PostgreSQL database instead ([OpenPostgres]).
package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jonboulle/clockwork"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/spillwayhq/spillway/pools"
)

// DB is an open SQLite journal. It is safe for concurrent use, within one
// process: the file must not be shared by several replicas.
type DB struct {
	db    *sql.DB
	path  string
	lock  *fileLock       // held by OpenExclusive
	clock clockwork.Clock // stamps an event appended without a time
}

const schema = `
CREATE TABLE IF NOT EXISTS ledger_entries (
	seq        INTEGER PRIMARY KEY,
	kind       TEXT    NOT NULL,
	host       TEXT    NOT NULL,
	host_name  TEXT    NOT NULL DEFAULT '',
	tier       TEXT    NOT NULL,
	pool       TEXT    NOT NULL DEFAULT '',
	lender     TEXT    NOT NULL DEFAULT '',
	borrower   TEXT    NOT NULL DEFAULT '',
	at_ns      INTEGER NOT NULL,
	lease_ns   INTEGER NOT NULL DEFAULT 0,
	reason     TEXT    NOT NULL DEFAULT '',
	claim      TEXT    NOT NULL DEFAULT '',
	overcommit INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS ledger_entries_host ON ledger_entries(host);
`

// Open opens (creating if needed) the SQLite journal at path.
func Open(ctx context.Context, path string) (*DB, error) {
	// _txlock=immediate: a transaction takes the write lock when it
	// begins, so a ledger append's read of the last seq and its insert are
	// atomic across handles on the same file (another process, a second
	// Open), and a loser waits (busy_timeout) instead of failing.
	dsn := fmt.Sprintf("file:%s?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(5000)&_pragma=foreign_keys(ON)&_txlock=immediate", path)
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening journal %s: %w", path, err)
	}
	// One writer: SQLite serialises writes anyway, and a single connection
	// keeps the pragmas and avoids SQLITE_BUSY between our own goroutines.
	db.SetMaxOpenConns(1)
	for _, ddl := range []string{schema, eventsSchema} {
		if _, err := db.ExecContext(ctx, ddl); err != nil {
			db.Close()
			return nil, fmt.Errorf("creating journal schema in %s: %w", path, err)
		}
	}
	return &DB{db: db, path: path, clock: clockwork.NewRealClock()}, nil
}

// OpenExclusive opens the SQLite journal at path for the one process that
// acts on it, `spillway serve`: it first takes an exclusive lock on
// path+".lock" and fails, wrapping ErrInUse, with an error naming the file
// and the holder's process ID, while another process holds it. Two serves
// on one file would each act as if alone. (Readers beside it, such as
// tests and tools, use Open.)
func OpenExclusive(ctx context.Context, path string) (*DB, error) {
	lock, err := lockFile(path + ".lock")
	if err != nil {
		if errors.Is(err, ErrInUse) {
			return nil, fmt.Errorf("opening journal %s: %w; one spillway serve per SQLite journal (for several replicas use journal.driver postgres with leader.enabled)", path, err)
		}
		return nil, fmt.Errorf("opening journal %s: %w", path, err)
	}
	db, err := Open(ctx, path)
	if err != nil {
		_ = lock.unlock()
		return nil, err
	}
	db.lock = lock
	return db, nil
}

// Close closes the database, and releases its lock.
func (d *DB) Close() error { return errors.Join(d.db.Close(), d.lock.unlock()) }

// Path is the database file.
func (d *DB) Path() string { return d.path }

// LedgerStore returns the lending ledger's store in this journal.
func (d *DB) LedgerStore() pools.LedgerStore { return &LedgerStore{db: d.db} }

// Driver implements Store.
func (d *DB) Driver() string { return DriverSQLite }

// LedgerStore keeps the lending ledger's entries in SQLite. Append returns once the
// entry is committed to disk; an entry whose Seq already exists is refused,
// so two writers cannot both extend the ledger from the same state.
type LedgerStore struct{ db *sql.DB }

var _ pools.LedgerStore = (*LedgerStore)(nil)

// ErrSeqConflict reports an Append whose Seq is already taken or does not
// follow the last entry: another writer changed the ledger.
var ErrSeqConflict = errors.New("ledger entry sequence conflict")

// Append implements pools.LedgerStore.
func (s *LedgerStore) Append(ctx context.Context, e pools.Entry) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("appending ledger entry %d: %w", e.Seq, err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	var last int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM ledger_entries`).Scan(&last); err != nil {
		return fmt.Errorf("appending ledger entry %d: %w", e.Seq, err)
	}
	if e.Seq != last+1 {
		return fmt.Errorf("appending ledger entry %d after entry %d: %w", e.Seq, last, ErrSeqConflict)
	}
	overcommit := 0
	if e.Overcommit {
		overcommit = 1
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO ledger_entries
		(seq, kind, host, host_name, tier, pool, lender, borrower, at_ns, lease_ns, reason, claim, overcommit)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.Seq, string(e.Kind), e.Host, e.HostName, string(e.Tier), e.Pool, e.Lender, e.Borrower,
		e.At.UnixNano(), int64(e.Lease), e.Reason, e.Claim, overcommit)
	if err != nil {
		return fmt.Errorf("appending ledger entry %d: %w", e.Seq, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing ledger entry %d: %w", e.Seq, err)
	}
	return nil
}

// Entries implements pools.LedgerStore.
func (s *LedgerStore) Entries(ctx context.Context) ([]pools.Entry, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT seq, kind, host, host_name, tier, pool, lender, borrower,
		at_ns, lease_ns, reason, claim, overcommit FROM ledger_entries ORDER BY seq`)
	if err != nil {
		return nil, fmt.Errorf("reading ledger entries: %w", err)
	}
	defer rows.Close()
	var out []pools.Entry
	for rows.Next() {
		var (
			e             pools.Entry
			kind, tier    string
			atNS, leaseNS int64
			overcommit    int
		)
		if err := rows.Scan(&e.Seq, &kind, &e.Host, &e.HostName, &tier, &e.Pool, &e.Lender, &e.Borrower,
			&atNS, &leaseNS, &e.Reason, &e.Claim, &overcommit); err != nil {
			return nil, fmt.Errorf("reading ledger entries: %w", err)
		}
		e.Kind, e.Tier = pools.EntryKind(kind), pools.Tier(tier)
		e.At = time.Unix(0, atNS).UTC()
		e.Lease = time.Duration(leaseNS)
		e.Overcommit = overcommit != 0
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading ledger entries: %w", err)
	}
	return out, nil
}
