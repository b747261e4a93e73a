package alerts

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spillwayhq/spillway/policies"
)

// A notification as Alertmanager 0.25 sends it.
const sample = `{
  "receiver": "spillway",
  "status": "firing",
  "alerts": [
    {
      "status": "firing",
      "labels": {"alertname": "DemoHighLatency", "service": "demo", "severity": "page"},
      "annotations": {"summary": "p95 above 250ms"},
      "startsAt": "2026-11-22T08:00:00.000Z",
      "endsAt": "0001-01-01T00:00:00Z",
      "generatorURL": "http://127.0.0.1:9090/graph",
      "fingerprint": "a1b2c3d4e5f60718"
    }
  ],
  "groupLabels": {"alertname": "DemoHighLatency", "service": "demo"},
  "commonLabels": {"alertname": "DemoHighLatency", "service": "demo", "severity": "page"},
  "commonAnnotations": {"summary": "p95 above 250ms"},
  "externalURL": "http://127.0.0.1:9093",
  "version": "4",
  "groupKey": "{}:{alertname=\"DemoHighLatency\", service=\"demo\"}",
  "truncatedAlerts": 0
}`

func TestDecodeAlertmanagerPayload(t *testing.T) {
	n, err := Decode(strings.NewReader(sample), DefaultMaxPayloadBytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Alerts) != 1 || n.Alerts[0].Name() != "DemoHighLatency" || n.Alerts[0].Fingerprint != "a1b2c3d4e5f60718" ||
		!n.Alerts[0].StartsAt.Equal(time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)) || n.Receiver != "spillway" {
		t.Fatalf("decoded %+v", n)
	}
}

