package policies

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

func TestSafestWins(t *testing.T) {
	up := func(src string, n int) Vote { return Vote{Source: src, Direction: Up, Count: n} }
	down := func(src string, n int) Vote { return Vote{Source: src, Direction: Down, Count: n} }
	none := func(src string) Vote { return Vote{Source: src, Direction: None, Count: 10} }
	hold := func(src string) Vote { return Vote{Source: src, Direction: Hold, Count: 10} }
	tests := []struct {
		name   string
		votes  []Vote
		winner string
		dir    Direction
		count  int
	}{
		{"no votes", nil, "", None, 10},
		{"all none", []Vote{none("a"), none("b")}, "", None, 10},
		{"biggest up wins", []Vote{up("a", 12), up("b", 20), up("c", 15)}, "b", Up, 20},
		{"up beats down", []Vote{down("a", 5), up("b", 11)}, "b", Up, 11},
		{"up beats hold", []Vote{hold("a"), up("b", 11)}, "b", Up, 11},
		{"hold beats down", []Vote{down("a", 5), hold("b")}, "b", Hold, 10},
		{"down beats none: none counts only if all agree", []Vote{none("a"), down("b", 8)}, "b", Down, 8},
		{"smallest scale-in wins", []Vote{down("a", 5), down("b", 8), down("c", 3)}, "b", Down, 8},
		{"tie goes to the first", []Vote{up("a", 12), up("b", 12)}, "a", Up, 12},
		{"first hold is named", []Vote{hold("a"), hold("b"), down("c", 1)}, "a", Hold, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, reason := SafestWins(tt.votes, 10)
			if v.Source != tt.winner || v.Direction != tt.dir || v.Count != tt.count {
				t.Fatalf("got %q %s %d, want %q %s %d", v.Source, v.Direction, v.Count, tt.winner, tt.dir, tt.count)
			}
			if reason == "" || (tt.winner != "" && !strings.Contains(reason, tt.winner)) {
				t.Errorf("reason %q does not name the winner", reason)
			}
		})
	}
}

// testPolicy has a request-rate target (100 per instance, total), an
// in-flight threshold band and a fixed floor of 2; bounds 2..20.
func testPolicy(t *testing.T, extra string) *Policy {
	t.Helper()
	src := `apiVersion: spillway/v1
kind: ScalingPolicy
name: web
business_unit: media
target: {job: demo, group: web}
min: 2
max: 20
cooldown: {scale_up: 30s, scale_down: 5m}
stale_after: 1m
checks:
  - name: rate
    query: sum(rate(spillway_demo_requests_total[1m]))
    target_value: {target: 100, aggregate: total, tolerance: 0.1}
  - name: inflight
    query: avg(spillway_demo_requests_in_flight)
    threshold:
      bands: [{lower_bound: 50, action: "+50%"}]
` + extra
	ps, err := Parse("t.yaml", []byte(src))
	if err != nil {
		t.Fatalf("test policy: %v", err)
	}
	return ps[0]
}

func reading(v float64, at time.Time) Reading {
	return Reading{Samples: []Sample{{Value: v, Time: at}}}
}

