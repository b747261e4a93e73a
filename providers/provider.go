// Package providers owns the Provider interface through which Spillway rents
// and returns hosts, the typed errors that providers return at that boundary,
// and the metrics decorator that instruments every provider call.
//
// Implementations live in sub-packages: aws (EC2), alicloud (ECS) and fake
// (in-memory, for tests). cloudsim is a wire-level EC2 and ECS simulator the
// real providers are tested against, and providertest is the contract suite
// every implementation must pass.
//
// This package never imports controlplane.
package providers

import (
	"context"
	"fmt"
	"time"
)

// Ownership tag keys. Every instance Spillway creates carries all three; Get,
// List and Delete find Spillway's hosts only through them. The Terraform
// contract tests read these constants, so they are part of the public API.
const (
	// TagCluster names the Spillway control plane (cluster) that owns a host.
	TagCluster = "spillway:cluster"
	// TagPool names the pool a host belongs to.
	TagPool = "spillway:pool"
	// TagClaim carries the claim ID a host was created for.
	TagClaim = "spillway:claim"
)

// CapacityType is the purchasing option of an offering.
type CapacityType string

// Capacity types.
const (
	CapacitySpot     CapacityType = "spot"
	CapacityOnDemand CapacityType = "on-demand"
)

// LaunchStrategy selects the API a cloud provider launches with.
type LaunchStrategy string

// Launch strategies. The zero value means the provider's default: CreateFleet
// type instant on AWS, RunInstances on Alibaba Cloud.
const (
	LaunchDefault      LaunchStrategy = ""
	LaunchFleet        LaunchStrategy = "fleet"
	LaunchRunInstances LaunchStrategy = "run-instances"
)

// Offering is one purchasable unit of capacity: instance type × zone ×
// capacity type, optionally pinned to a subnet (AWS) or vSwitch (Alibaba).
type Offering struct {
	InstanceType string
	Zone         string
	// Subnet is the AWS subnet ID or the Alibaba vSwitch ID to launch into.
	Subnet       string
	CapacityType CapacityType
	// Price is the hourly price in the cloud's currency. Catalog fills it in
	// from the cloud where the cloud publishes it (spot history, DescribePrice).
	Price float64
	// Available reports whether the cloud currently offers it. Only Catalog
	// sets it.
	Available bool
}

// Key identifies an offering independent of price and availability.
func (o Offering) Key() string {
	return fmt.Sprintf("%s/%s/%s", o.InstanceType, o.Zone, o.CapacityType)
}

// String implements fmt.Stringer.
func (o Offering) String() string { return o.Key() }

// Pool is what a provider needs to know about a pool to launch into it.
type Pool struct {
	// Name is the pool name, written to TagPool.
	Name string
	// Offerings in order of preference.
	Offerings []Offering
	// ImageID is the AMI or ECS image to boot.
	ImageID string
	// LaunchTemplate is the EC2 launch template ID (lt-…) or name that
	// CreateFleet launches from. Ignored on Alibaba Cloud.
	LaunchTemplate string
	// Strategy selects CreateFleet or RunInstances on AWS.
	Strategy LaunchStrategy
	// UserData is passed verbatim (the provider encodes it) to RunInstances.
	// With CreateFleet the launch template carries the user data.
	UserData []byte
	// Tags are extra tags written to every instance, besides the ownership tags.
	Tags map[string]string
}

// Claim asks for Count hosts of a pool. The ID makes Create idempotent: a
// claim is complete when Count hosts carry its TagClaim.
type Claim struct {
	ID    string
	Pool  Pool
	Count int
	// Offerings restricts this attempt to a subset of the pool's offerings,
	// in order of preference. Empty means all of Pool.Offerings. The planner
	// uses it to fall back: it retries the same claim on the next offering.
	Offerings []Offering
}

// EffectiveOfferings returns the offerings this claim may launch on.
func (c Claim) EffectiveOfferings() []Offering {
	if len(c.Offerings) > 0 {
		return c.Offerings
	}
	return c.Pool.Offerings
}

