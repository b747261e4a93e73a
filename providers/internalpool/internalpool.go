// Package internalpool owns the shared internal pool as a providers.Provider:
// "creating" a host borrows a host that a business unit lent to the shared
// pool, and "deleting" it gives the host back. It works through Nomad
// (github.com/hashicorp/nomad/api) and the lending ledger (pools.Ledger):
//
//   - Borrow: the ledger records the loan first (durable, and it enforces
//     one borrower per host, the borrower's quota and the lender's share);
//     then the node gets the dynamic node meta spillway.lent_to=<borrower>,
//     spillway.serves=<borrower>, spillway.lease=<RFC 3339 end of lease>
//     and spillway.claim=<claim ID>, and is marked eligible for scheduling.
//   - Return: the node is drained with the pool's drain deadline (the
//     borrower's allocations move away), the ledger records the return,
//     then the lending meta is removed and the node stays ineligible, so
//     nothing lands on an idle shared host.
//   - Reclaim: the ledger records the reclaim, the replacement callback
//     asks the next tier for capacity, then the host is returned within the
//     reclaim notice. The controller's lease expiries and reclaims order
//     their own replacement and return the host through Return, which
//     closes the loan with its reason.
//
// How the borrower's work lands on a borrowed host: a service that bursts
// runs in node pool "all" with the constraint ${meta.spillway.serves} =
// <business unit> (see pools.MetaServes), which the borrower's own hosts
// carry and a borrowed host carries while lent. A job meant to run only on
// borrowed hosts can instead use the shared node pool with the constraint
// ${meta.spillway.lent_to} = <borrower> ([Placement] returns both). Hosts
// are eligible only while lent.
//
// The package is not named providers/internal, as the architecture sketch
// has it, because Go would then let only packages under providers/ import
// it, and the control plane must.
//
// Host identity is the Nomad node ID. The contract points of
// providers/providertest that are about a cloud (client tokens under a
// lost response, throttling, bad credentials, capacity knobs) do not apply;
// see the package tests for what is checked instead.
package internalpool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"sync"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
)

// Name is the provider name.
const Name = "internal"

// Tags every borrowed host carries in providers.Host.Tags, besides the
// ownership tags.
const (
	// TagBorrower names the borrowing business unit. A Claim carries it in
	// Pool.Tags.
	TagBorrower = "spillway:borrower"
	// TagLender names the business unit that lent the host.
	TagLender = "spillway:lender"
	// TagNodeName is the Nomad node name.
	TagNodeName = "spillway:node-name"
)

// InstanceType is the offering instance type of an internal host.
const InstanceType = "internal"

// Config configures a Provider.
type Config struct {
	// Nomad is the Nomad API client. It is read and changed through
	// ClientNodes unless NomadNodes is set.
	Nomad *nomad.Client
	// NomadNodes, when set, is used instead of Nomad (a simulated Nomad).
	NomadNodes NodeAPI
	// Pool is the shared pool: how lent hosts are found, the lease, the
	// reclaim notice and the drain deadline.
	Pool *pools.SharedPool
	// Ledger records every borrow and return; required.
	Ledger *pools.Ledger
	// Cluster is written to the ownership tag of returned hosts.
	Cluster string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Replace asks the next tier for capacity to replace a reclaimed loan.
	// Reclaim calls it before draining; nil means no replacement. (The
	// controller's lease expiries and reclaims order their own
	// replacement and return hosts through Return.)
	Replace func(ctx context.Context, loan pools.Loan) error
	// MetaSync bounds the wait for a node meta change to reach the Nomad
	// servers (clients batch them, up to about 10s). Default 30s.
	MetaSync time.Duration
	// Drain drains a node with a deadline and waits until the drain is
	// over (the controller's, on the cluster's Orchestrator: the one drain
	// Spillway has); required.
	Drain func(ctx context.Context, node string, deadline time.Duration, reason string) error
	// Nodes, when set, gives Nomad's nodes (the daemon's cluster model), so
	// Free, Observe and Verify read none from Nomad; nil reads them from
	// Nomad (1 + N requests).
	Nodes func(ctx context.Context) ([]pools.NodeUsage, error)
	// AbsentGrace is how long the node of a loan may be missing from
	// Nomad before Repair takes it for gone and returns the loan: a node
	// missing from one list (a server restored from an older snapshot, a
	// node re-registering) is unknown, not gone. Default 5m.
	AbsentGrace time.Duration
}

