package providers

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names exported by the instrumenting decorator.
const (
	MetricCallDuration = "spillway_provider_call_duration_seconds"
	MetricCallErrors   = "spillway_provider_call_errors_total"
	MetricHostsCreated = "spillway_provider_hosts_created_total"
)

// Operation label values.
const (
	OpCreate  = "create"
	OpDelete  = "delete"
	OpGet     = "get"
	OpList    = "list"
	OpCatalog = "catalog"
)

// instrumented is the one decorator that gives every provider call a latency
// histogram, an error counter and a debug/warn log line. Providers themselves
// neither log nor count.
type instrumented struct {
	next     Provider
	log      *slog.Logger
	duration *prometheus.HistogramVec
	errs     *prometheus.CounterVec
	created  *prometheus.CounterVec
}

var _ Provider = (*instrumented)(nil)

// Instrument wraps p so that every call is timed into
// spillway_provider_call_duration_seconds, every failed call counted in
// spillway_provider_call_errors_total (both labelled provider, pool,
// operation) and logged at warn level; successful calls log at debug level.
// A NotFound from Get or Delete is an answer, not a failure, and is not
// counted. Several providers may be instrumented into the same registerer;
// the collectors are shared. A nil registerer skips registration and a nil
// logger discards logs.
func Instrument(p Provider, reg prometheus.Registerer, log *slog.Logger) Provider {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	labels := []string{"provider", "pool", "operation"}
	duration := register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    MetricCallDuration,
		Help:    "Latency of cloud provider calls.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, labels))
	errs := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricCallErrors,
		Help: "Cloud provider calls that returned an error.",
	}, labels))
	created := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricHostsCreated,
		Help: "Hosts returned by provider Create calls.",
	}, []string{"provider", "pool"}))
	return &instrumented{next: p, log: log, duration: duration, errs: errs, created: created}
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

func (m *instrumented) observe(op, pool string, start time.Time, err error, attrs ...any) {
	name := m.next.Name()
	m.duration.WithLabelValues(name, pool, op).Observe(time.Since(start).Seconds())
	attrs = append(attrs, "provider", name, "pool", pool, "operation", op, "duration", time.Since(start))
	if err != nil && !(op != OpCreate && IsNotFound(err)) {
		m.errs.WithLabelValues(name, pool, op).Inc()
		m.log.Warn("provider call failed", append(attrs, "kind", ErrorKind(err), "err", err)...)
		return
	}
	m.log.Debug("provider call", attrs...)
}

func (m *instrumented) Name() string { return m.next.Name() }

func (m *instrumented) Create(ctx context.Context, claim Claim) ([]Host, error) {
	start := time.Now()
	hosts, err := m.next.Create(ctx, claim)
	m.created.WithLabelValues(m.next.Name(), claim.Pool.Name).Add(float64(len(hosts)))
	m.observe(OpCreate, claim.Pool.Name, start, err, "claim", claim.ID, "count", claim.Count, "hosts", len(hosts))
	return hosts, err
}

func (m *instrumented) Delete(ctx context.Context, host Host) error {
	start := time.Now()
	err := m.next.Delete(ctx, host)
	m.observe(OpDelete, host.Pool, start, err, "host", host.ID)
	return err
}

func (m *instrumented) Get(ctx context.Context, id string) (Host, error) {
	start := time.Now()
	host, err := m.next.Get(ctx, id)
	m.observe(OpGet, host.Pool, start, err, "host", id)
	return host, err
}

func (m *instrumented) List(ctx context.Context, pool string) ([]Host, error) {
	start := time.Now()
	hosts, err := m.next.List(ctx, pool)
	m.observe(OpList, pool, start, err, "hosts", len(hosts))
	return hosts, err
}

func (m *instrumented) Catalog(ctx context.Context, pool Pool) ([]Offering, error) {
	start := time.Now()
	offerings, err := m.next.Catalog(ctx, pool)
	m.observe(OpCatalog, pool.Name, start, err, "offerings", len(offerings))
	return offerings, err
}
