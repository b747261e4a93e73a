package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/controlplane/metrics"
	"github.com/spillwayhq/spillway/internal/apiclient"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/cloudsim"
)

// Summary is what the lab's live summary shows a person at a glance: the
// demo's traffic and instances, the hosts serving it by tier, the latest
// scaling against its deadline, and the journal's last event. A source
// that cannot be read leaves its part empty and says so in Errors.
type Summary struct {
	At time.Time
	// RequestRate is the demo's served requests per second (nil: unknown).
	RequestRate *float64
	// Wanted is the demo job's count; Running and Healthy its allocations.
	Wanted, Running, Healthy int
	// Own and Shared are the internal hosts; Borrowed the shared hosts lent
	// now; Cloud the rented hosts running, by cloud.
	Own, Shared, Borrowed int
	Cloud                 map[string]int
	// Activity is the latest scaling of the demo, when there is one.
	Activity *SummaryActivity
	// LastEvent is the journal's newest event, "kind: message".
	LastEvent string
	// RanOut is when each cloud pool last refused a claim for want of
	// capacity, in the past 10 minutes.
	RanOut map[string]time.Time
	Errors []string
}

// SummaryActivity is the latest scaling: where it is, and its time
// against the 5-minute deadline.
type SummaryActivity struct {
	ID, Status string
	From, To   int
	Elapsed    time.Duration
	Done       bool
}

// activityDeadline is the scale-out deadline the summary measures against.
const activityDeadline = 5 * time.Minute

// Summary reads the summary now. It never fails: what it cannot read is
// named in Errors.
func (l *Lab) Summary(ctx context.Context) Summary {
	s := Summary{At: time.Now(), Cloud: map[string]int{}}
	for _, bu := range l.opts.BusinessUnits {
		s.Own += bu.Hosts
	}
	s.Shared = l.opts.SharedHosts
	bad := func(what string, err error) { s.Errors = append(s.Errors, what+": "+err.Error()) }

	if prom, err := l.summaryPrometheus(); err != nil {
		bad("prometheus", err)
	} else if samples, err := prom.Instant(ctx, `sum(rate(spillway_demo_requests_total[30s]))`, s.At); err != nil {
		bad("prometheus", err)
	} else {
		rate := 0.0 // no series: no traffic yet
		if len(samples) > 0 {
			rate = samples[0].Value
		}
		s.RequestRate = &rate
	}
	if job, _, err := l.nomad.Jobs().Info(DemoJob, (&nomad.QueryOptions{}).WithContext(ctx)); err != nil {
		bad("nomad", err)
	} else if len(job.TaskGroups) > 0 && job.TaskGroups[0].Count != nil {
		s.Wanted = *job.TaskGroups[0].Count
	}
	if allocs, _, err := l.nomad.Jobs().Allocations(DemoJob, false, (&nomad.QueryOptions{}).WithContext(ctx)); err == nil {
		for _, a := range allocs {
			if a.ClientStatus != nomad.AllocClientStatusRunning {
				continue
			}
			s.Running++
			if a.DeploymentStatus != nil && a.DeploymentStatus.Healthy != nil && *a.DeploymentStatus.Healthy {
				s.Healthy++
			}
		}
	}
	if sim := l.Cloud(); sim != nil {
		for _, c := range []string{cloudsim.CloudAWS, cloudsim.CloudAlicloud} {
			if _, ok := sim.Credentials(c); ok {
				s.Cloud[c] += 0 // configured: shown, even with none running
			}
			for _, in := range sim.Instances(c) {
				if strings.EqualFold(in.State, "running") { // EC2 "running", ECS "Running"
					s.Cloud[c]++
				}
			}
		}
	}
	if l.SpillwayURL == "" {
		return s
	}
	api := apiclient.New(l.SpillwayURL, l.APIToken)
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var loans struct {
		Loans []struct{ Tier string } `json:"loans"`
	}
	if err := api.Do(ctx, http.MethodGet, "/v1/pools/loans", nil, nil, &loans); err != nil {
		bad("control plane", err)
	} else {
		// The ledger holds rented hosts too; borrowed are the shared ones.
		for _, loan := range loans.Loans {
			if loan.Tier == string(pools.TierShared) {
				s.Borrowed++
			}
		}
	}
	var st struct {
		Activities []struct {
			ID, Status, Service string
			From, To            int
			Started, Updated    time.Time
		} `json:"recent_activities"`
	}
	if err := api.Do(ctx, http.MethodGet, "/v1/status", nil, nil, &st); err != nil {
		bad("control plane", err)
	} else {
		sort.Slice(st.Activities, func(i, j int) bool { return st.Activities[i].Started.Before(st.Activities[j].Started) })
		if n := len(st.Activities); n > 0 {
			a := st.Activities[n-1]
			// An activity ends with activity.done (or failed). One that
			// needed no new host ends once scaled: a scale-in, or a
			// scale-out whose instances are all healthy.
			done := a.Status == "activity.done" || a.Status == "failed" ||
				(a.Status == "scaled" && (a.To < a.From || s.Healthy >= a.To))
			end := s.At
			if done {
				end = a.Updated
			}
			s.Activity = &SummaryActivity{ID: a.ID, Status: a.Status, From: a.From, To: a.To, Elapsed: end.Sub(a.Started), Done: done}
		}
	}
	var evs struct {
		Events []struct {
			Kind, Message string
			Time          time.Time
			Data          json.RawMessage
		} `json:"events"`
	}
	q := url.Values{"limit": {"1000"}, "since": {s.At.Add(-10 * time.Minute).UTC().Format(time.RFC3339)}}
	if err := api.Do(ctx, http.MethodGet, "/v1/events", q, nil, &evs); err == nil && len(evs.Events) > 0 {
		last := evs.Events[len(evs.Events)-1]
		s.LastEvent = last.Kind + ": " + last.Message
		for _, ev := range evs.Events {
			// A claim refused (capacity.failed) or served in part
			// (capacity.claimed) carries the provider's reason.
			var d struct {
				Pool, Reason string
			}
			if json.Unmarshal(ev.Data, &d) != nil { // another kind's data
				continue
			}
			if d.Reason == providers.ErrorKindInsufficientCapacity && d.Pool != "" {
				if s.RanOut == nil {
					s.RanOut = map[string]time.Time{}
				}
				s.RanOut[d.Pool] = ev.Time
			}
		}
	}
	return s
}

