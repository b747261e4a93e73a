package bootstrap_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spillwayhq/spillway/providers/bootstrap"
)

// FuzzLoad feeds the spec loader arbitrary YAML: it must never panic, and
// a spec it accepts must render for both providers or fail with an error.
func FuzzLoad(f *testing.F) {
	for _, name := range []string{"flatcar-aws.yaml", "fcos-alicloud.yaml", "broken.yaml"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("os: [flatcar\n"))
	f.Add([]byte("nomad: {acl_token: {a: b}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := bootstrap.Load("fuzz.yaml", data)
		if err != nil {
			return
		}
		for _, p := range []string{"aws", "alicloud"} {
			r, err := bootstrap.Render(spec, bootstrap.ClaimInfo{Provider: p, Pool: "p", Claim: "c"})
			if err == nil && len(r.UserData) == 0 {
				t.Fatal("empty user data without an error")
			}
		}
	})
}
