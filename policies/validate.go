package policies

import (
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"
	_ "time/tzdata" // schedules name IANA time zones; do not depend on the host's zoneinfo

	"github.com/hashicorp/cronexpr"

	"github.com/spillwayhq/spillway/internal/strictyaml"
)

var (
	nameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,126}[a-z0-9])?$`)
	// cronEpoch is where validation starts looking for a first firing, to
	// tell a valid but impossible expression ("30 feb") from a real one.
	cronEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
)

// validator collects errors for one document.
type validator struct{ strictyaml.Validator }

// validate checks the policy, fills in defaults and compiles matchers. It
// returns every problem.
func (p *Policy) validate() strictyaml.Errors {
	v := &validator{strictyaml.Validator{Pos: p.pos}}
	has := p.pos.Has

	switch {
	case !has("apiVersion"):
		v.Errorf("apiVersion", "is required; use %q", APIVersion)
	case p.APIVersion != APIVersion:
		v.Errorf("apiVersion", "unsupported version %q; use %q", p.APIVersion, APIVersion)
	}
	switch {
	case !has("kind"):
		v.Errorf("kind", "is required; use %q", Kind)
	case p.Kind != Kind:
		v.Errorf("kind", "unsupported kind %q; use %q", p.Kind, Kind)
	}
	if v.Required("name", p.Name != "") && !nameRe.MatchString(p.Name) {
		v.Errorf("name", "%q is not a valid name: use lowercase letters, digits, '.', '_' and '-', at most 128 characters", p.Name)
	}
	v.Required("business_unit", strings.TrimSpace(p.BusinessUnit) != "")

	if v.Required("target", has("target")) {
		if p.Target.Namespace == "" {
			p.Target.Namespace = DefaultNamespace
		}
		v.Required("target.job", strings.TrimSpace(p.Target.Job) != "")
		v.Required("target.group", strings.TrimSpace(p.Target.Group) != "")
	}

	// A bound that did not decode is reported once, by the decoder, and
	// takes no part in checks against other fields.
	minOK := v.Required("min", has("min")) && !p.pos.Failed("min")
	maxOK := v.Required("max", has("max")) && !p.pos.Failed("max")
	if minOK && p.Min < 0 {
		v.Errorf("min", "must not be negative, got %d", p.Min)
		minOK = false
	}
	if maxOK && p.Max < 1 {
		v.Errorf("max", "must be at least 1, got %d", p.Max)
		maxOK = false
	}
	if minOK && maxOK && p.Min > p.Max {
		v.Errorf("max", "must be at least min (%d), got %d", p.Min, p.Max)
	}

	v.duration("evaluation_interval", &p.EvaluationInterval, DefaultEvaluationInterval, time.Second)
	v.duration("cooldown.scale_up", &p.Cooldown.ScaleUp, DefaultScaleUpCooldown, 0)
	v.duration("cooldown.scale_down", &p.Cooldown.ScaleDown, DefaultScaleDownCooldown, 0)
	v.duration("deadline", &p.Deadline, DefaultDeadline, time.Second)
	v.duration("stale_after", &p.StaleAfter, DefaultStaleAfter, time.Second)
	if has("stale_after") && has("evaluation_interval") && p.StaleAfter > 0 && p.StaleAfter < p.EvaluationInterval {
		// Not fatal in theory, but it means every other evaluation sees
		// stale data; almost certainly a mistake.
		v.Errorf("stale_after", "%s is shorter than evaluation_interval %s", p.StaleAfter, p.EvaluationInterval)
	}

	v.onError("on_check_error", &p.OnCheckError, p, maxOK)

	if len(p.Checks) == 0 && len(p.Alerts) == 0 {
		v.Errorf("checks", "at least one check or alert rule is required")
	}
	names := map[string]int{}
	for i := range p.Checks {
		c := &p.Checks[i]
		path := fmt.Sprintf("checks[%d]", i)
		if v.Required(path+".name", c.Name != "") {
			if !nameRe.MatchString(c.Name) {
				v.Errorf(path+".name", "%q is not a valid name: use lowercase letters, digits, '.', '_' and '-'", c.Name)
			}
			if j, dup := names[c.Name]; dup {
				v.Errorf(path+".name", "duplicate check name %q (also checks[%d])", c.Name, j)
			} else {
				names[c.Name] = i
			}
		}
		v.check(path, c, p, maxOK)
	}
	for i := range p.Alerts {
		v.alert(fmt.Sprintf("alerts[%d]", i), &p.Alerts[i])
	}
	if t := p.Traffic; t != nil {
		fixed, query := v.Pos.Has("traffic.per_allocation"), v.Pos.Has("traffic.query")
		switch {
		case fixed && query:
			v.Errorf("traffic.query", "traffic is a fixed per_allocation or a query, not both")
		case !fixed && !query:
			v.Errorf("traffic", "needs per_allocation (such as 20Mbps) or a query (bits per second per allocation)")
		case fixed && !v.Pos.Failed("traffic.per_allocation") && t.PerAllocation <= 0:
			v.Errorf("traffic.per_allocation", "must be positive, got %s", t.PerAllocation)
		case query && strings.TrimSpace(t.Query) == "":
			v.Errorf("traffic.query", "must not be empty")
		case query:
			if err := checkPromQL(t.Query); err != nil {
				v.Errorf("traffic.query", "%s", err)
			}
		}
	}
	return v.Errs
}

// duration applies a default when the field is unset and checks the lower
// bound when it is set.
func (v *validator) duration(path string, d *time.Duration, def, least time.Duration) {
	if !v.Pos.Has(path) {
		*d = def
		return
	}
	if *d < least || *d < 0 {
		if least == 0 {
			v.Errorf(path, "must not be negative, got %s", *d)
		} else {
			v.Errorf(path, "must be at least %s, got %s", least, *d)
		}
	}
}

func (v *validator) onError(path string, o *OnCheckError, p *Policy, maxOK bool) {
	switch o.Action {
	case "":
		if o.set {
			v.Errorf(path+".action", "is required: %q or %q", OnErrorHold, OnErrorFixed)
		}
		o.Action = OnErrorHold
		if o.hasCount {
			v.Errorf(path+".count", "only allowed with action %q", OnErrorFixed)
		}
	case OnErrorHold:
		if o.hasCount {
			v.Errorf(path+".count", "only allowed with action %q", OnErrorFixed)
		}
	case OnErrorFixed:
		if !v.Required(path+".count", o.hasCount) {
			return
		}
		if o.Count < 0 {
			v.Errorf(path+".count", "must not be negative, got %d", o.Count)
		} else if maxOK && o.Count > p.Max {
			v.Errorf(path+".count", "%d is above max (%d)", o.Count, p.Max)
		}
	default:
		v.Errorf(path+".action", "unknown action %q; use %q or %q", o.Action, OnErrorHold, OnErrorFixed)
	}
}

func (v *validator) check(path string, c *Check, p *Policy, maxOK bool) {
	var set []string
	if c.TargetValue != nil {
		set = append(set, "target_value")
	}
	if c.Threshold != nil {
		set = append(set, "threshold")
	}
	if c.Fixed != nil {
		set = append(set, "fixed")
	}
	if c.Schedule != nil {
		set = append(set, "schedule")
	}
	switch len(set) {
	case 0:
		v.Errorf(path, "needs a strategy: one of target_value, threshold, fixed or schedule")
	case 1:
	default:
		v.Errorf(path+"."+set[1], "a check has exactly one strategy, found %s; split it into several checks", strings.Join(set, " and "))
	}

	if c.NeedsMetric() {
		if strings.TrimSpace(c.Query) == "" {
			v.Errorf(path+".query", "is required and must not be empty for the %s strategy", set[0])
		} else if err := checkPromQL(c.Query); err != nil {
			v.Errorf(path+".query", "%s", err)
		}
	} else if len(set) == 1 && v.Pos.Has(path+".query") {
		v.Errorf(path+".query", "the %s strategy reads no metric; remove the query", set[0])
	}
	if c.OnError != nil {
		if !c.NeedsMetric() && len(set) == 1 {
			v.Errorf(path+".on_error", "the %s strategy reads no metric, so it has no errors to handle", set[0])
		}
		v.onError(path+".on_error", c.OnError, p, maxOK)
	}

	if tv := c.TargetValue; tv != nil {
		tp := path + ".target_value"
		if !v.Pos.Has(tp + ".target") {
			v.Errorf(tp+".target", "is required")
		} else if !(tv.Target > 0) || math.IsInf(tv.Target, 0) {
			v.Errorf(tp+".target", "must be a positive number, got %v", tv.Target)
		}
		switch tv.Aggregate {
		case "":
			tv.Aggregate = AggregateAverage
		case AggregateAverage, AggregateTotal:
		default:
			v.Errorf(tp+".aggregate", "unknown aggregate %q; use %q or %q", tv.Aggregate, AggregateAverage, AggregateTotal)
		}
		if !v.Pos.Has(tp + ".tolerance") {
			tv.Tolerance = DefaultTolerance
		} else if !(tv.Tolerance >= 0 && tv.Tolerance < 1) {
			v.Errorf(tp+".tolerance", "must be at least 0 and below 1 (a fraction such as 0.1 for ±10%%), got %v", tv.Tolerance)
		}
		if tv.MaxStepUp < 0 {
			v.Errorf(tp+".max_step_up", "must not be negative, got %d", tv.MaxStepUp)
		}
		if tv.MaxStepDown < 0 {
			v.Errorf(tp+".max_step_down", "must not be negative, got %d", tv.MaxStepDown)
		}
	}
	if th := c.Threshold; th != nil {
		v.threshold(path+".threshold", th)
	}
	if f := c.Fixed; f != nil {
		fp := path + ".fixed.count"
		if v.Required(fp, v.Pos.Has(fp)) {
			if f.Count < 0 {
				v.Errorf(fp, "must not be negative, got %d", f.Count)
			} else if maxOK && f.Count > p.Max {
				v.Errorf(fp, "%d is above max (%d)", f.Count, p.Max)
			}
		}
	}
	if s := c.Schedule; s != nil {
		v.schedule(path+".schedule", s, p, maxOK)
	}
}

func (v *validator) threshold(path string, th *Threshold) {
	if len(th.Bands) == 0 {
		v.Errorf(path+".bands", "at least one band is required")
		return
	}
	decoded := func(i int) bool {
		bp := fmt.Sprintf("%s.bands[%d]", path, i)
		return !v.Pos.Failed(bp+".lower_bound") && !v.Pos.Failed(bp+".upper_bound")
	}
	for i, b := range th.Bands {
		bp := fmt.Sprintf("%s.bands[%d]", path, i)
		if b.LowerBound == nil && b.UpperBound == nil {
			v.Errorf(bp, "needs lower_bound, upper_bound or both")
		}
		for _, bound := range []struct {
			name string
			val  *float64
		}{{"lower_bound", b.LowerBound}, {"upper_bound", b.UpperBound}} {
			if bound.val != nil && (math.IsNaN(*bound.val) || math.IsInf(*bound.val, 0)) {
				v.Errorf(bp+"."+bound.name, "must be a finite number")
			}
		}
		if b.LowerBound != nil && b.UpperBound != nil && !(*b.LowerBound < *b.UpperBound) {
			v.Errorf(bp+".upper_bound", "must be greater than lower_bound (%v), got %v", *b.LowerBound, *b.UpperBound)
		}
		if !v.Pos.Has(bp + ".action") {
			v.Errorf(bp+".action", "is required")
		}
		for j := range i {
			if decoded(i) && decoded(j) && bandsOverlap(th.Bands[j], b) {
				v.Errorf(bp, "overlaps bands[%d]; a value must fall in at most one band", j)
			}
		}
	}
}

func bandsOverlap(a, b Band) bool {
	lo := func(x Band) float64 {
		if x.LowerBound == nil {
			return math.Inf(-1)
		}
		return *x.LowerBound
	}
	hi := func(x Band) float64 {
		if x.UpperBound == nil {
			return math.Inf(1)
		}
		return *x.UpperBound
	}
	return lo(a) < hi(b) && lo(b) < hi(a)
}

func (v *validator) schedule(path string, s *Schedule, p *Policy, maxOK bool) {
	loc := time.UTC
	if s.TimeZone != "" {
		l, err := time.LoadLocation(s.TimeZone)
		if err != nil || strings.EqualFold(s.TimeZone, "local") {
			v.Errorf(path+".time_zone", "unknown time zone %q; use an IANA name such as Europe/Paris", s.TimeZone)
		} else {
			loc = l
		}
	}
	s.loc = loc
	if len(s.Windows) == 0 {
		v.Errorf(path+".windows", "at least one window is required")
	}
	for i, w := range s.Windows {
		wp := fmt.Sprintf("%s.windows[%d]", path, i)
		if v.Required(wp+".cron", strings.TrimSpace(w.Cron) != "") {
			if err := checkCron(w.Cron, loc); err != nil {
				v.Errorf(wp+".cron", "%s", err)
			}
		}
		if !v.Pos.Has(wp + ".duration") {
			v.Errorf(wp+".duration", "is required")
		} else if w.Duration <= 0 {
			v.Errorf(wp+".duration", "must be positive, got %s", w.Duration)
		}
		if w.LeadTime < 0 {
			v.Errorf(wp+".lead_time", "must not be negative, got %s", w.LeadTime)
		}
		if v.Required(wp+".count", v.Pos.Has(wp+".count")) {
			if w.Count < 0 {
				v.Errorf(wp+".count", "must not be negative, got %d", w.Count)
			} else if maxOK && w.Count > p.Max {
				v.Errorf(wp+".count", "%d is above max (%d)", w.Count, p.Max)
			}
		}
	}
}

// checkCron parses a five-field cron expression or an @alias and checks
// that it ever fires.
func checkCron(expr string, loc *time.Location) (err error) {
	fields := strings.Fields(expr)
	if !(len(fields) == 5 || (len(fields) == 1 && strings.HasPrefix(fields[0], "@"))) {
		return fmt.Errorf("invalid cron expression %q: expected five fields (minute hour day-of-month month day-of-week) or an alias such as @daily", expr)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("invalid cron expression %q", expr)
		}
	}()
	e, err := cronexpr.Parse(expr)
	if err != nil {
		return fmt.Errorf("invalid cron expression %q: %w", expr, err)
	}
	if e.Next(cronEpoch.In(loc)).IsZero() {
		return fmt.Errorf("cron expression %q never fires", expr)
	}
	return nil
}

func (v *validator) alert(path string, r *AlertRule) {
	v.Required(path+".alert", strings.TrimSpace(r.Alert) != "")
	r.matchers = nil
	for i, s := range r.Matchers {
		m, err := parseMatcher(s)
		if err != nil {
			v.Errorf(fmt.Sprintf("%s.matchers[%d]", path, i), "%s", err)
			continue
		}
		r.matchers = append(r.matchers, m)
	}
	if !v.Pos.Has(path + ".action") {
		v.Errorf(path+".action", "is required")
		return
	}
	switch r.Action.Kind {
	case ActionToMin:
		v.Errorf(path+".action", "alerts only scale out; %q is not allowed", r.Action)
	case ActionDelta, ActionPercent:
		if r.Action.N < 0 {
			v.Errorf(path+".action", "alerts only scale out; %q is not allowed", r.Action)
		}
	}
}

// checkPromQL catches the mistakes a PromQL parser would, cheaply: an
// unbalanced bracket or an unterminated string. Prometheus still has the
// last word when the query runs.
func checkPromQL(q string) error {
	var stack []byte
	pairs := map[byte]byte{')': '(', ']': '[', '}': '{'}
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch c {
		case '"', '\'', '`':
			j := i + 1
			for ; j < len(q) && q[j] != c; j++ {
				if q[j] == '\\' && c != '`' {
					j++
				}
			}
			if j >= len(q) {
				return fmt.Errorf("unterminated string starting at offset %d", i)
			}
			i = j
		case '#':
			for i < len(q) && q[i] != '\n' {
				i++
			}
		case '(', '[', '{':
			stack = append(stack, c)
		case ')', ']', '}':
			if len(stack) == 0 || stack[len(stack)-1] != pairs[c] {
				return fmt.Errorf("unbalanced %q at offset %d", c, i)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) > 0 {
		return fmt.Errorf("unclosed %q", stack[len(stack)-1])
	}
	return nil
}
