// Package app is the `spillway serve` daemon as a value: New builds it from a
// configuration, Run serves until its context ends and then shuts down
// gracefully. cmd/spillway only parses flags; tests embed the app directly.
package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	nomad "github.com/hashicorp/nomad/api"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/spillwayhq/spillway/controlplane/alerts"
	"github.com/spillwayhq/spillway/controlplane/auth"
	"github.com/spillwayhq/spillway/controlplane/buildinfo"
	"github.com/spillwayhq/spillway/controlplane/capacity"
	"github.com/spillwayhq/spillway/controlplane/cluster"
	"github.com/spillwayhq/spillway/controlplane/config"
	"github.com/spillwayhq/spillway/controlplane/controller"
	"github.com/spillwayhq/spillway/controlplane/evaluate"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/controlplane/leader"
	"github.com/spillwayhq/spillway/controlplane/metrics"
	"github.com/spillwayhq/spillway/controlplane/nomadapi"
	"github.com/spillwayhq/spillway/controlplane/scaler"
	"github.com/spillwayhq/spillway/policies"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/webui"
)

// App is a running control plane.
type App struct {
	cfg   *config.Config
	log   *slog.Logger
	reg   *prometheus.Registry
	nomad *nomad.Client
	// model is the live model of the Nomad cluster every reader reads;
	// orchestrator makes the changes.
	model        *cluster.Model
	orchestrator cluster.Orchestrator
	mux          *http.ServeMux
	// metrics is the metric source: the policies' checks and traffic
	// queries read it.
	metrics metrics.Source
	// console serves the web console (webui), beside the mux.
	console http.Handler
	// clock is the one clock of every component the daemon builds.
	clock   clockwork.Clock
	ln      net.Listener
	reload  *reloader
	pools   *pools.Config
	auth    *auth.Authenticator
	journal journal.Store
	// elector elects the acting replica when leader election is enabled;
	// nil means this replica always acts.
	elector *leader.Elector
	// ledger is the lending ledger, when a shared pool is configured.
	ledger *pools.Ledger
	// capacity keeps spillway_pool_hosts and spillway_pool_cost_per_hour
	// current, when pools are configured.
	capacity *capacity.Accountant
	alerts   *alerts.Store
	intake   *alertIntake
	// alertMu holds one notification from its Plan to its Commit, and a
	// restore of the firing set from the journal.
	alertMu sync.Mutex
	scaler  *scaler.Scaler
	// alertLimit rate-limits the Alertmanager receiver per token.
	alertLimit *limiter
	// controller finds hosts for what Nomad cannot place and gives them
	// back, when pools are configured.
	controller *controller.Controller
	streams    *streamHub // the open event streams (sse.go)
}

// Options are what New takes besides the configuration.
type Options struct {
	// Clock is the clock of the daemon and of every component it builds:
	// their waits, loops and timestamps (default: the real clock).
	Clock clockwork.Clock
}

