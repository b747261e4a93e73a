package app

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"time"

	"github.com/spillwayhq/spillway/controlplane/buildinfo"
	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/controller"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/pools"
)

func journalEvent(at time.Time, kind, subject, msg string, data json.RawMessage) journal.Event {
	return journal.Event{Time: at, Kind: kind, Subject: subject, Message: msg, Data: data}
}

// poolsConfigured reports whether any pool is configured.
func (s *api) poolsConfigured() bool {
	c := s.Pools()
	return c != nil && (len(c.BusinessUnits) > 0 || c.Shared != nil || len(c.CloudPools) > 0)
}

// handlePools serves GET /v1/pools: the capacity of every pool by tier
// (own, shared, warm, cold), from Nomad's nodes and allocations.
func (s *api) handlePools(w http.ResponseWriter, r *http.Request) {
	now := s.clock.Now().UTC()
	if !s.poolsConfigured() {
		writeJSON(w, http.StatusOK, capacityView{At: now, Pools: []poolCapacityView{}})
		return
	}
	snap, err := s.liveSnapshot()
	if err != nil {
		writeError(w, http.StatusBadGateway, "nomad_error", err.Error())
		return
	}
	report := pools.Account(s.Pools(), snap.NodeUsage(), nil, now)
	v := capacityView{At: report.At, Pools: make([]poolCapacityView, 0, len(report.Pools))}
	if s.controller != nil {
		v.Links = s.controller.Links()
	}
	var paused map[string]controller.PoolPause
	if s.controller != nil {
		paused = s.controller.PausedPools()
	}
	for _, p := range report.Pools {
		pv := poolCapacityView{PoolCapacity: p}
		if pp, ok := paused[p.Pool]; ok {
			pp.Since = pp.Since.UTC()
			pv.Paused = &pp
		}
		v.Pools = append(v.Pools, pv)
	}
	writeJSON(w, http.StatusOK, v)
}

// capacityView is the answer of GET /v1/pools: the capacity report, with
// each pool's pause (POST /v1/pools/{name}/pause).
type capacityView struct {
	At    time.Time          `json:"at"`
	Pools []poolCapacityView `json:"pools"`
	// Links are the dedicated lines, with bandwidth and use (GET /v1/links).
	Links []controller.LinkView `json:"links,omitempty"`
}

type poolCapacityView struct {
	pools.PoolCapacity
	// Paused is set while the controller takes no hosts from the pool.
	Paused *controller.PoolPause `json:"paused,omitempty"`
}

// ledger rebuilds the lending ledger from the journal's ledger store.
func (s *api) ledger(r *http.Request) (*pools.Ledger, error) {
	l, _, err := pools.NewLedger(r.Context(), s.journal.LedgerStore(), pools.Limits{})
	return l, err
}

// loanView is a loan in the API.
type loanView struct {
	Host       string     `json:"host"`
	HostName   string     `json:"host_name,omitempty"`
	Tier       pools.Tier `json:"tier"`
	Pool       string     `json:"pool"`
	Lender     string     `json:"lender"`
	Borrower   string     `json:"borrower"`
	Claim      string     `json:"claim,omitempty"`
	Since      time.Time  `json:"since"`
	Until      time.Time  `json:"until"`
	Overcommit bool       `json:"overcommit,omitempty"`
	ReclaimBy  *time.Time `json:"reclaim_by,omitempty"`
	// Adopted says why a loan Nomad showed and the ledger did not record
	// was adopted; scale-in leaves it to an operator.
	Adopted string `json:"adopted,omitempty"`
}

func toLoanView(l pools.Loan) loanView {
	v := loanView{Host: l.Host, HostName: l.HostName, Tier: l.Tier, Pool: l.Pool, Lender: l.Lender, Borrower: l.Borrower,
		Claim: l.Claim, Since: l.Since, Until: l.Until, Overcommit: l.Overcommit, Adopted: l.Adopted}
	if l.Reclaiming() {
		t := l.ReclaimBy
		v.ReclaimBy = &t
	}
	return v
}

type loansPage struct {
	// At is the control plane's time of the answer: a client counts a
	// lease's time left from it, not from its own clock.
	At time.Time `json:"at"`
	// Shared is the shared pool's lease terms, absent when there is no
	// shared pool.
	Shared *sharedTerms `json:"shared,omitempty"`
	Loans  []loanView   `json:"loans"`
	// Closed is, with closed_since, the loans that ended since then,
	// each with its lease's end and why it ended.
	Closed []closedLoanView `json:"closed,omitempty"`
}

