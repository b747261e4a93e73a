package app

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/controller"
	"github.com/spillwayhq/spillway/controlplane/journal"
)

// Activity is one scaling operation, built from the journal events that
// share its activity ID: the decision, the change of count, and the later
// phases (capacity requested, hosts ready, …) as the controller records them.
type Activity struct {
	ID string `json:"id"`
	// Service is the task group, "namespace/job/group".
	Service string `json:"service"`
	// Direction is "up" (a scale-out) or "down" (a scale-in).
	Direction string `json:"direction"`
	From      int    `json:"from"`
	To        int    `json:"to"`
	// Status is decided, scaled or failed, from the latest phase.
	Status string `json:"status"`
	// Outcome is how it ended, once it has: a scale-out done, partial or
	// unmet (the controller's), failed (Nomad refused the count); a
	// scale-in done once its count is set, or failed. Empty in flight.
	Outcome string `json:"outcome,omitempty"`
	// MissedDeadline is set once a scale-out was not healthy by its deadline.
	MissedDeadline bool `json:"missed_deadline"`
	// BusinessUnit is the business unit the service belongs to.
	BusinessUnit string `json:"business_unit,omitempty"`
	// Policy is the policy that decided it, when one did.
	Policy string `json:"policy,omitempty"`
	// StartedBy is "policy" (a decision of a policy), "manual" (POST
	// /v1/scale) or "nomad" (a count changed in Nomad).
	StartedBy string `json:"started_by"`
	// Actor is who started it: "controller" or an API token's name.
	Actor   string    `json:"actor"`
	Reason  string    `json:"reason"`
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
	// Hosts are the hosts its phases name.
	Hosts  []string `json:"hosts"`
	Phases []Phase  `json:"phases"`
	// Seq is the journal position of its first event: the cursor.
	Seq int64 `json:"seq"`
	// Triggered and Deadline are a scale-out's trigger and deadline, from
	// the controller's trigger phase, once it has one.
	Triggered *time.Time `json:"triggered,omitempty"`
	Deadline  *time.Time `json:"deadline,omitempty"`
}

// Phase is one step of an activity: one journal event.
type Phase struct {
	Seq     int64     `json:"seq"`
	Kind    string    `json:"kind"`
	Time    time.Time `json:"time"`
	Actor   string    `json:"actor,omitempty"`
	Message string    `json:"message"`
}

type activitiesPage struct {
	Activities []Activity `json:"activities"`
	Next       string     `json:"next,omitempty"`
}

// activity builds an activity from its events (oldest first).
func buildActivity(id string, evs []journal.Event) Activity {
	act := Activity{ID: id, Hosts: []string{}, Phases: []Phase{}, Status: "decided"}
	for i, ev := range evs {
		if i == 0 {
			act.Seq, act.Started, act.Service, act.Actor, act.Reason = ev.Seq, ev.Time, ev.Subject, ev.Actor, ev.Message
		}
		act.Updated = ev.Time
		act.Phases = append(act.Phases, Phase{Seq: ev.Seq, Kind: ev.Kind, Time: ev.Time, Actor: ev.Actor, Message: ev.Message})
		var d struct {
			Current      *int      `json:"current"`
			Desired      *int      `json:"desired"`
			Direction    string    `json:"direction"`
			Host         string    `json:"host"`
			Hosts        []string  `json:"hosts"`
			Outcome      string    `json:"outcome"`
			Phase        string    `json:"phase"`
			Policy       string    `json:"policy"`
			BusinessUnit string    `json:"business_unit"`
			Triggered    time.Time `json:"triggered"`
			Deadline     time.Time `json:"deadline"`
		}
		_ = json.Unmarshal(ev.Data, &d)
		if ev.Kind == controller.KindPhase && d.Phase == controller.PhaseTrigger {
			if i == 0 {
				act.Direction = "up" // work whose count Nomad raised
				act.StartedBy = "nomad"
			}
			if d.BusinessUnit != "" {
				act.BusinessUnit = d.BusinessUnit
			}
			if !d.Triggered.IsZero() {
				t := d.Triggered.UTC()
				act.Triggered = &t
			}
			if !d.Deadline.IsZero() {
				t := d.Deadline.UTC()
				act.Deadline = &t
			}
		}
		if ev.Kind == controller.KindActivityEnded {
			act.Outcome = d.Outcome
		}
		if ev.Kind == controller.KindMissed {
			act.MissedDeadline = true
		}
		if ev.Kind == journal.KindDecision {
			act.Policy = d.Policy
			if act.StartedBy == "" {
				act.StartedBy = "policy"
				if ev.Actor != "controller" {
					act.StartedBy = "manual"
				}
			}
			if d.Current != nil {
				act.From = *d.Current
			}
			if d.Desired != nil {
				act.To = *d.Desired
			}
			act.Direction = d.Direction
		}
		for _, h := range append(d.Hosts, d.Host) {
			if h != "" && !slices.Contains(act.Hosts, h) {
				act.Hosts = append(act.Hosts, h)
			}
		}
		switch ev.Kind {
		case journal.KindScale:
			act.Status = "scaled"
		case journal.KindScaleFailed:
			act.Status = "failed"
		default:
			if ev.Kind != journal.KindDecision && act.Status != "failed" {
				act.Status = ev.Kind
			}
		}
	}
	return act
}

