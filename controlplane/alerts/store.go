package alerts

import (
	"sort"
	"sync"
	"time"

	"github.com/spillwayhq/spillway/policies"
)

// Outcome is what the store made of one alert of a notification.
type Outcome string

// Outcomes.
const (
	// OutcomeNew is an alert firing that was not firing before: act on it.
	OutcomeNew Outcome = "new"
	// OutcomeRepeat is a notification of an alert already known to fire
	// (Alertmanager re-sends groups every group_interval): do not act again.
	OutcomeRepeat Outcome = "repeat"
	// OutcomeResolved is a firing alert that has resolved.
	OutcomeResolved Outcome = "resolved"
	// OutcomeStaleResolve is a resolve for an alert not known to fire.
	OutcomeStaleResolve Outcome = "stale-resolve"
)

// Change is the store's verdict on one alert.
type Change struct {
	Alert   Alert
	Outcome Outcome
}

// Store is the set of alerts firing now, keyed by fingerprint. An alert
// that fires, resolves and fires again (a new StartsAt) is new again.
// Alertmanager re-sends a firing group every repeat_interval, so an alert
// not heard of for longer than the store's TTL is taken to have ended
// (its resolve was lost). It is safe for concurrent use.
type Store struct {
	ttl    time.Duration
	mu     sync.Mutex
	firing map[string]entry
}

type entry struct {
	alert    Alert
	lastSeen time.Time
}

// NewStore returns an empty store whose alerts expire when not re-sent
// within ttl; set it above Alertmanager's repeat_interval.
func NewStore(ttl time.Duration) *Store { return &Store{ttl: ttl, firing: map[string]entry{}} }

// Apply records a notification received at now and says, for each alert,
// whether it is new, a repeat or resolved.
func (s *Store) Apply(n *Notification, now time.Time) []Change {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	out := make([]Change, 0, len(n.Alerts))
	for _, a := range n.Alerts {
		prev, known := s.firing[a.Fingerprint]
		switch {
		case a.Status == StatusResolved && known:
			delete(s.firing, a.Fingerprint)
			out = append(out, Change{a, OutcomeResolved})
		case a.Status == StatusResolved:
			out = append(out, Change{a, OutcomeStaleResolve})
		case known && prev.alert.StartsAt.Equal(a.StartsAt):
			s.firing[a.Fingerprint] = entry{a, now} // fresher annotations
			out = append(out, Change{a, OutcomeRepeat})
		default:
			s.firing[a.Fingerprint] = entry{a, now}
			out = append(out, Change{a, OutcomeNew})
		}
	}
	return out
}

// expire drops alerts not re-sent within the TTL.
func (s *Store) expire(now time.Time) {
	for fp, e := range s.firing {
		if s.ttl > 0 && now.Sub(e.lastSeen) > s.ttl {
			delete(s.firing, fp)
		}
	}
}

// Firing returns the alerts firing at now, in fingerprint order, in the
// form policies evaluate.
func (s *Store) Firing(now time.Time) []policies.Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	fps := make([]string, 0, len(s.firing))
	for fp := range s.firing {
		fps = append(fps, fp)
	}
	sort.Strings(fps)
	out := make([]policies.Alert, 0, len(fps))
	for _, fp := range fps {
		a := s.firing[fp].alert
		out = append(out, policies.Alert{Name: a.Name(), Labels: a.Labels})
	}
	return out
}
