package lab

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/spillwayhq/spillway/pools"
)

// The lab's Nomad topology: every host is a Nomad client agent on loopback.
const (
	// Datacenter is the Nomad datacenter of every lab host.
	Datacenter = "dc1"
	// SharedPool is the node pool of the hosts business units lend out.
	SharedPool = "shared"
	// InternalClass is the node class of data-centre hosts.
	InternalClass = "internal"

	// Node meta keys the lab sets on internal hosts.
	MetaBusinessUnit = pools.MetaBusinessUnit
	MetaTier         = pools.MetaTier
	MetaServes       = pools.MetaServes
)

// Tier values of MetaTier.
const (
	TierOwn    = "own"
	TierShared = "shared"
)

// hclString quotes s as an HCL string literal.
func hclString(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `"`, `\"`)
	s = strings.ReplaceAll(s, "\n", `\n`)
	s = strings.ReplaceAll(s, "${", "$${")
	s = strings.ReplaceAll(s, "%{", "%%{")
	return `"` + s + `"`
}

var agentTmpl = template.Must(template.New("agent").Funcs(template.FuncMap{"q": hclString}).Parse(`# Rendered by the Spillway lab.
name                 = {{q .Name}}
datacenter           = {{q .Datacenter}}
data_dir             = {{q .DataDir}}
bind_addr            = "127.0.0.1"
log_level            = "INFO"
disable_update_check = true

ports {
  http = {{.HTTP}}
  rpc  = {{.RPC}}
  serf = {{.Serf}}
}

advertise {
  http = "127.0.0.1:{{.HTTP}}"
  rpc  = "127.0.0.1:{{.RPC}}"
  serf = "127.0.0.1:{{.Serf}}"
}

telemetry {
  prometheus_metrics         = true
  publish_allocation_metrics = true
  publish_node_metrics       = true
  collection_interval        = "2s"
}
{{if .Server}}
server {
  enabled          = true
  bootstrap_expect = 1
}
{{else}}
client {
  enabled           = true
  servers           = [{{q .Servers}}]
  node_pool         = {{q .NodePool}}
  node_class        = {{q .NodeClass}}
  network_interface = "lo"
  min_dynamic_port  = {{.DynamicLow}}
  max_dynamic_port  = {{.DynamicHigh}}
  cpu_total_compute = {{.CPU}}
  memory_total_mb   = {{.MemoryMB}}
  gc_interval       = "10s"

  meta {
{{- range .Meta}}
    {{q .K}} = {{q .V}}
{{- end}}
  }

  options {
    # No cloud metadata probes: the lab's hosts are on loopback.
    "fingerprint.denylist" = "env_aws,env_gce,env_azure,env_digitalocean,consul,vault"
    "driver.allowlist"     = "raw_exec"
  }
}

plugin "raw_exec" {
  config {
    enabled = true
  }
}
{{end}}`))

type kv struct{ K, V string }

// agentConfig is what the agent template needs.
type agentConfig struct {
	Name, Datacenter, DataDir string
	HTTP, RPC, Serf           int
	Server                    bool
	Servers                   string
	NodePool, NodeClass       string
	CPU, MemoryMB             int
	// DynamicLow and DynamicHigh bound the client's dynamic ports (see
	// portSet.dynamicBlock).
	DynamicLow, DynamicHigh int
	Meta                    []kv
}

func (c agentConfig) render() ([]byte, error) {
	var b bytes.Buffer
	if err := agentTmpl.Execute(&b, c); err != nil {
		return nil, fmt.Errorf("rendering nomad config for %s: %w", c.Name, err)
	}
	return b.Bytes(), nil
}

// Host is one internal data-centre host of the lab: a Nomad client agent.
type Host struct {
	Name         string
	BusinessUnit string
	NodePool     string
	Tier         string
	HTTPAddr     string

	// proc is the host's Nomad agent (FreezeHost, ThawHost).
	proc *process
}

func sortedMeta(m map[string]string) []kv {
	out := make([]kv, 0, len(m))
	for k, v := range m {
		out = append(out, kv{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].K < out[j].K })
	return out
}

// startAgent writes the agent's config and starts it. Nomad runs without
// AWS_CA_BUNDLE, which breaks its client fingerprinting.
func (l *Lab) startAgent(c agentConfig) (*process, error) {
	dir := filepath.Join(l.Dir, "nomad", c.Name)
	c.DataDir = filepath.Join(dir, "data")
	if err := os.MkdirAll(c.DataDir, 0o755); err != nil {
		return nil, err
	}
	cfg, err := c.render()
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "agent.hcl")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return nil, err
	}
	return l.startProcess("nomad-"+c.Name, l.bins.nomad, []string{"agent", "-config", cfgPath}, nil,
		[]string{"AWS_CA_BUNDLE", "NOMAD_ADDR", "NOMAD_TOKEN", "NOMAD_REGION", "NOMAD_NAMESPACE"})
}
