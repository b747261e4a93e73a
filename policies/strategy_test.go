package policies

import (
	"math"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func f64(v float64) *float64 { return &v }

func TestTargetValue(t *testing.T) {
	avg := TargetValue{Target: 100, Aggregate: AggregateAverage, Tolerance: 0.1}
	total := TargetValue{Target: 100, Aggregate: AggregateTotal, Tolerance: 0.1}
	tests := []struct {
		name    string
		tv      TargetValue
		value   float64
		current int
		dir     Direction
		count   int
		reason  string
	}{
		{"average at target", avg, 100, 4, None, 4, "within ±10% tolerance"},
		{"average at upper tolerance edge", avg, 110, 4, None, 4, "within"},
		{"average at lower tolerance edge", avg, 90, 4, None, 4, "within"},
		{"average just above tolerance", avg, 110.5, 10, Up, 12, "needs 12 instances"},
		{"average just below tolerance", avg, 89, 10, Down, 9, "needs 9"},
		{"average double", avg, 200, 4, Up, 8, ""},
		{"average exact multiple needs no extra instance", avg, 150, 2, Up, 3, ""},
		{"average zero load", avg, 0, 4, Down, 0, ""},
		{"average with no instances", avg, 250, 0, Up, 3, ""},
		{"total burst 15x", total, 4500, 3, Up, 45, "1500 per instance vs target 100"},
		{"total within tolerance", total, 1050, 10, None, 10, ""},
		{"total with no instances and load", total, 250, 0, Up, 3, "no instances"},
		{"total with no instances and no load", total, 0, 0, None, 0, ""},
		{"NaN holds", avg, math.NaN(), 4, Hold, 4, "not a usable number"},
		{"+Inf holds", avg, math.Inf(1), 4, Hold, 4, "not a usable number"},
		{"negative holds", avg, -5, 4, Hold, 4, "not a usable number"},
		{"max step up", TargetValue{Target: 100, Tolerance: 0.1, Aggregate: AggregateTotal, MaxStepUp: 5}, 4500, 3, Up, 8, "limited by max_step_up 5 to 8"},
		{"max step down", TargetValue{Target: 100, Tolerance: 0.1, Aggregate: AggregateTotal, MaxStepDown: 2}, 100, 10, Down, 8, "limited by max_step_down 2 to 8"},
		{"step limits leave small moves alone", TargetValue{Target: 100, Tolerance: 0, Aggregate: AggregateTotal, MaxStepUp: 5, MaxStepDown: 2}, 1100, 10, Up, 11, ""},
		{"zero tolerance moves on any difference", TargetValue{Target: 100, Aggregate: AggregateAverage}, 101, 10, Up, 11, ""},
		{"huge value does not overflow", total, 1e300, 1, Up, math.MaxInt32, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := tt.tv.Vote(StrategyInput{Value: tt.value, Current: tt.current, Min: 0, Max: 100, Now: t0})
			if v.Direction != tt.dir || v.Count != tt.count {
				t.Fatalf("got %s %d (%s), want %s %d", v.Direction, v.Count, v.Reason, tt.dir, tt.count)
			}
			if !strings.Contains(v.Reason, tt.reason) {
				t.Errorf("reason %q does not contain %q", v.Reason, tt.reason)
			}
			if v.Strategy != "target_value" {
				t.Errorf("strategy %q", v.Strategy)
			}
			if (v.Value == nil) != (math.IsNaN(tt.value) || math.IsInf(tt.value, 0)) {
				t.Errorf("value %v for input %v", v.Value, tt.value)
			}
		})
	}
}

func TestThreshold(t *testing.T) {
	th := Threshold{Bands: []Band{
		{UpperBound: f64(10), Action: Action{Kind: ActionDelta, N: -1}},
		{LowerBound: f64(20), UpperBound: f64(50), Action: Action{Kind: ActionDelta, N: 2}},
		{LowerBound: f64(50), UpperBound: f64(90), Action: Action{Kind: ActionPercent, N: 50}},
		{LowerBound: f64(90), Action: Action{Kind: ActionToMax}},
	}}
	tests := []struct {
		name    string
		value   float64
		current int
		dir     Direction
		count   int
		reason  string
	}{
		{"below lowest band", 5, 4, Down, 3, "band 0 [-inf, 10): -1"},
		{"upper bound is exclusive", 10, 4, None, 4, "in no band"},
		{"gap between bands", 15, 4, None, 4, "in no band"},
		{"lower bound is inclusive", 20, 4, Up, 6, "band 1"},
		{"percent band", 60, 4, Up, 6, "+50%"},
		{"percent of 1 adds at least one", 60, 1, Up, 2, ""},
		{"to max", 95, 4, Up, 30, "to max"},
		{"to max when at max", 95, 30, None, 30, ""},
		{"scale in at zero stays at zero", 5, 0, None, 0, ""},
		{"NaN holds", math.NaN(), 4, Hold, 4, "not a usable number"},
		{"-Inf holds", math.Inf(-1), 4, Hold, 4, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := th.Vote(StrategyInput{Value: tt.value, Current: tt.current, Min: 1, Max: 30, Now: t0})
			if v.Direction != tt.dir || v.Count != tt.count {
				t.Fatalf("got %s %d (%s), want %s %d", v.Direction, v.Count, v.Reason, tt.dir, tt.count)
			}
			if !strings.Contains(v.Reason, tt.reason) {
				t.Errorf("reason %q does not contain %q", v.Reason, tt.reason)
			}
		})
	}
}

