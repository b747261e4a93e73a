package journal_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/controlplane/journal/journaltest"
)

// benchEvents is the size of the journal the benchmarks run against: about
// a day of a busy control plane.
const benchEvents = 100_000

// benchKinds are the kinds the seeded journal cycles through.
var benchKinds = []string{journal.KindDecision, journal.KindScale, "activity.phase", "intent.claim", "capacity.claimed",
	"host.ready", "intent.return", "capacity.returned", "alert.accepted", journal.KindReload}

// benchEvent is the i-th event of the seeded journal: one of 1,000
// activities, ten kinds, spread over the last day.
func benchEvent(i int, now time.Time) journal.Event {
	data, _ := json.Marshal(map[string]any{"pool": "aws-lab", "claim": fmt.Sprintf("act-%d-aws", i%1000), "hosts": []string{"i-0123456789abcdef0"}})
	return journal.Event{
		Time: now.Add(-24 * time.Hour).Add(time.Duration(i) * (24 * time.Hour / benchEvents)), Kind: benchKinds[i%len(benchKinds)],
		Subject: fmt.Sprintf("default/svc-%d/web", i%100), Activity: fmt.Sprintf("act-%d", i%1000), Actor: "controller",
		Message: "rented 1 host from aws-lab: [i-0123456789abcdef0 (m5.large/us-east-1a/on-demand)]", Data: data,
	}
}

// BenchmarkJournal measures the event log's hot paths on both backends
// (make bench), over a journal of 100,000 events: a durable append of one
// event and of a batch of 100, the API's page of one kind in the last hour,
// one activity's events (what "why?" reads), and LastSeq (where a stream
// starts).
func BenchmarkJournal(b *testing.B) {
	ctx := context.Background()
	backends := []struct {
		name string
		open func(b *testing.B) journal.Store
	}{
		{"sqlite", func(b *testing.B) journal.Store {
			db, err := journal.Open(ctx, filepath.Join(b.TempDir(), "journal.db"))
			if err != nil {
				b.Fatal(err)
			}
			return db
		}},
		{"postgres", func(b *testing.B) journal.Store {
			srv := journaltest.StartPostgres(b)
			db, err := journal.OpenPostgres(ctx, srv.NewDatabase(b))
			if err != nil {
				b.Fatal(err)
			}
			return db
		}},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			db := be.open(b)
			defer db.Close()
			log := db.Events()
			now := time.Now()
			batch := make([]journal.Event, 0, 1000)
			for i := range benchEvents {
				batch = append(batch, benchEvent(i, now))
				if len(batch) == cap(batch) {
					if _, err := log.Append(ctx, batch...); err != nil {
						b.Fatal(err)
					}
					batch = batch[:0]
				}
			}
			b.Run("append-1", func(b *testing.B) {
				i := 0
				for b.Loop() {
					if _, err := log.Append(ctx, benchEvent(i, now)); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
			b.Run("append-100", func(b *testing.B) {
				evs := make([]journal.Event, 100)
				for i := range evs {
					evs[i] = benchEvent(i, now)
				}
				for b.Loop() {
					if _, err := log.Append(ctx, evs...); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/event")
			})
			b.Run("query-kind-last-hour-100", func(b *testing.B) {
				f := journal.Filter{Kind: journal.KindScale, Since: now.Add(-time.Hour), Limit: 100}
				for b.Loop() {
					evs, err := log.Query(ctx, f)
					if err != nil || len(evs) == 0 {
						b.Fatalf("%d events, %v", len(evs), err)
					}
				}
			})
			b.Run("query-activity", func(b *testing.B) {
				f := journal.Filter{Activity: "act-500", Limit: 1000}
				for b.Loop() {
					evs, err := log.Query(ctx, f)
					if err != nil || len(evs) < benchEvents/1000 {
						b.Fatalf("%d events, %v", len(evs), err)
					}
				}
			})
			b.Run("last-seq", func(b *testing.B) {
				for b.Loop() {
					if seq, err := log.LastSeq(ctx); err != nil || seq < benchEvents {
						b.Fatalf("last seq %d, %v", seq, err)
					}
				}
			})
		})
	}
}
