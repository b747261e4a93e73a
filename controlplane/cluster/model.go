package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	nomad "github.com/hashicorp/nomad/api"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/spillwayhq/spillway/controlplane/demand"
)

// Topics are the event stream topics the model follows.
var Topics = map[nomad.Topic][]string{
	nomad.TopicNode:       {"*"},
	nomad.TopicAllocation: {"*"},
	nomad.TopicJob:        {"*"},
	nomad.TopicEvaluation: {"*"},
	nomad.TopicDeployment: {"*"},
}

// Options configures a Model.
type Options struct {
	// Client reads Nomad. Its token needs node:read and read-job in every
	// namespace. It is read through NomadFeed unless Feed is set.
	Client *nomad.Client
	// Feed, when set, is read instead of Client (a simulated Nomad).
	Feed   Feed
	Logger *slog.Logger
	// Registerer receives spillway_cluster_*; nil registers nothing.
	Registerer prometheus.Registerer
	Clock      clockwork.Clock
	// Parallel bounds the node and job reads of a full list. Default 8.
	Parallel int
	// PageSize is how many objects one request of a list asks for.
	// Default 500.
	PageSize int
	// MaxBackoff bounds the wait between failed lists. Default 30s.
	MaxBackoff time.Duration
	// Healthy is how long the model must have been live for the next
	// break to be retried after the first wait again, not after the
	// doubled wait of the breaks before it. Default 1m.
	Healthy time.Duration
	// StaleAfter is how long Nomad may leave the model's probes (its
	// leader, asked every StaleAfter/3 while the model follows the
	// stream) unanswered, or answer them with errors or no leader,
	// before the model stops being live and lists again: Nomad's client
	// swallows the stream's heartbeats, so a hung server that keeps the
	// connection open is otherwise indistinguishable from a quiet
	// cluster. Default 30s. Only a Feed that is a Prober is probed.
	StaleAfter time.Duration
}

// Prober is a Feed that can be asked whether Nomad answers: Leader is
// the address of Nomad's leader (Status().Leader, bounded by ctx); an
// error or "" means it does not answer.
type Prober interface {
	Leader(ctx context.Context) (string, error)
}

// Model is the live model of one Nomad cluster. Run keeps it current;
// Snapshot reads it. It is safe for concurrent use.
type Model struct {
	opts Options
	log  *slog.Logger

	mu   sync.Mutex
	snap *Snapshot

	objects *prometheus.GaugeVec
	events  *prometheus.CounterVec
	lists   *prometheus.CounterVec
	relists *prometheus.CounterVec
	live    prometheus.Gauge
}

// New returns a model; it is empty and not live until Run has listed.
func New(o Options) *Model {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Feed == nil {
		o.Feed = NomadFeed{Client: o.Client}
	}
	if o.Parallel <= 0 {
		o.Parallel = 8
	}
	if o.PageSize <= 0 {
		o.PageSize = 500
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.Healthy <= 0 {
		o.Healthy = time.Minute
	}
	if o.StaleAfter <= 0 {
		o.StaleAfter = 30 * time.Second
	}
	m := &Model{
		opts: o, log: o.Logger, snap: emptySnapshot(),
		objects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spillway_cluster_objects",
			Help: "Objects in the model of the Nomad cluster, by kind (node, allocation, job).",
		}, []string{"kind"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_cluster_events_total",
			Help: "Nomad events applied to the cluster model, by topic.",
		}, []string{"topic"}),
		lists: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_cluster_lists_total",
			Help: "Full lists of the Nomad cluster, by outcome (ok, failed).",
		}, []string{"result"}),
		relists: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_cluster_relists_total",
			Help: "Times the cluster model stopped following Nomad and listed again, by why (stream_broke, index_backwards, undecodable_event, list_failed, silent).",
		}, []string{"reason"}),
		live: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_cluster_live",
			Help: "Whether the cluster model is listed and following Nomad's event stream (1), or unknown (0).",
		}),
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(m.objects, m.events, m.lists, m.relists, m.live)
	}
	return m
}

