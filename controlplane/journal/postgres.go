package journal

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jonboulle/clockwork"

	"github.com/spillwayhq/spillway/pools"
)

// pgSchema is the same record as SQLite's, in PostgreSQL's dialect. Times
// are Unix nanoseconds, as in SQLite, so both backends round-trip a time
// exactly.
const pgSchema = `
CREATE TABLE IF NOT EXISTS ledger_entries (
	seq        BIGINT  PRIMARY KEY,
	kind       TEXT    NOT NULL,
	host       TEXT    NOT NULL,
	host_name  TEXT    NOT NULL DEFAULT '',
	tier       TEXT    NOT NULL,
	pool       TEXT    NOT NULL DEFAULT '',
	lender     TEXT    NOT NULL DEFAULT '',
	borrower   TEXT    NOT NULL DEFAULT '',
	at_ns      BIGINT  NOT NULL,
	lease_ns   BIGINT  NOT NULL DEFAULT 0,
	reason     TEXT    NOT NULL DEFAULT '',
	claim      TEXT    NOT NULL DEFAULT '',
	overcommit BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX IF NOT EXISTS ledger_entries_host ON ledger_entries(host);
CREATE TABLE IF NOT EXISTS events (
	seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	at_ns    BIGINT NOT NULL,
	kind     TEXT   NOT NULL,
	subject  TEXT   NOT NULL DEFAULT '',
	activity TEXT   NOT NULL DEFAULT '',
	actor    TEXT   NOT NULL DEFAULT '',
	message  TEXT   NOT NULL,
	data     TEXT   NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS events_subject ON events(subject, seq);
CREATE INDEX IF NOT EXISTS events_at ON events(at_ns);
CREATE INDEX IF NOT EXISTS events_activity ON events(activity, seq);
CREATE INDEX IF NOT EXISTS events_kind_bytewise ON events((kind COLLATE "C"), at_ns);
-- events_kind (under the database's collation) served no query once kinds compare bytewise.
DROP INDEX IF EXISTS events_kind;
`

// schemaLockKey is the advisory lock that serialises schema creation, so
// replicas starting together do not race on CREATE TABLE IF NOT EXISTS.
const schemaLockKey = 0x5350494c4c574159 // "SPILLWAY"

// Postgres is a journal in a PostgreSQL database, shared by every replica
// of the control plane. It keeps SQLite's guarantees across processes:
//
//   - durable on return: a transaction commits with synchronous_commit on
//     (OpenPostgres refuses a server or role where it is off);
//   - ledger appends are serialised by a table lock in their transaction
//     and seq is the primary key, so of concurrent writers extending the
//     ledger from the same entry exactly one wins, the others get
//     ErrSeqConflict;
//   - event appends are serialised the same way, so seq order is commit
//     order and Filter.After is a safe cursor (an identity column alone
//     would let a later-committing smaller seq slip behind a reader).
//
// Reads never wait for writers. It is safe for concurrent use.
type Postgres struct {
	pool      *pgxpool.Pool
	closeOnce *sync.Once
	// fence, when set, fences every write (Fenced).
	fence *fencing
	// clock stamps an event appended without a time.
	clock clockwork.Clock
}

// OpenPostgres connects to the PostgreSQL database dsn names (a
// postgres:// URL or key=value pairs) and creates the journal's tables if
// needed. Errors never include the password.
func OpenPostgres(ctx context.Context, dsn string) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx redacts the password from its parse errors.
		return nil, fmt.Errorf("opening the PostgreSQL journal: %w", err)
	}
	where := fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "spillway"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening the PostgreSQL journal %s: %w", where, err)
	}
	p := &Postgres{pool: pool, closeOnce: new(sync.Once), clock: clockwork.NewRealClock()}
	if err := p.init(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("opening the PostgreSQL journal %s: %w", where, err)
	}
	return p, nil
}

