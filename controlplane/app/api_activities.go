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
	// Outcome is how a scale-out ended (done, partial, unmet), once it has.
	Outcome string `json:"outcome,omitempty"`
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
			Current   *int      `json:"current"`
			Desired   *int      `json:"desired"`
			Direction string    `json:"direction"`
			Host      string    `json:"host"`
			Hosts     []string  `json:"hosts"`
			Outcome   string    `json:"outcome"`
			Phase     string    `json:"phase"`
			Triggered time.Time `json:"triggered"`
			Deadline  time.Time `json:"deadline"`
		}
		_ = json.Unmarshal(ev.Data, &d)
		if ev.Kind == controller.KindPhase && d.Phase == controller.PhaseTrigger {
			if i == 0 {
				act.Direction = "up" // work whose count Nomad raised
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
		if ev.Kind == journal.KindDecision {
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

// handleActivities serves GET /v1/activities?service=&since=&until=&cursor=&limit=:
// scaling operations, oldest first, a page at a time. An activity starts
// with a decision (the scaler's, or POST /v1/scale), or with the
// controller's trigger phase when it followed work whose count Nomad
// raised (`nomad job scale`, a deploy): both are listed.
func (s *api) handleActivities(w http.ResponseWriter, r *http.Request) {
	q := query{r: r}
	f := journal.Filter{Subject: q.str("service"), Since: q.time("since", time.Time{}), Until: q.time("until", time.Time{}), After: q.cursor()}
	limit := q.limit(50, 200)
	if len(q.bad) > 0 {
		badQuery(w, q.bad)
		return
	}
	page := activitiesPage{Activities: []Activity{}}
	// Routine decisions have no activity; scan a bounded number of events
	// per request and hand out a cursor where the scan stopped.
	const chunk, maxScan = 1000, 20000
	scanned := 0
	for scanned < maxScan && len(page.Activities) < limit {
		// The decisions and the phases after the cursor, merged in journal
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
				if last := got[len(got)-1].Seq; bound < 0 || last < bound {
					bound = last
				}
			}
			evs = append(evs, got...)
		}
		slices.SortFunc(evs, func(a, b journal.Event) int { return cmp.Compare(a.Seq, b.Seq) })
		for _, ev := range evs {
			if bound >= 0 && ev.Seq > bound {
				break
			}
			f.After = ev.Seq
			if ev.Activity == "" {
				continue
			}
			all, err := s.activityEvents(r.Context(), ev.Activity)
			if err != nil {
				writeError(w, http.StatusServiceUnavailable, "journal_unavailable", err.Error())
				return
			}
			// Listed at its first event only: a phase of an activity a
			// decision began, or a later phase, is not a new one.
			if len(all) == 0 || all[0].Seq != ev.Seq {
				continue
			}
			page.Activities = append(page.Activities, buildActivity(ev.Activity, all))
			if len(page.Activities) == limit {
				break
			}
		}
		if end && len(page.Activities) < limit {
			writeJSON(w, http.StatusOK, page) // the end of the journal
			return
		}
	}
	page.Next = strconv.FormatInt(f.After, 10)
	writeJSON(w, http.StatusOK, page)
}

// handleActivity serves GET /v1/activities/{id}.
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
	writeJSON(w, http.StatusOK, buildActivity(id, evs))
}