func TestEvaluate(t *testing.T) {
	now := t0
	fresh := func(rate, inflight float64) map[string]Reading {
		return map[string]Reading{"rate": reading(rate, now.Add(-5*time.Second)), "inflight": reading(inflight, now.Add(-5*time.Second))}
	}
	withRate := func(r Reading) map[string]Reading {
		return map[string]Reading{"rate": r, "inflight": reading(1, now)}
	}
	tests := []struct {
		name      string
		extra     string
		in        Input
		dir       Direction
		desired   int
		winner    string
		reason    string
		dataError string
	}{
		{"steady", "", Input{Current: 5, Readings: fresh(500, 1)}, None, 5, "", "every check agrees", ""},
		{"rate burst scales up", "", Input{Current: 5, Readings: fresh(1500, 1)}, Up, 15, "rate", "rate wants 15", ""},
		{"in-flight band beats rate", "", Input{Current: 10, Readings: fresh(1200, 80)}, Up, 15, "inflight", "+50%", ""},
		{"capped at max", "", Input{Current: 10, Readings: fresh(5000, 1)}, Up, 20, "rate", "limited to max 20", ""},
		{"at max stays", "", Input{Current: 20, Readings: fresh(5000, 1)}, None, 20, "rate", "limited to max 20", ""},
		{"scale in", "", Input{Current: 10, Readings: fresh(300, 1)}, Down, 3, "rate", "rate wants 3", ""},
		{"scale in stops at min", "", Input{Current: 4, Readings: fresh(0, 1)}, Down, 2, "rate", "raised to min 2", ""},
		{"below min rises even when steady", "", Input{Current: 1, Readings: fresh(100, 1)}, Up, 2, "", "raised to min 2", ""},
		{"NaN never scales in", "", Input{Current: 10, Readings: withRate(reading(math.NaN(), now))}, Hold, 10, "rate", "holding", "value is not a number"},
		{"empty series never scales in", "", Input{Current: 10, Readings: withRate(Reading{})}, Hold, 10, "rate", "never scale in", "no data"},
		{"check not queried", "", Input{Current: 10, Readings: map[string]Reading{"inflight": reading(1, now)}}, Hold, 10, "rate", "", "not queried"},
		{"query error holds", "", Input{Current: 10, Readings: withRate(Reading{Err: errors.New("connection refused")})}, Hold, 10, "rate", "", "connection refused"},
		{"stale data holds", "", Input{Current: 10, Readings: withRate(reading(100, now.Add(-61*time.Second)))}, Hold, 10, "rate", "", "stale data: newest sample is 1m1s old"},
		{"exactly stale_after old is fresh", "", Input{Current: 10, Readings: withRate(reading(100, now.Add(-time.Minute)))}, Down, 2, "rate", "", ""},
		{"sample without timestamp is stale", "", Input{Current: 10, Readings: withRate(Reading{Samples: []Sample{{Value: 1}}})}, Hold, 10, "rate", "", "no timestamp"},
		{"several series hold", "", Input{Current: 10, Readings: withRate(Reading{Samples: []Sample{
			{Labels: map[string]string{"instance": "a"}, Value: 1, Time: now}, {Labels: map[string]string{"instance": "b"}, Value: 1, Time: now}}})},
			Hold, 10, "rate", "", `2 series ({instance="a"}, {instance="b"}); aggregate it`},
		{"missing data still allows scale out", "", Input{Current: 10, Readings: map[string]Reading{"rate": {}, "inflight": reading(60, now)}}, Up, 15, "inflight", "", ""},
		{"above max with missing data does not scale in", "", Input{Current: 25, Readings: withRate(Reading{})}, Hold, 25, "rate", "not scaling in without data", ""},
		{"above max with data scales in to max", "", Input{Current: 25, Readings: fresh(2400, 1)}, Down, 20, "", "limited to max 20", ""},
		{"on_check_error fixed raises", "on_check_error: {action: fixed, count: 12}\n", Input{Current: 10, Readings: withRate(Reading{})}, Up, 12, "rate", "on_check_error: fixed count 12", "no data"},
		{"on_check_error fixed waits for data", "on_check_error: {action: fixed, count: 12}\n", Input{Current: 10, Readings: withRate(Reading{Err: fmt.Errorf("%w: prometheus has been up 20s", ErrNotYet)})}, Hold, 10, "rate", "on_check_error does not apply", "no data yet"},
		{"on_check_error fixed when unreachable", "on_check_error: {action: fixed, count: 12}\n", Input{Current: 10, Readings: withRate(Reading{Err: fmt.Errorf("%w: connection refused", ErrUnreachable)})}, Up, 12, "rate", "on_check_error: fixed count 12", "unreachable"},
		{"on_check_error fixed never lowers", "on_check_error: {action: fixed, count: 4}\n", Input{Current: 10, Readings: withRate(Reading{})}, Hold, 10, "rate", "", "no data"},
		{"check on_error overrides policy", "on_check_error: {action: fixed, count: 12}\n", Input{Current: 10, Readings: map[string]Reading{"rate": reading(1000, now), "inflight": {}}}, Up, 12, "inflight", "", ""},
		{"alert scales out", "alerts: [{alert: Hot, matchers: ['severity=\"critical\"'], action: '+50%'}]\n",
			Input{Current: 10, Readings: fresh(1000, 1), Alerts: []Alert{{Name: "Hot", Labels: map[string]string{"severity": "critical"}}}}, Up, 15, "alert:Hot", "alert Hot is firing: +50%", ""},
		{"alert with other labels is ignored", "alerts: [{alert: Hot, matchers: ['severity=\"critical\"'], action: '+50%'}]\n",
			Input{Current: 10, Readings: fresh(1000, 1), Alerts: []Alert{{Name: "Hot", Labels: map[string]string{"severity": "info"}}}}, None, 10, "", "", ""},
		{"alert to max", "alerts: [{alert: Hot, action: to max}]\n",
			Input{Current: 10, Readings: fresh(1000, 1), Alerts: []Alert{{Name: "Hot"}}}, Up, 20, "alert:Hot", "", ""},
		{"alert overrides missing data", "alerts: [{alert: Hot, action: '+2'}]\n",
			Input{Current: 10, Readings: withRate(Reading{}), Alerts: []Alert{{Name: "Hot"}}}, Up, 12, "alert:Hot", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPolicy(t, tt.extra)
			tt.in.Now = now
			d := Evaluate(p, tt.in)
			if d.Direction != tt.dir || d.Desired != tt.desired || d.Winner != tt.winner {
				t.Fatalf("got %s %d by %q (%s), want %s %d by %q", d.Direction, d.Desired, d.Winner, d.Reason, tt.dir, tt.desired, tt.winner)
			}
			if !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("reason %q does not contain %q", d.Reason, tt.reason)
			}
			if tt.dataError != "" && !strings.Contains(d.Checks[0].DataError, tt.dataError) {
				t.Errorf("data error %q does not contain %q", d.Checks[0].DataError, tt.dataError)
			}
			if d.Policy != "web" || d.Current != tt.in.Current || !d.Deadline.Equal(now.Add(5*time.Minute)) {
				t.Errorf("decision header %+v", d)
			}
		})
	}
}