// New builds the daemon from cfg; hash identifies cfg in metrics. It loads
// the policies, and fails if they do not load: a daemon never starts on a
// broken set. It opens no sockets: Listen does.
func New(cfg *config.Config, hash string, log *slog.Logger, opts Options) (*App, error) {
	authn, err := auth.New(cfg.API.Tokens)
	if err != nil {
		return nil, err
	}
	if !authn.Configured() {
		log.Warn("no API tokens are configured: every /v1 route answers 401 (see 'spillway token create')")
	}
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	a := &App{cfg: cfg, log: log, reg: prometheus.NewRegistry(), mux: http.NewServeMux(), auth: authn, clock: opts.Clock}
	a.registerMetrics(hash)
	nc, err := nomadapi.New(cfg.Nomad, nomadapi.Options{Registerer: a.reg, Logger: log.With("component", "nomad"), Guard: a.guard("nomad")})
	if err != nil {
		return nil, err
	}
	a.nomad = nc
	a.model = cluster.New(cluster.Options{Client: nc, Logger: log.With("component", "cluster"), Registerer: a.reg, Clock: a.clock})
	a.orchestrator = cluster.NomadOrchestrator{Client: nc}
	a.reload = newReloader(cfg.Policies.Dir, a.reg)
	if _, err := a.Reload(context.Background()); err != nil {
		return nil, fmt.Errorf("loading policies from %s:\n%w", cfg.Policies.Dir, err)
	}
	a.pools = &pools.Config{}
	if cfg.Pools.Dir != "" {
		if a.pools, err = pools.LoadDir(cfg.Pools.Dir); err != nil {
			return nil, fmt.Errorf("loading pools from %s:\n%w", cfg.Pools.Dir, err)
		}
		if a.capacity, err = capacity.New(capacity.Options{Nodes: a.sharedNodes, Registerer: a.reg, Now: a.clock.Now}); err != nil {
			return nil, err
		}
	}
	if a.journal, err = journal.OpenConfig(context.Background(), cfg.Journal, journal.Options{Clock: a.clock}); err != nil {
		return nil, err
	}
	if cfg.Leader.Enabled {
		// The lease is in the shared journal, and every write of the
		// acting replica to it carries the term's fencing token.
		pg, ok := a.journal.(*journal.Postgres)
		if !ok {
			a.journal.Close()
			return nil, fmt.Errorf("leader election needs the PostgreSQL journal, not %s", a.journal.Driver())
		}
		lopts := leader.ConfigOptions(cfg.Leader)
		lopts.Lease, lopts.Logger, lopts.Registerer, lopts.Clock = pg.Lease(leader.DefaultElection), log.With("component", "leader"), a.reg, a.clock
		if a.elector, err = leader.New(lopts); err != nil {
			a.journal.Close()
			return nil, err
		}
		a.journal = pg.Fenced(leader.DefaultElection, a.elector)
	}
	src, err := metrics.NewPrometheus(metrics.PrometheusOptions{
		URL: cfg.Prometheus.Address, Timeout: cfg.Prometheus.Timeout, BearerToken: cfg.Prometheus.BearerToken.Reveal(), Clock: a.clock,
	})
	if err != nil {
		a.journal.Close()
		return nil, fmt.Errorf("prometheus: %w", err)
	}
	a.metrics = src
	if err := a.controllers(nc); err != nil {
		a.journal.Close()
		return nil, err
	}
	a.alerts = alerts.NewStore(cfg.Alerts.TTL, cfg.Alerts.MaxFiring)
	a.intake = newAlertIntake(a.reg, a.alerts, a.clock)
	if err := a.restoreAlerts(context.Background()); err != nil {
		a.journal.Close()
		return nil, err
	}
	a.alertLimit = newLimiter(5, 20)
	a.scaler = scaler.New(scaler.Config{
		Policies:   a.Policies,
		Evaluator:  evaluate.New(src, evaluate.ClusterGroups{Cluster: a.model, MaxStale: cfg.Nomad.StaleCounts, Now: a.clock.Now}, a.clock.Now, log),
		Counts:     scaler.ClusterCounts{Cluster: a.model, Orchestrator: a.orchestrator},
		Journal:    a.journal.Events(),
		Alerts:     a.alerts,
		Clock:      a.clock,
		Logger:     log.With("component", "scaler"),
		Registerer: a.reg,
		OnScaled:   a.scaled,
		Hold:       a.holding,
	})
	if err := a.scaler.Restore(context.Background()); err != nil {
		a.journal.Close()
		return nil, err
	}
	a.routes()
	return a, nil
}

// Pools returns the pool configuration (empty when none is configured).
func (a *App) Pools() *pools.Config { return a.pools }

// Close releases the journal. (The controllers and their activities stop
// with Run's context.)
func (a *App) Close() error {
	a.streams.close() // and the streams' watcher
	return a.journal.Close()
}

// identity names this replica: in the election, and to the clouds.
func (a *App) identity() string {
	if a.elector != nil {
		return a.elector.Identity()
	}
	return leader.DefaultIdentity()
}

