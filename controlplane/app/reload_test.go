package app

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spillwayhq/spillway/controlplane/auth"
)

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReloadKeepsThePreviousPoliciesOnError(t *testing.T) {
	dir := t.TempDir()
	copyFile(t, "../../policies/examples/hot-topic.yaml", filepath.Join(dir, "hot-topic.yaml"))
	cfg := testConfig(t)
	cfg.Policies.Dir = dir
	const adminToken = "admin-secret"
	cfg.API.Tokens = []auth.Token{{Name: "root", Role: auth.Admin, SHA256: auth.Hash(adminToken)}}
	post := func(url string) (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodPost, url, nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		return http.DefaultClient.Do(req)
	}
	var logs strings.Builder
	a, err := New(&cfg, "test", slog.New(slog.NewTextHandler(&logs, nil)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	before := a.Policies()
	if before.Len() == 0 {
		t.Fatal("the example should load at least one policy")
	}
	if got := testutil.ToFloat64(a.reload.ok); got != 1 {
		t.Fatalf("spillway_config_last_reload_successful = %v after a good start", got)
	}

	// A second, broken file: the reload fails as a whole.
	broken := filepath.Join(dir, "broken.yaml")
	if err := os.WriteFile(broken, []byte("apiVersion: spillway/v1\nkind: ScalingPolicy\nname: x\nbogus: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	resp, err := post(srv.URL + "/v1/reload")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("POST /v1/reload with a broken file: %s %s", resp.Status, body)
	}
	var apiErr apiError
	if err := json.Unmarshal(body, &apiErr); err != nil {
		t.Fatalf("error body is not the API error shape: %v: %s", err, body)
	}
	if apiErr.Error.Code != "invalid_policies" || len(apiErr.Error.Details) == 0 ||
		!strings.Contains(strings.Join(apiErr.Error.Details, "\n"), broken+":4:1: bogus: unknown key") {
		t.Fatalf("error does not locate the problem: %+v", apiErr)
	}
	if a.Policies() != before {
		t.Fatal("a failed reload replaced the policies in force")
	}
	if got := testutil.ToFloat64(a.reload.ok); got != 0 {
		t.Fatalf("spillway_config_last_reload_successful = %v after a failed reload, want 0", got)
	}
	if !strings.Contains(logs.String(), "reload failed") {
		t.Fatalf("the failure is not logged: %s", logs.String())
	}

	// Fixed: the next reload succeeds and swaps.
	copyFile(t, "../../policies/examples/gala.yaml", broken)
	resp, err = post(srv.URL + "/v1/reload")
	if err != nil {
		t.Fatal(err)
	}
	var res ReloadResult
	_ = json.NewDecoder(resp.Body).Decode(&res)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !res.Changed || res.Policies <= before.Len() {
		t.Fatalf("reload after the fix: %s %+v", resp.Status, res)
	}
	if a.Policies().Len() != res.Policies || testutil.ToFloat64(a.reload.ok) != 1 {
		t.Fatal("the fixed policies are not in force")
	}
}

func TestNewRefusesBrokenPolicies(t *testing.T) {
	cfg := testConfig(t)
	cfg.Policies.Dir = "../../policies/testdata/broken"
	_, err := New(&cfg, "test", slog.New(slog.DiscardHandler), Options{})
	if err == nil || !strings.Contains(err.Error(), "policies/testdata/broken/") {
		t.Fatalf("want the located policy errors, got %v", err)
	}
}
