package app

import (
	"errors"
	"net/http"

	"github.com/spillwayhq/spillway/controlplane/controller"
)

// handleGC serves GET /v1/gc: the instances tagged as this cluster's,
// named by no journaled claim, that the garbage collector refuses to
// terminate because they are older than the journal.
func (s *api) handleGC(w http.ResponseWriter, r *http.Request) {
	if s.controller == nil {
		writeJSON(w, http.StatusOK, controller.Refused{Cluster: s.cfg.Clouds.Cluster, Instances: nil})
		return
	}
	writeJSON(w, http.StatusOK, s.controller.Refused())
}

// handleGCAdopt serves POST /v1/gc/orphans/{id}/adopt: an operator takes
// a refused instance back (into the ledger when its node serves a
// business unit), journaled as gc.adopted.
func (s *api) handleGCAdopt(w http.ResponseWriter, r *http.Request) {
	s.gcDecide(w, r, func(c *controller.Controller, id, by, reason string) (map[string]any, error) {
		bu, err := c.AdoptOrphan(r.Context(), id, by, reason)
		return map[string]any{"instance": id, "decision": "adopted", "business_unit": bu, "in_ledger": bu != ""}, err
	})
}

// handleGCTerminate serves POST /v1/gc/orphans/{id}/terminate: an
// operator terminates a refused instance now; the intent is journaled
// first.
func (s *api) handleGCTerminate(w http.ResponseWriter, r *http.Request) {
	s.gcDecide(w, r, func(c *controller.Controller, id, by, reason string) (map[string]any, error) {
		return map[string]any{"instance": id, "decision": "terminated"}, c.TerminateOrphan(r.Context(), id, by, reason)
	})
}

// gcDecide runs an operator's word on one refused instance.
func (s *api) gcDecide(w http.ResponseWriter, r *http.Request, do func(c *controller.Controller, id, by, reason string) (map[string]any, error)) {
	reason, ok := readReason(w, r)
	if !ok {
		return
	}
	c := s.controllerOr409(w)
	if c == nil {
		return
	}
	out, err := do(c, r.PathValue("id"), actor(r), reason)
	switch {
	case errors.Is(err, controller.ErrNotRefused):
		writeError(w, http.StatusNotFound, "not_refused", err.Error())
	case errors.Is(err, controller.ErrModelNotLive):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "cluster_unknown", err.Error())
	case err != nil:
		writeError(w, http.StatusBadGateway, "gc_failed", err.Error())
	default:
		writeJSON(w, http.StatusOK, out)
	}
}
