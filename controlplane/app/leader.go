package app

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/controlplane/leader"
)

// KindLeaderElected is journaled by each new leader as its term's first
// write: who leads, in which term, and how the lease passed over.
const KindLeaderElected = "leader.elected"

// electedData is a leader.elected event's data.
type electedData struct {
	Identity string        `json:"identity"`
	Term     int64         `json:"term"`
	Previous *previousTerm `json:"previous,omitempty"`
}

type previousTerm struct {
	Holder   string `json:"holder"`
	Term     int64  `json:"term"`
	Released bool   `json:"released"`
	// SinceRenewedSeconds is the leaderless gap at most: from the previous
	// leader's last renewal to this term, on the database's clock.
	SinceRenewedSeconds float64 `json:"since_renewed_seconds"`
	// SinceEndedSeconds is how long the lease lay free.
	SinceEndedSeconds float64 `json:"since_ended_seconds"`
}

// journalElected records how this replica took over.
func (a *App) journalElected(ctx context.Context, term leader.Term) error {
	d := electedData{Identity: a.elector.Identity(), Term: term.Token}
	msg := fmt.Sprintf("%s leads in term %d", d.Identity, d.Term)
	if p := term.Previous; p != nil {
		d.Previous = &previousTerm{Holder: p.Holder, Term: p.Term, Released: p.Released,
			SinceRenewedSeconds: p.SinceRenewed.Seconds(), SinceEndedSeconds: p.SinceEnded.Seconds()}
		if p.Released {
			msg += fmt.Sprintf("; %s released term %d %s before", p.Holder, p.Term, p.SinceEnded.Round(time.Millisecond))
		} else {
			msg += fmt.Sprintf("; the lease of %s (term %d) ran out unrenewed %s before, %s after its last renewal",
				p.Holder, p.Term, p.SinceEnded.Round(time.Millisecond), p.SinceRenewed.Round(time.Millisecond))
		}
	}
	data, err := json.Marshal(d)
	if err != nil {
		return err
	}
	_, err = a.journal.Events().Append(ctx, journal.Event{Kind: KindLeaderElected, Subject: "leader", Actor: d.Identity, Message: msg, Data: data})
	return err
}
