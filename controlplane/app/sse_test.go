package app

import (
	"bufio"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillwayhq/spillway/controlplane/journal"
)

// streamFixture serves the event stream of a journal on a fake clock. Each
// read of the journal's last Seq by the streams' watcher is sent on reads,
// and waits until the test takes it.
type streamFixture struct {
	clock *clockwork.FakeClock
	db    *journal.DB
	reads chan int64
	body  *bufio.Reader
}

func newStreamFixture(t *testing.T, ctx context.Context) *streamFixture {
	t.Helper()
	db, err := journal.Open(ctx, filepath.Join(t.TempDir(), "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &streamFixture{clock: clockwork.NewFakeClockAt(time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)), db: db, reads: make(chan int64)}
	log := slog.New(slog.DiscardHandler)
	a := &App{log: log, journal: db, clock: f.clock}
	last := func(ctx context.Context) (int64, error) {
		seq, err := db.Events().LastSeq(ctx)
		select {
		case f.reads <- seq:
		case <-ctx.Done():
		}
		return seq, err
	}
	a.streams = newStreamHub(4, prometheus.NewRegistry(), last, log, f.clock)
	t.Cleanup(a.streams.close)
	srv := httptest.NewServer(http.HandlerFunc((&api{App: a}).handleEventStream))
	t.Cleanup(srv.Close)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	f.body = bufio.NewReader(resp.Body)
	if got := f.next(t); got != "retry: 2000" {
		t.Fatalf("the stream began with %q", got)
	}
	// The watcher's first read, at once; then it and the stream's
	// heartbeat wait on the clock.
	<-f.reads
	if err := f.clock.BlockUntilContext(ctx, 2); err != nil {
		t.Fatal(err)
	}
	return f
}

// next is the stream's next message, its lines joined by "|".
func (f *streamFixture) next(t *testing.T) string {
	t.Helper()
	var lines []string
	for {
		line, err := f.body.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			return strings.Join(lines, "|")
		}
		lines = append(lines, line)
	}
}

// An idle stream is kept alive every streamHeartbeat of the daemon's
// clock, not of the wall clock.
func TestEventStreamHeartbeatOnTheClock(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f := newStreamFixture(t, ctx)
	for range 2 {
		f.clock.Advance(streamHeartbeat)
		<-f.reads // the watcher polled too, and found nothing new
		if got := f.next(t); got != ": keep-alive" {
			t.Fatalf("after %s idle: %q, want a keep-alive", streamHeartbeat, got)
		}
	}
}

// An event appended to the journal reaches the stream once the watcher
// polls, every streamPoll of the daemon's clock.
func TestEventStreamPollsOnTheClock(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f := newStreamFixture(t, ctx)
	evs, err := f.db.Events().Append(ctx, journal.Event{Kind: "test.marker", Message: "appended"})
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(streamPoll)
	if seq := <-f.reads; seq != evs[0].Seq {
		t.Fatalf("the watcher read Seq %d, want %d", seq, evs[0].Seq)
	}
	if got := f.next(t); !strings.HasPrefix(got, "id: 1|data: ") || !strings.Contains(got, `"message":"appended"`) {
		t.Fatalf("streamed %q, want the appended event", got)
	}
}