func TestEvaluateCooldown(t *testing.T) {
	now := t0
	up := map[string]Reading{"rate": reading(1500, now), "inflight": reading(1, now)}
	down := map[string]Reading{"rate": reading(300, now), "inflight": reading(1, now)}
	tests := []struct {
		name     string
		since    time.Duration // time since the last scale; 0 means never
		readings map[string]Reading
		current  int
		dir      Direction
		desired  int
		blocked  bool
	}{
		{"never scaled", 0, up, 10, Up, 15, false},
		{"inside scale-up cooldown", 29 * time.Second, up, 10, None, 10, true},
		{"scale-up cooldown boundary is inclusive", 30 * time.Second, up, 10, Up, 15, false},
		{"scale-up cooldown does not hold scale-in", 31 * time.Second, down, 10, None, 10, true},
		{"inside scale-down cooldown", 4*time.Minute + 59*time.Second, down, 10, None, 10, true},
		{"scale-down cooldown boundary", 5 * time.Minute, down, 10, Down, 3, false},
		{"bounds ignore cooldown", time.Second, down, 1, Up, 3, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPolicy(t, "")
			in := Input{Now: now, Current: tt.current, Readings: tt.readings}
			if tt.since > 0 {
				in.LastScale = now.Add(-tt.since)
			}
			d := Evaluate(p, in)
			if d.Direction != tt.dir || d.Desired != tt.desired || (d.CooldownUntil != nil) != tt.blocked {
				t.Fatalf("got %s %d cooldown %v (%s), want %s %d blocked %v", d.Direction, d.Desired, d.CooldownUntil, d.Reason, tt.dir, tt.desired, tt.blocked)
			}
			if tt.blocked && !strings.Contains(d.Reason, "cooldown lasts until") {
				t.Errorf("reason %q does not mention the cooldown", d.Reason)
			}
		})
	}
}

func TestEvaluateSchedule(t *testing.T) {
	set, err := LoadDir("examples")
	if err != nil {
		t.Fatal(err)
	}
	gala, _ := set.Get("demo-gala")
	paris, _ := time.LoadLocation("Europe/Paris")
	sat := time.Date(2026, 6, 6, 18, 45, 0, 0, paris)
	d := Evaluate(gala, Input{Now: sat, Current: 3, Readings: map[string]Reading{"request-rate": reading(300, sat)}})
	if d.Direction != Up || d.Desired != 9 || d.Winner != "gala-evening" {
		t.Fatalf("got %s %d by %q: %s", d.Direction, d.Desired, d.Winner, d.Reason)
	}
	// Metric missing during the window: the schedule still pre-scales.
	d = Evaluate(gala, Input{Now: sat, Current: 3})
	if d.Direction != Up || d.Desired != 9 {
		t.Fatalf("without data got %s %d: %s", d.Direction, d.Desired, d.Reason)
	}
}

func TestCombineDecisions(t *testing.T) {
	until := t0
	tests := []struct {
		name string
		ds   []Decision
		want int // index of the winner
	}{
		{"largest scale out", []Decision{{Direction: Up, Desired: 12}, {Direction: Up, Desired: 15}}, 1},
		{"hold beats scale in", []Decision{{Direction: Down, Desired: 5}, {Direction: Hold, Desired: 10}}, 1},
		{"cooldown beats scale in", []Decision{{Direction: Down, Desired: 5}, {Direction: None, Desired: 10, CooldownUntil: &until}}, 1},
		{"smallest scale in", []Decision{{Direction: Down, Desired: 5}, {Direction: Down, Desired: 8}}, 1},
		{"none", []Decision{{Direction: None, Desired: 10}, {Direction: None, Desired: 10}}, 0},
	}
	for _, tt := range tests {
		for i := range tt.ds {
			tt.ds[i].Current = 10
			tt.ds[i].Policy = string(rune('a' + i))
		}
		got, ok := CombineDecisions(tt.ds...)
		if !ok || got.Policy != tt.ds[tt.want].Policy {
			t.Errorf("%s: got %q, want %q", tt.name, got.Policy, tt.ds[tt.want].Policy)
		}
	}
	if _, ok := CombineDecisions(); ok {
		t.Error("empty combine reported ok")
	}
}
