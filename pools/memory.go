package pools

import (
	"sync"
	"time"

	"github.com/spillwayhq/spillway/providers"
)

// DefaultUnavailableFor is how long an offering that just failed stays out
// of the ladder.
const DefaultUnavailableFor = 3 * time.Minute

// OfferingMemory remembers offerings that just failed (insufficient
// capacity, quota, throttling, an unavailable API) for a few minutes, so the
// ladder falls back to others instead of retrying them. It has no clock of
// its own: every call takes now. It is safe for concurrent use; a nil
// OfferingMemory remembers nothing.
type OfferingMemory struct {
	ttl   time.Duration
	mu    sync.Mutex
	until map[string]time.Time // pool + "/" + offering key → forgotten at
}

// NewOfferingMemory returns a memory that forgets a failure after ttl
// (DefaultUnavailableFor when ttl <= 0).
func NewOfferingMemory(ttl time.Duration) *OfferingMemory {
	if ttl <= 0 {
		ttl = DefaultUnavailableFor
	}
	return &OfferingMemory{ttl: ttl, until: map[string]time.Time{}}
}

func memoryKey(pool string, o providers.Offering) string { return pool + "/" + o.Key() }

// MarkUnavailable remembers the offerings of pool as unavailable from now
// for the memory's window, or for d when d is longer (a throttling
// retry-after).
func (m *OfferingMemory) MarkUnavailable(pool string, now time.Time, d time.Duration, offerings ...providers.Offering) {
	if m == nil {
		return
	}
	m.mark(pool, now, max(d, m.ttl), offerings...)
}

// ThrottleBackoff is how long a throttled offering is left alone when the
// cloud did not say: throttling is about the rate of calls, not about the
// offering, so it is short.
const ThrottleBackoff = 10 * time.Second

func (m *OfferingMemory) mark(pool string, now time.Time, d time.Duration, offerings ...providers.Offering) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, o := range offerings {
		k := memoryKey(pool, o)
		if until := now.Add(d); until.After(m.until[k]) {
			m.until[k] = until
		}
	}
}

// RecordError remembers what a provider error says about the offerings a
// create in pool tried: an insufficient capacity error marks the offerings
// it names (or every tried one when it names none); quota, throttled and
// unavailable errors mark every tried offering, a throttled one for at
// least its retry-after. Other errors and nil are ignored.
func (m *OfferingMemory) RecordError(pool string, now time.Time, err error, tried ...providers.Offering) {
	switch {
	case err == nil:
	case providers.IsInsufficientCapacity(err):
		named := providers.ExhaustedOfferings(err)
		if len(named) == 0 {
			named = tried
		}
		m.MarkUnavailable(pool, now, 0, named...)
	case providers.IsThrottled(err):
		// For as long as the cloud asked, else briefly: not the window of
		// an offering that ran out.
		after, ok := providers.RetryAfter(err)
		if !ok || after <= 0 {
			after = ThrottleBackoff
		}
		m.mark(pool, now, after, tried...)
	case providers.IsQuota(err), providers.IsUnavailable(err):
		m.MarkUnavailable(pool, now, 0, tried...)
	}
}

// Unavailable reports whether offering o of pool failed within the window
// before now.
func (m *OfferingMemory) Unavailable(pool string, o providers.Offering, now time.Time) bool {
	if m == nil {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	until, ok := m.until[memoryKey(pool, o)]
	return ok && now.Before(until)
}

// Forget drops every failure that has expired at now, and returns how many
// are still remembered.
func (m *OfferingMemory) Forget(now time.Time) int {
	if m == nil {
		return 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, until := range m.until {
		if !now.Before(until) {
			delete(m.until, k)
		}
	}
	return len(m.until)
}
