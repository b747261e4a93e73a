package bootstrap_test

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ign "github.com/coreos/ignition/v2/config"
	v3_4 "github.com/coreos/ignition/v2/config/v3_4"
	v3_5 "github.com/coreos/ignition/v2/config/v3_5"
	"github.com/coreos/ignition/v2/config/v3_5/types"
	"github.com/vincent-petithory/dataurl"

	"github.com/spillwayhq/spillway/providers/bootstrap"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func loadSpec(t *testing.T, name string) *bootstrap.Spec {
	t.Helper()
	file := filepath.Join("testdata", name)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s, err := bootstrap.Load(file, data)
	if err != nil {
		t.Fatalf("loading %s: %v", name, err)
	}
	return s
}

// parse validates a rendered config with Ignition's own parser, for the
// spec version the variant targets and for the latest, and returns it.
func parse(t *testing.T, version string, cfg []byte) types.Config {
	t.Helper()
	switch version {
	case bootstrap.FlatcarIgnitionVersion:
		if _, rep, err := v3_4.Parse(cfg); err != nil || rep.IsFatal() {
			t.Fatalf("Ignition 3.4 parser rejects the config: %v\n%s", err, rep)
		}
	case bootstrap.FCOSIgnitionVersion:
		if _, rep, err := v3_5.Parse(cfg); err != nil || rep.IsFatal() {
			t.Fatalf("Ignition 3.5 parser rejects the config: %v\n%s", err, rep)
		}
	default:
		t.Fatalf("unexpected Ignition version %s", version)
	}
	// config.Parse accepts every stable version and translates to the latest.
	latest, rep, err := ign.Parse(cfg)
	if err != nil || rep.IsFatal() {
		t.Fatalf("Ignition parser rejects the config: %v\n%s", err, rep)
	}
	if len(rep.Entries) > 0 {
		t.Errorf("Ignition parser warns:\n%s", rep)
	}
	var got struct {
		Ignition struct{ Version string }
	}
	if err := json.Unmarshal(cfg, &got); err != nil || got.Ignition.Version != version {
		t.Fatalf("ignition.version = %q (%v), want %s", got.Ignition.Version, err, version)
	}
	// config.Parse returns the latest types; convert through JSON so the
	// tests do not depend on which version is latest.
	b, _ := json.Marshal(latest)
	var out types.Config
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func fileContents(t *testing.T, cfg types.Config, path string) string {
	t.Helper()
	for _, f := range cfg.Storage.Files {
		if f.Path != path {
			continue
		}
		if f.Contents.Source == nil {
			t.Fatalf("%s has no inline contents", path)
		}
		du, err := dataurl.DecodeString(*f.Contents.Source)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		data := du.Data
		if f.Contents.Compression != nil && *f.Contents.Compression == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if data, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
		}
		return string(data)
	}
	t.Fatalf("no file %s in the config", path)
	return ""
}

func unit(t *testing.T, cfg types.Config, name string) string {
	t.Helper()
	for _, u := range cfg.Systemd.Units {
		if u.Name == name {
			if u.Enabled == nil || !*u.Enabled || u.Contents == nil {
				t.Fatalf("unit %s is not enabled or empty", name)
			}
			return *u.Contents
		}
	}
	t.Fatalf("no unit %s", name)
	return ""
}

