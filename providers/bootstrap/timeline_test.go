package bootstrap_test

import (
	"testing"
	"time"

	"github.com/spillwayhq/spillway/providers/bootstrap"
)

func TestRecorder(t *testing.T) {
	var r bootstrap.Recorder
	var tl bootstrap.Timeline = &r
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, p := range bootstrap.Phases {
		tl.Record(bootstrap.Event{Host: "i-1", Phase: p, At: t0.Add(time.Duration(i) * time.Second)})
		if i < 2 {
			tl.Record(bootstrap.Event{Host: "i-2", Phase: p, At: t0})
		}
	}
	if !r.Complete("i-1") || r.Complete("i-2") {
		t.Fatalf("Complete: i-1 %v, i-2 %v", r.Complete("i-1"), r.Complete("i-2"))
	}
	if n := len(r.Events("")); n != 7 {
		t.Fatalf("%d events", n)
	}
	var got []bootstrap.Phase
	f := bootstrap.TimelineFunc(func(e bootstrap.Event) { got = append(got, e.Phase) })
	f.Record(bootstrap.Event{Phase: bootstrap.PhaseReady})
	if len(got) != 1 || got[0] != bootstrap.PhaseReady {
		t.Fatal(got)
	}
	// Out of order is not complete.
	var bad bootstrap.Recorder
	for i := len(bootstrap.Phases) - 1; i >= 0; i-- {
		bad.Record(bootstrap.Event{Host: "i-3", Phase: bootstrap.Phases[i], At: t0})
	}
	if bad.Complete("i-3") {
		t.Fatal("reversed phases are complete")
	}
}
