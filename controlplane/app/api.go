package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/spillwayhq/spillway/controlplane/auth"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/internal/strictjson"
	"github.com/spillwayhq/spillway/policies"
)

// Limits of the operator API.
const (
	// maxJSONBody bounds a JSON request body.
	maxJSONBody = 64 << 10
	// maxPolicyBody bounds a policy uploaded for validation.
	maxPolicyBody = 1 << 20
	// writeRate and writeBurst rate-limit writes per token.
	writeRate  = 2
	writeBurst = 10
)

// api serves the operator API: policies, activities, manual scaling,
// pauses, hosts, pools, the event stream and the OpenAPI document. Its
// routes are listed in apiRoutes and documented in openapi.yaml (a test
// holds the two together).
type api struct {
	*App
	// writes rate-limits writes per token name.
	writes *limiter
}

// whoami is the answer of GET /v1/whoami.
type whoami struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

// handleWhoami serves GET /v1/whoami: the token's name and role, so a
// client (the console) can check a token and show only the controls its
// role may use.
func (s *api) handleWhoami(w http.ResponseWriter, r *http.Request) {
	id, _ := auth.FromContext(r.Context())
	writeJSON(w, http.StatusOK, whoami{Name: id.Name, Role: id.Role.String()})
}

// apiRoutes registers the operator API with handle (the daemon's
// instrumented registration).
func (a *App) apiRoutes(handle func(pattern, name string, h http.Handler)) {
	s := &api{App: a, writes: newLimiter(writeRate, writeBurst)}
	a.streams = newStreamHub(a.cfg.API.MaxStreams, a.reg, a.journal.Events().LastSeq, a.log.With("component", "streams"), a.clock)
	read := func(h http.HandlerFunc) http.Handler { return a.auth.Require(auth.Viewer, writeError, h) }
	write := func(role auth.Role, h http.HandlerFunc) http.Handler {
		return a.auth.Require(role, writeError, s.limitWrites(h))
	}
	// act is a write that changes the cluster: only the acting replica takes it.
	act := func(role auth.Role, h http.HandlerFunc) http.Handler {
		return a.auth.Require(role, writeError, a.requireActing(s.limitWrites(h)))
	}
	handle("GET /v1/openapi.yaml", "openapi", http.HandlerFunc(serveOpenAPI))
	handle("GET /v1/status", "status", read(s.handleStatus))
	handle("GET /v1/whoami", "whoami", read(s.handleWhoami))
	// Not rate-limited: admin only, and cheap when nothing changed.
	handle("POST /v1/reload", "reload", a.auth.Require(auth.Admin, writeError, http.HandlerFunc(a.handleReload)))

	handle("GET /v1/policies", "policies", read(s.handlePolicies))
	handle("GET /v1/policies/{name}", "policy", read(s.handlePolicy))
	handle("GET /v1/policies/{name}/evaluation", "policy_evaluation", read(s.handlePolicyEvaluation))
	handle("POST /v1/policies/validate", "policy_validate", write(auth.Viewer, s.handleValidatePolicy))
	handle("POST /v1/policies/{name}/pause", "policy_pause", act(auth.Operator, s.handlePause))
	handle("POST /v1/policies/{name}/resume", "policy_resume", act(auth.Operator, s.handleResume))

	handle("POST /v1/scale", "scale", act(auth.Operator, s.handleScale))
	handle("GET /v1/activities", "activities", read(s.handleActivities))
	handle("GET /v1/activities/{id}", "activity", read(s.handleActivity))
	handle("GET /v1/events/stream", "events_stream", read(s.handleEventStream))

	handle("GET /v1/hosts", "hosts", read(s.handleHosts))
	handle("GET /v1/hosts/{id}", "host", read(s.handleHost))
	handle("POST /v1/hosts/{id}/drain", "host_drain", act(auth.Operator, s.handleDrain))
	handle("POST /v1/hosts/{id}/release", "host_release", act(auth.Operator, s.handleRelease))

	handle("GET /v1/overview", "overview", read(s.handleOverview))
	handle("GET /v1/pools", "pools", read(s.handlePools))
	handle("GET /v1/pools/loans", "pool_loans", read(s.handleLoans))
	handle("GET /v1/pools/chargeback", "pool_chargeback", read(s.handleChargeback))
	handle("POST /v1/pools/{name}/pause", "pool_pause", act(auth.Operator, s.handlePoolPause))
	handle("POST /v1/pools/{name}/resume", "pool_resume", act(auth.Operator, s.handlePoolResume))
	handle("GET /v1/links", "links", read(s.handleLinks))
	handle("POST /v1/links/{name}", "link_set", act(auth.Operator, s.handleSetLink))
	handle("POST /v1/pools/{name}/reclaim", "pool_reclaim", act(auth.Operator, s.handleReclaim))
	handle("POST /v1/pools/loans/{host}/extend", "loan_extend", act(auth.Operator, s.handleExtend))
	handle("GET /v1/gc", "gc", read(s.handleGC))
	handle("POST /v1/gc/orphans/{id}/adopt", "gc_adopt", act(auth.Operator, s.handleGCAdopt))
	handle("POST /v1/gc/orphans/{id}/terminate", "gc_terminate", act(auth.Operator, s.handleGCTerminate))
}