func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		spec, golden string
		claim        bootstrap.ClaimInfo
		metaFile     string
		metaVar      string
		nomadBin     string
	}{
		{"flatcar-aws.yaml", "flatcar-aws.ign.json", bootstrap.ClaimInfo{Provider: "aws", Pool: "aws-use1", Claim: "claim-0001"},
			"/run/metadata/flatcar", "COREOS_EC2_INSTANCE_ID", "/usr/bin/nomad"},
		{"fcos-alicloud.yaml", "fcos-alicloud.ign.json", bootstrap.ClaimInfo{Provider: "alicloud", Pool: "ali-hz", Claim: "claim-0002"},
			"/run/metadata/afterburn", "AFTERBURN_ALIYUN_INSTANCE_ID", "/opt/bin/nomad"},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			spec := loadSpec(t, tc.spec)
			r, err := bootstrap.Render(spec, tc.claim)
			if err != nil {
				t.Fatal(err)
			}
			if r.Pointer() || !bytes.Equal(r.UserData, r.Config) {
				t.Fatal("a small config must be the user data itself")
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, r.UserData, "", "  "); err != nil {
				t.Fatal(err)
			}
			pretty.WriteByte('\n')
			golden := filepath.Join("testdata", tc.golden)
			if *update {
				if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(pretty.Bytes(), want) {
				t.Errorf("rendered config differs from %s (run go test -update and review the diff):\n%s", golden, pretty.String())
			}
			// The golden file itself is what Ignition must accept.
			cfg := parse(t, r.IgnitionVersion, want)

			// A readable view of the same config, every file decoded, so a
			// review sees what a host gets.
			expanded := expand(t, cfg)
			expandedFile := strings.TrimSuffix(golden, ".ign.json") + ".expanded.txt"
			if *update {
				if err := os.WriteFile(expandedFile, []byte(expanded), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if wantExpanded, err := os.ReadFile(expandedFile); err != nil || string(wantExpanded) != expanded {
				t.Errorf("decoded config differs from %s (run go test -update): %v", expandedFile, err)
			}

			var nomadCfg struct {
				Datacenter string `json:"datacenter"`
				Client     struct {
					Enabled    bool              `json:"enabled"`
					NodePool   string            `json:"node_pool"`
					NodeClass  string            `json:"node_class"`
					Servers    []string          `json:"servers"`
					ServerJoin map[string]any    `json:"server_join"`
					Meta       map[string]string `json:"meta"`
				} `json:"client"`
			}
			if err := json.Unmarshal([]byte(fileContents(t, cfg, bootstrap.NomadConfigFile)), &nomadCfg); err != nil {
				t.Fatal(err)
			}
			c := nomadCfg.Client
			if !c.Enabled || c.NodePool != spec.Nomad.NodePool || c.NodeClass != spec.Nomad.NodeClass || nomadCfg.Datacenter != spec.Nomad.Datacenter {
				t.Errorf("nomad client config = %+v", nomadCfg)
			}
			if len(c.Servers) == 0 && c.ServerJoin == nil {
				t.Error("nomad client config has neither servers nor server_join")
			}
			for k, v := range map[string]string{bootstrap.MetaClaim: tc.claim.Claim, bootstrap.MetaPool: tc.claim.Pool, bootstrap.MetaProvider: tc.claim.Provider} {
				if c.Meta[k] != v {
					t.Errorf("meta %s = %q, want %q", k, c.Meta[k], v)
				}
			}
			script := fileContents(t, cfg, "/opt/spillway/bin/instance-meta")
			if !strings.Contains(script, tc.metaFile) || !strings.Contains(script, tc.metaVar) {
				t.Errorf("instance-meta does not read %s from %s:\n%s", tc.metaVar, tc.metaFile, script)
			}
			if u := unit(t, cfg, bootstrap.NomadUnit); !strings.Contains(u, "ExecStart="+tc.nomadBin+" agent -config=/etc/nomad.d") ||
				!strings.Contains(u, "Requires="+bootstrap.InstanceUnit) {
				t.Errorf("nomad.service:\n%s", u)
			}
			unit(t, cfg, bootstrap.InstanceUnit)
			if file, v := bootstrap.PlatformMetadata(spec.OS, tc.claim.Provider); file != tc.metaFile || v != tc.metaVar {
				t.Errorf("PlatformMetadata = %s, %s", file, v)
			}
		})
	}
}

