package controller

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/pools"
)

// TestHedges: a cloud step whose time-to-ready leaves too little slack
// before the deadline is hedged on a faster pool the plan offers, for as
// many hosts as that pool has spare; with slack, nothing is hedged.
func TestHedges(t *testing.T) {
	db, err := journal.Open(t.Context(), filepath.Join(t.TempDir(), "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	c := New(Config{Journal: db.Events(), Clock: clockwork.NewFakeClockAt(now)})
	plan := pools.Plan{Steps: []pools.Step{
		{Tier: pools.TierShared, Pool: "shared", Hosts: 1, Available: 1},
		{Tier: pools.TierCold, Pool: "aws", Hosts: 3, Available: 3, TimeToReady: 2 * time.Minute},
		{Tier: pools.TierCold, Pool: "slow", Available: 9, TimeToReady: 3 * time.Minute},
		{Tier: pools.TierCold, Pool: "ali", Hosts: 0, Available: 2, TimeToReady: time.Minute},
	}}
	hedge := func(deadline time.Duration) []pools.Step {
		a := &activity{c: c, tl: &timeline{c: c, r: Request{Activity: "act-1", Deadline: now.Add(deadline)}}}
		return a.hedges(t.Context(), plan)
	}

	// 2m05s to the deadline: aws leaves 5s, less than a fifth of 2m.
	got := hedge(2*time.Minute + 5*time.Second)
	if len(got) != 1 || got[0].Pool != "ali" || got[0].Hosts != 2 {
		t.Fatalf("hedges %+v, want 2 hosts of ali (all it has spare; slow is slower than aws)", got)
	}
	evs, err := db.Events().Query(t.Context(), journal.Filter{Kind: KindHedge})
	if err != nil || len(evs) != 1 || !strings.Contains(evs[0].Message, "also asking ali for 2 hosts") {
		t.Fatalf("hedge journal: %v %+v", err, evs)
	}

	// 5 minutes: 3 minutes of slack, no hedge.
	if got := hedge(5 * time.Minute); len(got) != 0 {
		t.Fatalf("hedged with slack: %+v", got)
	}
}