// NodeAPI is what the provider reads and changes of Nomad's nodes, each
// method with the contract of the Nomad API call it is named after
// (Nodes().List, Info, ToggleEligibility, Meta().Apply). ClientNodes is
// the real one; the scale simulation (internal/scalesim) gives a
// simulated Nomad's.
type NodeAPI interface {
	List(q *nomad.QueryOptions) ([]*nomad.NodeListStub, *nomad.QueryMeta, error)
	Info(id string, q *nomad.QueryOptions) (*nomad.Node, *nomad.QueryMeta, error)
	ToggleEligibility(id string, eligible bool, q *nomad.WriteOptions) (*nomad.NodeEligibilityUpdateResponse, error)
	ApplyMeta(req *nomad.NodeMetaApplyRequest, q *nomad.QueryOptions) (*nomad.NodeMetaResponse, error)
}

// ClientNodes is the NodeAPI of a real Nomad.
type ClientNodes struct{ Client *nomad.Client }

var _ NodeAPI = ClientNodes{}

// List implements NodeAPI.
func (c ClientNodes) List(q *nomad.QueryOptions) ([]*nomad.NodeListStub, *nomad.QueryMeta, error) {
	return c.Client.Nodes().List(q)
}

// Info implements NodeAPI.
func (c ClientNodes) Info(id string, q *nomad.QueryOptions) (*nomad.Node, *nomad.QueryMeta, error) {
	return c.Client.Nodes().Info(id, q)
}

// ToggleEligibility implements NodeAPI.
func (c ClientNodes) ToggleEligibility(id string, eligible bool, q *nomad.WriteOptions) (*nomad.NodeEligibilityUpdateResponse, error) {
	return c.Client.Nodes().ToggleEligibility(id, eligible, q)
}

// ApplyMeta implements NodeAPI.
func (c ClientNodes) ApplyMeta(req *nomad.NodeMetaApplyRequest, q *nomad.QueryOptions) (*nomad.NodeMetaResponse, error) {
	return c.Client.Nodes().Meta().Apply(req, q)
}

// Provider is the shared internal pool. It is safe for concurrent use.
type Provider struct {
	cfg Config

	mu sync.Mutex
	// absent is when Repair first found each loan's node missing from
	// Nomad (AbsentGrace); a node found again is forgotten.
	absent map[string]time.Time
}

var _ providers.Provider = (*Provider)(nil)

