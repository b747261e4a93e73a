package lab

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/internal/tools"
	"github.com/spillwayhq/spillway/providers/bootstrap"
	"github.com/spillwayhq/spillway/providers/cloudsim"
)

func testSpec(t *testing.T, os bootstrap.Variant) *bootstrap.Spec {
	t.Helper()
	s := &bootstrap.Spec{
		OS:     os,
		Images: []bootstrap.Image{{Region: "us-east-1", ID: "ami-0a1b2c3d4e5f60718", Variant: os, Version: "4230.2.3"}},
		Nomad: bootstrap.Nomad{
			Servers: []string{"10.1.2.3:4647"}, Datacenter: "aws-use1", NodePool: "burst-aws", NodeClass: "burst",
			Meta: map[string]string{"team": "payments"},
			Install: bootstrap.Install{Method: bootstrap.InstallDownload, Version: "1.6.3",
				URL:    "https://artifacts.dc1.example.com/nomad/1.6.3/nomad",
				SHA512: strings.Repeat("ab", 64)},
			ACLToken: bootstrap.NewSecret("lab-test-token-0000"),
			TLS: &bootstrap.TLS{
				CA:   "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
				Cert: "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----",
				Key:  bootstrap.NewSecret("-----BEGIN PRIVATE KEY-----\nKEYBODY\n-----END PRIVATE KEY-----"),
			},
		},
		Sysctls: map[string]string{"vm.max_map_count": "262144"},
		Files:   []bootstrap.File{{Path: "/etc/burst/big.conf", Contents: strings.Repeat("compress me\n", 2000)}},
	}
	if os == bootstrap.FCOS {
		s.Images[0] = bootstrap.Image{Region: "cn-hangzhou", ID: "m-bp1fcos42x64spillway", Variant: os, Version: "42.20250705.3.0"}
	}
	return s
}

