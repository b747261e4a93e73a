package scalesim

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"time"
)

// transport serves the SDK's requests with the cloud simulator's handler
// in the calling goroutine, no socket between: a request is a function
// call, so the simulation's quiet detection sees it run. A launch request
// first waits the published API latency on the simulated clock (the
// simulator applies it on the wall clock only). It records each launch
// for the figures.
type transport struct {
	h          http.Handler
	clock      *Clock
	apiLatency time.Duration
	rec        *recorder
}

// Do implements aws.HTTPClient.
func (t *transport) Do(r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	r.Body.Close()
	form, _ := url.ParseQuery(string(body))
	action := form.Get("Action")
	launch := action == "RunInstances" || action == "CreateFleet"
	if launch {
		t.rec.launchSent(claimOf(form), t.clock.Now())
		t.clock.Sleep(t.apiLatency)
	}
	r2 := r.Clone(r.Context())
	r2.Body = io.NopCloser(bytes.NewReader(body))
	r2.ContentLength = int64(len(body))
	if r2.Host == "" {
		r2.Host = r.URL.Host // as a server reads it: the signature covers it
	}
	w := httptest.NewRecorder()
	t.h.ServeHTTP(w, r2)
	resp := w.Result()
	resp.Request = r
	if launch {
		t.rec.launchAnswered(claimOf(form), t.clock.Now(), w.Code, w.Body.String())
	}
	return resp, nil
}

// claimOf is the spillway:claim tag of a launch request.
func claimOf(form url.Values) string {
	for k, v := range form {
		if strings.HasSuffix(k, ".Key") && len(v) > 0 && v[0] == "spillway:claim" {
			return form.Get(strings.TrimSuffix(k, ".Key") + ".Value")
		}
	}
	return ""
}

// recorder keeps what the figures are made of, in simulated time and,
// for Spillway's own processing, in busy wall time: the wall time the
// process computed, from each move of the clock until every goroutine
// waits again, summed from the trigger on. Time the process sits idle
// while the driver moves the clock (a simulated API latency, a sleep, a
// poll, a pacing wait) is not in it.
type recorder struct {
	mu      sync.Mutex
	trigger time.Time
	// busyBase is the busy wall time before the current busy period,
	// which began at busyFrom (zero while the process is quiet).
	busyBase time.Duration
	busyFrom time.Time
	// pool names the claims' pool: a claim is "<activity>-<pool>-…"
	pool string
	// first is each activity's first launch request after the trigger
	first map[string]stamp
	// capacity errors by claim, waiting for the next request of the claim
	failed map[string]stamp
	// fallbacks are Spillway's processing (busy wall time) from a
	// capacity error to the next request of its claim, and fallbacksSim
	// the simulated time between the two
	fallbacks, fallbacksSim []time.Duration
	launches                int
	errors                  map[string]int
	// claimSent is when each claim's first launch request went out.
	claimSent map[string]time.Time
}

// stamp is a moment in simulated time and in busy wall time.
type stamp struct {
	sim  time.Time
	busy time.Duration
}

func newRecorder(pool string) *recorder {
	return &recorder{pool: pool, failed: map[string]stamp{}, errors: map[string]int{}, first: map[string]stamp{}, claimSent: map[string]time.Time{}}
}

// triggered marks the trigger: busy wall time counts from here.
func (r *recorder) triggered(sim time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.trigger, r.busyBase, r.busyFrom = sim, 0, time.Now()
}

// busy starts a busy period: the driver moved the clock at wall time at.
func (r *recorder) busy(at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.trigger.IsZero() && r.busyFrom.IsZero() {
		r.busyFrom = at
	}
}

// idle ends a busy period: the process was quiet from wall time at.
func (r *recorder) idle(at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.busyFrom.IsZero() {
		if at.After(r.busyFrom) {
			r.busyBase += at.Sub(r.busyFrom)
		}
		r.busyFrom = time.Time{}
	}
}

// busyNowLocked is the busy wall time since the trigger, now.
func (r *recorder) busyNowLocked() time.Duration {
	if r.busyFrom.IsZero() {
		return r.busyBase
	}
	return r.busyBase + time.Since(r.busyFrom)
}

func (r *recorder) launchSent(claim string, sim time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.launches++
	if _, ok := r.claimSent[claim]; !ok {
		r.claimSent[claim] = sim
	}
	if activity, _, ok := strings.Cut(claim, "-"+r.pool); ok && !r.trigger.IsZero() {
		if _, seen := r.first[activity]; !seen {
			r.first[activity] = stamp{sim, r.busyNowLocked()}
		}
	}
	if f, ok := r.failed[claim]; ok {
		delete(r.failed, claim)
		r.fallbacks = append(r.fallbacks, r.busyNowLocked()-f.busy)
		r.fallbacksSim = append(r.fallbacksSim, sim.Sub(f.sim))
	}
}

// capacityCodes are the answers after which the provider tries the next
// offering: the fallback.
var capacityCodes = []string{"InsufficientInstanceCapacity", "InsufficientHostCapacity", "InstanceLimitExceeded", "Unsupported"}

func (r *recorder) launchAnswered(claim string, sim time.Time, code int, body string) {
	if code < 300 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range capacityCodes {
		if strings.Contains(body, "<Code>"+c+"</Code>") {
			r.errors[c]++
			r.failed[claim] = stamp{sim, r.busyNowLocked()}
			return
		}
	}
	r.errors["other"]++
}
