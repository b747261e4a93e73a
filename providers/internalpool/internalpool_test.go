package internalpool

import (
	"context"
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

func TestNewRequiresDependencies(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without Nomad, Pool and Ledger succeeded")
	}
	l, _, err := pools.NewLedger(context.Background(), pools.NewMemoryStore(), pools.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nomad.NewClient(&nomad.Config{Address: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{Nomad: nc, Pool: &pools.SharedPool{Header: pools.Header{Name: "shared"}}, Ledger: l})
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
