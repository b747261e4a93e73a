package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/spillwayhq/spillway/controlplane/alerts"
	"github.com/spillwayhq/spillway/controlplane/auth"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/controlplane/scaler"
	"github.com/spillwayhq/spillway/policies"
)

// limiter rate-limits requests per token name.
type limiter struct {
	mu    sync.Mutex
	rps   rate.Limit
	burst int
	by    map[string]*rate.Limiter
}

func newLimiter(rps float64, burst int) *limiter {
	return &limiter{rps: rate.Limit(rps), burst: burst, by: map[string]*rate.Limiter{}}
}

func (l *limiter) allow(key string) bool {
	l.mu.Lock()
	lim, ok := l.by[key]
	if !ok {
		lim = rate.NewLimiter(l.rps, l.burst)
		l.by[key] = lim
	}
	l.mu.Unlock()
	return lim.Allow()
}

// restoreAlerts rebuilds the firing set from the journal: the alerts of
// the last alerts.ttl, as the receiver journaled them.
func (a *App) restoreAlerts(ctx context.Context) error {
	a.alertMu.Lock()
	defer a.alertMu.Unlock()
	now := a.clock.Now()
	var seen []alerts.Seen
	err := journal.Each(ctx, a.journal.Events(), journal.Filter{Kind: "alert", Since: now.Add(-a.cfg.Alerts.TTL)}, func(ev journal.Event) error {
		switch ev.Kind {
		case journal.KindAlertAccepted, journal.KindAlertRepeated, journal.KindAlertResolved, journal.KindAlertIgnored:
		default:
			return nil
		}
		var rec alertRecord
		if json.Unmarshal(ev.Data, &rec) != nil || rec.Fingerprint == "" {
			return nil
		}
		seen = append(seen, alerts.Seen{At: ev.Time, Alert: alerts.Alert{Fingerprint: rec.Fingerprint, Status: rec.Status,
			StartsAt: rec.StartsAt, Labels: rec.Labels}})
		return nil
	})
	if err != nil {
		return fmt.Errorf("restoring the firing alerts from the journal: %w", err)
	}
	a.alerts.Restore(seen, now)
	if n := len(a.alerts.Alerts(now)); n > 0 {
		a.log.Info("restored the firing alerts from the journal", "firing", n)
	}
	return nil
}

// alertRecord is what the journal keeps of an alert.
type alertRecord struct {
	Fingerprint string            `json:"fingerprint"`
	Alert       string            `json:"alert"`
	Status      string            `json:"status"`
	StartsAt    time.Time         `json:"starts_at"`
	Labels      map[string]string `json:"labels"`
	GroupKey    string            `json:"group_key,omitempty"`
	Policy      string            `json:"policy,omitempty"`
	Action      string            `json:"action,omitempty"`
}

// alertResponse answers Alertmanager.
type alertResponse struct {
	Accepted int `json:"accepted"`
	Repeated int `json:"repeated"`
	Resolved int `json:"resolved"`
	// Ignored counts the alerts no policy's rule matches (Unmatched of
	// them firing) and the resolves of alerts not known to fire.
	Ignored   int `json:"ignored"`
	Unmatched int `json:"unmatched"`
}

// alertIntake is the receiver's state besides the firing set: its
// metrics, the bound on notifications decoded at once (each may be 16 MB),
// and whether the set is full (journaled once a time it fills).
type alertIntake struct {
	decoding  chan struct{}
	unmatched prometheus.Counter
	refused   *prometheus.CounterVec
	full      bool
}

func newAlertIntake(reg prometheus.Registerer, store *alerts.Store, clock clockwork.Clock) *alertIntake {
	in := &alertIntake{
		decoding: make(chan struct{}, 2),
		unmatched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spillway_alerts_unmatched_total",
			Help: "Firing alerts received that no policy's alert rule matches: counted, not stored.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_alerts_refused_notifications_total",
			Help: "Alertmanager notifications refused, by reason (rate_limited, too_large, invalid, full, journal).",
		}, []string{"reason"}),
	}
	for _, r := range []string{"rate_limited", "too_large", "invalid", "full", "journal"} {
		in.refused.WithLabelValues(r)
	}
	firing := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "spillway_alerts_firing",
		Help: "Firing alerts held: those a policy's alert rule matched.",
	}, func() float64 { return float64(store.Len(clock.Now())) })
	limit := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "spillway_alerts_firing_max",
		Help: "The cap of the firing set (alerts.max_firing).",
	})
	limit.Set(float64(store.Max()))
	reg.MustRegister(in.unmatched, in.refused, firing, limit)
	return in
}

