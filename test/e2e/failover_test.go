package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/auth"
	"github.com/spillwayhq/spillway/controlplane/journal/journaltest"
	"github.com/spillwayhq/spillway/controlplane/lab"
	"github.com/spillwayhq/spillway/controlplane/lab/labtest"
)

// replica is one `spillway serve` of a highly available pair.
type replica struct {
	name string
	url  string
	cmd  *exec.Cmd
	logs *lockedBuffer
}

func (r *replica) readyz(t *testing.T) string {
	resp, err := http.Get(r.url + "/readyz")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// TestFailover runs two replicas of `spillway serve` on one PostgreSQL
// journal with leader election through a Nomad variable lock. Exactly one
// leads; a follower refuses writes and names the leader; when the leader
// stops (SIGTERM) or dies (SIGKILL), the other takes over and accepts the
// work.
func TestFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	pg := journaltest.StartPostgres(t)
	dsn := pg.NewDatabase(t)
	opts := lab.DefaultOptions()
	opts.Serve = false
	opts.SharedHosts = 0
	opts.BusinessUnits = []lab.BusinessUnit{{Name: "bu-a", Hosts: 1}}
	l := labtest.Start(t, opts)

	const token = "failover-admin-token"
	dir := t.TempDir()
	start := func(name string) *replica {
		addr := freeAddr(t)
		cfg := fmt.Sprintf(`listen: %s
nomad: {address: %s}
prometheus: {address: %s}
journal: {driver: postgres, dsn: %q}
leader: {enabled: true, ttl: 10s, lock_delay: 1s}
api:
  tokens:
    - {name: admin, role: admin, sha256: %q}
`, addr, l.NomadAddr, l.PrometheusURL, dsn, auth.Hash(token))
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		r := &replica{name: name, url: "http://" + addr, logs: &lockedBuffer{}}
		r.cmd = exec.Command(labtest.Spillway(t), "serve", "--config", path)
		r.cmd.Stdout, r.cmd.Stderr = r.logs, r.logs
		r.cmd.Env = append(os.Environ(), "NOMAD_ALLOC_ID="+name) // the elector's identity
		if err := r.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = r.cmd.Process.Kill()
			_ = r.cmd.Wait()
			if t.Failed() {
				t.Logf("----- %s -----\n%s", name, r.logs.String())
			}
		})
		return r
	}
	scale := func(r *replica, to int) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, r.url+"/v1/scale",
			strings.NewReader(fmt.Sprintf(`{"service":"default/demo/web","to":%d,"reason":"failover test"}`, to)))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// leaderOf waits until exactly one of rs reports leading, and returns it.
	leaderOf := func(within time.Duration, rs ...*replica) (*replica, time.Duration) {
		t.Helper()
		began := time.Now()
		for time.Since(began) < within {
			var leaders []*replica
			for _, r := range rs {
				if r.readyz(t) == "ok (leader)" {
					leaders = append(leaders, r)
				}
			}
			if len(leaders) > 1 {
				t.Fatalf("two leaders: %s and %s", leaders[0].name, leaders[1].name)
			}
			if len(leaders) == 1 {
				return leaders[0], time.Since(began)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("no leader among %d replicas within %s", len(rs), within)
		return nil, 0
	}

	a, b := start("replica-a"), start("replica-b")
	first, _ := leaderOf(30*time.Second, a, b)
	follower := b
	if first == b {
		follower = a
	}
	if got := follower.readyz(t); !strings.Contains(got, "follower") || !strings.Contains(got, first.name) {
		t.Fatalf("the follower's /readyz: %q", got)
	}
	if code, body := scale(follower, 3); code != http.StatusServiceUnavailable || !strings.Contains(body, "not_leader") {
		t.Fatalf("a write to the follower: %d %s", code, body)
	}
	if code, body := scale(first, 3); code != http.StatusOK {
		t.Fatalf("a write to the leader: %d %s", code, body)
	}
	if err := l.WaitDeployment(t.Context(), lab.DemoJob, time.Minute); err != nil {
		t.Fatal(err)
	}

	// A clean stop hands over at once.
	if err := first.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	second, took := leaderOf(15*time.Second, follower)
	t.Logf("after SIGTERM, %s leads after %s", second.name, took.Round(100*time.Millisecond))
	// The new leader does the work, and sees what the old one journaled.
	if code, body := scale(second, 4); code != http.StatusOK || !strings.Contains(body, `"current": 3`) {
		t.Fatalf("a write to the new leader: %d %s", code, body)
	}
	if err := l.WaitDeployment(t.Context(), lab.DemoJob, time.Minute); err != nil {
		t.Fatal(err)
	}

	// A crash: the lock is freed by Nomad after about 2 x TTL + lock_delay.
	third := start("replica-c")
	time.Sleep(2 * time.Second) // let it campaign as a follower
	if err := second.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	leader, took := leaderOf(45*time.Second, third)
	t.Logf("after SIGKILL, %s leads after %s", leader.name, took.Round(100*time.Millisecond))
	if code, body := scale(leader, 2); code != http.StatusOK {
		t.Fatalf("a write after the crash: %d %s", code, body)
	}
}
