package app

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spillwayhq/spillway/controlplane/controller"
	"github.com/spillwayhq/spillway/pools"
)

// reasonRequest is a body that carries only a reason.
type reasonRequest struct {
	Reason string `json:"reason"`
}

// reasonRule is what a reason must be: validReason's rule, in words.
const reasonRule = "reason: required, at most 1024 bytes"

// validReason trims a request's reason and says whether it keeps
// reasonRule.
func validReason(reason string) (string, bool) {
	reason = strings.TrimSpace(reason)
	return reason, reason != "" && len(reason) <= 1024
}

// reason reads a required reason of at most 1 KiB from the body.
func readReason(w http.ResponseWriter, r *http.Request) (string, bool) {
	var req reasonRequest
	if !decodeJSON(w, r, &req, false) {
		return "", false
	}
	reason, ok := validReason(req.Reason)
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid_body", reasonRule)
	}
	return reason, ok
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

// reclaimRequest is the body of POST /v1/pools/{name}/reclaim: a count
// of hosts (chosen in reclaim order) or the hosts to take back, a reason,
// and a deadline (a Go duration; the pool's reclaim_notice by default).
type reclaimRequest struct {
	Count    int      `json:"count"`
	Hosts    []string `json:"hosts"`
	Lender   string   `json:"lender"`
	Reason   string   `json:"reason"`
	Deadline string   `json:"deadline"`
}

// reclaimResponse lists the hosts reclaimed.
type reclaimResponse struct {
	Pool      string     `json:"pool"`
	Reclaimed []loanView `json:"reclaimed"`
}

// handleReclaim serves POST /v1/pools/{name}/reclaim: an owner takes lent
// hosts back. Replacement capacity comes first, then the drain, then the
// return, by the deadline; the controller's lease pass does it.
func (s *api) handleReclaim(w http.ResponseWriter, r *http.Request) {
	var req reclaimRequest
	if !decodeJSON(w, r, &req, false) {
		return
	}
	var bad []string
	var ok bool
	if req.Reason, ok = validReason(req.Reason); !ok {
		bad = append(bad, reasonRule)
	}
	if (req.Count > 0) == (len(req.Hosts) > 0) || req.Count < 0 {
		bad = append(bad, "count or hosts: give a positive count or a list of hosts, not both")
	}
	var deadline time.Duration
	if req.Deadline != "" {
		d, err := time.ParseDuration(req.Deadline)
		if err != nil || d < time.Second || d > 7*24*time.Hour {
			bad = append(bad, fmt.Sprintf("deadline: want a duration between 1s and 168h, got %q", req.Deadline))
		}
		deadline = d
	}
	if len(bad) > 0 {
		writeError(w, http.StatusBadRequest, "invalid_body", strings.Join(bad, "; "))
		return
	}
	c := s.controllerOr409(w)
	if c == nil {
		return
	}
	loans, err := c.Reclaim(r.Context(), controller.ReclaimRequest{Pool: r.PathValue("name"), Count: req.Count, Hosts: req.Hosts, Lender: req.Lender,
		Reason: req.Reason, Deadline: deadline, Actor: actor(r)})
	switch {
	case errors.Is(err, controller.ErrUnknownPool):
		writeError(w, http.StatusNotFound, "unknown_pool", err.Error())
	case errors.Is(err, controller.ErrTooManyHosts):
		writeError(w, http.StatusUnprocessableEntity, "too_many_hosts", err.Error())
	case errors.Is(err, controller.ErrHostNotLent):
		writeError(w, http.StatusConflict, "host_not_lent", err.Error())
	case errors.Is(err, controller.ErrBadReclaim):
		writeError(w, http.StatusBadRequest, "invalid_body", err.Error())
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "journal_unavailable", err.Error())
	default:
		res := reclaimResponse{Pool: r.PathValue("name"), Reclaimed: []loanView{}}
		for _, l := range loans {
			res.Reclaimed = append(res.Reclaimed, toLoanView(l))
		}
		writeJSON(w, http.StatusAccepted, res)
	}
}

// extendRequest is the body of POST /v1/pools/loans/{host}/extend.
type extendRequest struct {
	Reason string `json:"reason"`
	// Lease is a Go duration from now; the pool's lease by default.
	Lease string `json:"lease"`
}

// handleExtend serves POST /v1/pools/loans/{host}/extend: an operator
// extends a lent host's lease, journaled (lease.extended).
func (s *api) handleExtend(w http.ResponseWriter, r *http.Request) {
	var req extendRequest
	if !decodeJSON(w, r, &req, false) {
		return
	}
	var ok bool
	if req.Reason, ok = validReason(req.Reason); !ok {
		writeError(w, http.StatusBadRequest, "invalid_body", reasonRule)
		return
	}
	var lease time.Duration
	if req.Lease != "" {
		d, err := time.ParseDuration(req.Lease)
		if err != nil || d < time.Minute || d > 30*24*time.Hour {
			writeError(w, http.StatusBadRequest, "invalid_body", fmt.Sprintf("lease: want a duration between 1m and 720h, got %q", req.Lease))
			return
		}
		lease = d
	}
	c := s.controllerOr409(w)
	if c == nil {
		return
	}
	loan, err := c.ExtendLease(r.Context(), r.PathValue("host"), lease, actor(r), req.Reason)
	switch {
	case errors.Is(err, controller.ErrHostNotLent), errors.Is(err, controller.ErrNoPools):
		writeError(w, http.StatusConflict, "host_not_lent", err.Error())
	case errors.Is(err, pools.ErrInvalidEntry):
		writeError(w, http.StatusConflict, "reclaimed", err.Error())
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "journal_unavailable", err.Error())
	default:
		writeJSON(w, http.StatusOK, toLoanView(loan))
	}
}