// activityEvents reads every event of an activity.
func (s *api) activityEvents(ctx context.Context, id string) ([]journal.Event, error) {
	var out []journal.Event
	err := journal.Each(ctx, s.journal.Events(), journal.Filter{Activity: id}, func(ev journal.Event) error {
		out = append(out, ev)
		return nil
	})
	return out, err
}

// Outcomes an activity can be filtered by, beside the controller's.
const (
	filterInProgress     = "in_progress"
	filterMissedDeadline = "missed_deadline"
)

// activityFilter is what GET /v1/activities selects beyond the journal's
// own filter.
type activityFilter struct {
	direction, businessUnit, outcome string
}

func (f activityFilter) match(a Activity) bool {
	switch {
	case f.direction != "" && a.Direction != f.direction:
		return false
	case f.businessUnit != "" && a.BusinessUnit != f.businessUnit:
		return false
	}
	switch f.outcome {
	case "":
		return true
	case filterInProgress:
		return a.Outcome == ""
	case filterMissedDeadline:
		return a.MissedDeadline
	}
	return a.Outcome == f.outcome
}

// complete fills what an activity's own events do not say: its business
// unit from its policy, and how one the controller never followed ended
// (a scale-in once its count is set; a scale-out the controller never
// took up as the overview judges it); and, for a scale-out, whether it
// missed its deadline. It returns the scale-out as the overview judges
// it (nil for a scale-in, or one it cannot judge).
func (s *api) complete(act *Activity, evs []journal.Event, now time.Time, snap *cluster.Snapshot) *overviewScaleOut {
	if act.BusinessUnit == "" {
		if p, ok := s.Policies().Get(act.Policy); ok && act.Policy != "" {
			act.BusinessUnit = p.BusinessUnit
		} else if t, err := ParseService(act.Service); err == nil {
			for _, p := range s.Policies().ForTarget(t) {
				if p.BusinessUnit != "" {
					act.BusinessUnit = p.BusinessUnit
					break
				}
			}
		}
	}
	if act.Direction != "up" {
		if act.Outcome == "" {
			switch act.Status {
			case "failed":
				act.Outcome = outcomeFailed
			case "scaled":
				act.Outcome = controller.OutcomeDone
			}
		}
		return nil
	}
	so, ok := s.scaleOut(act.ID, evs, now, snap, map[string]time.Duration{})
	if !ok {
		return nil
	}
	act.MissedDeadline = act.MissedDeadline || so.MissedDeadline
	if act.Outcome == "" && so.Outcome != outcomeInProgress {
		act.Outcome = so.Outcome
	}
	if act.Deadline == nil {
		d := so.Deadline
		act.Deadline = &d
	}
	if act.Triggered == nil {
		t := so.Triggered
		act.Triggered = &t
	}
	return &so
}