func TestFixed(t *testing.T) {
	for _, tt := range []struct {
		current int
		dir     Direction
	}{{3, Up}, {5, None}, {8, Down}} {
		v := (&Fixed{Count: 5}).Vote(StrategyInput{Current: tt.current, Now: t0})
		if v.Direction != tt.dir || (tt.dir != None && v.Count != 5) || (tt.dir == None && v.Count != tt.current) {
			t.Errorf("current %d: got %s %d, want %s", tt.current, v.Direction, v.Count, tt.dir)
		}
	}
}

func TestSchedule(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	gala := &Schedule{TimeZone: "Europe/Paris", Windows: []Window{
		{Name: "gala", Cron: "0 19 * * SAT", Duration: 4 * time.Hour, LeadTime: 20 * time.Minute, Count: 9},
	}}
	daily := &Schedule{TimeZone: "Europe/Paris", Windows: []Window{
		{Name: "evening", Cron: "0 18 * * *", Duration: time.Hour, Count: 6},
	}}
	// 02:30 does not exist in Paris on 2026-03-29 (clocks jump 02:00 → 03:00)
	// and happens twice on 2026-10-25.
	night := &Schedule{TimeZone: "Europe/Paris", Windows: []Window{
		{Name: "batch", Cron: "30 2 * * *", Duration: time.Hour, Count: 5},
	}}
	// A window that spans the spring-forward gap lasts its elapsed duration.
	spanning := &Schedule{TimeZone: "Europe/Paris", Windows: []Window{
		{Name: "overnight", Cron: "0 1 * * *", Duration: 3 * time.Hour, Count: 5},
	}}
	overlapping := &Schedule{Windows: []Window{
		{Name: "small", Cron: "0 * * * *", Duration: time.Hour, Count: 3},
		{Name: "big", Cron: "0 12 * * *", Duration: time.Hour, Count: 8},
	}}
	utc := &Schedule{Windows: []Window{{Cron: "0 12 * * *", Duration: time.Hour, Count: 4}}}
	at := func(loc *time.Location, y int, mo time.Month, d, h, mi int) time.Time {
		return time.Date(y, mo, d, h, mi, 0, 0, loc)
	}
	tests := []struct {
		name    string
		s       *Schedule
		now     time.Time
		current int
		dir     Direction
		count   int
		reason  string
	}{
		// Saturday 2026-06-06, Paris is UTC+2.
		{"before lead time", gala, at(paris, 2026, 6, 6, 18, 39), 3, None, 3, "no scheduled window"},
		{"lead time starts, inclusive", gala, at(paris, 2026, 6, 6, 18, 40), 3, Up, 9, "starts in 20m0s"},
		{"window start", gala, at(paris, 2026, 6, 6, 19, 0), 3, Up, 9, "is active"},
		{"inside window", gala, at(paris, 2026, 6, 6, 22, 59), 3, Up, 9, ""},
		{"end is exclusive", gala, at(paris, 2026, 6, 6, 23, 0), 3, None, 3, "no scheduled window"},
		{"already enough", gala, at(paris, 2026, 6, 6, 20, 0), 12, None, 12, "already 12"},
		{"floor never scales in", gala, at(paris, 2026, 6, 6, 20, 0), 40, None, 40, ""},
		{"wrong day", gala, at(paris, 2026, 6, 5, 19, 30), 3, None, 3, ""},
		{"window crossing midnight UTC", gala, time.Date(2026, 6, 6, 20, 30, 0, 0, time.UTC), 3, Up, 9, ""},
		{"time zone: 18:00 Paris is 16:00 UTC in summer", daily, time.Date(2026, 7, 1, 16, 0, 0, 0, time.UTC), 1, Up, 6, ""},
		{"time zone: 17:00 UTC in summer is 19:00 Paris, after the window", daily, time.Date(2026, 7, 1, 17, 0, 0, 0, time.UTC), 1, None, 1, ""},
		{"time zone: 18:00 Paris is 17:00 UTC in winter", daily, time.Date(2026, 1, 15, 17, 0, 0, 0, time.UTC), 1, Up, 6, ""},
		{"time zone: 16:00 UTC in winter is 17:00 Paris, before the window", daily, time.Date(2026, 1, 15, 16, 0, 0, 0, time.UTC), 1, None, 1, ""},
		{"DST: day before spring forward", daily, at(paris, 2026, 3, 28, 18, 30), 1, Up, 6, ""},
		{"DST: day after spring forward", daily, at(paris, 2026, 3, 29, 18, 30), 1, Up, 6, ""},
		{"DST: day of fall back", daily, at(paris, 2026, 10, 25, 18, 30), 1, Up, 6, ""},
		{"DST: skipped 02:30 is not active at 01:59", night, time.Date(2026, 3, 29, 0, 59, 0, 0, time.UTC), 1, None, 1, ""},
		{"DST: skipped 02:30 does not fire late on the spring-forward day", night, time.Date(2026, 3, 29, 1, 45, 0, 0, time.UTC), 1, None, 1, ""},
		{"DST: repeated 02:30 fires twice on the fall-back day", night, time.Date(2026, 10, 25, 2, 15, 0, 0, time.UTC), 1, Up, 5, ""},
		{"DST: 02:30 the day before is active", night, at(paris, 2026, 3, 28, 2, 45), 1, Up, 5, ""},
		{"DST: 02:30 on the fall-back day is active", night, at(paris, 2026, 10, 25, 2, 45), 1, Up, 5, ""},
		{"DST: window spanning the gap, 3h elapsed from 01:00 CET", spanning, time.Date(2026, 3, 29, 2, 59, 0, 0, time.UTC), 1, Up, 5, ""},
		{"DST: window spanning the gap ends after 3h elapsed", spanning, time.Date(2026, 3, 29, 3, 0, 0, 0, time.UTC), 1, None, 1, ""},
		{"overlapping windows: the biggest wins", overlapping, time.Date(2026, 6, 1, 12, 30, 0, 0, time.UTC), 1, Up, 8, "big"},
		{"default time zone is UTC", utc, time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC), 1, Up, 4, ""},
		{"UTC schedule with a non-UTC now", utc, time.Date(2026, 6, 1, 14, 30, 0, 0, paris), 1, Up, 4, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := tt.s.Vote(StrategyInput{Current: tt.current, Min: 1, Max: 50, Now: tt.now})
			if v.Direction != tt.dir || v.Count != tt.count {
				t.Fatalf("got %s %d (%s), want %s %d", v.Direction, v.Count, v.Reason, tt.dir, tt.count)
			}
			if !strings.Contains(v.Reason, tt.reason) {
				t.Errorf("reason %q does not contain %q", v.Reason, tt.reason)
			}
		})
	}
}

