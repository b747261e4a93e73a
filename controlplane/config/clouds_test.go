package config

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestCloudsDefaults(t *testing.T) {
	cfg, _, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Clouds
	if c.Cluster != "spillway" || c.OrphanGrace != 10*time.Minute || c.AWS != (AWSCloud{}) || c.Alicloud != (AlicloudCloud{}) {
		t.Fatalf("defaults: %+v", c)
	}
	if host, scheme := c.Alicloud.Domain(); host != "" || scheme != "" {
		t.Fatalf("Domain of no endpoint: %q %q", host, scheme)
	}
}

func TestCloudsLoad(t *testing.T) {
	file := write(t, `clouds:
  cluster: lab-2
  orphan_grace: 1m
  aws:
    endpoint: http://127.0.0.1:4566
    access_key_id: AKIDEXAMPLE
    secret_access_key: aws-s3cr3t
  alicloud:
    endpoint: http://127.0.0.1:4567
    access_key_id: LTAIEXAMPLE
    access_key_secret: ali-s3cr3t
`)
	cfg, _, err := Load(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Clouds
	if c.Cluster != "lab-2" || c.OrphanGrace != time.Minute || c.AWS.Endpoint != "http://127.0.0.1:4566" ||
		c.AWS.AccessKeyID != "AKIDEXAMPLE" || c.AWS.SecretAccessKey.Reveal() != "aws-s3cr3t" ||
		c.Alicloud.AccessKeyID != "LTAIEXAMPLE" || c.Alicloud.AccessKeySecret.Reveal() != "ali-s3cr3t" {
		t.Fatalf("clouds: %+v", c)
	}
	if host, scheme := c.Alicloud.Domain(); host != "127.0.0.1:4567" || scheme != "http" {
		t.Fatalf("Domain: %q %q", host, scheme)
	}
	if host, scheme := (AlicloudCloud{Endpoint: "https://ecs.cn-hangzhou.aliyuncs.com/"}).Domain(); host != "ecs.cn-hangzhou.aliyuncs.com" || scheme != "https" {
		t.Fatalf("Domain: %q %q", host, scheme)
	}

	var logs strings.Builder
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "clouds", cfg.Clouds)
	for name, s := range map[string]string{
		"%v": fmt.Sprintf("%v", cfg), "%+v": fmt.Sprintf("%+v", cfg), "%#v": fmt.Sprintf("%#v", cfg),
		"Redacted": cfg.Redacted(), "slog": logs.String(),
	} {
		for _, secret := range []string{"aws-s3cr3t", "ali-s3cr3t"} {
			if strings.Contains(s, secret) {
				t.Errorf("%s prints the secret %s: %s", name, secret, s)
			}
		}
	}
	if !strings.Contains(cfg.Redacted(), "secret_access_key: <secret>") || !strings.Contains(cfg.Redacted(), "access_key_secret: <secret>") {
		t.Errorf("Redacted should show <secret>: %s", cfg.Redacted())
	}
}

