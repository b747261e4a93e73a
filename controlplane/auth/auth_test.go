package auth

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestAuthenticate(t *testing.T) {
	tok, hash, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "spw_") || Hash(tok) != hash || len(hash) != 64 {
		t.Fatalf("Generate: %q %q", tok, hash)
	}
	a, err := New([]Token{{Name: "ops", Role: Operator, SHA256: hash}})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/", nil)
	if _, err := a.Authenticate(r); !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("no credentials: %v", err)
	}
	r.Header.Set("Authorization", "Bearer "+tok)
	if id, err := a.Authenticate(r); err != nil || id.Name != "ops" || id.Role != Operator {
		t.Fatalf("bearer: %+v %v", id, err)
	}
	r = httptest.NewRequest("GET", "/", nil)
	r.SetBasicAuth("whoever", tok)
	if id, err := a.Authenticate(r); err != nil || id.Name != "ops" {
		t.Fatalf("basic: %+v %v", id, err)
	}
	r.SetBasicAuth("whoever", tok+"x")
	if _, err := a.Authenticate(r); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("bad token: %v", err)
	}
}

func TestNewRejectsBadTokens(t *testing.T) {
	for _, c := range []struct {
		tokens []Token
		want   string
	}{
		{[]Token{{Role: Viewer, SHA256: Hash("a")}}, "api.tokens[0]: name: required"},
		{[]Token{{Name: "a", SHA256: Hash("a")}}, "role: required"},
		{[]Token{{Name: "a", Role: Admin, SHA256: "abc"}}, "sha256: want the 64 hex digits"},
		{[]Token{{Name: "a", Role: Admin, SHA256: Hash("a")}, {Name: "a", Role: Viewer, SHA256: Hash("b")}}, `api.tokens[1].name: "a" is used twice`},
	} {
		if _, err := New(c.tokens); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c.tokens, err, c.want)
		}
	}
	if _, err := ParseRole("root"); err == nil {
		t.Error("ParseRole must refuse unknown roles")
	}
}
