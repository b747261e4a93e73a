package alerts

import (
	"fmt"
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

// OutcomeUnmatched is a firing alert that no policy's alert rule
// matches and that is not known to fire: it is counted, not stored.
const OutcomeUnmatched Outcome = "unmatched"

// Change is the store's verdict on one alert.
type Change struct {
	Alert   Alert
	Outcome Outcome
}

// FullError says a notification would take the firing set past its cap.
// Nothing of it was applied; the receiver answers 503, which Alertmanager
// retries, so it is not lost.
type FullError struct {
	Max, Firing, Adding int
}

func (e *FullError) Error() string {
	return fmt.Sprintf("the firing set holds %d of at most %d alerts (alerts.max_firing), and the notification would add %d", e.Firing, e.Max, e.Adding)
}

// Store is the set of alerts firing now that a policy's rule matched,
// keyed by fingerprint and indexed by alertname, so an evaluation reads
// only the alerts its rules can match. An alert that fires, resolves and
// fires again (a new StartsAt) is new again. Alertmanager re-sends a
// firing group every repeat_interval, so an alert not heard of for longer
// than the store's TTL is taken to have ended (its resolve was lost). The
// set holds at most max alerts. It is safe for concurrent use.
type Store struct {
	ttl    time.Duration
	max    int
	mu     sync.Mutex
	firing map[string]entry
	byName map[string]map[string]struct{}
	// expireAt is when the oldest entry may expire: until then a pass over
	// the whole set to expire alerts finds nothing.
	expireAt time.Time
}

type entry struct {
	alert    Alert
	lastSeen time.Time
}

// NewStore returns an empty store whose alerts expire when not re-sent
// within ttl (set it above Alertmanager's repeat_interval) and that holds
// at most max alerts (0: no cap).
func NewStore(ttl time.Duration, max int) *Store {
	return &Store{ttl: ttl, max: max, firing: map[string]entry{}, byName: map[string]map[string]struct{}{}}
}

// Apply records a notification received at now and says, for each alert,
// whether it is new, a repeat or resolved: Plan, then Commit.
func (s *Store) Apply(n *Notification, now time.Time, matched []bool) ([]Change, error) {
	cs, err := s.Plan(n, now, matched)
	if err != nil {
		return nil, err
	}
	s.Commit(cs, now)
	return cs, nil
}

// Plan says, for each alert of a notification received at now, whether it
// is new, a repeat, resolved, or unmatched (firing, not known, and
// matched[i] is false for n.Alerts[i]; a nil matched matches every alert),
// and changes nothing: the
// receiver journals the outcome first and Commits only then, so a
// notification whose journaling failed (and that Alertmanager sends
// again) is new again, and is acted on once. A notification that would
// take the set past its cap is a *FullError. It returns one Change per
// alert, in the notification's order.
func (s *Store) Plan(n *Notification, now time.Time, matched []bool) ([]Change, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	out := make([]Change, 0, len(n.Alerts))
	// The state of each fingerprint as the notification's alerts so far
	// leave it (a group may name one alert twice): firing with a start,
	// or not firing.
	type state struct {
		firing   bool
		startsAt time.Time
	}
	after := map[string]state{}
	for i, a := range n.Alerts {
		cur, ok := after[a.Fingerprint]
		if !ok {
			if e, stored := s.firing[a.Fingerprint]; stored {
				cur = state{firing: true, startsAt: e.alert.StartsAt}
			}
		}
		var o Outcome
		switch {
		case a.Status == StatusResolved && cur.firing:
			o, cur = OutcomeResolved, state{}
		case a.Status == StatusResolved:
			o = OutcomeStaleResolve
		case cur.firing && cur.startsAt.Equal(a.StartsAt):
			o = OutcomeRepeat
		case !cur.firing && matched != nil && !matched[i]:
			o = OutcomeUnmatched
		default:
			o, cur = OutcomeNew, state{firing: true, startsAt: a.StartsAt}
		}
		after[a.Fingerprint] = cur
		out = append(out, Change{a, o})
	}
	// What the set holds once it is committed, against what it holds now.
	adding := 0
	for fp, st := range after {
		_, stored := s.firing[fp]
		switch {
		case st.firing && !stored:
			adding++
		case !st.firing && stored:
			adding--
		}
	}
	if s.max > 0 && adding > 0 && len(s.firing)+adding > s.max {
		return nil, &FullError{Max: s.max, Firing: len(s.firing), Adding: adding}
	}
	return out, nil
}

// Commit applies what Plan decided.
func (s *Store) Commit(cs []Change, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range cs {
		switch c.Outcome {
		case OutcomeResolved, OutcomeStaleResolve:
			s.remove(c.Alert.Fingerprint)
		case OutcomeNew, OutcomeRepeat:
			s.add(c.Alert, now) // a repeat brings fresher annotations
		}
	}
}

// add stores a firing alert seen at now.
func (s *Store) add(a Alert, now time.Time) {
	if old, ok := s.firing[a.Fingerprint]; ok && old.alert.Name() != a.Name() {
		s.remove(a.Fingerprint)
	}
	s.firing[a.Fingerprint] = entry{a, now}
	fps := s.byName[a.Name()]
	if fps == nil {
		fps = map[string]struct{}{}
		s.byName[a.Name()] = fps
	}
	fps[a.Fingerprint] = struct{}{}
	if s.expireAt.IsZero() || now.Add(s.ttl).Before(s.expireAt) {
		s.expireAt = now.Add(s.ttl)
	}
}

// remove forgets an alert.
func (s *Store) remove(fp string) {
	e, ok := s.firing[fp]
	if !ok {
		return
	}
	delete(s.firing, fp)
	if fps := s.byName[e.alert.Name()]; fps != nil {
		delete(fps, fp)
		if len(fps) == 0 {
			delete(s.byName, e.alert.Name())
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
	s.byName = map[string]map[string]struct{}{}
	s.expireAt = time.Time{}
	for _, e := range seen {
		if e.Alert.Status == StatusResolved {
			s.remove(e.Alert.Fingerprint)
			continue
		}
		s.add(e.Alert, e.At)
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

// Len is the number of alerts firing at now.
func (s *Store) Len(now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	return len(s.firing)
}

// Max is the store's cap (0: none).
func (s *Store) Max() int { return s.max }

// expire drops alerts not re-sent within the TTL. It passes over the set
// only once the oldest alert may have expired.
func (s *Store) expire(now time.Time) {
	if s.ttl <= 0 || s.expireAt.IsZero() || now.Before(s.expireAt) {
		return
	}
	s.expireAt = time.Time{}
	for fp, e := range s.firing {
		if now.Sub(e.lastSeen) > s.ttl {
			s.remove(fp)
			continue
		}
		if at := e.lastSeen.Add(s.ttl); s.expireAt.IsZero() || at.Before(s.expireAt) {
			s.expireAt = at
		}
	}
}

// Firing returns the alerts firing at now whose alertname is one of
// names, in fingerprint order, in the form policies evaluate. It costs in
// proportion to those alerts, not to the whole set: an evaluation asks
// for the names its rules match.
func (s *Store) Firing(now time.Time, names ...string) []policies.Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []policies.Alert
	for _, name := range names {
		for fp := range s.byName[name] {
			e := s.firing[fp]
			if s.ttl > 0 && now.Sub(e.lastSeen) > s.ttl {
				continue // expired; the next pass drops it
			}
			out = append(out, policies.Alert{Name: name, Labels: e.alert.Labels, Fingerprint: fp})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Fingerprint < out[j].Fingerprint })
	return out
}
