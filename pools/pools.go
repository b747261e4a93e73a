package pools

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spillwayhq/spillway/internal/bandwidth"
	"github.com/spillwayhq/spillway/internal/strictyaml"
	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/bootstrap"
)

// APIVersion is the apiVersion of every pool document.
const APIVersion = "spillway/v1"

// Document kinds.
const (
	KindBusinessUnit = "BusinessUnit"
	KindSharedPool   = "SharedPool"
	KindCloudPool    = "CloudPool"
	KindLink         = "Link"
)

// Kinds lists the document kinds a pool file may hold.
var Kinds = []string{KindBusinessUnit, KindSharedPool, KindCloudPool, KindLink}

// Cloud provider names a CloudPool may use.
const (
	ProviderAWS      = "aws"
	ProviderAlicloud = "alicloud"
)

// Defaults applied when a field is left out.
const (
	DefaultLease             = 2 * time.Hour
	DefaultReclaimNotice     = 5 * time.Minute
	DefaultDrainDeadline     = 2 * time.Minute
	DefaultTimeToReady       = 3 * time.Minute
	defaultSharedTimeToReady = 30 * time.Second
	DefaultCurrency          = "USD"
	DefaultPriority          = 50
	// DefaultTargetUtilization is the share of a link's bandwidth the
	// planner fills when the link sets none.
	DefaultTargetUtilization Percent = 80
)

// Node meta keys Spillway reads and writes on internal hosts. The lab sets
// MetaBusinessUnit and MetaTier on every internal host; the internal
// provider sets MetaLentTo, MetaLease, MetaClaim and MetaServes on a
// borrowed host.
//
// MetaServes names the business unit whose services may run on a node: a
// business unit's own hosts carry it in their agent config, and Spillway
// sets it on the hosts it borrows or rents for that business unit and
// removes it when it gives them back. A service that bursts runs in node
// pool "all" with the constraint ${meta.spillway.serves} = <its business
// unit>, so Nomad places it on its own hosts and on burst hosts alike.
const (
	MetaServes       = "spillway.serves"
	MetaBusinessUnit = "spillway.business_unit"
	MetaTier         = "spillway.tier"
	MetaLentTo       = "spillway.lent_to"
	MetaLease        = "spillway.lease"
	MetaClaim        = "spillway.claim"
)

// Percent is a share such as "10%". In YAML it is written "10%" or as a bare
// number of percent (10). Validation keeps it within 0–100.
type Percent float64

// UnmarshalYAML implements strictyaml.NodeUnmarshaler.
func (p *Percent) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a percentage such as 10%%")
	}
	s := strings.TrimSpace(n.Value)
	s = strings.TrimSuffix(s, "%")
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("expected a percentage such as 10%%, got %q", n.Value)
	}
	*p = Percent(f)
	return nil
}

// Fraction is p as a fraction of 1.
func (p Percent) Fraction() float64 { return float64(p) / 100 }

// String implements fmt.Stringer.
func (p Percent) String() string { return strconv.FormatFloat(float64(p), 'f', -1, 64) + "%" }

// Header is what every pool document starts with.
type Header struct {
	APIVersion string `yaml:"apiVersion" json:"apiVersion"`
	Kind       string `yaml:"kind" json:"kind"`
	Name       string `yaml:"name" json:"name"`
	// Description is free text for people.
	Description string `yaml:"description" json:"description,omitempty"`

	pos *strictyaml.Positions
}

// File is the file the document was loaded from.
func (h *Header) File() string {
	if h.pos == nil {
		return ""
	}
	return h.pos.File
}

// Line is the line where the document starts.
func (h *Header) Line() int {
	if h.pos == nil {
		return 0
	}
	return h.pos.Doc.Line
}

// Positions locates the document's fields, for errors found after loading.
func (h *Header) Positions() *strictyaml.Positions { return h.pos }

// Selector picks Nomad nodes. Every set field must match; at least one must
// be set.
type Selector struct {
	NodePool  string            `yaml:"node_pool" json:"node_pool,omitempty"`
	NodeClass string            `yaml:"node_class" json:"node_class,omitempty"`
	Meta      map[string]string `yaml:"meta" json:"meta,omitempty"`
}

// Empty reports whether the selector sets nothing.
func (s Selector) Empty() bool { return s.NodePool == "" && s.NodeClass == "" && len(s.Meta) == 0 }

