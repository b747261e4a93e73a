package strictyaml

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

type upper string

func (u *upper) UnmarshalYAML(n *yaml.Node) error {
	if n.Value == "" {
		return errors.New("must not be empty")
	}
	*u = upper(strings.ToUpper(n.Value))
	return nil
}

type inner struct {
	Address string        `yaml:"address"`
	Timeout time.Duration `yaml:"timeout"`
}

type sample struct {
	Name    string            `yaml:"name"`
	Count   int               `yaml:"count"`
	Share   float64           `yaml:"share"`
	Max     uint              `yaml:"max"`
	Enabled bool              `yaml:"enabled"`
	Inner   inner             `yaml:"inner"`
	Ptr     *inner            `yaml:"ptr"`
	Items   []inner           `yaml:"items"`
	Labels  map[string]string `yaml:"labels"`
	Code    upper             `yaml:"code"`
	Skipped string            `yaml:"-"`
}

func TestDecodeValid(t *testing.T) {
	src := `
name: web
count: 3
share: 0.1
max: 7
enabled: true
inner: {address: "http://x", timeout: 30s}
ptr:
  timeout: 1m
items:
  - address: a
  - address: b
labels: {team: a}
code: abc
`
	var got sample
	pos, err := Decode("f.yaml", []byte(src), &got)
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	want := sample{
		Name: "web", Count: 3, Share: 0.1, Max: 7, Enabled: true,
		Inner:  inner{Address: "http://x", Timeout: 30 * time.Second},
		Ptr:    &inner{Timeout: time.Minute},
		Items:  []inner{{Address: "a"}, {Address: "b"}},
		Labels: map[string]string{"team": "a"},
		Code:   "ABC",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if p := pos.Of("items[1].address"); p.Line != 12 {
		t.Errorf("items[1].address at line %d, want 12", p.Line)
	}
	if p := pos.Of("inner.timeout"); p.Line != 7 {
		t.Errorf("inner.timeout at line %d, want 7", p.Line)
	}
	// A path that was not set falls back to its nearest ancestor.
	if p := pos.Of("ptr.address"); p.Line != 8 {
		t.Errorf("ptr.address falls back to line %d, want 8", p.Line)
	}
	if !pos.Has("labels.team") || pos.Has("inner.address.x") {
		t.Errorf("Has is wrong: %v", pos.Paths())
	}
}

func TestDecodeCollectsEveryError(t *testing.T) {
	src := `name: web
count: three
nmae: typo
inner:
  timeout: soon
  port: 80
items:
  - address: [a]
max: -1
enabled: yes please
code: ""
count: 4
`
	var got sample
	_, err := Decode("bad.yaml", []byte(src), &got)
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("want Errors, got %T %v", err, err)
	}
	want := []string{
		`bad.yaml:2:8: count: expected an integer, got "three"`,
		`bad.yaml:3:1: nmae: unknown key (did you mean "name"?)`,
		`bad.yaml:5:12: inner.timeout: expected a duration such as 30s or 5m, got "soon"`,
		`bad.yaml:6:3: inner.port: unknown key`,
		`bad.yaml:8:14: items[0].address: expected a string, got a list`,
		`bad.yaml:9:6: max: expected a non-negative integer, got "-1"`,
		`bad.yaml:10:10: enabled: expected true or false, got "yes please"`,
		`bad.yaml:11:7: code: must not be empty`,
		`bad.yaml:12:1: count: duplicate key`,
	}
	var lines []string
	for _, e := range es {
		lines = append(lines, e.Error())
	}
	if !reflect.DeepEqual(lines, want) {
		t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

func TestSyntaxErrorHasLine(t *testing.T) {
	var got sample
	_, err := Decode("s.yaml", []byte("name: a\ncount: [1\n"), &got)
	es := AsErrors("s.yaml", err)
	if len(es) != 1 || es[0].Line == 0 || es[0].File != "s.yaml" {
		t.Fatalf("want one located syntax error, got %v", err)
	}
}

func TestDecodeAllMultipleDocuments(t *testing.T) {
	src := "name: a\n---\n---\nname: b\nbogus: 1\n"
	var names []string
	err := DecodeAll("m.yaml", []byte(src), func(*yaml.Node) (any, error) { return &sample{}, nil },
		func(v any, p *Positions) { names = append(names, v.(*sample).Name) })
	if !reflect.DeepEqual(names, []string{"a", "b"}) {
		t.Fatalf("documents %v", names)
	}
	if err == nil || !strings.Contains(err.Error(), "m.yaml:5:1: bogus: unknown key") {
		t.Fatalf("want the unknown key in the second document, got %v", err)
	}
	if _, err := Decode("one.yaml", []byte(src), &sample{}); err == nil || !strings.Contains(err.Error(), "expected one YAML document") {
		t.Fatalf("Decode must refuse several documents, got %v", err)
	}
}

func TestKeys(t *testing.T) {
	got := Keys(reflect.TypeFor[sample]())
	want := []string{"code", "count", "enabled", "inner.address", "inner.timeout", "items", "labels", "max", "name", "ptr.address", "ptr.timeout", "share"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Keys = %v, want %v", got, want)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("name: a\ncount: 1\ninner: {timeout: 1s}\nitems: [{address: x}]\n"))
	f.Add([]byte("a: &x [1]\nb: *x\n"))
	f.Add([]byte("- 1\n- 2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s sample
		_, err := Decode("fuzz.yaml", data, &s)
		if err == nil {
			return
		}
		for _, e := range AsErrors("fuzz.yaml", err) {
			if e.File != "fuzz.yaml" {
				t.Fatalf("error without the file name: %v", e)
			}
		}
	})
}

func TestFailed(t *testing.T) {
	src := "name: web\ncount: many\ninner:\n  timeout: soon\n  address: ok\n"
	var got sample
	pos, err := Decode("f.yaml", []byte(src), &got)
	if err == nil {
		t.Fatal("expected errors")
	}
	for path, want := range map[string]bool{
		"count":         true,
		"inner.timeout": true,
		"inner.address": false,
		"inner":         false,
		"name":          false,
		"items[0].x":    false,
	} {
		if got := pos.Failed(path); got != want {
			t.Errorf("Failed(%q) = %v, want %v", path, got, want)
		}
	}
	var nilPos *Positions
	if nilPos.Failed("x") {
		t.Error("nil Positions reports a failure")
	}
}

func TestAliasExpansionIsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("anchors:\n  - &l0 {address: a}\n")
	prev := "l0"
	for i := 1; i <= 2; i++ {
		fmt.Fprintf(&b, "  - &l%d [", i)
		for j := range 200 {
			if j > 0 {
				b.WriteString(",")
			}
			b.WriteString("*" + prev)
		}
		b.WriteString("]\n")
		prev = fmt.Sprintf("l%d", i)
	}
	b.WriteString("items: [")
	for j := range 200 {
		if j > 0 {
			b.WriteString(",")
		}
		b.WriteString("*l2")
	}
	b.WriteString("]\n")
	// items is a list of 200 lists of 200 lists of 200 mappings: 8e6 values.
	var out struct {
		Anchors []any       `yaml:"-"`
		Items   [][][]inner `yaml:"items"`
	}
	_, err := Decode("bomb.yaml", []byte(b.String()), &out)
	if err == nil || !strings.Contains(err.Error(), "too many aliases") {
		t.Fatalf("got %v, want the expansion limit", err)
	}
	if n := len(AsErrors("bomb.yaml", err)); n != 2 {
		t.Errorf("got %d errors, want the unknown key and the limit:\n%v", n, err)
	}
}
