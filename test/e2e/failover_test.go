package e2e

import (
	"context"
	"encoding/json"
	"errors"
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

	"github.com/jackc/pgx/v5"
	"go.yaml.in/yaml/v3"

	"github.com/spillwayhq/spillway/controlplane/app"
	"github.com/spillwayhq/spillway/controlplane/auth"
	"github.com/spillwayhq/spillway/controlplane/controller"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/controlplane/journal/journaltest"
	"github.com/spillwayhq/spillway/controlplane/leader"
	"github.com/spillwayhq/spillway/internal/lab"
	"github.com/spillwayhq/spillway/internal/lab/labtest"
	"github.com/spillwayhq/spillway/providers/cloudsim"
)

// The lease of the failover suite: a replica that dies is replaced within
// failoverTTL + failoverRenew.
const (
	failoverTTL   = 4 * time.Second
	failoverRenew = time.Second
)

// failoverPolicy keeps the demo at count instances of bu-a; the test raises
// it by rewriting the file and reloading every replica.
const failoverPolicy = `apiVersion: spillway/v1
kind: ScalingPolicy
name: demo-failover
business_unit: bu-a
target: {namespace: default, job: demo, group: web}
min: 1
max: 12
evaluation_interval: 2s
deadline: 2m
checks:
  - name: fixed
    fixed: {count: %d}
`

// replica is one `spillway serve` of a highly available group.
type replica struct {
	name string
	url  string
	cmd  *exec.Cmd
	logs *lockedBuffer
}

