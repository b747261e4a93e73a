package policies

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
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestLoadExamples(t *testing.T) {
	set, err := LoadDir("examples")
	if err != nil {
		t.Fatalf("examples do not load:\n%v", err)
	}
	if set.Len() != 3 {
		t.Fatalf("got %d policies, want 3", set.Len())
	}
	for _, name := range []string{"demo-hot-topic", "demo-gala", "demo-diurnal"} {
		p, ok := set.Get(name)
		if !ok {
			t.Fatalf("policy %q missing", name)
		}
		if p.Target != (Target{Namespace: "default", Job: "demo", Group: "web"}) {
			t.Errorf("%s: target %v, want default/demo/web", name, p.Target)
		}
		if p.Deadline != 5*time.Minute {
			t.Errorf("%s: deadline %s", name, p.Deadline)
		}
	}
	gala, _ := set.Get("demo-gala")
	if gala.StaleAfter != DefaultStaleAfter || gala.OnCheckError.Action != OnErrorHold {
		t.Errorf("defaults not applied: stale_after %s, on_check_error %q", gala.StaleAfter, gala.OnCheckError.Action)
	}
	if len(set.ForTarget(gala.Target)) != 3 {
		t.Errorf("ForTarget found %d policies, want 3", len(set.ForTarget(gala.Target)))
	}
	if set.Hash() == "" || len(set.Files()) != 3 {
		t.Errorf("hash %q, files %v", set.Hash(), set.Files())
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
	lineRe := regexp.MustCompile(`^testdata/broken/[a-z-]+\.yaml:\d+:\d+: `)
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
		t.Errorf("errors differ from %s (run go test ./policies -update and review the diff)\ngot:\n%s", golden, got)
	}
}

