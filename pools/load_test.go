package pools

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/internal/strictyaml"
	"github.com/spillwayhq/spillway/providers"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestLoadExamples(t *testing.T) {
	cfg, err := LoadDir("examples")
	if err != nil {
		t.Fatalf("examples do not load:\n%v", err)
	}
	if len(cfg.BusinessUnits) != 3 || cfg.Shared == nil || len(cfg.CloudPools) != 2 {
		t.Fatalf("got %d business units, shared %v, %d cloud pools; want 3, a shared pool, 2",
			len(cfg.BusinessUnits), cfg.Shared != nil, len(cfg.CloudPools))
	}
	feed, ok := cfg.BusinessUnit("feed")
	if !ok || feed.Lending.Share != 10 || feed.Borrowing.Quota != 40 || feed.Priority != 90 {
		t.Fatalf("feed = %+v", feed)
	}
	if got := feed.LendCap(95); got != 9 {
		t.Errorf("10%% of 95 hosts = %d, want 9", got)
	}
	if cfg.Shared.Lease != 2*time.Hour || cfg.Shared.ReclaimNotice != 5*time.Minute || cfg.Shared.LenderMeta != MetaBusinessUnit {
		t.Errorf("shared pool = %+v", cfg.Shared)
	}
	aws, ok := cfg.CloudPool("aws-use1")
	if !ok || aws.Provider != ProviderAWS || aws.Warm.Hosts != 4 {
		t.Fatalf("aws pool = %+v", aws)
	}
	pp := aws.ProviderPool()
	if len(pp.Offerings) != 3*3*2 || pp.ImageID != "ami-0a1b2c3d4e5f60718" || pp.Strategy != providers.LaunchFleet {
		t.Fatalf("aws provider pool: %d offerings, image %q, strategy %q", len(pp.Offerings), pp.ImageID, pp.Strategy)
	}
	if o := pp.Offerings[0]; o.Subnet != "subnet-0a1b2c3d4e5f60001" || o.CapacityType != providers.CapacitySpot || o.Price != 0.13 {
		t.Errorf("first offering = %+v", o)
	}
	ali, _ := cfg.CloudPool("ali-bj")
	if ali.Currency != "CNY" || ali.Offerings[0].Weight != 1 || ali.TimeToReady != 110*time.Second {
		t.Errorf("ali pool defaults: %+v", ali)
	}
	if l, ok := cfg.Link(ali.Link); !ok || l.Bandwidth != 1e9 || l.TargetUtilization != 80 || l.Carries(l.Bandwidth) != 800e6 {
		t.Errorf("ali pool's link %q = %+v", ali.Link, l)
	}
	if got := cfg.PoolsBehind("dc1-ali-bj"); len(got) != 1 || got[0] != "ali-bj" {
		t.Errorf("pools behind dc1-ali-bj = %v", got)
	}
	lim := cfg.Limits(map[string]int{"feed": 100, "search": 40, "video": 10})
	if lim.Quota["search"] != 20 || lim.LendCap["search"] != 6 || lim.LendCap["video"] != 2 || !lim.Overcommit["video"] {
		t.Errorf("limits = %+v", lim)
	}
}

// TestLoadBroken checks the full error report for the broken files against
// a golden file: every error, each with file:line:column and field path.
func TestLoadBroken(t *testing.T) {
	_, err := LoadDir(filepath.Join("testdata", "broken"))
	if err == nil {
		t.Fatal("broken files loaded without error")
	}
	var es strictyaml.Errors
	if !errors.As(err, &es) {
		t.Fatalf("error is %T, want strictyaml.Errors", err)
	}
	lineRe := regexp.MustCompile(`^testdata/broken/[a-z0-9-]+\.yaml:\d+:\d+: `)
	for _, e := range es {
		if !lineRe.MatchString(e.Error()) {
			t.Errorf("error without file:line:column: %q", e.Error())
		}
	}
	got := err.Error() + "\n"
	golden := filepath.Join("testdata", "broken.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("reading golden file (run go test -update): %v", err)
	}
	if got != string(want) {
		t.Errorf("errors differ from %s (run go test ./pools -update and review the diff)\ngot:\n%s", golden, got)
	}
}

