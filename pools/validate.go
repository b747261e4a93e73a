package pools

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/spillwayhq/spillway/internal/strictyaml"
	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/bootstrap"
)

var nameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$`)

// validator collects errors for one document.
type validator struct {
	pos  *strictyaml.Positions
	errs strictyaml.Errors
}

func (v *validator) errorf(path, format string, args ...any) {
	if v.pos.Failed(path) {
		return // decoding already reported this value
	}
	v.errs = append(v.errs, v.pos.Errorf(path, format, args...))
}

func (v *validator) required(path string, set bool) bool {
	if !set {
		v.errorf(path, "is required")
	}
	return set
}

func (v *validator) nonNegative(path string, x float64) {
	if x < 0 {
		v.errorf(path, "must not be negative, got %v", x)
	}
}

func (v *validator) percent(path string, p Percent) {
	if p < 0 || p > 100 {
		v.errorf(path, "must be between 0%% and 100%%, got %s", p)
	}
}

func (h *Header) validate(v *validator) {
	has := h.pos.Has
	switch {
	case !has("apiVersion"):
		v.errorf("apiVersion", "is required; use %q", APIVersion)
	case h.APIVersion != APIVersion:
		v.errorf("apiVersion", "unsupported version %q; use %q", h.APIVersion, APIVersion)
	}
	if v.required("name", h.Name != "") && !nameRe.MatchString(h.Name) {
		v.errorf("name", "%q is not a valid name: use lowercase letters, digits, '.', '_' and '-', at most 64 characters", h.Name)
	}
}

func (v *validator) selector(path string, s Selector) {
	if s.Empty() && !v.pos.Failed(path) {
		v.errorf(path, "is required: set node_pool, node_class or meta")
	}
	for k := range s.Meta {
		if strings.TrimSpace(k) == "" {
			v.errorf(path+".meta", "meta keys must not be empty")
		}
	}
}

func (b *BusinessUnit) validate() strictyaml.Errors {
	v := &validator{pos: b.pos}
	b.Header.validate(v)
	has := b.pos.Has
	v.selector("selector", b.Selector)
	if !has("priority") {
		b.Priority = DefaultPriority
	} else if b.Priority < 0 || b.Priority > 100 {
		v.errorf("priority", "must be between 0 and 100, got %d", b.Priority)
	}
	if v.required("lending.share", has("lending.share")) {
		v.percent("lending.share", b.Lending.Share)
	}
	if v.required("borrowing.quota", has("borrowing.quota")) && b.Borrowing.Quota < 0 {
		v.errorf("borrowing.quota", "must not be negative, got %d", b.Borrowing.Quota)
	}
	return v.errs
}

func (s *SharedPool) validate() strictyaml.Errors {
	v := &validator{pos: s.pos}
	s.Header.validate(v)
	has := s.pos.Has
	v.selector("selector", s.Selector)
	if s.LenderMeta == "" {
		s.LenderMeta = MetaBusinessUnit
	}
	if !has("lease") {
		s.Lease = DefaultLease
	} else if s.Lease <= 0 {
		v.errorf("lease", "must be positive, got %s", s.Lease)
	}
	if !has("reclaim_notice") {
		s.ReclaimNotice = DefaultReclaimNotice
	} else if s.ReclaimNotice <= 0 {
		v.errorf("reclaim_notice", "must be positive, got %s", s.ReclaimNotice)
	}
	if !has("drain_deadline") {
		s.DrainDeadline = min(DefaultDrainDeadline, s.ReclaimNotice)
	} else if s.DrainDeadline <= 0 {
		v.errorf("drain_deadline", "must be positive, got %s", s.DrainDeadline)
	} else if s.ReclaimNotice > 0 && s.DrainDeadline > s.ReclaimNotice {
		v.errorf("drain_deadline", "%s is longer than reclaim_notice %s: a reclaimed host could not be drained in time", s.DrainDeadline, s.ReclaimNotice)
	}
	if !has("time_to_ready") {
		s.TimeToReady = defaultSharedTimeToReady
	} else if s.TimeToReady <= 0 {
		v.errorf("time_to_ready", "must be positive, got %s", s.TimeToReady)
	}
	v.nonNegative("cost_per_host_hour", s.CostPerHostHour)
	return v.errs
}

func (c *CloudPool) validate() strictyaml.Errors {
	v := &validator{pos: c.pos}
	c.Header.validate(v)
	has := c.pos.Has
	if v.required("provider", has("provider")) {
		switch c.Provider {
		case ProviderAWS, ProviderAlicloud:
		default:
			v.errorf("provider", "unknown provider %q; use %q or %q", c.Provider, ProviderAWS, ProviderAlicloud)
		}
	}
	v.required("region", strings.TrimSpace(c.Region) != "")
	if v.required("zones", len(c.Zones) > 0) {
		for i, z := range c.Zones {
			path := fmt.Sprintf("zones[%d]", i)
			switch {
			case strings.TrimSpace(z) == "":
				v.errorf(path, "must not be empty")
			case slices.Index(c.Zones, z) < i:
				v.errorf(path, "duplicate zone %q", z)
			case c.Region != "" && !strings.HasPrefix(z, c.Region):
				v.errorf(path, "zone %q is not in region %q", z, c.Region)
			case has("subnets") && c.Subnets[z] == "":
				v.errorf("subnets", "no subnet for zone %q", z)
			}
		}
	}
	for z := range c.Subnets {
		if !slices.Contains(c.Zones, z) {
			v.errorf("subnets."+z, "zone %q is not in zones", z)
		}
	}
	if v.required("offerings", len(c.Offerings) > 0) {
		for i, o := range c.Offerings {
			path := fmt.Sprintf("offerings[%d]", i)
			if v.required(path+".instance_type", strings.TrimSpace(o.InstanceType) != "") {
				if j := slices.IndexFunc(c.Offerings, func(p InstanceOffering) bool { return p.InstanceType == o.InstanceType }); j < i {
					v.errorf(path+".instance_type", "duplicate instance type %q, first at offerings[%d]", o.InstanceType, j)
				}
			}
			if !has(path + ".weight") {
				c.Offerings[i].Weight = 1
			} else if o.Weight <= 0 {
				v.errorf(path+".weight", "must be positive, got %v", o.Weight)
			}
			if v.required(path+".price.on_demand", has(path+".price.on_demand")) {
				if o.Price.OnDemand <= 0 {
					v.errorf(path+".price.on_demand", "must be positive, got %v", o.Price.OnDemand)
				}
			}
			v.nonNegative(path+".price.spot", o.Price.Spot)
			if c.Spot > 0 && o.Price.Spot == 0 && !c.pos.Failed(path+".price.spot") {
				v.errorf(path+".price", "spot is %s, so price.spot is required", c.Spot)
			}
		}
	}
	v.percent("spot", c.Spot)
	if v.required("bootstrap", c.Bootstrap != nil) {
		for _, e := range c.Bootstrap.Validate(c.pos, "bootstrap") {
			if !c.pos.Failed(e.Path) {
				v.errs = append(v.errs, e)
			}
		}
		if c.Region != "" && len(c.Bootstrap.Images) > 0 {
			if im, err := c.Bootstrap.Image(c.Region); err != nil {
				v.errorf("bootstrap.images", "no image for the pool's region %s", c.Region)
			} else if cloud := bootstrap.CloudOfImage(im.ID); cloud != "" && (c.Provider == ProviderAWS || c.Provider == ProviderAlicloud) && cloud != c.Provider {
				v.errorf("bootstrap.images", "the %s image %s is a %s image, but the pool's provider is %s", c.Region, im.ID, cloud, c.Provider)
			}
		}
	}
	switch providers.LaunchStrategy(c.Launch.Strategy) {
	case providers.LaunchDefault, providers.LaunchRunInstances:
	case providers.LaunchFleet:
		if c.Provider == ProviderAlicloud {
			v.errorf("launch.strategy", "strategy %q is AWS only", c.Launch.Strategy)
		}
	default:
		v.errorf("launch.strategy", "unknown strategy %q; use %q or %q", c.Launch.Strategy, providers.LaunchFleet, providers.LaunchRunInstances)
	}
	if c.Launch.Template != "" && c.Provider == ProviderAlicloud {
		v.errorf("launch.template", "launch templates are AWS only")
	}
	if v.required("max_hosts", has("max_hosts")) && c.MaxHosts < 0 {
		v.errorf("max_hosts", "must not be negative, got %d", c.MaxHosts)
	}
	if v.required("budget_per_hour", has("budget_per_hour")) {
		v.nonNegative("budget_per_hour", c.BudgetPerHour)
	}
	if c.Currency == "" {
		c.Currency = DefaultCurrency
	} else if len(c.Currency) != 3 || strings.ToUpper(c.Currency) != c.Currency {
		v.errorf("currency", "expected an ISO 4217 code such as USD or CNY, got %q", c.Currency)
	}
	if !has("time_to_ready") {
		c.TimeToReady = DefaultTimeToReady
	} else if c.TimeToReady <= 0 {
		v.errorf("time_to_ready", "must be positive, got %s", c.TimeToReady)
	}
	if c.Warm.Hosts < 0 {
		v.errorf("warm.hosts", "must not be negative, got %d", c.Warm.Hosts)
	} else if c.Warm.Hosts > 0 && c.MaxHosts > 0 && c.Warm.Hosts > c.MaxHosts {
		v.errorf("warm.hosts", "%d warm hosts exceed max_hosts %d", c.Warm.Hosts, c.MaxHosts)
	}
	if c.Warm.Hosts > 0 && !has("warm.time_to_ready") {
		v.errorf("warm.time_to_ready", "is required when warm.hosts is set")
	} else if c.Warm.TimeToReady < 0 {
		v.errorf("warm.time_to_ready", "must not be negative, got %s", c.Warm.TimeToReady)
	}
	return v.errs
}
