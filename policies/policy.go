package policies

import (
	"time"

	"github.com/spillwayhq/spillway/internal/bandwidth"
	"github.com/spillwayhq/spillway/internal/strictyaml"
)

// APIVersion and Kind identify a scaling policy document.
const (
	APIVersion = "spillway/v1"
	Kind       = "ScalingPolicy"
)

// Defaults applied when a field is left out.
const (
	DefaultNamespace          = "default"
	DefaultEvaluationInterval = 30 * time.Second
	DefaultScaleUpCooldown    = time.Minute
	DefaultScaleDownCooldown  = 5 * time.Minute
	DefaultDeadline           = 5 * time.Minute
	DefaultStaleAfter         = 2 * time.Minute
	DefaultTolerance          = 0.1
)

// Policy is one ScalingPolicy document. A loaded Policy belongs to an
// immutable [Set] and must not be modified.
type Policy struct {
	APIVersion string `yaml:"apiVersion" json:"apiVersion"`
	Kind       string `yaml:"kind" json:"kind"`
	// Name is unique across a set.
	Name        string `yaml:"name" json:"name"`
	Description string `yaml:"description" json:"description,omitempty"`
	// BusinessUnit owns the service; the planner takes its idle capacity
	// first (the capacity ladder).
	BusinessUnit string `yaml:"business_unit" json:"business_unit"`
	Target       Target `yaml:"target" json:"target"`
	// Min and Max bound the group count. Both are required.
	Min int `yaml:"min" json:"min"`
	Max int `yaml:"max" json:"max"`
	// EvaluationInterval is how often the policy is evaluated.
	EvaluationInterval time.Duration `yaml:"evaluation_interval" json:"evaluation_interval"`
	Cooldown           Cooldown      `yaml:"cooldown" json:"cooldown"`
	// Deadline is how long a scale-out may take from trigger to healthy
	// allocations.
	Deadline time.Duration `yaml:"deadline" json:"deadline"`
	// StaleAfter is the age after which a metric sample counts as missing.
	StaleAfter time.Duration `yaml:"stale_after" json:"stale_after"`
	// OnCheckError is what a check votes when its metric is missing, stale
	// or failed. Checks may override it.
	OnCheckError OnCheckError `yaml:"on_check_error" json:"on_check_error"`
	Checks       []Check      `yaml:"checks" json:"checks"`
	Alerts       []AlertRule  `yaml:"alerts" json:"alerts,omitempty"`
	// Traffic is what one allocation of the service sends over a link
	// to the data centre: the planner puts no more allocations behind a
	// pool's link than it carries. Optional: without it no link limits
	// the service.
	Traffic *Traffic `yaml:"traffic" json:"traffic,omitempty"`

	pos *strictyaml.Positions
}

// File is the file the policy was loaded from.
func (p *Policy) File() string {
	if p.pos == nil {
		return ""
	}
	return p.pos.File
}

// Line is the line where the policy's document starts.
func (p *Policy) Line() int {
	if p.pos == nil {
		return 0
	}
	return p.pos.Doc.Line
}

// Traffic is a service's traffic per allocation over a link: a fixed
// figure, or a PromQL query whose one series is bits per second per
// allocation. Exactly one is set.
type Traffic struct {
	PerAllocation bandwidth.Bandwidth `yaml:"per_allocation" json:"per_allocation,omitempty"`
	Query         string              `yaml:"query" json:"query,omitempty"`
}

// Target is the Nomad task group a policy scales.
type Target struct {
	Namespace string `yaml:"namespace" json:"namespace"`
	Job       string `yaml:"job" json:"job"`
	Group     string `yaml:"group" json:"group"`
}

func (t Target) String() string { return t.Namespace + "/" + t.Job + "/" + t.Group }

// Cooldown is the minimum time after the last scaling action before the
// next one in each direction.
type Cooldown struct {
	ScaleUp   time.Duration `yaml:"scale_up" json:"scale_up"`
	ScaleDown time.Duration `yaml:"scale_down" json:"scale_down"`
}

// OnErrorAction names what a check does when its metric is unusable.
type OnErrorAction string

// The on_check_error actions.
const (
	OnErrorHold  OnErrorAction = "hold"
	OnErrorFixed OnErrorAction = "fixed"
)

// OnCheckError is what a check votes when its data is missing, stale or
// failed: hold the current count (the default), or go to a fixed count.
// Either way it never scales in: a fixed count below the current count
// holds.
//
// In YAML it is a mapping, {action: fixed, count: 6}, or the shorthand
// scalar "hold".
type OnCheckError struct {
	Action OnErrorAction `yaml:"action" json:"action"`
	Count  int           `yaml:"count" json:"count,omitempty"`

	set, hasCount bool // what the YAML said, for validation
}

