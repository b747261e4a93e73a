package config

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "spillway.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExampleIsValid(t *testing.T) {
	cfg, _, err := Load("../../examples/spillway.yaml", nil)
	if err != nil {
		t.Fatalf("examples/spillway.yaml: %v", err)
	}
	if cfg.Listen != "127.0.0.1:8480" || cfg.Prometheus.Timeout != 10*time.Second {
		t.Fatalf("unexpected example values: %+v", cfg)
	}
}

func TestPrecedenceFileEnvFlags(t *testing.T) {
	file := write(t, "listen: 127.0.0.1:1111\nlog: {level: debug}\nprometheus: {timeout: 3s}\n")
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.String("listen", "127.0.0.1:8480", "")
	fs.String("log-level", "info", "")
	flags := []Flag{{Key: "listen", Flag: fs.Lookup("listen")}, {Key: "log.level", Flag: fs.Lookup("log-level")}}

	// The file beats the defaults; flags left unset do not override it.
	cfg, _, err := Load(file, flags)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:1111" || cfg.Log.Level != "debug" || cfg.Prometheus.Timeout != 3*time.Second || cfg.Log.Format != "text" {
		t.Fatalf("file values: %+v", cfg)
	}

	// The environment beats the file.
	t.Setenv("SPILLWAY_LISTEN", "127.0.0.1:2222")
	t.Setenv("SPILLWAY_PROMETHEUS_TIMEOUT", "7s")
	cfg, _, err = Load(file, flags)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:2222" || cfg.Prometheus.Timeout != 7*time.Second {
		t.Fatalf("environment values: %+v", cfg)
	}

	// Flags beat the environment.
	if err := fs.Parse([]string{"--listen", "127.0.0.1:3333", "--log-level", "warn"}); err != nil {
		t.Fatal(err)
	}
	cfg, _, err = Load(file, flags)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:3333" || cfg.Log.Level != "warn" {
		t.Fatalf("flag values: %+v", cfg)
	}
}

func TestStrictFileErrors(t *testing.T) {
	file := write(t, `listen: 127.0.0.1:8480
nomad:
  adress: http://x
prometheus:
  timeout: soon
log:
  level: loud
`)
	_, _, err := Load(file, nil)
	if err == nil {
		t.Fatal("want an error")
	}
	want := []string{
		file + `:3:3: key "nomad.adress": unknown key (did you mean "address"?)`,
		file + `:5:12: key "prometheus.timeout": expected a duration such as 30s or 5m, got "soon"`,
	}
	got := err.Error()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("error lacks %q:\n%s", w, got)
		}
	}
	// Semantic checks run once the file decodes.
	file = write(t, "log:\n  level: loud\nnomad:\n  address: ftp://x\n")
	_, _, err = Load(file, nil)
	for _, w := range []string{
		file + `:2:3: key "log.level": want one of debug, info, warn, error; got "loud"`,
		file + `:4:3: key "nomad.address": want an http or https URL, got "ftp://x"`,
	} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
}

func TestBadEnvironmentIsNamed(t *testing.T) {
	t.Setenv("SPILLWAY_LOG_FORMAT", "xml")
	_, _, err := Load("", nil)
	if err == nil || !strings.Contains(err.Error(), `SPILLWAY_LOG_FORMAT: key "log.format": want text or json, got "xml"`) {
		t.Fatalf("got %v", err)
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	const token = "s3cr3t-acl-token"
	file := write(t, "nomad:\n  token: "+token+"\nprometheus:\n  bearer_token: "+token+"\n")
	cfg, hash, err := Load(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Nomad.Token.Reveal() != token {
		t.Fatalf("the token must load, got %q", cfg.Nomad.Token.Reveal())
	}
	var logs strings.Builder
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "nomad", cfg.Nomad, "token", cfg.Nomad.Token)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "token", cfg.Nomad.Token)
	for name, s := range map[string]string{
		"%v": fmt.Sprintf("%v", cfg), "%+v": fmt.Sprintf("%+v", cfg), "%#v": fmt.Sprintf("%#v", cfg),
		"Redacted": cfg.Redacted(), "slog": logs.String(),
	} {
		if strings.Contains(s, token) {
			t.Errorf("%s prints the secret: %s", name, s)
		}
	}
	if !strings.Contains(cfg.Redacted(), "<secret>") {
		t.Errorf("Redacted should show <secret>: %s", cfg.Redacted())
	}
	// A changed secret changes the hash.
	_, hash2, err := Load(write(t, "nomad:\n  token: other\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if hash == hash2 {
		t.Error("the config hash must change when a secret changes")
	}
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte("listen: 127.0.0.1:1\nnomad: {address: http://a}\n"))
	f.Add([]byte("prometheus:\n  timeout: 1s\n  extra: [1, 2]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "f.yaml")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, _, err := Load(p, nil)
		if err == nil && cfg == nil {
			t.Fatal("no error and no config")
		}
		if err != nil && !strings.Contains(err.Error(), p) && !strings.Contains(err.Error(), "SPILLWAY_") && !strings.Contains(err.Error(), "environment") {
			t.Fatalf("error does not name the file: %v", err)
		}
	})
}

func TestTLSNeedsBothFiles(t *testing.T) {
	file := write(t, "tls:\n  cert_file: /nonexistent/cert.pem\n")
	_, _, err := Load(file, nil)
	if err == nil || !strings.Contains(err.Error(), `key "tls": set both cert_file and key_file`) ||
		!strings.Contains(err.Error(), `key "tls.cert_file": cannot read`) {
		t.Fatalf("got %v", err)
	}
}