const validHeader = `apiVersion: spillway/v1
kind: ScalingPolicy
name: p
business_unit: bu
target: {job: demo, group: web}
min: 1
max: 10
`

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // substrings, one per expected error, in order
	}{
		{"valid", validHeader + "checks:\n  - name: f\n    fixed: {count: 2}\n", nil},
		{"empty file", "", []string{"f.yaml: no ScalingPolicy documents in file"}},
		{"not a mapping", "- a\n- b\n", []string{"f.yaml:1:1: expected a ScalingPolicy mapping"}},
		{"unknown key", validHeader + "chekcs: []\n", []string{"f.yaml:1:1: checks: at least one check", `f.yaml:8:1: chekcs: unknown key (did you mean "checks"?)`}},
		{"wrong type", validHeader + "checks:\n  - name: f\n    fixed: {count: two}\n", []string{`f.yaml:10:20: checks[0].fixed.count: expected an integer, got "two"`}},
		{"min above max", strings.Replace(validHeader, "min: 1", "min: 11", 1) + "checks: [{name: f, fixed: {count: 2}}]\n", []string{"max: must be at least min (11), got 10"}},
		{"negative min", strings.Replace(validHeader, "min: 1", "min: -1", 1) + "checks: [{name: f, fixed: {count: 2}}]\n", []string{"min: must not be negative"}},
		{"missing min", strings.Replace(validHeader, "min: 1\n", "", 1) + "checks: [{name: f, fixed: {count: 2}}]\n", []string{"min: is required"}},
		{"empty query", validHeader + "checks:\n  - name: q\n    query: '  '\n    target_value: {target: 1}\n", []string{"checks[0].query: is required and must not be empty"}},
		{"missing query", validHeader + "checks:\n  - name: q\n    threshold: {bands: [{lower_bound: 1, action: '+1'}]}\n", []string{"f.yaml:9:5: checks[0].query: is required"}},
		{"query on fixed", validHeader + "checks:\n  - name: q\n    query: up\n    fixed: {count: 1}\n", []string{"checks[0].query: the fixed strategy reads no metric"}},
		{"no strategy", validHeader + "checks:\n  - name: q\n    query: up\n", []string{"checks[0]: needs a strategy"}},
		{"bad cron", validHeader + "checks:\n  - name: s\n    schedule:\n      windows: [{cron: '61 * * * *', duration: 1h, count: 2}]\n", []string{"checks[0].schedule.windows[0].cron: invalid cron expression"}},
		{"cron never fires", validHeader + "checks:\n  - name: s\n    schedule:\n      windows: [{cron: '0 0 30 2 *', duration: 1h, count: 2}]\n", []string{"never fires"}},
		{"cron six fields", validHeader + "checks:\n  - name: s\n    schedule:\n      windows: [{cron: '0 0 * * * 2030', duration: 1h, count: 2}]\n", []string{"expected five fields"}},
		{"window without duration", validHeader + "checks:\n  - name: s\n    schedule:\n      windows: [{cron: '@daily', count: 2}]\n", []string{"windows[0].duration: is required"}},
		{"local time zone", validHeader + "checks:\n  - name: s\n    schedule:\n      time_zone: Local\n      windows: [{cron: '@daily', duration: 1h, count: 2}]\n", []string{"unknown time zone"}},
		{"fixed above max", validHeader + "checks: [{name: f, fixed: {count: 11}}]\n", []string{"checks[0].fixed.count: 11 is above max (10)"}},
		{"duplicate check", validHeader + "checks: [{name: f, fixed: {count: 1}}, {name: f, fixed: {count: 2}}]\n", []string{`checks[1].name: duplicate check name "f"`}},
		{"band without bound", validHeader + "checks:\n  - name: q\n    query: up\n    threshold: {bands: [{action: '+1'}]}\n", []string{"bands[0]: needs lower_bound"}},
		{"inverted band", validHeader + "checks:\n  - name: q\n    query: up\n    threshold: {bands: [{lower_bound: 5, upper_bound: 1, action: '+1'}]}\n", []string{"upper_bound: must be greater than lower_bound"}},
		{"band without action", validHeader + "checks:\n  - name: q\n    query: up\n    threshold: {bands: [{lower_bound: 5}]}\n", []string{"bands[0].action: is required"}},
		{"on_error on fixed", validHeader + "checks:\n  - name: f\n    fixed: {count: 1}\n    on_error: {action: hold}\n", []string{"on_error: the fixed strategy reads no metric"}},
		{"on_check_error unknown", validHeader + "on_check_error: {action: panic}\nchecks: [{name: f, fixed: {count: 1}}]\n", []string{`on_check_error.action: unknown action "panic"`}},
		{"on_check_error shorthand", validHeader + "on_check_error: hold\nchecks: [{name: f, fixed: {count: 1}}]\n", nil},
		{"on_check_error shorthand fixed", validHeader + "on_check_error: fixed\nchecks: [{name: f, fixed: {count: 1}}]\n", []string{`f.yaml:8:17: on_check_error: "fixed" needs a count`}},
		{"on_check_error unknown key", validHeader + "on_check_error: {action: fixed, cuont: 3}\nchecks: [{name: f, fixed: {count: 1}}]\n", []string{"on_check_error: line 8: cuont: unknown key"}},
		{"on_check_error bad count", validHeader + "on_check_error: {action: fixed, count: many}\nchecks: [{name: f, fixed: {count: 1}}]\n", []string{`count: expected an integer, got "many"`}},
		{"on_check_error count above max", validHeader + "on_check_error: {action: fixed, count: 11}\nchecks: [{name: f, fixed: {count: 1}}]\n", []string{"on_check_error.count: 11 is above max (10)"}},
		{"hold with count", validHeader + "on_check_error: {action: hold, count: 3}\nchecks: [{name: f, fixed: {count: 1}}]\n", []string{"on_check_error.count: only allowed with action"}},
		{"alert to min", validHeader + "alerts: [{alert: A, action: to min}]\n", []string{"alerts[0].action: alerts only scale out"}},
		{"alert bad matcher", validHeader + "alerts: [{alert: A, matchers: ['sev=~\"(\"'], action: '+1'}]\n", []string{"alerts[0].matchers[0]: invalid matcher"}},
		{"alert no name", validHeader + "alerts: [{action: '+1'}]\n", []string{"alerts[0].alert: is required"}},
		{"bad duration", validHeader + "deadline: -1m\nchecks: [{name: f, fixed: {count: 1}}]\n", []string{"deadline: must be at least 1s"}},
		{"undecodable max is reported once", strings.Replace(validHeader, "max: 10", "max: ten", 1) + "checks: [{name: f, fixed: {count: 2}}]\n", []string{`max: expected an integer, got "ten"`}},
		{"undecodable bound is reported once", validHeader + "checks:\n  - name: q\n    query: up\n    threshold: {bands: [{lower_bound: x, action: '+1'}, {upper_bound: 5, action: '-1'}]}\n", []string{`bands[0].lower_bound: expected a number, got "x"`}},
		{"traffic fixed", validHeader + "traffic: {per_allocation: 20Mbps}\nchecks: [{name: f, fixed: {count: 1}}]\n", nil},
		{"traffic query", validHeader + "traffic: {query: 'sum(rate(tx_bytes[1m])) * 8 / count(up)'}\nchecks: [{name: f, fixed: {count: 1}}]\n", nil},
		{"traffic both", validHeader + "traffic: {per_allocation: 20Mbps, query: up}\nchecks: [{name: f, fixed: {count: 1}}]\n", []string{"traffic.query: traffic is a fixed per_allocation or a query, not both"}},
		{"traffic neither", validHeader + "traffic: {}\nchecks: [{name: f, fixed: {count: 1}}]\n", []string{"f.yaml:8:1: traffic: needs per_allocation"}},
		{"traffic unparsable", validHeader + "traffic: {per_allocation: lots}\nchecks: [{name: f, fixed: {count: 1}}]\n", []string{`f.yaml:8:27: traffic.per_allocation: expected a bandwidth such as 1Gbps or 100Mbps, got "lots"`}},
		{"traffic zero", validHeader + "traffic: {per_allocation: 0bps}\nchecks: [{name: f, fixed: {count: 1}}]\n", []string{"traffic.per_allocation: must be positive"}},
		{"traffic bad query", validHeader + "traffic: {query: 'sum('}\nchecks: [{name: f, fixed: {count: 1}}]\n", []string{"traffic.query:"}},
		{"two documents, errors in both", validHeader + "checks: [{name: f, fixed: {count: 1}}]\nmax: 3\n---\n" + validHeader + "checks: []\n", []string{
			`f.yaml:9:1: max: duplicate key`, "f.yaml:18:1: checks: at least one check"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(tt.src))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error:\n%v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			es := strictyaml.AsErrors("f.yaml", err)
			if len(es) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(es), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.Contains(es[i].Error(), w) {
					t.Errorf("error %d = %q, want it to contain %q", i, es[i].Error(), w)
				}
			}
		})
	}
}

func TestLoadFilesIsAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "a.yaml")
	bad := filepath.Join(dir, "b.yaml")
	if err := os.WriteFile(good, []byte(validHeader+"checks: [{name: f, fixed: {count: 1}}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("apiVersion: spillway/v1\nkind: ScalingPolicy\nname: p\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := LoadFiles(good, bad)
	if set != nil || err == nil {
		t.Fatalf("got set %v, err %v; want no set and an error", set, err)
	}
	if !strings.Contains(err.Error(), `duplicate policy name "p"`) {
		t.Errorf("missing cross-file error in:\n%v", err)
	}
	if _, err := LoadFiles(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "reading policy file") {
		t.Errorf("missing file: got %v", err)
	}
	if _, err := LoadDir(filepath.Join(dir, "nope")); err == nil {
		t.Error("missing directory loaded")
	}
	empty := t.TempDir()
	if set, err := LoadDir(empty); err != nil || set.Len() != 0 {
		t.Errorf("empty dir: set %v, err %v", set, err)
	}
	os.Remove(bad)
	set, err = LoadDir(dir)
	if err != nil || set.Len() != 1 {
		t.Fatalf("after removing the bad file: %v", err)
	}
}

// FuzzLoad runs the loader over arbitrary input: it must never panic, every
// error must name the file, and whatever loads must evaluate.
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
	f.Add([]byte(validHeader + "alerts: [{alert: A, matchers: ['a=~\"x.*\"'], action: to max}]\n"))
	f.Add([]byte("---\n---\n"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := Parse("fuzz.yaml", data)
		if err != nil {
			for _, e := range strictyaml.AsErrors("fuzz.yaml", err) {
				if e.File != "fuzz.yaml" {
					t.Fatalf("error without the file name: %v", e)
				}
			}
			return
		}
		now := time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC)
		for _, p := range ps {
			d := Evaluate(p, Input{Now: now, Current: p.Min})
			if d.Desired < p.Min || d.Desired > p.Max {
				t.Fatalf("decision %d outside [%d, %d]: %s", d.Desired, p.Min, p.Max, d.Reason)
			}
		}
	})
}
