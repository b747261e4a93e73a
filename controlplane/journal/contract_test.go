package journal_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/spillwayhq/spillway/controlplane/config"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/controlplane/journal/journaltest"
	"github.com/spillwayhq/spillway/pools"
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

// TestPostgresAcknowledgedSurvivesCrash kills PostgreSQL (SIGKILL, with its
// backends) while events and ledger entries are being appended: everything
// an Append acknowledged is there after the restart.
func TestPostgresAcknowledgedSurvivesCrash(t *testing.T) {
	srv := journaltest.StartPostgres(t)
	dsn := srv.NewDatabase(t)
	ctx := context.Background()
	db, err := journal.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	var acked []int64
	var ledgerAcked int64
	stop := make(chan struct{})
	done := make(chan struct{})
	twenty := make(chan struct{}) // closed once 20 appends are acknowledged
	go func() {
		defer close(done)
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			evs, err := db.Events().Append(ctx, journal.Event{Kind: "x", Message: fmt.Sprint(i)})
			if err != nil {
				return // the crash
			}
			acked = append(acked, evs[0].Seq)
			if len(acked) == 20 {
				close(twenty)
			}
			if err := db.LedgerStore().Append(ctx, pools.Entry{Seq: int64(i), Kind: pools.EntryBorrow, Host: fmt.Sprint("h", i),
				Tier: pools.TierShared, Lender: "b", Borrower: "a", At: time.Unix(int64(i), 0), Lease: time.Hour}); err != nil {
				return
			}
			ledgerAcked = int64(i)
		}
	}()
	// Crash mid-stream, once appends are being acknowledged.
	select {
	case <-twenty:
	case <-done:
		t.Fatal("the writer stopped before 20 appends")
	case <-time.After(30 * time.Second):
		t.Fatal("20 appends were not acknowledged within 30s")
	}
	srv.Crash(t)
	close(stop)
	<-done
	if len(acked) == 0 {
		t.Fatal("nothing was appended before the crash")
	}

	db2, err := journal.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	got := map[int64]bool{}
	for after := int64(0); ; {
		page, err := db2.Events().Query(ctx, journal.Filter{After: after, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, ev := range page {
			got[ev.Seq] = true
		}
		after = page[len(page)-1].Seq
	}
	for _, seq := range acked {
		if !got[seq] {
			t.Fatalf("event %d was acknowledged before the crash and is gone after it", seq)
		}
	}
	entries, err := db2.LedgerStore().Entries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(entries)) < ledgerAcked {
		t.Fatalf("%d ledger entries after the crash, %d were acknowledged", len(entries), ledgerAcked)
	}
	t.Logf("%d events and %d ledger entries acknowledged before the crash, all there after it", len(acked), ledgerAcked)
}

func TestOpenConfig(t *testing.T) {
	ctx := context.Background()
	// The journal stamps an event appended without a time with the clock
	// it was given.
	t0 := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	opts := journal.Options{Clock: clockwork.NewFakeClockAt(t0)}
	stamps := func(name string, s journal.Store) {
		t.Helper()
		evs, err := s.Events().Append(ctx, journal.Event{Kind: "x", Message: "now"})
		if err != nil || !evs[0].Time.Equal(t0) {
			t.Fatalf("%s: an event without a time: %+v, %v, want it stamped %s", name, evs, err, t0)
		}
	}
	s, err := journal.OpenConfig(ctx, config.Journal{Driver: "sqlite", Path: filepath.Join(t.TempDir(), "j.db")}, opts)
	if err != nil || s.Driver() != journal.DriverSQLite {
		t.Fatalf("sqlite: %v, %v", s, err)
	}
	stamps("sqlite", s)
	s.Close()
	if _, err := journal.OpenConfig(ctx, config.Journal{Driver: "mysql"}, journal.Options{}); err == nil {
		t.Fatal("an unknown driver must be refused")
	}
	// A bad DSN's error never shows the password.
	_, err = journal.OpenConfig(ctx, config.Journal{Driver: "postgres", DSN: "postgres://u:hunter2@127.0.0.1:1/x?sslmode=disable&connect_timeout=1"}, journal.Options{})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("unreachable PostgreSQL: %v", err)
	}

	srv := journaltest.StartPostgres(t)
	s, err = journal.OpenConfig(ctx, config.Journal{Driver: "postgres", DSN: config.Secret(srv.NewDatabase(t))}, opts)
	if err != nil || s.Driver() != journal.DriverPostgres {
		t.Fatalf("postgres: %v, %v", s, err)
	}
	stamps("postgres", s)
	s.Close()
}
