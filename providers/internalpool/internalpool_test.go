package internalpool

import (
	"context"
	"errors"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
)

func TestPlacementAndClaim(t *testing.T) {
	sp := &pools.SharedPool{Header: pools.Header{Name: "shared"}, Selector: pools.Selector{NodePool: "shared"}}
	nodePool, cons := Placement(sp, "bu-a")
	if nodePool != "shared" || len(cons) != 1 || cons[0].LTarget != "${meta.spillway.lent_to}" || cons[0].Operand != "=" || cons[0].RTarget != "bu-a" {
		t.Fatalf("placement = %q %+v", nodePool, cons)
	}
	c := Claim(sp, "c1", "bu-a", 2)
	if c.ID != "c1" || c.Count != 2 || c.Pool.Name != "shared" || c.Pool.Tags[TagBorrower] != "bu-a" {
		t.Fatalf("claim = %+v", c)
	}
}

// noDrain is a Config.Drain for tests that drain nothing.
func noDrain(context.Context, string, time.Duration, string) error { return nil }

func TestNewRequiresDependencies(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without Nomad, Pool, Ledger and Drain succeeded")
	}
	l, _, err := pools.NewLedger(context.Background(), pools.NewMemoryStore(), pools.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nomad.NewClient(&nomad.Config{Address: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Nomad: nc, Pool: &pools.SharedPool{Header: pools.Header{Name: "shared"}}, Ledger: l}); err == nil {
		t.Fatal("New without Drain succeeded")
	}
	p, err := New(Config{Nomad: nc, Pool: &pools.SharedPool{Header: pools.Header{Name: "shared"}}, Ledger: l, Drain: noDrain})
	if err != nil {
		t.Fatal(err)
	}
	if p.Name() != Name || p.cfg.MetaSync != 30*time.Second || p.cfg.Pool.LenderMeta != pools.MetaBusinessUnit {
		t.Errorf("defaults not applied: %+v", p.cfg)
	}
	// An unreachable Nomad is an unavailable error, which the planner
	// treats like a cloud outage.
	if _, err := p.Create(context.Background(), Claim(p.cfg.Pool, "c", "bu-a", 1)); !providers.IsUnavailable(err) {
		t.Errorf("create against an unreachable Nomad: %v, want an unavailable error", err)
	}
}

