package app

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/pools"
)

// Host is a Nomad client node as Spillway sees it: where it belongs in the
// capacity ladder and whether it is lent.
type Host struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Status     string `json:"status"`
	Eligible   bool   `json:"eligible"`
	Draining   bool   `json:"draining"`
	NodePool   string `json:"node_pool"`
	NodeClass  string `json:"node_class"`
	Datacenter string `json:"datacenter,omitempty"`
	// Pool and Tier place the host in the pool configuration; empty when no
	// pool selects it.
	Pool         string `json:"pool,omitempty"`
	Tier         string `json:"tier,omitempty"`
	BusinessUnit string `json:"business_unit,omitempty"`
	// LentTo, Lease and Claim are the lending meta of a shared host.
	LentTo string `json:"lent_to,omitempty"`
	Lease  string `json:"lease,omitempty"`
	Claim  string `json:"claim,omitempty"`
	// Meta holds the node's spillway.* meta only: other meta may be private.
	Meta        map[string]string `json:"meta"`
	Allocations int               `json:"allocations"`
	CPUMHz      pools.Resources   `json:"cpu_mhz"`
	MemoryMB    pools.Resources   `json:"memory_mb"`
}

type hostsPage struct {
	Hosts []Host `json:"hosts"`
}

// placeHost finds the pool and tier of a node, the way pools.Account does.
func placeHost(cfg *pools.Config, n pools.NodeUsage) (pool string, tier pools.Tier) {
	switch {
	case cfg.Shared != nil && cfg.Shared.Selector.Matches(n.NodePool, n.NodeClass, n.Meta):
		return cfg.Shared.Name, pools.TierShared
	case n.Meta[pools.MetaPool] != "":
		if cp, ok := cfg.CloudPool(n.Meta[pools.MetaPool]); ok {
			return cp.Name, pools.TierCold
		}
	default:
		for _, b := range cfg.BusinessUnits {
			if b.Selector.Matches(n.NodePool, n.NodeClass, n.Meta) {
				return b.Name, pools.TierOwn
			}
		}
	}
	return "", ""
}

func (s *api) toHost(n pools.NodeUsage) Host {
	h := Host{ID: n.ID, Name: n.Name, Eligible: n.Eligible, NodePool: n.NodePool, NodeClass: n.NodeClass,
		Meta: map[string]string{}, Allocations: n.Allocs, Status: n.Status, Draining: n.Draining, Datacenter: n.Datacenter,
		CPUMHz:   pools.Resources{Total: n.CPU, Used: n.UsedCPU, Free: max(n.CPU-n.UsedCPU, 0)},
		MemoryMB: pools.Resources{Total: n.MemoryMB, Used: n.UsedMemoryMB, Free: max(n.MemoryMB-n.UsedMemoryMB, 0)},
	}
	for k, v := range n.Meta {
		if strings.HasPrefix(k, "spillway.") {
			h.Meta[k] = v
		}
	}
	pool, tier := placeHost(s.Pools(), n)
	h.Pool, h.Tier = pool, string(tier)
	h.BusinessUnit = n.Meta[pools.MetaBusinessUnit]
	h.LentTo, h.Lease, h.Claim = n.Meta[pools.MetaLentTo], n.Meta[pools.MetaLease], n.Meta[pools.MetaClaim]
	return h
}

