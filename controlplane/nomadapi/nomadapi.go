// Package nomadapi builds the Nomad API client every part of the daemon
// shares, and owns what crosses that boundary: each request is counted by
// endpoint (spillway_nomad_requests_total), checked against the endpoints
// Spillway is pinned to (Endpoints: every one answered by Nomad 1.6, the
// oldest release Spillway supports), and, when replicas elect a leader,
// every write is guarded by the leader's term so a deposed replica changes
// nothing in Nomad.
package nomadapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	nomad "github.com/hashicorp/nomad/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillwayhq/spillway/controlplane/config"
)

// MinVersion is the oldest Nomad release Spillway supports: 1.6, the last
// under the MPL-2.0. Every endpoint in Endpoints is answered by it.
const MinVersion = "1.6.0"

// Unpinned is the endpoint label of a request to an endpoint that is not
// in Endpoints.
const Unpinned = "unpinned"

// Endpoints is every Nomad HTTP endpoint Spillway calls, as "METHOD
// template", where a template names each identifier in the path (":job",
// ":node" ...). Each is in Nomad 1.6. A call to any other endpoint is
// counted as Unpinned and logged once: the end-to-end suites, which run on
// Nomad 1.6.3, fail on it.
var Endpoints = []string{
	"GET /v1/agent/self",
	"GET /v1/allocation/:alloc",
	"GET /v1/allocations",
	"GET /v1/client/metadata",
	"POST /v1/client/metadata",
	"GET /v1/deployment/:deployment",
	"GET /v1/deployments",
	"GET /v1/evaluation/:eval",
	"GET /v1/evaluations",
	"GET /v1/event/stream",
	"GET /v1/job/:job",
	"POST /v1/job/:job",
	"PUT /v1/job/:job",
	"GET /v1/job/:job/allocations",
	"GET /v1/job/:job/deployment",
	"GET /v1/job/:job/deployments",
	"GET /v1/job/:job/evaluations",
	"GET /v1/job/:job/scale",
	"POST /v1/job/:job/scale",
	"PUT /v1/job/:job/scale",
	"GET /v1/job/:job/summary",
	"GET /v1/job/:job/versions",
	"GET /v1/jobs",
	"POST /v1/jobs",
	"PUT /v1/jobs",
	"GET /v1/node/:node",
	"GET /v1/node/:node/allocations",
	"POST /v1/node/:node/drain",
	"PUT /v1/node/:node/drain",
	"POST /v1/node/:node/eligibility",
	"PUT /v1/node/:node/eligibility",
	"GET /v1/node/pools",
	"GET /v1/nodes",
	"GET /v1/service/:service",
	"GET /v1/services",
	"GET /v1/status/leader",
}

var pinned = func() map[string]bool {
	m := make(map[string]bool, len(Endpoints))
	for _, e := range Endpoints {
		m[e] = true
	}
	return m
}()

// collections are the identifier names of the path segment after each
// collection: /v1/job/<job>, /v1/node/<node>, ...
var collections = map[string]string{
	"job": ":job", "node": ":node", "allocation": ":alloc", "evaluation": ":eval",
	"deployment": ":deployment", "service": ":service", "var": ":path", "namespace": ":namespace",
}

// Endpoint is the pinned-table form of a request: "METHOD template".
func Endpoint(method, escapedPath string) string {
	segs := strings.Split(strings.Trim(escapedPath, "/"), "/")
	for i := 1; i+1 < len(segs); i++ {
		// /v1/node/pools and /v1/node/pool/<name> are node pools, not nodes.
		if segs[i] == "node" && (segs[i+1] == "pools" || segs[i+1] == "pool") {
			if segs[i+1] == "pool" && i+2 < len(segs) {
				segs[i+2] = ":pool"
			}
			break
		}
		if id, ok := collections[segs[i]]; ok && i == 1 {
			if segs[i] == "var" {
				// A variable's path has slashes of its own.
				segs = append(segs[:i+1], id)
				break
			}
			segs[i+1] = id
			break
		}
		if segs[i] == "client" && segs[i+1] == "allocation" && i+2 < len(segs) {
			segs[i+2] = ":alloc"
			break
		}
	}
	return method + " /" + strings.Join(segs, "/")
}