// limitWrites answers 429 when the token sends writes too fast.
func (s *api) limitWrites(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, _ := auth.FromContext(r.Context())
		if !s.writes.allow(id.Name) {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusTooManyRequests, "rate_limited", "too many writes from token "+strconv.Quote(id.Name))
			return
		}
		next(w, r)
	}
}

// actor is the name of the token that made the request.
func actor(r *http.Request) string {
	id, _ := auth.FromContext(r.Context())
	return id.Name
}

// decodeJSON reads a JSON body of at most maxJSONBody bytes into v,
// refusing unknown fields and keys given twice. An empty body leaves v as it is when optional.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any, optional bool) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the request body is over %d bytes", maxJSONBody))
			return false
		}
		writeError(w, http.StatusBadRequest, "invalid_body", "reading the request body: "+err.Error())
		return false
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		if optional {
			return true
		}
		writeError(w, http.StatusBadRequest, "invalid_body", "a JSON body is required")
		return false
	}
	if err := strictjson.CheckDuplicateKeys(body, strictjson.FoldCase); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_body", "decoding the JSON body: "+err.Error())
		return false
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_body", "decoding the JSON body: "+err.Error())
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "invalid_body", "the body holds more than one JSON value")
		return false
	}
	return true
}

// badQuery answers 400 with every bad parameter.
func badQuery(w http.ResponseWriter, details []string) {
	writeJSON(w, http.StatusBadRequest, apiError{Error: apiErrorBody{Code: "invalid_query", Message: "bad query parameters", Details: details}})
}

// query reads common query parameters, collecting problems.
type query struct {
	r   *http.Request
	bad []string
}

func (q *query) str(name string) string { return q.r.URL.Query().Get(name) }

func (q *query) time(name string, def time.Time) time.Time {
	v := q.str(name)
	if v == "" {
		return def
	}
	t, err := parseAPITime(name, v)
	if err != nil {
		q.bad = append(q.bad, err.Error())
		return def
	}
	return t
}

// parseAPITime reads a time parameter: RFC 3339, from 1970 to 9999 (the
// journal counts nanoseconds since 1970 in an int64, which ends in 2262,
// so a later bound means "no bound").
func parseAPITime(name, v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: want an RFC 3339 time, got %q", name, v)
	}
	if t.Year() < 1970 || t.Year() > 9999 {
		return time.Time{}, fmt.Errorf("%s: want a time from 1970 to 9999, got %q", name, v)
	}
	return t, nil
}

func (q *query) cursor() int64 {
	v := q.str("cursor")
	if v == "" {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		q.bad = append(q.bad, fmt.Sprintf("cursor: want the next value of a previous page, got %q", v))
		return 0
	}
	return n
}

func (q *query) limit(def, max int) int {
	v := q.str("limit")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		q.bad = append(q.bad, fmt.Sprintf("limit: want 1 to %d, got %q", max, v))
		return def
	}
	return n
}

// ParseService reads a service as "namespace/job/group", or "job/group" in
// the default namespace.
func ParseService(s string) (policies.Target, error) {
	parts := strings.Split(s, "/")
	for _, p := range parts {
		if p == "" {
			parts = nil
		}
	}
	switch len(parts) {
	case 2:
		return policies.Target{Namespace: "default", Job: parts[0], Group: parts[1]}, nil
	case 3:
		return policies.Target{Namespace: parts[0], Job: parts[1], Group: parts[2]}, nil
	}
	return policies.Target{}, fmt.Errorf("service %q: want namespace/job/group or job/group", s)
}

// journalWrite records a change made through the API, with the token's
// name as the actor. A change that cannot be journaled is not made.
func (s *api) journalWrite(w http.ResponseWriter, r *http.Request, ev journal.Event) bool {
	ev.Actor = actor(r)
	if _, err := s.journal.Events().Append(r.Context(), ev); err != nil {
		s.log.Error("journaling", "kind", ev.Kind, "err", err)
		writeError(w, http.StatusServiceUnavailable, "journal_unavailable", "the journal could not record the change, so it was not made")
		return false
	}
	return true
}
