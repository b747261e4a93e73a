package lab

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spillwayhq/spillway/controlplane/auth"
	"github.com/spillwayhq/spillway/providers/cloudsim"
)

// startServe runs `spillway serve` against the lab's Nomad and Prometheus.
func (l *Lab) startServe(ctx context.Context) error {
	l.SpillwayURL = fmt.Sprintf("http://127.0.0.1:%d", l.servePort)
	cfg, err := l.ServeConfig()
	if err != nil {
		return err
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(l.Dir, "spillway.yaml")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		return err
	}
	return l.StartServe(ctx)
}

// ConsoleLoginLink is the web console's address with the admin token in
// its fragment: opened, the console moves the token to the tab's session
// storage and clears the address bar. A browser never sends a fragment, so
// the token is in no request line and no server log. Empty without serve.
func (l *Lab) ConsoleLoginLink() string {
	if l.SpillwayURL == "" {
		return ""
	}
	return l.SpillwayURL + "/#token=" + url.QueryEscape(l.APIToken)
}

// ServeConfig is the configuration of the lab's control plane, as a YAML
// document's map: its listener, the lab's Nomad, Prometheus, journal,
// policies, pool files (written on the first call, with LabPools) and
// clouds. A test that runs its own `spillway serve` replicas starts from
// it and changes what it needs (listen, journal, leader).
func (l *Lab) ServeConfig() (map[string]any, error) {
	cfg := map[string]any{
		"api": map[string]any{"tokens": []map[string]any{
			{"name": "lab-admin", "role": "admin", "sha256": auth.Hash(l.APIToken)},
			{"name": "lab-viewer", "role": "viewer", "sha256": auth.Hash(l.ViewerToken)},
			{"name": "lab-operator", "role": "operator", "sha256": auth.Hash(l.OperatorToken)},
			{"name": "alertmanager", "role": "operator", "sha256": auth.Hash(l.alertmanagerToken)},
		}},
		"listen":     fmt.Sprintf("127.0.0.1:%d", l.servePort),
		"log":        map[string]any{"level": "info", "format": "text"},
		"nomad":      map[string]any{"address": l.NomadAddr},
		"prometheus": map[string]any{"address": l.PrometheusURL},
		"journal":    map[string]any{"path": l.JournalPath()},
		// Alertmanager's repeat interval in the lab is 1h.
		"alerts": map[string]any{"ttl": "2h"},
	}
	if l.cloud != nil {
		cfg["clouds"] = l.cloudsConfig()
	}
	poolDir := l.opts.Pools
	if poolDir == "" && l.opts.LabPools {
		var err error
		if poolDir, err = l.writePools(); err != nil {
			return nil, err
		}
	}
	for key, dir := range map[string]string{"policies": l.opts.Policies, "pools": poolDir} {
		if dir == "" {
			continue
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, err
		}
		cfg[key] = map[string]any{"dir": abs}
	}
	return cfg, nil
}

// cloudsConfig is the control plane's clouds key: the simulator's
// endpoint and first account of each cloud, and the lab's cluster.
func (l *Lab) cloudsConfig() map[string]any {
	sim := l.cloud.sim
	clouds := map[string]any{"cluster": CloudCluster, "orphan_grace": "1m"}
	if o := l.opts.Cloud; o != nil && o.DownGrace > 0 {
		clouds["down_grace"] = o.DownGrace.String()
	}
	if a, ok := sim.Credentials(cloudsim.CloudAWS); ok {
		clouds["aws"] = map[string]any{"endpoint": sim.URL(), "access_key_id": a.AccessKeyID, "secret_access_key": a.SecretAccessKey}
	}
	if a, ok := sim.Credentials(cloudsim.CloudAlicloud); ok {
		// The config takes a URL for both clouds; sim.Endpoint gives the
		// ECS SDK's bare host:port.
		clouds["alicloud"] = map[string]any{"endpoint": sim.URL(), "access_key_id": a.AccessKeyID, "access_key_secret": a.SecretAccessKey}
	}
	return clouds
}

// StartServe starts the control plane (again, after KillServe) with the
// same configuration and journal, and waits until it is ready.
func (l *Lab) StartServe(ctx context.Context) error {
	l.progress("control plane: starting on %s", l.SpillwayURL)
	l.mu.Lock()
	env := l.serveEnv
	l.mu.Unlock()
	p, err := l.startProcess("spillway", l.opts.Spillway, []string{"serve", "--config", filepath.Join(l.Dir, "spillway.yaml")}, env, nil)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.serve = p
	l.mu.Unlock()
	return l.waitFor(ctx, "control plane", 30*time.Second, []*process{p}, func(ctx context.Context) error {
		return httpOK(ctx, l.SpillwayURL+"/readyz")
	})
}

// SetServeEnv sets extra environment variables (KEY=value) for the next
// StartServe, such as a crash failpoint; none clears them.
func (l *Lab) SetServeEnv(env ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.serveEnv = env
}

// WaitServeExit waits until the control plane's process has exited (a
// failpoint killed it, say), or ctx ends.
func (l *Lab) WaitServeExit(ctx context.Context) error {
	select {
	case <-l.serveDone():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ServeExited reports whether the control plane's process has exited.
func (l *Lab) ServeExited() bool {
	select {
	case <-l.serveDone():
		return true
	default:
		return false
	}
}

// serveDone is closed when the control plane's process has exited.
func (l *Lab) serveDone() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.serve == nil {
		done := make(chan struct{})
		close(done)
		return done
	}
	return l.serve.done
}

// KillServe kills the control plane with SIGKILL, as a crash would.
func (l *Lab) KillServe() {
	l.mu.Lock()
	p := l.serve
	l.mu.Unlock()
	if p == nil {
		return
	}
	l.progress("control plane: killed")
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// ServePID is the control plane's process ID (0 when it is not running),
// for tests that read its resources from /proc.
func (l *Lab) ServePID() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.serve == nil || l.serve.cmd.Process == nil {
		return 0
	}
	return l.serve.cmd.Process.Pid
}

// JournalPath is the control plane's journal in the lab.
func (l *Lab) JournalPath() string { return filepath.Join(l.Dir, "spillway.db") }