// Matches reports whether a node with this pool, class and meta is selected.
func (s Selector) Matches(nodePool, nodeClass string, meta map[string]string) bool {
	if s.Empty() {
		return false
	}
	if s.NodePool != "" && s.NodePool != nodePool {
		return false
	}
	if s.NodeClass != "" && s.NodeClass != nodeClass {
		return false
	}
	for k, v := range s.Meta {
		if meta[k] != v {
			return false
		}
	}
	return true
}

// BusinessUnit is a tenant of the data centre: it owns the hosts its
// selector matches, lends a share of them to the shared pool and may borrow
// up to its quota.
type BusinessUnit struct {
	Header `yaml:",inline"`
	// Selector matches the business unit's own hosts.
	Selector Selector `yaml:"selector" json:"selector"`
	// Priority orders business units when capacity is contended and decides
	// reclaims: a higher priority borrower keeps its hosts longer. 0–100.
	Priority  int       `yaml:"priority" json:"priority"`
	Lending   Lending   `yaml:"lending" json:"lending"`
	Borrowing Borrowing `yaml:"borrowing" json:"borrowing"`
	// Deadline is how soon a scale-out of the unit's services must be
	// healthy when no policy governs the task group (a count raised by
	// `nomad job scale`, a deploy, another autoscaler). Default 5m.
	Deadline time.Duration `yaml:"deadline" json:"deadline,omitempty"`
}

// DefaultScaleOutDeadline is a business unit's Deadline when it sets none.
const DefaultScaleOutDeadline = 5 * time.Minute

// ScaleOutDeadline is Deadline, or its default.
func (b *BusinessUnit) ScaleOutDeadline() time.Duration {
	if b.Deadline > 0 {
		return b.Deadline
	}
	return DefaultScaleOutDeadline
}

// Lending is what a business unit lends to the shared pool.
type Lending struct {
	// Share is the most of its hosts the unit lends at once, e.g. 10%.
	Share Percent `yaml:"share" json:"share"`
	// Overcommit lets the ledger lend more than Share when a borrow asks for
	// it explicitly (an incident, a gala). Off by default.
	Overcommit bool `yaml:"overcommit" json:"overcommit,omitempty"`
}

// Borrowing is what a business unit may borrow.
type Borrowing struct {
	// Quota is the most shared hosts the unit holds at once.
	Quota int `yaml:"quota" json:"quota"`
}

// LendCap is the most hosts the unit may lend when it owns hosts hosts.
func (b *BusinessUnit) LendCap(hosts int) int {
	return int(math.Floor(b.Lending.Share.Fraction()*float64(hosts) + 1e-9))
}

// SharedPool is the internal pool business units lend hosts into.
type SharedPool struct {
	Header `yaml:",inline"`
	// Selector identifies the lent hosts: the lab's are node pool "shared"
	// with meta spillway.tier=shared. The lender of each host is its
	// LenderMeta value.
	Selector Selector `yaml:"selector" json:"selector"`
	// LenderMeta is the node meta key naming the business unit that lent a
	// host. Default spillway.business_unit.
	LenderMeta string `yaml:"lender_meta" json:"lender_meta"`
	// Lease is how long a borrow lasts before it must be extended.
	Lease time.Duration `yaml:"lease" json:"lease"`
	// ReclaimNotice is how long a borrower has to give a host back once its
	// lender reclaims it; replacement capacity is requested first.
	ReclaimNotice time.Duration `yaml:"reclaim_notice" json:"reclaim_notice"`
	// DrainDeadline bounds the drain of the borrower's allocations on
	// return. It must not exceed ReclaimNotice.
	DrainDeadline time.Duration `yaml:"drain_deadline" json:"drain_deadline"`
	// CostPerHostHour is the internal chargeback rate of a borrowed host.
	CostPerHostHour float64 `yaml:"cost_per_host_hour" json:"cost_per_host_hour,omitempty"`
	// TimeToReady is how long a borrowed host takes to take work. Default 30s.
	TimeToReady time.Duration `yaml:"time_to_ready" json:"time_to_ready"`
}

