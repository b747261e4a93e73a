package lab

import (
	"cmp"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spillwayhq/spillway/internal/tools"
	"github.com/spillwayhq/spillway/providers/cloudsim"
)

// The lab's cloud pools and the cluster its control plane tags instances
// with, when it runs the cloud simulator and writes its own pools.
const (
	// AWSCloudPool rents from the simulated EC2.
	AWSCloudPool = "aws-lab"
	// AlicloudCloudPool rents from the simulated ECS.
	AlicloudCloudPool = "alicloud-lab"
	// CloudCluster is clouds.cluster in the control plane's config: the
	// spillway:cluster tag of the instances it rents.
	CloudCluster = "lab"
	// BurstPool and BurstClass are the node pool and class of the cloud
	// pools' hosts.
	BurstPool  = "burst"
	BurstClass = "burst"
	// defaultCloudMaxHosts is a lab cloud pool's max_hosts unless
	// CloudOptions.MaxHosts says otherwise.
	defaultCloudMaxHosts = 10
)

// writePools describes the lab's own topology as pool files, so the
// control plane can borrow from the lab's shared pool and rent from the
// lab's clouds: one BusinessUnit per business unit (its node pool, class
// internal, lending half of what it owns, borrowing up to the whole shared
// pool), the SharedPool, and with a cloud simulator one CloudPool per
// simulated cloud that sells something (cloudPools).
func (l *Lab) writePools() (string, error) {
	dir := filepath.Join(l.Dir, "pools")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("# Written by the Spillway lab from its own topology.\n")
	for _, bu := range l.opts.BusinessUnits {
		fmt.Fprintf(&b, `---
apiVersion: spillway/v1
kind: BusinessUnit
name: %s
selector: {node_pool: %s, node_class: %s}
lending: {share: 50%%}
borrowing: {quota: %d}
`, bu.Name, bu.Name, InternalClass, l.opts.SharedHosts)
	}
	if l.opts.SharedHosts > 0 {
		fmt.Fprintf(&b, `---
apiVersion: spillway/v1
kind: SharedPool
name: %s
selector:
  node_pool: %s
  meta: {%s: %s}
lease: %s
reclaim_notice: 2m
drain_deadline: %s
time_to_ready: 10s
`, SharedPool, SharedPool, MetaTier, TierShared, cmp.Or(l.opts.SharedLease, time.Hour), cmp.Or(l.opts.SharedDrainDeadline, 30*time.Second))
	}
	if l.cloud != nil && l.opts.Cloud != nil {
		docs := cloudPools(l.cloud.sim.Config(), l.opts.Cloud.MaxHosts)
		if k := l.opts.Cloud.Link; k != nil {
			docs = behindLink(docs, k)
		}
		b.WriteString(docs)
	}
	path := filepath.Join(dir, "lab.yaml")
	return dir, os.WriteFile(path, []byte(b.String()), 0o644)
}