// handleAlertmanager is Alertmanager's webhook receiver. A new firing alert
// that a policy's alert rule matches triggers that policy's group at once;
// a repeat of a known alert changes nothing. Every alert a rule matches is
// journaled with what became of it; the alerts that match none are counted
// and summed up in one event. A malformed payload is refused (400) whole,
// an oversized one with 413, and one that would take the firing set past
// alerts.max_firing with 503 and Retry-After: Alertmanager retries a 5xx
// (and only a 5xx), so nothing is lost.
func (a *App) handleAlertmanager(w http.ResponseWriter, r *http.Request) {
	id, _ := auth.FromContext(r.Context())
	if !a.alertLimit.allow(id.Name) {
		a.intake.refused.WithLabelValues("rate_limited").Inc()
		// 503, not 429: Alertmanager retries a 5xx at once (with backoff),
		// and a 4xx only at the group's next group_interval.
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "rate_limited", "too many notifications from token "+strconv.Quote(id.Name))
		return
	}
	// Bound the notifications decoded at once: memory, not requests.
	select {
	case a.intake.decoding <- struct{}{}:
		defer func() { <-a.intake.decoding }()
	case <-r.Context().Done():
		return
	}
	limit := a.cfg.Alerts.MaxBodyBytes
	n, err := alerts.Decode(http.MaxBytesReader(w, r.Body, limit+1), limit)
	now := a.clock.Now()
	var tooBig *alerts.TooLargeError
	if errors.As(err, &tooBig) {
		a.intake.refused.WithLabelValues("too_large").Inc()
		a.record(r, journal.Event{Time: now, Kind: journal.KindAlertRejected, Actor: id.Name,
			Message: "refused an Alertmanager notification: " + err.Error()})
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", err.Error()+"; raise alerts.max_body_bytes, or split the group in Alertmanager (group_by)")
		return
	}
	if err != nil {
		a.intake.refused.WithLabelValues("invalid").Inc()
		var details []string
		var pes alerts.PayloadErrors
		if errors.As(err, &pes) {
			for _, e := range pes {
				details = append(details, e.Error())
			}
		}
		a.record(r, journal.Event{Time: now, Kind: journal.KindAlertRejected, Actor: id.Name,
			Message: "refused an Alertmanager notification: " + err.Error()})
		writeJSON(w, http.StatusBadRequest, apiError{Error: apiErrorBody{Code: "invalid_payload", Message: err.Error(), Details: details}})
		return
	}
	// One notification at a time from Plan to Commit: two copies arriving
	// together (Alertmanager peers in HA) must not both be new.
	a.alertMu.Lock()
	defer a.alertMu.Unlock()
	// The rules each alert matches, once: Plan and the journal both need them.
	set := a.Policies()
	rulesOf := make([][]policies.RuleRef, len(n.Alerts))
	matched := make([]bool, len(n.Alerts))
	for i, al := range n.Alerts {
		rulesOf[i] = set.Matching(al.Name(), al.Labels)
		matched[i] = len(rulesOf[i]) > 0
	}
	changes, err := a.alerts.Plan(n, now, matched)
	var full *alerts.FullError
	if errors.As(err, &full) {
		a.intake.refused.WithLabelValues("full").Inc()
		if !a.intake.full {
			a.intake.full = true
			a.log.Error("the firing set is full; refusing notifications that add to it until it drains", "max", full.Max, "firing", full.Firing)
			a.record(r, journal.Event{Time: now, Kind: journal.KindAlertFull, Actor: id.Name,
				Message: err.Error() + "; notifications that add alerts are refused with 503 (Alertmanager retries them) until alerts resolve or expire"})
		}
		w.Header().Set("Retry-After", "30")
		writeError(w, http.StatusServiceUnavailable, "firing_set_full", err.Error())
		return
	}
	var resp alertResponse
	var events []journal.Event
	triggers := map[policies.Target]*scaler.Trigger{}
	unmatched := map[string]int{}
	for i, c := range changes { // changes[i] is n.Alerts[i]'s
		if c.Outcome == alerts.OutcomeUnmatched {
			resp.Unmatched++
			resp.Ignored++
			unmatched[c.Alert.Name()]++
			continue
		}
		rec := alertRecord{Fingerprint: c.Alert.Fingerprint, Alert: c.Alert.Name(), Status: c.Alert.Status,
			StartsAt: c.Alert.StartsAt, Labels: c.Alert.Labels, GroupKey: n.GroupKey}
		rules := rulesOf[i]
		for _, ref := range rules {
			p := ref.Policy
			rec.Policy, rec.Action = p.Name, ref.Rule.Action.String()
			kind, msg := alertEvent(c, p)
			data, _ := json.Marshal(rec)
			events = append(events, journal.Event{Time: now, Kind: kind, Subject: p.Target.String(), Actor: id.Name, Message: msg, Data: data})
			if c.Outcome == alerts.OutcomeNew {
				t := triggers[p.Target]
				if t == nil {
					t = &scaler.Trigger{Target: p.Target, At: now}
					triggers[p.Target] = t
				}
				t.Alerts = append(t.Alerts, c.Alert.Fingerprint)
				t.Cause = fmt.Sprintf("alert %s fired (fingerprint %s)", c.Alert.Name(), c.Alert.Fingerprint)
			}
		}
		switch {
		case c.Outcome == alerts.OutcomeRepeat:
			resp.Repeated++
		case c.Outcome == alerts.OutcomeResolved:
			resp.Resolved++
		case c.Outcome == alerts.OutcomeNew:
			resp.Accepted++
		default:
			resp.Ignored++
		}
		if len(rules) == 0 && c.Outcome != alerts.OutcomeStaleResolve {
			// A known alert that no rule matches any more (the policies
			// were reloaded): its repeat or resolve still keeps the set true.
			data, _ := json.Marshal(rec)
			events = append(events, journal.Event{Time: now, Kind: journal.KindAlertIgnored, Actor: id.Name, Data: data,
				Message: fmt.Sprintf("alert %s (%s, fingerprint %s): no policy's alert rule matches it now", c.Alert.Name(), c.Alert.Status, c.Alert.Fingerprint)})
		}
	}
	if resp.Unmatched > 0 {
		a.intake.unmatched.Add(float64(resp.Unmatched))
		events = append(events, unmatchedEvent(now, id.Name, n.GroupKey, resp.Unmatched, unmatched))
	}
	// Journal first, then apply and act: the journal explains every action,
	// and a notification that could not be journaled changes nothing, so
	// Alertmanager's retry of it is acted on, once.
	if len(events) > 0 {
		if _, err := a.journal.Events().Append(r.Context(), events...); err != nil {
			a.intake.refused.WithLabelValues("journal").Inc()
			a.log.Error("journaling alerts", "err", err)
			writeError(w, http.StatusServiceUnavailable, "journal_unavailable", "the journal could not record the notification; Alertmanager will retry")
			return
		}
	}
	// Then queue the triggers, and mark the alerts as seen only once they
	// are queued (the queue keeps the newest trigger per group and drops
	// none), before any of them is evaluated: so the evaluation finds its
	// alert firing, and no alert is seen whose trigger was not queued.
	queue := make([]scaler.Trigger, 0, len(triggers))
	for _, t := range triggers {
		queue = append(queue, *t)
	}
	sort.Slice(queue, func(i, j int) bool { return queue[i].Target.String() < queue[j].Target.String() })
	a.scaler.TriggerThen(func() { a.alerts.Commit(changes, now) }, queue...)
	if a.intake.full && a.alerts.Len(now) < a.alerts.Max() {
		a.intake.full = false
		a.log.Info("the firing set has room again", "firing", a.alerts.Len(now), "max", a.alerts.Max())
	}
	a.log.Info("alertmanager notification", "token", id.Name, "group", n.GroupKey, "accepted", resp.Accepted, "repeated", resp.Repeated,
		"resolved", resp.Resolved, "ignored", resp.Ignored, "unmatched", resp.Unmatched)
	writeJSON(w, http.StatusOK, resp)
}

