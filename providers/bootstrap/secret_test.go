package bootstrap_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/spillwayhq/spillway/providers/bootstrap"
)

// TestSecretsNeverPrinted checks that the ACL token and the TLS key appear
// in no printed, logged, marshalled or error form of a spec; only the
// rendered config carries them.
func TestSecretsNeverPrinted(t *testing.T) {
	spec := loadSpec(t, "flatcar-aws.yaml")
	token := spec.Nomad.ACLToken.Reveal()
	key := strings.TrimSpace(spec.Nomad.TLS.Key.Reveal())
	keyBody := strings.Split(key, "\n")[1]
	if token == "" || keyBody == "" {
		t.Fatal("the test spec has no secrets")
	}
	var out bytes.Buffer
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		fmt.Fprintf(&out, format+"\n", spec)
		fmt.Fprintf(&out, format+"\n", *spec)
		fmt.Fprintf(&out, format+"\n", spec.Nomad)
		fmt.Fprintf(&out, format+"\n", spec.Nomad.TLS)
	}
	j, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	out.Write(j)
	y, err := yaml.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	out.Write(y)
	for _, h := range []slog.Handler{slog.NewTextHandler(&out, nil), slog.NewJSONHandler(&out, nil)} {
		log := slog.New(h)
		log.Info("pool", "spec", spec, "nomad", spec.Nomad, "token", spec.Nomad.ACLToken, "key", spec.Nomad.TLS.Key)
	}

	// Errors: an invalid spec with secrets, a spec too large to fit, and
	// an unknown provider.
	bad := *spec
	bad.Nomad.ACLToken = bootstrap.NewSecret("bad token " + token)
	tls := *spec.Nomad.TLS
	tls.Key = bootstrap.NewSecret("not a key " + keyBody)
	bad.Nomad.TLS = &tls
	bad.Nomad.Servers = nil
	_, err = bootstrap.Render(&bad, bootstrap.ClaimInfo{Provider: "aws", Pool: "p", Claim: "c"})
	fmt.Fprintln(&out, err)
	fmt.Fprintln(&out, bad.Validate(nil, "bootstrap").Err())
	big := *spec
	big.Files = []bootstrap.File{{Path: "/etc/big", Contents: strings.Repeat(token+keyBody, 2000)}}
	big.Files[0].Contents = noise(40 << 10)
	_, err = bootstrap.Render(&big, bootstrap.ClaimInfo{Provider: "aws", Pool: "p", Claim: "c"})
	if err == nil {
		t.Fatal("a 40 KB random file fits")
	}
	fmt.Fprintln(&out, err)
	_, err = bootstrap.Render(spec, bootstrap.ClaimInfo{Provider: "nope", Pool: "p", Claim: "c"})
	fmt.Fprintln(&out, err)

	s := out.String()
	if strings.Contains(s, token) || strings.Contains(s, keyBody) {
		t.Fatalf("a secret leaked into printed output:\n%s", s)
	}
	if !strings.Contains(s, "<secret>") {
		t.Fatalf("secrets are not shown as <secret>:\n%s", s)
	}

	// The rendered config does carry them: that is where they belong.
	r, err := bootstrap.Render(spec, bootstrap.ClaimInfo{Provider: "aws", Pool: "p", Claim: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(r.Config, []byte("NOMAD_TOKEN")) {
		t.Fatal("the rendered config lacks the token file")
	}
}

func noise(n int) string {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[x%64]
	}
	return string(b)
}
