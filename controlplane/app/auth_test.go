package app

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/spillwayhq/spillway/controlplane/auth"
)

func TestWritesNeedTheRightRole(t *testing.T) {
	cfg := testConfig(t)
	cfg.API.Tokens = []auth.Token{
		{Name: "dashboards", Role: auth.Viewer, SHA256: auth.Hash("view-token")},
		{Name: "oncall", Role: auth.Operator, SHA256: auth.Hash("op-token")},
		{Name: "platform", Role: auth.Admin, SHA256: auth.Hash("admin-token")},
	}
	a, err := New(&cfg, "test", slog.New(slog.DiscardHandler), Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	for _, c := range []struct {
		name       string
		set        func(*http.Request)
		wantStatus int
		wantCode   string
	}{
		{"no token", func(*http.Request) {}, http.StatusUnauthorized, "unauthenticated"},
		{"wrong token", func(r *http.Request) { r.Header.Set("Authorization", "Bearer nope") }, http.StatusUnauthorized, "unauthenticated"},
		{"viewer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer view-token") }, http.StatusForbidden, "forbidden"},
		{"operator", func(r *http.Request) { r.Header.Set("Authorization", "Bearer op-token") }, http.StatusForbidden, "forbidden"},
		{"admin", func(r *http.Request) { r.Header.Set("Authorization", "Bearer admin-token") }, http.StatusOK, ""},
		{"admin over basic auth", func(r *http.Request) { r.SetBasicAuth("alertmanager", "admin-token") }, http.StatusOK, ""},
	} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/reload", nil)
		c.set(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body apiError
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != c.wantStatus || body.Error.Code != c.wantCode {
			t.Errorf("%s: %d %q, want %d %q", c.name, resp.StatusCode, body.Error.Code, c.wantStatus, c.wantCode)
		}
	}
}

func TestNoTokensConfiguredLocksTheAPI(t *testing.T) {
	cfg := testConfig(t)
	a, err := New(&cfg, "test", slog.New(slog.DiscardHandler), Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/v1/reload", nil)
	req.Header.Set("Authorization", "Bearer anything")
	a.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("got %d, want 401", rec.Code)
	}
	// Health and metrics stay open for probes and scrapers.
	for _, path := range []string{"/healthz", "/metrics"} {
		rec := httptest.NewRecorder()
		a.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK {
			t.Errorf("%s: %d", path, rec.Code)
		}
	}
}
