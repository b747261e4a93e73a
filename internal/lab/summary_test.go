package lab

import (
	"strings"
	"testing"
	"time"
)

func TestSummaryShowsTheBurst(t *testing.T) {
	rate := 412.4
	s := Summary{
		At: time.Date(2026, 12, 2, 8, 0, 5, 0, time.UTC), RequestRate: &rate, Wanted: 16, Running: 14, Healthy: 13,
		Own: 2, Shared: 1, Borrowed: 1, Cloud: map[string]int{"aws": 1, "alicloud": 2},
		Activity:  &SummaryActivity{ID: "act-1", Status: "activity.phase", From: 4, To: 16, Elapsed: 2*time.Minute + 3*time.Second},
		LastEvent: "intent.claim: renting 2 hosts from alicloud-lab",
		RanOut:    map[string]time.Time{"aws-lab": time.Date(2026, 12, 2, 8, 0, 1, 0, time.Local)},
	}
	line := s.Line()
	for _, want := range []string{"08:00:05", "412 req/s", "16 wanted, 13 healthy", "own 2, borrowed 1 of 1 shared, alicloud 2, aws 1",
		"act-1 4→16 active (activity.phase), 2m3s of 5m0s", "out of capacity: aws-lab at 08:00:01", "last: intent.claim: renting 2 hosts"} {
		if !strings.Contains(line, want) {
			t.Errorf("the line %q lacks %q", line, want)
		}
	}
	if strings.Contains(line, "\n") {
		t.Errorf("the line has a line break: %q", line)
	}
	block := strings.Join(s.Block(), "\n")
	if !strings.Contains(block, "14 running, 13 healthy") || !strings.Contains(block, "scaling   act-1") ||
		!strings.Contains(block, "clouds    out of capacity: aws-lab at 08:00:01") {
		t.Errorf("the block:\n%s", block)
	}
	// Past the deadline, a scale-out says so; unknown parts say why.
	s.Activity.Elapsed = 6 * time.Minute
	s.RequestRate, s.Errors = nil, []string{"prometheus: connection refused"}
	if line := s.Line(); !strings.Contains(line, "PAST THE DEADLINE") || !strings.Contains(line, "? req/s") {
		t.Errorf("past the deadline, without Prometheus: %q", line)
	}
	if block := strings.Join(s.Block(), "\n"); !strings.Contains(block, "unknown   prometheus: connection refused") {
		t.Errorf("the block does not name what is unknown:\n%s", block)
	}
	// A scaling that needed no host journals no end: finished, with no time.
	s.Activity = &SummaryActivity{ID: "act-2", Status: "scaled", From: 14, To: 16, Done: true}
	if line := s.Line(); !strings.Contains(line, "act-2 14→16 finished (scaled) |") {
		t.Errorf("a finished scaling without an end of its own: %q", line)
	}
}
