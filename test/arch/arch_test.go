// Package arch holds the layout's import rules as a test: what each
// top-level concept may import, so the architecture stays easy to see.
package arch

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/spillwayhq/spillway/"

// rules: a package under the prefix on the left must not import (outside
// its tests) a package under any prefix on the right.
var rules = []struct {
	pkg    string
	banned []string
}{
	{"policies", []string{"controlplane", "providers", "internal/lab", "internal/demo"}},
	{"pools", []string{"controlplane", "internal/lab", "internal/demo"}},
	{"providers", []string{"controlplane", "internal/lab", "internal/demo"}},
	// The daemon runs none of the development tools or the CLI's client.
	{"controlplane", []string{"internal/lab", "internal/demo", "internal/tools", "internal/apiclient", "cmd"}},
}

func TestImportRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "../../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], module)
		if strings.HasSuffix(pkg, "test") {
			continue // a helper of tests (journaltest, clustertest): tests may import anything
		}
		for _, r := range rules {
			if pkg != r.pkg && !strings.HasPrefix(pkg, r.pkg+"/") {
				continue
			}
			checked++
			for _, imp := range fields[1:] {
				imp = strings.TrimPrefix(imp, module)
				for _, b := range r.banned {
					if imp == b || strings.HasPrefix(imp, b+"/") {
						t.Errorf("%s imports %s: %s may not import %s", pkg, imp, r.pkg, b)
					}
				}
			}
		}
	}
	if checked < 20 {
		t.Fatalf("checked only %d packages: is the module layout what this test expects?", checked)
	}
}