// Line is the summary as one plain line, for logs and pipes.
func (s Summary) Line() string {
	var b strings.Builder
	b.WriteString(s.At.Format("15:04:05"))
	b.WriteString(" " + s.rate())
	fmt.Fprintf(&b, " | demo %d wanted, %d healthy", s.Wanted, s.Healthy)
	b.WriteString(" | hosts " + s.hosts())
	if a := s.activity(); a != "" {
		b.WriteString(" | " + a)
	}
	if r := s.ranOut(); r != "" {
		b.WriteString(" | " + r)
	}
	if s.LastEvent != "" {
		b.WriteString(" | last: " + trim(s.LastEvent, 100))
	}
	if len(s.Errors) > 0 {
		b.WriteString(" | unknown: " + trim(strings.Join(s.Errors, "; "), 100))
	}
	return b.String()
}

// Block is the summary as a few lines, for a terminal that redraws it.
func (s Summary) Block() []string {
	out := []string{
		fmt.Sprintf("traffic   %s", s.rate()),
		fmt.Sprintf("demo      %d wanted, %d running, %d healthy", s.Wanted, s.Running, s.Healthy),
		fmt.Sprintf("hosts     %s", s.hosts()),
	}
	if r := s.ranOut(); r != "" {
		out = append(out, "clouds    "+r)
	}
	if a := s.activity(); a != "" {
		out = append(out, "scaling   "+a)
	} else {
		out = append(out, "scaling   none yet")
	}
	if s.LastEvent != "" {
		out = append(out, "journal   "+trim(s.LastEvent, 110))
	}
	if len(s.Errors) > 0 {
		out = append(out, "unknown   "+trim(strings.Join(s.Errors, "; "), 110))
	}
	return out
}

func (s Summary) rate() string {
	if s.RequestRate == nil {
		return "? req/s"
	}
	return fmt.Sprintf("%.0f req/s", *s.RequestRate)
}

func (s Summary) hosts() string {
	parts := []string{fmt.Sprintf("own %d", s.Own), fmt.Sprintf("borrowed %d of %d shared", s.Borrowed, s.Shared)}
	clouds := make([]string, 0, len(s.Cloud))
	for c := range s.Cloud {
		clouds = append(clouds, c)
	}
	sort.Strings(clouds)
	for _, c := range clouds {
		parts = append(parts, fmt.Sprintf("%s %d", c, s.Cloud[c]))
	}
	return strings.Join(parts, ", ")
}

// ranOut names the cloud pools that ran out of capacity lately, and when.
func (s Summary) ranOut() string {
	if len(s.RanOut) == 0 {
		return ""
	}
	var parts []string
	for pool, at := range s.RanOut {
		parts = append(parts, pool+" at "+at.Local().Format("15:04:05"))
	}
	sort.Strings(parts)
	return "out of capacity: " + strings.Join(parts, ", ")
}

// activity is the latest scaling: its counts, where it is, and its time
// against the deadline (a scale-out past it says so).
func (s Summary) activity() string {
	a := s.Activity
	if a == nil {
		return ""
	}
	state := "active"
	if a.Done {
		state = "finished"
	}
	line := fmt.Sprintf("%s %d→%d %s (%s)", a.ID, a.From, a.To, state, a.Status)
	if !a.Done || a.Elapsed > 0 {
		// A scaling that needed no host journals no end of its own: no time.
		line += fmt.Sprintf(", %s of %s", a.Elapsed.Round(time.Second), activityDeadline)
	}
	if a.To > a.From && a.Elapsed > activityDeadline {
		line += " PAST THE DEADLINE"
	}
	return line
}

func trim(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// summaryPrometheus is the summary's client of the lab's Prometheus, made
// once.
func (l *Lab) summaryPrometheus() (*metrics.Prometheus, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.prom == nil {
		p, err := metrics.NewPrometheus(metrics.PrometheusOptions{URL: l.PrometheusURL, Timeout: 3 * time.Second})
		if err != nil {
			return nil, err
		}
		l.prom = p
	}
	return l.prom, nil
}
