package strictjson

import (
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
	} {
		err := CheckDuplicateKeys([]byte(c.in))
		var dup *DuplicateKeyError
		if !errors.As(err, &dup) {
			t.Errorf("%s: got %v, want a duplicate key", c.in, err)
			continue
		}
		if dup.Path != c.path || dup.Line != c.line || dup.Column != c.col {
			t.Errorf("%s: got %s at %d:%d, want %s at %d:%d", c.in, dup.Path, dup.Line, dup.Column, c.path, c.line, c.col)
		}
	}
	for _, ok := range []string{`{"a":1,"b":{"a":1}}`, `[{"a":1},{"a":2}]`, `"s"`, `{"a":[1,2,{"a":3}]}`, `{`, `nope`, ``} {
		if err := CheckDuplicateKeys([]byte(ok)); err != nil {
			t.Errorf("%q: %v, want nil (no duplicates, or malformed: the decoder's to report)", ok, err)
		}
	}
}
