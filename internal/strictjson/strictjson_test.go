package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

func TestCheckDuplicateKeys(t *testing.T) {
	for _, c := range []struct {
		in        string
		path      string
		line, col int
	}{
		{`{"to":0,"to":5000}`, "to", 1, 9},
		{`{"a":{"b":1,"c":2,"b":3}}`, "a.b", 1, 19},
		{"{\"alerts\":[{},\n {\"labels\":{\"x\":\"1\",\n \"x\":\"2\"}}]}", "alerts[1].labels.x", 3, 2},
		{`[{"k":1},{"k":1,"k":2}]`, "[1].k", 1, 17},
		{`{"a\u0062":1,"ab":2}`, "ab", 1, 14},
		{`{"s":"a,\"b\":{","s":1}`, "s", 1, 18},
		{`{"big":{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":0,"k11":1,"k12":2,"k13":3,"k14":4,"k15":5,"k16":6,"k3":3}}`, "big.k3", 1, 135},
	} {
		err := CheckDuplicateKeys([]byte(c.in), Exact)
		var dup *DuplicateKeyError
		if !errors.As(err, &dup) {
			t.Errorf("%s: got %v, want a duplicate key", c.in, err)
			continue
		}
		if dup.Path != c.path || dup.Line != c.line || dup.Column != c.col {
			t.Errorf("%s: got %s at %d:%d, want %s at %d:%d", c.in, dup.Path, dup.Line, dup.Column, c.path, c.line, c.col)
		}
	}
	// Malformed input is the decoder's to report, never a panic.
	for _, bad := range []string{`{{"a":1,"a":2}}`, `{[{"a":1,"a":1}]}`, `}}`, `]`, `{"a":1,`, `{"a`, `[{"a":1,"a":`} {
		for _, same := range []Keys{Exact, FoldCase} {
			_ = CheckDuplicateKeys([]byte(bad), same)
		}
	}
	// Keys that differ in case: two labels, but one struct field.
	if err := CheckDuplicateKeys([]byte(`{"labels":{"Service":"a","service":"b"}}`), Exact); err != nil {
		t.Errorf("labels differing in case: %v", err)
	}
	for _, in := range []string{`{"to":0,"TO":5000}`, `{"k":1,"\u212a":2}`, `{"\u00e9":1,"\u00c9":2}`} {
		var dup *DuplicateKeyError
		if err := CheckDuplicateKeys([]byte(in), FoldCase); !errors.As(err, &dup) {
			t.Errorf("%s folded: %v, want a duplicate key", in, err)
		}
	}
	// Invalid UTF-8 decodes to U+FFFD: two such keys are one.
	if err := CheckDuplicateKeys([]byte("{\"a\xff\":1,\"a\xfe\":2}"), Exact); err == nil {
		t.Error("two keys that decode to the same: no error")
	}
	for _, ok := range []string{`{"a":1,"b":{"a":1}}`, `[{"a":1},{"a":2}]`, `"s"`, `{"a":[1,2,{"a":3}]}`, `{`, `nope`, ``} {
		if err := CheckDuplicateKeys([]byte(ok), Exact); err != nil {
			t.Errorf("%q: %v, want nil (no duplicates, or malformed: the decoder's to report)", ok, err)
		}
	}
}

// reference finds duplicate keys the slow way, with encoding/json's
// tokenizer, for valid JSON.
func reference(dec *json.Decoder) (bool, error) {
	tok, err := dec.Token()
	if err != nil {
		return false, err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return false, nil
	}
	seen := map[string]bool{}
	for dec.More() {
		if d == '{' {
			k, err := dec.Token()
			if err != nil {
				return false, err
			}
			if seen[k.(string)] {
				return true, nil
			}
			seen[k.(string)] = true
		}
		if dup, err := reference(dec); dup || err != nil {
			return dup, err
		}
	}
	_, err = dec.Token()
	return false, err
}

func FuzzCheckDuplicateKeys(f *testing.F) {
	for _, s := range []string{`{"a":1,"a":2}`, `{"a":{"b":[{"c":1,"c":2}]}}`, `{"s":"a,\"b\":{","s":1}`, `{"a\\":1,"a\\\\":2}`, `[]`, `{{`, `{"k":1,"\u212a":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got := CheckDuplicateKeys(data, Exact) != nil
		_ = CheckDuplicateKeys(data, FoldCase)
		if !json.Valid(data) {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		want, err := reference(dec)
		if err != nil {
			t.Fatalf("reference: %v", err)
		}
		if got != want {
			t.Fatalf("%q: duplicate %v, the reference says %v", data, got, want)
		}
	})
}