// HostState is the lifecycle state of a host, normalised across clouds.
type HostState string

// Host states.
const (
	HostPending    HostState = "pending"
	HostRunning    HostState = "running"
	HostStopping   HostState = "stopping"
	HostStopped    HostState = "stopped"
	HostTerminated HostState = "terminated"
)

// Host is one instance Spillway owns. ID is the cloud's instance ID and is
// the host's identity: the Nomad node later proves it through the
// unique.platform.aws.instance-id attribute or node meta.
type Host struct {
	ID         string
	Provider   string
	Pool       string
	Claim      string
	Offering   Offering
	State      HostState
	PrivateIP  string
	LaunchedAt time.Time
	Tags       map[string]string
	// InterruptAt is set on a spot host that got an interruption notice:
	// when the cloud reclaims it. EC2 marks the host's spot request
	// marked-for-termination and reclaims it SpotNotice later; ECS puts
	// a Recycling operation lock on it without saying when, so the
	// provider takes SpotNotice from when it first saw the lock. Zero
	// without a notice.
	InterruptAt time.Time
}

// SpotNotice is how long a spot host runs on after its interruption
// notice: EC2's two minutes. ECS gives five; Spillway assumes the shorter.
const SpotNotice = 2 * time.Minute

// Provider rents and returns hosts on one cloud account and region for one
// Spillway cluster. Every method is safe for concurrent use.
//
// Errors are typed (see errors.go): callers switch on IsInsufficientCapacity,
// IsQuota, IsThrottled, IsNotFound, IsUnavailable and IsAuth to fall back.
type Provider interface {
	// Name is the provider's short name: "aws", "alicloud" or "fake".
	Name() string

	// Create launches the hosts claim still lacks and returns every host of
	// the claim, including hosts created by earlier calls with the same claim
	// ID. It is idempotent on claim.ID: hosts are counted through TagClaim,
	// and each launch request carries a client token derived from the claim,
	// so a request the SDK retries never launches twice.
	//
	// Partial fulfilment is normal. When fewer than claim.Count hosts exist
	// at the end, Create returns the hosts it has together with an
	// InsufficientCapacityError naming the offerings that ran out (or a
	// Quota, Throttled or Unavailable error). The caller then retries the
	// same claim on other offerings to complete it.
	Create(ctx context.Context, claim Claim) ([]Host, error)

	// Delete terminates a host. It returns a NotFoundError when the instance
	// is already gone (or terminated, or not owned by this cluster); callers
	// treat that as success.
	Delete(ctx context.Context, host Host) error

	// Get returns one host by instance ID, or a NotFoundError when it does
	// not exist, is terminated, or is not owned by this cluster.
	Get(ctx context.Context, id string) (Host, error)

	// List returns the live (not terminated) hosts of a pool, found through
	// the ownership tags alone: a new Provider with no in-memory state lists
	// the same hosts.
	List(ctx context.Context, pool string) ([]Host, error)

	// Catalog returns the pool's offerings with price and availability as
	// the cloud reports them now.
	Catalog(ctx context.Context, pool Pool) ([]Offering, error)
}

// OwnershipTags returns the tags every host of claim carries.
func OwnershipTags(cluster string, claim Claim) map[string]string {
	tags := make(map[string]string, len(claim.Pool.Tags)+3)
	for k, v := range claim.Pool.Tags {
		tags[k] = v
	}
	tags[TagCluster] = cluster
	tags[TagPool] = claim.Pool.Name
	tags[TagClaim] = claim.ID
	return tags
}

// AppID turns a replica's identity into the application ID the cloud SDKs
// put in the User-Agent ("app/<id>"): at most 50 characters, each a letter,
// a digit or one of "-._" (others become "-").
func AppID(identity string) string {
	b := []byte(identity)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			b[i] = '-'
		}
	}
	if len(b) > 50 {
		b = b[:50]
	}
	return string(b)
}
