package config

import (
	"strings"
	"testing"
	"time"
)

func TestScaleOutGrace(t *testing.T) {
	cfg, _, err := Load(write(t, "listen: 127.0.0.1:8480\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ScaleOut.Grace != 5*time.Minute {
		t.Fatalf("default scale_out.grace %s, want 5m", cfg.ScaleOut.Grace)
	}
	cfg, _, err = Load(write(t, "scale_out:\n  grace: 90s\n"), nil)
	if err != nil || cfg.ScaleOut.Grace != 90*time.Second {
		t.Fatalf("scale_out.grace: %s (%v), want 1m30s", cfg.ScaleOut.Grace, err)
	}
	t.Setenv("SPILLWAY_SCALE_OUT_GRACE", "10m")
	if cfg, _, err = Load(write(t, "scale_out:\n  grace: 90s\n"), nil); err != nil || cfg.ScaleOut.Grace != 10*time.Minute {
		t.Fatalf("SPILLWAY_SCALE_OUT_GRACE: %s (%v), want 10m", cfg.ScaleOut.Grace, err)
	}
}

func TestScaleOutGraceErrors(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{"scale_out:\n  grace: 10s\n", `:2:3: key "scale_out.grace": want 30s to 24h, got 10s`},
		{"scale_out:\n  grace: 48h\n", `:2:3: key "scale_out.grace": want 30s to 24h, got 48h0m0s`},
		{"scale_out:\n  grace: soon\n", `scale_out.grace`},
		{"scale_out:\n  deadline: 1m\n", `key "scale_out.deadline": unknown key`},
	} {
		_, _, err := Load(write(t, c.body), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.body, err, c.want)
		}
	}
}
