package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers/bootstrap"
)

// Journal event kinds of operator actions on pools and hosts.
const (
	KindPoolPaused  = "pool.paused"
	KindPoolResumed = "pool.resumed"
)

// Errors of the operator actions.
var (
	ErrUnknownPool = errors.New("no such pool")
	ErrNotBorrowed = errors.New("not a host Spillway borrowed or rented")
	ErrNoPools     = errors.New("no shared pool is configured")
)

// PoolPause is why a pool is paused.
type PoolPause struct {
	By     string    `json:"by"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
}

func (c *Controller) knownPool(name string) bool {
	if c.cfg.Pools == nil {
		return false
	}
	if c.cfg.Pools.Shared != nil && c.cfg.Pools.Shared.Name == name {
		return true
	}
	_, ok := c.cfg.Pools.CloudPool(name)
	return ok
}

// PausePool stops the controller from taking hosts from pool; hosts it has
// are kept, and returning them goes on. The pause is journaled and
// survives a restart (RestorePauses). It reports whether anything changed.
func (c *Controller) PausePool(ctx context.Context, pool, actor, reason string) (bool, error) {
	return c.setPaused(ctx, pool, actor, reason, true)
}

// ResumePool lets the controller take hosts from pool again.
func (c *Controller) ResumePool(ctx context.Context, pool, actor, reason string) (bool, error) {
	return c.setPaused(ctx, pool, actor, reason, false)
}

func (c *Controller) setPaused(ctx context.Context, pool, actor, reason string, pause bool) (bool, error) {
	if !c.knownPool(pool) {
		return false, fmt.Errorf("%w %q", ErrUnknownPool, pool)
	}
	c.mu.Lock()
	_, paused := c.paused[pool]
	c.mu.Unlock()
	if paused == pause {
		return false, nil
	}
	kind, verb := KindPoolResumed, "resumed"
	if pause {
		kind, verb = KindPoolPaused, "paused"
	}
	now := c.now()
	data, _ := json.Marshal(map[string]any{"pool": pool, "reason": reason})
	if _, err := c.cfg.Journal.Append(ctx, journal.Event{Time: now, Kind: kind, Subject: "pool/" + pool, Actor: actor, Data: data,
		Message: fmt.Sprintf("pool %s %s by %s: %s", pool, verb, actor, reason)}); err != nil {
		return false, fmt.Errorf("journaling the %s of pool %s: %w", verb, pool, err)
	}
	c.mu.Lock()
	if pause {
		c.paused[pool] = PoolPause{By: actor, Reason: reason, Since: now}
	} else {
		delete(c.paused, pool)
	}
	c.mu.Unlock()
	return true, nil
}

// PausedPools returns the paused pools.
func (c *Controller) PausedPools() map[string]PoolPause {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]PoolPause, len(c.paused))
	for k, v := range c.paused {
		out[k] = v
	}
	return out
}

// RestorePauses replays pool pauses and resumes from the journal.
func (c *Controller) RestorePauses(ctx context.Context, q journal.Querier) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := journal.Each(ctx, q, journal.Filter{Kind: "pool"}, func(ev journal.Event) error {
		var d struct{ Pool, Reason string }
		if json.Unmarshal(ev.Data, &d) != nil || d.Pool == "" {
			return nil
		}
		switch ev.Kind {
		case KindPoolPaused:
			c.paused[d.Pool] = PoolPause{By: ev.Actor, Reason: d.Reason, Since: ev.Time}
		case KindPoolResumed:
			delete(c.paused, d.Pool)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restoring pool pauses: %w", err)
	}
	return nil
}

// Release gives a host back now, at an operator's request: a borrowed
// host is drained and returned to its lender, a rented one drained and
// terminated. host is the node ID or a unique prefix of it, the node name,
// or a rented host's instance ID.
func (c *Controller) Release(ctx context.Context, host, actor, reason string) (pools.Loan, error) {
	if c.cfg.Ledger == nil {
		return pools.Loan{}, ErrNoPools
	}
	snap := c.cfg.Cluster.Snapshot()
	if !snap.Live() {
		return pools.Loan{}, fmt.Errorf("the cluster model is not following nomad (%s): try again", snap.Sync().Err)
	}
	nodeOf := snap.UsageBy(bootstrap.MetaInstance)
	type match struct {
		loan pools.Loan
		node string
	}
	var found []match
	for _, l := range c.cfg.Ledger.Loans() {
		node, name := l.Host, l.HostName
		if l.Tier != pools.TierShared {
			if c.cfg.Clouds[l.Pool] == nil {
				continue
			}
			n := nodeOf[l.Host]
			node, name = n.ID, n.Name
		} else if c.cfg.Shared == nil {
			continue
		}
		if l.Host == host || l.HostName == host || (name != "" && name == host) || (node != "" && strings.HasPrefix(node, host)) {
			found = append(found, match{l, node})
		}
	}
	switch len(found) {
	case 0:
		return pools.Loan{}, fmt.Errorf("%w: %q", ErrNotBorrowed, host)
	case 1:
	default:
		return pools.Loan{}, fmt.Errorf("%q matches %d hosts; give more of the node ID", host, len(found))
	}
	m := found[0]
	allocs := 0
	if m.node != "" {
		allocs = len(snap.AllocsOnNode(m.node))
	}
	return m.loan, c.giveBack(ctx, m.loan, m.node, allocs, actor, fmt.Sprintf("released by %s: %s", actor, reason))
}