// CloudPool is a set of rentable cloud offerings in one region.
type CloudPool struct {
	Header `yaml:",inline"`
	// Provider is "aws" or "alicloud".
	Provider string `yaml:"provider" json:"provider"`
	Region   string `yaml:"region" json:"region"`
	// Zones the pool launches into, e.g. us-east-1a or cn-beijing-h.
	Zones []string `yaml:"zones" json:"zones"`
	// Subnets maps a zone to the subnet (AWS) or vSwitch (Alibaba) to
	// launch into there. Every zone needs one.
	Subnets map[string]string `yaml:"subnets" json:"subnets"`
	// Offerings are the instance types, in order of preference.
	Offerings []InstanceOffering `yaml:"offerings" json:"offerings"`
	// Spot is the share of the pool's hosts bought as spot; the rest is
	// on-demand.
	Spot Percent `yaml:"spot" json:"spot"`
	// Bootstrap is how the pool's hosts boot and join Nomad: the OS, the
	// image catalog (one image per region) and the Nomad client settings,
	// rendered to Ignition by providers/bootstrap.
	Bootstrap *bootstrap.Spec `yaml:"bootstrap" json:"bootstrap"`
	// Launch selects the launch API and template.
	Launch Launch `yaml:"launch" json:"launch"`
	// MaxHosts caps the pool's hosts.
	MaxHosts int `yaml:"max_hosts" json:"max_hosts"`
	// BudgetPerHour caps what the pool's hosts may cost per hour, in
	// Currency.
	BudgetPerHour float64 `yaml:"budget_per_hour" json:"budget_per_hour"`
	Currency      string  `yaml:"currency" json:"currency"`
	// TimeToReady is the expected time from request to Nomad node ready
	// (API, boot, join, image pull) until there is measured history; see
	// EstimateTimeToReady.
	TimeToReady time.Duration `yaml:"time_to_ready" json:"time_to_ready"`
	// Warm describes stopped or pre-booted instances the pool keeps.
	Warm Warm `yaml:"warm" json:"warm"`
	// Tags are extra cloud tags on every host.
	Tags map[string]string `yaml:"tags" json:"tags,omitempty"`
	// Link names the Link (a dedicated line to the data centre) the
	// pool's hosts reach the data centre over: the planner puts no more
	// allocations behind it than it carries at its target utilization.
	// Empty: no link limits the pool.
	Link string `yaml:"link" json:"link,omitempty"`
}

// Link is a dedicated line between the data centre and a cloud region,
// such as a 1 Gbit/s Express Connect or Direct Connect circuit. Cloud
// pools that name it share it: the planner puts no more allocations
// behind it than Bandwidth × TargetUtilization carries, at each service's
// traffic per allocation (its policy's traffic).
type Link struct {
	Header `yaml:",inline"`
	// Bandwidth is what the line carries, e.g. 1Gbps or 100Mbps. An
	// operator may change it at run time (POST /v1/links/{name}).
	Bandwidth bandwidth.Bandwidth `yaml:"bandwidth" json:"bandwidth"`
	// TargetUtilization is the share of Bandwidth the planner fills,
	// 1–100%. Default 80%.
	TargetUtilization Percent `yaml:"target_utilization" json:"target_utilization"`
}

// Carries is what the planner may put on a link of bandwidth bw: bw at
// the link's target utilization.
func (l *Link) Carries(bw bandwidth.Bandwidth) bandwidth.Bandwidth {
	return bw * bandwidth.Bandwidth(l.TargetUtilization.Fraction())
}

// InstanceOffering is one instance type of a cloud pool.
type InstanceOffering struct {
	InstanceType string `yaml:"instance_type" json:"instance_type"`
	// Weight is how many hosts' worth of capacity one instance is, for
	// instance types of different sizes. Default 1.
	Weight float64 `yaml:"weight" json:"weight"`
	// Price is the expected hourly price, until the provider's catalog says
	// otherwise.
	Price Price `yaml:"price" json:"price"`
	// CPUMHz and MemoryMB are what a Nomad node on this instance type
	// offers allocations (its allocatable CPU and memory). Optional, set
	// both or neither: unknown, work of any size may fit it; known, work
	// larger than every offering of every pool is reported unservable
	// instead of being rented for.
	CPUMHz   int `yaml:"cpu_mhz" json:"cpu_mhz,omitempty"`
	MemoryMB int `yaml:"memory_mb" json:"memory_mb,omitempty"`
}

// Price is an hourly price per capacity type.
type Price struct {
	OnDemand float64 `yaml:"on_demand" json:"on_demand"`
	Spot     float64 `yaml:"spot" json:"spot,omitempty"`
}

// Of returns the price of capacity type ct.
func (p Price) Of(ct providers.CapacityType) float64 {
	if ct == providers.CapacitySpot {
		return p.Spot
	}
	return p.OnDemand
}

// Launch is how a cloud pool launches instances.
type Launch struct {
	// Template is the EC2 launch template (lt-… or name) CreateFleet
	// launches from. AWS only.
	Template string `yaml:"template" json:"template,omitempty"`
	// Strategy is "fleet" or "run-instances"; empty is the provider default.
	Strategy string `yaml:"strategy" json:"strategy,omitempty"`
}

