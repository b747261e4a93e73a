// Package placement decides, before anything is acquired, whether the
// hosts a tier would give can take a task group's allocations, as
// Karpenter matches pending pods against a NodePool's requirements. It
// owns the check of a job's placement rules (node pool, datacenters, the
// hard constraints of the job, its group and its tasks, in Nomad's own
// model, nomad/api.Constraint) and of one allocation's size against a
// Host: what a node of the tier will carry.
//
// It answers "no" only when sure. A constraint on something a Host does
// not know (a node attribute of a host not yet acquired, or one the
// cluster model does not keep; a unique name ahead; a meta value set at
// boot) counts as "may match", and the Verdict lists it: provisioning
// acquires on it, scale-in does not give a host back on it.
// Affinities and spreads only rank nodes; they are not checked.
package placement

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/controlplane/demand"
	"github.com/spillwayhq/spillway/pools"
)

// Work is what a queued task group asks of a host.
type Work struct {
	Group string
	// NodePool is the job's node pool: "" is Nomad's "default", "all"
	// takes any.
	NodePool string
	// Datacenters are the job's datacenters, globs allowed; none is "*".
	Datacenters []string
	// Constraints are the hard constraints of the job, the group and its
	// tasks, all of which a node must meet.
	Constraints []*nomad.Constraint
	// PerAlloc is what one allocation asks for.
	PerAlloc demand.Size
}

// Host is what a node a tier gives will carry, as far as it is known
// before it is acquired.
type Host struct {
	// What names it in words: "aws-lab m5.large", "a host of the shared
	// pool shared".
	What string
	// NodePool is the node pool it joins; PoolKnown says it is known.
	NodePool  string
	PoolKnown bool
	// Datacenter is its datacenter, "" when not known.
	Datacenter string
	// Class is its node class; ClassKnown says it is known ("" is a node
	// without a class).
	Class      string
	ClassKnown bool
	// Meta is its node meta. MetaComplete says it carries no other key;
	// keys in MetaUnknown are set to a value only known at boot.
	Meta         map[string]string
	MetaComplete bool
	MetaUnknown  []string
	// Size is what it offers allocations; zero when not known.
	Size demand.Size
	// ID and Name are a node's that exists ("" ahead of it).
	ID, Name string
	// Attrs are its attributes, when it exists: those in
	// pools.KeptAttributes are known (present or not); nil knows none.
	Attrs map[string]string
}

// Dimensions of a Verdict that rules a host out.
const (
	DimensionNodePool   = "node_pool"
	DimensionDatacenter = "datacenter"
	DimensionConstraint = "constraint"
	DimensionSize       = "size"
)

// Verdict is whether a host can take the work.
type Verdict struct {
	// Fits is false only when the host surely cannot; Dimension and Why
	// say why then, Why in words.
	Fits      bool
	Dimension string
	Why       string
	// Unsure lists the constraints that could not be checked and were
	// taken as met.
	Unsure []string
}

// Check says whether h can take one allocation of w.
func Check(w Work, h Host) Verdict {
	var v Verdict
	if jp := JobNodePool(w.NodePool); jp != "all" && h.PoolKnown && h.NodePool != jp {
		return Verdict{Dimension: DimensionNodePool, Why: fmt.Sprintf("its hosts join node pool %s; the job runs in node pool %s", h.NodePool, jp)}
	}
	if h.Datacenter != "" && !inDatacenters(h.Datacenter, w.Datacenters) {
		return Verdict{Dimension: DimensionDatacenter, Why: fmt.Sprintf("its hosts are in datacenter %s; the job runs in %s", h.Datacenter, strings.Join(w.Datacenters, ", "))}
	}
	for _, c := range w.Constraints {
		if c == nil {
			continue
		}
		met, sure := meets(c, h)
		switch {
		case !sure:
			v.Unsure = append(v.Unsure, String(c))
		case !met:
			return Verdict{Dimension: DimensionConstraint, Why: fmt.Sprintf("its hosts do not meet the constraint %s (%s)", String(c), carries(c, h)), Unsure: v.Unsure}
		}
	}
	if s := h.Size; s.CPUMHz > 0 && s.MemoryMB > 0 && (w.PerAlloc.CPUMHz > s.CPUMHz || w.PerAlloc.MemoryMB > s.MemoryMB) {
		return Verdict{Dimension: DimensionSize, Why: fmt.Sprintf("task group %s asks %d MHz / %d MB per allocation; %s gives %d MHz / %d MB",
			w.Group, w.PerAlloc.CPUMHz, w.PerAlloc.MemoryMB, h.What, s.CPUMHz, s.MemoryMB), Unsure: v.Unsure}
	}
	v.Fits = true
	return v
}

// JobNodePool is the node pool a job runs in: "" is Nomad's "default".
func JobNodePool(pool string) string {
	if pool == "" {
		return "default"
	}
	return pool
}

// String renders a constraint as a job file would.
func String(c *nomad.Constraint) string {
	op := c.Operand
	if op == "" {
		op = "="
	}
	if c.RTarget == "" {
		return c.LTarget + " " + op
	}
	return fmt.Sprintf("%s %s %s", c.LTarget, op, c.RTarget)
}

