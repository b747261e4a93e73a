package app

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/spillwayhq/spillway/controlplane/auth"
	"github.com/spillwayhq/spillway/controlplane/scaler"
)

// scaleRequest is the body of POST /v1/scale. Exactly one of To and By.
type scaleRequest struct {
	// Service is "namespace/job/group" or "job/group".
	Service string `json:"service"`
	To      *int   `json:"to,omitempty"`
	By      *int   `json:"by,omitempty"`
	Reason  string `json:"reason"`
	// Force sets a count outside the policies' bounds (admin role only);
	// otherwise it is clamped to them.
	Force bool `json:"force,omitempty"`
}

// handleScale serves POST /v1/scale: an operator sets a task group's count,
// or changes it by a delta, with a reason. It goes through the scaler, so
// it is journaled like every scaling (with the token's name) and starts
// the group's cooldown.
func (s *api) handleScale(w http.ResponseWriter, r *http.Request) {
	var req scaleRequest
	if !decodeJSON(w, r, &req, false) {
		return
	}
	var bad []string
	t, err := ParseService(req.Service)
	if err != nil {
		bad = append(bad, "service: "+err.Error())
	}
	if (req.To == nil) == (req.By == nil) {
		bad = append(bad, "to, by: give exactly one: a count (to) or a change (by)")
	}
	if req.By != nil && *req.By == 0 {
		bad = append(bad, "by: must not be 0")
	}
	req.Reason = strings.TrimSpace(req.Reason)
	if req.Reason == "" {
		bad = append(bad, "reason: required; it is journaled and shown in Nomad's scaling events")
	}
	if len(req.Reason) > 1024 {
		bad = append(bad, "reason: at most 1024 bytes")
	}
	if len(bad) > 0 {
		writeJSON(w, http.StatusBadRequest, apiError{Error: apiErrorBody{Code: "invalid_body", Message: "bad scaling request", Details: bad}})
		return
	}
	if id, _ := auth.FromContext(r.Context()); req.Force && id.Role < auth.Admin {
		writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("token %q has role %s; \"force\" (a count outside the policies' bounds) needs admin", id.Name, id.Role))
		return
	}
	m := scaler.Manual{Target: t, To: req.To, Reason: req.Reason, Actor: actor(r), Force: req.Force}
	if req.By != nil {
		m.By = *req.By
	}
	res, err := s.scaler.Scale(r.Context(), m)
	switch {
	case errors.Is(err, scaler.ErrInvalidCount):
		writeError(w, http.StatusUnprocessableEntity, "invalid_count", err.Error())
	case errors.Is(err, scaler.ErrUnknownTarget):
		writeError(w, http.StatusNotFound, "unknown_target", err.Error())
	case errors.Is(err, scaler.ErrCannotReadCount):
		writeError(w, http.StatusBadGateway, "nomad_error", err.Error())
	case errors.Is(err, scaler.ErrDeploymentActive):
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusConflict, apiError{Error: apiErrorBody{Code: "deployment_active", Message: err.Error(),
			Details: []string{"activity " + res.Activity + " records the failure"}}})
	case errors.Is(err, scaler.ErrJournal):
		writeError(w, http.StatusServiceUnavailable, "journal_unavailable", err.Error())
	case err != nil:
		writeJSON(w, http.StatusBadGateway, apiError{Error: apiErrorBody{Code: "nomad_error", Message: err.Error(),
			Details: []string{"activity " + res.Activity + " records the failure"}}})
	default:
		writeJSON(w, http.StatusOK, res)
	}
}