// unmatchedEvent sums up the alerts of a notification that no rule
// matches: how many, and the most frequent alertnames.
func unmatchedEvent(now time.Time, actor, group string, total int, byName map[string]int) journal.Event {
	names := make([]string, 0, len(byName))
	for name := range byName {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool {
		if byName[names[i]] != byName[names[j]] {
			return byName[names[i]] > byName[names[j]]
		}
		return names[i] < names[j]
	})
	shown := names[:min(len(names), 10)]
	top := map[string]int{}
	var parts []string
	for _, name := range shown {
		top[name] = byName[name]
		parts = append(parts, fmt.Sprintf("%s ×%d", name, byName[name]))
	}
	if len(names) > len(shown) {
		parts = append(parts, fmt.Sprintf("%d more names", len(names)-len(shown)))
	}
	data, _ := json.Marshal(map[string]any{"group_key": group, "count": total, "names": top, "distinct_names": len(names)})
	return journal.Event{Time: now, Kind: journal.KindAlertUnmatched, Actor: actor, Data: data,
		Message: fmt.Sprintf("%d firing alerts match no policy's alert rule (%s): counted, not stored", total, strings.Join(parts, ", "))}
}

func alertEvent(c alerts.Change, p *policies.Policy) (string, string) {
	what := fmt.Sprintf("alert %s (fingerprint %s) for policy %s", c.Alert.Name(), c.Alert.Fingerprint, p.Name)
	switch c.Outcome {
	case alerts.OutcomeNew:
		return journal.KindAlertAccepted, what + ": fired; evaluating now"
	case alerts.OutcomeRepeat:
		return journal.KindAlertRepeated, what + ": notified again; already acted on"
	case alerts.OutcomeResolved:
		return journal.KindAlertResolved, what + ": resolved; normal evaluation and cooldowns take over"
	}
	return journal.KindAlertIgnored, what + ": resolved, but it was not known to fire"
}

