package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/spillwayhq/spillway/controlplane/nomadapi"
)

// assertNomadCallsPinned reads spillway_nomad_requests_total from a
// `spillway serve` that has run a suite on the lab's Nomad (v1.6.3, the
// oldest Nomad Spillway supports): every endpoint it called is one of the
// pinned endpoints (nomadapi.Endpoints), and Nomad answered none of them
// with 405 Method Not Allowed or 501 Not Implemented. logs is serve's log,
// which names an unpinned endpoint.
func assertNomadCallsPinned(t *testing.T, serveURL, logs string) {
	t.Helper()
	resp, err := http.Get(serveURL + "/metrics")
	if err != nil {
		t.Fatalf("reading %s/metrics: %v", serveURL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parsing %s/metrics: %v", serveURL, err)
	}
	mf := families["spillway_nomad_requests_total"]
	if mf == nil {
		t.Fatalf("%s exports no spillway_nomad_requests_total", serveURL)
	}
	called := map[string]bool{}
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		if m.GetCounter().GetValue() == 0 {
			continue
		}
		endpoint, code := labels["endpoint"], labels["code"]
		called[endpoint] = true
		if endpoint == nomadapi.Unpinned {
			var named []string
			for _, line := range strings.Split(logs, "\n") {
				if strings.Contains(line, "does not pin") {
					named = append(named, line)
				}
			}
			t.Errorf("serve called a Nomad endpoint that is not pinned to Nomad %s:\n%s", nomadapi.MinVersion, strings.Join(named, "\n"))
		}
		if code == "405" || code == "501" {
			t.Errorf("Nomad answered %s %s: the endpoint is not what Nomad %s serves", endpoint, code, nomadapi.MinVersion)
		}
	}
	for _, want := range []string{"GET /v1/nodes", "GET /v1/job/:job", "GET /v1/status/leader"} {
		if !called[want] {
			t.Errorf("serve never called %s; it called %v", want, called)
		}
	}
	t.Logf("Nomad endpoints called, all pinned: %d", len(called))
}
