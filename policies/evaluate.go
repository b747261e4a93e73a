package policies

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Sample is one metric value with the time it was measured.
type Sample struct {
	Labels map[string]string `json:"labels,omitempty"`
	Value  float64           `json:"value"`
	Time   time.Time         `json:"time"`
}

// Reading is the result of running one check's query: the samples, or the
// error that prevented getting them (a failed query, or data the metric
// source already found unusable). The error text is shown as the reason.
type Reading struct {
	Samples []Sample
	Err     error
}

// Alert is a firing Alertmanager alert.
type Alert struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	// Fingerprint is Alertmanager's identity of the alert, when known.
	Fingerprint string `json:"fingerprint,omitempty"`
}

// maxVoteFingerprints bounds the fingerprints one alert vote names.
const maxVoteFingerprints = 10

// Input is the state a policy is evaluated against.
type Input struct {
	// Now is the evaluation time.
	Now time.Time
	// Current is the task group's count.
	Current int
	// LastScale is when the group was last scaled by Spillway; zero if
	// never. Cooldowns count from it.
	LastScale time.Time
	// LastScaleManual says the last scaling was an operator's: its cooldown
	// holds even when the count is outside the bounds (a forced scaling),
	// which an evaluation otherwise corrects at once.
	LastScaleManual bool
	// Readings holds each metric check's query result, by check name. A
	// check with no entry counts as missing data.
	Readings map[string]Reading
	// Alerts are the alerts firing now.
	Alerts []Alert
}

// CheckResult is what one check saw and voted.
type CheckResult struct {
	Check string `json:"check"`
	Query string `json:"query,omitempty"`
	// Value is the metric value used, when the data was usable.
	Value *float64 `json:"value,omitempty"`
	// SampleTime is when the value was measured.
	SampleTime *time.Time `json:"sample_time,omitempty"`
	// DataError says why the data was unusable (missing, stale, NaN,
	// several series, query failed).
	DataError string `json:"data_error,omitempty"`
	Vote      Vote   `json:"vote"`
}

// Decision is the outcome of evaluating one policy.
type Decision struct {
	Policy    string    `json:"policy"`
	Target    Target    `json:"target"`
	Current   int       `json:"current"`
	Desired   int       `json:"desired"`
	Direction Direction `json:"direction"`
	// Winner is the source of the vote that won ("" when none did).
	Winner string `json:"winner,omitempty"`
	// Reason explains the decision in one sentence.
	Reason string        `json:"reason"`
	Checks []CheckResult `json:"checks"`
	// Alerts are the votes of the alert rules that matched.
	Alerts []Vote `json:"alerts,omitempty"`
	// CooldownUntil is set when a cooldown blocked a change.
	CooldownUntil *time.Time `json:"cooldown_until,omitempty"`
	// Deadline is when a scale-out decided now must be done.
	Deadline time.Time `json:"deadline"`

	// winner is the vote that won (two rules of a policy may share a
	// Source).
	winner Vote
}

// WinningAlert is the alert vote that decided, when one did: its
// fingerprints name the alerts that caused the decision.
func (d Decision) WinningAlert() (Vote, bool) {
	if !strings.HasPrefix(d.Winner, "alert:") || d.winner.Source != d.Winner {
		return Vote{}, false
	}
	return d.winner, true
}

// Delta is the change in count the decision makes.
func (d Decision) Delta() int { return d.Desired - d.Current }

// Changes reports whether the decision changes the count.
func (d Decision) Changes() bool { return d.Desired != d.Current }

// Data problems a check can have; the evaluator wraps them with details.
// on_check_error applies to each of them but ErrNotYet.
var (
	// ErrUnreachable: the metric source did not answer (refused, timed
	// out, failed with a 5xx).
	ErrUnreachable = errors.New("the metric source is unreachable")
	// ErrQueryFailed: the source answered, and refused or failed the query
	// itself (a syntax error, an execution error).
	ErrQueryFailed = errors.New("the query failed")
	// ErrNotYet: the query returned no series because the source has not
	// been up for the query's range (a Prometheus that just started has no
	// 5m rate yet). It is not a failure: the check holds, and
	// on_check_error does not apply.
	ErrNotYet = errors.New("no data yet")
	// ErrNoData: the query returned no series from a source up for longer
	// than its range: the series does not exist.
	ErrNoData     = errors.New("no data")
	ErrStale      = errors.New("stale data")
	ErrNotNumber  = errors.New("value is not a number")
	ErrManySeries = errors.New("query returned more than one series")
)

