package app

import (
	"errors"
	"net/http"
	"strings"

	"github.com/spillwayhq/spillway/controlplane/controller"
)

// reasonRequest is a body that carries only a reason.
type reasonRequest struct {
	Reason string `json:"reason"`
}

// reason reads a required reason of at most 1 KiB from the body.
func readReason(w http.ResponseWriter, r *http.Request) (string, bool) {
	var req reasonRequest
	if !decodeJSON(w, r, &req, false) {
		return "", false
	}
	req.Reason = strings.TrimSpace(req.Reason)
	if req.Reason == "" || len(req.Reason) > 1024 {
		writeError(w, http.StatusBadRequest, "invalid_body", "reason: required, at most 1024 bytes")
		return "", false
	}
	return req.Reason, true
}

// controllerOr409 answers 409 when no shared pool is configured.
func (s *api) controllerOr409(w http.ResponseWriter) *controller.Controller {
	if s.controller == nil {
		writeError(w, http.StatusConflict, "no_pools", "no shared pool is configured (pools.dir), so Spillway borrows and releases nothing")
	}
	return s.controller
}

// handleRelease serves POST /v1/hosts/{id}/release: drain a host Spillway
// borrowed and give it back to its lender now.
func (s *api) handleRelease(w http.ResponseWriter, r *http.Request) {
	reason, ok := readReason(w, r)
	if !ok {
		return
	}
	c := s.controllerOr409(w)
	if c == nil {
		return
	}
	loan, err := c.Release(r.Context(), r.PathValue("id"), actor(r), reason)
	switch {
	case errors.Is(err, controller.ErrNotBorrowed):
		writeError(w, http.StatusNotFound, "not_borrowed", err.Error()+"; only hosts Spillway borrowed can be released")
	case err != nil:
		writeError(w, http.StatusBadGateway, "release_failed", err.Error())
	default:
		writeJSON(w, http.StatusOK, map[string]any{"host": loan.HostName, "node_id": loan.Host, "returned_to": loan.Lender, "borrower": loan.Borrower})
	}
}

func (s *api) handlePoolPause(w http.ResponseWriter, r *http.Request)  { s.poolPause(w, r, true) }
func (s *api) handlePoolResume(w http.ResponseWriter, r *http.Request) { s.poolPause(w, r, false) }

// poolPause serves POST /v1/pools/{name}/pause and /resume: while a pool
// is paused the controller takes no hosts from it.
func (s *api) poolPause(w http.ResponseWriter, r *http.Request, pause bool) {
	reason, ok := readReason(w, r)
	if !ok {
		return
	}
	c := s.controllerOr409(w)
	if c == nil {
		return
	}
	name := r.PathValue("name")
	set := c.ResumePool
	if pause {
		set = c.PausePool
	}
	changed, err := set(r.Context(), name, actor(r), reason)
	switch {
	case errors.Is(err, controller.ErrUnknownPool):
		writeError(w, http.StatusNotFound, "unknown_pool", err.Error())
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "journal_unavailable", err.Error())
	default:
		_, paused := c.PausedPools()[name]
		writeJSON(w, http.StatusOK, map[string]any{"pool": name, "paused": paused, "changed": changed})
	}
}
