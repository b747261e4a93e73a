package pools

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/spillwayhq/spillway/internal/bandwidth"
	"github.com/spillwayhq/spillway/providers"
)

// Tier is a rung of the capacity ladder.
type Tier string

// Tiers, cheapest and fastest first.
const (
	// TierOwn is idle capacity of the service's own business unit.
	TierOwn Tier = "own"
	// TierShared is the shared internal pool.
	TierShared Tier = "shared"
	// TierWarm is a cloud pool's stopped or pre-booted instances.
	TierWarm Tier = "warm"
	// TierCold is new cloud instances.
	TierCold Tier = "cold"
)

// Tiers lists the tiers in ladder order.
var Tiers = []Tier{TierOwn, TierShared, TierWarm, TierCold}

// CloudState is what the ladder needs to know about a cloud pool now.
type CloudState struct {
	// Hosts is how many hosts (in weight units) the pool runs now.
	Hosts int
	// CostPerHour is what they cost per hour now.
	CostPerHour float64
	// Warm is how many warm instances are ready to start.
	Warm int
	// TimeToReady is the measured estimate (see EstimateTimeToReady); zero
	// means the pool's configured time_to_ready.
	TimeToReady time.Duration
	// Catalog, when set, is the provider's current view of the pool's
	// offerings (price and availability); it overrides configured prices.
	Catalog []providers.Offering
	// Unfit lists the pool's instance types whose hosts cannot take the
	// work (too small, or ruled out by its constraints): they are left out.
	Unfit []string
}

// LadderInput is everything the ladder looks at. It is plain data: the
// ladder reads no clock and does no I/O.
type LadderInput struct {
	Config *Config
	// BusinessUnit runs the service that needs capacity.
	BusinessUnit string
	// Need is how many more hosts the service needs.
	Need int
	// Now is the current time and Deadline when the capacity must be ready.
	// A zero Deadline means no deadline.
	Now, Deadline time.Time
	// OwnIdle is how many hosts of the business unit are idle enough to
	// take the work.
	OwnIdle int
	// SharedFree is how many shared-pool hosts are free to borrow, and
	// Borrowed how many the business unit already holds (against its quota).
	SharedFree, Borrowed int
	// Cloud is the state of each cloud pool by name; a pool without an
	// entry is taken as empty.
	Cloud map[string]CloudState
	// Unavailable remembers offerings that failed recently; may be nil.
	Unavailable *OfferingMemory
	// Traffic is what one allocation of the service sends over a link
	// (its policy's traffic). Zero: not known, and no link limits the
	// plan.
	Traffic bandwidth.Bandwidth
	// PerHost is how many of the service's allocations one host unit
	// takes, and Allocs how many queued allocations Need stands for
	// (zero: Need × PerHost). Both only matter behind a link.
	PerHost, Allocs int
	// Links is each link's state now, by name; a link without an entry
	// has its configured bandwidth and nothing in use.
	Links map[string]LinkState
}

// LinkState is what the ladder needs to know about a link now.
type LinkState struct {
	// Bandwidth is the link's bandwidth now: the configured one, or what
	// an operator set at run time. Zero with Set false: the configured.
	Bandwidth bandwidth.Bandwidth
	Set       bool
	// InUse is what the allocations already behind it send (and what the
	// hosts still booting behind it will carry).
	InUse bandwidth.Bandwidth
}

// LinkLimit says that a link held a plan back: it carries Carries
// (Bandwidth at TargetUtilization), InUse of which is used, so it may
// take Allowed more allocations of PerAllocation each; Wanted is how many
// the plan would have put behind it.
type LinkLimit struct {
	Link              string              `json:"link"`
	Pool              string              `json:"pool"`
	Bandwidth         bandwidth.Bandwidth `json:"bandwidth"`
	TargetUtilization Percent             `json:"target_utilization"`
	Carries           bandwidth.Bandwidth `json:"carries"`
	InUse             bandwidth.Bandwidth `json:"in_use"`
	PerAllocation     bandwidth.Bandwidth `json:"per_allocation"`
	Allowed           int                 `json:"allowed_allocations"`
	Wanted            int                 `json:"wanted_allocations"`
}

