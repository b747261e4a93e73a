package e2e

// The console's activity pages in a browser, inside
// TestBurstAcrossSharedAWSAndAlibaba's lab after its burst: the activity
// that fell back from AWS to Alibaba, opened from the overview; its
// journal; a filtered activities list shared by its address.

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/spillwayhq/spillway/controlplane/controller"
	"github.com/spillwayhq/spillway/controlplane/journal"
	"github.com/spillwayhq/spillway/internal/lab"
)

// waterfallItem is one line of the page's source waterfall.
type waterfallItem struct {
	Pool, Tier, Result, Reason, Text string
}

const readWaterfall = `[...document.querySelectorAll('[data-testid=waterfall] li')].map(li => ({
	pool: li.dataset.pool ?? '', tier: li.dataset.tier ?? '', result: li.dataset.result ?? '', reason: li.dataset.reason ?? '', text: li.innerText}))`

// checkActivityConsole: the activity that reached Alibaba, opened from the
// overview, shows AWS skipped for insufficient capacity and Alibaba used
// in its waterfall, and one Gantt row per host it borrowed or rented; its
// journal link lists exactly its events; a filtered activities address
// opened in another tab lists what the filter gave in the first, and what
// the API gives; axe-core finds no serious or critical violation on the
// three pages, light and dark.
func checkActivityConsole(t *testing.T, l *lab.Lab, act string, evs []journal.Event) {
	b := newBrowser(t)
	tab := b.tab("admin")
	row := fmt.Sprintf(`article.scaleout[data-activity=%q]`, act)
	b.do(tab, "the overview shows the activity", chromedp.Navigate(l.SpillwayURL+"/#token="+l.APIToken),
		chromedp.WaitVisible(chromedp.CSS(row+` [data-testid=activity-link]`)))
	b.do(tab, "open the activity from the overview", chromedp.Click(chromedp.CSS(row+` [data-testid=activity-link]`)),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`[data-testid=activity][data-activity=%q] [data-testid=waterfall]`, act))))
	if loc := run(b, tab, "the address", chromedp.Evaluate[string](`location.pathname`)); loc != "/activities/"+url.PathEscape(act) {
		t.Errorf("the activity's address is %s", loc)
	}

	// The waterfall: AWS skipped for insufficient capacity (or short of
	// it), Alibaba used, in that order.
	items := run(b, tab, "the waterfall", chromedp.Evaluate[[]waterfallItem](readWaterfall))
	awsAt := slices.IndexFunc(items, func(w waterfallItem) bool {
		return w.Pool == lab.AWSCloudPool && w.Reason == "insufficient_capacity" && strings.Contains(w.Text, "insufficient capacity") &&
			(w.Result == "skipped" || strings.Contains(w.Text, "the rest skipped"))
	})
	aliAt := slices.IndexFunc(items, func(w waterfallItem) bool {
		return w.Pool == lab.AlicloudCloudPool && w.Result == "used" && strings.Contains(w.Text, "Used:")
	})
	if awsAt < 0 || aliAt < 0 || awsAt > aliAt {
		t.Errorf("the waterfall does not show AWS skipped for insufficient capacity, then Alibaba used: %+v", items)
	}
	t.Logf("the waterfall of %s: %+v", act, items)

	// The Gantt view: one row per host the journal says it got.
	var hosts []string
	for _, ev := range evs {
		if ev.Activity == act && ev.Kind == controller.KindClaimed {
			var d struct {
				Hosts []string `json:"hosts"`
			}
			_ = json.Unmarshal(ev.Data, &d)
			for _, h := range d.Hosts {
				hosts = append(hosts, strings.Split(h, " (")[0])
			}
		}
	}
	rows := run(b, tab, "the Gantt's host rows", chromedp.Evaluate[int](`document.querySelectorAll('[data-testid=gantt] .gantt-row.host').length`))
	tableHosts := run(b, tab, "the host table", chromedp.Evaluate[[]string](`[...document.querySelectorAll('[data-testid=host-table] tbody tr')].map(r => r.dataset.host)`))
	slices.Sort(hosts)
	slices.Sort(tableHosts)
	if len(hosts) == 0 || rows != len(hosts) || !slices.Equal(tableHosts, hosts) {
		t.Errorf("the Gantt has %d host rows and its table %v; the journal's claims of %s name %v", rows, tableHosts, act, hosts)
	}
	for _, dark := range []bool{false, true} {
		name := map[bool]string{false: "light", true: "dark"}[dark]
		b.scheme(tab, dark)
		b.axe(tab, "activity, "+name)
		b.shot(tab, "activity-"+name)
	}
	b.scheme(tab, false)

	// Its journal link finds its events, all of them.
	var own []int64
	for _, ev := range evs {
		if ev.Activity == act {
			own = append(own, ev.Seq)
		}
	}
	b.do(tab, "the activity's journal", chromedp.Click(chromedp.CSS(`[data-testid=journal-link]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=event-list] tbody tr`)))
	deadline := time.Now().Add(10 * time.Second)
	for {
		seqs := run(b, tab, "the journal's rows", chromedp.Evaluate[[]int64](`[...document.querySelectorAll('[data-testid=event-list] tbody tr')].map(r => Number(r.dataset.seq))`))
		slices.Sort(seqs)
		if len(own) > 100 || slices.Equal(seqs, own) { // a page holds 100
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the journal page of %s lists events %v, the journal has %v", act, seqs, own)
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	for _, dark := range []bool{false, true} {
		name := map[bool]string{false: "light", true: "dark"}[dark]
		b.scheme(tab, dark)
		b.axe(tab, "journal, "+name)
		b.shot(tab, "journal-"+name)
	}
	b.scheme(tab, false)

	// A filter set on the activities page, its address opened in another
	// tab: the same list, the one the API gives.
	listed := `[...document.querySelectorAll('[data-testid=activity-list] tbody tr')].map(r => r.dataset.activity)`
	b.do(tab, "filter the activities", chromedp.Click(chromedp.CSS(`nav a[href="/activities"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=activity-list]`)),
		chromedp.SetValue(chromedp.ID("f-direction"), "up"), chromedp.SetValue(chromedp.ID("f-outcome"), "done"),
		chromedp.SetValue(chromedp.ID("f-bu"), "bu-a"), chromedp.Click(chromedp.CSS(`form[role=search] button[type=submit]`)),
		chromedp.Poll[chromedp.Void](`location.search.includes('outcome=done')`),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`[data-testid=activity-list] tr[data-activity=%q]`, act))))
	filtered := run(b, tab, "the filtered list", chromedp.Evaluate[[]string](listed))
	address := run(b, tab, "the filtered address", chromedp.Evaluate[string](`location.pathname + location.search`))
	var page struct {
		Activities []struct {
			ID string `json:"id"`
		} `json:"activities"`
	}
	if err := json.Unmarshal([]byte(request(t, l, "GET", "/v1/activities?order=desc&direction=up&outcome=done&business_unit=bu-a&limit=50", nil)), &page); err != nil {
		t.Fatal(err)
	}
	var api []string
	for _, a := range page.Activities {
		api = append(api, a.ID)
	}
	if !slices.Equal(filtered, api) {
		t.Errorf("the filtered page lists %v, GET /v1/activities %v", filtered, api)
	}
	for _, dark := range []bool{false, true} {
		name := map[bool]string{false: "light", true: "dark"}[dark]
		b.scheme(tab, dark)
		b.axe(tab, "activities, "+name)
		b.shot(tab, "activities-"+name)
	}
	other := b.tab("the shared address")
	b.do(other, "open the filtered address", chromedp.Navigate(l.SpillwayURL+address+"#token="+l.APIToken),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`[data-testid=activity-list] tr[data-activity=%q]`, act))))
	if again := run(b, other, "the list in the new tab", chromedp.Evaluate[[]string](listed)); !slices.Equal(again, filtered) {
		t.Errorf("%s in a new tab lists %v, the first tab %v", address, again, filtered)
	}
	if sel := run(b, other, "the filter's fields", chromedp.Evaluate[string](`[document.getElementById('f-direction').value, document.getElementById('f-outcome').value, document.getElementById('f-bu').value].join(',')`)); sel != "up,done,bu-a" {
		t.Errorf("the new tab's filter shows %q, want up,done,bu-a", sel)
	}
	b.shot(other, "activities-shared")
	t.Logf("the activities filtered by %s: %v", address, filtered)
}