// Snapshot returns the current version of the model.
func (m *Model) Snapshot() *Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.snap
}

// WaitLive returns the first live snapshot, or ctx's error.
func (m *Model) WaitLive(ctx context.Context) (*Snapshot, error) {
	for {
		s := m.Snapshot()
		if s.Live() {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-s.Changed():
		}
	}
}

// publish makes next the current snapshot and wakes the readers of the
// previous one.
func (m *Model) publish(next *Snapshot) {
	m.mu.Lock()
	prev := m.snap
	next.changed = make(chan struct{})
	m.snap = next
	m.mu.Unlock()
	close(prev.changed)
	m.objects.WithLabelValues("node").Set(float64(next.nodes.Len()))
	m.objects.WithLabelValues("allocation").Set(float64(next.allocs.Len()))
	m.objects.WithLabelValues("job").Set(float64(next.jobs.Len()))
	if next.sync.Live {
		m.live.Set(1)
	} else {
		m.live.Set(0)
	}
}

// Why a follow ends, besides the stream breaking: the model lists again.
var (
	// errIndexBackwards: the events went back in time (a restored
	// snapshot, a server behind).
	errIndexBackwards = errors.New("the event stream's index went backwards")
	// errUndecodable: an event's payload could not be read, so the model
	// would miss a change; a list repairs it.
	errUndecodable = errors.New("an event could not be decoded")
	// errList: the list failed.
	errList = errors.New("listing nomad failed")
	// errSilent: Nomad answered no probe for StaleAfter while its event
	// stream stayed open (a hung server keeps the connection, and a quiet
	// stream looks the same as a quiet cluster).
	errSilent = errors.New("nomad answers no probe")
)

// relistReason is the reason label of spillway_cluster_relists_total.
func relistReason(err error) string {
	switch {
	case errors.Is(err, errIndexBackwards):
		return "index_backwards"
	case errors.Is(err, errUndecodable):
		return "undecodable_event"
	case errors.Is(err, errList):
		return "list_failed"
	case errors.Is(err, errSilent):
		return "silent"
	}
	return "stream_broke"
}

// firstBackoff is the wait before the first list after a break.
const firstBackoff = time.Second

// Run lists the cluster, follows its event stream, and lists again when
// the stream breaks, until ctx ends. While it cannot, the snapshots say
// the model is not live (and keep what was last known). Failed lists are
// retried after a wait that doubles up to MaxBackoff; a model that had
// been live for Healthy (or whose index went backwards: Nomad is there)
// starts again from the first wait.
func (m *Model) Run(ctx context.Context) {
	backoff := firstBackoff
	for {
		err := m.follow(ctx)
		if ctx.Err() != nil {
			return
		}
		now := m.opts.Clock.Now()
		s := m.Snapshot()
		if (s.sync.Live && now.Sub(s.sync.Since) >= m.opts.Healthy) || errors.Is(err, errIndexBackwards) {
			backoff = firstBackoff
		}
		m.relists.WithLabelValues(relistReason(err)).Inc()
		if s.sync.Live || s.sync.Err != err.Error() {
			m.log.Warn("the cluster model lost Nomad; listing again", "reason", relistReason(err), "err", err, "retry_in", backoff)
		}
		next := *s
		next.sync = Sync{Live: false, Since: now, Err: err.Error(), LastLive: s.sync.LastLive}
		switch {
		case s.sync.Live:
			next.sync.LastLive = now
		case !s.sync.Since.IsZero():
			next.sync.Since = s.sync.Since // it stopped being live then
		}
		if s.sync.Live || s.sync.Err != next.sync.Err {
			m.publish(&next)
		}
		select {
		case <-ctx.Done():
			return
		case <-m.opts.Clock.After(backoff):
		}
		backoff = min(2*backoff, m.opts.MaxBackoff)
	}
}

