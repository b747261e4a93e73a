package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/spillwayhq/spillway/controlplane/controller"
	"github.com/spillwayhq/spillway/controlplane/metrics"
	"github.com/spillwayhq/spillway/internal/bandwidth"
	"github.com/spillwayhq/spillway/policies"
)

// linksView is the answer of GET /v1/links.
type linksView struct {
	Links []controller.LinkView `json:"links"`
}

// handleLinks serves GET /v1/links: every dedicated line the pool files
// define, with its bandwidth in force, what the planner fills of it and
// what the allocations behind it send.
func (s *api) handleLinks(w http.ResponseWriter, r *http.Request) {
	v := linksView{Links: []controller.LinkView{}}
	if s.controller != nil {
		v.Links = s.controller.Links()
	}
	writeJSON(w, http.StatusOK, v)
}

// linkRequest is the body of POST /v1/links/{name}. Bandwidth is a
// string such as "10Gbps", read here so a bad one is named in a 422.
type linkRequest struct {
	Bandwidth *string `json:"bandwidth"`
	Reason    string  `json:"reason"`
}

// handleSetLink serves POST /v1/links/{name}: an operator raises or
// lowers a link's bandwidth, journaled, in force on the next plan.
func (s *api) handleSetLink(w http.ResponseWriter, r *http.Request) {
	var req linkRequest
	if !decodeJSON(w, r, &req, false) {
		return
	}
	var ok bool
	if req.Reason, ok = validReason(req.Reason); !ok {
		writeError(w, http.StatusBadRequest, "invalid_body", reasonRule)
		return
	}
	if req.Bandwidth == nil {
		writeError(w, http.StatusUnprocessableEntity, "invalid_bandwidth", "bandwidth: required, such as \"10Gbps\"")
		return
	}
	bw, err := bandwidth.Parse(*req.Bandwidth)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, "invalid_bandwidth", "bandwidth: "+err.Error())
		return
	}
	c := s.controllerOr409(w)
	if c == nil {
		return
	}
	name := r.PathValue("name")
	changed, err := c.SetLinkBandwidth(r.Context(), name, bw, actor(r), req.Reason)
	switch {
	case errors.Is(err, controller.ErrUnknownLink):
		writeError(w, http.StatusNotFound, "unknown_link", err.Error())
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "journal_unavailable", err.Error())
	default:
		for _, v := range c.Links() {
			if v.Name == name {
				writeJSON(w, http.StatusOK, map[string]any{"link": v, "changed": changed})
				return
			}
		}
		writeError(w, http.StatusNotFound, "unknown_link", "no such link "+name)
	}
}

// trafficPerAllocation runs a policy's traffic query on the metric
// source: one series, bits per second per allocation, no older than the
// policy's stale_after.
func (a *App) trafficPerAllocation(ctx context.Context, p *policies.Policy) (bandwidth.Bandwidth, error) {
	if a.metrics == nil || p.Traffic == nil || p.Traffic.Query == "" {
		return 0, fmt.Errorf("policy %s has no traffic query", p.Name)
	}
	now := a.clock.Now()
	samples, err := a.metrics.Query(ctx, p.Traffic.Query, now)
	if err != nil {
		return 0, fmt.Errorf("querying the traffic of policy %s: %w", p.Name, err)
	}
	s, err := metrics.One(samples, now, p.StaleAfter)
	if err != nil {
		return 0, fmt.Errorf("the traffic of policy %s: %w", p.Name, err)
	}
	if s.Value < 0 {
		return 0, fmt.Errorf("the traffic of policy %s is negative (%v)", p.Name, s.Value)
	}
	return bandwidth.Bandwidth(s.Value), nil
}
