package scalesim

import (
	"context"
	"sync/atomic"

	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/pools"
)

// inFlight counts the journal's calls in flight, for Quiet. A call that
// waits for SQLite's fsync sits in a system call, which the scheduler's
// counts do not always show: the process read as quiet during one, the
// clock moved on to its next timer, and the scale-outs waiting for the
// write went on a timer later (the same seed gave other figures in about
// one test run in ten, every scale-out of the run 1 to 5 s late).
type inFlight struct{ n atomic.Int64 }

func (f *inFlight) busy() bool { return f.n.Load() > 0 }

func (f *inFlight) enter() func() {
	f.n.Add(1)
	return func() { f.n.Add(-1) }
}

// countedEvents is the journal's event log, counted.
type countedEvents struct {
	journal.EventLog
	f *inFlight
}

func (e countedEvents) Append(ctx context.Context, evs ...journal.Event) ([]journal.Event, error) {
	defer e.f.enter()()
	return e.EventLog.Append(ctx, evs...)
}

func (e countedEvents) Query(ctx context.Context, f journal.Filter) ([]journal.Event, error) {
	defer e.f.enter()()
	return e.EventLog.Query(ctx, f)
}

func (e countedEvents) LastSeq(ctx context.Context) (int64, error) {
	defer e.f.enter()()
	return e.EventLog.LastSeq(ctx)
}

// countedLedger is the lending ledger's store, counted.
type countedLedger struct {
	pools.LedgerStore
	f *inFlight
}

func (l countedLedger) Append(ctx context.Context, e pools.Entry) error {
	defer l.f.enter()()
	return l.LedgerStore.Append(ctx, e)
}

func (l countedLedger) Entries(ctx context.Context) ([]pools.Entry, error) {
	defer l.f.enter()()
	return l.LedgerStore.Entries(ctx)
}
