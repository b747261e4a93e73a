package webui

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Result()
}

// TestPagesGetTheApp: the root and every client-side route get index.html,
// never cached, under a strict content security policy.
func TestPagesGetTheApp(t *testing.T) {
	for _, p := range []string{"/", "/index.html", "/capacity", "/capacity?x=1", "/no/such/page", "/../../etc/passwd"} {
		res := get(t, p)
		if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("%s: %d %s, want the app's index.html", p, res.StatusCode, res.Header.Get("Content-Type"))
		}
		body, _ := io.ReadAll(res.Body)
		if !strings.Contains(string(body), `<div id="app">`) {
			t.Fatalf("%s: not the app's index.html:\n%s", p, body)
		}
		if res.Header.Get("Cache-Control") != "no-cache" || !strings.Contains(res.Header.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Fatalf("%s: headers %v", p, res.Header)
		}
	}
}

func TestAssetsAreServedAndCached(t *testing.T) {
	var asset string
	_ = fs.WalkDir(Assets(), "assets", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && asset == "" {
			asset = p
		}
		return nil
	})
	if asset == "" {
		t.Fatal("dist/assets is empty: run make webui")
	}
	res := get(t, "/"+asset)
	if res.StatusCode != http.StatusOK || !strings.Contains(res.Header.Get("Cache-Control"), "immutable") {
		t.Fatalf("%s: %d, cache %q", asset, res.StatusCode, res.Header.Get("Cache-Control"))
	}
	for _, missing := range []string{"/assets/missing-0000.js", "/favicon.ico"} {
		if res := get(t, missing); res.StatusCode != http.StatusNotFound {
			t.Fatalf("missing %s got %d, want 404", missing, res.StatusCode)
		}
	}
}