// Value checks a reading the way every metric check needs it: exactly one
// series, a finite value, no older than staleAfter at now. It returns the
// sample or an error wrapping ErrNoData, ErrStale, ErrNotNumber or
// ErrManySeries.
func (r Reading) Value(now time.Time, staleAfter time.Duration) (Sample, error) {
	if r.Err != nil {
		return Sample{}, r.Err
	}
	switch len(r.Samples) {
	case 0:
		return Sample{}, fmt.Errorf("%w: the query returned no series", ErrNoData)
	case 1:
	default:
		var ls []string
		for i, s := range r.Samples {
			if i == 3 {
				ls = append(ls, "…")
				break
			}
			ls = append(ls, formatLabels(s.Labels))
		}
		return Sample{}, fmt.Errorf("%w: %d series (%s); aggregate it, e.g. sum(...) or max(...)", ErrManySeries, len(r.Samples), strings.Join(ls, ", "))
	}
	s := r.Samples[0]
	if unusable(s.Value) {
		return Sample{}, fmt.Errorf("%w: %s", ErrNotNumber, fmtValue(s.Value))
	}
	if s.Time.IsZero() {
		return Sample{}, fmt.Errorf("%w: the sample has no timestamp", ErrStale)
	}
	if age := now.Sub(s.Time); staleAfter > 0 && age > staleAfter {
		return Sample{}, fmt.Errorf("%w: newest sample is %s old (stale_after %s)", ErrStale, age.Round(time.Second), staleAfter)
	}
	return s, nil
}