// follow opens the event stream, lists, and applies events until the
// stream breaks. The stream is opened first and its events are held while
// the list runs, so nothing between the two is missed. The stream starts
// with what Nomad's event buffer still holds, older than the list: an
// event of a topic at or below that topic's list index is already in the
// list and is skipped (so a replayed event cannot bring back an object the
// list no longer has), and modify indexes keep any other repeat harmless.
func (m *Model) follow(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	q := (&nomad.QueryOptions{Namespace: "*"}).WithContext(ctx)
	stream, err := m.opts.Feed.Stream(ctx, Topics, 0, q)
	if err != nil {
		m.lists.WithLabelValues("failed").Inc()
		return fmt.Errorf("%w: opening nomad's event stream: %w", errList, err)
	}
	type listed struct {
		snap    *Snapshot
		covered map[nomad.Topic]uint64
		err     error
	}
	done := make(chan listed, 1)
	go func() {
		s, covered, err := m.list(ctx)
		done <- listed{s, covered, err}
	}()
	var held []*nomad.Events
	var snap *Snapshot
	var f feed
	for snap == nil {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case evs, ok := <-stream:
			if err := streamErr(evs, ok); err != nil {
				return err
			}
			held = append(held, evs)
		case l := <-done:
			if l.err != nil {
				m.lists.WithLabelValues("failed").Inc()
				return fmt.Errorf("%w: %w", errList, l.err)
			}
			snap, f.covered = l.snap, l.covered
		}
	}
	m.lists.WithLabelValues("ok").Inc()
	b := newBuilder(snap)
	for _, evs := range held {
		if err := m.apply(b, &f, evs); err != nil {
			return err
		}
	}
	next := b.commit()
	next.sync = Sync{Live: true, Since: m.opts.Clock.Now()}
	// The probe is armed before the model says it is live: whoever sees
	// it live (a test stepping a fake clock) knows its ticker is set.
	p := m.newProbe(ctx)
	defer p.stop()
	m.publish(next)
	m.log.Info("the cluster model is live", "nodes", next.nodes.Len(), "allocations", next.allocs.Len(), "jobs", next.jobs.Len(), "index", next.index)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case evs, ok := <-stream:
			if err := streamErr(evs, ok); err != nil {
				return err
			}
			b := newBuilder(m.Snapshot())
			if err := m.apply(b, &f, evs); err != nil {
				return err
			}
			m.publish(b.commit())
		case <-p.tick:
			if err := p.due(); err != nil {
				return err
			}
		case err := <-p.answers:
			if err := p.answered(err); err != nil {
				return err
			}
		}
	}
}

// probe asks Nomad, while the model follows its stream, whether it still
// answers (Options.StaleAfter): one question at a time, every
// StaleAfter/3. The follow ends (errSilent) when a question has waited
// StaleAfter, or when questions have failed for StaleAfter.
type probe struct {
	m       *Model
	ctx     context.Context
	prober  Prober
	ticker  clockwork.Ticker
	tick    <-chan time.Time // nil when Nomad cannot be probed
	answers chan error
	// asked is when the question in flight was asked (zero: none);
	// failing, when the failures in a row began (zero: none).
	asked, failing time.Time
}

// newProbe starts probing, if the feed is a Prober.
func (m *Model) newProbe(ctx context.Context) *probe {
	p := &probe{m: m, ctx: ctx, answers: make(chan error, 1)}
	if pr, ok := m.opts.Feed.(Prober); ok {
		p.prober = pr
		p.ticker = m.opts.Clock.NewTicker(m.opts.StaleAfter / 3)
		p.tick = p.ticker.Chan()
	}
	return p
}

func (p *probe) stop() {
	if p.ticker != nil {
		p.ticker.Stop()
	}
}

