package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"
)

// AlertRulesFile is the name of the lab's Prometheus rule file, in the
// Prometheus directory of the lab.
const AlertRulesFile = "rules.yml"

// demoRules are the demo service's alerting rules: what an operator would
// page on, and what Spillway's alert rules react to.
const demoRules = `groups:
  - name: demo
    rules:
      - alert: DemoHighLatency
        expr: histogram_quantile(0.95, sum by (le) (rate(spillway_demo_request_duration_seconds_bucket[30s]))) > 0.25
        for: 10s
        labels:
          severity: page
          service: demo
        annotations:
          summary: The demo service's p95 latency is above 250ms.
      - alert: DemoSheddingLoad
        expr: sum(rate(spillway_demo_requests_total{code="503"}[30s])) > 1
        for: 10s
        labels:
          severity: page
          service: demo
        annotations:
          summary: The demo service is shedding requests with 503.
`

func (l *Lab) startPrometheus(ctx context.Context) error {
	ports, err := l.freePorts(1)
	if err != nil {
		return err
	}
	l.PrometheusURL = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	dir := filepath.Join(l.Dir, "prometheus")
	for _, sub := range []string{"data", "targets"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	scrapes := []map[string]any{
		{
			// Debian's Prometheus is built without Nomad service discovery, so
			// the lab follows Nomad's service catalogue and writes file_sd targets.
			"job_name": "demo",
			"file_sd_configs": []map[string]any{{
				"files":            []string{filepath.Join(dir, "targets", "*.json")},
				"refresh_interval": "5s",
			}},
		},
		{
			"job_name":     "nomad",
			"metrics_path": "/v1/metrics",
			"params":       map[string][]string{"format": {"prometheus"}},
			"static_configs": []map[string]any{{
				"targets": []string{trimScheme(l.NomadAddr)},
			}},
		},
	}
	if l.servePort != 0 {
		scrapes = append(scrapes, map[string]any{
			"job_name":       "spillway",
			"static_configs": []map[string]any{{"targets": []string{fmt.Sprintf("127.0.0.1:%d", l.servePort)}}},
		})
	}
	cfg := map[string]any{
		"global": map[string]any{"scrape_interval": "2s", "evaluation_interval": "2s"},
		"alerting": map[string]any{"alertmanagers": []map[string]any{{
			"static_configs": []map[string]any{{"targets": []string{trimScheme(l.AlertmanagerURL)}}},
		}}},
		"rule_files":     []string{AlertRulesFile},
		"scrape_configs": scrapes,
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, data, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, AlertRulesFile), []byte(demoRules), 0o644); err != nil {
		return err
	}
	l.promArgs = []string{
		"--config.file=" + cfgPath,
		"--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--storage.tsdb.retention.time=1d",
		"--web.listen-address=" + trimScheme(l.PrometheusURL),
		"--web.enable-lifecycle",
	}
	return l.StartPrometheus(ctx)
}

// StartPrometheus starts the lab's Prometheus (again, after
// StopPrometheus) on the same address and data, and waits until it is ready.
func (l *Lab) StartPrometheus(ctx context.Context) error {
	l.progress("prometheus: starting on %s", l.PrometheusURL)
	p, err := l.startProcess("prometheus", l.bins.prometheus, l.promArgs, nil, nil)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.prometheus = p
	l.mu.Unlock()
	return l.waitFor(ctx, "prometheus", 60*time.Second, []*process{p}, func(ctx context.Context) error {
		return httpOK(ctx, l.PrometheusURL+"/-/ready")
	})
}

// StopPrometheus stops the lab's Prometheus, for metric outage tests.
func (l *Lab) StopPrometheus() {
	l.mu.Lock()
	p := l.prometheus
	l.mu.Unlock()
	if p != nil {
		l.progress("prometheus: stopping")
		p.stop(5 * time.Second)
	}
}

func (l *Lab) startAlertmanager(ctx context.Context) error {
	ports, err := l.freePorts(1)
	if err != nil {
		return err
	}
	l.AlertmanagerURL = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	dir := filepath.Join(l.Dir, "alertmanager")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return err
	}
	cfg := map[string]any{
		"route": map[string]any{
			"receiver":        "spillway",
			"group_by":        []string{"alertname", "service"},
			"group_wait":      "1s",
			"group_interval":  "5s",
			"repeat_interval": "1h",
		},
		"receivers": []map[string]any{{
			"name": "spillway",
			"webhook_configs": []map[string]any{{
				"url":           l.webhookURL(),
				"send_resolved": true,
				"http_config": map[string]any{
					"authorization": map[string]any{"type": "Bearer", "credentials": l.alertmanagerToken},
				},
			}},
		}},
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		return err
	}
	l.progress("alertmanager: starting on %s", l.AlertmanagerURL)
	p, err := l.startProcess("alertmanager", l.bins.alertmanager, []string{
		"--config.file=" + cfgPath,
		"--storage.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + trimScheme(l.AlertmanagerURL),
		"--cluster.listen-address=", // no gossip: one instance on loopback
	}, nil, nil)
	if err != nil {
		return err
	}
	return l.waitFor(ctx, "alertmanager", 60*time.Second, []*process{p}, func(ctx context.Context) error {
		return httpOK(ctx, l.AlertmanagerURL+"/-/ready")
	})
}

// webhookURL is where Alertmanager sends notifications: the control
// plane's Alertmanager receiver.
func (l *Lab) webhookURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/v1/alerts/alertmanager", l.servePort)
}

func trimScheme(u string) string {
	for _, p := range []string{"http://", "https://"} {
		if len(u) > len(p) && u[:len(p)] == p {
			return u[len(p):]
		}
	}
	return u
}