// New returns a Provider.
func New(cfg Config) (*Provider, error) {
	if (cfg.Nomad == nil && cfg.NomadNodes == nil) || cfg.Pool == nil || cfg.Ledger == nil || cfg.Drain == nil {
		return nil, errors.New("internal provider: Nomad, Pool, Ledger and Drain are required")
	}
	if cfg.NomadNodes == nil {
		cfg.NomadNodes = ClientNodes{Client: cfg.Nomad}
	}
	if cfg.AbsentGrace <= 0 {
		cfg.AbsentGrace = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MetaSync <= 0 {
		cfg.MetaSync = 30 * time.Second
	}
	if cfg.Pool.LenderMeta == "" {
		cfg.Pool.LenderMeta = pools.MetaBusinessUnit
	}
	return &Provider{cfg: cfg}, nil
}

// Name implements providers.Provider.
func (p *Provider) Name() string { return Name }

// Claim returns a claim for count shared hosts for borrower.
func Claim(pool *pools.SharedPool, id, borrower string, count int) providers.Claim {
	return providers.Claim{ID: id, Count: count, Pool: providers.Pool{
		Name: pool.Name, Tags: map[string]string{TagBorrower: borrower},
	}}
}

// Placement is how a borrower's job targets its borrowed hosts: the shared
// pool's node pool and a constraint on the lending meta.
func Placement(pool *pools.SharedPool, borrower string) (nodePool string, constraints []*nomad.Constraint) {
	return pool.Selector.NodePool, []*nomad.Constraint{
		nomad.NewConstraint("${meta."+pools.MetaLentTo+"}", "=", borrower),
	}
}

// node is a shared-pool node as pools.NodeOf converts it, with the
// address of its agent when it was read from Nomad (the cluster model
// keeps none, so hosts found through Config.Nodes have no PrivateIP).
type node struct {
	pools.NodeUsage
	addr string
}

// nodeOf is n as the provider uses it.
func nodeOf(n *nomad.Node) node { return node{NodeUsage: pools.NodeOf(n), addr: n.HTTPAddr} }

func (n node) lentTo() string { return n.Meta[pools.MetaLentTo] }

// sharedNodes returns every node the shared pool's selector matches.
func (p *Provider) sharedNodes(ctx context.Context) ([]node, error) {
	if p.cfg.Nodes != nil {
		return p.modelNodes(ctx)
	}
	q := (&nomad.QueryOptions{}).WithContext(ctx)
	sel := p.cfg.Pool.Selector
	if sel.NodePool != "" {
		q.Filter = fmt.Sprintf("NodePool == %q", sel.NodePool)
	}
	stubs, _, err := p.cfg.NomadNodes.List(q)
	if err != nil {
		return nil, providers.NewUnavailableError(fmt.Errorf("listing shared-pool nodes: %w", err))
	}
	sort.Slice(stubs, func(i, j int) bool { return stubs[i].Name < stubs[j].Name })
	var out []node
	for _, s := range stubs {
		if sel.NodePool != "" && s.NodePool != sel.NodePool {
			continue
		}
		if sel.NodeClass != "" && s.NodeClass != sel.NodeClass {
			continue
		}
		n, _, err := p.cfg.NomadNodes.Info(s.ID, (&nomad.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return nil, providers.NewUnavailableError(fmt.Errorf("reading node %s: %w", s.Name, err))
		}
		if !sel.Matches(n.NodePool, n.NodeClass, n.Meta) {
			continue
		}
		out = append(out, nodeOf(n))
	}
	return out, nil
}

// modelNodes is sharedNodes from Config.Nodes.
func (p *Provider) modelNodes(ctx context.Context) ([]node, error) {
	all, err := p.cfg.Nodes(ctx)
	if err != nil {
		return nil, providers.NewUnavailableError(fmt.Errorf("reading shared-pool nodes: %w", err))
	}
	sel := p.cfg.Pool.Selector
	var out []node
	for _, n := range all {
		if !sel.Matches(n.NodePool, n.NodeClass, n.Meta) {
			continue
		}
		out = append(out, node{NodeUsage: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (p *Provider) offering(datacenter string) providers.Offering {
	return providers.Offering{InstanceType: InstanceType, Zone: datacenter, CapacityType: providers.CapacityOnDemand,
		Price: p.cfg.Pool.CostPerHostHour}
}

func (p *Provider) host(n node, loan pools.Loan, claimID string) providers.Host {
	ip := n.addr
	if h, _, err := net.SplitHostPort(n.addr); err == nil {
		ip = h
	}
	tags := map[string]string{
		providers.TagCluster: p.cfg.Cluster, providers.TagPool: p.cfg.Pool.Name, providers.TagClaim: claimID,
		TagBorrower: loan.Borrower, TagLender: loan.Lender, TagNodeName: n.Name,
	}
	state := providers.HostRunning
	if !n.Ready {
		state = providers.HostPending
	}
	return providers.Host{ID: n.ID, Provider: Name, Pool: p.cfg.Pool.Name, Claim: claimID, Offering: p.offering(n.Datacenter),
		State: state, PrivateIP: ip, LaunchedAt: loan.Since, Tags: tags}
}

// Create implements providers.Provider: it borrows the shared hosts the
// claim still lacks for the borrower named by claim.Pool.Tags[TagBorrower]
// and returns every host of the claim. It is idempotent on claim.ID: hosts
// are counted through the ledger (whose loans carry the claim), and a loan
// recorded before a crash gets its node meta on the next call.
//
// Errors: a QuotaError when the borrower's quota is used up, an
// InsufficientCapacityError when there are not enough free shared hosts
// (or the lenders' shares are used up), together with the hosts it has.
func (p *Provider) Create(ctx context.Context, claim providers.Claim) ([]providers.Host, error) {
	borrower := claim.Pool.Tags[TagBorrower]
	if borrower == "" {
		return nil, fmt.Errorf("claim %s: pool tag %s names no borrower", claim.ID, TagBorrower)
	}
	nodes, err := p.sharedNodes(ctx)
	if err != nil {
		return nil, err
	}
	byID := map[string]node{}
	for _, n := range nodes {
		byID[n.ID] = n
	}
	var hosts []providers.Host
	for _, loan := range p.cfg.Ledger.Loans() {
		if loan.Claim != claim.ID || loan.Tier != pools.TierShared {
			continue
		}
		n, ok := byID[loan.Host]
		if !ok {
			continue // Verify reports it
		}
		if n.lentTo() != borrower || !n.Eligible {
			if err := p.mark(ctx, n, loan); err != nil {
				return hosts, err
			}
		}
		hosts = append(hosts, p.host(n, loan, claim.ID))
	}
	var lastErr error
	exhausted := map[string]bool{}
	for _, n := range nodes {
		if len(hosts) >= claim.Count {
			break
		}
		if n.lentTo() != "" || !n.Ready || n.Draining {
			continue
		}
		if _, lent := p.cfg.Ledger.Loan(n.ID); lent {
			continue
		}
		lender := n.Meta[p.cfg.Pool.LenderMeta]
		if lender == "" || exhausted[lender] {
			continue
		}
		now := p.cfg.Now()
		loan, err := p.cfg.Ledger.Borrow(ctx, pools.BorrowRequest{
			Host: n.ID, HostName: n.Name, Tier: pools.TierShared, Pool: p.cfg.Pool.Name, Lender: lender, Borrower: borrower,
			At: now, Lease: p.cfg.Pool.Lease, Reason: "claim " + claim.ID, Claim: claim.ID,
		})
		switch {
		case errors.Is(err, pools.ErrQuota):
			return hosts, providers.NewQuotaError(err)
		case errors.Is(err, pools.ErrShare):
			exhausted[lender] = true
			lastErr = err
			continue
		case errors.Is(err, pools.ErrHostLent):
			continue // another borrower won the race
		case err != nil:
			return hosts, err
		}
		if err := p.mark(ctx, n, loan); err != nil {
			// Undo the loan: the host never became the borrower's.
			_, rerr := p.cfg.Ledger.Return(ctx, n.ID, p.cfg.Now(), "marking failed: "+err.Error())
			return hosts, errors.Join(err, rerr)
		}
		hosts = append(hosts, p.host(n, loan, claim.ID))
	}
	if len(hosts) < claim.Count {
		cause := fmt.Errorf("%d of %d shared hosts available", len(hosts), claim.Count)
		if lastErr != nil {
			cause = fmt.Errorf("%w: %w", cause, lastErr)
		}
		dcs := map[string]bool{}
		var offerings []providers.Offering
		for _, n := range nodes {
			if !dcs[n.Datacenter] {
				dcs[n.Datacenter] = true
				offerings = append(offerings, p.offering(n.Datacenter))
			}
		}
		return hosts, providers.NewInsufficientCapacityError(cause, offerings...)
	}
	return hosts, nil
}

// mark writes the lending meta of loan to its node and makes it eligible.
func (p *Provider) mark(ctx context.Context, n node, loan pools.Loan) error {
	lease := loan.Until.UTC().Format(time.RFC3339)
	meta := map[string]*string{pools.MetaLentTo: &loan.Borrower, pools.MetaLease: &lease, pools.MetaClaim: &loan.Claim, pools.MetaServes: &loan.Borrower}
	if _, err := p.cfg.NomadNodes.ApplyMeta(&nomad.NodeMetaApplyRequest{NodeID: n.ID, Meta: meta}, (&nomad.QueryOptions{}).WithContext(ctx)); err != nil {
		return providers.NewUnavailableError(fmt.Errorf("marking node %s lent to %s: %w", n.Name, loan.Borrower, err))
	}
	if _, err := p.cfg.NomadNodes.ToggleEligibility(n.ID, true, (&nomad.WriteOptions{}).WithContext(ctx)); err != nil {
		return providers.NewUnavailableError(fmt.Errorf("making node %s eligible: %w", n.Name, err))
	}
	return p.awaitMeta(ctx, n.ID, n.Name, func(m map[string]string) bool {
		return m[pools.MetaLentTo] == loan.Borrower && m[pools.MetaLease] == lease && m[pools.MetaClaim] == loan.Claim &&
			m[pools.MetaServes] == loan.Borrower
	})
}

// awaitMeta follows node id with blocking queries until the servers' view
// of its meta satisfies ok: clients batch dynamic meta updates, and the
// scheduler only sees what the servers see.
func (p *Provider) awaitMeta(ctx context.Context, id, name string, ok func(map[string]string) bool) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.MetaSync)
	defer cancel()
	var index uint64
	for {
		n, meta, err := p.cfg.NomadNodes.Info(id, (&nomad.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Second}).WithContext(ctx))
		if err != nil {
			return providers.NewUnavailableError(fmt.Errorf("waiting for the meta of node %s to reach the servers: %w", name, err))
		}
		if ok(n.Meta) {
			return nil
		}
		index = meta.LastIndex
	}
}

// unmark removes the lending meta and leaves the node ineligible.
func (p *Provider) unmark(ctx context.Context, id, name string) error {
	meta := map[string]*string{pools.MetaLentTo: nil, pools.MetaLease: nil, pools.MetaClaim: nil, pools.MetaServes: nil}
	if _, err := p.cfg.NomadNodes.ToggleEligibility(id, false, (&nomad.WriteOptions{}).WithContext(ctx)); err != nil {
		return providers.NewUnavailableError(fmt.Errorf("making node %s ineligible: %w", name, err))
	}
	if _, err := p.cfg.NomadNodes.ApplyMeta(&nomad.NodeMetaApplyRequest{NodeID: id, Meta: meta}, (&nomad.QueryOptions{}).WithContext(ctx)); err != nil {
		return providers.NewUnavailableError(fmt.Errorf("removing the lending meta of node %s: %w", name, err))
	}
	return p.awaitMeta(ctx, id, name, func(m map[string]string) bool {
		_, a := m[pools.MetaLentTo]
		_, b := m[pools.MetaLease]
		_, c := m[pools.MetaClaim]
		_, d := m[pools.MetaServes]
		return !a && !b && !c && !d
	})
}

// Delete implements providers.Provider: it returns a borrowed host. It
// drains the node with the pool's drain deadline, records the return in
// the ledger, then removes the lending meta. A host that is not lent is a
// NotFoundError.
func (p *Provider) Delete(ctx context.Context, host providers.Host) error {
	return p.giveBack(ctx, host.ID, p.cfg.Pool.DrainDeadline, pools.ReasonReturned)
}

// Return gives a borrowed host back as Delete does, draining it within
// deadline (the pool's drain deadline when zero), and closes its loan
// in the ledger with reason (pools.ReasonReturned, ReasonLeaseExpired,
// ReasonReclaimed).
func (p *Provider) Return(ctx context.Context, host providers.Host, deadline time.Duration, reason string) error {
	if deadline <= 0 {
		deadline = p.cfg.Pool.DrainDeadline
	}
	return p.giveBack(ctx, host.ID, deadline, reason)
}

func (p *Provider) giveBack(ctx context.Context, id string, deadline time.Duration, reason string) error {
	n, _, err := p.cfg.NomadNodes.Info(id, (&nomad.QueryOptions{}).WithContext(ctx))
	if err != nil {
		if isNotFound(err) {
			if _, lent := p.cfg.Ledger.Loan(id); lent {
				_, err := p.cfg.Ledger.Return(ctx, id, p.cfg.Now(), reason+"; node gone from Nomad")
				return err
			}
			return providers.NewNotFoundError(id, err)
		}
		return providers.NewUnavailableError(fmt.Errorf("reading node %s: %w", id, err))
	}
	_, lent := p.cfg.Ledger.Loan(id)
	if !lent && n.Meta[pools.MetaLentTo] == "" {
		return providers.NewNotFoundError(id, errors.New("host is not lent"))
	}
	if err := p.drain(ctx, n, deadline); err != nil {
		return err
	}
	if lent {
		if _, err := p.cfg.Ledger.Return(ctx, id, p.cfg.Now(), reason); err != nil && !errors.Is(err, pools.ErrNotLent) {
			return err
		}
	}
	if n.Status != nomad.NodeStatusReady {
		// Nomad changes a node's meta through its client, which a node
		// that is down cannot take. The return is recorded (the ledger is
		// the record of truth) and the node made ineligible, which the
		// servers do alone, so nothing is placed on it for the borrower
		// when it is back; the reconcile pass then removes the mark
		// (Repair: "left marked lent by a recorded return").
		if _, err := p.cfg.NomadNodes.ToggleEligibility(id, false, (&nomad.WriteOptions{}).WithContext(ctx)); err != nil {
			return providers.NewUnavailableError(fmt.Errorf("making node %s ineligible: %w", n.Name, err))
		}
		return nil
	}
	return p.unmark(ctx, id, n.Name)
}

// drain drains the node's allocations with deadline and waits for the
// drain to finish, through Config.Drain.
func (p *Provider) drain(ctx context.Context, n *nomad.Node, deadline time.Duration) error {
	return p.cfg.Drain(ctx, n.ID, deadline, "shared host returned")
}

// Reclaim gives a lent host back to its lender: the ledger records the
// reclaim with the pool's reclaim notice, Replace asks for replacement
// capacity for the borrower, then the host is drained (within what is left
// of the notice) and returned, its loan closed as reclaimed.
func (p *Provider) Reclaim(ctx context.Context, id, reason string) error {
	loan, err := p.cfg.Ledger.Reclaim(ctx, id, p.cfg.Now(), p.cfg.Pool.ReclaimNotice, reason)
	if err != nil {
		return err
	}
	if p.cfg.Replace != nil {
		if err := p.cfg.Replace(ctx, loan); err != nil {
			// The lender's claim stands: the host goes back regardless,
			// and the borrower's controller sees the shortfall.
			err = fmt.Errorf("requesting a replacement for host %s: %w", loan.HostName, err)
			return errors.Join(err, p.giveBack(ctx, id, p.drainWithin(loan), pools.ReasonReclaimed))
		}
	}
	return p.giveBack(ctx, id, p.drainWithin(loan), pools.ReasonReclaimed)
}

// drainWithin is the drain deadline that still returns loan by its reclaim
// deadline.
func (p *Provider) drainWithin(loan pools.Loan) time.Duration {
	left := loan.ReclaimBy.Sub(p.cfg.Now())
	return max(min(p.cfg.Pool.DrainDeadline, left), time.Second)
}

// Extend renews the lease of a borrowed host for lease from now (the
// pool's lease when zero) and updates its lease meta.
func (p *Provider) Extend(ctx context.Context, id string, lease time.Duration, reason string) (pools.Loan, error) {
	if lease <= 0 {
		lease = p.cfg.Pool.Lease
	}
	loan, err := p.cfg.Ledger.Extend(ctx, id, "", p.cfg.Now(), lease, reason)
	if err != nil {
		return loan, err
	}
	until := loan.Until.UTC().Format(time.RFC3339)
	_, err = p.cfg.NomadNodes.ApplyMeta(&nomad.NodeMetaApplyRequest{NodeID: id, Meta: map[string]*string{pools.MetaLease: &until}},
		(&nomad.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return loan, providers.NewUnavailableError(fmt.Errorf("updating the lease meta of node %s: %w", loan.HostName, err))
	}
	return loan, p.awaitMeta(ctx, id, loan.HostName, func(m map[string]string) bool { return m[pools.MetaLease] == until })
}

// Get implements providers.Provider: the borrowed host with node ID id, or
// a NotFoundError when it is not lent.
func (p *Provider) Get(ctx context.Context, id string) (providers.Host, error) {
	n, _, err := p.cfg.NomadNodes.Info(id, (&nomad.QueryOptions{}).WithContext(ctx))
	if err != nil {
		if isNotFound(err) {
			return providers.Host{}, providers.NewNotFoundError(id, err)
		}
		return providers.Host{}, providers.NewUnavailableError(fmt.Errorf("reading node %s: %w", id, err))
	}
	if n.Meta[pools.MetaLentTo] == "" || !p.cfg.Pool.Selector.Matches(n.NodePool, n.NodeClass, n.Meta) {
		return providers.Host{}, providers.NewNotFoundError(id, errors.New("host is not lent"))
	}
	nn := nodeOf(n)
	return p.host(nn, p.loanOf(nn), n.Meta[pools.MetaClaim]), nil
}

// loanOf returns the ledger's loan of n, or one made up from its meta.
func (p *Provider) loanOf(n node) pools.Loan {
	if loan, ok := p.cfg.Ledger.Loan(n.ID); ok {
		return loan
	}
	return pools.Loan{Host: n.ID, HostName: n.Name, Borrower: n.lentTo(), Lender: n.Meta[p.cfg.Pool.LenderMeta]}
}

// List implements providers.Provider: the pool's borrowed hosts, found
// through the lending meta on the nodes alone.
func (p *Provider) List(ctx context.Context, pool string) ([]providers.Host, error) {
	if pool != p.cfg.Pool.Name {
		return nil, nil
	}
	nodes, err := p.sharedNodes(ctx)
	if err != nil {
		return nil, err
	}
	var out []providers.Host
	for _, n := range nodes {
		if n.lentTo() != "" {
			out = append(out, p.host(n, p.loanOf(n), n.Meta[pools.MetaClaim]))
		}
	}
	return out, nil
}

// Catalog implements providers.Provider: one offering per datacenter,
// available while a shared host there is free, priced at the pool's
// internal chargeback rate.
func (p *Provider) Catalog(ctx context.Context, _ providers.Pool) ([]providers.Offering, error) {
	nodes, err := p.sharedNodes(ctx)
	if err != nil {
		return nil, err
	}
	byDC := map[string]*providers.Offering{}
	var dcs []string
	for _, n := range nodes {
		o, ok := byDC[n.Datacenter]
		if !ok {
			off := p.offering(n.Datacenter)
			o = &off
			byDC[n.Datacenter] = o
			dcs = append(dcs, n.Datacenter)
		}
		if n.lentTo() == "" && n.Ready && !n.Draining {
			o.Available = true
		}
	}
	slices.Sort(dcs)
	out := make([]providers.Offering, 0, len(dcs))
	for _, dc := range dcs {
		out = append(out, *byDC[dc])
	}
	return out, nil
}

// Free is how many shared hosts are free to borrow now.
func (p *Provider) Free(ctx context.Context) (int, error) {
	nodes, err := p.sharedNodes(ctx)
	if err != nil {
		return 0, err
	}
	free := 0
	for _, n := range nodes {
		if _, lent := p.cfg.Ledger.Loan(n.ID); !lent && n.lentTo() == "" && n.Ready && !n.Draining {
			free++
		}
	}
	return free, nil
}

// Observe reads what Nomad's node meta says about every shared-pool host,
// for pools.Ledger.Verify.
func (p *Provider) Observe(ctx context.Context) ([]pools.ObservedHost, error) {
	nodes, err := p.sharedNodes(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]pools.ObservedHost, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, pools.ObservedHost{Host: n.ID, Name: n.Name, LentTo: n.lentTo(), Lease: n.Meta[pools.MetaLease], Lender: n.Meta[p.cfg.Pool.LenderMeta]})
	}
	return out, nil
}

// Verify compares the ledger with Nomad's node meta; see pools.Ledger.Verify.
func (p *Provider) Verify(ctx context.Context) ([]pools.Discrepancy, error) {
	obs, err := p.Observe(ctx)
	if err != nil {
		return nil, err
	}
	return p.cfg.Ledger.Verify(obs), nil
}

// Repair makes Nomad agree with the ledger, which is the record of truth
// (every change reaches it before Nomad): a node left marked lent by a
// return the ledger recorded is drained and unmarked; a node marked lent
// in a loan the ledger never recorded (a lost or younger journal,
// pools.Ledger.Unrecorded) is never drained on that doubt: the loan is
// adopted into the ledger, for an operator to release; a loan whose node
// is not marked, or is marked for someone else, is (drained and) marked
// again; a loan of a node Nomad has not had for AbsentGrace is returned
// (before that, it is unknown, not gone). It returns what it could not
// repair.
func (p *Provider) Repair(ctx context.Context, ds []pools.Discrepancy) error {
	p.forgetFound(ds)
	var errs []error
	for _, d := range ds {
		var err error
		switch {
		case d.Nomad == "absent":
			since, gone := p.goneSince(d.Host)
			if !gone {
				continue // journaled by the caller as a discrepancy, every pass until then
			}
			_, err = p.cfg.Ledger.Return(ctx, d.Host, p.cfg.Now(), fmt.Sprintf("repair: node gone from Nomad since %s", since.UTC().Format(time.RFC3339)))
		case d.LentUnrecorded() && p.cfg.Ledger.Unrecorded(d.Host, d.LeaseUntil(), p.cfg.Pool.Lease):
			_, err = p.cfg.Ledger.Adopt(ctx, d.Adoption(p.cfg.Pool, p.cfg.Now()))
			if errors.Is(err, pools.ErrHostLent) {
				err = nil // recorded since
			}
		case d.Ledger == "":
			err = p.giveBack(ctx, d.Host, p.cfg.Pool.DrainDeadline, "repair: left marked lent by a recorded return")
		default:
			loan, ok := p.cfg.Ledger.Loan(d.Host)
			if !ok {
				continue // returned since
			}
			if d.MarkedNewer(loan, p.cfg.Pool.Lease) {
				err = fmt.Errorf("its node meta marks it lent to %s in a lease newer than the ledger's loan to %s: left to an operator, not drained", d.Nomad, d.Ledger)
				break
			}
			n, _, ierr := p.cfg.NomadNodes.Info(d.Host, (&nomad.QueryOptions{}).WithContext(ctx))
			if ierr != nil {
				err = providers.NewUnavailableError(fmt.Errorf("reading node %s: %w", d.Host, ierr))
				break
			}
			if d.Nomad != "" {
				if err = p.drain(ctx, n, p.cfg.Pool.DrainDeadline); err != nil {
					break
				}
			}
			err = p.mark(ctx, nodeOf(n), loan)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("repairing %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// goneSince is when the node of host was first found missing, and
// whether that is AbsentGrace ago.
func (p *Provider) goneSince(host string) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.cfg.Now()
	if p.absent == nil {
		p.absent = map[string]time.Time{}
	}
	since, ok := p.absent[host]
	if !ok {
		p.absent[host] = now
		return now, false
	}
	return since, now.Sub(since) >= p.cfg.AbsentGrace
}

// forgetFound forgets the hosts found missing before that are not
// missing in ds: their nodes are back, or their loans ended.
func (p *Provider) forgetFound(ds []pools.Discrepancy) {
	p.mu.Lock()
	defer p.mu.Unlock()
	missing := map[string]bool{}
	for _, d := range ds {
		if d.Nomad == "absent" {
			missing[d.Host] = true
		}
	}
	for h := range p.absent {
		if !missing[h] {
			delete(p.absent, h)
		}
	}
}

func isNotFound(err error) bool {
	var re nomad.UnexpectedResponseError
	if errors.As(err, &re) && re.StatusCode() == 404 {
		return true
	}
	var rep *nomad.UnexpectedResponseError
	return errors.As(err, &rep) && rep.StatusCode() == 404
}
