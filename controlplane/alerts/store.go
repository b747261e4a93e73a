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
// whether it is new, a repeat or resolved: Plan, then Commit.
func (s *Store) Apply(n *Notification, now time.Time) []Change {
	cs := s.Plan(n, now)
	s.Commit(cs, now)
	return cs
}

// Plan says, for each alert of a notification received at now, whether it
// is new, a repeat or resolved, and changes nothing: the receiver journals
// the outcome first and Commits only then, so a notification whose
// journaling failed (and that Alertmanager sends again) is new again, and
// is acted on once.
func (s *Store) Plan(n *Notification, now time.Time) []Change {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	out := make([]Change, 0, len(n.Alerts))
	seen := map[string]Alert{}
	for _, a := range n.Alerts {
		prev, known := s.firing[a.Fingerprint]
		if p, ok := seen[a.Fingerprint]; ok {
			prev, known = entry{alert: p}, p.Status != StatusResolved
		}
		seen[a.Fingerprint] = a
		switch {
		case a.Status == StatusResolved && known:
			out = append(out, Change{a, OutcomeResolved})
		case a.Status == StatusResolved:
			out = append(out, Change{a, OutcomeStaleResolve})
		case known && prev.alert.StartsAt.Equal(a.StartsAt):
			out = append(out, Change{a, OutcomeRepeat})
		default:
			out = append(out, Change{a, OutcomeNew})
		}
	}
	return out
}

// Commit applies what Plan decided.
func (s *Store) Commit(cs []Change, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range cs {
		switch c.Outcome {
		case OutcomeResolved, OutcomeStaleResolve:
			delete(s.firing, c.Alert.Fingerprint)
		default:
			s.firing[c.Alert.Fingerprint] = entry{c.Alert, now} // a repeat brings fresher annotations
		}
	}
}

// Seen is one journaled outcome, for Restore: an alert as it was
// received, and when.
type Seen struct {
	Alert Alert
	At    time.Time
}

// Restore rebuilds the firing set from what was journaled, oldest first
// (after a restart, or when a replica becomes the leader): an alert that
// fired and was not resolved is firing again, with the time it was last
// heard of, so the TTL goes on counting from then.
func (s *Store) Restore(seen []Seen, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.firing = map[string]entry{}
	for _, e := range seen {
		if e.Alert.Status == StatusResolved {
			delete(s.firing, e.Alert.Fingerprint)
			continue
		}
		s.firing[e.Alert.Fingerprint] = entry{e.Alert, e.At}
	}
	s.expire(now)
}

// Alerts returns the alerts firing at now, in fingerprint order, as they
// were received.
func (s *Store) Alerts(now time.Time) []Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	fps := make([]string, 0, len(s.firing))
	for fp := range s.firing {
		fps = append(fps, fp)
	}
	sort.Strings(fps)
	out := make([]Alert, 0, len(fps))
	for _, fp := range fps {
		out = append(out, s.firing[fp].alert)
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
	alerts := s.Alerts(now)
	out := make([]policies.Alert, 0, len(alerts))
	for _, a := range alerts {
		out = append(out, policies.Alert{Name: a.Name(), Labels: a.Labels})
	}
	return out
}