// inDatacenters reports whether dc matches one of the job's datacenters,
// as Nomad 1.5 and later match them: "*" stands for any run of
// characters, nothing else is special; none means "*".
func inDatacenters(dc string, globs []string) bool {
	if len(globs) == 0 {
		return true
	}
	for _, g := range globs {
		if glob(g, dc) {
			return true
		}
	}
	return false
}

// glob matches s against a pattern in which only "*" is special (any run
// of characters, "/" included), as github.com/ryanuber/go-glob does.
func glob(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}

// resolve is the value a constraint target takes on h, as Nomad resolves
// it: a literal, or one of the node's fields. found says the node has
// it; known says h knows whether (and what).
func resolve(target string, h Host) (value string, found, known bool) {
	if !strings.HasPrefix(target, "${") {
		return target, true, true
	}
	switch {
	case target == "${node.class}":
		return h.Class, true, h.ClassKnown
	case target == "${node.pool}":
		return h.NodePool, true, h.PoolKnown
	case target == "${node.datacenter}":
		return h.Datacenter, true, h.Datacenter != ""
	case strings.HasPrefix(target, "${meta.") && strings.HasSuffix(target, "}"):
		k := strings.TrimSuffix(strings.TrimPrefix(target, "${meta."), "}")
		if slices.Contains(h.MetaUnknown, k) {
			return "", true, false
		}
		v, ok := h.Meta[k]
		return v, ok, ok || h.MetaComplete
	case target == "${node.unique.id}" && h.ID != "":
		return h.ID, true, true
	case target == "${node.unique.name}" && h.Name != "":
		return h.Name, true, true
	case strings.HasPrefix(target, "${attr.") && strings.HasSuffix(target, "}") && h.Attrs != nil:
		k := strings.TrimSuffix(strings.TrimPrefix(target, "${attr."), "}")
		if !slices.Contains(pools.KeptAttributes, k) {
			return "", false, false
		}
		v, ok := h.Attrs[k]
		return v, ok, true
	}
	// Other ${attr.*} and ${node.unique.*}: not known before the node
	// exists, nor (attributes not kept) after.
	return "", false, false
}

// meets evaluates c on h as Nomad's feasibility checker does; sure is
// false when a target it needs is unknown or the operand is one Spillway
// does not evaluate (version, semver).
func meets(c *nomad.Constraint, h Host) (met, sure bool) {
	op := c.Operand
	switch op {
	case "", "==", "is":
		op = "="
	case "not":
		op = "!="
	case nomad.ConstraintDistinctHosts, nomad.ConstraintDistinctProperty:
		// About the other allocations, not the node.
		return true, true
	}
	l, lFound, lKnown := resolve(c.LTarget, h)
	r, rFound, rKnown := resolve(c.RTarget, h)
	if !lKnown || (!rKnown && op != nomad.ConstraintAttributeIsSet && op != nomad.ConstraintAttributeIsNotSet) {
		return false, false
	}
	switch op {
	case "=":
		return lFound && rFound && l == r, true
	case "!=":
		// Nomad compares the values; a target not set is "".
		return l != r, true
	case "<", "<=", ">", ">=":
		return lFound && rFound && ordered(op, l, r), true
	case nomad.ConstraintAttributeIsSet:
		return lFound, true
	case nomad.ConstraintAttributeIsNotSet:
		return !lFound, true
	case nomad.ConstraintRegex:
		re, err := regexp.Compile(r)
		if err != nil {
			return false, true
		}
		return lFound && rFound && re.MatchString(l), true
	case nomad.ConstraintSetContains, nomad.ConstraintSetContainsAll:
		have := set(l)
		for _, x := range set(r) {
			if !slices.Contains(have, x) {
				return false, true
			}
		}
		return lFound && rFound, true
	case nomad.ConstraintSetContainsAny:
		have := set(l)
		for _, x := range set(r) {
			if slices.Contains(have, x) {
				return lFound && rFound, true
			}
		}
		return false, true
	}
	// version, semver and anything newer: taken as met.
	return false, false
}

// ordered compares as Nomad's checkOrder does: as integers when both
// parse as integers, else as floats when both parse as floats, else as
// strings.
func ordered(op, l, r string) bool {
	cmp := strings.Compare(l, r)
	a, aErr := strconv.ParseInt(l, 10, 64)
	b, bErr := strconv.ParseInt(r, 10, 64)
	if aErr == nil && bErr == nil {
		cmp = compare(a, b)
	} else if x, xErr := strconv.ParseFloat(l, 64); xErr == nil {
		if y, yErr := strconv.ParseFloat(r, 64); yErr == nil {
			cmp = compare(x, y)
		}
	}
	switch op {
	case "<":
		return cmp < 0
	case "<=":
		return cmp <= 0
	case ">":
		return cmp > 0
	}
	return cmp >= 0
}

func compare[T int64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// set splits a comma-separated list as Nomad's set operands do.
func set(s string) []string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
	}
	return parts
}

// carries says in words what h has for the constraint's targets.
func carries(c *nomad.Constraint, h Host) string {
	var parts []string
	for _, t := range []string{c.LTarget, c.RTarget} {
		if !strings.HasPrefix(t, "${") {
			continue
		}
		v, found, _ := resolve(t, h)
		if found {
			parts = append(parts, fmt.Sprintf("%s is %q", t, v))
		} else {
			parts = append(parts, t+" is not set")
		}
	}
	if len(parts) == 0 {
		return "on " + h.What
	}
	return "on " + h.What + ", " + strings.Join(parts, ", ")
}
