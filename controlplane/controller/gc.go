package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/bootstrap"
)

// Journal event kinds of host health and the garbage collector.
const (
	KindHostDown  = "host.down"
	KindHostBack  = "host.back"
	KindReplacing = "capacity.replacing"
	KindGCRefused = "gc.refused"
	KindGCAdopted = "gc.adopted"
)

// Host health, of a rented host: booting (no Nomad node yet), ready, down
// (its node was ready and is not: a link flap, a hung agent), or gone
// (the cloud no longer has it). A down host is kept for DownGrace; nothing
// terminates it before that, and if it comes back it serves again.
type hostHealth struct {
	lastReady time.Time
	downSince time.Time
	status    string
	// waiting is set once the pass said it keeps a host past its grace
	// because Nomad has not rescheduled its work.
	waiting bool
}

// Health is the pass over the rented and borrowed hosts' Nomad nodes,
// every interval (disruption's): it journals a host that goes down
// (host.down, with when it was last ready), one that comes back within
// the grace (host.back), and terminates a rented one down for longer than
// DownGrace, saying since when; a borrowed one down that long may be given
// back by scale-in (borrowedSpareable), not before. It acts only on a
// live model: a node a stale model misses is unknown.
func (c *Controller) Health(ctx context.Context) ([]string, error) {
	if c.cfg.Ledger == nil {
		return nil, nil
	}
	snap := c.cfg.Cluster.Snapshot()
	if !snap.Live() {
		return nil, nil
	}
	usage := snap.NodeUsageShared()
	nodeOf := byInstance(usage)
	byID := make(map[string]pools.NodeUsage, len(usage))
	for _, n := range usage {
		byID[n.ID] = n
	}
	now := c.now()
	loans := c.cfg.Ledger.Loans()
	c.pruneHealth(loans)
	var gone []string
	var errs []error
	for _, l := range loans {
		shared := l.Tier == pools.TierShared
		var n pools.NodeUsage
		var registered, missing bool
		switch {
		case shared && c.cfg.Shared != nil:
			n, registered = byID[l.Host]
		case !shared && c.cfg.Clouds[l.Pool] != nil:
			n, registered = nodeOf[l.Host]
			if registered {
				c.sawNode(ctx, l.Host, n, l.Pool)
			} else if c.wasSeen(l.Host) {
				// Seen once, missing now: unknown, so it is down, with
				// the same grace, not a host that never registered.
				n, registered, missing = pools.NodeUsage{Name: "(no longer listed by nomad)", Status: "missing"}, true, true
			}
		default:
			continue
		}
		if !registered {
			continue // booting: the collector's
		}
		what := "rented host"
		if shared {
			what = "borrowed host"
		}
		// What the pass decides, under the lock the activities read it
		// with (downHosts); the journal and the cloud are called after.
		c.mu.Lock()
		h := c.health[l.Host]
		if h == nil {
			h = &hostHealth{}
			c.health[l.Host] = h
		}
		if r := c.readyOnce[l.Host]; r.After(h.lastReady) {
			h.lastReady = r
		}
		if shared && h.lastReady.IsZero() {
			h.lastReady = l.Since // a borrowed host was a ready node when lent
		}
		if missing && h.lastReady.IsZero() {
			h.lastReady = c.seen[l.Host] // seen, never ready, gone: down from then
		}
		prev := *h
		action, unplaced := "", 0
		switch {
		case n.Ready:
			if !h.downSince.IsZero() {
				action = KindHostBack
			}
			h.lastReady, h.downSince, h.status, h.waiting = now, time.Time{}, n.Status, false
		case h.lastReady.IsZero():
			// Never ready: a host still booting, not a host that went down.
		case h.downSince.IsZero():
			h.downSince, h.status = now, n.Status
			action = KindHostDown
			prev = *h
		case now.Sub(h.downSince) > c.cfg.DownGrace && shared:
			// Past its grace, scale-in may give it back (borrowedSpareable).
		case now.Sub(h.downSince) > c.cfg.DownGrace:
			if unplaced = unrescheduled(snap, n.ID); unplaced > 0 {
				// Nomad has not given up on its work yet (a
				// max_client_disconnect longer than the grace): no
				// replacement was asked for, so the host stays.
				if !h.waiting {
					h.waiting = true
					action = "waiting"
				}
				break
			}
			action = KindTerminate
		}
		c.mu.Unlock()
		data := func(extra map[string]any) json.RawMessage {
			m := map[string]any{"host": l.Host, "node": n.ID, "pool": l.Pool, "borrower": l.Borrower, "status": n.Status}
			if !prev.lastReady.IsZero() {
				m["last_ready"] = prev.lastReady
			}
			if !prev.downSince.IsZero() {
				m["down_since"] = prev.downSince
			}
			for k, v := range extra {
				m[k] = v
			}
			b, _ := json.Marshal(m)
			return b
		}
		switch action {
		case KindHostBack:
			down := now.Sub(prev.downSince)
			c.record(ctx, journal.Event{Time: now, Kind: KindHostBack, Subject: "host/" + l.Host, Actor: "controller",
				Data:    data(map[string]any{"down_seconds": down.Seconds()}),
				Message: fmt.Sprintf("node %s of %s %s is ready again after %s down; it serves again", n.Name, what, l.Host, down.Round(time.Second))})
		case KindHostDown:
			c.record(ctx, journal.Event{Time: now, Kind: KindHostDown, Subject: "host/" + l.Host, Actor: "controller", Data: data(nil),
				Message: fmt.Sprintf("node %s of %s %s is %s (last ready at %s); it is kept for %s (clouds.down_grace) in case it comes back",
					n.Name, what, l.Host, n.Status, prev.lastReady.UTC().Format(time.RFC3339), c.cfg.DownGrace)})
		case "waiting":
			c.record(ctx, journal.Event{Time: now, Kind: KindHostDown, Subject: "host/" + l.Host, Actor: "controller", Data: data(nil),
				Message: fmt.Sprintf("node %s of rented host %s is still %s past clouds.down_grace (%s), but Nomad has not rescheduled its %d allocations yet (max_client_disconnect?): it is kept until Nomad gives them up",
					n.Name, l.Host, n.Status, c.cfg.DownGrace, unplaced)})
		case KindTerminate:
			why := fmt.Sprintf("its node %s has been %s since %s (last ready at %s), past clouds.down_grace (%s)",
				n.Name, n.Status, prev.downSince.UTC().Format(time.RFC3339), prev.lastReady.UTC().Format(time.RFC3339), c.cfg.DownGrace)
			if err := c.terminate(ctx, providers.Host{ID: l.Host, Pool: l.Pool, Claim: l.Claim, LaunchedAt: l.Since}, "", "controller", why); err != nil {
				errs = append(errs, err)
				continue
			}
			c.mu.Lock()
			delete(c.health, l.Host)
			c.mu.Unlock()
			gone = append(gone, l.Host)
		}
	}
	return gone, errors.Join(errs...)
}