// guard returns the check for the calls to target (Nomad's writes, a
// cloud provider) that only the acting replica may make: none without
// leader election, else the elector's guard, which refuses once this
// replica's term has ended.
func (a *App) guard(target string) func(context.Context) error {
	var once sync.Once
	var check func(context.Context) error
	return func(ctx context.Context) error {
		if a.elector == nil {
			return nil
		}
		once.Do(func() { check = a.elector.Guard(target) })
		return check(ctx)
	}
}

func (a *App) registerMetrics(hash string) {
	bi := buildinfo.Get()
	a.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "spillway_build_info",
		Help: "Build information of the running spillway binary; always 1.",
	}, []string{"version", "revision", "goversion"})
	info.WithLabelValues(bi.Version, bi.Revision, bi.GoVersion).Set(1)
	cfgInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "spillway_config_info",
		Help: "The hash of the configuration in use; always 1.",
	}, []string{"hash"})
	cfgInfo.WithLabelValues(hash).Set(1)
	a.reg.MustRegister(info, cfgInfo)
}

func (a *App) routes() {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spillway_http_requests_total",
		Help: "HTTP requests served, by handler and status code.",
	}, []string{"handler", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "spillway_http_request_duration_seconds",
		Help:    "Time to serve HTTP requests, by handler.",
		Buckets: prometheus.DefBuckets,
	}, []string{"handler"})
	a.reg.MustRegister(requests, duration)
	instrument := func(name string, h http.Handler) http.Handler {
		h = promhttp.InstrumentHandlerCounter(requests.MustCurryWith(prometheus.Labels{"handler": name}), h)
		return promhttp.InstrumentHandlerDuration(duration.MustCurryWith(prometheus.Labels{"handler": name}), h)
	}
	handle := func(pattern, name string, h http.Handler) {
		a.mux.Handle(pattern, instrument(name, h))
	}
	handle("GET /healthz", "healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	}))
	handle("GET /readyz", "readyz", http.HandlerFunc(a.readyz))
	handle("GET /metrics", "metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	handle("POST /v1/alerts/alertmanager", "alertmanager", a.auth.Require(auth.Operator, writeError, a.requireActing(http.HandlerFunc(a.handleAlertmanager))))
	handle("GET /v1/events", "events", a.auth.Require(auth.Viewer, writeError, http.HandlerFunc(a.handleEvents)))
	a.apiRoutes(handle)
	// The web console is not part of the API (nor of openapi.yaml) and not
	// on the mux: serveHTTP gives it the GETs no route takes outside /v1/,
	// so its client-side routes load index.html. Its pages need no token
	// to load; the API calls they make do.
	a.console = instrument("console", webui.Handler())
}

// isAPIPath reports whether p is under the API's prefix, which the console
// never answers: an unknown API path is a JSON 404, not the console's page.
func isAPIPath(p string) bool { return p == "/v1" || strings.HasPrefix(p, "/v1/") }

// readyz answers 200 once the control plane can reach Nomad's leader.
func (a *App) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := cluster.Leader(ctx, a.nomad); err != nil {
		http.Error(w, "not ready: nomad: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	switch {
	case a.elector == nil:
		fmt.Fprintln(w, "ok")
	case a.elector.IsLeader():
		fmt.Fprintln(w, "ok (leader)")
	default:
		fmt.Fprintf(w, "ok (follower; the leader is %q)\n", a.elector.Leader())
	}
}

// Handler is the daemon's HTTP handler.
func (a *App) Handler() http.Handler { return http.HandlerFunc(a.serveHTTP) }

// serveHTTP routes a request. A GET or HEAD that no route takes outside
// /v1/ is the console's; what else no route takes (404, or 405 with its
// Allow header) is answered in the API's JSON error shape, not the mux's
// plain text.
func (a *App) serveHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := a.mux.Handler(r)
	if pattern != "" {
		a.mux.ServeHTTP(w, r)
		return
	}
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && !isAPIPath(r.URL.Path) {
		a.console.ServeHTTP(w, r)
		return
	}
	rec := &statusRecorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	if (rec.status == http.StatusNotFound || rec.status == 0) && !isAPIPath(r.URL.Path) {
		rec.status = http.StatusMethodNotAllowed // the console's page: GET and HEAD
		rec.header.Set("Allow", "GET, HEAD")
	}
	if allow := rec.header.Get("Allow"); allow != "" {
		w.Header().Set("Allow", allow)
	}
	switch rec.status {
	case http.StatusMethodNotAllowed:
		writeError(w, rec.status, "method_not_allowed", fmt.Sprintf("%s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, rec.header.Get("Allow")))
	case http.StatusNotFound, 0:
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no route %s %s; see /v1/openapi.yaml", r.Method, r.URL.Path))
	default: // a redirect to the cleaned path, say
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.status)
		_, _ = w.Write(rec.body.Bytes())
	}
}

// statusRecorder keeps what the mux's own 404, 405 or redirect writes.
type statusRecorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (s *statusRecorder) Header() http.Header { return s.header }
func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.body.Write(b)
}