// hosts reads every node from the cluster model. While the model is not
// following Nomad, what it knows is stale: an error.
func (s *api) hosts(r *http.Request) ([]Host, error) {
	snap, err := s.liveSnapshot()
	if err != nil {
		return nil, err
	}
	nodes := snap.NodeUsage()
	out := make([]Host, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, s.toHost(n))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// handleHosts serves GET /v1/hosts?pool=&tier=: every Nomad node.
func (s *api) handleHosts(w http.ResponseWriter, r *http.Request) {
	hs, err := s.hosts(r)
	if err != nil {
		writeError(w, http.StatusBadGateway, "nomad_error", err.Error())
		return
	}
	pool, tier := r.URL.Query().Get("pool"), r.URL.Query().Get("tier")
	page := hostsPage{Hosts: []Host{}}
	for _, h := range hs {
		if (pool == "" || h.Pool == pool) && (tier == "" || h.Tier == tier) {
			page.Hosts = append(page.Hosts, h)
		}
	}
	writeJSON(w, http.StatusOK, page)
}

// host finds the node the path names, by ID, ID prefix or name.
func (s *api) host(w http.ResponseWriter, r *http.Request) (Host, bool) {
	id := r.PathValue("id")
	hs, err := s.hosts(r)
	if err != nil {
		writeError(w, http.StatusBadGateway, "nomad_error", err.Error())
		return Host{}, false
	}
	var found []Host
	for _, h := range hs {
		if h.ID == id || h.Name == id {
			return h, true
		}
		if len(id) >= 4 && strings.HasPrefix(h.ID, id) {
			found = append(found, h)
		}
	}
	switch len(found) {
	case 1:
		return found[0], true
	case 0:
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no host %q (give a node ID, an ID prefix of 4 or more characters, or a name)", id))
	default:
		writeError(w, http.StatusConflict, "ambiguous", fmt.Sprintf("%d hosts have IDs starting with %q", len(found), id))
	}
	return Host{}, false
}

// hostDetail is a host with its loan in the ledger.
type hostDetail struct {
	Host
	Loan *loanView `json:"loan,omitempty"`
}

// handleHost serves GET /v1/hosts/{id}.
func (s *api) handleHost(w http.ResponseWriter, r *http.Request) {
	h, ok := s.host(w, r)
	if !ok {
		return
	}
	d := hostDetail{Host: h}
	if len(s.Pools().BusinessUnits) > 0 || s.Pools().Shared != nil || len(s.Pools().CloudPools) > 0 {
		l, err := s.ledger(r)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "journal_unavailable", err.Error())
			return
		}
		if loan, ok := l.Loan(h.ID); ok {
			v := toLoanView(loan)
			d.Loan = &v
		}
	}
	writeJSON(w, http.StatusOK, d)
}

// drainRequest is the body of POST /v1/hosts/{id}/drain.
type drainRequest struct {
	// Deadline is a Go duration ("10m"); after it, remaining allocations
	// are stopped. Default 1h.
	Deadline string `json:"deadline"`
	Reason   string `json:"reason"`
}

// drainResponse says what drain started.
type drainResponse struct {
	Host     string    `json:"host"`
	ID       string    `json:"id"`
	Deadline string    `json:"deadline"`
	Started  time.Time `json:"started"`
}

// handleDrain serves POST /v1/hosts/{id}/drain: it drains a node on the
// Orchestrator (Spillway's one drain) with a deadline, marking the node's drain meta with the token's
// name, and journals it before it starts.
func (s *api) handleDrain(w http.ResponseWriter, r *http.Request) {
	var req drainRequest
	if !decodeJSON(w, r, &req, true) {
		return
	}
	deadline := time.Hour
	if req.Deadline != "" {
		d, err := time.ParseDuration(req.Deadline)
		if err != nil || d <= 0 || d > 7*24*time.Hour {
			writeError(w, http.StatusBadRequest, "invalid_body", fmt.Sprintf("deadline: want a duration between 1s and 168h, got %q", req.Deadline))
			return
		}
		deadline = d
	}
	req.Reason = strings.TrimSpace(req.Reason)
	if req.Reason == "" {
		req.Reason = "drained through the API"
	}
	if len(req.Reason) > 1024 {
		writeError(w, http.StatusBadRequest, "invalid_body", "reason: at most 1024 bytes")
		return
	}
	h, ok := s.host(w, r)
	if !ok {
		return
	}
	now := s.clock.Now().UTC()
	data, _ := json.Marshal(map[string]any{"host": h.Name, "node_id": h.ID, "deadline": deadline.String(), "reason": req.Reason, "pool": h.Pool})
	if !s.journalWrite(w, r, journalEvent(now, "host.drain", h.Name,
		fmt.Sprintf("drain of host %s with a %s deadline requested by %s: %s", h.Name, deadline, actor(r), req.Reason), data)) {
		return
	}
	if err := s.orchestrator.Drain(r.Context(), h.ID, deadline, cluster.DrainMeta("spillway:"+actor(r), req.Reason)); err != nil {
		ev := journalEvent(s.clock.Now(), "host.drain_failed", h.Name, fmt.Sprintf("draining host %s failed: %v", h.Name, err), data)
		ev.Actor = actor(r)
		s.record(r, ev)
		writeError(w, http.StatusBadGateway, "nomad_error", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, drainResponse{Host: h.Name, ID: h.ID, Deadline: deadline.String(), Started: now})
}