// unrescheduled counts the allocations of a down node that Nomad still
// means to run there (client status unknown, running or pending): work it
// has not yet marked lost and placed again.
func unrescheduled(s *cluster.Snapshot, node string) int {
	n := 0
	for _, a := range s.AllocsOnNode(node) {
		if a.DesiredStatus == "run" && !a.Batch() && a.JobType != "system" &&
			(a.ClientStatus == "unknown" || a.ClientStatus == "running" || a.ClientStatus == "pending") {
			n++
		}
	}
	return n
}

// pruneHealth forgets the health of hosts no loan names any more.
func (c *Controller) pruneHealth(loans []pools.Loan) {
	lent := make(map[string]bool, len(loans))
	for _, l := range loans {
		lent[l.Host] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.health {
		if !lent[id] {
			delete(c.health, id)
		}
	}
	for id := range c.readyOnce {
		if !lent[id] {
			delete(c.readyOnce, id)
		}
	}
	for id := range c.seen {
		if !lent[id] {
			delete(c.seen, id)
		}
	}
}

// downHosts returns the rented hosts of a business unit that are down in
// their grace, as nodes shows them: a node that was ready once and is not.
func (c *Controller) downHosts(nodes []pools.NodeUsage, bu string) []string {
	nodeOf := byInstance(nodes)
	var out []string
	for _, l := range c.cfg.Ledger.Loans() {
		n, registered := nodeOf[l.Host]
		if l.Borrower != bu || l.Tier == pools.TierShared || !registered || n.Ready {
			continue
		}
		c.mu.Lock()
		_, wasReady := c.readyOnce[l.Host]
		if h := c.health[l.Host]; h != nil && !h.lastReady.IsZero() {
			wasReady = true
		}
		c.mu.Unlock()
		if wasReady {
			out = append(out, l.Host)
		}
	}
	slices.Sort(out)
	return out
}

// Collect is the garbage collector's pass over the clouds:
//   - an instance tagged as this cluster's that no ledger entry and no
//     journaled claim names (a crash before the intent was durable, a
//     launch from elsewhere) is terminated only when it was seen so in two
//     passes at least OrphanGrace apart, is older than OrphanGrace, and is
//     younger than the journal. An instance older than the journal means
//     a lost journal, or a new one under a cluster name already in use:
//     the collector terminates none of those, journals gc.refused, and
//     says so once in the log, naming the cluster and the instances. An
//     operator adopts (gc.adopted) or terminates them (the API's /v1/gc);
//   - a rented host whose Nomad node was never seen (host.registered),
//     within its ready timeout, and that no activity in flight claimed or
//     follows
//     (activities replace their own stuck hosts), is terminated. An
//     activity in flight holds up only its own hosts: the others go,
//     whatever business unit or pool the activity is busy with.
//
// It acts only on a live cluster model and on listings that succeeded: a
// node missing from a model that is not following Nomad, or a pool that
// could not be listed, is unknown, not gone. It returns what it
// terminated.
func (c *Controller) Collect(ctx context.Context) ([]string, error) {
	if c.cfg.Ledger == nil {
		return nil, nil
	}
	snap := c.cfg.Cluster.Snapshot()
	if !snap.Live() {
		return nil, nil
	}
	claims, err := c.journaledClaims(ctx)
	if err != nil {
		return nil, err
	}
	kept, err := c.kept(ctx)
	if err != nil {
		return nil, err
	}
	born, err := c.journalBorn(ctx)
	if err != nil {
		return nil, err
	}
	nodeOf := snap.UsageBy(bootstrap.MetaInstance)
	now := c.now()
	var done []string
	var errs []error
	var refused []providers.Host
	seen := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(c.cfg.Clouds)) {
		hosts, err := c.cfg.Clouds[name].List(ctx, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing the hosts of %s: %w", name, err))
			continue
		}
		for _, h := range hosts {
			loan, lent := c.cfg.Ledger.Loan(h.ID)
			switch {
			case !lent:
				if _, known := claims[h.Claim]; known || kept[h.ID] {
					continue // the reconciler adopts it, or an operator keeps it
				}
				seen[h.ID] = true
				if born.IsZero() || !h.LaunchedAt.After(born) {
					refused = append(refused, h)
					continue
				}
				c.mu.Lock()
				first, ok := c.orphans[h.ID]
				if !ok {
					c.orphans[h.ID] = now
				}
				c.mu.Unlock()
				age := now.Sub(h.LaunchedAt)
				if !ok || now.Sub(first) < c.cfg.OrphanGrace || h.LaunchedAt.IsZero() || age <= c.cfg.OrphanGrace {
					continue
				}
				why := fmt.Sprintf("tagged as cluster %s's for %s, but no journaled claim names it (claim %q), in passes %s apart", c.cfg.ClusterName,
					age.Round(time.Second), h.Claim, now.Sub(first).Round(time.Second))
				if err := c.terminate(ctx, h, "", "collector", why); err != nil {
					errs = append(errs, err)
					continue
				}
				c.fixes.WithLabelValues("repaired").Inc()
				done = append(done, h.ID)
			case loan.Tier != pools.TierShared:
				if n, registered := nodeOf[h.ID]; registered {
					c.sawNode(ctx, h.ID, n, name)
					continue
				}
				if c.wasSeen(h.ID) {
					continue // seen once, missing now: the down-host rule (Health)
				}
				cp, ok := c.cfg.Pools.CloudPool(name)
				if !ok || now.Sub(loan.Since) <= readyTimeout(c.ready.estimate(cp)) {
					continue
				}
				if f := c.holds().byHost[h.ID]; f != nil {
					c.cfg.Logger.Debug("a rented host that never became a nomad node is left to the activity that follows it", "host", h.ID, "pool", name, "activity", f.activity)
					continue
				}
				host := providers.Host{ID: h.ID, Pool: name, Claim: loan.Claim, LaunchedAt: h.LaunchedAt}
				if err := c.terminate(ctx, host, "", "collector", fmt.Sprintf("it never became a nomad node in %s", now.Sub(loan.Since).Round(time.Second))); err != nil {
					errs = append(errs, err)
					continue
				}
				done = append(done, h.ID)
			}
		}
	}
	c.mu.Lock()
	for id := range c.orphans {
		if !seen[id] {
			delete(c.orphans, id)
		}
	}
	c.mu.Unlock()
	c.refuse(ctx, refused, born)
	return done, errors.Join(errs...)
}