func (p *Postgres) init(ctx context.Context) error {
	var syncCommit string
	if err := p.pool.QueryRow(ctx, "SHOW synchronous_commit").Scan(&syncCommit); err != nil {
		return err
	}
	if syncCommit == "off" {
		return errors.New("synchronous_commit is off for this role or database: a journal entry must be durable when it is acknowledged")
	}
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(schemaLockKey)); err != nil {
			return err
		}
		for _, ddl := range []string{pgSchema, leaseSchema} {
			if _, err := tx.Exec(ctx, ddl); err != nil {
				return fmt.Errorf("creating the journal schema: %w", err)
			}
		}
		for table, ddl := range termColumns {
			var has bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns
				WHERE table_schema = current_schema() AND table_name = $1 AND column_name = 'term')`, table).Scan(&has); err != nil {
				return err
			}
			if !has {
				if _, err := tx.Exec(ctx, ddl); err != nil {
					return fmt.Errorf("adding the term to %s: %w", table, err)
				}
			}
		}
		return nil
	})
}

// Close closes the connections. It is safe to call more than once.
func (p *Postgres) Close() error {
	p.closeOnce.Do(p.pool.Close)
	return nil
}

// Driver implements Store.
func (p *Postgres) Driver() string { return DriverPostgres }

// Events implements Store.
func (p *Postgres) Events() EventLog { return pgEvents{p.pool, p.fence, p.clock} }

// LedgerStore implements Store.
func (p *Postgres) LedgerStore() pools.LedgerStore { return pgLedger{p.pool, p.fence} }

type pgEvents struct {
	pool  *pgxpool.Pool
	fence *fencing
	clock clockwork.Clock
}

// Append implements EventLog.
func (e pgEvents) Append(ctx context.Context, evs ...Event) ([]Event, error) {
	for i, ev := range evs {
		if ev.Kind == "" || ev.Message == "" {
			return nil, fmt.Errorf("appending events: event %d needs a kind and a message", i)
		}
	}
	out := make([]Event, len(evs))
	err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		// EXCLUSIVE blocks other writers, not readers: seqs are handed out
		// in commit order.
		if _, err := tx.Exec(ctx, "LOCK TABLE events IN EXCLUSIVE MODE"); err != nil {
			return err
		}
		term, err := e.fence.check(ctx, tx)
		if err != nil {
			return err
		}
		for i, ev := range evs {
			if ev.Time.IsZero() {
				ev.Time = e.clock.Now()
			}
			ev.Time = ev.Time.UTC()
			ev.Term = term
			if err := tx.QueryRow(ctx, `INSERT INTO events (at_ns, kind, subject, activity, actor, message, data, term)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq`,
				ev.Time.UnixNano(), ev.Kind, ev.Subject, ev.Activity, ev.Actor, ev.Message, string(ev.Data), term).Scan(&ev.Seq); err != nil {
				return fmt.Errorf("appending a %s event: %w", ev.Kind, err)
			}
			out[i] = ev
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("appending events: %w", err)
	}
	return out, nil
}

// postgresDialect compares a kind's prefix range under the "C" collation,
// byte by byte as SQLite does, whatever the database's own collation (a
// locale's would order "." and "/" by other rules); events_kind_bytewise
// serves it.
var postgresDialect = dialect{term: "term", placeholder: func(n int) string { return fmt.Sprintf("$%d", n) }, bytewise: ` COLLATE "C"`, textArg: "::text"}

// Query implements EventLog.
func (e pgEvents) Query(ctx context.Context, f Filter) ([]Event, error) {
	q, args := f.selectSQL(postgresDialect)
	rows, err := e.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("querying events: %w", err)
	}
	defer rows.Close()
	return scanEvents(rows)
}

// LastSeq implements EventLog.
func (e pgEvents) LastSeq(ctx context.Context) (int64, error) {
	var seq int64
	if err := e.pool.QueryRow(ctx, "SELECT COALESCE(MAX(seq), 0) FROM events").Scan(&seq); err != nil {
		return 0, fmt.Errorf("reading the last event: %w", err)
	}
	return seq, nil
}

type pgLedger struct {
	pool  *pgxpool.Pool
	fence *fencing
}

// Append implements pools.LedgerStore.
func (s pgLedger) Append(ctx context.Context, e pools.Entry) error {
	var last int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// SHARE ROW EXCLUSIVE conflicts with itself, not with readers:
		// one appender at a time sees the true last seq.
		if _, err := tx.Exec(ctx, "LOCK TABLE ledger_entries IN SHARE ROW EXCLUSIVE MODE"); err != nil {
			return err
		}
		term, err := s.fence.check(ctx, tx)
		if err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, "SELECT COALESCE(MAX(seq), 0) FROM ledger_entries").Scan(&last); err != nil {
			return err
		}
		if e.Seq != last+1 {
			return ErrSeqConflict
		}
		_, err = tx.Exec(ctx, `INSERT INTO ledger_entries
			(seq, kind, host, host_name, tier, pool, lender, borrower, at_ns, lease_ns, reason, claim, overcommit, term)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
			e.Seq, string(e.Kind), e.Host, e.HostName, string(e.Tier), e.Pool, e.Lender, e.Borrower,
			e.At.UnixNano(), int64(e.Lease), e.Reason, e.Claim, e.Overcommit, term)
		return err
	})
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrFenced):
		return fmt.Errorf("appending ledger entry %d: %w", e.Seq, err)
	case errors.Is(err, ErrSeqConflict):
		return fmt.Errorf("appending ledger entry %d after entry %d: %w", e.Seq, last, ErrSeqConflict)
	case errors.As(err, &pgErr) && pgErr.Code == "23505": // unique_violation: the lock makes it unlikely, the key makes it impossible
		return fmt.Errorf("appending ledger entry %d: %w", e.Seq, ErrSeqConflict)
	}
	return fmt.Errorf("appending ledger entry %d: %w", e.Seq, err)
}

// Entries implements pools.LedgerStore.
func (s pgLedger) Entries(ctx context.Context) ([]pools.Entry, error) {
	rows, err := s.pool.Query(ctx, `SELECT seq, kind, host, host_name, tier, pool, lender, borrower,
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
		)
		if err := rows.Scan(&e.Seq, &kind, &e.Host, &e.HostName, &tier, &e.Pool, &e.Lender, &e.Borrower,
			&atNS, &leaseNS, &e.Reason, &e.Claim, &e.Overcommit); err != nil {
			return nil, fmt.Errorf("reading ledger entries: %w", err)
		}
		e.Kind, e.Tier = pools.EntryKind(kind), pools.Tier(tier)
		e.At = time.Unix(0, atNS).UTC()
		e.Lease = time.Duration(leaseNS)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading ledger entries: %w", err)
	}
	return out, nil
}