// TestAcceptanceErrors pins the three errors the issue names: each names
// file:line and the field.
func TestAcceptanceErrors(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"unknown-key.yaml", "testdata/broken/unknown-key.yaml:7:3: lending.shares: unknown key"},
		{"negative-quota.yaml", "testdata/broken/negative-quota.yaml:9:3: borrowing.quota: must not be negative, got -3"},
		{"share-over-100.yaml", "testdata/broken/share-over-100.yaml:8:3: lending.share: must be between 0% and 100%, got 120%"},
		{"lease-shorter-than-drain.yaml", "testdata/broken/lease-shorter-than-drain.yaml:5:1: lease: 1m0s is shorter than drain_deadline 2m0s"},
	} {
		_, err := LoadFiles(filepath.Join("testdata", "broken", tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.file, err, tc.want)
		}
	}
}

func TestParseCases(t *testing.T) {
	const bu = "apiVersion: spillway/v1\nkind: BusinessUnit\nname: a\nselector: {node_pool: a}\nlending: {share: %s}\nborrowing: {quota: 1}\n"
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"bare number share", strings.Replace(bu, "%s", "25", 1), ""},
		{"fractional share", strings.Replace(bu, "%s", "12.5%", 1), ""},
		{"not a percent", strings.Replace(bu, "%s", "lots", 1), `x.yaml:5:18: lending.share: expected a percentage such as 10%, got "lots"`},
		{"negative share", strings.Replace(bu, "%s", "-5%", 1), "lending.share: must be between 0% and 100%, got -5%"},
		{"no kind", "apiVersion: spillway/v1\nname: a\n", "x.yaml:1:1: kind: is required"},
		{"not a mapping", "- a\n", "expected a pool document"},
		{"empty", "", "no pool documents in file"},
		{"no selector", "apiVersion: spillway/v1\nkind: SharedPool\nname: s\n", "selector: is required: set node_pool, node_class or meta"},
		{"bad apiVersion", "apiVersion: v2\nkind: SharedPool\nname: s\nselector: {node_pool: shared}\n", `apiVersion: unsupported version "v2"`},
		{"warm without ttr", "apiVersion: spillway/v1\nkind: CloudPool\nname: c\nprovider: aws\nregion: us-east-1\nzones: [us-east-1a]\nofferings: [{instance_type: t, price: {on_demand: 1}}]\nmax_hosts: 3\nbudget_per_hour: 2\nwarm: {hosts: 1}\n" +
			bootstrapYAML("us-east-1", "ami-0a1b2c3d4e5f60718", "flatcar"),
			"warm.time_to_ready: is required when warm.hosts is set"},
		{"offering size", "apiVersion: spillway/v1\nkind: CloudPool\nname: c\nprovider: aws\nregion: us-east-1\nzones: [us-east-1a]\nofferings: [{instance_type: t, cpu_mhz: 4000, memory_mb: 7680, price: {on_demand: 1}}]\nmax_hosts: 3\nbudget_per_hour: 2\n" +
			bootstrapYAML("us-east-1", "ami-0a1b2c3d4e5f60718", "flatcar"), ""},
		{"offering size half set", "apiVersion: spillway/v1\nkind: CloudPool\nname: c\nprovider: aws\nregion: us-east-1\nzones: [us-east-1a]\nofferings: [{instance_type: t, cpu_mhz: 4000, price: {on_demand: 1}}]\nmax_hosts: 3\nbudget_per_hour: 2\n" +
			bootstrapYAML("us-east-1", "ami-0a1b2c3d4e5f60718", "flatcar"),
			"offerings[0]: cpu_mhz and memory_mb go together: set both or neither"},
		{"offering size negative", "apiVersion: spillway/v1\nkind: CloudPool\nname: c\nprovider: aws\nregion: us-east-1\nzones: [us-east-1a]\nofferings: [{instance_type: t, cpu_mhz: -1, memory_mb: 7680, price: {on_demand: 1}}]\nmax_hosts: 3\nbudget_per_hour: 2\n" +
			bootstrapYAML("us-east-1", "ami-0a1b2c3d4e5f60718", "flatcar"),
			"offerings[0].cpu_mhz: must not be negative, got -1"},
		{"link default utilization", "apiVersion: spillway/v1\nkind: Link\nname: l\nbandwidth: 100 Mbit/s\n", ""},
		{"link without bandwidth", "apiVersion: spillway/v1\nkind: Link\nname: l\n", "x.yaml:1:1: bandwidth: is required"},
		{"link bandwidth unparsable", "apiVersion: spillway/v1\nkind: Link\nname: l\nbandwidth: fast\n", `x.yaml:4:12: bandwidth: expected a bandwidth such as 1Gbps or 100Mbps, got "fast"`},
		{"link bandwidth zero", "apiVersion: spillway/v1\nkind: Link\nname: l\nbandwidth: 0Gbps\n", "x.yaml:4:1: bandwidth: must be positive, got 0bps"},
		{"link utilization zero", "apiVersion: spillway/v1\nkind: Link\nname: l\nbandwidth: 1Gbps\ntarget_utilization: 0%\n", "x.yaml:5:1: target_utilization: must be between 1% and 100%, got 0%"},
		{"link utilization over", "apiVersion: spillway/v1\nkind: Link\nname: l\nbandwidth: 1Gbps\ntarget_utilization: 101\n", "target_utilization: must be between 1% and 100%, got 101%"},
		{"pool names an undefined link", "apiVersion: spillway/v1\nkind: CloudPool\nname: c\nprovider: aws\nregion: us-east-1\nzones: [us-east-1a]\nofferings: [{instance_type: t, price: {on_demand: 1}}]\nmax_hosts: 3\nbudget_per_hour: 2\nlink: dc1\n" +
			bootstrapYAML("us-east-1", "ami-0a1b2c3d4e5f60718", "flatcar"),
			`x.yaml:10:1: link: no Link named "dc1" (no Link is defined)`},
		{"pool names a defined link", "apiVersion: spillway/v1\nkind: Link\nname: dc1\nbandwidth: 1Gbps\n---\napiVersion: spillway/v1\nkind: CloudPool\nname: c\nprovider: aws\nregion: us-east-1\nzones: [us-east-1a]\nofferings: [{instance_type: t, price: {on_demand: 1}}]\nmax_hosts: 3\nbudget_per_hour: 2\nlink: dc1\n" +
			bootstrapYAML("us-east-1", "ami-0a1b2c3d4e5f60718", "flatcar"), ""},
		{"image from another cloud", "apiVersion: spillway/v1\nkind: CloudPool\nname: c\nprovider: aws\nregion: us-east-1\nzones: [us-east-1a]\nofferings: [{instance_type: t, price: {on_demand: 1}}]\nmax_hosts: 3\nbudget_per_hour: 2\n" +
			bootstrapYAML("us-east-1", "m-2zefcos42x64spillway", "flatcar"),
			"bootstrap.images: the us-east-1 image m-2zefcos42x64spillway is a alicloud image, but the pool's provider is aws"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("x.yaml", []byte(tc.yaml))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// FuzzLoad runs the loader over arbitrary input: it must never panic, every
// error must name the file, and whatever loads must be usable by the
// ladder.
func FuzzLoad(f *testing.F) {
	for _, dir := range []string{"examples", filepath.Join("testdata", "broken")} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("---\n---\n"))
	f.Add([]byte("&a [*a]"))
	f.Add([]byte("kind: CloudPool\nspot: 1e400%\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data)
		if err != nil {
			for _, e := range strictyaml.AsErrors("fuzz.yaml", err) {
				if e.File != "fuzz.yaml" {
					t.Fatalf("error without the file name: %v", e)
				}
			}
			return
		}
		now := time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC)
		for _, bu := range cfg.BusinessUnits {
			plan := Ladder(LadderInput{Config: cfg, BusinessUnit: bu.Name, Need: 5, Now: now, Deadline: now.Add(5 * time.Minute), SharedFree: 3})
			got := plan.Unmet
			for _, s := range plan.Steps {
				if s.Hosts < 0 || s.Hosts > s.Available || s.Spot > s.Hosts {
					t.Fatalf("bad step %+v", s)
				}
				got += s.Hosts
			}
			if got != 5 {
				t.Fatalf("plan covers %d hosts, want 5", got)
			}
		}
	})
}