// due asks again, unless the last question still waits: then it says
// whether it waited too long.
func (p *probe) due() error {
	now := p.m.opts.Clock.Now()
	if !p.asked.IsZero() {
		if waited := now.Sub(p.asked); waited >= p.m.opts.StaleAfter {
			return fmt.Errorf("%w: its leader was asked %s ago and has not answered", errSilent, waited.Round(time.Second))
		}
		return nil
	}
	p.asked = now
	go func() {
		// Bounded by the follow (it ends when the follow does), not by a
		// deadline of its own: the clock that judges a wait is the model's.
		leader, err := p.prober.Leader(p.ctx)
		if err == nil && leader == "" {
			err = errors.New("no leader")
		}
		p.answers <- err
	}()
	return nil
}

// answered takes an answer; failures in a row for StaleAfter end the
// follow.
func (p *probe) answered(err error) error {
	asked := p.asked
	p.asked = time.Time{}
	if err == nil {
		p.failing = time.Time{}
		return nil
	}
	if p.failing.IsZero() {
		p.failing = asked
	}
	p.m.log.Debug("nomad did not answer the model's probe", "err", err)
	if failed := p.m.opts.Clock.Now().Sub(p.failing); failed >= p.m.opts.StaleAfter {
		return fmt.Errorf("%w: asking its leader failed for %s: %w", errSilent, failed.Round(time.Second), err)
	}
	return nil
}

// streamErr is why a receive from the event stream ends the follow: the
// stream closed, or broke.
func streamErr(evs *nomad.Events, ok bool) error {
	if !ok {
		return errors.New("nomad's event stream closed")
	}
	if evs.Err != nil {
		return fmt.Errorf("reading nomad's event stream: %w", evs.Err)
	}
	return nil
}

// feed is what one connection to the event stream has delivered.
type feed struct {
	// covered is each topic's list index: its events up to it are in the
	// list the model started from.
	covered map[nomad.Topic]uint64
	// last is the index of the last batch; a stream's indexes only grow.
	last uint64
}

// apply applies one batch of events.
func (m *Model) apply(b *builder, f *feed, evs *nomad.Events) error {
	if evs.Index < f.last {
		return fmt.Errorf("%w: %d after %d", errIndexBackwards, evs.Index, f.last)
	}
	f.last = evs.Index
	for i := range evs.Events {
		ev := &evs.Events[i]
		idx := ev.Index
		if idx == 0 {
			idx = evs.Index
		}
		if idx <= f.covered[ev.Topic] {
			continue
		}
		m.events.WithLabelValues(string(ev.Topic)).Inc()
		var err error
		switch ev.Topic {
		case nomad.TopicNode:
			var n *nomad.Node
			if n, err = decode[nomad.Node](ev, "Node"); err == nil && n != nil {
				if ev.Type == "NodeDeregistration" {
					b.deleteNode(n.ID, n.ModifyIndex)
				} else {
					b.upsertNode(fromNomadNode(n))
				}
			}
		case nomad.TopicAllocation:
			var a *nomad.Allocation
			if a, err = decode[nomad.Allocation](ev, "Allocation"); err == nil && a != nil {
				b.upsertAlloc(fromNomadAlloc(a))
			}
		case nomad.TopicJob:
			var j *nomad.Job
			if j, err = decode[nomad.Job](ev, "Job"); err == nil && j != nil {
				if ev.Type == "JobDeregistered" {
					b.deleteJob(deref(j.Namespace), deref(j.ID), deref(j.ModifyIndex))
				} else {
					b.upsertJob(fromNomadJob(j))
				}
			}
		case nomad.TopicEvaluation:
			var e *nomad.Evaluation
			if e, err = decode[nomad.Evaluation](ev, "Evaluation"); err == nil && e != nil {
				b.applyEval(e)
			}
		case nomad.TopicDeployment:
			var d *nomad.Deployment
			if d, err = decode[nomad.Deployment](ev, "Deployment"); err == nil && d != nil {
				b.upsertDeployment(fromNomadDeployment(d))
			}
		}
		if err != nil {
			// The model would miss a change it cannot read: it lists
			// again, which repairs it (the list covers this event, so
			// the replay that follows skips it).
			return fmt.Errorf("%w: %s %s of %q at index %d: %w", errUndecodable, ev.Topic, ev.Type, ev.Key, idx, err)
		}
	}
	if evs.Index > b.index {
		b.index = evs.Index
	}
	return nil
}

