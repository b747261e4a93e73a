package app

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/controlplane/config"
	"github.com/spillwayhq/spillway/controlplane/controller"
	"github.com/spillwayhq/spillway/pools"
)

// withSharedPool gives the daemon bu-a (the fake Nomad's node) and a
// shared pool, whose lender bu-b has no node there.
func withSharedPool(t *testing.T) func(*config.Config) {
	return withPools(t, unitA, `apiVersion: spillway/v1
kind: BusinessUnit
name: bu-b
selector: {node_pool: bu-b}
lending: {share: 100%}
borrowing: {quota: 0}
`, `apiVersion: spillway/v1
kind: SharedPool
name: shared
selector: {node_pool: shared}
lease: 1h
reclaim_notice: 5m
drain_deadline: 1m
`)
}

// TestAPIReclaimAndExtend: POST /v1/pools/{name}/reclaim is an
// operator's; a count over what is lent is a 422 saying how many are; a
// host not lent is a 409 saying who holds it; an unknown pool a 404; a
// lent host is reclaimed (202, reclaim_by from the deadline), journaled
// with the token's name, and shown reclaimed in GET /v1/pools/loans. POST
// /v1/pools/loans/{host}/extend extends a lease (journaled), and refuses
// a reclaimed host.
func TestAPIReclaimAndExtend(t *testing.T) {
	h := newAPIHarness(t, withSharedPool(t))
	for _, c := range []struct {
		path, token, body string
		code              int
		says              string
	}{
		{"/v1/pools/shared/reclaim", "view", `{"count":1,"reason":"x"}`, 403, ""},
		{"/v1/pools/shared/reclaim", "op", `{"count":1}`, 400, "reason"},
		{"/v1/pools/shared/reclaim", "op", `{"count":1,"hosts":["h"],"reason":"x"}`, 400, "not both"},
		{"/v1/pools/shared/reclaim", "op", `{"count":1,"reason":"x","deadline":"soon"}`, 400, "deadline"},
		{"/v1/pools/nope/reclaim", "op", `{"count":1,"reason":"x"}`, 404, "unknown_pool"},
		{"/v1/pools/shared/reclaim", "op", `{"count":1,"reason":"x"}`, 422, "0 hosts are lent"},
		{"/v1/pools/shared/reclaim", "op", `{"hosts":["bu-a-1"],"reason":"x"}`, 409, "its owner bu-a holds it"},
		{"/v1/pools/loans/bu-a-1/extend", "op", `{"reason":"x"}`, 409, "its owner bu-a holds it"},
		{"/v1/pools/loans/bu-a-1/extend", "op", `{"reason":"x","lease":"1s"}`, 400, "lease"},
	} {
		code, body := h.do("POST", c.path, c.token, c.body)
		if code != c.code || !strings.Contains(body, c.says) {
			t.Errorf("POST %s %s: %d %s, want %d saying %q", c.path, c.body, code, body, c.code, c.says)
		}
	}

	// Two hosts lent to bu-a (recorded in the ledger before a restart).
	now := time.Now().UTC().Truncate(time.Second)
	for i, host := range []string{"shared-1", "shared-2"} {
		e := pools.Entry{Seq: int64(i + 1), Kind: pools.EntryBorrow, Host: host, HostName: host, Tier: pools.TierShared, Pool: "shared",
			Lender: "bu-b", Borrower: "bu-a", At: now, Lease: time.Hour}
		if err := h.a.journal.LedgerStore().Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	h.restart()
	if code, body := h.do("POST", "/v1/pools/shared/reclaim", "op", `{"count":3,"reason":"x"}`); code != http.StatusUnprocessableEntity || !strings.Contains(body, "2 hosts are lent") {
		t.Fatalf("reclaiming 3 of 2: %d %s", code, body)
	}
	code, body := h.do("POST", "/v1/pools/shared/reclaim", "op", `{"hosts":["shared-2"],"reason":"rack maintenance","deadline":"10m"}`)
	if code != http.StatusAccepted {
		t.Fatalf("reclaim: %d %s", code, body)
	}
	var res reclaimResponse
	if err := json.Unmarshal([]byte(body), &res); err != nil || len(res.Reclaimed) != 1 || res.Reclaimed[0].Host != "shared-2" || res.Reclaimed[0].ReclaimBy == nil ||
		time.Until(*res.Reclaimed[0].ReclaimBy) < 9*time.Minute {
		t.Fatalf("reclaim answered %s", body)
	}
	if evs := h.events(controller.KindLeaseReclaimed); len(evs) != 1 || evs[0].Actor != "oncall" || !strings.Contains(evs[0].Message, "rack maintenance") {
		t.Fatalf("lease.reclaimed: %+v", evs)
	}
	var loans loansPage
	h.ok("GET", "/v1/pools/loans", "view", "", &loans)
	if len(loans.Loans) != 2 {
		t.Fatalf("loans: %+v", loans)
	}
	// The shared pool's terms, from its file, and the server's time: a
	// client counts a lease's time left and its reclaim notice from them.
	if want := (sharedTerms{Pool: "shared", LeaseSeconds: 3600, ReclaimNoticeSeconds: 300, DrainDeadlineSeconds: 60}); loans.Shared == nil || *loans.Shared != want ||
		time.Since(loans.At).Abs() > time.Minute {
		t.Fatalf("loans: shared %+v at %s, want %+v at about now", loans.Shared, loans.At, want)
	}
	for _, l := range loans.Loans {
		if (l.ReclaimBy != nil) != (l.Host == "shared-2") || l.Until.IsZero() {
			t.Fatalf("loan %+v: want lease end, and reclaim_by only on shared-2", l)
		}
	}
	var ext loanView
	h.ok("POST", "/v1/pools/loans/shared-1/extend", "op", `{"reason":"batch runs late","lease":"3h"}`, &ext)
	if ext.Host != "shared-1" || time.Until(ext.Until) < 2*time.Hour+59*time.Minute {
		t.Fatalf("extend answered %+v", ext)
	}
	if evs := h.events(controller.KindLeaseExtended); len(evs) != 1 || evs[0].Actor != "oncall" {
		t.Fatalf("lease.extended: %+v", evs)
	}
	if code, body := h.do("POST", "/v1/pools/loans/shared-2/extend", "op", `{"reason":"x"}`); code != http.StatusConflict || !strings.Contains(body, "reclaimed") {
		t.Fatalf("extending a reclaimed host: %d %s", code, body)
	}

	// A closed loan is listed with its lease's end and why it ended.
	e := pools.Entry{Seq: 5, Kind: pools.EntryReturn, Host: "shared-2", HostName: "shared-2", Tier: pools.TierShared, Pool: "shared", Lender: "bu-b",
		Borrower: "bu-a", At: now.Add(time.Minute), Reason: pools.ReasonReclaimed}
	if err := h.a.journal.LedgerStore().Append(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	loans = loansPage{}
	h.ok("GET", "/v1/pools/loans?closed_since="+now.Add(-time.Hour).Format(time.RFC3339), "view", "", &loans)
	if len(loans.Loans) != 1 || len(loans.Closed) != 1 || loans.Closed[0].HostName != "shared-2" || loans.Closed[0].Reason != pools.ReasonReclaimed ||
		!loans.Closed[0].Returned.Equal(now.Add(time.Minute)) || loans.Closed[0].Until.IsZero() {
		t.Fatalf("loans with closed_since: %+v", loans)
	}
	if code, _ := h.do("GET", "/v1/pools/loans?closed_since=yesterday", "view", ""); code != http.StatusBadRequest {
		t.Fatalf("a bad closed_since: %d", code)
	}
}
