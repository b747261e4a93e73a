// Package deploy_test checks deploy/spillway.nomad.hcl against the real
// Nomad and the Go code it configures: it is formatted, a Nomad server
// accepts it, it runs several replicas with leader election on a
// PostgreSQL journal, and the configuration its template renders loads.
package deploy_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/hashicorp/hcl/v2/hclparse"
	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/controlplane/config"
	"github.com/spillwayhq/spillway/internal/lab"
	"github.com/spillwayhq/spillway/internal/lab/labtest"
	"github.com/spillwayhq/spillway/internal/tools"
	"github.com/spillwayhq/spillway/internal/tools/toolstest"
)

const jobFile = "spillway.nomad.hcl"

func nomadBin(t *testing.T) string {
	t.Helper()
	toolstest.Need(t, tools.Nomad)
	p, err := tools.Nomad.Path()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFormatted(t *testing.T) {
	out, err := exec.Command(nomadBin(t), "fmt", "-check", "-list=true", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("nomad fmt -check deploy/: %v\nnot formatted:\n%s", err, out)
	}
}

func TestPolicyParses(t *testing.T) {
	f, diags := hclparse.NewParser().ParseHCLFile("spillway.policy.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	// Least privilege: the leader's lease is in the journal, so the
	// policy grants no variables beyond the job's own (which a workload
	// identity reads without any policy).
	if strings.Contains(string(f.Bytes), "variables") {
		t.Error("the ACL policy grants variables; the leader election needs none")
	}
}

// TestJobValidates asks a real Nomad server to validate the job, then
// checks what it parsed.
func TestJobValidates(t *testing.T) {
	bin := nomadBin(t)
	l := labtest.Start(t, lab.Options{Spillway: "/bin/false"})
	// As deploy/README.md says: the job's namespace comes first.
	if _, err := l.Nomad().Namespaces().Register(&nomad.Namespace{Name: "spillway"}, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "job", "validate", jobFile)
	cmd.Env = append(os.Environ(), "NOMAD_ADDR="+l.NomadAddr, "NOMAD_TOKEN=", "NOMAD_NAMESPACE=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nomad job validate: %v\n%s", err, out)
	}

	src, err := os.ReadFile(jobFile)
	if err != nil {
		t.Fatal(err)
	}
	job, err := l.Nomad().Jobs().ParseHCL(string(src), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(job.TaskGroups) != 1 {
		t.Fatalf("%d groups", len(job.TaskGroups))
	}
	g := job.TaskGroups[0]
	if *g.Count < 2 {
		t.Errorf("the job runs %d replicas; high availability needs 2 or more", *g.Count)
	}
	task := g.Tasks[0]
	if task.Identity == nil || !task.Identity.Env {
		t.Error("the task must expose its workload identity as NOMAD_TOKEN")
	}
	if len(task.Templates) != 1 {
		t.Fatalf("%d templates", len(task.Templates))
	}
	cfg := renderConfig(t, *task.Templates[0].EmbeddedTmpl)
	if !cfg.Leader.Enabled || cfg.Journal.Driver != "postgres" || cfg.Leader.TTL+cfg.Leader.RenewInterval > 15*time.Second {
		t.Errorf("rendered config: leader %+v, journal driver %q; want leader election on PostgreSQL", cfg.Leader, cfg.Journal.Driver)
	}
	if cfg.Journal.DSN.Reveal() != sampleDSN {
		t.Errorf("the DSN did not survive the template: got a %d-byte value", len(cfg.Journal.DSN.Reveal()))
	}
	if len(cfg.API.Tokens) != 1 || cfg.API.Tokens[0].Name != "ops" {
		t.Errorf("api tokens: %+v", cfg.API.Tokens)
	}
}

// A DSN with characters YAML would misread unless the template quotes it.
const sampleDSN = `host=db.internal port=5432 user=spillway password='p@ss: #w"rd' dbname=spillway sslmode=verify-full`

// renderConfig executes the job's template the way Nomad's would, with
// sample variable values, and loads the result as the daemon would.
func renderConfig(t *testing.T, tmpl string) *config.Config {
	t.Helper()
	vars := map[string]string{
		"journal_dsn":        sampleDSN,
		"prometheus_address": "http://prometheus.internal:9090",
		"api_tokens":         `[{"name":"ops","role":"admin","sha256":"` + strings.Repeat("ab", 32) + `"}]`,
	}
	tp, err := template.New("spillway.yaml").Funcs(template.FuncMap{
		"env": func(k string) string {
			return map[string]string{"attr.unique.network.ip-address": "10.0.0.5", "NOMAD_NAMESPACE": "spillway"}[k]
		},
		"nomadVar": func(path string) map[string]string {
			if path != "nomad/jobs/spillway" {
				t.Errorf("the template reads variable %q, not the job's own nomad/jobs/spillway", path)
			}
			return vars
		},
		"toJSON": func(s string) (string, error) {
			b, err := json.Marshal(s)
			return string(b), err
		},
	}).Parse(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := tp.Execute(&b, nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, d := range []string{"policies", "pools"} {
		if err := os.MkdirAll(filepath.Join(dir, "local", "rules", d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The template names /local/rules/...; point it at the test's copy.
	rendered := strings.ReplaceAll(b.String(), "/local/rules", filepath.Join(dir, "local", "rules"))
	file := filepath.Join(dir, "spillway.yaml")
	if err := os.WriteFile(file, []byte(rendered), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.Load(file, nil)
	if err != nil {
		t.Fatalf("the rendered configuration does not load: %v\n%s", err, rendered)
	}
	return cfg
}
