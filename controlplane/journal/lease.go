package journal

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The leader election's lease lives in the shared PostgreSQL journal: one
// row per election, taken and renewed on the database's clock, so the
// replicas' clocks do not matter. Each term has a fencing token (the term
// number, which only grows), and a fenced journal ([Postgres.Fenced])
// refuses a write whose token is not the live term's, in the same
// transaction as the write.
const leaseSchema = `
CREATE TABLE IF NOT EXISTS leader_leases (
	election    TEXT        PRIMARY KEY,
	holder      TEXT        NOT NULL,
	term        BIGINT      NOT NULL,
	acquired_at TIMESTAMPTZ NOT NULL,
	renewed_at  TIMESTAMPTZ NOT NULL,
	expires_at  TIMESTAMPTZ NOT NULL,
	released    BOOLEAN     NOT NULL DEFAULT FALSE
);
`

// termColumns adds the writer's term to the events and the ledger, in a
// journal made before leader election had a term. It runs only when a
// column is missing: ALTER TABLE takes an exclusive lock even when it
// changes nothing, and would stall a running leader's writes whenever a
// replica starts.
var termColumns = map[string]string{
	"events":         "ALTER TABLE events ADD COLUMN IF NOT EXISTS term BIGINT NOT NULL DEFAULT 0",
	"ledger_entries": "ALTER TABLE ledger_entries ADD COLUMN IF NOT EXISTS term BIGINT NOT NULL DEFAULT 0",
}

// leaseChannel is the NOTIFY channel a release is announced on, so a
// follower takes over at once instead of at its next attempt.
const leaseChannel = "spillway_leader"

// ErrLeaseLost is returned by Renew and Release when the term is no
// longer the live one: its lease ran out, or was released, or another
// replica holds a newer term.
var ErrLeaseLost = errors.New("the leader lease is no longer held by this term")

// ErrFenced wraps a write that a fenced journal refused: the writer is not
// acting in the live term of the election (it is not the leader, its
// lease ran out, or a newer term began). Nothing of the write was kept.
var ErrFenced = errors.New("refused: the writer does not hold the live leader term")

// Lease is one election's row in the journal. Its methods are safe for
// concurrent use.
type Lease struct {
	p        *Postgres
	election string
}

// Lease returns the lease of the named election.
func (p *Postgres) Lease(election string) *Lease { return &Lease{p: p, election: election} }

// Election is the lease's election name.
func (l *Lease) Election() string { return l.election }

// Grant is the outcome of an attempt to take the lease.
type Grant struct {
	// Acquired says the caller now holds the lease, in term Term.
	Acquired bool
	// Term is the caller's new term when Acquired; otherwise the term the
	// holder is in.
	Term int64
	// Holder is who holds the lease: the caller when Acquired.
	Holder string
	// Remaining is how long the lease runs on the database's clock: the
	// caller's TTL when Acquired, else the holder's time left. A follower
	// tries again when it runs out.
	Remaining time.Duration
	// Previous describes the term that ended, when Acquired and there was
	// one: how the lease passed over.
	Previous *Handover
}

// Handover is how the previous term ended, measured on the database's clock
// when the next term began.
type Handover struct {
	Holder string
	Term   int64
	// Released says the previous holder gave the lease up (a clean stop);
	// otherwise it ran out unrenewed (a crash, a pause or a partition).
	Released bool
	// SinceRenewed is the time from the previous holder's last renewal to
	// the new term: the leaderless gap is at most this.
	SinceRenewed time.Duration
	// SinceEnded is the time from the previous lease's end (its expiry or
	// release) to the new term: how long the lease lay free.
	SinceEnded time.Duration
}

// Acquire takes the lease for holder for ttl if it is free: never taken,
// released, or expired. Otherwise it reports who holds it and for how
// long. Each successful Acquire starts a new term, with a token one above
// the last.
func (l *Lease) Acquire(ctx context.Context, holder string, ttl time.Duration) (Grant, error) {
	var g Grant
	err := pgx.BeginFunc(ctx, l.p.pool, func(tx pgx.Tx) error {
		// The row exists from the first attempt on, as term 0, so that
		// concurrent first attempts serialise on its row lock.
		if _, err := tx.Exec(ctx, `INSERT INTO leader_leases (election, holder, term, acquired_at, renewed_at, expires_at, released)
			VALUES ($1, '', 0, clock_timestamp(), clock_timestamp(), clock_timestamp(), TRUE) ON CONFLICT (election) DO NOTHING`, l.election); err != nil {
			return err
		}
		var (
			prev                    Handover
			live                    bool
			remaining, sinceRenewed float64
			sinceEnded              float64
		)
		// FOR UPDATE waits for fenced writes of the current term that are
		// in flight (they hold the row FOR SHARE): a write either commits
		// before the next term begins or is refused.
		if err := tx.QueryRow(ctx, `SELECT holder, term, released,
				NOT released AND expires_at > clock_timestamp(),
				EXTRACT(EPOCH FROM (expires_at - clock_timestamp()))::float8,
				EXTRACT(EPOCH FROM (clock_timestamp() - renewed_at))::float8,
				EXTRACT(EPOCH FROM (clock_timestamp() - expires_at))::float8
			FROM leader_leases WHERE election = $1 FOR UPDATE`, l.election).
			Scan(&prev.Holder, &prev.Term, &prev.Released, &live, &remaining, &sinceRenewed, &sinceEnded); err != nil {
			return err
		}
		if live {
			g = Grant{Term: prev.Term, Holder: prev.Holder, Remaining: seconds(remaining)}
			return nil
		}
		var term int64
		if err := tx.QueryRow(ctx, `UPDATE leader_leases SET holder = $2, term = term + 1,
				acquired_at = clock_timestamp(), renewed_at = clock_timestamp(),
				expires_at = clock_timestamp() + $3 * interval '1 microsecond', released = FALSE
			WHERE election = $1 RETURNING term`, l.election, holder, ttl.Microseconds()).Scan(&term); err != nil {
			return err
		}
		g = Grant{Acquired: true, Term: term, Holder: holder, Remaining: ttl}
		if prev.Term > 0 {
			prev.SinceRenewed, prev.SinceEnded = seconds(sinceRenewed), max(seconds(sinceEnded), 0)
			g.Previous = &prev
		}
		return nil
	})
	if err != nil {
		return Grant{}, fmt.Errorf("taking the leader lease %q: %w", l.election, err)
	}
	return g, nil
}