// sharedTerms is the shared pool's lease terms, in seconds: the lease a
// loan starts (and an extension gives) by default, the reclaim notice (a
// reclaim's default deadline; a lease ending within it is about to be
// replaced and given back) and the drain deadline.
type sharedTerms struct {
	Pool                 string  `json:"pool"`
	LeaseSeconds         float64 `json:"lease_seconds"`
	ReclaimNoticeSeconds float64 `json:"reclaim_notice_seconds"`
	DrainDeadlineSeconds float64 `json:"drain_deadline_seconds"`
}

// closedLoanView is a loan that ended: returned, lease expired or
// reclaimed.
type closedLoanView struct {
	Host     string     `json:"host"`
	HostName string     `json:"host_name,omitempty"`
	Tier     pools.Tier `json:"tier"`
	Pool     string     `json:"pool"`
	Lender   string     `json:"lender"`
	Borrower string     `json:"borrower"`
	Since    time.Time  `json:"since"`
	Until    time.Time  `json:"until"`
	Returned time.Time  `json:"returned"`
	Reason   string     `json:"reason"`
}

// handleLoans serves GET /v1/pools/loans?borrower=&lender=: the hosts lent
// (or rented) now, from the lending ledger.
func (s *api) handleLoans(w http.ResponseWriter, r *http.Request) {
	page := loansPage{At: s.clock.Now().UTC(), Loans: []loanView{}}
	if !s.poolsConfigured() {
		writeJSON(w, http.StatusOK, page)
		return
	}
	if sp := s.Pools().Shared; sp != nil {
		page.Shared = &sharedTerms{Pool: sp.Name, LeaseSeconds: sp.Lease.Seconds(), ReclaimNoticeSeconds: sp.ReclaimNotice.Seconds(),
			DrainDeadlineSeconds: sp.DrainDeadline.Seconds()}
	}
	l, err := s.ledger(r)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "journal_unavailable", err.Error())
		return
	}
	borrower, lender := r.URL.Query().Get("borrower"), r.URL.Query().Get("lender")
	for _, loan := range l.Loans() {
		if (borrower == "" || loan.Borrower == borrower) && (lender == "" || loan.Lender == lender) {
			page.Loans = append(page.Loans, toLoanView(loan))
		}
	}
	q := query{r: r}
	if closedSince := q.time("closed_since", time.Time{}); len(q.bad) > 0 {
		badQuery(w, q.bad)
		return
	} else if !closedSince.IsZero() {
		page.Closed = []closedLoanView{}
		for _, u := range l.Usage(closedSince, time.Time{}) {
			if u.End.IsZero() || u.End.Before(closedSince) || (borrower != "" && u.Borrower != borrower) || (lender != "" && u.Lender != lender) {
				continue
			}
			page.Closed = append(page.Closed, closedLoanView{Host: u.Host, HostName: u.HostName, Tier: u.Tier, Pool: u.Pool, Lender: u.Lender, Borrower: u.Borrower,
				Since: u.Start, Until: u.Until, Returned: u.End, Reason: u.Reason})
		}
		sort.SliceStable(page.Closed, func(i, j int) bool { return page.Closed[i].Returned.Before(page.Closed[j].Returned) })
	}
	sort.Slice(page.Loans, func(i, j int) bool { return page.Loans[i].Since.Before(page.Loans[j].Since) })
	writeJSON(w, http.StatusOK, page)
}

// chargebackView is host-hours in a time range.
type chargebackView struct {
	From       time.Time          `json:"from"`
	To         time.Time          `json:"to"`
	ByBorrower map[string]float64 `json:"by_borrower"`
	ByLender   map[string]float64 `json:"by_lender"`
	ByTier     map[string]float64 `json:"by_tier"`
	Total      float64            `json:"total_host_hours"`
}

// handleChargeback serves GET /v1/pools/chargeback?from=&to=: host-hours
// per borrower, lender and tier in [from, to) (default: the last 24 hours).
func (s *api) handleChargeback(w http.ResponseWriter, r *http.Request) {
	now := s.clock.Now().UTC()
	q := query{r: r}
	to := q.time("to", now)
	from := q.time("from", to.Add(-24*time.Hour))
	if len(q.bad) == 0 && !from.Before(to) {
		q.bad = append(q.bad, "from: must be before to")
	}
	if len(q.bad) > 0 {
		badQuery(w, q.bad)
		return
	}
	v := chargebackView{From: from, To: to, ByBorrower: map[string]float64{}, ByLender: map[string]float64{}, ByTier: map[string]float64{}}
	if s.poolsConfigured() {
		l, err := s.ledger(r)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "journal_unavailable", err.Error())
			return
		}
		c := l.Chargeback(from, to, now)
		v.To, v.ByBorrower, v.ByLender, v.Total = c.To, c.ByBorrower, c.ByLender, c.Total
		for t, h := range c.ByTier {
			v.ByTier[string(t)] = h
		}
	}
	writeJSON(w, http.StatusOK, v)
}

