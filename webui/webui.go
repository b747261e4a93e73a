// Package webui owns the web console: its TypeScript source (src/, built
// with Vite by `make webui`) and the built app in dist/, which is committed
// and embedded in the spillway binary, so `go build` and `go install` need
// no Node.
//
// The committed build is kept honest without running npm in `make test`:
// build.stamp holds a SHA-256 of the app's sources and lockfile, and one
// of dist/. `make webui` rewrites it after Vite has built, and
// TestBuildStampMatchesSources (stamp_test.go, part of `go test ./...`)
// fails when either no longer matches what is committed. README.md
// describes the scheme.
package webui

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed all:dist
var dist embed.FS

// Assets returns the built console (index.html at its root).
func Assets() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // dist is embedded at build time
	}
	return sub
}

// contentSecurityPolicy allows only the console's own scripts and styles
// and calls to its own origin (the API and the event stream).
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// Handler serves the console at the root of the site. A path that names a
// built file gets the file (hashed assets are cached for good); any other
// path is a page of the single-page app (/capacity, say) and gets
// index.html, which is never cached, so a new binary's console is picked
// up on the next load. A missing asset (a path with a file extension) is a
// 404, not index.html, so a stale reference fails visibly.
//
// The login link carries its token in the URL's fragment, which browsers
// never send: no request this handler sees holds a token.
func Handler() http.Handler {
	assets := Assets()
	files := http.FileServerFS(assets)
	index, indexErr := fs.ReadFile(assets, "index.html")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
		if name != "" && name != "index.html" {
			if st, err := fs.Stat(assets, name); err == nil && !st.IsDir() {
				if strings.HasPrefix(name, "assets/") {
					h.Set("Cache-Control", "public, max-age=31536000, immutable")
				}
				r2 := r.Clone(r.Context())
				r2.URL.Path = "/" + name
				files.ServeHTTP(w, r2)
				return
			}
			if strings.HasPrefix(name, "assets/") || path.Ext(name) != "" {
				http.Error(w, "no such console file: "+name, http.StatusNotFound)
				return
			}
		}
		if indexErr != nil {
			http.Error(w, "the console was not built into this binary (run make webui)", http.StatusNotFound)
			return
		}
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		_, _ = w.Write(index)
	})
}
