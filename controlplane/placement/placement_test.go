package placement

import (
	"strings"
	"testing"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/controlplane/demand"
)

// aliHost is a host of a cloud pool as its bootstrap renders it.
var aliHost = Host{What: "alicloud-lab ecs.g7.large", NodePool: "burst", PoolKnown: true, Datacenter: "dc1", Class: "burst", ClassKnown: true,
	Meta:         map[string]string{"spillway.pool": "alicloud-lab", "spillway.provider": "alicloud", "spillway.serves": "bu-a", "rack": "r1,r2"},
	MetaComplete: true, MetaUnknown: []string{"spillway.instance"}, Size: demand.Size{CPUMHz: 2000, MemoryMB: 4096}}

func TestCheck(t *testing.T) {
	small := demand.Size{CPUMHz: 250, MemoryMB: 64}
	// node is a node that exists: its ID, name and kept attributes known.
	node := aliHost
	node.ID, node.Name, node.Attrs = "n1", "ali-1", map[string]string{"kernel.name": "linux", "cpu.arch": "amd64"}
	c := nomad.NewConstraint
	for _, tc := range []struct {
		name string
		work Work
		host Host
		// fits, dimension when not, and the constraints taken as met.
		fits      bool
		dimension string
		unsure    string
	}{
		{"nothing asked", Work{NodePool: "all", PerAlloc: small}, aliHost, true, "", ""},
		{"its node pool", Work{NodePool: "burst", PerAlloc: small}, aliHost, true, "", ""},
		{"another node pool", Work{NodePool: "gpu", PerAlloc: small}, aliHost, false, DimensionNodePool, ""},
		{"node pool default", Work{PerAlloc: small}, aliHost, false, DimensionNodePool, ""},
		{"a pool not known", Work{NodePool: "gpu", PerAlloc: small}, Host{What: "x"}, true, "", ""},
		{"datacenter glob", Work{NodePool: "all", Datacenters: []string{"dc*"}, PerAlloc: small}, aliHost, true, "", ""},
		{"another datacenter", Work{NodePool: "all", Datacenters: []string{"eu-1", "eu-2"}, PerAlloc: small}, aliHost, false, DimensionDatacenter, ""},
		{"class =", Work{NodePool: "all", Constraints: []*nomad.Constraint{c("${node.class}", "=", "burst")}, PerAlloc: small}, aliHost, true, "", ""},
		{"class = another", Work{NodePool: "all", Constraints: []*nomad.Constraint{c("${node.class}", "==", "gpu")}, PerAlloc: small}, aliHost, false, DimensionConstraint, ""},
		{"class != another", Work{NodePool: "all", Constraints: []*nomad.Constraint{c("${node.class}", "!=", "gpu")}, PerAlloc: small}, aliHost, true, "", ""},
		{"class not known", Work{NodePool: "all", Constraints: []*nomad.Constraint{c("${node.class}", "=", "gpu")}, PerAlloc: small},
			Host{What: "x", Meta: map[string]string{}}, true, "", "${node.class} = gpu"},
		{"meta of its pool", Work{NodePool: "all", Constraints: []*nomad.Constraint{c("${meta.spillway.pool}", "=", "alicloud-lab")}, PerAlloc: small}, aliHost, true, "", ""},
		{"meta of another pool", Work{NodePool: "all", Constraints: []*nomad.Constraint{c("${meta.spillway.pool}", "", "aws-lab")}, PerAlloc: small}, aliHost, false, DimensionConstraint, ""},
		{"literal on the left", Work{NodePool: "all", Constraints: []*nomad.Constraint{c("aws-lab", "=", "${meta.spillway.pool}")}, PerAlloc: small}, aliHost, false, DimensionConstraint, ""},
		{"meta it lacks", Work{NodePool: "all", Constraints: []*nomad.Constraint{c("${meta.gpu}", "is_set", "")}, PerAlloc: small}, aliHost, false, DimensionConstraint, ""},
		{"meta it lacks, not set", Work{NodePool: "all", Constraints: []*nomad.Constraint{c("${meta.gpu}", "is_not_set", "")}, PerAlloc: small}, aliHost, true, "", ""},
		{"meta of incomplete meta", Work{NodePool: "all", Constraints: []*nomad.Constraint{c("${meta.gpu}", "=", "a100")}, PerAlloc: small},
			Host{What: "x", Meta: map[string]string{}}, true, "", "${meta.gpu} = a100"},
		{"meta set at boot", Work{NodePool: "all", Constraints: []*nomad.Constraint{c("${meta.spillway.instance}", "regexp", "^i-")}, PerAlloc: small}, aliHost, true, "", "${meta.spillway.instance} regexp ^i-"},
		{"regexp", Work{NodePool: "all", Constraints: []*nomad.Constraint{c("${meta.spillway.pool}", "regexp", "^ali")}, PerAlloc: small}, aliHost, true, "", ""},
		{"regexp no match", Work{NodePool: "all", Constraints: []*nomad.Constraint{c("${meta.spillway.pool}", "regexp", "^aws")}, PerAlloc: small}, aliHost, false, DimensionConstraint, ""},
		{"set_contains", Work{NodePool: "all", Constraints: []*nomad.Constraint{c("${meta.rack}", "set_contains", "r2")}, PerAlloc: small}, aliHost, true, "", ""},
		{"set_contains_any none", Work{NodePool: "all", Constraints: []*nomad.Constraint{c("${meta.rack}", "set_contains_any", "r3, r4")}, PerAlloc: small}, aliHost, false, DimensionConstraint, ""},
		{"an attribute", Work{NodePool: "all", Constraints: []*nomad.Constraint{c("${attr.kernel.name}", "=", "linux")}, PerAlloc: small}, aliHost, true, "", "${attr.kernel.name} = linux"},
		{"version", Work{NodePool: "all", Constraints: []*nomad.Constraint{c("${attr.nomad.version}", "version", ">= 1.6")}, PerAlloc: small}, aliHost, true, "", "${attr.nomad.version} version >= 1.6"},
		{"a kept attribute of a node", Work{NodePool: "all", Constraints: []*nomad.Constraint{c("${attr.kernel.name}", "=", "linux")}, PerAlloc: small}, node, true, "", ""},
		{"a kept attribute it lacks", Work{NodePool: "all", Constraints: []*nomad.Constraint{c("${attr.driver.docker}", "is_set", "")}, PerAlloc: small}, node, false, DimensionConstraint, ""},
		{"another arch", Work{NodePool: "all", Constraints: []*nomad.Constraint{c("${attr.cpu.arch}", "=", "arm64")}, PerAlloc: small}, node, false, DimensionConstraint, ""},
		{"an attribute not kept", Work{NodePool: "all", Constraints: []*nomad.Constraint{c("${attr.gpu.model}", "=", "a100")}, PerAlloc: small}, node, true, "", "${attr.gpu.model} = a100"},
		{"its unique name", Work{NodePool: "all", Constraints: []*nomad.Constraint{c("${node.unique.name}", "!=", "ali-1")}, PerAlloc: small}, node, false, DimensionConstraint, ""},
		{"distinct hosts", Work{NodePool: "all", Constraints: []*nomad.Constraint{c("", "distinct_hosts", "true")}, PerAlloc: small}, aliHost, true, "", ""},
		{"numbers ordered", Work{NodePool: "all", Constraints: []*nomad.Constraint{c("10", ">", "9")}, PerAlloc: small}, aliHost, true, "", ""},
		{"too large", Work{NodePool: "all", PerAlloc: demand.Size{CPUMHz: 2500, MemoryMB: 64}}, aliHost, false, DimensionSize, ""},
		{"size not known", Work{NodePool: "all", PerAlloc: demand.Size{CPUMHz: 25000, MemoryMB: 64}}, Host{What: "x"}, true, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Check(tc.work, tc.host)
			if v.Fits != tc.fits || v.Dimension != tc.dimension || strings.Join(v.Unsure, "; ") != tc.unsure {
				t.Fatalf("Check = %+v; want fits %v, dimension %q, unsure %q", v, tc.fits, tc.dimension, tc.unsure)
			}
			if !v.Fits && v.Why == "" {
				t.Fatalf("ruled out without a reason: %+v", v)
			}
		})
	}
}