// Listen opens the configured listener.
func (a *App) Listen() error {
	ln, err := net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", a.cfg.Listen, err)
	}
	a.ln = ln
	return nil
}

// Addr is the address the daemon serves on, once listening.
func (a *App) Addr() string {
	if a.ln == nil {
		return a.cfg.Listen
	}
	return a.ln.Addr().String()
}

// Run serves until ctx is done, then drains requests for up to 10 seconds.
func (a *App) Run(ctx context.Context) error {
	if a.ln == nil {
		if err := a.Listen(); err != nil {
			return err
		}
	}
	srv := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(a.streams.close)
	errc := make(chan error, 1)
	go func() {
		if a.cfg.TLS.CertFile != "" {
			errc <- srv.ServeTLS(a.ln, a.cfg.TLS.CertFile, a.cfg.TLS.KeyFile)
			return
		}
		errc <- srv.Serve(a.ln)
	}()
	sctx, stopScaler := context.WithCancel(ctx)
	defer stopScaler()
	// Every replica follows the cluster: the followers serve reads from it.
	go a.model.Run(sctx)
	// acting ends once the elector has stepped down and released its
	// lease (or the single replica's controllers stopped): Run waits for
	// it, so the journal is not closed under the release.
	acting := make(chan struct{})
	go func() {
		defer close(acting)
		if a.elector != nil {
			_ = a.elector.Run(sctx, a.act)
		} else {
			a.act(sctx, leader.Term{})
		}
	}()
	if a.capacity != nil {
		go a.account(sctx, 15*time.Second)
	}
	a.log.Info("serving", "addr", "http://"+a.Addr(), "console", "http://"+a.Addr()+"/", "nomad", a.nomadAddress(), "prometheus", a.cfg.Prometheus.Address)
	// stopActing ends the controllers and waits (10s at most, of wall
	// time: it bounds the process's shutdown, as srv.Shutdown's does)
	// until they have stopped and the lease is released.
	stopActing := func() {
		stopScaler()
		select {
		case <-acting:
		case <-time.After(10 * time.Second):
			a.log.Warn("the controllers did not stop within 10s; closing anyway")
		}
	}
	select {
	case err := <-errc:
		stopActing()
		return fmt.Errorf("serving http: %w", err)
	case <-ctx.Done():
	}
	a.log.Info("shutting down")
	stopActing()
	hctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(hctx); err != nil {
		return fmt.Errorf("shutting down http: %w", err)
	}
	return nil
}

func (a *App) nomadAddress() string { return a.nomad.Address() }

