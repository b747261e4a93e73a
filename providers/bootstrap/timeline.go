package bootstrap

import (
	"slices"
	"sync"
	"time"
)

// Phase is one step of a host's way from the cloud API call to a ready
// Nomad node. The phases are the part of the scale-out timeline that
// belongs to one host.
type Phase string

// Phases, in the order a host passes them.
const (
	// PhaseRequested: the launch request that created the host was made.
	PhaseRequested Phase = "requested"
	// PhaseRunning: the cloud reports the instance running.
	PhaseRunning Phase = "running"
	// PhaseBooted: the OS booted and Ignition applied the config.
	PhaseBooted Phase = "booted"
	// PhaseRegistered: the Nomad node registered with the servers.
	PhaseRegistered Phase = "registered"
	// PhaseReady: the node is ready and eligible, and its images are
	// pre-pulled (when the pool pre-pulls).
	PhaseReady Phase = "ready"
)

// Phases lists every phase in order.
var Phases = []Phase{PhaseRequested, PhaseRunning, PhaseBooted, PhaseRegistered, PhaseReady}

// Event is one host reaching one phase.
type Event struct {
	// Host is the cloud instance ID.
	Host     string
	Provider string
	Pool     string
	Claim    string
	Phase    Phase
	At       time.Time
	// Node is the Nomad node ID, from PhaseRegistered on.
	Node string
}

// Timeline records host phases. The controller journals them and exports
// them as spillway_scaleout_phase_seconds; the lab emits them as its
// simulated hosts boot. Implementations must be safe for concurrent use
// and must not block: Record is called from boot paths.
type Timeline interface {
	Record(Event)
}

// TimelineFunc adapts a function to Timeline.
type TimelineFunc func(Event)

// Record implements Timeline.
func (f TimelineFunc) Record(e Event) { f(e) }

// Recorder is an in-memory Timeline, for tests and the lab.
type Recorder struct {
	mu     sync.Mutex
	events []Event
}

var _ Timeline = (*Recorder)(nil)

// Record implements Timeline.
func (r *Recorder) Record(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// Events returns the events of host ("" for every host), in record order.
func (r *Recorder) Events(host string) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for _, e := range r.events {
		if host == "" || e.Host == host {
			out = append(out, e)
		}
	}
	return out
}

// Phases returns the phases host has reached, in record order.
func (r *Recorder) Phases(host string) []Phase {
	var out []Phase
	for _, e := range r.Events(host) {
		out = append(out, e.Phase)
	}
	return out
}

// Complete reports whether host has reached every phase, in order, with
// non-decreasing times.
func (r *Recorder) Complete(host string) bool {
	evs := r.Events(host)
	if !slices.Equal(r.Phases(host), Phases) {
		return false
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].At.Before(evs[i-1].At) {
			return false
		}
	}
	return true
}