func (r *replica) readyz() string {
	resp, err := http.Get(r.url + "/readyz")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// TestFailover runs `spillway serve` replicas on one PostgreSQL journal,
// electing their leader through a lease in it. Exactly one leads; a
// follower refuses writes and names the leader. A clean stop (SIGTERM)
// hands over at once; a crash (SIGKILL) within the lease TTL plus one
// renewal, as measured here and journaled by the new leader. A write with
// a deposed term's fencing token is refused. A leader paused past its
// lease (SIGSTOP, then SIGCONT) while it rents a cloud host makes no
// journal write and no cloud call after it resumes, and the new leader
// finishes the scale-out.
func TestFailover(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	// The lease's 4 s TTL and 1 s renewal are CPU timing: another lab's
	// load could depose a leader that is merely slow. So this test runs
	// alone (its lab takes every slot).
	labtest.Alone(t)
	pg := journaltest.StartPostgres(t)
	dsn := pg.NewDatabase(t)
	policyDir := t.TempDir()
	writePolicy := func(count int) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(policyDir, "demo.yaml"), []byte(fmt.Sprintf(failoverPolicy, count)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writePolicy(2)
	zero := 0.0
	opts := lab.DefaultOptions()
	opts.Serve = false
	opts.SharedHosts = 0
	// bu-a's one host holds 4 demo instances (250 MHz each); more need a
	// cloud host.
	opts.BusinessUnits = []lab.BusinessUnit{{Name: "bu-a", Hosts: 1}}
	opts.HostCPU, opts.HostMemoryMB = 1000, 1024
	opts.Policies = policyDir
	opts.LabPools = true
	opts.Cloud = &lab.CloudOptions{
		Config: cloudsim.Config{
			Seed: 11, TimeScale: burstTimeScale, ErrorRate: &zero,
			AWS: cloudsim.CloudConfig{
				Region:    "us-east-1",
				Accounts:  []cloudsim.Account{{AccessKeyID: "AKIDFAILOVERE2E", SecretAccessKey: "failover-e2e-secret"}},
				Subnets:   map[string]string{"subnet-0a11": "us-east-1a"},
				Offerings: []cloudsim.OfferingConfig{{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: cloudsim.OnDemand, Price: 0.096, Capacity: refOf(4)}},
			},
		},
		HostCPU: 1000, HostMemoryMB: 1024,
	}
	l := labtest.Start(t, opts)
	base, err := l.ServeConfig()
	if err != nil {
		t.Fatal(err)
	}

	const token = "failover-admin-token"
	dir := t.TempDir()
	start := func(name string) *replica {
		t.Helper()
		addr := freeAddr(t)
		cfg := map[string]any{}
		for k, v := range base {
			cfg[k] = v
		}
		cfg["listen"] = addr
		cfg["journal"] = map[string]any{"driver": "postgres", "dsn": dsn}
		cfg["leader"] = map[string]any{"enabled": true, "ttl": failoverTTL.String(), "renew_interval": failoverRenew.String()}
		cfg["api"] = map[string]any{"tokens": []map[string]any{{"name": "admin", "role": "admin", "sha256": auth.Hash(token)}}}
		data, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
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
			_ = r.cmd.Process.Signal(syscall.SIGCONT)
			_ = r.cmd.Process.Kill()
			_ = r.cmd.Wait()
			if t.Failed() {
				t.Logf("----- %s -----\n%s", name, r.logs.String())
			}
		})
		return r
	}
	call := func(r *replica, method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, r.url+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// leaderOf waits until exactly one of rs reports leading, and returns
	// it with how long that took.
	leaderOf := func(within time.Duration, rs ...*replica) (*replica, time.Duration) {
		t.Helper()
		began := time.Now()
		for time.Since(began) < within {
			var leaders []*replica
			for _, r := range rs {
				if r.readyz() == "ok (leader)" {
					leaders = append(leaders, r)
				}
			}
			if len(leaders) > 1 {
				t.Fatalf("two leaders: %s and %s", leaders[0].name, leaders[1].name)
			}
			if len(leaders) == 1 {
				return leaders[0], time.Since(began)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("no leader among %d replicas within %s", len(rs), within)
		return nil, 0
	}
	db, err := journal.OpenPostgres(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// elected returns the leader.elected event of who's latest term.
	elected := func(who string) (journal.Event, map[string]any) {
		t.Helper()
		var last journal.Event
		_ = journal.Each(t.Context(), db.Events(), journal.Filter{Kind: app.KindLeaderElected}, func(ev journal.Event) error {
			if ev.Actor == who {
				last = ev
			}
			return nil
		})
		if last.Seq == 0 {
			t.Fatalf("no %s event of %s", app.KindLeaderElected, who)
		}
		var d map[string]any
		_ = json.Unmarshal(last.Data, &d)
		return last, d
	}

	a, b := start("replica-a"), start("replica-b")
	first, _ := leaderOf(30*time.Second, a, b)
	follower := b
	if first == b {
		follower = a
	}
	// The follower may still be starting: wait until it answers and has
	// met the lease (before its first attempt it names no leader).
	waitUntil(t, follower.name+" follows", 30*time.Second, func() bool { return strings.Contains(follower.readyz(), first.name) })
	if got := follower.readyz(); !strings.Contains(got, "follower") || !strings.Contains(got, first.name) {
		t.Fatalf("the follower's /readyz: %q", got)
	}
	if code, body := call(follower, "POST", "/v1/policies/demo-failover/pause", `{"reason":"failover test"}`); code != http.StatusServiceUnavailable || !strings.Contains(body, "not_leader") {
		t.Fatalf("a write to the follower: %d %s", code, body)
	}
	if code, body := call(first, "POST", "/v1/policies/demo-failover/pause", `{"reason":"failover test"}`); code != http.StatusOK {
		t.Fatalf("a write to the leader: %d %s", code, body)
	}
	firstElected, _ := elected(first.name)

	// A clean stop hands over at once.
	if err := first.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	second, took := leaderOf(failoverTTL, follower)
	t.Logf("after SIGTERM, %s leads after %s", second.name, took.Round(10*time.Millisecond))
	if took > failoverTTL/2 {
		t.Errorf("a clean stop handed over after %s; want at once, well within the TTL %s", took, failoverTTL)
	}
	ev, d := elected(second.name)
	prev, _ := d["previous"].(map[string]any)
	if prev["holder"] != first.name || prev["released"] != true || ev.Term != firstElected.Term+1 || ev.Term != int64(d["term"].(float64)) {
		t.Fatalf("the new leader journaled %s: %s %s", ev.Kind, ev.Message, ev.Data)
	}
	// The new leader acts on what the old one journaled: the pause.
	if code, body := call(second, "GET", "/v1/policies/demo-failover", ""); code != http.StatusOK || !strings.Contains(body, `"paused"`) {
		t.Fatalf("the new leader's view of the paused policy: %d %s", code, body)
	}
	if code, body := call(second, "POST", "/v1/policies/demo-failover/resume", `{"reason":"failover test"}`); code != http.StatusOK {
		t.Fatalf("a write to the new leader: %d %s", code, body)
	}
	secondTerm := ev.Term

	// A crash: the follower takes over when the lease runs out, within the
	// TTL plus one renewal.
	third := start("replica-c")
	waitUntil(t, "replica-c follows", 30*time.Second, func() bool { return strings.Contains(third.readyz(), second.name) })
	if err := second.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	_, _ = leaderOf(failoverTTL+failoverRenew+2*time.Second, third)
	took = time.Since(killed)
	t.Logf("after SIGKILL, %s leads after %s", third.name, took.Round(10*time.Millisecond))
	// The readiness poll adds up to its interval and a round trip.
	if took > failoverTTL+failoverRenew+300*time.Millisecond {
		t.Errorf("after SIGKILL the handover took %s; want within TTL + one renewal (%s)", took, failoverTTL+failoverRenew)
	}
	ev, d = elected(third.name)
	prev, _ = d["previous"].(map[string]any)
	gap, _ := prev["since_renewed_seconds"].(float64)
	if prev["holder"] != second.name || prev["released"] != false || gap > (failoverTTL+failoverRenew).Seconds() {
		t.Fatalf("the new leader journaled %s: %s %s", ev.Kind, ev.Message, ev.Data)
	}
	t.Logf("journaled: %s", ev.Message)
	thirdTerm := ev.Term

	// A write with the deposed term's token is refused by the database.
	before := countEvents(t, db)
	if _, err := db.Fenced("spillway", staleFence(secondTerm)).Events().Append(t.Context(),
		journal.Event{Kind: "test.stale", Message: "a late write of term " + fmt.Sprint(secondTerm)}); !errors.Is(err, journal.ErrFenced) {
		t.Fatalf("a write with the stale token %d: %v; want ErrFenced", secondTerm, err)
	}
	if after := countEvents(t, db); after != before {
		t.Fatalf("the refused write left %d events", after-before)
	}

	// A pause past the lease while the leader rents a cloud host.
	fourth := start("replica-d")
	waitUntil(t, "replica-d follows", 30*time.Second, func() bool { return strings.Contains(fourth.readyz(), third.name) })
	writePolicy(8)
	for _, r := range []*replica{third, fourth} {
		if code, body := call(r, "POST", "/v1/reload", ""); code != http.StatusOK {
			t.Fatalf("reloading %s: %d %s", r.name, code, body)
		}
	}
	// The leader journals the intent to rent, then calls the cloud.
	waitUntil(t, "replica-c rents a cloud host", 2*time.Minute, func() bool {
		found := false
		_ = journal.Each(t.Context(), db.Events(), journal.Filter{Kind: controller.KindIntent}, func(ev journal.Event) error {
			found = found || (ev.Term == thirdTerm && strings.Contains(string(ev.Data), `"pool":"aws-lab"`))
			return nil
		})
		return found && len(l.Cloud().Calls(third.name, killed)) > 0
	})
	if err := third.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	fourthLeads, _ := leaderOf(failoverTTL+failoverRenew+2*time.Second, fourth)
	// Stay stopped past the lease on every clock, then wake.
	if wait := failoverTTL + failoverRenew - time.Since(stopped); wait > 0 {
		time.Sleep(wait)
	}
	seqAtResume := lastSeq(t, db)
	resumed := time.Now()
	if err := third.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// The positive signal: the woken replica knows it follows.
	waitUntil(t, "replica-c steps down after SIGCONT", 15*time.Second, func() bool {
		return strings.Contains(third.readyz(), "follower") && strings.Contains(third.logs.String(), "stepped down as leader")
	})
	if calls := l.Cloud().Calls(third.name, resumed); len(calls) != 0 {
		t.Errorf("replica-c called the cloud after it woke: %+v", calls)
	}
	var late []journal.Event
	_ = journal.Each(t.Context(), db.Events(), journal.Filter{After: seqAtResume}, func(ev journal.Event) error {
		if ev.Term == thirdTerm {
			late = append(late, ev)
		}
		return nil
	})
	if len(late) > 0 {
		t.Errorf("replica-c's term %d wrote to the journal after it woke:\n%s", thirdTerm, dump(late))
	}
	// The new leader finishes the scale-out: 8 healthy instances, 4 of
	// them on the rented host.
	if err := l.WaitHealthy(t.Context(), lab.DemoJob, 8, 3*time.Minute); err != nil {
		t.Fatalf("after the failover: %v", err)
	}
	ev, _ = elected(fourthLeads.name)
	t.Logf("journaled: %s", ev.Message)
	assertNomadCallsPinned(t, fourthLeads.url, fourthLeads.logs.String())

	// A deposed leader's late write is refused by the database, counted in
	// spillway_leader_fenced_total{target="journal"}, and the leader steps
	// down. (replica-c above never writes that late: once woken, its own
	// clock says its lease ran out.) A term begins in the database behind
	// the leader's back, in a transaction that holds the lease row until a
	// write of the leader, let through by the leader's own check, waits on
	// it.
	const fencedJournal = `spillway_leader_fenced_total{target="journal"}`
	fencedBefore, ok := metricValue(t, fourthLeads.url, fencedJournal)
	if !ok {
		t.Fatalf("%s exports no %s", fourthLeads.name, fencedJournal)
	}
	usurper, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer usurper.Close(context.Background())
	watcher, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close(context.Background())
	tx, err := usurper.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(t.Context(), `UPDATE leader_leases SET holder = 'usurper', term = term + 1,
			acquired_at = clock_timestamp(), renewed_at = clock_timestamp(),
			expires_at = clock_timestamp() + interval '1 minute', released = FALSE
		WHERE election = $1`, leader.DefaultElection); err != nil {
		t.Fatal(err)
	}
	written := make(chan string, 1)
	go func() {
		code, body := call(fourthLeads, "POST", "/v1/policies/demo-failover/pause", `{"reason":"a deposed leader's late write"}`)
		written <- fmt.Sprint(code, " ", body)
	}()
	waitUntil(t, "a fenced write of "+fourthLeads.name+" to wait on the lease row", 2*time.Second, func() bool {
		var waiting int
		_ = watcher.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FROM leader_leases WHERE election = $1 FOR SHARE%'`).Scan(&waiting)
		return waiting > 0
	})
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := <-written; strings.HasPrefix(got, "200 ") {
		t.Fatalf("%s's write after its term ended: %s; want it refused", fourthLeads.name, got)
	}
	waitUntil(t, fourthLeads.name+" steps down on the refused write", 15*time.Second, func() bool {
		return fourthLeads.readyz() != "ok (leader)" && strings.Contains(fourthLeads.logs.String(), "the journal refused a write of this replica's term")
	})
	if v, _ := metricValue(t, fourthLeads.url, fencedJournal); v <= fencedBefore {
		t.Errorf("%s %s = %v after the database refused its write, want above %v", fourthLeads.name, fencedJournal, v, fencedBefore)
	}
}

// staleFence is a journal.Fence that keeps offering one term's token.
type staleFence int64

func (f staleFence) Token() (int64, error) { return int64(f), nil }
func (staleFence) Refused(error)           {}

func countEvents(t *testing.T, db *journal.Postgres) int {
	t.Helper()
	n := 0
	if err := journal.Each(t.Context(), db.Events(), journal.Filter{}, func(journal.Event) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func lastSeq(t *testing.T, db *journal.Postgres) int64 {
	t.Helper()
	var last int64
	if err := journal.Each(context.Background(), db.Events(), journal.Filter{}, func(ev journal.Event) error { last = ev.Seq; return nil }); err != nil {
		t.Fatal(err)
	}
	return last
}