// list reads the whole cluster: nodes, non-terminal allocations, jobs,
// their queued allocations and the deployments. It returns, by event
// topic, the index each list was read at.
//
// Each kind is one paged list request (PageSize objects a page). Nomad 1.6
// lists neither a node's meta nor a job's task groups, so a node or a job
// the model does not already have at the listed modify index is read once
// (Parallel reads at a time): the first list reads each, a list after a
// break only what changed meanwhile. A job with queued allocations has its
// evaluations read, for why they are queued.
func (m *Model) list(ctx context.Context) (*Snapshot, map[nomad.Topic]uint64, error) {
	c := m.opts.Feed
	prev := m.Snapshot()
	b := newBuilder(emptySnapshot())
	covered := map[nomad.Topic]uint64{}
	// A topic's events are in the list up to the index of its earliest
	// page; later ones are replayed, and modify indexes make that harmless.
	read := func(topic nomad.Topic, what string, q *nomad.QueryOptions, page func(*nomad.QueryOptions) (*nomad.QueryMeta, error)) error {
		low, high, err := m.paged(ctx, q, page)
		if err != nil {
			return fmt.Errorf("listing nomad's %s: %w", what, err)
		}
		b.seen(high)
		covered[topic] = low
		return nil
	}

	var stubs []*nomad.NodeListStub
	if err := read(nomad.TopicNode, "nodes", &nomad.QueryOptions{}, func(q *nomad.QueryOptions) (*nomad.QueryMeta, error) {
		page, meta, err := c.Nodes(q)
		stubs = append(stubs, page...)
		return meta, err
	}); err != nil {
		return nil, nil, err
	}
	nodes := make([]*Node, len(stubs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(m.opts.Parallel)
	for i, s := range stubs {
		if n, ok := prev.Node(s.ID); ok && n.ModifyIndex == s.ModifyIndex {
			nodes[i] = n
			continue
		}
		g.Go(func() error {
			n, _, err := c.Node(s.ID, (&nomad.QueryOptions{}).WithContext(gctx))
			if IsNotFound(err) {
				return nil // gone since the list: not an error
			}
			if err != nil {
				return fmt.Errorf("reading node %s: %w", s.Name, err)
			}
			nodes[i] = fromNomadNode(n)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	for _, n := range nodes {
		if n != nil {
			b.upsertNode(n)
		}
	}

	q := &nomad.QueryOptions{Namespace: "*", Params: map[string]string{"resources": "true"},
		Filter: `ClientStatus == "running" or ClientStatus == "pending"`}
	var allocs []*nomad.AllocationListStub
	if err := read(nomad.TopicAllocation, "allocations", q, func(q *nomad.QueryOptions) (*nomad.QueryMeta, error) {
		page, meta, err := c.Allocations(q)
		allocs = append(allocs, page...)
		return meta, err
	}); err != nil {
		return nil, nil, err
	}

	var jobStubs []*nomad.JobListStub
	if err := read(nomad.TopicJob, "jobs", &nomad.QueryOptions{Namespace: "*"}, func(q *nomad.QueryOptions) (*nomad.QueryMeta, error) {
		page, meta, err := c.Jobs(q)
		jobStubs = append(jobStubs, page...)
		return meta, err
	}); err != nil {
		return nil, nil, err
	}
	// The queues come from the job summaries of this list.
	covered[nomad.TopicEvaluation] = covered[nomad.TopicJob]
	jobs := make([]*Job, len(jobStubs))
	queues := make([]*Queue, len(jobStubs))
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(m.opts.Parallel)
	for i, s := range jobStubs {
		queued := map[string]int{}
		if s.JobSummary != nil {
			for tg, sum := range s.JobSummary.Summary {
				if sum.Queued > 0 {
					queued[tg] = sum.Queued
				}
			}
		}
		if j, ok := prev.Job(s.Namespace, s.ID); ok && j.ModifyIndex == s.ModifyIndex {
			jobs[i] = j
		}
		if jobs[i] != nil && len(queued) == 0 {
			continue
		}
		g.Go(func() error {
			jq := (&nomad.QueryOptions{Namespace: s.Namespace}).WithContext(gctx)
			if jobs[i] == nil {
				j, _, err := c.Job(s.ID, jq)
				if IsNotFound(err) {
					return nil
				}
				if err != nil {
					return fmt.Errorf("reading job %s/%s: %w", s.Namespace, s.ID, err)
				}
				jobs[i] = fromNomadJob(j)
			}
			if len(queued) == 0 {
				return nil
			}
			// Why they are queued: the failed placements of the newest
			// evaluation that queued them.
			evals, _, err := c.JobEvaluations(s.ID, jq)
			if err != nil && !IsNotFound(err) {
				return fmt.Errorf("reading the evaluations of job %s/%s: %w", s.Namespace, s.ID, err)
			}
			q := &Queue{Queued: queued, Failed: map[string]*demand.Blocked{}}
			for tg := range queued {
				if bl := demand.BlockedFor(evals, tg); bl != nil {
					q.Failed[tg] = bl
				}
			}
			queues[i] = q
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	for i, j := range jobs {
		if j == nil {
			continue
		}
		b.upsertJob(j)
		if queues[i] != nil {
			b.queues.Insert(key(j.Namespace, j.ID), queues[i])
		}
	}
	// After the jobs: an allocation's job type comes from its job when
	// the list does not say.
	for _, a := range allocs {
		b.upsertAlloc(fromNomadAllocStub(a))
	}

	var deps []*nomad.Deployment
	if err := read(nomad.TopicDeployment, "deployments", &nomad.QueryOptions{Namespace: "*"}, func(q *nomad.QueryOptions) (*nomad.QueryMeta, error) {
		page, meta, err := c.Deployments(q)
		deps = append(deps, page...)
		return meta, err
	}); err != nil {
		return nil, nil, err
	}
	for _, d := range deps {
		b.upsertDeployment(fromNomadDeployment(d))
	}
	return b.commit(), covered, nil
}

// paged calls page with q for each page of a list, PageSize objects at a
// time, until Nomad says there is no next page. It returns the lowest and
// the highest index the pages were read at.
func (m *Model) paged(ctx context.Context, q *nomad.QueryOptions, page func(*nomad.QueryOptions) (*nomad.QueryMeta, error)) (low, high uint64, err error) {
	q = q.WithContext(ctx) // a copy: its NextToken changes
	q.PerPage = int32(m.opts.PageSize)
	for {
		meta, err := page(q)
		if err != nil {
			return 0, 0, err
		}
		if low == 0 || meta.LastIndex < low {
			low = meta.LastIndex
		}
		high = max(high, meta.LastIndex)
		if meta.NextToken == "" {
			return low, high, nil
		}
		q.NextToken = meta.NextToken
	}
}

// decode reads one object of an event's payload. It decodes the JSON the
// way the HTTP API does, not with the api package's Event helpers, whose
// mapstructure tags drop fields (a task's resources.MemoryMB, say).
func decode[T any](ev *nomad.Event, kind string) (*T, error) {
	raw, ok := ev.Payload[kind]
	if !ok {
		return nil, nil
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	out := new(T)
	if err := json.Unmarshal(b, out); err != nil {
		return nil, err
	}
	return out, nil
}

func isNotFound(err error) bool {
	var ue nomad.UnexpectedResponseError
	return errors.As(err, &ue) && ue.StatusCode() == 404
}
