package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillwayhq/spillway/controlplane/auth"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/internal/strictyaml"
	"github.com/spillwayhq/spillway/policies"
)

// reloader keeps the live policy set (a policies.Store, which validates a
// whole directory before it swaps) and reports every load in metrics and
// logs. SIGHUP and POST /v1/reload share it.
type reloader struct {
	dir   string
	store *policies.Store // nil when no policy directory is configured

	ok     prometheus.Gauge
	okTime prometheus.Gauge
	total  *prometheus.CounterVec
	count  prometheus.Gauge
}

func newReloader(dir string, reg prometheus.Registerer) *reloader {
	r := &reloader{
		dir: dir,
		ok: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_config_last_reload_successful",
			Help: "Whether the last load of the policies succeeded (1) or failed (0).",
		}),
		okTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_config_last_reload_success_timestamp_seconds",
			Help: "Time of the last successful load of the policies.",
		}),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_config_reloads_total",
			Help: "Loads of the policies, by result (success or failure).",
		}, []string{"result"}),
		count: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_policies",
			Help: "Scaling policies in force.",
		}),
	}
	reg.MustRegister(r.ok, r.okTime, r.total, r.count)
	return r
}

// ReloadResult says what a reload did.
type ReloadResult struct {
	Policies int    `json:"policies"`
	Hash     string `json:"hash"`
	Changed  bool   `json:"changed"`
}

// set is the policy set in force (empty when there is no directory).
func (r *reloader) set() *policies.Set {
	if r.store == nil {
		return nil
	}
	return r.store.Set()
}

// load (re)reads the policy directory; the first call creates the store.
func (r *reloader) load() (ReloadResult, error) {
	var changed bool
	var err error
	switch {
	case r.dir == "":
	case r.store == nil:
		r.store, err = policies.NewStore(r.dir)
		changed = err == nil
	default:
		changed, err = r.store.Reload()
	}
	res := ReloadResult{Policies: r.set().Len(), Hash: r.set().Hash(), Changed: changed}
	if err != nil {
		r.ok.Set(0)
		r.total.WithLabelValues("failure").Inc()
		return res, strictyaml.AsErrors(r.dir, err)
	}
	r.ok.Set(1)
	r.okTime.SetToCurrentTime()
	r.total.WithLabelValues("success").Inc()
	r.count.Set(float64(res.Policies))
	return res, nil
}

// Policies returns the policy set in force.
func (a *App) Policies() *policies.Set { return a.reload.set() }

// Reload loads the policies again. On error the previous set stays in
// force and the error lists every problem with its file and line.
func (a *App) Reload(_ context.Context) (ReloadResult, error) {
	res, err := a.reload.load()
	if err != nil {
		a.log.Error("reload failed; the previous policies stay in force", "dir", a.reload.dir, "policies", res.Policies, "err", err)
		return res, err
	}
	a.log.Info("policies loaded", "dir", a.reload.dir, "policies", res.Policies, "hash", shortHash(res.Hash), "changed", res.Changed)
	return res, nil
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// apiError is the JSON error body every /v1 endpoint uses.
type apiError struct {
	Error apiErrorBody `json:"error"`
}

type apiErrorBody struct {
	Code    string   `json:"code"`
	Message string   `json:"message"`
	Details []string `json:"details,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeError writes the API's error body.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Error: apiErrorBody{Code: code, Message: msg}})
}

// handleReload serves POST /v1/reload.
func (a *App) handleReload(w http.ResponseWriter, r *http.Request) {
	res, err := a.Reload(r.Context())
	if id, ok := auth.FromContext(r.Context()); ok {
		a.log.Info("reload requested through the API", "token", id.Name, "ok", err == nil)
		msg := fmt.Sprintf("policies reloaded by %s: %d in force, hash %s, changed %t", id.Name, res.Policies, shortHash(res.Hash), res.Changed)
		if err != nil {
			msg = fmt.Sprintf("reload by %s failed; the previous policies stay in force: %v", id.Name, err)
		}
		// A follower's writes are fenced: only the acting replica
		// journals (each replica loads its own files; the log has it).
		if a.acting() {
			a.record(r, journal.Event{Kind: journal.KindReload, Actor: id.Name, Message: msg})
		}
	}
	if err != nil {
		var errs strictyaml.Errors
		details := []string{err.Error()}
		if errors.As(err, &errs) {
			details = details[:0]
			for _, e := range errs {
				details = append(details, e.Error())
			}
		}
		writeJSON(w, http.StatusUnprocessableEntity, apiError{Error: apiErrorBody{
			Code:    "invalid_policies",
			Message: "the policies did not load; the previous policies stay in force",
			Details: details,
		}})
		return
	}
	writeJSON(w, http.StatusOK, res)
}
