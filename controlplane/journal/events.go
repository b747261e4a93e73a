package journal

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"
)

// eventsSchema is the append-only event log: what Spillway saw, decided and
// did, and why. It answers "why did it scale?".
const eventsSchema = `
CREATE TABLE IF NOT EXISTS events (
	seq      INTEGER PRIMARY KEY AUTOINCREMENT,
	at_ns    INTEGER NOT NULL,
	kind     TEXT    NOT NULL,
	subject  TEXT    NOT NULL DEFAULT '',
	activity TEXT    NOT NULL DEFAULT '',
	actor    TEXT    NOT NULL DEFAULT '',
	message  TEXT    NOT NULL,
	data     TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS events_subject ON events(subject, seq);
CREATE INDEX IF NOT EXISTS events_kind ON events(kind, seq);
CREATE INDEX IF NOT EXISTS events_at ON events(at_ns);
CREATE INDEX IF NOT EXISTS events_activity ON events(activity, seq);
CREATE INDEX IF NOT EXISTS events_kind_at ON events(kind, at_ns);
`

// Event kinds. A kind is dotted: queries filter by prefix ("alert" matches
// "alert.accepted").
const (
	KindAlertAccepted = "alert.accepted"
	KindAlertRepeated = "alert.repeated"
	KindAlertResolved = "alert.resolved"
	KindAlertRejected = "alert.rejected"
	KindAlertIgnored  = "alert.ignored"
	// KindAlertUnmatched sums up the alerts of one notification that no
	// policy's rule matches: they are counted, not stored one by one.
	KindAlertUnmatched = "alert.unmatched"
	// KindAlertFull: the firing set reached alerts.max_firing, and
	// notifications that would add to it are refused (503, which
	// Alertmanager retries) until it drains.
	KindAlertFull   = "alert.full"
	KindDecision    = "decision"
	KindScale       = "scale"
	KindScaleFailed = "scale.failed"
	// KindScaleDeferred: Nomad refuses to change a count during a
	// deployment; the change is made when it ends.
	KindScaleDeferred = "scale.deferred"
	KindReload        = "reload"
)

// Event is one entry of the event log.
type Event struct {
	// Seq orders events; it is assigned on append and is the pagination cursor.
	Seq  int64     `json:"seq"`
	Time time.Time `json:"time"`
	Kind string    `json:"kind"`
	// Subject is what the event is about: a service ("namespace/job/group"),
	// a policy, a pool or a host.
	Subject string `json:"subject,omitempty"`
	// Activity groups the events of one scale operation.
	Activity string `json:"activity,omitempty"`
	// Actor is who caused it: "controller", "alertmanager", or an API token's name.
	Actor string `json:"actor,omitempty"`
	// Message says what happened and why, in one sentence.
	Message string `json:"message"`
	// Data is the event's details as JSON. It must never hold secrets.
	Data json.RawMessage `json:"data,omitempty"`
	// Term is the leader term (its fencing token) of the replica that
	// wrote the event, when replicas elect a leader; 0 otherwise. It is
	// set by the journal on append.
	Term int64 `json:"term,omitempty"`
}

// NewActivity names one scaling operation (a decision and the scale-out
// that follows it): "act-<UTC time>-<random>".
func NewActivity(now time.Time) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("act-%s-%s", now.UTC().Format("20060102T150405"), hex.EncodeToString(b))
}

// Filter selects events. Zero fields do not filter.
type Filter struct {
	// Kind matches the kind or a dotted prefix of it.
	Kind     string
	Subject  string
	Activity string
	Since    time.Time
	Until    time.Time
	// Actor matches the actor exactly.
	Actor string
	// Text matches, ignoring ASCII case, a part of the message, kind,
	// subject, activity, actor or data.
	Text string
	// Host matches the events about a host: its subject ("host/<id>", or
	// the ID itself) or a string in its data that is the ID or starts with
	// it and a space ("i-0abc (m5.large/…)").
	Host string
	// After is the cursor: only events with a larger Seq.
	After int64
	// Before, with Desc, is the cursor of a newest-first page: only events
	// with a smaller Seq.
	Before int64
	// Desc returns the newest first.
	Desc bool
	// Limit caps the result (default 100, at most 1000).
	Limit int
}