func formatLabels(ls map[string]string) string {
	keys := make([]string, 0, len(ls))
	for k := range ls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%q", k, ls[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// Evaluate runs every check and matching alert rule of p against in and
// combines their votes: the safest wins (see [SafestWins]), the result is
// clamped to min and max, and cooldowns are applied. It is pure.
func Evaluate(p *Policy, in Input) Decision {
	d := Decision{
		Policy:   p.Name,
		Target:   p.Target,
		Current:  in.Current,
		Deadline: in.Now.Add(p.Deadline),
	}
	sin := StrategyInput{Current: in.Current, Min: p.Min, Max: p.Max, Now: in.Now}
	var votes []Vote
	for i := range p.Checks {
		c := &p.Checks[i]
		cr := CheckResult{Check: c.Name, Query: c.Query}
		s := c.Strategy()
		if s == nil {
			continue
		}
		if c.NeedsMetric() {
			sample, err := in.Readings[c.Name].Value(in.Now, p.StaleAfter)
			if _, ok := in.Readings[c.Name]; !ok {
				err = fmt.Errorf("%w: the check was not queried", ErrNoData)
			}
			if err != nil {
				cr.DataError = err.Error()
				onErr := p.OnCheckError
				if c.OnError != nil {
					onErr = *c.OnError
				}
				cr.Vote = onCheckError(onErr, in.Current, err)
			} else {
				v, t := sample.Value, sample.Time
				cr.SampleTime = &t
				cr.Value = &v
				sin.Value = sample.Value
				cr.Vote = s.Vote(sin)
			}
		} else {
			cr.Vote = s.Vote(sin)
		}
		cr.Vote.Source = c.Name
		votes = append(votes, cr.Vote)
		d.Checks = append(d.Checks, cr)
	}
	for i := range p.Alerts {
		r := &p.Alerts[i]
		var v *Vote
		for _, a := range in.Alerts {
			if !r.Matches(a.Name, a.Labels) {
				continue
			}
			if v == nil {
				want := r.Action.Apply(in.Current, p.Min, p.Max)
				v = &Vote{Source: "alert:" + r.Alert, Strategy: "alert", Direction: None, Count: in.Current,
					Reason: fmt.Sprintf("alert %s is firing: %s", r.Alert, r.Action)}
				if want > in.Current {
					v.Direction, v.Count = Up, want
				}
			}
			if a.Fingerprint != "" && len(v.Fingerprints) < maxVoteFingerprints {
				v.Fingerprints = append(v.Fingerprints, a.Fingerprint)
			}
		}
		if v != nil {
			d.Alerts = append(d.Alerts, *v)
			votes = append(votes, *v)
		}
	}

	win, reason := SafestWins(votes, in.Current)
	d.Winner, d.winner = win.Source, win
	d.Direction, d.Desired, d.Reason = win.Direction, win.Count, reason

	// Bounds.
	switch {
	case d.Desired > p.Max:
		d.Reason += fmt.Sprintf("; limited to max %d", p.Max)
		d.Desired = p.Max
	case d.Desired < p.Min:
		d.Reason += fmt.Sprintf("; raised to min %d", p.Min)
		d.Desired = p.Min
	}
	if d.Direction == Hold && d.Desired < in.Current {
		// Above max while data is missing: still never scale in.
		d.Desired = in.Current
		d.Reason += fmt.Sprintf("; above max %d but not scaling in without data", p.Max)
	}
	switch {
	case d.Desired > in.Current:
		d.Direction = Up
	case d.Desired < in.Current:
		d.Direction = Down
	case d.Direction == Up || d.Direction == Down:
		d.Direction = None
	}

	// Cooldowns, except when correcting a count outside the bounds that
	// no operator set.
	outOfBounds := !in.LastScaleManual && (in.Current < p.Min || in.Current > p.Max)
	if !in.LastScale.IsZero() && !outOfBounds && d.Changes() {
		cd, what := p.Cooldown.ScaleUp, "scale-up"
		if d.Direction == Down {
			cd, what = p.Cooldown.ScaleDown, "scale-down"
		}
		if until := in.LastScale.Add(cd); in.Now.Before(until) {
			d.Reason = fmt.Sprintf("wanted %d → %d (%s), but the %s cooldown lasts until %s", in.Current, d.Desired, d.Reason, what, until.UTC().Format(time.RFC3339))
			d.CooldownUntil = &until
			d.Desired, d.Direction = in.Current, None
		}
	}
	return d
}

// onCheckError is the vote of a check whose data is unusable. It never
// scales in.
func onCheckError(o OnCheckError, current int, err error) Vote {
	v := Vote{Strategy: "on_check_error", Direction: Hold, Count: current}
	if errors.Is(err, ErrNotYet) {
		v.Reason = fmt.Sprintf("%s; holding until there is (on_check_error does not apply)", err)
		return v
	}
	if o.Action == OnErrorFixed && o.Count > current {
		v.Direction, v.Count = Up, o.Count
		v.Reason = fmt.Sprintf("%s; on_check_error: fixed count %d", err, o.Count)
		return v
	}
	v.Reason = fmt.Sprintf("%s; never scale in on missing data", err)
	return v
}

// SafestWins combines votes into one:
//  1. any Up: the Up vote asking for the most instances wins;
//  2. otherwise any Hold: hold (some data is missing, so never scale in);
//  3. otherwise any Down: the Down vote asking for the most instances (the
//     smallest scale-in) wins;
//  4. otherwise None: every check agrees nothing should change.
//
// Ties go to the earlier vote. It returns the winning vote and a reason
// naming it.
func SafestWins(votes []Vote, current int) (Vote, string) {
	var up, hold, down *Vote
	for i := range votes {
		v := &votes[i]
		switch v.Direction {
		case Up:
			if up == nil || v.Count > up.Count {
				up = v
			}
		case Hold:
			if hold == nil {
				hold = v
			}
		case Down:
			if down == nil || v.Count > down.Count {
				down = v
			}
		}
	}
	switch {
	case up != nil:
		return *up, fmt.Sprintf("%s wants %d: %s", up.Source, up.Count, up.Reason)
	case hold != nil:
		return *hold, fmt.Sprintf("holding at %d because %s has no usable data: %s", current, hold.Source, hold.Reason)
	case down != nil:
		return *down, fmt.Sprintf("%s wants %d: %s", down.Source, down.Count, down.Reason)
	}
	if len(votes) == 0 {
		return Vote{Direction: None, Count: current}, "no checks voted"
	}
	return Vote{Direction: None, Count: current}, "every check agrees on no change"
}

// CombineDecisions merges the decisions of several policies that scale the
// same task group, with the safest-wins rule: the largest scale-out wins;
// otherwise any hold or cooldown keeps the count; otherwise the smallest
// scale-in wins; otherwise nothing changes. It returns the winning decision
// (the first when several tie) and false when decisions is empty.
func CombineDecisions(decisions ...Decision) (Decision, bool) {
	if len(decisions) == 0 {
		return Decision{}, false
	}
	votes := make([]Vote, len(decisions))
	for i, d := range decisions {
		dir := d.Direction
		if d.CooldownUntil != nil && dir == None {
			dir = Hold // a policy in cooldown must not be overridden by another's scale-in
		}
		votes[i] = Vote{Source: strconv.Itoa(i), Direction: dir, Count: d.Desired}
	}
	win, _ := SafestWins(votes, decisions[0].Current)
	if win.Source == "" {
		return decisions[0], true
	}
	i, _ := strconv.Atoi(win.Source)
	return decisions[i], true
}