// Refused is what the collector refused to terminate: tagged instances
// no claim names that are older than the journal.
type Refused struct {
	Cluster   string           `json:"cluster"`
	Journal   time.Time        `json:"journal_since"`
	Instances []providers.Host `json:"instances"`
}

// Refused returns the instances the last pass refused to collect.
func (c *Controller) Refused() Refused {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refused
}

// refuse records the instances the collector would not touch: journaled
// (gc.refused) and logged once per distinct set, and counted.
func (c *Controller) refuse(ctx context.Context, hosts []providers.Host, born time.Time) {
	slices.SortFunc(hosts, func(a, b providers.Host) int { return strings.Compare(a.ID, b.ID) })
	ids := make([]string, len(hosts))
	for i, h := range hosts {
		ids[i] = h.ID
	}
	key := strings.Join(ids, ",")
	c.mu.Lock()
	same := c.refusedKey == key
	c.refusedKey = key
	c.refused = Refused{Cluster: c.cfg.ClusterName, Journal: born, Instances: hosts}
	c.mu.Unlock()
	c.refusedGauge.Set(float64(len(hosts)))
	if same || len(hosts) == 0 {
		return
	}
	since := "it is empty"
	if !born.IsZero() {
		since = "it begins at " + born.UTC().Format(time.RFC3339)
	}
	msg := fmt.Sprintf("not terminating %d instances tagged spillway:cluster=%s that no journaled claim names: they are older than the journal (%s), "+
		"so the journal was lost or is new under a cluster name already in use: %s. Keep or terminate them through /v1/gc (docs/operations.md)",
		len(hosts), c.cfg.ClusterName, since, strings.Join(ids, ", "))
	c.cfg.Logger.Error(msg, "cluster", c.cfg.ClusterName, "instances", ids)
	data, _ := json.Marshal(map[string]any{"cluster": c.cfg.ClusterName, "instances": ids, "journal_since": born})
	c.record(ctx, journal.Event{Time: c.now(), Kind: KindGCRefused, Subject: "cluster/" + c.cfg.ClusterName, Actor: "collector", Data: data, Message: msg})
}

