package policies

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStoreReload(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	examples, _ := filepath.Glob(filepath.Join("examples", "*.yaml"))
	for _, f := range examples {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		write(filepath.Base(f), string(data))
	}
	s, err := NewStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	first := s.Set()
	if first.Len() != 3 {
		t.Fatalf("loaded %d policies", first.Len())
	}
	if changed, err := s.Reload(); err != nil || changed {
		t.Fatalf("no-op reload: changed %v, err %v", changed, err)
	}

	// One broken file: the previous set stays active, the error names it.
	write("zz-broken.yaml", validHeader+"checks:\n  - name: q\n    query: ''\n    target_value: {target: 1}\n")
	changed, err := s.Reload()
	if err == nil || changed {
		t.Fatalf("broken reload: changed %v, err %v", changed, err)
	}
	if !strings.Contains(err.Error(), "zz-broken.yaml:10:5: checks[0].query: is required") {
		t.Errorf("error does not locate the problem:\n%v", err)
	}
	if s.Set().Len() != 3 || s.Set().Hash() != first.Hash() {
		t.Fatal("a failed reload changed the active set")
	}

	// Fixed: the new set replaces the old one.
	write("zz-broken.yaml", validHeader+"checks: [{name: f, fixed: {count: 2}}]\n")
	if changed, err := s.Reload(); err != nil || !changed {
		t.Fatalf("good reload: changed %v, err %v", changed, err)
	}
	if _, ok := s.Set().Get("p"); !ok || s.Set().Len() != 4 {
		t.Fatal("reload did not swap in the new set")
	}

	if _, err := NewStore(filepath.Join(dir, "missing")); err == nil {
		t.Error("NewStore on a missing directory succeeded")
	}
}
