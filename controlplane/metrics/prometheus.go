package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/spillwayhq/spillway/policies"
)

// PrometheusOptions configures a [Prometheus] source.
type PrometheusOptions struct {
	// URL is the Prometheus base URL, e.g. http://127.0.0.1:9090.
	URL string
	// Timeout bounds each query, client and server side. Default 10s.
	Timeout time.Duration
	// Username and Password enable basic auth.
	Username, Password string
	// BearerToken enables bearer auth. It cannot be combined with basic
	// auth.
	BearerToken string
	// Lookback is how far back Query looks for a series' newest sample;
	// a series with no sample in it is absent. Default 5m.
	Lookback time.Duration
	// Step is the resolution of that look back, and so of the sample
	// times Query reports. Default 10s.
	Step time.Duration
	// Transport overrides the HTTP transport (tests, TLS settings).
	Transport http.RoundTripper
	// Logger receives Prometheus's query warnings. Default slog.Default().
	Logger *slog.Logger
	// Clock times the cache of the server's start time (default: the
	// real clock).
	Clock clockwork.Clock
}

// Prometheus is a [Source] backed by the Prometheus HTTP API.
type Prometheus struct {
	api  v1.API
	opts PrometheusOptions

	mu sync.Mutex
	// started is when the Prometheus server started, read from its
	// runtime info at most every startedTTL, to tell "no data yet" from
	// "no data".
	started, startedRead time.Time
}

// startedTTL is how long the server's start time is cached: a restart of
// Prometheus shows within it.
const startedTTL = 15 * time.Second

var _ Source = (*Prometheus)(nil)

// NewPrometheus returns a source for the Prometheus at o.URL. It does not
// contact the server.
func NewPrometheus(o PrometheusOptions) (*Prometheus, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid prometheus url %q: want http(s)://host:port", o.URL)
	}
	if o.BearerToken != "" && (o.Username != "" || o.Password != "") {
		return nil, errors.New("prometheus: use basic auth or a bearer token, not both")
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Lookback <= 0 {
		o.Lookback = 5 * time.Minute
	}
	if o.Step <= 0 {
		o.Step = 10 * time.Second
	}
	if o.Step > o.Lookback {
		o.Step = o.Lookback
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	rt := o.Transport
	if rt == nil {
		rt = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: o.Timeout,
			MaxIdleConnsPerHost:   8,
			IdleConnTimeout:       90 * time.Second,
		}
	}
	if o.Username != "" || o.Password != "" || o.BearerToken != "" {
		rt = &authTransport{next: rt, user: o.Username, pass: o.Password, token: o.BearerToken}
	}
	client, err := api.NewClient(api.Config{Address: o.URL, RoundTripper: rt})
	if err != nil {
		return nil, fmt.Errorf("creating prometheus client: %w", err)
	}
	return &Prometheus{api: v1.NewAPI(client), opts: o}, nil
}

// authTransport adds basic or bearer credentials to every request.
type authTransport struct {
	next              http.RoundTripper
	user, pass, token string
}

func (t *authTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if t.token != "" {
		r.Header.Set("Authorization", "Bearer "+t.token)
	} else {
		r.SetBasicAuth(t.user, t.pass)
	}
	return t.next.RoundTrip(r)
}