// String says it in words.
func (l LinkLimit) String() string {
	return fmt.Sprintf("link %s (%s at %s carries %s; %s in use) takes %d more %s of %s, not %d",
		l.Link, l.Bandwidth, l.TargetUtilization, l.Carries, l.InUse, l.Allowed, plural(l.Allowed, "allocation", "allocations"), l.PerAllocation, l.Wanted)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// bandwidthOf is link's bandwidth now.
func (in LadderInput) bandwidthOf(l *Link) bandwidth.Bandwidth {
	if st, ok := in.Links[l.Name]; ok && st.Set {
		return st.Bandwidth
	}
	return l.Bandwidth
}

// Step is one rung of a plan: take Hosts from Pool in Tier.
type Step struct {
	Tier Tier
	// Pool is the shared pool's or the cloud pool's name; empty for TierOwn.
	Pool string
	// Hosts is how many hosts the plan takes from this step; Available is
	// how many it could give.
	Hosts, Available int
	// Spot is how many of Hosts should be spot (cloud tiers).
	Spot int
	// Offerings are the usable offerings in order of preference (cloud
	// tiers): cheapest per unit of weight first, recently failed ones left
	// out.
	Offerings []providers.Offering
	// TimeToReady is the expected time until the capacity is ready, and
	// MeetsDeadline whether Now+TimeToReady is before the deadline.
	TimeToReady   time.Duration
	MeetsDeadline bool
	// CostPerHour is the expected hourly cost of Hosts.
	CostPerHour float64
	// UnitCost is the expected hourly cost of one host of this step.
	UnitCost float64
	// RecentFailures counts offerings of the pool that failed within the
	// memory's window.
	RecentFailures int
	// Link is the link the pool's hosts are behind (cloud tiers), and
	// Allocs how many allocations the plan puts on Hosts (set when the
	// input has a traffic figure).
	Link   string
	Allocs int
}

// Skip is a pool the ladder could not use, and why.
type Skip struct {
	Tier   Tier
	Pool   string
	Reason string
}

// Plan is the ladder's answer.
type Plan struct {
	// Steps in the order to try them; steps with Hosts == 0 are fallbacks.
	Steps []Step
	// Unmet is how many of Need no step can give.
	Unmet int
	// AtRisk reports that some of the planned hosts miss the deadline.
	AtRisk  bool
	Skipped []Skip
	// Links lists the links that held the plan back; UnmetAllocs is how
	// many allocations no step takes (when the input has a traffic
	// figure).
	Links       []LinkLimit
	UnmetAllocs int
}

// LinkLimited reports whether link held the plan back.
func (p Plan) LinkLimited(link string) bool {
	return slices.ContainsFunc(p.Links, func(l LinkLimit) bool { return l.Link == link })
}

// Taken returns the steps that take hosts.
func (p Plan) Taken() []Step {
	var out []Step
	for _, s := range p.Steps {
		if s.Hosts > 0 {
			out = append(out, s)
		}
	}
	return out
}

// Ladder orders the tiers for a service that needs in.Need more hosts by
// in.Deadline: own idle capacity, then the shared internal pool (within the
// business unit's quota), then warm cloud capacity, then cold cloud
// capacity, and fills the need greedily in that order.
//
// Within the warm and cold tiers, cloud pools are ordered by:
//  1. whether their time-to-ready meets the remaining deadline;
//  2. recent availability: pools with fewer recently failed offerings first;
//  3. expected cost per host-hour;
//  4. name, so the order is deterministic.
//
// Offerings that failed within the OfferingMemory's window are left out;
// a pool with none left, no headroom under max_hosts or no budget left is
// skipped with a reason.
//
// With a traffic figure (in.Traffic), the ladder counts allocations too:
// a pool behind a link takes no more allocations than the link carries
// at its target utilization, less what is in use and what earlier steps
// put behind it (rounded down), on as many hosts as those allocations
// need (rounded up). The link is listed in Plan.Links, and the rest goes
// to the next pool.
func Ladder(in LadderInput) Plan {
	var plan Plan
	remaining := max(in.Need, 0)
	meets := func(ttr time.Duration) bool {
		return in.Deadline.IsZero() || !in.Now.Add(ttr).After(in.Deadline)
	}
	cfg := in.Config
	if cfg == nil {
		cfg = &Config{}
	}
	// Allocation accounting, for links.
	counting := in.Traffic > 0
	perHost := max(in.PerHost, 1)
	allocs := remaining * perHost
	if in.Allocs > 0 {
		allocs = min(in.Allocs, allocs)
	}
	planned := map[string]bandwidth.Bandwidth{}
	take := func(s Step) {
		s.Hosts = min(remaining, s.Available)
		if counting {
			wanted := min(allocs, s.Hosts*perHost)
			s.Allocs = wanted
			if l, ok := cfg.Link(s.Link); ok && s.Hosts > 0 {
				bw := in.bandwidthOf(l)
				carries := l.Carries(bw)
				inUse := in.Links[l.Name].InUse + planned[l.Name]
				allowed := max(int(math.Floor(float64((carries-inUse)/in.Traffic)+1e-9)), 0)
				if allowed < wanted {
					s.Allocs = allowed
					s.Hosts = (allowed + perHost - 1) / perHost
					s.Available = min(s.Available, s.Hosts)
					plan.Links = append(plan.Links, LinkLimit{Link: l.Name, Pool: s.Pool, Bandwidth: bw, TargetUtilization: l.TargetUtilization,
						Carries: carries, InUse: inUse, PerAllocation: in.Traffic, Allowed: allowed, Wanted: wanted})
					if allowed == 0 {
						plan.Skipped = append(plan.Skipped, Skip{s.Tier, s.Pool, plan.Links[len(plan.Links)-1].String()})
					}
				}
				planned[l.Name] += bandwidth.Bandwidth(s.Allocs) * in.Traffic
			}
			allocs -= s.Allocs
		}
		remaining -= s.Hosts
		if counting {
			remaining = (allocs + perHost - 1) / perHost
		}
		s.MeetsDeadline = meets(s.TimeToReady)
		if s.Hosts > 0 && !s.MeetsDeadline {
			plan.AtRisk = true
		}
		s.CostPerHour = float64(s.Hosts) * s.UnitCost
		if s.Tier == TierWarm || s.Tier == TierCold {
			s.Spot, s.CostPerHour = s.spotSplit(in)
		}
		plan.Steps = append(plan.Steps, s)
	}

	// 1. Own idle capacity.
	if in.OwnIdle > 0 {
		take(Step{Tier: TierOwn, Available: in.OwnIdle})
	}

	// 2. The shared pool, within quota.
	if sp := cfg.Shared; sp != nil {
		quota := 0
		if bu, ok := cfg.BusinessUnit(in.BusinessUnit); ok {
			quota = bu.Borrowing.Quota
		}
		avail := min(in.SharedFree, max(quota-in.Borrowed, 0))
		switch {
		case avail > 0:
			take(Step{Tier: TierShared, Pool: sp.Name, Available: avail, TimeToReady: sp.TimeToReady, UnitCost: sp.CostPerHostHour})
		case in.SharedFree == 0:
			plan.Skipped = append(plan.Skipped, Skip{TierShared, sp.Name, "no free shared hosts"})
		default:
			plan.Skipped = append(plan.Skipped, Skip{TierShared, sp.Name,
				fmt.Sprintf("business unit %q holds %d of its quota of %d", in.BusinessUnit, in.Borrowed, quota)})
		}
	}

	// 3 and 4. Warm, then cold cloud capacity.
	var warm, cold []Step
	for _, cp := range cfg.CloudPools {
		st := in.Cloud[cp.Name]
		offerings, failures := usableOfferings(cp, st, in)
		if len(offerings) == 0 {
			plan.Skipped = append(plan.Skipped, Skip{TierCold, cp.Name, "every offering failed recently or is unavailable"})
			continue
		}
		unit := unitCost(cp, offerings)
		headroom := cp.MaxHosts - st.Hosts
		if unit > 0 {
			headroom = min(headroom, int(math.Floor((cp.BudgetPerHour-st.CostPerHour)/unit+1e-9)))
		}
		if headroom <= 0 {
			reason := fmt.Sprintf("at max_hosts %d", cp.MaxHosts)
			if st.Hosts < cp.MaxHosts {
				reason = fmt.Sprintf("budget %.2f %s/h spent down to %.2f", cp.BudgetPerHour, cp.Currency, cp.BudgetPerHour-st.CostPerHour)
			}
			plan.Skipped = append(plan.Skipped, Skip{TierCold, cp.Name, reason})
			continue
		}
		ttr := st.TimeToReady
		if ttr <= 0 {
			ttr = cp.TimeToReady
		}
		base := Step{Pool: cp.Name, Offerings: offerings, UnitCost: unit, RecentFailures: failures, Link: cp.Link}
		if w := min(st.Warm, headroom); w > 0 {
			s := base
			s.Tier, s.Available, s.TimeToReady = TierWarm, w, cp.Warm.TimeToReady
			s.MeetsDeadline = meets(s.TimeToReady)
			warm = append(warm, s)
			headroom -= w
		}
		if headroom > 0 {
			s := base
			s.Tier, s.Available, s.TimeToReady = TierCold, headroom, ttr
			s.MeetsDeadline = meets(s.TimeToReady)
			cold = append(cold, s)
		}
	}
	byRank := func(a, b Step) int {
		if a.MeetsDeadline != b.MeetsDeadline {
			if a.MeetsDeadline {
				return -1
			}
			return 1
		}
		return cmp.Or(
			cmp.Compare(a.RecentFailures, b.RecentFailures),
			cmp.Compare(a.UnitCost, b.UnitCost),
			cmp.Compare(a.TimeToReady, b.TimeToReady),
			cmp.Compare(a.Pool, b.Pool),
		)
	}
	slices.SortStableFunc(warm, byRank)
	slices.SortStableFunc(cold, byRank)
	for _, s := range warm {
		take(s)
	}
	for _, s := range cold {
		take(s)
	}
	plan.Unmet = remaining
	if counting {
		plan.UnmetAllocs = allocs
	}
	return plan
}

// usableOfferings returns the pool's offerings that are neither known
// unavailable nor recently failed, cheapest per unit of weight first, and
// how many offerings failed recently.
func usableOfferings(cp *CloudPool, st CloudState, in LadderInput) ([]providers.Offering, int) {
	catalog := map[string]providers.Offering{}
	for _, o := range st.Catalog {
		catalog[o.Key()] = o
	}
	var out []providers.Offering
	failures := 0
	for _, o := range cp.ProviderOfferings() {
		if slices.Contains(st.Unfit, o.InstanceType) {
			continue
		}
		if c, ok := catalog[o.Key()]; ok {
			if c.Price > 0 {
				o.Price = c.Price
			}
			o.Available = c.Available
		}
		if in.Unavailable.Unavailable(cp.Name, o, in.Now) {
			failures++
			continue
		}
		if !o.Available {
			continue
		}
		out = append(out, o)
	}
	slices.SortStableFunc(out, func(a, b providers.Offering) int {
		return cmp.Compare(a.Price/cp.weightOf(a.InstanceType), b.Price/cp.weightOf(b.InstanceType))
	})
	return out, failures
}

// cheapest returns the lowest price per unit of weight of capacity type ct
// among offerings, and whether there is one.
func cheapest(cp *CloudPool, offerings []providers.Offering, ct providers.CapacityType) (float64, bool) {
	best, ok := 0.0, false
	for _, o := range offerings {
		if o.CapacityType != ct {
			continue
		}
		p := o.Price / cp.weightOf(o.InstanceType)
		if !ok || p < best {
			best, ok = p, true
		}
	}
	return best, ok
}

// unitCost is the expected cost of one host unit at the pool's spot share.
func unitCost(cp *CloudPool, offerings []providers.Offering) float64 {
	spot, hasSpot := cheapest(cp, offerings, providers.CapacitySpot)
	od, hasOD := cheapest(cp, offerings, providers.CapacityOnDemand)
	switch {
	case hasSpot && hasOD:
		f := cp.Spot.Fraction()
		return f*spot + (1-f)*od
	case hasSpot:
		return spot
	default:
		return od
	}
}

// spotSplit divides a cloud step's hosts into spot and on-demand following
// the pool's spot share, and prices them.
func (s Step) spotSplit(in LadderInput) (int, float64) {
	cp, ok := in.Config.CloudPool(s.Pool)
	if !ok || s.Hosts == 0 {
		return 0, 0
	}
	spotPrice, hasSpot := cheapest(cp, s.Offerings, providers.CapacitySpot)
	odPrice, hasOD := cheapest(cp, s.Offerings, providers.CapacityOnDemand)
	var spot int
	switch {
	case hasSpot && hasOD:
		spot = int(math.Round(cp.Spot.Fraction() * float64(s.Hosts)))
	case hasSpot:
		spot = s.Hosts
	}
	return spot, float64(spot)*spotPrice + float64(s.Hosts-spot)*odPrice
}

// EstimateTimeToReady learns a pool's time-to-ready from measured history.
// With no samples it returns configured. Otherwise it takes the 90th
// percentile of the most recent 20 samples (the ladder plans for a slow
// boot, not an average one); with fewer than 5 samples it blends that
// percentile with configured in proportion to the number of samples, so one
// lucky boot does not overturn the configuration.
func EstimateTimeToReady(configured time.Duration, samples []time.Duration) time.Duration {
	const window, confident = 20, 5
	if len(samples) == 0 {
		return configured
	}
	// A copy on the stack: this runs on every plan and follow of every
	// activity (a tenth of the scale simulation's allocations were this
	// slice).
	var buf [window]time.Duration
	recent := append(buf[:0], samples[max(0, len(samples)-window):]...)
	slices.Sort(recent)
	rank := int(math.Ceil(0.9*float64(len(recent)))) - 1
	p90 := recent[max(rank, 0)]
	if len(recent) >= confident || configured <= 0 {
		return p90
	}
	w := float64(len(recent)) / confident
	return time.Duration(w*float64(p90) + (1-w)*float64(configured)).Round(time.Millisecond)
}
