// Package demo owns the lab's demo service and its load generator. The
// service (`spillway demo-app`) is a small HTTP server with a fixed capacity
// per instance: above it, requests queue and latency rises sharply, so
// scaling matters and shows. The generator (`spillway demo-load`) plays a
// traffic trace against every instance Nomad's service discovery knows.
package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"
)

// AppConfig configures one demo service instance.
type AppConfig struct {
	// Capacity is the requests per second one instance serves at its base latency.
	Capacity float64
	// BaseLatency is the service time of a request on an idle instance.
	BaseLatency time.Duration
	// MaxQueue is the longest a request waits for capacity before the
	// instance sheds it with 503.
	MaxQueue time.Duration
}

// DefaultAppConfig is 100 requests/s at 10ms, shedding after 2s of queueing.
func DefaultAppConfig() AppConfig {
	return AppConfig{Capacity: 100, BaseLatency: 10 * time.Millisecond, MaxQueue: 2 * time.Second}
}

// App is one demo service instance.
type App struct {
	cfg      AppConfig
	limiter  *rate.Limiter
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	inFlight prometheus.Gauge
	latency  prometheus.Histogram
	mux      *http.ServeMux
	// now is the clock admission runs on; tests fix it.
	now func() time.Time
}

// NewApp builds an instance.
func NewApp(cfg AppConfig) (*App, error) {
	if cfg.Capacity <= 0 {
		return nil, fmt.Errorf("capacity must be positive, got %g", cfg.Capacity)
	}
	// A burst of a tenth of a second's capacity: the limiter is a queue that
	// drains at Capacity requests per second.
	burst := max(1, int(cfg.Capacity/10))
	a := &App{
		cfg:     cfg,
		limiter: rate.NewLimiter(rate.Limit(cfg.Capacity), burst),
		reg:     prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_demo_requests_total",
			Help: "Requests received by the demo service, by status code.",
		}, []string{"code"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_demo_requests_in_flight",
			Help: "Requests the demo service is serving or queueing now.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "spillway_demo_request_duration_seconds",
			Help:    "Time the demo service took to answer, queueing included.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		mux: http.NewServeMux(),
		now: time.Now,
	}
	capacity := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "spillway_demo_capacity_requests_per_second",
		Help: "Requests per second one demo instance serves before it queues.",
	})
	capacity.Set(cfg.Capacity)
	a.reg.MustRegister(a.requests, a.inFlight, a.latency, capacity,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Pre-create the common series so rate() sees them from the first scrape.
	a.requests.WithLabelValues("200")
	a.requests.WithLabelValues("503")
	a.mux.HandleFunc("GET /{$}", a.serve)
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	a.mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	return a, nil
}

// Handler serves / (the work), /healthz and /metrics.
func (a *App) Handler() http.Handler { return a.mux }

func (a *App) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	a.inFlight.Inc()
	defer a.inFlight.Dec()
	wait, ok := a.admit()
	if !ok {
		a.requests.WithLabelValues("503").Inc()
		a.latency.Observe(time.Since(start).Seconds())
		http.Error(w, "over capacity", http.StatusServiceUnavailable)
		return
	}
	// Service time: the base latency with ±20% jitter, after the queue.
	service := time.Duration(float64(a.cfg.BaseLatency) * (0.8 + 0.4*rand.Float64()))
	t := time.NewTimer(wait + service)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		a.requests.WithLabelValues("499").Inc()
		return
	}
	a.requests.WithLabelValues("200").Inc()
	a.latency.Observe(time.Since(start).Seconds())
	fmt.Fprintln(w, "ok")
}

// admit queues a request for capacity: it returns how long the request
// waits, or false when the queue is longer than MaxQueue and it is shed.
func (a *App) admit() (time.Duration, bool) {
	now := a.now()
	res := a.limiter.ReserveN(now, 1)
	wait := res.DelayFrom(now)
	if wait > a.cfg.MaxQueue {
		res.CancelAt(now)
		return 0, false
	}
	return wait, true
}

// Serve runs the instance on addr until ctx ends.
func (a *App) Serve(ctx context.Context, addr string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: a.mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("demo service listening", "addr", ln.Addr().String(), "capacity_rps", a.cfg.Capacity)
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