// TestCheckSaysWhyInWords: the reason names the constraint and what the
// host carries.
func TestCheckSaysWhyInWords(t *testing.T) {
	v := Check(Work{NodePool: "all", Constraints: []*nomad.Constraint{nomad.NewConstraint("${meta.spillway.pool}", "=", "aws-lab")}}, aliHost)
	const want = `its hosts do not meet the constraint ${meta.spillway.pool} = aws-lab (on alicloud-lab ecs.g7.large, ${meta.spillway.pool} is "alicloud-lab")`
	if v.Why != want {
		t.Fatalf("why %q\nwant %q", v.Why, want)
	}
	v = Check(Work{NodePool: "all", Constraints: []*nomad.Constraint{nomad.NewConstraint("${meta.gpu}", "is_set", "")}}, aliHost)
	if !strings.Contains(v.Why, "${meta.gpu} is not set") {
		t.Fatalf("why %q does not say the meta is not set", v.Why)
	}
}

func TestOrderedAndGlobAsNomad(t *testing.T) {
	for _, tc := range []struct {
		op, l, r string
		want     bool
	}{
		{">", "10", "9", true},
		{">", "10", "9.5", true}, // an integer and a float compare as floats
		{"<", "9.5", "10", true},
		{">", "b", "a", true},
		{"<=", "10", "10", true},
		{">=", "abc", "abd", false},
	} {
		if got := ordered(tc.op, tc.l, tc.r); got != tc.want {
			t.Errorf("%s %s %s = %v, want %v", tc.l, tc.op, tc.r, got, tc.want)
		}
	}
	for _, tc := range []struct {
		pattern, dc string
		want        bool
	}{
		{"*", "dc1", true},
		{"dc*", "dc1", true},
		{"*-1", "eu-west-1", true},
		{"eu-*-1", "eu-west-1", true},
		{"eu-*-1", "eu-west-2", false},
		{"dc?", "dc1", false}, // only * is special
		{"dc[12]", "dc1", false},
		{"dc1", "dc1", true},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "aXc", false},
	} {
		if got := glob(tc.pattern, tc.dc); got != tc.want {
			t.Errorf("glob(%q, %q) = %v, want %v", tc.pattern, tc.dc, got, tc.want)
		}
	}
}
