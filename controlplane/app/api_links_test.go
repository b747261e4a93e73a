package app

import (
	"net/http"
	"strings"
	"testing"

	"github.com/spillwayhq/spillway/controlplane/config"
	"github.com/spillwayhq/spillway/controlplane/controller"
)

// withLink gives the daemon a shared pool, so it runs the controller, and
// a dedicated line of 1 Gbit/s filled to 80%.
func withLink(t *testing.T) func(*config.Config) {
	return withPools(t, unitA, `apiVersion: spillway/v1
kind: SharedPool
name: shared
selector: {node_pool: shared}
`, `apiVersion: spillway/v1
kind: Link
name: dc1-ali
bandwidth: 1Gbps
`)
}

// TestLinkRoutes: GET /v1/links and GET /v1/pools show a link's
// bandwidth and use; an operator changes its bandwidth, which is
// journaled and survives a restart; a bad bandwidth is a 422 naming the
// field, a viewer is refused and an unknown link is a 404.
func TestLinkRoutes(t *testing.T) {
	h := newAPIHarness(t, withLink(t))
	var v linksView
	h.ok("GET", "/v1/links", "view", "", &v)
	if len(v.Links) != 1 || v.Links[0].Name != "dc1-ali" || v.Links[0].Bandwidth != 1e9 || v.Links[0].Carries != 800e6 || v.Links[0].TargetUtilization != 80 {
		t.Fatalf("links %+v", v.Links)
	}
	for _, tc := range []struct {
		token, body string
		code        int
		want        string
	}{
		{"op", `{"bandwidth":"-1Gbps","reason":"x"}`, http.StatusUnprocessableEntity, `"bandwidth: must not be negative`},
		{"op", `{"bandwidth":"lots","reason":"x"}`, http.StatusUnprocessableEntity, `"bandwidth: expected a bandwidth`},
		{"op", `{"reason":"x"}`, http.StatusUnprocessableEntity, `"bandwidth: required`},
		{"op", `{"bandwidth":"10Gbps"}`, http.StatusBadRequest, "reason: required"},
		{"op", `{"bandwidth":"10Gbps","reason":"x","extra":1}`, http.StatusBadRequest, "unknown field"},
		{"view", `{"bandwidth":"10Gbps","reason":"x"}`, http.StatusForbidden, ""},
	} {
		code, body := h.do("POST", "/v1/links/dc1-ali", tc.token, tc.body)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("POST %s as %s: %d %s, want %d with %q", tc.body, tc.token, code, body, tc.code, tc.want)
		}
	}
	if code, body := h.do("POST", "/v1/links/nope", "op", `{"bandwidth":"10Gbps","reason":"x"}`); code != http.StatusNotFound || !strings.Contains(body, "unknown_link") {
		t.Errorf("unknown link: %d %s", code, body)
	}
	var set struct {
		Link    controller.LinkView `json:"link"`
		Changed bool                `json:"changed"`
	}
	h.ok("POST", "/v1/links/dc1-ali", "op", `{"bandwidth":"10 Gbit/s","reason":"holiday peak"}`, &set)
	if !set.Changed || set.Link.Bandwidth != 10e9 || set.Link.Configured != 1e9 || set.Link.Set == nil || set.Link.Set.By != "oncall" {
		t.Fatalf("after the change: %+v", set)
	}
	var pools capacityView
	h.ok("GET", "/v1/pools", "view", "", &pools)
	if len(pools.Links) != 1 || pools.Links[0].Bandwidth != 10e9 {
		t.Fatalf("GET /v1/pools links %+v", pools.Links)
	}
	var evs eventsPage
	h.ok("GET", "/v1/events?kind=link.set", "view", "", &evs)
	if len(evs.Events) != 1 || !strings.Contains(evs.Events[0].Message, "link dc1-ali set to 10Gbps (was 1Gbps) by oncall: holiday peak") {
		t.Fatalf("journal: %+v", evs.Events)
	}
	h.restart()
	h.ok("GET", "/v1/links", "view", "", &v)
	if v.Links[0].Bandwidth != 10e9 || v.Links[0].Set == nil || v.Links[0].Set.Reason != "holiday peak" {
		t.Fatalf("after a restart: %+v", v.Links[0])
	}
}