// record appends one event, logging a failure.
func (a *App) record(r *http.Request, ev journal.Event) {
	if _, err := a.journal.Events().Append(r.Context(), ev); err != nil {
		a.log.Error("journaling", "kind", ev.Kind, "err", err)
	}
}

// eventsPage is a page of the journal.
type eventsPage struct {
	Events []journal.Event `json:"events"`
	// Next is the cursor for the following page; empty at the end.
	Next string `json:"next,omitempty"`
}

// handleEvents serves GET /v1/events?kind=&subject=&service=&pool=&activity=&actor=&host=&text=&since=&until=&order=&cursor=&limit=.
// service (a task group, "namespace/job/group") and pool are subjects too;
// order=desc gives the newest first (the cursor then pages back).
func (a *App) handleEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := journal.Filter{Kind: q.Get("kind"), Subject: q.Get("subject"), Activity: q.Get("activity"),
		Actor: q.Get("actor"), Host: q.Get("host"), Text: q.Get("text")}
	var bad []string
	switch q.Get("order") {
	case "", "asc":
	case "desc":
		f.Desc = true
	default:
		bad = append(bad, fmt.Sprintf("order: want asc or desc, got %q", q.Get("order")))
	}
	for _, name := range []string{"service", "pool"} {
		if v := q.Get(name); v != "" {
			if f.Subject != "" && f.Subject != v {
				bad = append(bad, name+": give one of subject, service and pool")
			}
			f.Subject = v
		}
	}
	parseTime := func(name string, dst *time.Time) {
		if v := q.Get(name); v != "" {
			t, err := parseAPITime(name, v)
			if err != nil {
				bad = append(bad, err.Error())
			}
			*dst = t
		}
	}
	parseTime("since", &f.Since)
	parseTime("until", &f.Until)
	if v := q.Get("cursor"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			bad = append(bad, fmt.Sprintf("cursor: want the next value of a previous page, got %q", v))
		}
		f.After = n
	}
	if f.Desc {
		f.Before, f.After = f.After, 0
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			bad = append(bad, fmt.Sprintf("limit: want 1 to 1000, got %q", v))
		}
		f.Limit = n
	}
	if len(bad) > 0 {
		writeJSON(w, http.StatusBadRequest, apiError{Error: apiErrorBody{Code: "invalid_query", Message: "bad query parameters", Details: bad}})
		return
	}
	if f.Limit == 0 {
		f.Limit = 100
	}
	evs, err := a.journal.Events().Query(r.Context(), f)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "journal_unavailable", err.Error())
		return
	}
	page := eventsPage{Events: evs}
	if page.Events == nil {
		page.Events = []journal.Event{}
	}
	if len(evs) == f.Limit {
		page.Next = strconv.FormatInt(evs[len(evs)-1].Seq, 10)
	}
	writeJSON(w, http.StatusOK, page)
}
