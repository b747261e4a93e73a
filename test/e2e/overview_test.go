package e2e

// The console's overview in a browser, during a real scale-out:
// checkOverview runs inside TestNomadScaleIsProvisioned's lab, before the
// demo's count is raised.

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/spillwayhq/spillway/controlplane/controller"
	"github.com/spillwayhq/spillway/internal/lab"
)

// maxFirstLoadGzip is the budget of the overview's first load, in bytes
// gzipped.
const maxFirstLoadGzip = 300 << 10

// pageScaleOut is what the overview shows of one scale-out.
type pageScaleOut struct {
	Activity, Outcome, Text string
	// Phases are those recorded (the one under way is not).
	Phases []string
	// Open is the phase under way, if any.
	Open string
}

const readScaleOuts = `[...document.querySelectorAll('article.scaleout')].map(a => ({
	activity: a.dataset.activity, outcome: a.dataset.outcome, service: a.dataset.service, text: a.innerText,
	phases: [...a.querySelectorAll('li[data-phase]:not([data-open])')].map(l => l.dataset.phase),
	open: a.querySelector('li[data-open]')?.dataset.phase ?? '',
})).filter(s => s.service === %q)`

// checkOverview opens the overview as the viewer through a login link,
// checks its weight and how soon it shows the lab's data, calls raise
// (which raises the demo's count in Nomad past what bu-a's own host
// holds), and watches the new scale-out's deadline bar appear, pass its
// phases and end as done, with no reload; then axe-core, light and dark.
func checkOverview(t *testing.T, l *lab.Lab, raise func() error) {
	b := newBrowser(t)
	tab := b.tab("overview")
	b.do(tab, "open the overview through a login link", chromedp.Navigate(l.SpillwayURL+"/overview#token="+l.ViewerToken),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=overview] li.tier-row[data-pool]`)))
	// The time from the navigation to the overview showing the lab's data,
	// as the page marks it.
	ms := run(b, tab, "time to data", chromedp.Evaluate[float64](`performance.getEntriesByName('spillway:overview-data')[0]?.startTime ?? -1`))
	size, files := firstLoad(t, l, run(b, tab, "the files loaded", chromedp.Evaluate[[]string](
		`[location.origin + '/overview', ...performance.getEntriesByType('resource').map(e => e.name).filter(n => !new URL(n).pathname.startsWith('/v1/'))]`)))
	t.Logf("overview: first load %.1f KB gzipped (%s); the lab's data shown %.0f ms after the navigation", float64(size)/1024, strings.Join(files, ", "), ms)
	if size > maxFirstLoadGzip {
		t.Errorf("the first load is %d bytes gzipped, over %d", size, maxFirstLoadGzip)
	}
	// How soon is printed, not asserted: a 2-core machine running three
	// labs is no place for a timing goal (the goal: within 1s).
	if ms < 0 {
		t.Errorf("the page never marked when it showed the lab's data (performance mark spillway:overview-data)")
	}
	b.waitLive(tab)
	// Every tier of the summary has its bar, with its numbers in text.
	var ov struct {
		Tiers []struct {
			Pool  string `json:"pool"`
			Hosts struct {
				Total int `json:"total"`
				InUse int `json:"in_use"`
				Free  int `json:"free"`
			} `json:"hosts"`
		} `json:"tiers"`
	}
	if err := json.Unmarshal([]byte(request(t, l, http.MethodGet, "/v1/overview", nil)), &ov); err != nil {
		t.Fatal(err)
	}
	rows := run(b, tab, "the tiers", chromedp.Evaluate[map[string]string](
		`Object.fromEntries([...document.querySelectorAll('li.tier-row')].map(r => [r.dataset.pool, r.innerText.replace(/\s+/g, ' ')]))`))
	for _, tier := range ov.Tiers {
		unit := "hosts"
		if tier.Hosts.Total == 1 {
			unit = "host"
		}
		want := fmt.Sprintf("%d of %d %s in use, %d free", tier.Hosts.InUse, tier.Hosts.Total, unit, tier.Hosts.Free)
		if !strings.Contains(rows[tier.Pool], want) {
			t.Errorf("the overview's bar of %s says %q, want %q", tier.Pool, rows[tier.Pool], want)
		}
	}
	b.do(tab, "mark the page", chromedp.Evaluate[chromedp.Void](`window.spillwayNoReload = true`))

	if err := raise(); err != nil {
		t.Fatalf("raising the demo's count in Nomad: %v", err)
	}
	service := "default/" + lab.DemoJob + "/" + lab.DemoGroup
	var seen [][]string // the recorded phases, each time they changed
	var last pageScaleOut
	deadline := time.Now().Add(3 * time.Minute)
	shotInFlight := false
	for {
		sos := run(b, tab, "the scale-outs", chromedp.Evaluate[[]pageScaleOut](fmt.Sprintf(readScaleOuts, service)))
		if len(sos) > 0 {
			so := sos[0] // the newest
			if len(seen) == 0 || !slices.Equal(seen[len(seen)-1], so.Phases) {
				seen = append(seen, so.Phases)
				t.Logf("overview: %s is %s, phases %v, under way %q", so.Activity, so.Outcome, so.Phases, so.Open)
			}
			if so.Outcome == "in_progress" && !shotInFlight && slices.Contains(so.Phases, controller.PhaseCapacityRequested) {
				b.shot(tab, "overview-scale-out-in-flight")
				shotInFlight = true
			}
			last = so
			if so.Outcome != "in_progress" {
				break
			}
		}
		if time.Now().After(deadline) {
			b.shot(tab, "overview-scale-out-unfinished")
			t.Fatalf("the scale-out of %s did not end on the overview within 3 minutes; last seen %+v", service, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if !run(b, tab, "no reload", chromedp.Evaluate[bool](`window.spillwayNoReload === true`)) {
		t.Errorf("the page was reloaded")
	}
	b.shot(tab, "overview-scale-out-done")
	all := []string{controller.PhaseTrigger, controller.PhaseDecided, controller.PhaseCapacityRequested, controller.PhaseHostsRunning,
		controller.PhaseNodesReady, controller.PhasePlaced, controller.PhaseHealthy}
	if last.Outcome != controller.OutcomeDone || !slices.Equal(last.Phases, all) {
		t.Errorf("the scale-out ended on the overview as %q with phases %v, want done with %v", last.Outcome, last.Phases, all)
	}
	if !strings.Contains(last.Text, "Done") || !strings.Contains(last.Text, "(the longest phase)") {
		t.Errorf("the ended scale-out does not say, in words, that it is done and which phase took longest: %q", last.Text)
	}
	// It passed its phases live: the bar showed it in flight, at more than
	// one phase, before it ended.
	if len(seen) < 3 {
		t.Errorf("the overview showed the scale-out at %d steps (%v), want it to pass its phases live", len(seen), seen)
	}
	type apiScaleOut struct {
		Activity  string `json:"activity"`
		StartedBy string `json:"started_by"`
		Outcome   string `json:"outcome"`
		Critical  string `json:"critical_phase"`
	}
	var api struct {
		ScaleOuts []apiScaleOut `json:"scale_outs"`
	}
	if err := json.Unmarshal([]byte(request(t, l, http.MethodGet, "/v1/overview", nil)), &api); err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(api.ScaleOuts, func(s apiScaleOut) bool { return s.Activity == last.Activity }); i < 0 || api.ScaleOuts[i].StartedBy != "nomad" || api.ScaleOuts[i].Outcome != "done" || api.ScaleOuts[i].Critical == "" {
		t.Errorf("GET /v1/overview's scale-outs %+v, want %s started by nomad, done, with a critical phase", api.ScaleOuts, last.Activity)
	}

	for _, dark := range []bool{false, true} {
		name := map[bool]string{false: "light", true: "dark"}[dark]
		b.scheme(tab, dark)
		b.axe(tab, "overview, "+name)
		b.shot(tab, "overview-"+name)
	}
	b.scheme(tab, false)
}

// firstLoad fetches the files of the page's first load (the document and
// the assets it loaded, not the API's answers) and adds up their sizes
// gzipped at the best level, as a server or a proxy would send them.
func firstLoad(t *testing.T, l *lab.Lab, urls []string) (int, []string) {
	t.Helper()
	total := 0
	var files []string
	for _, u := range urls {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get(l.SpillwayURL + pu.Path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v", pu.Path, resp.StatusCode, err)
		}
		var z bytes.Buffer
		w, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
		_, _ = w.Write(body)
		_ = w.Close()
		total += z.Len()
		files = append(files, fmt.Sprintf("%s %.1f KB", pu.Path, float64(z.Len())/1024))
	}
	return total, files
}