func TestCloudsFromEnvironment(t *testing.T) {
	t.Setenv("SPILLWAY_CLOUDS_CLUSTER", "prod-bj")
	t.Setenv("SPILLWAY_CLOUDS_ORPHAN_GRACE", "30m")
	t.Setenv("SPILLWAY_CLOUDS_AWS_ACCESS_KEY_ID", "AKIDENV")
	t.Setenv("SPILLWAY_CLOUDS_AWS_SECRET_ACCESS_KEY", "aws-env-secret")
	t.Setenv("SPILLWAY_CLOUDS_ALICLOUD_ACCESS_KEY_ID", "LTAIENV")
	t.Setenv("SPILLWAY_CLOUDS_ALICLOUD_ACCESS_KEY_SECRET", "ali-env-secret")
	cfg, hash, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Clouds
	if c.Cluster != "prod-bj" || c.OrphanGrace != 30*time.Minute || c.AWS.AccessKeyID != "AKIDENV" ||
		c.AWS.SecretAccessKey.Reveal() != "aws-env-secret" || c.Alicloud.AccessKeyID != "LTAIENV" || c.Alicloud.AccessKeySecret.Reveal() != "ali-env-secret" {
		t.Fatalf("clouds from the environment: %+v", c)
	}
	// A changed cloud secret changes the config hash.
	t.Setenv("SPILLWAY_CLOUDS_AWS_SECRET_ACCESS_KEY", "rotated")
	if _, hash2, err := Load("", nil); err != nil || hash2 == hash {
		t.Fatalf("the hash must change with the secret: %v", err)
	}
	// A half-set key pair from the environment names the variable that set it.
	t.Setenv("SPILLWAY_CLOUDS_AWS_SECRET_ACCESS_KEY", "")
	_, _, err = Load("", nil)
	if err == nil || !strings.Contains(err.Error(), `SPILLWAY_CLOUDS_AWS_ACCESS_KEY_ID: key "clouds.aws.access_key_id": needs clouds.aws.secret_access_key too`) {
		t.Fatalf("got %v", err)
	}
}

func TestCloudsErrors(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{"clouds:\n  cluster: Prod_1\n", `:2:3: key "clouds.cluster": want 1-32 lowercase letters, digits and dashes`},
		{"clouds:\n  cluster: \"\"\n", `:2:3: key "clouds.cluster": want 1-32 lowercase letters, digits and dashes`},
		{"clouds:\n  cluster: lab-\n", `:2:3: key "clouds.cluster": want 1-32`},
		{"clouds:\n  cluster: " + strings.Repeat("a", 33) + "\n", `:2:3: key "clouds.cluster": want 1-32`},
		{"clouds:\n  orphan_grace: -1m\n", `:2:3: key "clouds.orphan_grace": must be at least 1m (an instance is listed a moment before the ledger records it), got -1m0s`},
		{"clouds:\n  orphan_grace: 48h\n", `:2:3: key "clouds.orphan_grace": want at most 24h, got 48h0m0s`},
		{"clouds:\n  down_grace: 10s\n", `:2:3: key "clouds.down_grace": want 30s to 24h, got 10s`},
		{"clouds:\n  aws:\n    endpoint: 127.0.0.1:4566\n", `:3:5: key "clouds.aws.endpoint": want an http or https URL, got "127.0.0.1:4566"`},
		{"clouds:\n  aws:\n    endpoint: ftp://x\n", `:3:5: key "clouds.aws.endpoint": want an http or https URL`},
		{"clouds:\n  alicloud:\n    endpoint: 127.0.0.1:4567\n", `:3:5: key "clouds.alicloud.endpoint": want an http or https URL, got "127.0.0.1:4567"`},
		{"clouds:\n  alicloud:\n    endpoint: http://127.0.0.1:4567/ecs\n", `:3:5: key "clouds.alicloud.endpoint": want scheme://host[:port] with no path`},
		{"clouds:\n  aws:\n    access_key_id: AKID\n", `:3:5: key "clouds.aws.access_key_id": needs clouds.aws.secret_access_key too: set both or neither`},
		{"clouds:\n  aws:\n    secret_access_key: hunter2\n", `:3:5: key "clouds.aws.secret_access_key": needs clouds.aws.access_key_id too`},
		{"clouds:\n  alicloud:\n    access_key_id: LTAI\n", `:3:5: key "clouds.alicloud.access_key_id": needs clouds.alicloud.access_key_secret too`},
		{"clouds:\n  alicloud:\n    access_key_secret: hunter2\n", `:3:5: key "clouds.alicloud.access_key_secret": needs clouds.alicloud.access_key_id too`},
		{"clouds:\n  alicloud:\n    scheme: http\n", `:3:5: key "clouds.alicloud.scheme": unknown key`},
	} {
		_, _, err := Load(write(t, c.body), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.body, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("the error prints the secret: %v", err)
		}
	}
}
