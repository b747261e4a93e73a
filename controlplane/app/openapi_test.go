package app

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// registeredPatterns finds every route the package registers: each call
// handle("METHOD /path", ...) in its non-test sources.
func registeredPatterns(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var out []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) < 3 {
				return true
			}
			if id, ok := call.Fun.(*ast.Ident); !ok || id.Name != "handle" {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				t.Errorf("%s: handle with a pattern that is not a string literal", fset.Position(call.Pos()))
				return true
			}
			p, _ := strconv.Unquote(lit.Value)
			out = append(out, p)
			return true
		})
	}
	slices.Sort(out)
	return out
}

// TestOpenAPIMatchesRoutes validates the OpenAPI document and checks that
// it describes exactly the routes the daemon serves.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(OpenAPI())
	if err != nil {
		t.Fatalf("loading openapi.yaml: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not valid OpenAPI 3: %v", err)
	}

	var documented []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			documented = append(documented, method+" "+path)
			if op.OperationID == "" {
				t.Errorf("%s %s: no operationId", method, path)
			}
			// Authenticated operations document 401.
			if op.Security == nil || len(*op.Security) > 0 {
				if op.Responses.Status(401) == nil {
					t.Errorf("%s %s: needs a token but does not document 401", method, path)
				}
			}
		}
	}
	slices.Sort(documented)
	registered := registeredPatterns(t)
	if len(registered) < 20 {
		t.Fatalf("found only %d registered routes: %v", len(registered), registered)
	}
	for _, p := range registered {
		if !slices.Contains(documented, p) {
			t.Errorf("route %q is served but not in openapi.yaml", p)
		}
	}
	for _, p := range documented {
		if !slices.Contains(registered, p) {
			t.Errorf("openapi.yaml documents %q, which is not served", p)
		}
	}

	// Every documented route reaches its own handler in the daemon's mux.
	cfg := testConfig(t)
	a, err := New(&cfg, "test", slog.New(slog.DiscardHandler), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	param := regexp.MustCompile(`\{[^}]+\}`)
	for _, p := range documented {
		method, path, _ := strings.Cut(p, " ")
		req := httptest.NewRequest(method, param.ReplaceAllString(path, "x1"), nil)
		if _, pattern := a.mux.Handler(req); pattern != p {
			t.Errorf("%s %s reaches pattern %q, want %q", method, path, pattern, p)
		}
	}
}