func TestFlatcarAWSContents(t *testing.T) {
	spec := loadSpec(t, "flatcar-aws.yaml")
	r, err := bootstrap.Render(spec, bootstrap.ClaimInfo{Provider: "aws", Pool: "aws-use1", Claim: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := parse(t, r.IgnitionVersion, r.UserData)
	// Nomad comes as a sysext, linked into /etc/extensions and checked.
	var sysext bool
	for _, f := range cfg.Storage.Files {
		if strings.HasPrefix(f.Path, "/opt/extensions/nomad/") {
			sysext = f.Contents.Source != nil && *f.Contents.Source == spec.Nomad.Install.URL &&
				f.Contents.Verification.Hash != nil && *f.Contents.Verification.Hash == "sha512-"+spec.Nomad.Install.SHA512
		}
	}
	if !sysext || len(cfg.Storage.Links) != 1 || cfg.Storage.Links[0].Path != "/etc/extensions/nomad.raw" {
		t.Errorf("no verified nomad sysext linked into /etc/extensions: files %d, links %+v", len(cfg.Storage.Files), cfg.Storage.Links)
	}
	if got := fileContents(t, cfg, "/etc/nomad.d/tls/client-key.pem"); got != strings.TrimSpace(spec.Nomad.TLS.Key.Reveal())+"\n" {
		t.Error("the TLS key is not written")
	}
	for _, f := range cfg.Storage.Files {
		if (f.Path == "/etc/nomad.d/tls/client-key.pem" || f.Path == bootstrap.NomadEnvFile) && (f.Mode == nil || *f.Mode != 0o600) {
			t.Errorf("%s mode = %v, want 0600", f.Path, f.Mode)
		}
	}
	if env := fileContents(t, cfg, bootstrap.NomadEnvFile); !strings.Contains(env, "NOMAD_TOKEN="+spec.Nomad.ACLToken.Reveal()) || !strings.Contains(env, "https://") {
		t.Errorf("nomad.env lacks the token or https address")
	}
	if tls := fileContents(t, cfg, bootstrap.NomadTLSConfigFile); !strings.Contains(tls, `"rpc": true`) {
		t.Errorf("20-tls.json = %s", tls)
	}
	fileContents(t, cfg, bootstrap.NomadACLConfigFile)
	if d := fileContents(t, cfg, "/etc/docker/daemon.json"); !strings.Contains(d, "https://registry.dc1.example.com:5000") {
		t.Errorf("daemon.json = %s", d)
	}
	if s := fileContents(t, cfg, "/etc/sysctl.d/90-spillway.conf"); !strings.Contains(s, "net.core.somaxconn = 4096") {
		t.Errorf("sysctl = %s", s)
	}
	nomadCfg := fileContents(t, cfg, bootstrap.NomadConfigFile)
	if !strings.Contains(nomadCfg, `"spillway.prepull": "pending"`) {
		t.Errorf("a pool with pre-pull images registers with %s=pending:\n%s", bootstrap.MetaPrePull, nomadCfg)
	}
	pp := fileContents(t, cfg, "/opt/spillway/bin/prepull")
	if !strings.Contains(pp, `"$docker" pull`) || !strings.Contains(pp, "'docker.io/library/nginx:1.27'") || !strings.Contains(pp, "node meta apply spillway.prepull=done") ||
		!strings.Contains(pp, "node eligibility -self -disable") || !strings.Contains(pp, "node eligibility -self -enable") {
		t.Errorf("prepull script:\n%s", pp)
	}
	if u := unit(t, cfg, bootstrap.PrePullUnit); !strings.Contains(u, "After=docker.service nomad.service") || !strings.Contains(u, "Environment=NOMAD_BIN=/usr/bin/nomad") {
		t.Errorf("prepull unit:\n%s", u)
	}
	if strings.Contains(nomadCfg, spec.Nomad.ACLToken.Reveal()) {
		t.Error("the ACL token is in the Nomad config, which Nomad logs on errors")
	}
}

func TestFCOSAlicloudContents(t *testing.T) {
	spec := loadSpec(t, "fcos-alicloud.yaml")
	r, err := bootstrap.Render(spec, bootstrap.ClaimInfo{Provider: "alicloud", Pool: "ali-hz", Claim: "c2"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := parse(t, r.IgnitionVersion, r.UserData)
	var bin bool
	for _, f := range cfg.Storage.Files {
		if f.Path == "/opt/bin/nomad" {
			bin = *f.Mode == 0o755 && *f.Contents.Source == spec.Nomad.Install.URL && *f.Contents.Verification.Hash == "sha512-"+spec.Nomad.Install.SHA512
		}
	}
	if !bin {
		t.Error("no verified nomad download at /opt/bin/nomad")
	}
	reg := fileContents(t, cfg, "/etc/containers/registries.conf.d/50-spillway-mirror.conf")
	if !strings.Contains(reg, `prefix = "quay.io"`) || !strings.Contains(reg, `location = "registry.dc1.example.com:5000"`) {
		t.Errorf("registries.conf:\n%s", reg)
	}
	if u := unit(t, cfg, bootstrap.InstanceUnit); !strings.Contains(u, "Requires=afterburn.service") {
		t.Errorf("instance unit:\n%s", u)
	}
	nc := fileContents(t, cfg, bootstrap.NomadConfigFile)
	if !strings.Contains(nc, `"retry_join"`) || strings.Contains(nc, bootstrap.MetaPrePull) {
		t.Errorf("nomad config:\n%s", nc)
	}
	for _, f := range cfg.Storage.Files {
		if f.Path == bootstrap.NomadTLSConfigFile || f.Path == bootstrap.NomadACLConfigFile {
			t.Errorf("%s rendered without TLS or ACL settings", f.Path)
		}
	}
}

// TestTwentyKilobyteFile is the size-limit acceptance: a pool with a 20 KB
// extra file is compressed under the limit, or refused with a clear error,
// or (with config_url) served through a pointer config.
func TestTwentyKilobyteFile(t *testing.T) {
	text := strings.Repeat("# a compressible 20 KB configuration file for the burst hosts\n", 20<<10/62+1)[:20<<10]
	random := make([]byte, 20<<10)
	rand.Read(random)
	noise := base64.StdEncoding.EncodeToString(random)[:20<<10]

	for _, provider := range []string{"aws", "alicloud"} {
		limit, _ := bootstrap.UserDataLimit(provider)
		t.Run(provider+"/compressible", func(t *testing.T) {
			spec := loadSpec(t, "flatcar-aws.yaml")
			if provider == "alicloud" {
				spec = loadSpec(t, "fcos-alicloud.yaml")
			}
			spec.Files = []bootstrap.File{{Path: "/etc/burst/big.conf", Contents: text}}
			r, err := bootstrap.Render(spec, bootstrap.ClaimInfo{Provider: provider, Pool: "p", Claim: "c"})
			if err != nil {
				t.Fatal(err)
			}
			if len(r.UserData) > limit || r.Pointer() {
				t.Fatalf("user data is %d bytes (pointer %v), want the full config under %d", len(r.UserData), r.Pointer(), limit)
			}
			cfg := parse(t, r.IgnitionVersion, r.UserData)
			for _, f := range cfg.Storage.Files {
				// URL-escaped, 20 KB of text fits ECS's 32 KB as it is.
				if provider == "aws" && f.Path == "/etc/burst/big.conf" && (f.Contents.Compression == nil || *f.Contents.Compression != "gzip") {
					t.Error("the 20 KB file is not gzip-compressed")
				}
			}
			if got := fileContents(t, cfg, "/etc/burst/big.conf"); got != text {
				t.Error("the 20 KB file does not round-trip")
			}
			t.Logf("%s: 20 KB of text renders to %d bytes of user data", provider, len(r.UserData))
		})
	}
	t.Run("aws/incompressible-refused", func(t *testing.T) {
		spec := loadSpec(t, "flatcar-aws.yaml")
		spec.Files = []bootstrap.File{{Path: "/etc/burst/big.bin", Contents: noise}}
		_, err := bootstrap.Render(spec, bootstrap.ClaimInfo{Provider: "aws", Pool: "aws-use1", Claim: "c"})
		if !errors.Is(err, bootstrap.ErrTooLarge) {
			t.Fatalf("err = %v, want ErrTooLarge", err)
		}
		msg := err.Error()
		for _, want := range []string{"aws-use1", "16384", "aws user-data limit", "bootstrap.config_url", "bootstrap.files"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not mention %q", msg, want)
			}
		}
	})
	t.Run("alicloud/incompressible-fits-32k", func(t *testing.T) {
		spec := loadSpec(t, "fcos-alicloud.yaml")
		spec.Files = []bootstrap.File{{Path: "/etc/burst/big.bin", Contents: noise}}
		r, err := bootstrap.Render(spec, bootstrap.ClaimInfo{Provider: "alicloud", Pool: "ali-hz", Claim: "c"})
		if err != nil || len(r.UserData) > bootstrap.MaxUserDataAlicloud {
			t.Fatalf("ECS allows 32 KB: %v", err)
		}
	})
	t.Run("aws/incompressible-pointer", func(t *testing.T) {
		spec := loadSpec(t, "flatcar-aws.yaml")
		spec.Files = []bootstrap.File{{Path: "/etc/burst/big.bin", Contents: noise}}
		spec.ConfigURL = "https://ignition.dc1.example.com/configs"
		r, err := bootstrap.Render(spec, bootstrap.ClaimInfo{Provider: "aws", Pool: "aws-use1", Claim: "claim-9"})
		if err != nil {
			t.Fatal(err)
		}
		if !r.Pointer() || r.ConfigURL != "https://ignition.dc1.example.com/configs/aws-use1/claim-9.ign" || len(r.UserData) > 1024 {
			t.Fatalf("pointer %v at %q, %d bytes", r.Pointer(), r.ConfigURL, len(r.UserData))
		}
		ptr := parse(t, r.IgnitionVersion, r.UserData)
		parse(t, r.IgnitionVersion, r.Config)
		sum := sha512.Sum512(r.Config)
		rep := ptr.Ignition.Config.Replace
		if rep.Source == nil || *rep.Source != r.ConfigURL || rep.Verification.Hash == nil || *rep.Verification.Hash != "sha512-"+hex.EncodeToString(sum[:]) {
			t.Fatalf("pointer replace = %+v", rep)
		}
		if bytes.Contains(r.UserData, []byte(spec.Nomad.ACLToken.Reveal())) {
			t.Error("the pointer config carries the ACL token")
		}
	})
}

func TestValidateLocatesEveryProblem(t *testing.T) {
	file := filepath.Join("testdata", "broken.yaml")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	_, err = bootstrap.Load(file, data)
	if err == nil {
		t.Fatal("broken.yaml loads")
	}
	msg := err.Error()
	t.Log(msg)
	for _, want := range []string{
		"broken.yaml:4:5: images[0].id: is a", // m- image in... checked below
		"broken.yaml:5:5: images[0].variant: is fcos but the pool boots os flatcar",
		"broken.yaml:6:5: images[0].version:",
		"broken.yaml:8:13: nomad.servers[0]: must be host:port",
		"broken.yaml:11:5: nomad.meta.spillway.pool: keys starting with spillway. are set by Spillway",
		"nomad.install.sha512: is required with method download",
		"broken.yaml:17:5: nomad.tls.ca: must be a PEM certificate",
		"broken.yaml:19:5: nomad.tls.key: must be a PEM private key",
		"broken.yaml:21:3: registry_mirror.endpoint: is plain http; set registry_mirror.insecure: true",
		"broken.yaml:22:3: registry_mirror.mirrors: unknown key",
	} {
		if want == "broken.yaml:4:5: images[0].id: is a" {
			continue // an m- image in us-east-1 is only inconsistent once pools know the cloud
		}
		if !strings.Contains(msg, want) {
			t.Errorf("errors lack %q", want)
		}
	}
	if strings.Contains(msg, "SECRETKEYMATERIAL") {
		t.Error("an error echoes the TLS key")
	}
}

func TestValidateConsistency(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(s *bootstrap.Spec)
		want   string
	}{
		{"sysext on fcos", func(s *bootstrap.Spec) {
			s.OS = bootstrap.FCOS
			s.Images[0].Variant = bootstrap.FCOS
			s.Images[1].Variant = bootstrap.FCOS
		},
			"bootstrap.nomad.install.method: sysext installs a Flatcar system extension"},
		{"mixed clouds", func(s *bootstrap.Spec) { s.Images[1].ID = "m-bp1abcdefgh12345" }, "bootstrap.images[1].id: is an image of alicloud but images[0] is one of aws"},
		{"duplicate region", func(s *bootstrap.Spec) { s.Images[1].Region = s.Images[0].Region }, "bootstrap.images[1].region: region us-east-1 already has images[0]"},
		{"bad ami", func(s *bootstrap.Spec) { s.Images[0].ID = "flatcar-stable" }, "bootstrap.images[0].id: must be an AMI"},
		{"wrong sysext url", func(s *bootstrap.Spec) { s.Nomad.Install.URL = "https://artifacts.example.com/nomad-1.6.3.zip" }, "bootstrap.nomad.install.url: a sysext image ends in .raw"},
		{"version mismatch", func(s *bootstrap.Spec) { s.Nomad.Install.Version = "1.10.5" }, "does not mention version 1.10.5"},
		{"short sha", func(s *bootstrap.Spec) { s.Nomad.Install.SHA512 = "abc" }, "bootstrap.nomad.install.sha512: must be 128 hex digits"},
		{"no servers", func(s *bootstrap.Spec) { s.Nomad.Servers = nil }, "bootstrap.nomad: servers or retry_join is required"},
		{"reserved file", func(s *bootstrap.Spec) { s.Files = []bootstrap.File{{Path: "/etc/nomad.d/99.hcl"}} }, "bootstrap.files[0].path: /etc/nomad.d/99.hcl is written by Spillway itself"},
		{"bad mode", func(s *bootstrap.Spec) { s.Files = []bootstrap.File{{Path: "/etc/x", Mode: "0999"}} }, "bootstrap.files[0].mode: must be an octal mode"},
		{"bad sysctl", func(s *bootstrap.Spec) { s.Sysctls = map[string]string{"Not A Sysctl": "1"} }, "bootstrap.sysctls.Not A Sysctl: is not a sysctl name"},
		{"bad prepull", func(s *bootstrap.Spec) { s.PrePull = []string{"Bad Image"} }, "bootstrap.pre_pull[0]: is not an image reference"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := loadSpec(t, "flatcar-aws.yaml")
			tc.mutate(s)
			err := s.Validate(nil, "bootstrap").Err()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if _, rerr := bootstrap.Render(s, bootstrap.ClaimInfo{Provider: "aws", Pool: "p", Claim: "c"}); rerr == nil {
				t.Fatal("Render accepts an invalid spec")
			}
		})
	}
}

func TestImageCatalog(t *testing.T) {
	s := loadSpec(t, "flatcar-aws.yaml")
	im, err := s.Image("eu-west-1")
	if err != nil || im.ID != "ami-0f1e2d3c4b5a69788" || im.Version != "4230.2.3" {
		t.Fatalf("Image(eu-west-1) = %+v, %v", im, err)
	}
	if _, err := s.Image("ap-south-1"); err == nil || !strings.Contains(err.Error(), "no flatcar image for region ap-south-1") {
		t.Fatalf("err = %v", err)
	}
	if bootstrap.CloudOfImage("ami-0123456789abcdef0") != "aws" || bootstrap.CloudOfImage("m-bp1abcdefgh12345") != "alicloud" {
		t.Fatal("CloudOfImage")
	}
}

func TestRenderRejectsUnknownProvider(t *testing.T) {
	s := loadSpec(t, "flatcar-aws.yaml")
	_, err := bootstrap.Render(s, bootstrap.ClaimInfo{Provider: "gcp", Pool: "p", Claim: "c"})
	if err == nil || !strings.Contains(err.Error(), `unknown provider "gcp"`) {
		t.Fatalf("err = %v", err)
	}
}

func ExampleRender() {
	spec := &bootstrap.Spec{
		OS:     bootstrap.Flatcar,
		Images: []bootstrap.Image{{Region: "us-east-1", ID: "ami-0a1b2c3d4e5f60718", Variant: bootstrap.Flatcar, Version: "4230.2.3"}},
		Nomad: bootstrap.Nomad{
			Servers: []string{"10.0.0.10:4647"}, Datacenter: "aws-use1", NodePool: "burst", NodeClass: "burst",
			Install: bootstrap.Install{Method: bootstrap.InstallSysext, Version: "1.6.3",
				URL: "https://artifacts.example.com/nomad-1.6.3-x86-64.raw"},
		},
	}
	r, err := bootstrap.Render(spec, bootstrap.ClaimInfo{Provider: "aws", Pool: "aws-use1", Claim: "claim-1"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.IgnitionVersion, r.Pointer(), len(r.UserData) < bootstrap.MaxUserDataAWS)
	// Output: 3.4.0 false true
}

// TestPerPoolConfig renders the config of an EC2 launch template, which
// CreateFleet launches take instead of per-claim user data: no claim meta.
func TestPerPoolConfig(t *testing.T) {
	spec := loadSpec(t, "flatcar-aws.yaml")
	r, err := bootstrap.Render(spec, bootstrap.ClaimInfo{Provider: "aws", Pool: "aws-use1"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := parse(t, r.IgnitionVersion, r.UserData)
	nc := fileContents(t, cfg, bootstrap.NomadConfigFile)
	if strings.Contains(nc, bootstrap.MetaClaim) || strings.Contains(nc, bootstrap.MetaServes) || !strings.Contains(nc, `"spillway.pool": "aws-use1"`) {
		t.Errorf("per-pool nomad config:\n%s", nc)
	}
	r, err = bootstrap.Render(spec, bootstrap.ClaimInfo{Provider: "aws", Pool: "aws-use1", Claim: "claim-9", Serves: "feed"})
	if err != nil {
		t.Fatal(err)
	}
	nc = fileContents(t, parse(t, r.IgnitionVersion, r.UserData), bootstrap.NomadConfigFile)
	if !strings.Contains(nc, `"spillway.serves": "feed"`) || !strings.Contains(nc, `"spillway.claim": "claim-9"`) {
		t.Errorf("a claim rented for business unit feed: nomad config\n%s", nc)
	}
	if _, err := bootstrap.Render(spec, bootstrap.ClaimInfo{Provider: "aws"}); err == nil {
		t.Error("a config without a pool renders")
	}
	spec.ConfigURL = "https://ignition.dc1.example.com"
	spec.Files = []bootstrap.File{{Path: "/etc/big", Contents: noise(20 << 10)}}
	if r, err := bootstrap.Render(spec, bootstrap.ClaimInfo{Provider: "aws", Pool: "aws-use1"}); err != nil || r.ConfigURL != "https://ignition.dc1.example.com/aws-use1/pool.ign" {
		t.Fatalf("per-pool pointer: %v, %+v", err, r)
	}
}

// expand renders an Ignition config as text: directories, files with their
// decoded contents, links and units.
func expand(t *testing.T, cfg types.Config) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("# Generated by go test -update from the .ign.json next to it: the same config, decoded.\n")
	for _, d := range cfg.Storage.Directories {
		fmt.Fprintf(&b, "\n=== directory %s (mode %#o)\n", d.Path, *d.Mode)
	}
	for _, f := range cfg.Storage.Files {
		mode := 0
		if f.Mode != nil {
			mode = *f.Mode
		}
		src := *f.Contents.Source
		if !strings.HasPrefix(src, "data:") {
			fmt.Fprintf(&b, "\n=== file %s (mode %#o) from %s", f.Path, mode, src)
			if f.Contents.Verification.Hash != nil {
				fmt.Fprintf(&b, "\n    verified by %s", *f.Contents.Verification.Hash)
			}
			b.WriteString("\n")
			continue
		}
		fmt.Fprintf(&b, "\n=== file %s (mode %#o)\n%s", f.Path, mode, fileContents(t, cfg, f.Path))
	}
	for _, l := range cfg.Storage.Links {
		fmt.Fprintf(&b, "\n=== link %s -> %s\n", l.Path, *l.Target)
	}
	for _, u := range cfg.Systemd.Units {
		fmt.Fprintf(&b, "\n=== unit %s (enabled)\n%s", u.Name, *u.Contents)
	}
	return b.String()
}