// Check is one metric query and the strategy that turns its value into a
// vote. Exactly one strategy block is set.
type Check struct {
	Name string `yaml:"name" json:"name"`
	// Query is a PromQL expression returning one series. Required for
	// target_value and threshold, not allowed for fixed and schedule.
	Query       string        `yaml:"query" json:"query,omitempty"`
	OnError     *OnCheckError `yaml:"on_error" json:"on_error,omitempty"`
	TargetValue *TargetValue  `yaml:"target_value" json:"target_value,omitempty"`
	Threshold   *Threshold    `yaml:"threshold" json:"threshold,omitempty"`
	Fixed       *Fixed        `yaml:"fixed" json:"fixed,omitempty"`
	Schedule    *Schedule     `yaml:"schedule" json:"schedule,omitempty"`
}

// Strategy returns the check's strategy.
func (c *Check) Strategy() Strategy {
	switch {
	case c.TargetValue != nil:
		return c.TargetValue
	case c.Threshold != nil:
		return c.Threshold
	case c.Fixed != nil:
		return c.Fixed
	case c.Schedule != nil:
		return c.Schedule
	}
	return nil
}

// NeedsMetric reports whether the check's strategy reads its query.
func (c *Check) NeedsMetric() bool {
	return c.TargetValue != nil || c.Threshold != nil
}

// Aggregate says what a target_value metric measures.
type Aggregate string

// The target_value aggregates.
const (
	// AggregateAverage: the metric is a per-instance average (CPU share,
	// requests per second per instance). desired = ceil(current × value / target).
	AggregateAverage Aggregate = "average"
	// AggregateTotal: the metric is the total across all instances (total
	// requests per second). desired = ceil(value / target).
	AggregateTotal Aggregate = "total"
)

// TargetValue keeps a metric near a target per instance.
type TargetValue struct {
	Target    float64   `yaml:"target" json:"target"`
	Aggregate Aggregate `yaml:"aggregate" json:"aggregate"`
	// Tolerance is the relative band around the target in which the check
	// votes "no change", e.g. 0.1 for ±10%.
	Tolerance float64 `yaml:"tolerance" json:"tolerance"`
	// MaxStepUp and MaxStepDown cap one change; 0 means no cap.
	MaxStepUp   int `yaml:"max_step_up" json:"max_step_up,omitempty"`
	MaxStepDown int `yaml:"max_step_down" json:"max_step_down,omitempty"`
}

// Threshold applies the action of the band the metric value falls in.
type Threshold struct {
	Bands []Band `yaml:"bands" json:"bands"`
}

// Band is a half-open range [lower_bound, upper_bound) of metric values
// and the action taken inside it. A missing bound is unbounded.
type Band struct {
	LowerBound *float64 `yaml:"lower_bound" json:"lower_bound,omitempty"`
	UpperBound *float64 `yaml:"upper_bound" json:"upper_bound,omitempty"`
	Action     Action   `yaml:"action" json:"action"`
}

// Fixed always asks for the same count.
type Fixed struct {
	Count int `yaml:"count" json:"count"`
}

// Schedule pre-scales for known events: inside a window (or its lead time)
// it asks for at least the window's count. It is a floor: it never votes to
// scale in.
type Schedule struct {
	// TimeZone is an IANA name such as Europe/Paris; cron expressions are
	// read in it. Default UTC.
	TimeZone string   `yaml:"time_zone" json:"time_zone"`
	Windows  []Window `yaml:"windows" json:"windows"`

	loc *time.Location // loaded once by validation; evaluation does no I/O
}

// Window is a recurring period of expected load.
type Window struct {
	Name string `yaml:"name" json:"name"`
	// Cron is when the window starts, in the schedule's time zone: five
	// fields (minute hour day-of-month month day-of-week) or an alias such
	// as @daily.
	Cron string `yaml:"cron" json:"cron"`
	// Duration is how long the window lasts, in elapsed time (a window that
	// spans a DST change still lasts Duration).
	Duration time.Duration `yaml:"duration" json:"duration"`
	// LeadTime starts pre-scaling this long before the window starts, so
	// capacity is ready in time.
	LeadTime time.Duration `yaml:"lead_time" json:"lead_time,omitempty"`
	// Count is the minimum count inside the window.
	Count int `yaml:"count" json:"count"`
}

// AlertRule maps firing Alertmanager alerts to an action.
type AlertRule struct {
	// Alert is the alertname.
	Alert string `yaml:"alert" json:"alert"`
	// Matchers select on the alert's labels, in Alertmanager syntax:
	// name="value", name!="value", name=~"regex", name!~"regex".
	Matchers []string `yaml:"matchers" json:"matchers,omitempty"`
	// Action is what to do while the alert fires; alerts only scale out.
	Action Action `yaml:"action" json:"action"`

	matchers []matcher
}
