package cluster

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"
)

// fakeNomad serves the part of Nomad's HTTP API the model reads: paged
// lists (per_page, next_token), a node's and a job's read, and an event
// stream the test writes to and breaks. It counts the requests by route.
type fakeNomad struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	index    uint64
	nodes    map[string]*nomad.Node
	jobs     map[string]*nomad.Job
	allocs   map[string]*nomad.Allocation
	requests map[string]int
	// stream is the open event stream's; closing it ends the stream.
	stream  chan []byte
	streams chan struct{} // a stream opened
	// leader is what /v1/status/leader answers; hang makes it answer
	// only when the request ends.
	leader string
	hang   bool
}

func newFakeNomad(t *testing.T) *fakeNomad {
	t.Helper()
	f := &fakeNomad{t: t, index: 1, nodes: map[string]*nomad.Node{}, jobs: map[string]*nomad.Job{}, allocs: map[string]*nomad.Allocation{},
		requests: map[string]int{}, streams: make(chan struct{}, 100), leader: "127.0.0.1:4647"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/event/stream", f.serveStream)
	mux.HandleFunc("GET /v1/nodes", func(w http.ResponseWriter, r *http.Request) {
		page(f, w, r, "nodes", f.nodes, func(n *nomad.Node) any {
			return &nomad.NodeListStub{ID: n.ID, Name: n.Name, NodePool: n.NodePool, Status: n.Status, ModifyIndex: n.ModifyIndex}
		})
	})
	mux.HandleFunc("GET /v1/node/{id}", func(w http.ResponseWriter, r *http.Request) {
		one(f, w, "node", f.nodes, r.PathValue("id"))
	})
	mux.HandleFunc("GET /v1/allocations", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("resources") != "true" {
			f.t.Errorf("allocations listed without their resources: %s", r.URL)
		}
		page(f, w, r, "allocations", f.allocs, func(a *nomad.Allocation) any {
			return &nomad.AllocationListStub{ID: a.ID, Namespace: a.Namespace, JobID: a.JobID, TaskGroup: a.TaskGroup, NodeID: a.NodeID,
				JobType: "service", ClientStatus: a.ClientStatus, DesiredStatus: a.DesiredStatus, ModifyIndex: a.ModifyIndex,
				AllocatedResources: a.AllocatedResources}
		})
	})
	mux.HandleFunc("GET /v1/jobs", func(w http.ResponseWriter, r *http.Request) {
		page(f, w, r, "jobs", f.jobs, func(j *nomad.Job) any {
			return &nomad.JobListStub{ID: *j.ID, Namespace: *j.Namespace, Type: *j.Type, ModifyIndex: *j.ModifyIndex}
		})
	})
	mux.HandleFunc("GET /v1/job/{id}", func(w http.ResponseWriter, r *http.Request) {
		one(f, w, "job", f.jobs, r.PathValue("id"))
	})
	mux.HandleFunc("GET /v1/status/leader", func(w http.ResponseWriter, r *http.Request) {
		f.count("leader")
		f.mu.Lock()
		leader, hang := f.leader, f.hang
		f.mu.Unlock()
		if hang {
			<-r.Context().Done()
			return
		}
		f.reply(w, leader, "")
	})
	mux.HandleFunc("GET /v1/deployments", func(w http.ResponseWriter, r *http.Request) {
		f.count("deployments")
		f.reply(w, []any{}, "")
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		f.breakStream()
		f.srv.CloseClientConnections()
		f.srv.Close()
	})
	return f
}

func (f *fakeNomad) client() *nomad.Client {
	f.t.Helper()
	c, err := nomad.NewClient(&nomad.Config{Address: f.srv.URL})
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

func (f *fakeNomad) count(route string) {
	f.mu.Lock()
	f.requests[route]++
	f.mu.Unlock()
}

// requestCounts returns the requests so far by route, and forgets them.
func (f *fakeNomad) requestCounts() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.requests
	f.requests = map[string]int{}
	return out
}

func (f *fakeNomad) reply(w http.ResponseWriter, v any, next string) {
	f.mu.Lock()
	idx := f.index
	f.mu.Unlock()
	w.Header().Set("X-Nomad-Index", strconv.FormatUint(idx, 10))
	w.Header().Set("X-Nomad-LastContact", "0")
	w.Header().Set("X-Nomad-KnownLeader", "true")
	if next != "" {
		w.Header().Set("X-Nomad-NextToken", next)
	}
	_ = json.NewEncoder(w).Encode(v)
}

// page serves one page of a list, in key order, as Nomad does: per_page
// objects from next_token on, and the key of the next one.
func page[T any](f *fakeNomad, w http.ResponseWriter, r *http.Request, route string, objs map[string]T, stub func(T) any) {
	f.count(route)
	f.mu.Lock()
	keys := make([]string, 0, len(objs))
	for k := range objs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	from, _ := slices.BinarySearch(keys, r.URL.Query().Get("next_token"))
	keys = keys[from:]
	next := ""
	if n, _ := strconv.Atoi(r.URL.Query().Get("per_page")); n > 0 && n < len(keys) {
		next = keys[n]
		keys = keys[:n]
	}
	out := []any{}
	for _, k := range keys {
		out = append(out, stub(objs[k]))
	}
	f.mu.Unlock()
	f.reply(w, out, next)
}

func one[T any](f *fakeNomad, w http.ResponseWriter, route string, objs map[string]*T, id string) {
	f.count(route)
	f.mu.Lock()
	v, ok := objs[id]
	f.mu.Unlock()
	if !ok {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	f.reply(w, v, "")
}

// edit changes the cluster at a new index, which it returns.
func (f *fakeNomad) edit(fn func(index uint64)) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.index++
	fn(f.index)
	return f.index
}

func (f *fakeNomad) serveStream(w http.ResponseWriter, r *http.Request) {
	f.count("stream")
	s := make(chan []byte, 16)
	f.mu.Lock()
	if f.stream != nil {
		close(f.stream)
	}
	f.stream = s
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	f.streams <- struct{}{}
	for {
		select {
		case <-r.Context().Done():
			return
		case line, ok := <-s:
			if !ok {
				return
			}
			_, _ = w.Write(append(line, '\n'))
			w.(http.Flusher).Flush()
		}
	}
}

// send writes a raw line to the open event stream.
func (f *fakeNomad) send(line string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stream == nil {
		f.t.Fatal("no event stream is open")
	}
	f.stream <- []byte(line)
}

// breakStream ends the open event stream.
func (f *fakeNomad) breakStream() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stream != nil {
		close(f.stream)
		f.stream = nil
	}
}

// waitStream waits for the model to open an event stream.
func (f *fakeNomad) waitStream(t *testing.T) {
	t.Helper()
	select {
	case <-f.streams:
	case <-time.After(10 * time.Second):
		t.Fatal("the model opened no event stream")
	}
}

// recorder is a slog handler that hands each record to a channel.
type recorder struct{ records chan slog.Record }

func newRecorder() *recorder { return &recorder{records: make(chan slog.Record, 100)} }

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.records <- rec
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

// next waits for a record with message msg and returns its attributes.
func (r *recorder) next(t *testing.T, msg string) map[string]slog.Value {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case rec := <-r.records:
			if rec.Message != msg {
				continue
			}
			out := map[string]slog.Value{}
			rec.Attrs(func(a slog.Attr) bool {
				out[a.Key] = a.Value
				return true
			})
			return out
		case <-timeout:
			t.Fatalf("no log line %q", msg)
		}
	}
}