// TestInterpretIgnition boots a rendered config into an instance directory
// without starting Nomad: files (gzip-compressed ones too) are written,
// the metadata is emulated, the instance-ID unit runs the rendered script,
// and the Nomad config is rewritten for loopback with the claim's meta
// kept. The result passes `nomad config validate` when Nomad is present.
func TestInterpretIgnition(t *testing.T) {
	for _, tc := range []struct {
		os       bootstrap.Variant
		provider string
		id       string
	}{
		{bootstrap.Flatcar, cloudsim.CloudAWS, "i-0123456789abcdef0"},
		{bootstrap.FCOS, cloudsim.CloudAlicloud, "i-bp1abcdefghij0123456"},
	} {
		t.Run(string(tc.os), func(t *testing.T) {
			r, err := bootstrap.Render(testSpec(t, tc.os), bootstrap.ClaimInfo{Provider: tc.provider, Pool: "pool-1", Claim: "claim-1"})
			if err != nil {
				t.Fatal(err)
			}
			l := &Lab{Dir: t.TempDir(), NomadRPC: "127.0.0.1:4647", opts: Options{HostCPU: 1000, HostMemoryMB: 512}}
			c := &cloudLab{l: l, ctx: context.Background(), cpu: 1000, mem: 512}
			h := &cloudHost{CloudHost: CloudHost{ID: tc.id, Dir: filepath.Join(l.Dir, "nomad", tc.id)}}
			ev := cloudsim.InstanceEvent{InstanceID: tc.id, Provider: tc.provider, Region: "r-1", Zone: "z-1", PrivateIP: "10.16.0.1", UserData: r.UserData}

			cfg, err := c.ignitionConfig(ev.UserData)
			if err != nil {
				t.Fatal(err)
			}
			root := filepath.Join(h.Dir, "root")
			skipped, err := writeStorage(root, cfg.Storage)
			if err != nil {
				t.Fatal(err)
			}
			if len(skipped) != 1 || !strings.Contains(skipped[0], "/opt/bin/nomad") {
				t.Errorf("skipped = %v, want the nomad download", skipped)
			}
			if b, err := os.ReadFile(filepath.Join(root, "etc/burst/big.conf")); err != nil || len(b) != 24000 {
				t.Errorf("big.conf: %d bytes, %v", len(b), err)
			}
			if st, err := os.Stat(filepath.Join(root, bootstrap.NomadEnvFile)); err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("nomad.env: %v %v", st, err)
			}
			if err := writeMetadata(root, ev); err != nil {
				t.Fatal(err)
			}
			units := enabledUnits(cfg.Systemd)
			nu, ok := findNomadUnit(units)
			if !ok || nu != bootstrap.NomadUnit {
				t.Fatalf("nomad unit = %q", nu)
			}
			before := unitsBefore(units, nu)
			if len(before) != 1 || before[0] != bootstrap.InstanceUnit {
				t.Fatalf("units before nomad: %v", before)
			}
			var log strings.Builder
			if after := unitsAfter(units, nu); len(after) != 0 {
				t.Errorf("units after nomad without pre-pull images: %v", after)
			}
			if err := runUnit(context.Background(), root, before[0], units[before[0]], nil, 10*time.Second, &log); err != nil {
				t.Fatalf("%v\n%s", err, log.String())
			}
			inst, err := os.ReadFile(filepath.Join(root, bootstrap.InstanceConfigFile))
			if err != nil {
				t.Fatalf("%v\n%s", err, log.String())
			}
			var fragment struct {
				Name   string
				Client struct{ Meta map[string]string }
			}
			if err := json.Unmarshal(inst, &fragment); err != nil || fragment.Name != tc.id || fragment.Client.Meta[bootstrap.MetaInstance] != tc.id {
				t.Fatalf("50-instance.json = %s (%v)", inst, err)
			}

			args, addr, err := c.nomadArgs(h, root, units[nu])
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(addr, "http://127.0.0.1:") {
				t.Errorf("agent address %q", addr)
			}
			all := ""
			for i := 2; i < len(args); i += 2 {
				b, err := os.ReadFile(args[i])
				if err != nil {
					t.Fatal(err)
				}
				all += string(b)
			}
			for _, gone := range []string{"10.1.2.3", "0.0.0.0", "/var/lib/nomad", `"tls"`, `"acl"`, "lab-test-token", "KEYBODY"} {
				if strings.Contains(all, gone) {
					t.Errorf("rewritten config still has %s:\n%s", gone, all)
				}
			}
			for _, kept := range []string{`"spillway.claim": "claim-1"`, `"spillway.pool": "pool-1"`, `"spillway.provider": "` + tc.provider + `"`,
				`"spillway.instance": "` + tc.id + `"`, `"team": "payments"`, `"node_pool": "burst-aws"`, `"node_class": "burst"`,
				`"datacenter": "aws-use1"`, `"127.0.0.1:4647"`, "env_aws", h.Dir + "/data"} {
				if !strings.Contains(all, kept) {
					t.Errorf("rewritten config lacks %s:\n%s", kept, all)
				}
			}
			if bin, err := tools.Nomad.Path(); err == nil {
				out, err := exec.Command(bin, append([]string{"config", "validate"}, configPaths(args)...)...).CombinedOutput()
				if err != nil {
					t.Errorf("nomad config validate: %v\n%s", err, out)
				}
			}
		})
	}
}

func configPaths(args []string) []string {
	var out []string
	for i := 1; i+1 < len(args); i += 2 {
		out = append(out, args[i+1])
	}
	return out
}

// TestPointerConfig follows a pointer config to the full config on a
// loopback config server, checking its sha512, as Ignition would.
func TestPointerConfig(t *testing.T) {
	var full []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(full) }))
	defer srv.Close()
	spec := testSpec(t, bootstrap.Flatcar)
	spec.ConfigURL = srv.URL + "/configs"
	spec.Files = []bootstrap.File{{Path: "/etc/burst/random.bin", Contents: pseudoRandom(30 << 10)}}
	r, err := bootstrap.Render(spec, bootstrap.ClaimInfo{Provider: "aws", Pool: "pool-1", Claim: "claim-1"})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Pointer() {
		t.Fatal("a 30 KB random file should need a pointer config")
	}
	full = r.Config
	c := &cloudLab{l: &Lab{}, ctx: context.Background()}
	cfg, err := c.ignitionConfig(r.UserData)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Storage.Files) < 5 || len(cfg.Systemd.Units) < 2 {
		t.Fatalf("followed config has %d files, %d units", len(cfg.Storage.Files), len(cfg.Systemd.Units))
	}
	full = append([]byte(nil), r.Config...)
	full[len(full)-2] = ' ' // tampered
	if _, err := c.ignitionConfig(r.UserData); err == nil || !strings.Contains(err.Error(), "sha512") {
		t.Fatalf("tampered config: err = %v", err)
	}
}

func pseudoRandom(n int) string {
	b := make([]byte, n)
	x := uint64(88172645463325252)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"[x%62]
	}
	return string(b)
}
