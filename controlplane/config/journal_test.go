package config

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestJournalDriver(t *testing.T) {
	const dsn = "postgres://spillway:pa55w0rd@db.internal:5432/spillway?sslmode=verify-full"
	cfg, _, err := Load(write(t, "journal:\n  driver: postgres\n  dsn: "+dsn+"\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Journal.Driver != "postgres" || cfg.Journal.DSN.Reveal() != dsn {
		t.Fatalf("journal: %+v", cfg.Journal)
	}
	for name, s := range map[string]string{"%+v": fmt.Sprintf("%+v", cfg), "Redacted": cfg.Redacted()} {
		if strings.Contains(s, "pa55w0rd") {
			t.Errorf("%s prints the DSN's password: %s", name, s)
		}
	}
	if cfg, _, err := Load("", nil); err != nil || cfg.Journal.Driver != "sqlite" {
		t.Fatalf("default driver: %+v, %v", cfg, err)
	}

	// The DSN may come from the environment (a Nomad template, a secret store).
	t.Setenv("SPILLWAY_JOURNAL_DRIVER", "postgres")
	t.Setenv("SPILLWAY_JOURNAL_DSN", "host=db user=spillway password='a b' dbname=spillway")
	if cfg, _, err := Load("", nil); err != nil || cfg.Journal.DSN.Reveal() == "" {
		t.Fatalf("DSN from the environment: %+v, %v", cfg, err)
	}
	t.Setenv("SPILLWAY_JOURNAL_DRIVER", "")
	t.Setenv("SPILLWAY_JOURNAL_DSN", "")

	for _, c := range []struct{ body, want string }{
		{"journal:\n  driver: postgres\n", `key "journal.dsn": required with journal.driver postgres`},
		{"journal:\n  driver: mysql\n", `key "journal.driver": want sqlite or postgres, got "mysql"`},
		{"journal:\n  driver: sqlite\n  path: \"\"\n", `key "journal.path": required`},
		{"journal:\n  driver: postgres\n  dsn: mysql://u:hunter2@h/db\n", `key "journal.dsn": want a postgres:// URL`},
		{"journal:\n  driver: postgres\n  dsn: hunter2\n", `key "journal.dsn": want a postgres:// URL`},
	} {
		_, _, err := Load(write(t, c.body), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.body, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("the error prints the DSN: %v", err)
		}
	}
}

func TestLeader(t *testing.T) {
	cfg, _, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Leader.Enabled || cfg.Leader.TTL != 10*time.Second || cfg.Leader.RenewInterval != 0 {
		t.Fatalf("defaults: %+v", cfg.Leader)
	}
	pg := "journal:\n  driver: postgres\n  dsn: postgres://db/spillway\n"
	cfg, _, err = Load(write(t, pg+"leader:\n  enabled: true\n  ttl: 20s\n  renew_interval: 5s\n"), nil)
	if err != nil || !cfg.Leader.Enabled || cfg.Leader.TTL != 20*time.Second || cfg.Leader.RenewInterval != 5*time.Second {
		t.Fatalf("leader: %+v, %v", cfg.Leader, err)
	}
	for _, c := range []struct{ body, want string }{
		{"leader:\n  enabled: true\n", `key "leader.enabled": needs journal.driver postgres`},
		{pg + "leader:\n  enabled: true\n  ttl: 1s\n", `key "leader.ttl": want 2s to 10m`},
		{pg + "leader:\n  enabled: true\n  ttl: 10s\n  renew_interval: 6s\n", `key "leader.renew_interval": want at most half of leader.ttl (5s)`},
		// The keys of the Nomad variable lock say what happened to them.
		{pg + "leader:\n  enabled: true\n  path: spillway/leader\n", `:6:3: key "leader.path": removed: the leader's lease is in the PostgreSQL journal`},
		{pg + "leader:\n  enabled: true\n  lock_delay: 2s\n", `key "leader.lock_delay": removed: the leader's lease is in the PostgreSQL journal`},
	} {
		if _, _, err := Load(write(t, c.body), nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.body, err, c.want)
		}
	}
}