// Query implements [Source]. It runs a range query over [at-Lookback, at]
// and returns each series' newest point, so a sample's Time tells when the
// series last had data: that is how stale data shows (an instant query
// would stamp every sample with at). Series with no point in the window are
// absent.
func (p *Prometheus) Query(ctx context.Context, promql string, at time.Time) ([]Sample, error) {
	steps := int64(p.opts.Lookback / p.opts.Step)
	r := v1.Range{Start: at.Add(-time.Duration(steps) * p.opts.Step), End: at, Step: p.opts.Step}
	series, err := p.QueryRange(ctx, promql, r)
	if err != nil {
		return nil, err
	}
	out := make([]Sample, 0, len(series))
	for _, s := range series {
		if len(s.Points) == 0 {
			continue
		}
		last := s.Points[len(s.Points)-1]
		out = append(out, Sample{Labels: s.Labels, Value: last.Value, Time: last.Time})
	}
	if len(out) == 0 {
		if err := p.notYet(ctx, promql, at); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// notYet returns an error wrapping policies.ErrNotYet when Prometheus has
// not been up for the query's longest range (or a scrape interval, for a
// query without one) at at: no series then means no data yet, not a
// missing series. It returns nil when the start time cannot be read.
func (p *Prometheus) notYet(ctx context.Context, promql string, at time.Time) error {
	started := p.startTime(ctx)
	if started.IsZero() {
		return nil
	}
	need := max(QueryRange(promql), time.Minute)
	if up := at.Sub(started); up < need {
		// Said the same way at every evaluation until there is data (the
		// times, not how long it has been up), so the journal notes the
		// hold once.
		return fmt.Errorf("%w: prometheus started at %s, and the query %q needs %s of its data: there is some from %s", policies.ErrNotYet,
			started.UTC().Format(time.TimeOnly), promql, need, started.Add(need).UTC().Format(time.TimeOnly))
	}
	return nil
}

// startTime is when the Prometheus server started (zero if unknown).
func (p *Prometheus) startTime(ctx context.Context) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.opts.Clock.Since(p.startedRead) < startedTTL {
		return p.started
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	info, err := p.api.Runtimeinfo(ctx)
	p.startedRead = p.opts.Clock.Now()
	if err != nil {
		p.started = time.Time{}
		return p.started
	}
	p.started = info.StartTime
	return p.started
}

// rangeRE finds the range of a range vector or a subquery: [5m], [1h:30s].
var rangeRE = regexp.MustCompile(`\[\s*([0-9]+[smhdwy][0-9smhdwy]*)\s*(?::[^\]]*)?\]`)

// QueryRange is the longest range a PromQL expression reads (0 when it
// has none): how long a Prometheus must have been up to answer it.
func QueryRange(promql string) time.Duration {
	var longest time.Duration
	for _, m := range rangeRE.FindAllStringSubmatch(promql, -1) {
		if d, err := model.ParseDuration(m[1]); err == nil {
			longest = max(longest, time.Duration(d))
		}
	}
	return longest
}

// Instant runs an instant query at at. Samples of vector results carry the
// evaluation time, not the time the data was scraped.
func (p *Prometheus) Instant(ctx context.Context, promql string, at time.Time) ([]Sample, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	val, warnings, _, err := p.api.Query(ctx, promql, at, v1.WithTimeout(p.opts.Timeout))
	p.warn(promql, warnings)
	if err != nil {
		return nil, p.wrap(promql, err)
	}
	switch v := val.(type) {
	case model.Vector:
		out := make([]Sample, len(v))
		for i, s := range v {
			out[i] = Sample{Labels: labels(s.Metric), Value: float64(s.Value), Time: s.Timestamp.Time()}
		}
		return out, nil
	case *model.Scalar:
		return []Sample{{Value: float64(v.Value), Time: v.Timestamp.Time()}}, nil
	case model.Matrix:
		return nil, fmt.Errorf("querying prometheus for %q: got a range vector; use an instant expression, e.g. rate(x[1m]) rather than x[1m]", promql)
	default:
		return nil, fmt.Errorf("querying prometheus for %q: unsupported result type %s", promql, val.Type())
	}
}

// Point is one value of a series in a range query.
type Point struct {
	Time  time.Time `json:"time"`
	Value float64   `json:"value"`
}

// Series is one series of a range query.
type Series struct {
	Labels map[string]string `json:"labels,omitempty"`
	Points []Point           `json:"points"`
}

// QueryRange runs a range query.
func (p *Prometheus) QueryRange(ctx context.Context, promql string, r v1.Range) ([]Series, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	val, warnings, _, err := p.api.QueryRange(ctx, promql, r, v1.WithTimeout(p.opts.Timeout))
	p.warn(promql, warnings)
	if err != nil {
		return nil, p.wrap(promql, err)
	}
	m, ok := val.(model.Matrix)
	if !ok {
		return nil, fmt.Errorf("querying prometheus for %q: unexpected result type %s for a range query", promql, val.Type())
	}
	out := make([]Series, 0, len(m))
	for _, s := range m {
		ser := Series{Labels: labels(s.Metric), Points: make([]Point, 0, len(s.Values))}
		for _, v := range s.Values {
			ser.Points = append(ser.Points, Point{Time: v.Timestamp.Time(), Value: float64(v.Value)})
		}
		out = append(out, ser)
	}
	return out, nil
}

func (p *Prometheus) warn(promql string, w v1.Warnings) {
	for _, msg := range w {
		p.opts.Logger.Warn("prometheus query warning", "query", promql, "warning", msg)
	}
}

// wrap says which failure err is: the query's own (policies.ErrQueryFailed:
// Prometheus refused or failed to run it), or Prometheus not answering
// (policies.ErrUnreachable: refused, timed out, a 5xx).
func (p *Prometheus) wrap(promql string, err error) error {
	var apiErr *v1.Error
	if errors.As(err, &apiErr) && (apiErr.Type == v1.ErrBadData || apiErr.Type == v1.ErrExec) {
		return fmt.Errorf("%w: prometheus refused the query %q: %w", policies.ErrQueryFailed, promql, err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: querying prometheus for %q: timed out after %s: %w", policies.ErrUnreachable, promql, p.opts.Timeout, err)
	}
	return fmt.Errorf("%w: querying prometheus for %q: %w", policies.ErrUnreachable, promql, err)
}

func labels(m model.Metric) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[string(k)] = string(v)
	}
	return out
}