// Pinned reports whether the endpoint ("METHOD template") is in Endpoints.
func Pinned(endpoint string) bool { return pinned[endpoint] }

// Options configures the client.
type Options struct {
	// Registerer receives spillway_nomad_requests_total; nil registers
	// nothing.
	Registerer prometheus.Registerer
	// Guard, when set, is asked before every request that changes
	// something in Nomad (any method but GET and HEAD); its error fails the
	// request before it is sent. The elected leader's guard refuses once
	// its term has ended.
	Guard  func(ctx context.Context) error
	Logger *slog.Logger
}

// New builds a Nomad API client from c. Unset fields keep Nomad's own
// defaults, which honour NOMAD_ADDR, NOMAD_TOKEN and the other NOMAD_*
// variables (TLS included).
func New(c config.Nomad, o Options) (*nomad.Client, error) {
	nc := nomad.DefaultConfig()
	if c.Address != "" {
		nc.Address = c.Address
	}
	if c.Region != "" {
		nc.Region = c.Region
	}
	if c.Namespace != "" {
		nc.Namespace = c.Namespace
	}
	if c.Token != "" {
		nc.SecretID = c.Token.Reveal()
	}
	if !strings.HasPrefix(nc.Address, "unix:") {
		// The client nomad.NewClient would make, with the counting
		// transport around it.
		hc := cleanhttp.DefaultPooledClient()
		tr := hc.Transport.(*http.Transport)
		tr.TLSHandshakeTimeout = 10 * time.Second
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		tr.ForceAttemptHTTP2 = false
		if err := nomad.ConfigureTLS(hc, nc.TLSConfig); err != nil {
			return nil, fmt.Errorf("configuring TLS for the nomad client of %s: %w", nc.Address, err)
		}
		hc.Transport = newTransport(hc.Transport, o)
		nc.HttpClient = hc
	}
	client, err := nomad.NewClient(nc)
	if err != nil {
		return nil, fmt.Errorf("creating the nomad client for %s: %w", nc.Address, err)
	}
	return client, nil
}

// transport counts every request by endpoint and guards the writes.
type transport struct {
	next     http.RoundTripper
	guard    func(context.Context) error
	log      *slog.Logger
	requests *prometheus.CounterVec
	warned   sync.Map // unpinned endpoints already logged
}

func newTransport(next http.RoundTripper, o Options) *transport {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &transport{next: next, guard: o.Guard, log: o.Logger, requests: requestsVec(o.Registerer)}
}

// requestsVec returns spillway_nomad_requests_total, registered into reg:
// several clients of one process count into the same one.
func requestsVec(reg prometheus.Registerer) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spillway_nomad_requests_total",
		Help: "Requests to Nomad's HTTP API, by endpoint (METHOD and path template; \"" + Unpinned + "\" for one Spillway does not pin) and status code (\"error\" when no answer came, \"refused\" when the leader's guard stopped it).",
	}, []string{"endpoint", "code"})
	if reg == nil {
		return v
	}
	if err := reg.Register(v); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
	}
	return v
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	endpoint := Endpoint(r.Method, r.URL.EscapedPath())
	label := endpoint
	if !pinned[endpoint] {
		label = Unpinned
		if _, seen := t.warned.LoadOrStore(endpoint, true); !seen {
			t.log.Warn("calling a Nomad endpoint Spillway does not pin to Nomad "+MinVersion, "endpoint", endpoint)
		}
	}
	if t.guard != nil && r.Method != http.MethodGet && r.Method != http.MethodHead {
		if err := t.guard(r.Context()); err != nil {
			t.requests.WithLabelValues(label, "refused").Inc()
			if r.Body != nil {
				_ = r.Body.Close()
			}
			return nil, fmt.Errorf("%s: %w", endpoint, err)
		}
	}
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		t.requests.WithLabelValues(label, "error").Inc()
		return nil, err
	}
	t.requests.WithLabelValues(label, strconv.Itoa(resp.StatusCode)).Inc()
	return resp, nil
}
