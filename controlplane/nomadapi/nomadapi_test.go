package nomadapi_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	nomad "github.com/hashicorp/nomad/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spillwayhq/spillway/controlplane/config"
	"github.com/spillwayhq/spillway/controlplane/nomadapi"
	"github.com/spillwayhq/spillway/internal/lab"
	"github.com/spillwayhq/spillway/internal/lab/labtest"
)

func TestEndpoint(t *testing.T) {
	for _, c := range []struct{ method, path, want string }{
		{"GET", "/v1/nodes", "GET /v1/nodes"},
		{"GET", "/v1/node/5c6b1a8e-0f1d-4c1b-9d7e-1b2c3d4e5f60", "GET /v1/node/:node"},
		{"POST", "/v1/node/5c6b1a8e-0f1d-4c1b-9d7e-1b2c3d4e5f60/drain", "POST /v1/node/:node/drain"},
		{"GET", "/v1/node/pools", "GET /v1/node/pools"},
		{"GET", "/v1/node/pool/bu-a/nodes", "GET /v1/node/pool/:pool/nodes"},
		{"PUT", "/v1/job/demo/scale", "PUT /v1/job/:job/scale"},
		{"GET", "/v1/job/web%2Fapi/allocations", "GET /v1/job/:job/allocations"},
		{"GET", "/v1/jobs", "GET /v1/jobs"},
		{"GET", "/v1/var/spillway/leader", "GET /v1/var/:path"},
		{"GET", "/v1/client/allocation/abc/stats", "GET /v1/client/allocation/:alloc/stats"},
		{"GET", "/v1/event/stream", "GET /v1/event/stream"},
	} {
		if got := nomadapi.Endpoint(c.method, c.path); got != c.want {
			t.Errorf("Endpoint(%s %s) = %q, want %q", c.method, c.path, got, c.want)
		}
	}
	for _, e := range nomadapi.Endpoints {
		method, path, ok := strings.Cut(e, " ")
		if !ok || nomadapi.Endpoint(method, path) != e || !nomadapi.Pinned(e) {
			t.Errorf("pinned endpoint %q does not classify as itself", e)
		}
	}
	if nomadapi.Pinned("GET /v1/var/:path") {
		t.Error("variables are not pinned: Spillway keeps its lease in the journal")
	}
}

// TestClientCountsAndGuards runs the client against a real Nomad (v1.6.3
// from `make tools`): every request is counted by endpoint, and a write is
// stopped before it is sent while the guard refuses.
func TestClientCountsAndGuards(t *testing.T) {
	l := labtest.Start(t, lab.Options{Spillway: "/bin/false"})
	reg := prometheus.NewRegistry()
	refuse := errors.New("term over")
	var allow atomic.Bool
	nc, err := nomadapi.New(config.Nomad{Address: l.NomadAddr}, nomadapi.Options{Registerer: reg, Guard: func(context.Context) error {
		if allow.Load() {
			return nil
		}
		return refuse
	}})
	if err != nil {
		t.Fatal(err)
	}
	// Reads pass the guard.
	if _, _, err := nc.Nodes().List(nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := nc.Jobs().Info("nope", nil); err == nil {
		t.Fatal("reading a missing job succeeded")
	}
	job := nomad.NewBatchJob("guarded", "guarded", "global", 50)
	job.AddDatacenter("*")
	job.AddTaskGroup(nomad.NewTaskGroup("g", 1).AddTask(nomad.NewTask("t", "raw_exec").SetConfig("command", "/bin/true")))
	if _, _, err := nc.Jobs().Register(job, nil); !errors.Is(err, refuse) {
		t.Fatalf("a write while the guard refuses: %v", err)
	}
	// Nothing reached Nomad.
	if _, _, err := nc.Jobs().Info("guarded", nil); err == nil {
		t.Fatal("the refused job was registered")
	}
	allow.Store(true)
	if _, _, err := nc.Jobs().Register(job, nil); err != nil {
		t.Fatalf("a write while the guard allows: %v", err)
	}
	for _, c := range []struct {
		endpoint, code string
		want           float64
	}{
		{"GET /v1/nodes", "200", 1},
		{"GET /v1/job/:job", "404", 2},
		{"PUT /v1/jobs", "refused", 1},
		{"PUT /v1/jobs", "200", 1},
	} {
		got := testutil.ToFloat64(counter(t, reg, c.endpoint, c.code))
		if got != c.want {
			t.Errorf("spillway_nomad_requests_total{endpoint=%q,code=%q} = %v, want %v", c.endpoint, c.code, got, c.want)
		}
	}
	// A call outside the pinned table is counted as such.
	var v []any
	_, err = nc.Raw().Query("/v1/acl/policies", &v, nil)
	t.Logf("GET /v1/acl/policies (ACLs are off in the lab): %v", err)
	if got := testutil.ToFloat64(counter(t, reg, nomadapi.Unpinned, "")); got != 1 {
		t.Errorf("an unpinned call counted %v times as %q", got, nomadapi.Unpinned)
	}
}

// counter is one series of spillway_nomad_requests_total as a collector;
// code "" sums every code.
func counter(t *testing.T, reg *prometheus.Registry, endpoint, code string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	v := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "spillway_nomad_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["endpoint"] == endpoint && (code == "" || labels["code"] == code) {
				v += m.GetCounter().GetValue()
			}
		}
	}
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "x", Help: "x"}, func() float64 { return v })
}