// Renew extends the lease of term by ttl from now, on the database's
// clock. It returns an error wrapping ErrLeaseLost when term is not the
// live one any more.
func (l *Lease) Renew(ctx context.Context, term int64, ttl time.Duration) error {
	tag, err := l.p.pool.Exec(ctx, `UPDATE leader_leases
		SET renewed_at = clock_timestamp(), expires_at = clock_timestamp() + $3 * interval '1 microsecond'
		WHERE election = $1 AND term = $2 AND NOT released AND expires_at > clock_timestamp()`,
		l.election, term, ttl.Microseconds())
	if err != nil {
		return fmt.Errorf("renewing the leader lease %q: %w", l.election, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("renewing the leader lease %q in term %d: %w", l.election, term, ErrLeaseLost)
	}
	return nil
}

// Release gives the lease of term up at once and tells the waiting
// replicas (Wait), so one takes over without waiting for the TTL.
func (l *Lease) Release(ctx context.Context, term int64) error {
	var released bool
	err := pgx.BeginFunc(ctx, l.p.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE leader_leases SET expires_at = clock_timestamp(), released = TRUE
			WHERE election = $1 AND term = $2 AND NOT released AND expires_at > clock_timestamp()`, l.election, term)
		if err != nil {
			return err
		}
		if released = tag.RowsAffected() > 0; released {
			_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, leaseChannel, l.election)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("releasing the leader lease %q: %w", l.election, err)
	}
	if !released {
		return fmt.Errorf("releasing the leader lease %q in term %d: %w", l.election, term, ErrLeaseLost)
	}
	return nil
}

// Wait returns after d, or earlier when the lease is released, or when ctx
// ends. It holds one connection while it waits. A connection error ends
// it early (the caller tries again), never late.
func (l *Lease) Wait(ctx context.Context, d time.Duration) {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	conn, err := l.p.pool.Acquire(wctx)
	if err != nil {
		<-wctx.Done()
		return
	}
	defer func() {
		// Stop listening before the connection goes back to the pool; a
		// connection that cannot is closed, and the pool drops it.
		uctx, ucancel := context.WithTimeout(context.Background(), time.Second)
		defer ucancel()
		if _, err := conn.Exec(uctx, "UNLISTEN "+leaseChannel); err != nil {
			_ = conn.Conn().Close(uctx)
		}
		conn.Release()
	}()
	if _, err := conn.Exec(wctx, "LISTEN "+leaseChannel); err != nil {
		<-wctx.Done()
		return
	}
	for {
		n, err := conn.Conn().WaitForNotification(wctx)
		if err != nil {
			return
		}
		if n.Payload == l.election {
			return
		}
	}
}

// Holder reads who holds the lease now, and in which term: "" when nobody
// does.
func (l *Lease) Holder(ctx context.Context) (string, int64, error) {
	var (
		holder string
		term   int64
	)
	err := l.p.pool.QueryRow(ctx, `SELECT holder, term FROM leader_leases
		WHERE election = $1 AND NOT released AND expires_at > clock_timestamp()`, l.election).Scan(&holder, &term)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, fmt.Errorf("reading the leader lease %q: %w", l.election, err)
	}
	return holder, term, nil
}

// Fence says in which term of an election this replica acts. The elector
// (controlplane/leader) implements it.
type Fence interface {
	// Token returns the fencing token of the term this replica acts in,
	// or an error when it does not act now (it follows, or its lease ran
	// out on its own clock).
	Token() (int64, error)
	// Refused is told when the database refused a write with a token
	// that Token gave: a newer term began, or the lease ran out.
	Refused(err error)
}

// Fenced returns this journal with every write fenced: each event and
// ledger append carries fence's token, and the database refuses it,
// wrapping ErrFenced, unless the token is the election's live term. The
// returned journal shares the connections; closing either closes both.
func (p *Postgres) Fenced(election string, fence Fence) *Postgres {
	q := *p
	q.fence = &fencing{election: election, fence: fence}
	return &q
}

// fencing is a fenced journal's election and the source of its tokens.
type fencing struct {
	election string
	fence    Fence
}

// check refuses a write in tx unless its token is the live term's. It
// takes the lease row FOR SHARE, so a new term cannot begin until tx ends.
// It returns the token written with the rows (0 when unfenced).
func (f *fencing) check(ctx context.Context, tx pgx.Tx) (int64, error) {
	if f == nil {
		return 0, nil
	}
	token, err := f.fence.Token()
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrFenced, err)
	}
	var live bool
	err = tx.QueryRow(ctx, `SELECT term = $2 AND NOT released AND expires_at > clock_timestamp()
		FROM leader_leases WHERE election = $1 FOR SHARE`, f.election, token).Scan(&live)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && !live) {
		err := fmt.Errorf("%w: term %d of election %q is not the live one", ErrFenced, token, f.election)
		f.fence.Refused(err)
		return 0, err
	}
	if err != nil {
		return 0, err
	}
	return token, nil
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
