package app

import (
	"io"
	"io/fs"
	"net/http"
	"strings"
	"testing"

	"github.com/spillwayhq/spillway/webui"
)

// get fetches path from the daemon's real handler, with no token.
func (h *apiHarness) get(method, path string) *http.Response {
	h.t.Helper()
	req, _ := http.NewRequest(method, h.srv.URL+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestConsoleIsServedAtTheRoot: the embedded console answers / and its
// client-side routes with index.html and serves its assets, with no token;
// the API's paths stay the API's, an unknown one a JSON 404.
func TestConsoleIsServedAtTheRoot(t *testing.T) {
	h := newAPIHarness(t)
	for _, p := range []string{"/", "/overview", "/capacity", "/capacity?tier=own"} {
		resp := h.get("GET", p)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(body), `<div id="app">`) {
			t.Fatalf("GET %s: %d %s, want the console's index.html:\n%s", p, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	var asset string
	_ = fs.WalkDir(webui.Assets(), "assets", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".js") {
			asset = p
		}
		return nil
	})
	if resp := h.get("GET", "/"+asset); asset == "" || resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), "javascript") {
		t.Fatalf("the console's script %q: %d %s", asset, resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	for _, c := range []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{"GET", "/v1/nothing", http.StatusNotFound, "not_found", ""},
		{"GET", "/v1", http.StatusNotFound, "not_found", ""},
		{"GET", "/v1/pools/nothing/more", http.StatusNotFound, "not_found", ""},
		{"GET", "/v1/reload", http.StatusMethodNotAllowed, "method_not_allowed", "POST"},
		{"POST", "/v1/nothing", http.StatusNotFound, "not_found", ""},
		{"POST", "/capacity", http.StatusMethodNotAllowed, "method_not_allowed", "GET, HEAD"},
	} {
		resp := h.get(c.method, c.path)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != c.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || errorCode(t, string(body)) != c.code {
			t.Errorf("%s %s: %d %s %s, want %d %s", c.method, c.path, resp.StatusCode, resp.Header.Get("Content-Type"), body, c.status, c.code)
		}
		if c.allow != "" && resp.Header.Get("Allow") != c.allow {
			t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, resp.Header.Get("Allow"), c.allow)
		}
	}
	// The routes that are not the API's stay theirs.
	if resp := h.get("GET", "/healthz"); resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %d", resp.StatusCode)
	}
	if resp := h.get("GET", "/metrics"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("/metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if code, body := h.do("GET", "/v1/status", "view", ""); code != http.StatusOK {
		t.Errorf("/v1/status: %d %s", code, body)
	}
}

// TestAPIWhoami: each role's token gets its name and role; a wrong one a 401.
func TestAPIWhoami(t *testing.T) {
	h := newAPIHarness(t)
	for token, want := range map[string]whoami{
		"view":  {Name: "dashboards", Role: "viewer"},
		"op":    {Name: "oncall", Role: "operator"},
		"admin": {Name: "platform", Role: "admin"},
	} {
		var got whoami
		h.ok("GET", "/v1/whoami", token, "", &got)
		if got != want {
			t.Errorf("whoami with %s: %+v, want %+v", token, got, want)
		}
	}
	for _, token := range []string{"wrong", ""} {
		if code, body := h.do("GET", "/v1/whoami", token, ""); code != http.StatusUnauthorized || errorCode(t, body) == "" {
			t.Errorf("token %q: %d %s, want 401", token, code, body)
		}
	}
}
