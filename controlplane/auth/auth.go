// Package auth owns who may call Spillway's API: tokens, stored only as
// SHA-256 hashes in the configuration, each with a name and a role. Roles
// are ordered: a viewer reads; an operator also scales, drains and pauses;
// an admin also reloads and changes pools. Requests carry the token as a
// bearer token, or as the password of HTTP basic auth (the user name is
// ignored), which is what Alertmanager's http_config can send.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Role is what a token may do.
type Role int

// Roles, from the least to the most privileged.
const (
	Viewer Role = iota + 1
	Operator
	Admin
)

func (r Role) String() string {
	switch r {
	case Viewer:
		return "viewer"
	case Operator:
		return "operator"
	case Admin:
		return "admin"
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// ParseRole reads viewer, operator or admin.
func ParseRole(s string) (Role, error) {
	switch s {
	case "viewer":
		return Viewer, nil
	case "operator":
		return Operator, nil
	case "admin":
		return Admin, nil
	}
	return 0, fmt.Errorf("unknown role %q: want viewer, operator or admin", s)
}

// UnmarshalYAML reads a role name.
func (r *Role) UnmarshalYAML(n *yaml.Node) error { return r.UnmarshalText([]byte(n.Value)) }

// MarshalYAML writes the role name.
func (r Role) MarshalYAML() (any, error) { return r.String(), nil }

// UnmarshalText lets viper and flags read a role name.
func (r *Role) UnmarshalText(b []byte) error {
	role, err := ParseRole(string(b))
	if err != nil {
		return err
	}
	*r = role
	return nil
}

// Token is one configured API token. Only its hash is kept.
type Token struct {
	Name string `yaml:"name"`
	Role Role   `yaml:"role"`
	// SHA256 is the hex SHA-256 of the token; `spillway token create` prints it.
	SHA256 string `yaml:"sha256"`
}

// Validate checks one token entry.
func (t Token) Validate() error {
	var errs []error
	if t.Name == "" {
		errs = append(errs, errors.New("name: required"))
	}
	if t.Role < Viewer || t.Role > Admin {
		errs = append(errs, errors.New("role: required (viewer, operator or admin)"))
	}
	if b, err := hex.DecodeString(t.SHA256); err != nil || len(b) != sha256.Size {
		errs = append(errs, errors.New("sha256: want the 64 hex digits of the token's SHA-256"))
	}
	return errors.Join(errs...)
}

// Identity is who made a request.
type Identity struct {
	Name string
	Role Role
}

// Errors of Authenticate.
var (
	ErrNoCredentials  = errors.New("no API token: send Authorization: Bearer <token>")
	ErrBadCredentials = errors.New("the API token is not valid")
)

// Authenticator checks tokens against their configured hashes.
type Authenticator struct {
	tokens []Token
	hashes [][]byte
}

// New builds an authenticator. Token names must be unique.
func New(tokens []Token) (*Authenticator, error) {
	a := &Authenticator{}
	seen := map[string]bool{}
	for i, t := range tokens {
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("api.tokens[%d]: %w", i, err)
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("api.tokens[%d].name: %q is used twice", i, t.Name)
		}
		seen[t.Name] = true
		h, _ := hex.DecodeString(t.SHA256)
		a.tokens = append(a.tokens, t)
		a.hashes = append(a.hashes, h)
	}
	return a, nil
}

// Authenticate finds the token a request carries.
func (a *Authenticator) Authenticate(r *http.Request) (Identity, error) {
	secret := ""
	if h := r.Header.Get("Authorization"); h != "" {
		// The scheme is case-insensitive (RFC 9110, section 11.1).
		if scheme, v, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
			secret = strings.TrimSpace(v)
		}
	}
	if secret == "" {
		if _, pw, ok := r.BasicAuth(); ok {
			secret = pw
		}
	}
	if secret == "" {
		return Identity{}, ErrNoCredentials
	}
	sum := sha256.Sum256([]byte(secret))
	found := -1
	// Compare against every hash in constant time, so timing tells nothing.
	for i, h := range a.hashes {
		if subtle.ConstantTimeCompare(sum[:], h) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Identity{}, ErrBadCredentials
	}
	return Identity{Name: a.tokens[found].Name, Role: a.tokens[found].Role}, nil
}

// Configured reports whether any token is configured.
func (a *Authenticator) Configured() bool { return len(a.tokens) > 0 }

type ctxKey struct{}

// FromContext returns the identity Require stored in the request context.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}

// Require wraps next so only tokens with at least role min reach it: no or
// a bad token answers 401, too small a role 403. onError writes the error
// response, so the API keeps one error format.
func (a *Authenticator) Require(min Role, onError func(w http.ResponseWriter, status int, code, msg string), next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.Configured() {
			onError(w, http.StatusUnauthorized, "unauthenticated", "no API tokens are configured (api.tokens); create one with 'spillway token create'")
			return
		}
		id, err := a.Authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="spillway"`)
			onError(w, http.StatusUnauthorized, "unauthenticated", err.Error())
			return
		}
		if id.Role < min {
			onError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("token %q has role %s; this needs %s", id.Name, id.Role, min))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, id)))
	})
}

// Generate makes a new random token and its hash.
func Generate() (token, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	token = "spw_" + hex.EncodeToString(b)
	return token, Hash(token), nil
}

// Hash returns the hex SHA-256 of a token, as configured.
func Hash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
