package app

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"regexp"

	"github.com/spillwayhq/spillway/controlplane/scaler"
	"github.com/spillwayhq/spillway/internal/strictyaml"
	"github.com/spillwayhq/spillway/policies"
)

// policySummary is one policy in the list.
type policySummary struct {
	Name               string          `json:"name"`
	File               string          `json:"file"`
	BusinessUnit       string          `json:"business_unit"`
	Service            string          `json:"service"`
	Target             policies.Target `json:"target"`
	Min                int             `json:"min"`
	Max                int             `json:"max"`
	EvaluationInterval string          `json:"evaluation_interval"`
	Checks             int             `json:"checks"`
	AlertRules         int             `json:"alert_rules"`
	Paused             *scaler.Pause   `json:"paused,omitempty"`
}

// policyDetail is one policy with its whole specification.
type policyDetail struct {
	policySummary
	// Spec is the policy as loaded; durations are in nanoseconds.
	Spec *policies.Policy `json:"spec"`
}

type policiesPage struct {
	Policies []policySummary `json:"policies"`
	Hash     string          `json:"hash"`
}

func (s *api) summarize(p *policies.Policy, paused map[string]scaler.Pause) policySummary {
	sum := policySummary{
		Name: p.Name, File: path.Base(p.File()), BusinessUnit: p.BusinessUnit, Service: p.Target.String(), Target: p.Target,
		Min: p.Min, Max: p.Max, EvaluationInterval: p.EvaluationInterval.String(), Checks: len(p.Checks), AlertRules: len(p.Alerts),
	}
	if ps, ok := paused[p.Name]; ok {
		sum.Paused = &ps
	}
	return sum
}

// handlePolicies serves GET /v1/policies: the policies in force.
func (s *api) handlePolicies(w http.ResponseWriter, _ *http.Request) {
	set := s.Policies()
	paused := s.scaler.Paused()
	page := policiesPage{Policies: []policySummary{}, Hash: set.Hash()}
	for _, p := range set.Policies() {
		page.Policies = append(page.Policies, s.summarize(p, paused))
	}
	writeJSON(w, http.StatusOK, page)
}

// policy finds the policy the path names, answering 404 if there is none.
func (s *api) policy(w http.ResponseWriter, r *http.Request) (*policies.Policy, bool) {
	name := r.PathValue("name")
	p, ok := s.Policies().Get(name)
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no policy named %q is in force", name))
	}
	return p, ok
}

// handlePolicy serves GET /v1/policies/{name}.
func (s *api) handlePolicy(w http.ResponseWriter, r *http.Request) {
	p, ok := s.policy(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, policyDetail{policySummary: s.summarize(p, s.scaler.Paused()), Spec: p})
}

// handlePolicyEvaluation serves GET /v1/policies/{name}/evaluation: what
// the policy would decide now (a dry run; nothing changes).
func (s *api) handlePolicyEvaluation(w http.ResponseWriter, r *http.Request) {
	p, ok := s.policy(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.scaler.DryRun(r.Context(), p))
}

// validation is the answer of POST /v1/policies/validate.
type validation struct {
	Valid    bool     `json:"valid"`
	Policies []string `json:"policies"`
	Errors   []string `json:"errors"`
}

var fileNameRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

// handleValidatePolicy serves POST /v1/policies/validate: it checks the
// policy documents in the body (YAML) and reports every located error.
// Nothing is loaded. ?name= names the file in the errors.
func (s *api) handleValidatePolicy(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	if name == "" {
		name = "policy.yaml"
	}
	if !fileNameRe.MatchString(name) {
		badQuery(w, []string{fmt.Sprintf("name: want a file name (letters, digits, '.', '_', '-'), got %q", name)})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPolicyBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the policy is over %d bytes", maxPolicyBody))
			return
		}
		writeError(w, http.StatusBadRequest, "invalid_body", "reading the request body: "+err.Error())
		return
	}
	ps, err := policies.Parse(name, body)
	res := validation{Policies: []string{}, Errors: []string{}}
	for _, e := range strictyaml.AsErrors(name, err) {
		res.Errors = append(res.Errors, e.Error())
	}
	seen := map[string]int{}
	for _, p := range ps {
		res.Policies = append(res.Policies, p.Name)
		if p.Name == "" {
			continue
		}
		if first, dup := seen[p.Name]; dup {
			res.Errors = append(res.Errors, fmt.Sprintf("%s:%d: name: duplicate policy name %q, first defined at %s:%d", name, p.Line(), p.Name, name, first))
			continue
		}
		seen[p.Name] = p.Line()
	}
	res.Valid = len(res.Errors) == 0
	writeJSON(w, http.StatusOK, res)
}

// pauseRequest is the optional body of pause and resume.
type pauseRequest struct {
	Reason string `json:"reason"`
}

// pauseResponse says the policy's state after a pause or resume.
type pauseResponse struct {
	Policy  string        `json:"policy"`
	Paused  bool          `json:"paused"`
	Changed bool          `json:"changed"`
	Pause   *scaler.Pause `json:"pause,omitempty"`
}

func (s *api) handlePause(w http.ResponseWriter, r *http.Request)  { s.setPaused(w, r, true) }
func (s *api) handleResume(w http.ResponseWriter, r *http.Request) { s.setPaused(w, r, false) }

// setPaused serves POST /v1/policies/{name}/pause and .../resume.
func (s *api) setPaused(w http.ResponseWriter, r *http.Request, pause bool) {
	var req pauseRequest
	if !decodeJSON(w, r, &req, true) {
		return
	}
	name := r.PathValue("name")
	op := s.scaler.Resume
	if pause {
		op = s.scaler.Pause
	}
	p, changed, err := op(r.Context(), name, actor(r), req.Reason)
	switch {
	case errors.Is(err, scaler.ErrUnknownPolicy):
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no policy named %q is in force", name))
		return
	case err != nil:
		s.log.Error("pausing or resuming a policy", "policy", name, "err", err)
		writeError(w, http.StatusServiceUnavailable, "journal_unavailable", "the journal could not record the change, so it was not made")
		return
	}
	resp := pauseResponse{Policy: name, Paused: pause, Changed: changed}
	if pause {
		resp.Pause = &p
	}
	writeJSON(w, http.StatusOK, resp)
}