func TestParseActionAndApply(t *testing.T) {
	tests := []struct {
		in      string
		err     bool
		current int
		want    int
	}{
		{"+3", false, 4, 7},
		{"-1", false, 4, 3},
		{"-10", false, 4, 0},
		{"+50%", false, 3, 5},
		{"+50%", false, 0, 1},
		{"+100%", false, 10, 20},
		{"-10%", false, 5, 4},
		{"-50%", false, 5, 2},
		{"to 12", false, 4, 12},
		{"to max", false, 4, 30},
		{"to min", false, 4, 2},
		{"  +2 ", false, 1, 3},
		{"", true, 0, 0},
		{"3", true, 0, 0},
		{"+0", true, 0, 0},
		{"++3", true, 0, 0},
		{"+-3", true, 0, 0},
		{"-100%", true, 0, 0},
		{"+20000%", true, 0, 0},
		{"to -1", true, 0, 0},
		{"to", true, 0, 0},
		{"to lots", true, 0, 0},
		{"+1.5", true, 0, 0},
	}
	for _, tt := range tests {
		a, err := ParseAction(tt.in)
		if (err != nil) != tt.err {
			t.Errorf("ParseAction(%q) error = %v, want error %v", tt.in, err, tt.err)
			continue
		}
		if err != nil {
			continue
		}
		if got := a.Apply(tt.current, 2, 30); got != tt.want {
			t.Errorf("%q.Apply(%d) = %d, want %d", tt.in, tt.current, got, tt.want)
		}
		if back, err := ParseAction(a.String()); err != nil || back != a {
			t.Errorf("%q does not round-trip through %q", tt.in, a.String())
		}
	}
}

func TestMatchers(t *testing.T) {
	r := AlertRule{Alert: "Hot"}
	for _, s := range []string{`severity=~"crit.*|page"`, `team!="ops"`, `env="prod"`, `region!~"test-.*"`} {
		m, err := parseMatcher(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		r.matchers = append(r.matchers, m)
	}
	tests := []struct {
		name   string
		alert  string
		labels map[string]string
		want   bool
	}{
		{"all match", "Hot", map[string]string{"severity": "critical", "team": "web", "env": "prod", "region": "eu"}, true},
		{"regex is anchored", "Hot", map[string]string{"severity": "notcritical", "env": "prod"}, false},
		{"not equal fails", "Hot", map[string]string{"severity": "page", "team": "ops", "env": "prod"}, false},
		{"missing label is empty", "Hot", map[string]string{"severity": "page"}, false},
		{"negative regex", "Hot", map[string]string{"severity": "page", "env": "prod", "region": "test-1"}, false},
		{"other alert name", "Cold", map[string]string{"severity": "page", "env": "prod"}, false},
	}
	for _, tt := range tests {
		if got := r.Matches(tt.alert, tt.labels); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
	for _, bad := range []string{"", "=x", "sev", `1sev="x"`, `sev=~"("`, `sev="x`, `sev=="x"`} {
		if _, err := parseMatcher(bad); err == nil {
			t.Errorf("parseMatcher(%q) accepted", bad)
		}
	}
}