// cloudPools describes the simulated clouds of cfg (defaults applied) as
// CloudPool documents, one per cloud with offerings in its region:
//
//   - zones: those of the offerings, in the order they first appear;
//   - subnets: each zone's subnet (vSwitch) from the simulator's config,
//     the first by ID when there are several. When a zone has none the
//     pool has no subnets at all: the providers then place by zone, which
//     the simulator accepts without a subnet;
//   - offerings: the instance types with the simulator's prices. A type
//     the simulator sells as one capacity type only is priced at that
//     price for the other too (a pool needs an on-demand price, and a spot
//     price when it buys spot); launching the other is refused by the
//     simulator and the planner falls back. A price the simulator leaves
//     at 0 becomes 0.1, since a pool's prices must be positive;
//   - spot: 50% when the cloud sells both capacity types, else 100% or 0%;
//   - bootstrap: Flatcar with the Nomad sysext on AWS, Fedora CoreOS with
//     the downloaded binary on Alibaba Cloud, a made-up image the simulator
//     accepts (it checks no image IDs), and artifact URLs the lab never
//     fetches (it starts its own nomad, and its servers instead of the
//     rendered ones);
//   - time_to_ready: the simulator's launch answer, longest pending and boot,
//     scaled by its time scale, plus 10s for the agent to join, rounded up
//     to the second.
func cloudPools(cfg cloudsim.Config, maxHosts int) string {
	if maxHosts <= 0 {
		maxHosts = defaultCloudMaxHosts
	}
	lat := cfg.Latency
	ttr := time.Duration(float64(lat.API+lat.PendingMax+lat.Boot)*cfg.TimeScale) + 10*time.Second
	ttr = (ttr + time.Second - 1).Truncate(time.Second)
	var b strings.Builder
	for _, c := range []struct {
		cloud, name string
		cc          cloudsim.CloudConfig
	}{
		{cloudsim.CloudAWS, AWSCloudPool, cfg.AWS},
		{cloudsim.CloudAlicloud, AlicloudCloudPool, cfg.Alicloud},
	} {
		type prices struct{ onDemand, spot *float64 }
		var zones, types []string
		price := map[string]*prices{}
		var onDemand, spot bool
		for _, o := range c.cc.Offerings {
			if !strings.HasPrefix(o.Zone, c.cc.Region) {
				continue // not in the region a pool is in
			}
			if !slices.Contains(zones, o.Zone) {
				zones = append(zones, o.Zone)
			}
			p := price[o.InstanceType]
			if p == nil {
				p = &prices{}
				price[o.InstanceType] = p
				types = append(types, o.InstanceType)
			}
			v := o.Price
			if o.CapacityType == cloudsim.Spot {
				spot = true
				if p.spot == nil {
					p.spot = &v
				}
			} else {
				onDemand = true
				if p.onDemand == nil {
					p.onDemand = &v
				}
			}
		}
		if len(types) == 0 {
			continue
		}
		share := 0
		switch {
		case spot && onDemand:
			share = 50
		case spot:
			share = 100
		}

		fmt.Fprintf(&b, `---
apiVersion: spillway/v1
kind: CloudPool
name: %s
description: The lab's simulated %s (spillway cloudsim), written from its config.
provider: %s
region: %s
zones: [%s]
`, c.name, map[string]string{cloudsim.CloudAWS: "EC2", cloudsim.CloudAlicloud: "ECS"}[c.cloud], c.cloud, c.cc.Region, strings.Join(zones, ", "))
		if subnets := zoneSubnets(c.cc.Subnets, zones); subnets != nil {
			b.WriteString("subnets:\n")
			for _, z := range zones {
				fmt.Fprintf(&b, "  %s: %s\n", z, subnets[z])
			}
		}
		b.WriteString("offerings:\n")
		for _, t := range types {
			p := price[t]
			od, sp := pick(p.onDemand, p.spot), pick(p.spot, p.onDemand)
			if share == 0 {
				fmt.Fprintf(&b, "  - {instance_type: %s, price: {on_demand: %s}}\n", t, formatPrice(od))
			} else {
				fmt.Fprintf(&b, "  - {instance_type: %s, price: {on_demand: %s, spot: %s}}\n", t, formatPrice(od), formatPrice(sp))
			}
		}
		fmt.Fprintf(&b, "spot: %d%%\n", share)
		version := tools.NomadVersion
		if c.cloud == cloudsim.CloudAWS {
			fmt.Fprintf(&b, `launch: {strategy: run-instances}
bootstrap:
  os: flatcar
  images:
    - {region: %s, id: ami-0123456789abcdef0, variant: flatcar, version: 4230.2.3}
  nomad:
%s    install:
      method: sysext
      version: %s
      url: https://artifacts.lab.invalid/sysext/nomad-%s-x86-64.raw
`, c.cc.Region, labNomad(), version, version)
		} else {
			url := "https://artifacts.lab.invalid/nomad/" + version + "/linux_amd64/nomad"
			sum := sha512.Sum512([]byte(url)) // a placeholder: the lab never fetches it
			fmt.Fprintf(&b, `bootstrap:
  os: fcos
  images:
    - {region: %s, id: m-lab0fcos42x64spillway, variant: fcos, version: 42.20250705.3.0}
  nomad:
%s    install:
      method: download
      version: %s
      url: %s
      sha512: %s
`, c.cc.Region, labNomad(), version, url, hex.EncodeToString(sum[:]))
		}
		fmt.Fprintf(&b, "max_hosts: %d\nbudget_per_hour: 10\ntime_to_ready: %s\n", maxHosts, ttr)
	}
	return b.String()
}

// labNomad is the Nomad client block of a lab cloud pool's bootstrap,
// indented for it. The lab points the agent at its own server.
func labNomad() string {
	return fmt.Sprintf(`    servers: ["nomad.lab.invalid:4647"]
    datacenter: %s
    node_pool: %s
    node_class: %s
`, Datacenter, BurstPool, BurstClass)
}

// zoneSubnets maps each zone to its subnet in subnets (subnet → zone),
// the first by ID when several are in one zone, or returns nil when a zone
// has none.
func zoneSubnets(subnets map[string]string, zones []string) map[string]string {
	ids := make([]string, 0, len(subnets))
	for id := range subnets {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := map[string]string{}
	for _, id := range ids {
		if z := subnets[id]; out[z] == "" {
			out[z] = id
		}
	}
	for _, z := range zones {
		if out[z] == "" {
			return nil
		}
	}
	return out
}

// pick returns the first positive price of a and b, or 0.1.
func pick(a, b *float64) float64 {
	for _, p := range []*float64{a, b} {
		if p != nil && *p > 0 {
			return *p
		}
	}
	return 0.1
}

func formatPrice(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// behindLink makes every CloudPool document of docs name link k, and adds
// k's Link document.
func behindLink(docs string, k *Link) string {
	parts := strings.Split(docs, "---\n")
	for i, d := range parts {
		if strings.Contains(d, "\nkind: CloudPool\n") {
			parts[i] = d + "link: " + k.Name + "\n"
		}
	}
	out := strings.Join(parts, "---\n")
	out += fmt.Sprintf("---\napiVersion: spillway/v1\nkind: Link\nname: %s\nbandwidth: %s\n", k.Name, k.Bandwidth)
	if k.TargetUtilization > 0 {
		out += fmt.Sprintf("target_utilization: %d%%\n", k.TargetUtilization)
	}
	return out
}
