package scalesim

import (
	"fmt"
	"strings"
	"time"
)

// Kinds of scenario, as issue #34 lists them: each a burst of hosts on
// top of a cluster of its own nodes.
const (
	// Plain: nothing goes wrong.
	Plain = "plain"
	// Exhausted: the first-choice offering has no capacity.
	Exhausted = "exhausted"
	// Throttled: EC2's default request rates.
	Throttled = "throttled"
	// APIErrors: 1% of API calls answer 5xx.
	APIErrors = "api-errors"
	// Restart: the control plane stops and a new one starts 20s after
	// the trigger, with every host launched and none yet ready.
	Restart = "restart"
	// Consistency: EC2's eventual consistency, instances hidden from
	// Describe for 2s after the launch.
	Consistency = "consistency"
	// Large: the burst on a cluster of ten nodes per host of the burst
	// and one policy per host (at +1,000: 10,000 nodes, 1,000 policies),
	// the design target.
	Large = "large"
)

// Kinds are the scenario kinds in the order a benchmark runs them.
var Kinds = []string{Plain, Exhausted, Throttled, APIErrors, Restart, Consistency, Large}

// NewScenario is the scenario of kind at +hosts: ten hosts per task
// group (one policy each), a cluster of four times as many full nodes as
// groups and as many policies again without a burst; Large's cluster has
// ten full nodes per host of the burst and a policy per host.
func NewScenario(kind string, hosts int, seed int64) (Scenario, error) {
	if hosts <= 0 {
		return Scenario{}, fmt.Errorf("a scenario needs a burst of at least one host, not %d", hosts)
	}
	groups := max(1, hosts/10)
	sc := Scenario{Name: fmt.Sprintf("%s+%d", kind, hosts), Seed: seed, Hosts: hosts, Groups: groups,
		Existing: 4 * groups, Policies: 2 * groups}
	switch kind {
	case Plain:
	case Exhausted:
		sc.Exhausted = true
	case Throttled:
		sc.Throttle = true
	case APIErrors:
		sc.ErrorRate = 0.01
	case Restart:
		sc.Restart = 20 * time.Second
	case Consistency:
		sc.DescribeLag = 2 * time.Second
	case Large:
		sc.Existing, sc.Policies = 10*hosts, hosts
	default:
		return Scenario{}, fmt.Errorf("unknown scenario %q (one of %v)", kind, Kinds)
	}
	return sc, nil
}

// Condition says in a phrase what goes wrong in sc, or "" for nothing.
func (sc Scenario) Condition() string {
	var out []string
	if sc.Exhausted {
		out = append(out, "the first-choice offering (m5.xlarge) has no capacity")
	}
	if sc.Throttle {
		out = append(out, "EC2's documented default request rates throttle the account")
	}
	if sc.ErrorRate > 0 {
		out = append(out, fmt.Sprintf("%g%% of the cloud's API calls answer 5xx", 100*sc.ErrorRate))
	}
	if sc.Restart > 0 {
		out = append(out, fmt.Sprintf("the control plane stops and a new one starts %s after the trigger", sc.Restart))
	}
	if sc.DescribeLag > 0 {
		out = append(out, fmt.Sprintf("EC2's eventual consistency hides a new instance from DescribeInstances for %s", sc.DescribeLag))
	}
	return strings.Join(out, "; ")
}