// act runs the controllers until ctx ends: for the whole life of a single
// replica, or for one term of the elected leader. A leader first journals
// how it took over, then re-reads what another leader may have written to
// the shared journal: the last scaling times, the pauses and the lending
// ledger.
func (a *App) act(ctx context.Context, term leader.Term) {
	if a.elector != nil {
		a.log.Info("acting as the leader", "identity", a.elector.Identity(), "term", term.Token)
		if err := a.journalElected(ctx, term); err != nil {
			a.log.Error("journaling the new term; not acting this term", "err", err)
			<-ctx.Done()
			return
		}
		if err := a.scaler.Restore(ctx); err != nil {
			a.log.Error("restoring the scaler's state; not acting this term", "err", err)
			<-ctx.Done()
			return
		}
		if err := a.restoreAlerts(ctx); err != nil {
			a.log.Error("restoring the firing alerts; not acting this term", "err", err)
			<-ctx.Done()
			return
		}
		if a.controller != nil {
			if err := a.controller.RestorePauses(ctx, a.journal.Events()); err != nil {
				a.log.Error("restoring pool pauses; not acting this term", "err", err)
				<-ctx.Done()
				return
			}
			if err := a.controller.RestoreLinks(ctx, a.journal.Events()); err != nil {
				a.log.Error("restoring link bandwidths; not acting this term", "err", err)
				<-ctx.Done()
				return
			}
			if err := a.controller.RestoreSurges(ctx, a.journal.Events()); err != nil {
				a.log.Error("restoring the surges in flight; not acting this term", "err", err)
				<-ctx.Done()
				return
			}
			if _, err := a.ledger.Reload(ctx); err != nil {
				a.log.Error("reloading the lending ledger; not acting this term", "err", err)
				<-ctx.Done()
				return
			}
		}
	}
	done := make(chan struct{})
	go func() { a.scaler.Run(ctx); close(done) }()
	if a.controller != nil {
		a.controller.Run(ctx, 10*time.Second)
		a.controller.Wait()
	}
	<-done
}

// holding says why the scaler must leave a group's count alone now: the
// controller raised it for the drain of a lent host (a surge).
func (a *App) holding(t policies.Target) string {
	if a.controller == nil {
		return ""
	}
	return a.controller.Holding(t)
}

// scaled tells the provisioning controller of a count the scaler raised,
// so the scale-out that follows keeps the decision's activity and times.
func (a *App) scaled(s scaler.Scaled) {
	if a.controller == nil || s.To <= s.From {
		return
	}
	a.controller.Expect(controller.Hint{Target: s.Target, Activity: s.Activity, Policy: s.Policy, Triggered: s.Triggered, Decided: s.Decided})
}

// liveSnapshot is the cluster model's current snapshot, or an error saying
// since when it has not followed Nomad.
func (a *App) liveSnapshot() (*cluster.Snapshot, error) {
	s := a.model.Snapshot()
	if !s.Live() {
		sync := s.Sync()
		if sync.Since.IsZero() {
			return s, errors.New("the cluster model has not listed nomad yet")
		}
		return s, fmt.Errorf("the cluster model has not followed nomad since %s: %s", sync.Since.UTC().Format(time.RFC3339), sync.Err)
	}
	return s, nil
}

// account refreshes the capacity gauges every interval, on every replica
// (it only reads Nomad), until ctx ends.
func (a *App) account(ctx context.Context, interval time.Duration) {
	for {
		if _, err := a.capacity.Report(ctx, a.pools); err != nil && ctx.Err() == nil {
			a.log.Warn("accounting pool capacity", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-a.clock.After(interval):
		}
	}
}

// acting reports whether this replica may change anything: it is the only
// replica, or the elected leader.
func (a *App) acting() bool { return a.elector == nil || a.elector.IsLeader() }

// requireActing answers 503 on a replica that follows, so a client (or
// Alertmanager, which retries) reaches the leader.
func (a *App) requireActing(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.acting() {
			w.Header().Set("Retry-After", "2")
			msg := "this replica follows and serves reads only"
			if l := a.elector.Leader(); l != "" {
				msg += "; the leader is " + l
			}
			writeError(w, http.StatusServiceUnavailable, "not_leader", msg)
			return
		}
		next.ServeHTTP(w, r)
	})
}