func TestDecodeRejectsBadPayloads(t *testing.T) {
	for _, c := range []struct{ name, body, want string }{
		{"empty", "", "the body is empty"},
		{"syntax", "{\n  \"version\": \"4\",\n  \"alerts\": [,]\n}", "line 3, column 14: malformed JSON"},
		{"truncated", `{"version": "4", "alerts": [`, "unexpected end of the body"},
		{"type", "{\"version\": 4}", `line 1, column 14: version: want string, got a JSON number`},
		{"time", `{"version":"4","status":"firing","alerts":[{"startsAt":"yesterday"}]}`, `bad time "yesterday"`},
		{"two documents", `{"version":"4"} {}`, "more than one JSON document"},
		{"fields", `{"version":"3","status":"pending","alerts":[{"status":"x","labels":{}}]}`,
			`version: want "4" (Alertmanager's webhook payload version), got "3"; status: want firing or resolved, got "pending"; ` +
				`alerts[0].status: want firing or resolved, got "x"; alerts[0].fingerprint: required: Spillway deduplicates by it; ` +
				`alerts[0].labels.alertname: required; alerts[0].startsAt: required`},
		{"no alerts", `{"version":"4","status":"firing","alerts":[]}`, "alerts: want at least one alert"},
		{"duplicate key", "{\"version\":\"4\",\n \"version\":\"4\"}", "line 2, column 2: version: duplicate key"},
		{"too large", `{"version":"4","x":"` + strings.Repeat("a", 1<<10) + `"}`, "larger than 1024 bytes"},
	} {
		_, err := Decode(strings.NewReader(c.body), 1<<10)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
	var tooBig *TooLargeError
	if _, err := Decode(strings.NewReader(strings.Repeat(" ", 2<<10)), 1<<10); !errors.As(err, &tooBig) || tooBig.Limit != 1<<10 {
		t.Errorf("a body over the limit: %v, want a *TooLargeError", err)
	}
}

func notification(status string, alerts ...Alert) *Notification {
	return &Notification{Version: "4", Status: status, Alerts: alerts}
}

func alert(fp, status string, startsAt time.Time) Alert {
	return Alert{Status: status, Fingerprint: fp, StartsAt: startsAt, Labels: map[string]string{"alertname": "A" + fp, "service": "demo"}}
}

func TestStoreDeduplicates(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	s := NewStore(time.Hour, 0)
	outcomes := func(cs []Change) []Outcome {
		var out []Outcome
		for _, c := range cs {
			out = append(out, c.Outcome)
		}
		return out
	}
	steps := []struct {
		at   time.Duration
		n    *Notification
		want []Outcome
	}{
		{0, notification("firing", alert("1", "firing", t0)), []Outcome{OutcomeNew}},
		// Alertmanager re-sends the group three times: no new action.
		{5 * time.Second, notification("firing", alert("1", "firing", t0)), []Outcome{OutcomeRepeat}},
		{10 * time.Second, notification("firing", alert("1", "firing", t0), alert("2", "firing", t0)), []Outcome{OutcomeRepeat, OutcomeNew}},
		{15 * time.Second, notification("firing", alert("1", "firing", t0)), []Outcome{OutcomeRepeat}},
		{20 * time.Second, notification("resolved", alert("1", "resolved", t0)), []Outcome{OutcomeResolved}},
		{21 * time.Second, notification("resolved", alert("1", "resolved", t0)), []Outcome{OutcomeStaleResolve}},
		// It fires again later: a new firing, a new action.
		{time.Minute, notification("firing", alert("1", "firing", t0.Add(time.Minute))), []Outcome{OutcomeNew}},
	}
	for i, st := range steps {
		cs, err := s.Apply(st.n, t0.Add(st.at), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := outcomes(cs); !reflect.DeepEqual(got, st.want) {
			t.Fatalf("step %d: outcomes %v, want %v", i, got, st.want)
		}
	}
	firing := s.Firing(t0.Add(time.Minute), "A1", "A2", "A3")
	want := []policies.Alert{{Name: "A1", Labels: map[string]string{"alertname": "A1", "service": "demo"}, Fingerprint: "1"},
		{Name: "A2", Labels: map[string]string{"alertname": "A2", "service": "demo"}, Fingerprint: "2"}}
	if !reflect.DeepEqual(firing, want) {
		t.Fatalf("firing %v, want %v", firing, want)
	}
	// Alert 2 was last sent at 10s; past the TTL without a re-send it ends.
	if got := s.Firing(t0.Add(10*time.Second+time.Hour+time.Second), "A1", "A2"); len(got) != 1 || got[0].Name != "A1" {
		t.Fatalf("after the TTL: %v", got)
	}
	if got := s.Firing(t0.Add(time.Minute), "A2"); len(got) != 1 || got[0].Fingerprint != "2" {
		t.Fatalf("firing named A2: %v", got)
	}
	if s.Len(t0.Add(10*time.Second+time.Hour+time.Second)) != 1 {
		t.Fatalf("Len after the TTL: %d, want 1", s.Len(t0.Add(10*time.Second+time.Hour+time.Second)))
	}
}

func TestStoreStoresOnlyMatchedAlertsUpToItsCap(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	s := NewStore(time.Hour, 2)
	noise := Alert{Status: "firing", Fingerprint: "n", StartsAt: t0, Labels: map[string]string{"alertname": "Anoise"}}
	cs, err := applyMatched(s, notification("firing", alert("1", "firing", t0), noise), t0)
	if err != nil || cs[0].Outcome != OutcomeNew || cs[1].Outcome != OutcomeUnmatched {
		t.Fatalf("first: %v %v", cs, err)
	}
	if s.Len(t0) != 1 || len(s.Firing(t0, "Anoise")) != 0 {
		t.Fatalf("an unmatched alert was stored: %d firing", s.Len(t0))
	}
	// Two more would take it to 3 of 2: refused whole, nothing applied.
	_, err = applyMatched(s, notification("firing", alert("2", "firing", t0), alert("3", "firing", t0)), t0)
	var full *FullError
	if !errors.As(err, &full) || full.Max != 2 || full.Firing != 1 || full.Adding != 2 {
		t.Fatalf("over the cap: %v, want a *FullError", err)
	}
	if s.Len(t0) != 1 {
		t.Fatalf("a refused notification changed the set: %d firing", s.Len(t0))
	}
	// A resolve makes room in the same notification; repeats add nothing.
	cs, err = applyMatched(s, notification("firing", alert("1", "resolved", t0), alert("2", "firing", t0), alert("3", "firing", t0)), t0)
	if err != nil || s.Len(t0) != 2 {
		t.Fatalf("resolve and add: %v %v, %d firing", cs, err, s.Len(t0))
	}
	if _, err := applyMatched(s, notification("firing", alert("2", "firing", t0), alert("3", "firing", t0)), t0); err != nil {
		t.Fatalf("repeats at the cap: %v", err)
	}
}

func TestPayloadErrorIsTyped(t *testing.T) {
	_, err := Decode(strings.NewReader(`{"version":"4","status":"firing","alerts":[{}]}`), DefaultMaxPayloadBytes)
	var pe PayloadErrors
	if !errors.As(err, &pe) || len(pe) != 4 || pe[0].Field != "alerts[0].status" {
		t.Fatalf("got %#v", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(sample))
	f.Add([]byte(`{"version":"4","status":"resolved","alerts":[{"status":"resolved","fingerprint":"x","labels":{"alertname":"a"},"startsAt":"2026-01-01T00:00:00Z"}]}`))
	f.Add([]byte(`[1,2,3]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := Decode(strings.NewReader(string(data)), DefaultMaxPayloadBytes)
		if err != nil {
			if n != nil {
				t.Fatal("a notification together with an error")
			}
			return
		}
		// Whatever decodes is safe for the store.
		s := NewStore(time.Minute, 0)
		if _, err := s.Apply(n, time.Now(), nil); err != nil {
			t.Fatal(err)
		}
		for _, a := range n.Alerts {
			if a.Fingerprint == "" || a.Name() == "" {
				t.Fatalf("accepted an alert without fingerprint or name: %+v", a)
			}
		}
	})
}

// A group that names one alert twice, or resolves and re-fires it, is
// counted against the cap by what the set holds afterwards.
func TestStoreCountsRepeatsWithinANotification(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	noise := func(fp string) Alert {
		return Alert{Status: "firing", Fingerprint: fp, StartsAt: t0, Labels: map[string]string{"alertname": "Anoise"}}
	}
	s := NewStore(time.Hour, 5)
	var twice []Alert
	for i := range 20 {
		twice = append(twice, noise(fmt.Sprint("n", i)), noise(fmt.Sprint("n", i)))
	}
	cs, err := applyMatched(s, notification("firing", twice...), t0)
	if err != nil || s.Len(t0) != 0 {
		t.Fatalf("unmatched alerts named twice: %v, %d stored, want none", err, s.Len(t0))
	}
	for _, c := range cs {
		if c.Outcome != OutcomeUnmatched {
			t.Fatalf("a second copy of an unmatched alert is %s, want unmatched", c.Outcome)
		}
	}
	// 4 stored; 4 resolve-and-re-fire pairs and 4 new ones would hold 8.
	s = NewStore(time.Hour, 4)
	var first, pairs []Alert
	for i := range 4 {
		first = append(first, alert(fmt.Sprint(i), "firing", t0))
		pairs = append(pairs, alert(fmt.Sprint(i), "resolved", t0), alert(fmt.Sprint(i), "firing", t0.Add(time.Minute)), alert(fmt.Sprint("new", i), "firing", t0))
	}
	if _, err := applyMatched(s, notification("firing", first...), t0); err != nil {
		t.Fatal(err)
	}
	var full *FullError
	if _, err := applyMatched(s, notification("firing", pairs...), t0); !errors.As(err, &full) || full.Adding != 4 {
		t.Fatalf("re-fires and new alerts past the cap: %v, want a *FullError adding 4", err)
	}
	if s.Len(t0) != 4 {
		t.Fatalf("%d firing after a refused notification, want 4", s.Len(t0))
	}
}

// applyMatched applies n as the receiver does when every alert but those
// named Anoise matches a policy's rule.
func applyMatched(s *Store, n *Notification, now time.Time) ([]Change, error) {
	matched := make([]bool, len(n.Alerts))
	for i, a := range n.Alerts {
		matched[i] = a.Name() != "Anoise"
	}
	return s.Apply(n, now, matched)
}
