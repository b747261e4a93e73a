package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillwayhq/spillway/controlplane/journal"
)

// The event stream follows the journal itself rather than an in-process
// hook: with a shared PostgreSQL journal, a replica that serves reads sees
// the events the leader appends, and a client that reconnects resumes
// exactly where it stopped (Last-Event-ID is the journal's Seq).
const (
	// streamPoll is how often a stream reads new events.
	streamPoll = 250 * time.Millisecond
	// streamHeartbeat keeps idle connections (and proxies) alive.
	streamHeartbeat = 15 * time.Second
)

// streamHub counts the open streams against api.max_streams, and ends
// every one when the daemon shuts down, so a graceful shutdown does not
// wait for clients that never hang up. One watcher reads the journal's
// last Seq every streamPoll while any stream is open and wakes the streams
// when it moves, so an idle stream costs no query: a hundred idle streams
// cost what one does.
type streamHub struct {
	once  sync.Once
	done  chan struct{}
	slots chan struct{}
	open  prometheus.Gauge
	last  func(context.Context) (int64, error)
	log   *slog.Logger
	clock clockwork.Clock // times the polls

	watch   sync.Once
	mu      sync.Mutex
	seq     int64         // the last Seq the watcher read
	changed chan struct{} // closed when seq moves
}

func newStreamHub(max int, reg prometheus.Registerer, last func(context.Context) (int64, error), log *slog.Logger, clock clockwork.Clock) *streamHub {
	h := &streamHub{done: make(chan struct{}), slots: make(chan struct{}, max), last: last, log: log, clock: clock, changed: make(chan struct{}),
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_event_streams_open",
			Help: "Event streams (GET /v1/events/stream) open now; api.max_streams caps them.",
		})}
	reg.MustRegister(h.open)
	return h
}

// current is the last Seq the watcher read, and a channel closed once it
// reads a newer one.
func (h *streamHub) current() (int64, <-chan struct{}) {
	h.watch.Do(func() { go h.run() })
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seq, h.changed
}

// run is the watcher, until the daemon shuts down.
func (h *streamHub) run() {
	tick := h.clock.NewTicker(streamPoll)
	defer tick.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-h.done; cancel() }()
	for {
		if len(h.slots) > 0 {
			seq, err := h.last(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				h.log.Warn("event streams: reading the journal's last event", "err", err)
			case err == nil:
				h.mu.Lock()
				if seq != h.seq {
					h.seq = seq
					close(h.changed)
					h.changed = make(chan struct{})
				}
				h.mu.Unlock()
			}
		}
		select {
		case <-h.done:
			return
		case <-tick.Chan():
		}
	}
}

// acquire takes a stream's slot, or reports false when all are taken.
func (h *streamHub) acquire() (release func(), ok bool) {
	select {
	case h.slots <- struct{}{}:
		h.open.Inc()
		return func() { <-h.slots; h.open.Dec() }, true
	default:
		return nil, false
	}
}

// close ends the streams; it is http.Server's shutdown hook.
func (h *streamHub) close() {
	if h != nil {
		h.once.Do(func() { close(h.done) })
	}
}

// handleEventStream serves GET /v1/events/stream: the journal as
// Server-Sent Events. Each event is one SSE message whose id is its Seq
// and whose data is the event as JSON. With Last-Event-ID (or ?after=) the
// stream resumes after that event; otherwise it starts with the events
// appended after the client connected. kind, subject (or service) and
// activity filter as in GET /v1/events. Opening one costs the same
// whatever the journal's size; beyond api.max_streams open at once, a
// stream is refused with 503 and Retry-After.
func (s *api) handleEventStream(w http.ResponseWriter, r *http.Request) {
	q := query{r: r}
	f := journal.Filter{Kind: q.str("kind"), Subject: q.str("subject"), Activity: q.str("activity")}
	if v := q.str("service"); v != "" {
		f.Subject = v
	}
	resume := r.Header.Get("Last-Event-ID")
	if resume == "" {
		resume = q.str("after")
	}
	if resume != "" {
		n, err := strconv.ParseInt(resume, 10, 64)
		if err != nil || n < 0 {
			q.bad = append(q.bad, fmt.Sprintf("Last-Event-ID: want the id of an event, got %q", resume))
		}
		f.After = n
	}
	if len(q.bad) > 0 {
		badQuery(w, q.bad)
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming_unsupported", "this connection cannot stream")
		return
	}
	release, ok := s.streams.acquire()
	if !ok {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "too_many_streams",
			fmt.Sprintf("%d event streams are open, the most api.max_streams allows; retry later, or page GET /v1/events", cap(s.streams.slots)))
		return
	}
	defer release()
	ctx := r.Context()
	if resume == "" {
		// Start at the end of the journal: skip what is already there.
		// Seqs are handed out in append order, so an event appended after
		// this is newer whatever its timestamp.
		var err error
		if f.After, err = s.journal.Events().LastSeq(ctx); err != nil {
			writeError(w, http.StatusServiceUnavailable, "journal_unavailable", err.Error())
			return
		}
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "retry: 2000\n\n")
	flusher.Flush()

	// The heartbeat and the polls are on the daemon's clock; the write
	// deadlines below are the connection's, on the wall clock.
	clock := s.clock
	heartbeat := clock.NewTicker(streamHeartbeat)
	defer heartbeat.Stop()
	lastWrite := clock.Now()
	beat := false // woken by the heartbeat
	// covered is the last Seq this stream has read up to: the journal's at
	// the start; a resumed stream reads at once.
	covered, query := f.After, resume != ""
	for {
		// Query only when the watcher has seen an event this stream has
		// not read: a hundred streams opened at once do not all query when
		// the watcher first reads the journal.
		seq, changed := s.streams.current()
		if seq > covered {
			query = true
		}
		var evs []journal.Event
		var err error
		if query {
			f.Limit = 1000
			evs, err = s.journal.Events().Query(ctx, f)
			if err == nil && len(evs) < 1000 {
				covered = max(covered, seq) // what the watcher had seen, this query read
			}
		}
		query = false
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("event stream: reading the journal", "err", err)
		}
		for _, ev := range evs {
			data, _ := json.Marshal(ev)
			_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := fmt.Fprintf(w, "id: %d\ndata: %s\n\n", ev.Seq, data); err != nil {
				return
			}
			f.After = ev.Seq
		}
		if len(evs) > 0 || beat || clock.Since(lastWrite) >= streamHeartbeat {
			if len(evs) == 0 {
				_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
				if _, err := fmt.Fprintf(w, ": keep-alive\n\n"); err != nil {
					return
				}
			}
			if err := rc.Flush(); err != nil {
				return
			}
			lastWrite = clock.Now()
		}
		if len(evs) == 1000 {
			query = true
			continue // more are waiting
		}
		beat = false
		var retry <-chan time.Time
		if err != nil {
			retry = clock.After(streamPoll) // retry soon, new events or not
			query = true
		}
		select {
		case <-ctx.Done():
			return
		case <-s.streams.done:
			return
		case <-changed:
		case <-retry:
		case <-heartbeat.Chan():
			beat = true
		}
	}
}