// Warm is a pool's warm capacity: instances kept stopped or pre-booted.
type Warm struct {
	// Hosts is how many warm instances the pool keeps.
	Hosts int `yaml:"hosts" json:"hosts"`
	// TimeToReady is how long a warm instance takes to be ready.
	TimeToReady time.Duration `yaml:"time_to_ready" json:"time_to_ready"`
}

// CapacityTypes returns the capacity types the pool buys, spot first.
func (c *CloudPool) CapacityTypes() []providers.CapacityType {
	switch {
	case c.Spot <= 0:
		return []providers.CapacityType{providers.CapacityOnDemand}
	case c.Spot >= 100:
		return []providers.CapacityType{providers.CapacitySpot}
	}
	return []providers.CapacityType{providers.CapacitySpot, providers.CapacityOnDemand}
}

// ProviderOfferings expands the pool into provider offerings: every instance
// type × zone × capacity type, in order of preference (instance type, then
// zone, spot before on-demand), priced from the configuration.
func (c *CloudPool) ProviderOfferings() []providers.Offering {
	var out []providers.Offering
	for _, o := range c.Offerings {
		for _, z := range c.Zones {
			for _, ct := range c.CapacityTypes() {
				out = append(out, providers.Offering{
					InstanceType: o.InstanceType, Zone: z, Subnet: c.Subnets[z],
					CapacityType: ct, Price: o.Price.Of(ct), Available: true,
				})
			}
		}
	}
	return out
}

// ProviderPool is what a provider needs to launch into the pool.
func (c *CloudPool) ProviderPool() providers.Pool {
	tags := make(map[string]string, len(c.Tags))
	for k, v := range c.Tags {
		tags[k] = v
	}
	return providers.Pool{
		Name: c.Name, Offerings: c.ProviderOfferings(), ImageID: c.ImageID(),
		LaunchTemplate: c.Launch.Template, Strategy: providers.LaunchStrategy(c.Launch.Strategy), Tags: tags,
	}
}

// ImageID is the image the pool boots in its region, from the bootstrap
// image catalog.
func (c *CloudPool) ImageID() string {
	if c.Bootstrap == nil {
		return ""
	}
	im, err := c.Bootstrap.Image(c.Region)
	if err != nil {
		return ""
	}
	return im.ID
}

// weightOf returns the weight of an instance type, 1 when unknown.
func (c *CloudPool) weightOf(instanceType string) float64 {
	for _, o := range c.Offerings {
		if o.InstanceType == instanceType && o.Weight > 0 {
			return o.Weight
		}
	}
	return 1
}

// Config is a validated set of pool documents. It is immutable and safe for
// concurrent use.
type Config struct {
	BusinessUnits []*BusinessUnit
	// Shared is the shared internal pool, nil when none is configured.
	Shared     *SharedPool
	CloudPools []*CloudPool
	// Links are the dedicated lines cloud pools may name.
	Links []*Link
	files []string
}

// Link returns the link named name.
func (c *Config) Link(name string) (*Link, bool) {
	for _, l := range c.Links {
		if l.Name == name {
			return l, true
		}
	}
	return nil, false
}

// PoolsBehind returns the names of the cloud pools that name link.
func (c *Config) PoolsBehind(link string) []string {
	var out []string
	for _, p := range c.CloudPools {
		if p.Link == link {
			out = append(out, p.Name)
		}
	}
	return out
}

// BusinessUnit returns the business unit named name.
func (c *Config) BusinessUnit(name string) (*BusinessUnit, bool) {
	for _, b := range c.BusinessUnits {
		if b.Name == name {
			return b, true
		}
	}
	return nil, false
}

// CloudPool returns the cloud pool named name.
func (c *Config) CloudPool(name string) (*CloudPool, bool) {
	for _, p := range c.CloudPools {
		if p.Name == name {
			return p, true
		}
	}
	return nil, false
}

// Files are the files the configuration was loaded from.
func (c *Config) Files() []string { return append([]string(nil), c.files...) }

// Limits returns the ledger limits of the configuration, given how many
// hosts each business unit owns (from Nomad).
func (c *Config) Limits(ownedHosts map[string]int) Limits {
	l := Limits{Quota: map[string]int{}, LendCap: map[string]int{}, Overcommit: map[string]bool{}}
	for _, b := range c.BusinessUnits {
		l.Quota[b.Name] = b.Borrowing.Quota
		l.LendCap[b.Name] = b.LendCap(ownedHosts[b.Name])
		l.Overcommit[b.Name] = b.Lending.Overcommit
	}
	return l
}