// Events is the event log in a SQLite journal.
type Events struct {
	db    *sql.DB
	clock clockwork.Clock
}

var _ EventLog = (*Events)(nil)

// Events returns the event log.
func (d *DB) Events() EventLog { return &Events{db: d.db, clock: d.clock} }

// Append records events durably, in order, in one transaction, and returns
// them with Seq set.
func (e *Events) Append(ctx context.Context, evs ...Event) ([]Event, error) {
	tx, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("appending events: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	out := make([]Event, len(evs))
	for i, ev := range evs {
		if ev.Kind == "" || ev.Message == "" {
			return nil, fmt.Errorf("appending events: event %d needs a kind and a message", i)
		}
		if ev.Time.IsZero() {
			ev.Time = e.clock.Now()
		}
		ev.Time = ev.Time.UTC()
		res, err := tx.ExecContext(ctx, `INSERT INTO events (at_ns, kind, subject, activity, actor, message, data)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, ev.Time.UnixNano(), ev.Kind, ev.Subject, ev.Activity, ev.Actor, ev.Message, string(ev.Data))
		if err != nil {
			return nil, fmt.Errorf("appending a %s event: %w", ev.Kind, err)
		}
		if ev.Seq, err = res.LastInsertId(); err != nil {
			return nil, fmt.Errorf("appending a %s event: %w", ev.Kind, err)
		}
		out[i] = ev
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("committing events: %w", err)
	}
	return out, nil
}

// Query returns the events f selects, oldest first (newest first with Desc).
func (e *Events) Query(ctx context.Context, f Filter) ([]Event, error) {
	q, args := f.selectSQL(sqliteDialect)
	rows, err := e.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("querying events: %w", err)
	}
	defer rows.Close()
	return scanEvents(rows)
}

// LastSeq implements EventLog.
func (e *Events) LastSeq(ctx context.Context) (int64, error) {
	var seq int64
	if err := e.db.QueryRowContext(ctx, "SELECT COALESCE(MAX(seq), 0) FROM events").Scan(&seq); err != nil {
		return 0, fmt.Errorf("reading the last event: %w", err)
	}
	return seq, nil
}

// dialect is what differs between the backends in a query of events.
type dialect struct {
	// term is the expression of the writer's term: a column, or 0 where
	// there is none.
	term string
	// placeholder renders the n-th argument (1-based).
	placeholder func(n int) string
	// bytewise is the collation clause under which text compares byte by
	// byte ("" where that is the default), for the kind's prefix range.
	bytewise string
	// textArg follows a placeholder that the backend cannot type by
	// itself (PostgreSQL, beside a COLLATE).
	textArg string
	// bySeqOnly is the ORDER BY expression of a query that a time range
	// narrows: it must not make the planner walk the whole log in seq
	// order for the sake of the order (SQLite does, for "seq"; "+seq"
	// keeps it to the time index and a sort of what it finds).
	bySeqOnly string
}

var sqliteDialect = dialect{term: "0", placeholder: func(int) string { return "?" }, bySeqOnly: "+seq"}

// selectSQL builds the query for f in the backend's dialect d, oldest
// first. A kind's dotted prefix is a range ("scale." up to "scale/", the
// next byte), which the kind's index serves, where a LIKE would not.
func (f Filter) selectSQL(d dialect) (string, []any) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return d.placeholder(len(args))
	}
	if f.Kind != "" {
		kind := "kind" + d.bytewise
		is, from, to := arg(f.Kind)+d.textArg, arg(f.Kind+".")+d.textArg, arg(f.Kind+"/")+d.textArg
		where = append(where, "("+kind+" = "+is+" OR ("+kind+" >= "+from+" AND "+kind+" < "+to+"))")
	}
	if f.Subject != "" {
		where = append(where, "subject = "+arg(f.Subject))
	}
	if f.Activity != "" {
		where = append(where, "activity = "+arg(f.Activity))
	}
	if !f.Since.IsZero() {
		where = append(where, "at_ns >= "+arg(unixNano(f.Since)))
	}
	if !f.Until.IsZero() {
		where = append(where, "at_ns < "+arg(unixNano(f.Until)))
	}
	if f.Actor != "" {
		where = append(where, "actor = "+arg(f.Actor))
	}
	if f.Text != "" {
		like := "%" + escapeLike(strings.ToLower(f.Text)) + "%"
		var parts []string
		for _, col := range []string{"message", "kind", "subject", "activity", "actor", "data"} {
			// An argument each: SQLite's ? placeholders are positional.
			parts = append(parts, fmt.Sprintf(`LOWER(%s) LIKE %s ESCAPE '\'`, col, arg(like)))
		}
		where = append(where, "("+strings.Join(parts, " OR ")+")")
	}
	if f.Host != "" {
		quoted := escapeLike(`"` + f.Host)
		where = append(where, fmt.Sprintf(`(subject = %s OR subject = %s OR data LIKE %s ESCAPE '\' OR data LIKE %s ESCAPE '\')`,
			arg(f.Host), arg("host/"+f.Host), arg("%"+quoted+`"%`), arg("%"+quoted+" (%")))
	}
	if f.After > 0 {
		where = append(where, "seq > "+arg(f.After))
	}
	if f.Desc && f.Before > 0 {
		where = append(where, "seq < "+arg(f.Before))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	q := "SELECT seq, at_ns, kind, subject, activity, actor, message, data, " + d.term + " FROM events"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	order := "seq"
	if (!f.Since.IsZero() || !f.Until.IsZero()) && d.bySeqOnly != "" {
		order = d.bySeqOnly
	}
	if f.Desc {
		order += " DESC"
	}
	q += " ORDER BY " + order + " LIMIT " + arg(limit)
	return q, args
}

// unixNano is t in nanoseconds since 1970, clamped to int64: UnixNano is
// undefined outside 1678 to 2262, and an overflow would invert a filter.
func unixNano(t time.Time) int64 {
	switch {
	case t.After(maxNanoTime):
		return math.MaxInt64
	case t.Before(minNanoTime):
		return math.MinInt64
	}
	return t.UnixNano()
}

var (
	maxNanoTime = time.Unix(0, math.MaxInt64)
	minNanoTime = time.Unix(0, math.MinInt64)
)

// rowScanner is what database/sql's and pgx's rows have in common.
type rowScanner interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// scanEvents reads the rows of a selectSQL query.
func scanEvents(rows rowScanner) ([]Event, error) {
	var out []Event
	for rows.Next() {
		var ev Event
		var atNS int64
		var data string
		if err := rows.Scan(&ev.Seq, &atNS, &ev.Kind, &ev.Subject, &ev.Activity, &ev.Actor, &ev.Message, &data, &ev.Term); err != nil {
			return nil, fmt.Errorf("querying events: %w", err)
		}
		ev.Time = time.Unix(0, atNS).UTC()
		if data != "" {
			ev.Data = json.RawMessage(data)
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("querying events: %w", err)
	}
	return out, nil
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// Querier reads events; every EventLog is one.
type Querier interface {
	Query(ctx context.Context, f Filter) ([]Event, error)
}

// Each calls fn with every event f selects, oldest first (newest first
// with f.Desc), reading a page of f.Limit (1000 when zero) at a time from
// f.After (f.Before) on. It stops at the
// first error of the query or of fn.
func Each(ctx context.Context, q Querier, f Filter, fn func(Event) error) error {
	if f.Limit <= 0 {
		f.Limit = 1000
	}
	for {
		evs, err := q.Query(ctx, f)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if err := fn(ev); err != nil {
				return err
			}
		}
		if len(evs) < f.Limit {
			return nil
		}
		if f.Desc {
			f.Before = evs[len(evs)-1].Seq
		} else {
			f.After = evs[len(evs)-1].Seq
		}
	}
}
