package app

import (
	_ "embed"
	"net/http"
)

// openAPIDocument describes every route of the daemon; TestOpenAPIMatchesRoutes
// holds it and the registered routes together.
//
//go:embed openapi.yaml
var openAPIDocument []byte

// OpenAPI returns the daemon's OpenAPI 3 document (YAML).
func OpenAPI() []byte { return append([]byte(nil), openAPIDocument...) }

// serveOpenAPI serves GET /v1/openapi.yaml. It needs no token: the
// document holds nothing secret, and tools fetch it before they have one.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(openAPIDocument)
}