// status is the answer of GET /v1/status.
type status struct {
	Version      string         `json:"version"`
	Revision     string         `json:"revision,omitempty"`
	Policies     int            `json:"policies"`
	PoliciesHash string         `json:"policies_hash"`
	Paused       []pausedPolicy `json:"paused"`
	Pools        int            `json:"pools"`
	// Nomad says whether Nomad's leader answered.
	Nomad      string            `json:"nomad"`
	Activities []Activity        `json:"recent_activities"`
	Time       time.Time         `json:"time"`
	Services   map[string]string `json:"services"`
	// Firing is the alerts firing now, as the receiver (and the journal,
	// after a restart) knows them.
	Firing []firingAlert `json:"firing_alerts"`
	// FiringTotal counts them; Firing lists the first 100 by fingerprint.
	FiringTotal int `json:"firing_alerts_total"`
	// Unservable is the queued task groups no tier can take, as the
	// leader's controller judged them (empty on a replica that does not
	// lead).
	Unservable []controller.Unservable `json:"unservable"`
}

type firingAlert struct {
	Fingerprint string            `json:"fingerprint"`
	Alert       string            `json:"alert"`
	StartsAt    time.Time         `json:"starts_at"`
	Labels      map[string]string `json:"labels"`
}

type pausedPolicy struct {
	Policy string    `json:"policy"`
	Since  time.Time `json:"since"`
	By     string    `json:"by"`
	Reason string    `json:"reason,omitempty"`
}

// maxStatusAlerts bounds the firing alerts /v1/status lists.
const maxStatusAlerts = 100

// handleStatus serves GET /v1/status: a summary for people.
func (s *api) handleStatus(w http.ResponseWriter, r *http.Request) {
	bi := buildinfo.Get()
	set := s.Policies()
	st := status{Version: bi.Version, Revision: bi.Revision, Policies: set.Len(), PoliciesHash: set.Hash(),
		Paused: []pausedPolicy{}, Activities: []Activity{}, Time: s.clock.Now().UTC(), Services: map[string]string{}, Nomad: "ok", Firing: []firingAlert{},
		Unservable: []controller.Unservable{}}
	if s.controller != nil {
		st.Unservable = s.controller.Unservable()
	}
	firing := s.alerts.Alerts(st.Time)
	st.FiringTotal = len(firing)
	for _, a := range firing[:min(len(firing), maxStatusAlerts)] {
		st.Firing = append(st.Firing, firingAlert{Fingerprint: a.Fingerprint, Alert: a.Name(), StartsAt: a.StartsAt, Labels: a.Labels})
	}
	for _, p := range set.Policies() {
		st.Services[p.Name] = p.Target.String()
	}
	for name, p := range s.scaler.Paused() {
		st.Paused = append(st.Paused, pausedPolicy{Policy: name, Since: p.Since, By: p.By, Reason: p.Reason})
	}
	sort.Slice(st.Paused, func(i, j int) bool { return st.Paused[i].Policy < st.Paused[j].Policy })
	if c := s.Pools(); c != nil {
		st.Pools = len(c.BusinessUnits) + len(c.CloudPools)
		if c.Shared != nil {
			st.Pools++
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := cluster.Leader(ctx, s.nomad); err != nil {
		st.Nomad = "unreachable"
	}
	// The last scaling operations of the past day.
	evs, err := s.journal.Events().Query(r.Context(), journal.Filter{Kind: journal.KindScale, Since: st.Time.Add(-24 * time.Hour), Limit: 1000})
	if err == nil {
		if len(evs) > 5 {
			evs = evs[len(evs)-5:]
		}
		for _, ev := range evs {
			if ev.Activity == "" {
				continue
			}
			if all, err := s.activityEvents(r.Context(), ev.Activity); err == nil && len(all) > 0 {
				st.Activities = append(st.Activities, buildActivity(ev.Activity, all))
			}
		}
	}
	writeJSON(w, http.StatusOK, st)
}