// handleActivities serves GET /v1/activities?service=&business_unit=&direction=&outcome=&since=&until=&order=&cursor=&limit=:
// scaling operations, oldest first (order=desc: newest first), a page at
// a time. An activity starts with a decision (the scaler's, or POST
// /v1/scale), or with the controller's trigger phase when it followed
// work whose count Nomad raised (`nomad job scale`, a deploy): both are
// listed. since and until bound when it started.
func (s *api) handleActivities(w http.ResponseWriter, r *http.Request) {
	q := query{r: r}
	f := journal.Filter{Subject: q.str("service"), Since: q.time("since", time.Time{}), Until: q.time("until", time.Time{})}
	cursor := q.cursor()
	switch q.str("order") {
	case "", "asc":
		f.After = cursor
	case "desc":
		f.Desc, f.Before = true, cursor
	default:
		q.bad = append(q.bad, fmt.Sprintf("order: want asc or desc, got %q", q.str("order")))
	}
	af := activityFilter{direction: q.str("direction"), businessUnit: q.str("business_unit"), outcome: q.str("outcome")}
	if af.direction != "" && af.direction != "up" && af.direction != "down" {
		q.bad = append(q.bad, fmt.Sprintf("direction: want up or down, got %q", af.direction))
	}
	if o := af.outcome; o != "" && !slices.Contains([]string{controller.OutcomeDone, controller.OutcomePartial, controller.OutcomeUnmet,
		outcomeFailed, filterMissedDeadline, filterInProgress}, o) {
		q.bad = append(q.bad, fmt.Sprintf("outcome: want done, partial, unmet, failed, missed_deadline or in_progress, got %q", o))
	}
	limit := q.limit(50, 200)
	if len(q.bad) > 0 {
		badQuery(w, q.bad)
		return
	}
	now, snap := s.clock.Now().UTC(), s.model.Snapshot()
	page := activitiesPage{Activities: []Activity{}}
	// Routine decisions have no activity; scan a bounded number of events
	// per request and hand out a cursor where the scan stopped.
	const chunk, maxScan = 1000, 20000
	scanned := 0
	events := map[string][]journal.Event{} // by activity, read once per request
	for scanned < maxScan && len(page.Activities) < limit {
		// The decisions and the phases past the cursor, merged in journal
		// order up to where both pages are complete.
		var evs []journal.Event
		bound, end := int64(-1), true
		for _, kind := range []string{journal.KindDecision, controller.KindPhase} {
			kf := f
			kf.Kind, kf.Limit = kind, chunk
			got, err := s.journal.Events().Query(r.Context(), kf)
			if err != nil {
				writeError(w, http.StatusServiceUnavailable, "journal_unavailable", err.Error())
				return
			}
			scanned += len(got)
			if len(got) == chunk {
				end = false
				last := got[len(got)-1].Seq
				if bound < 0 || (!f.Desc && last < bound) || (f.Desc && last > bound) {
					bound = last
				}
			}
			evs = append(evs, got...)
		}
		slices.SortFunc(evs, func(a, b journal.Event) int {
			if f.Desc {
				return cmp.Compare(b.Seq, a.Seq)
			}
			return cmp.Compare(a.Seq, b.Seq)
		})
		for _, ev := range evs {
			if bound >= 0 && ((!f.Desc && ev.Seq > bound) || (f.Desc && ev.Seq < bound)) {
				break
			}
			if f.Desc {
				f.Before = ev.Seq
			} else {
				f.After = ev.Seq
			}
			if ev.Activity == "" {
				continue
			}
			all, ok := events[ev.Activity]
			if !ok {
				var err error
				if all, err = s.activityEvents(r.Context(), ev.Activity); err != nil {
					writeError(w, http.StatusServiceUnavailable, "journal_unavailable", err.Error())
					return
				}
				events[ev.Activity] = all
			}
			// Listed at its first event only: a phase of an activity a
			// decision began, or a later phase, is not a new one.
			if len(all) == 0 || all[0].Seq != ev.Seq {
				continue
			}
			act := buildActivity(ev.Activity, all)
			s.complete(&act, all, now, snap)
			if !af.match(act) {
				continue
			}
			page.Activities = append(page.Activities, act)
			if len(page.Activities) == limit {
				break
			}
		}
		if end && len(page.Activities) < limit {
			writeJSON(w, http.StatusOK, page) // the end of the journal
			return
		}
	}
	next := f.After
	if f.Desc {
		next = f.Before
	}
	page.Next = strconv.FormatInt(next, 10)
	writeJSON(w, http.StatusOK, page)
}

// handleActivity serves GET /v1/activities/{id}: the activity with what
// explains it, all from the journal (so also for one that ended before
// a restart): its trigger and decision, its phases against its deadline,
// a timeline per host, and the source waterfall.
func (s *api) handleActivity(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	evs, err := s.activityEvents(r.Context(), id)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "journal_unavailable", err.Error())
		return
	}
	if len(evs) == 0 {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no activity %q in the journal", id))
		return
	}
	now, snap := s.clock.Now().UTC(), s.model.Snapshot()
	act := buildActivity(id, evs)
	so := s.complete(&act, evs, now, snap)
	d, err := s.explain(r.Context(), act, so, evs, now, snap)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "journal_unavailable", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, d)
}
