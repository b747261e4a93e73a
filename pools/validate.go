package pools

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spillwayhq/spillway/internal/strictyaml"
	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/bootstrap"
)

var nameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$`)

// validator collects errors for one document.
type validator struct{ strictyaml.Validator }

func (v *validator) nonNegative(path string, x float64) {
	if x < 0 {
		v.Errorf(path, "must not be negative, got %v", x)
	}
}

func (v *validator) percent(path string, p Percent) {
	if p < 0 || p > 100 {
		v.Errorf(path, "must be between 0%% and 100%%, got %s", p)
	}
}

func (h *Header) validate(v *validator) {
	has := h.pos.Has
	switch {
	case !has("apiVersion"):
		v.Errorf("apiVersion", "is required; use %q", APIVersion)
	case h.APIVersion != APIVersion:
		v.Errorf("apiVersion", "unsupported version %q; use %q", h.APIVersion, APIVersion)
	}
	if v.Required("name", h.Name != "") && !nameRe.MatchString(h.Name) {
		v.Errorf("name", "%q is not a valid name: use lowercase letters, digits, '.', '_' and '-', at most 64 characters", h.Name)
	}
}

func (v *validator) selector(path string, s Selector) {
	if s.Empty() && !v.Pos.Failed(path) {
		v.Errorf(path, "is required: set node_pool, node_class or meta")
	}
	for k := range s.Meta {
		if strings.TrimSpace(k) == "" {
			v.Errorf(path+".meta", "meta keys must not be empty")
		}
	}
}

func (b *BusinessUnit) validate() strictyaml.Errors {
	v := &validator{strictyaml.Validator{Pos: b.pos}}
	b.Header.validate(v)
	has := b.pos.Has
	v.selector("selector", b.Selector)
	if !has("priority") {
		b.Priority = DefaultPriority
	} else if b.Priority < 0 || b.Priority > 100 {
		v.Errorf("priority", "must be between 0 and 100, got %d", b.Priority)
	}
	if v.Required("lending.share", has("lending.share")) {
		v.percent("lending.share", b.Lending.Share)
	}
	if v.Required("borrowing.quota", has("borrowing.quota")) && b.Borrowing.Quota < 0 {
		v.Errorf("borrowing.quota", "must not be negative, got %d", b.Borrowing.Quota)
	}
	if has("deadline") && (b.Deadline < 10*time.Second || b.Deadline > time.Hour) {
		v.Errorf("deadline", "want 10s to 1h, got %s", b.Deadline)
	}
	return v.Errs
}

func (s *SharedPool) validate() strictyaml.Errors {
	v := &validator{strictyaml.Validator{Pos: s.pos}}
	s.Header.validate(v)
	has := s.pos.Has
	v.selector("selector", s.Selector)
	if s.LenderMeta == "" {
		s.LenderMeta = MetaBusinessUnit
	}
	if !has("lease") {
		s.Lease = DefaultLease
	} else if s.Lease <= 0 {
		v.Errorf("lease", "must be positive, got %s", s.Lease)
	}
	if !has("reclaim_notice") {
		s.ReclaimNotice = DefaultReclaimNotice
	} else if s.ReclaimNotice <= 0 {
		v.Errorf("reclaim_notice", "must be positive, got %s", s.ReclaimNotice)
	}
	if !has("drain_deadline") {
		s.DrainDeadline = min(DefaultDrainDeadline, s.ReclaimNotice)
	} else if s.DrainDeadline <= 0 {
		v.Errorf("drain_deadline", "must be positive, got %s", s.DrainDeadline)
	} else if s.ReclaimNotice > 0 && s.DrainDeadline > s.ReclaimNotice {
		v.Errorf("drain_deadline", "%s is longer than reclaim_notice %s: a reclaimed host could not be drained in time", s.DrainDeadline, s.ReclaimNotice)
	}
	if s.Lease > 0 && s.DrainDeadline > 0 && s.Lease < s.DrainDeadline {
		v.Errorf("lease", "%s is shorter than drain_deadline %s: a lease would end before its host could be drained", s.Lease, s.DrainDeadline)
	}
	if !has("time_to_ready") {
		s.TimeToReady = defaultSharedTimeToReady
	} else if s.TimeToReady <= 0 {
		v.Errorf("time_to_ready", "must be positive, got %s", s.TimeToReady)
	}
	v.nonNegative("cost_per_host_hour", s.CostPerHostHour)
	return v.Errs
}

func (c *CloudPool) validate() strictyaml.Errors {
	v := &validator{strictyaml.Validator{Pos: c.pos}}
	c.Header.validate(v)
	has := c.pos.Has
	if v.Required("provider", has("provider")) {
		switch c.Provider {
		case ProviderAWS, ProviderAlicloud:
		default:
			v.Errorf("provider", "unknown provider %q; use %q or %q", c.Provider, ProviderAWS, ProviderAlicloud)
		}
	}
	v.Required("region", strings.TrimSpace(c.Region) != "")
	if v.Required("zones", len(c.Zones) > 0) {
		for i, z := range c.Zones {
			path := fmt.Sprintf("zones[%d]", i)
			switch {
			case strings.TrimSpace(z) == "":
				v.Errorf(path, "must not be empty")
			case slices.Index(c.Zones, z) < i:
				v.Errorf(path, "duplicate zone %q", z)
			case c.Region != "" && !strings.HasPrefix(z, c.Region):
				v.Errorf(path, "zone %q is not in region %q", z, c.Region)
			case has("subnets") && c.Subnets[z] == "":
				v.Errorf("subnets", "no subnet for zone %q", z)
			}
		}
	}
	for z := range c.Subnets {
		if !slices.Contains(c.Zones, z) {
			v.Errorf("subnets."+z, "zone %q is not in zones", z)
		}
	}
	if v.Required("offerings", len(c.Offerings) > 0) {
		for i, o := range c.Offerings {
			path := fmt.Sprintf("offerings[%d]", i)
			if v.Required(path+".instance_type", strings.TrimSpace(o.InstanceType) != "") {
				if j := slices.IndexFunc(c.Offerings, func(p InstanceOffering) bool { return p.InstanceType == o.InstanceType }); j < i {
					v.Errorf(path+".instance_type", "duplicate instance type %q, first at offerings[%d]", o.InstanceType, j)
				}
			}
			if !has(path + ".weight") {
				c.Offerings[i].Weight = 1
			} else if o.Weight <= 0 {
				v.Errorf(path+".weight", "must be positive, got %v", o.Weight)
			}
			if v.Required(path+".price.on_demand", has(path+".price.on_demand")) {
				if o.Price.OnDemand <= 0 {
					v.Errorf(path+".price.on_demand", "must be positive, got %v", o.Price.OnDemand)
				}
			}
			v.nonNegative(path+".price.spot", o.Price.Spot)
			v.nonNegative(path+".cpu_mhz", float64(o.CPUMHz))
			v.nonNegative(path+".memory_mb", float64(o.MemoryMB))
			if (o.CPUMHz > 0) != (o.MemoryMB > 0) {
				v.Errorf(path, "cpu_mhz and memory_mb go together: set both or neither")
			}
			if c.Spot > 0 && o.Price.Spot == 0 && !c.pos.Failed(path+".price.spot") {
				v.Errorf(path+".price", "spot is %s, so price.spot is required", c.Spot)
			}
		}
	}
	v.percent("spot", c.Spot)
	if v.Required("bootstrap", c.Bootstrap != nil) {
		for _, e := range c.Bootstrap.Validate(c.pos, "bootstrap") {
			if !c.pos.Failed(e.Path) {
				v.Errs = append(v.Errs, e)
			}
		}
		if c.Region != "" && len(c.Bootstrap.Images) > 0 {
			if im, err := c.Bootstrap.Image(c.Region); err != nil {
				v.Errorf("bootstrap.images", "no image for the pool's region %s", c.Region)
			} else if cloud := bootstrap.CloudOfImage(im.ID); cloud != "" && (c.Provider == ProviderAWS || c.Provider == ProviderAlicloud) && cloud != c.Provider {
				v.Errorf("bootstrap.images", "the %s image %s is a %s image, but the pool's provider is %s", c.Region, im.ID, cloud, c.Provider)
			}
		}
	}
	switch providers.LaunchStrategy(c.Launch.Strategy) {
	case providers.LaunchDefault, providers.LaunchRunInstances:
	case providers.LaunchFleet:
		if c.Provider == ProviderAlicloud {
			v.Errorf("launch.strategy", "strategy %q is AWS only", c.Launch.Strategy)
		}
	default:
		v.Errorf("launch.strategy", "unknown strategy %q; use %q or %q", c.Launch.Strategy, providers.LaunchFleet, providers.LaunchRunInstances)
	}
	if c.Launch.Template != "" && c.Provider == ProviderAlicloud {
		v.Errorf("launch.template", "launch templates are AWS only")
	}
	if v.Required("max_hosts", has("max_hosts")) && c.MaxHosts < 0 {
		v.Errorf("max_hosts", "must not be negative, got %d", c.MaxHosts)
	}
	if v.Required("budget_per_hour", has("budget_per_hour")) {
		v.nonNegative("budget_per_hour", c.BudgetPerHour)
	}
	if c.Currency == "" {
		c.Currency = DefaultCurrency
	} else if len(c.Currency) != 3 || strings.ToUpper(c.Currency) != c.Currency {
		v.Errorf("currency", "expected an ISO 4217 code such as USD or CNY, got %q", c.Currency)
	}
	if !has("time_to_ready") {
		c.TimeToReady = DefaultTimeToReady
	} else if c.TimeToReady <= 0 {
		v.Errorf("time_to_ready", "must be positive, got %s", c.TimeToReady)
	}
	if c.Warm.Hosts < 0 {
		v.Errorf("warm.hosts", "must not be negative, got %d", c.Warm.Hosts)
	} else if c.Warm.Hosts > 0 && c.MaxHosts > 0 && c.Warm.Hosts > c.MaxHosts {
		v.Errorf("warm.hosts", "%d warm hosts exceed max_hosts %d", c.Warm.Hosts, c.MaxHosts)
	}
	if has("link") && !nameRe.MatchString(c.Link) {
		v.Errorf("link", "%q is not a valid link name", c.Link)
	}
	if c.Warm.Hosts > 0 && !has("warm.time_to_ready") {
		v.Errorf("warm.time_to_ready", "is required when warm.hosts is set")
	} else if c.Warm.TimeToReady < 0 {
		v.Errorf("warm.time_to_ready", "must not be negative, got %s", c.Warm.TimeToReady)
	}
	return v.Errs
}

func (l *Link) validate() strictyaml.Errors {
	v := &validator{strictyaml.Validator{Pos: l.pos}}
	l.Header.validate(v)
	has := l.pos.Has
	if v.Required("bandwidth", has("bandwidth")) && !l.pos.Failed("bandwidth") && l.Bandwidth <= 0 {
		v.Errorf("bandwidth", "must be positive, got %s", l.Bandwidth)
	}
	switch {
	case !has("target_utilization"):
		l.TargetUtilization = DefaultTargetUtilization
	case l.pos.Failed("target_utilization"):
	case l.TargetUtilization < 1 || l.TargetUtilization > 100:
		v.Errorf("target_utilization", "must be between 1%% and 100%%, got %s", l.TargetUtilization)
	}
	return v.Errs
}