// journalBorn is the time of the journal's first event, zero while it is
// empty. It never changes once known.
func (c *Controller) journalBorn(ctx context.Context) (time.Time, error) {
	c.mu.Lock()
	born := c.born
	c.mu.Unlock()
	if !born.IsZero() {
		return born, nil
	}
	evs, err := c.cfg.Journal.Query(ctx, journal.Filter{Limit: 1})
	if err != nil {
		return time.Time{}, fmt.Errorf("reading the journal's first event: %w", err)
	}
	if len(evs) == 0 {
		return time.Time{}, nil
	}
	c.mu.Lock()
	c.born = evs[0].Time
	c.mu.Unlock()
	return evs[0].Time, nil
}

// kept reads the instances an operator adopted.
func (c *Controller) kept(ctx context.Context) (map[string]bool, error) {
	out := map[string]bool{}
	err := journal.Each(ctx, c.cfg.Journal, journal.Filter{Kind: KindGCAdopted}, func(ev journal.Event) error {
		var d struct{ Instance string }
		if json.Unmarshal(ev.Data, &d) == nil && d.Instance != "" {
			out[d.Instance] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the instances kept from collection: %w", err)
	}
	return out, nil
}

// ErrNotRefused is returned by AdoptOrphan and TerminateOrphan for an
// instance the collector has not refused.
var ErrNotRefused = errors.New("not an instance the collector refused to collect")

func (c *Controller) refusedHost(id string) (providers.Host, bool) {
	for _, h := range c.Refused().Instances {
		if h.ID == id {
			return h, true
		}
	}
	return providers.Host{}, false
}

// AdoptOrphan takes a refused instance back, at an operator's word,
// journaled as gc.adopted. When its Nomad node serves a business unit (its
// spillway.serves meta), the instance is recorded in the ledger as that
// unit's rented host: Spillway follows it, and scales it in and terminates
// it like its own. Otherwise the collector only leaves it alone for good.
// It reports whether the instance went into the ledger, and for whom.
func (c *Controller) AdoptOrphan(ctx context.Context, id, actor, reason string) (string, error) {
	h, ok := c.refusedHost(id)
	if !ok {
		return "", fmt.Errorf("%w: %s", ErrNotRefused, id)
	}
	snap := c.cfg.Cluster.Snapshot()
	if !snap.Live() {
		// Whether its node serves anyone is unknown: decide nothing.
		return "", ErrModelNotLive
	}
	bu := ""
	if n, ok := nodeOfInstance(snap, h.ID); ok {
		if _, known := c.cfg.Pools.BusinessUnit(n.Meta[pools.MetaServes]); known && c.cfg.Clouds[h.Pool] != nil {
			bu = n.Meta[pools.MetaServes]
		}
	}
	data, _ := json.Marshal(map[string]any{"instance": h.ID, "pool": h.Pool, "claim": h.Claim, "reason": reason, "business_unit": bu})
	msg := fmt.Sprintf("%s adopts %s of %s, serving %s: it is in the ledger again: %s", actor, h.ID, h.Pool, bu, reason)
	if bu == "" {
		msg = fmt.Sprintf("%s adopts %s of %s, which serves no business unit Spillway knows: the collector leaves it alone for good: %s", actor, h.ID, h.Pool, reason)
	}
	if _, err := c.cfg.Journal.Append(ctx, journal.Event{Time: c.now(), Kind: KindGCAdopted, Subject: "host/" + h.ID, Actor: actor, Data: data, Message: msg}); err != nil {
		return "", err
	}
	if bu != "" {
		if err := c.recordRental(ctx, h, pools.TierCold, bu, h.Claim, "adopted by "+actor+": "+reason); err != nil {
			return "", err
		}
	}
	c.forgetRefused(h.ID)
	return bu, nil
}

// forgetRefused drops an instance an operator decided about from the
// refused set, so no second decision acts on it.
func (c *Controller) forgetRefused(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refused.Instances = slices.DeleteFunc(slices.Clone(c.refused.Instances), func(h providers.Host) bool { return h.ID == id })
	c.refusedKey = ""
	c.refusedGauge.Set(float64(len(c.refused.Instances)))
}

// ErrModelNotLive is returned for a decision that needs the cluster
// model while it is not following Nomad.
var ErrModelNotLive = errors.New("the cluster model is not following nomad; try again once it is")

// TerminateOrphan terminates a refused instance now, at an operator's word.
func (c *Controller) TerminateOrphan(ctx context.Context, id, actor, reason string) error {
	h, ok := c.refusedHost(id)
	if _, lent := c.cfg.Ledger.Loan(id); !ok || lent {
		return fmt.Errorf("%w: %s", ErrNotRefused, id)
	}
	c.forgetRefused(h.ID)
	return c.terminate(ctx, h, "", actor, fmt.Sprintf("terminated by %s, which the collector had refused: %s", actor, reason))
}