// TestModelNodes: nodes given by Config.Nodes (the cluster model) are
// read as pools.NodeOf made them: ready, not lent and not draining is
// free to borrow.
func TestModelNodes(t *testing.T) {
	l, _, err := pools.NewLedger(context.Background(), pools.NewMemoryStore(), pools.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nomad.NewClient(&nomad.Config{Address: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	shared := func(id, dc string, ready, draining bool, meta map[string]string) pools.NodeUsage {
		status := nomad.NodeStatusReady
		if !ready {
			status = nomad.NodeStatusDown
		}
		return pools.NodeUsage{ID: id, Name: id, Datacenter: dc, NodePool: "shared", Meta: meta, Ready: ready, Status: status, Draining: draining}
	}
	nodes := []pools.NodeUsage{
		shared("s1", "dc1", true, false, nil),
		shared("s2", "dc1", true, false, map[string]string{pools.MetaLentTo: "bu-a"}),
		shared("s3", "dc2", true, true, nil),
		shared("s4", "dc2", false, false, nil),
		{ID: "a1", Name: "a1", NodePool: "bu-a", Ready: true, Status: nomad.NodeStatusReady},
	}
	p, err := New(Config{Nomad: nc, Pool: &pools.SharedPool{Header: pools.Header{Name: "shared"}, Selector: pools.Selector{NodePool: "shared"}},
		Ledger: l, Drain: noDrain, Nodes: func(context.Context) ([]pools.NodeUsage, error) { return nodes, nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if free, err := p.Free(ctx); err != nil || free != 1 {
		t.Errorf("Free = %d, %v; want 1 (s1)", free, err)
	}
	cat, err := p.Catalog(ctx, providers.Pool{})
	if err != nil || len(cat) != 2 || cat[0].Zone != "dc1" || !cat[0].Available || cat[1].Zone != "dc2" || cat[1].Available {
		t.Errorf("Catalog = %+v, %v; want dc1 available, dc2 not", cat, err)
	}
	hosts, err := p.List(ctx, "shared")
	if err != nil || len(hosts) != 1 || hosts[0].ID != "s2" || hosts[0].State != providers.HostRunning || hosts[0].PrivateIP != "" {
		t.Errorf("List = %+v, %v; want s2, running, with no address", hosts, err)
	}
}

// TestMissingNodeIsUnknownForTheGrace: a loan whose node Nomad does not
// list is kept for AbsentGrace (the node may be back on the next list);
// a node found again restarts the grace; only a node missing for the
// whole grace has its loan returned.
func TestMissingNodeIsUnknownForTheGrace(t *testing.T) {
	ctx := context.Background()
	l, _, err := pools.NewLedger(ctx, pools.NewMemoryStore(), pools.Limits{Quota: map[string]int{"bu-b": 1}, LendCap: map[string]int{"bu-a": 1}})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nomad.NewClient(&nomad.Config{Address: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	now := t0
	p, err := New(Config{Nomad: nc, Pool: &pools.SharedPool{Header: pools.Header{Name: "shared"}}, Ledger: l, Drain: noDrain,
		Now: func() time.Time { return now }, AbsentGrace: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Borrow(ctx, pools.BorrowRequest{Host: "h1", HostName: "shared-1", Pool: "shared", Lender: "bu-a", Borrower: "bu-b", At: t0, Lease: time.Hour}); err != nil {
		t.Fatal(err)
	}
	absent := []pools.Discrepancy{{Host: "h1", Name: "shared-1", Ledger: "bu-b", Nomad: "absent"}}
	repairAt := func(at time.Duration, ds []pools.Discrepancy) {
		t.Helper()
		now = t0.Add(at)
		if err := p.Repair(ctx, ds); err != nil {
			t.Fatalf("repair at +%s: %v", at, err)
		}
	}
	lent := func() bool { _, ok := l.Loan("h1"); return ok }

	repairAt(0, absent)
	repairAt(4*time.Minute, absent)
	if !lent() {
		t.Fatal("the loan was returned before the node was missing for the grace")
	}
	// Found again: the grace starts over when it goes missing next.
	repairAt(4*time.Minute+30*time.Second, nil)
	repairAt(6*time.Minute, absent)
	repairAt(10*time.Minute, absent)
	if !lent() {
		t.Fatal("the loan was returned 4m after its node went missing again: the earlier absence counted")
	}
	repairAt(11*time.Minute, absent)
	if lent() {
		t.Fatal("the node has been missing for the grace (5m), and its loan is still open")
	}
}

// downNodes is a NodeAPI over nodes in memory that, as Nomad does,
// changes the meta of a node only through its client: not while the
// node is down.
type downNodes struct {
	nodes map[string]*nomad.Node
	metas int // ApplyMeta calls that reached a ready node
}

func (d *downNodes) List(*nomad.QueryOptions) ([]*nomad.NodeListStub, *nomad.QueryMeta, error) {
	var out []*nomad.NodeListStub
	for _, n := range d.nodes {
		out = append(out, &nomad.NodeListStub{ID: n.ID, Name: n.Name, NodePool: n.NodePool, Status: n.Status})
	}
	return out, &nomad.QueryMeta{LastIndex: 1}, nil
}

func (d *downNodes) Info(id string, _ *nomad.QueryOptions) (*nomad.Node, *nomad.QueryMeta, error) {
	n, ok := d.nodes[id]
	if !ok {
		return nil, nil, nomad.UnexpectedResponseError{}
	}
	return n, &nomad.QueryMeta{LastIndex: 1}, nil
}

func (d *downNodes) ToggleEligibility(id string, eligible bool, _ *nomad.WriteOptions) (*nomad.NodeEligibilityUpdateResponse, error) {
	d.nodes[id].SchedulingEligibility = map[bool]string{true: nomad.NodeSchedulingEligible, false: nomad.NodeSchedulingIneligible}[eligible]
	return &nomad.NodeEligibilityUpdateResponse{}, nil
}

func (d *downNodes) ApplyMeta(req *nomad.NodeMetaApplyRequest, _ *nomad.QueryOptions) (*nomad.NodeMetaResponse, error) {
	n := d.nodes[req.NodeID]
	if n.Status != nomad.NodeStatusReady {
		return nil, errors.New("Unexpected response code: 500 (node " + n.ID + " is not connected)")
	}
	d.metas++
	for k, v := range req.Meta {
		if v == nil {
			delete(n.Meta, k)
		} else {
			n.Meta[k] = *v
		}
	}
	return &nomad.NodeMetaResponse{Meta: n.Meta}, nil
}

// TestReturnOfADownHost: a borrowed host whose node is down is returned
// in the ledger and made ineligible, without an error for the meta its
// client cannot take; the reconcile pass removes the mark once the node
// is back, not before.
func TestReturnOfADownHost(t *testing.T) {
	ctx := context.Background()
	l, _, err := pools.NewLedger(ctx, pools.NewMemoryStore(), pools.Limits{Quota: map[string]int{"bu-b": 1}, LendCap: map[string]int{"bu-a": 1}})
	if err != nil {
		t.Fatal(err)
	}
	borrowed := time.Now().Add(-time.Minute)
	until := borrowed.Add(time.Hour).UTC().Format(time.RFC3339)
	nodes := &downNodes{nodes: map[string]*nomad.Node{"h1": {ID: "h1", Name: "shared-1", NodePool: "shared", Status: nomad.NodeStatusDown,
		SchedulingEligibility: nomad.NodeSchedulingEligible, Meta: map[string]string{pools.MetaLentTo: "bu-b", pools.MetaServes: "bu-b", pools.MetaLease: until}}}}
	p, err := New(Config{NomadNodes: nodes, Pool: &pools.SharedPool{Header: pools.Header{Name: "shared"}, Lease: time.Hour}, Ledger: l, Drain: noDrain, MetaSync: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Borrow(ctx, pools.BorrowRequest{Host: "h1", HostName: "shared-1", Pool: "shared", Lender: "bu-a", Borrower: "bu-b", At: borrowed, Lease: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := p.Return(ctx, providers.Host{ID: "h1", Pool: "shared"}, time.Minute, pools.ReasonReturned); err != nil {
		t.Fatalf("returning a host whose node is down: %v", err)
	}
	if _, lent := l.Loan("h1"); lent {
		t.Fatal("the loan of the down host is still open")
	}
	h1 := nodes.nodes["h1"]
	if h1.SchedulingEligibility != nomad.NodeSchedulingIneligible || nodes.metas != 0 {
		t.Fatalf("the down node: eligibility %s, %d meta changes; want ineligible, none", h1.SchedulingEligibility, nodes.metas)
	}
	left := []pools.Discrepancy{{Host: "h1", Name: "shared-1", Nomad: "bu-b", Lease: until}}
	if err := p.Repair(ctx, left); err != nil {
		t.Fatalf("repairing the mark while the node is down: %v", err)
	}
	if h1.Meta[pools.MetaLentTo] != "bu-b" {
		t.Fatal("the mark of a down node changed")
	}
	h1.Status = nomad.NodeStatusReady
	if err := p.Repair(ctx, left); err != nil {
		t.Fatalf("repairing the mark once the node is back: %v", err)
	}
	if _, marked := h1.Meta[pools.MetaLentTo]; marked || nodes.metas != 1 {
		t.Fatalf("once back, the node's meta is %v after %d changes; want the lending meta removed", h1.Meta, nodes.metas)
	}
}
