package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

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
	// streamLookback bounds how long before a client connects an event
	// appended after it may be timestamped: a decision is stamped when its
	// evaluation starts, and an evaluation takes seconds.
	streamLookback = 5 * time.Minute
)

// streamHub ends every open stream when the daemon shuts down, so a
// graceful shutdown does not wait for clients that never hang up.
type streamHub struct {
	once sync.Once
	done chan struct{}
}

func newStreamHub() *streamHub { return &streamHub{done: make(chan struct{})} }

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
// activity filter as in GET /v1/events.
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
	ctx := r.Context()
	if resume == "" {
		// Start at the end of the journal: skip what is already there.
		var err error
		f.Since = time.Now().Add(-streamLookback)
		if f.After, err = s.lastSeq(ctx, f.Since); err != nil {
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

	poll := time.NewTicker(streamPoll)
	defer poll.Stop()
	lastWrite := time.Now()
	for {
		f.Limit = 1000
		evs, err := s.journal.Events().Query(ctx, f)
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
		if len(evs) > 0 || time.Since(lastWrite) >= streamHeartbeat {
			if len(evs) == 0 {
				_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
				if _, err := fmt.Fprintf(w, ": keep-alive\n\n"); err != nil {
					return
				}
			}
			if err := rc.Flush(); err != nil {
				return
			}
			lastWrite = time.Now()
		}
		if len(evs) == 1000 {
			continue // more are waiting
		}
		select {
		case <-ctx.Done():
			return
		case <-s.streams.done:
			return
		case <-poll.C:
		}
	}
}

// lastSeq is the Seq of the newest event stamped since since (0 if none).
func (s *api) lastSeq(ctx context.Context, since time.Time) (int64, error) {
	var last int64
	for {
		evs, err := s.journal.Events().Query(ctx, journal.Filter{Since: since, After: last, Limit: 1000})
		if err != nil {
			return 0, err
		}
		if len(evs) > 0 {
			last = evs[len(evs)-1].Seq
		}
		if len(evs) < 1000 {
			return last, nil
		}
	}
}
