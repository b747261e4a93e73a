package e2e

// The web console's browser test: checkConsole drives the lab's console in
// Debian's Chromium over the DevTools protocol (chromedp), inside another
// end-to-end test's lab (TestNomadScaleIsProvisioned runs it at a quiet
// point), and the helpers below it start the browser, wait, take
// screenshots and run axe-core.

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/spillwayhq/spillway/internal/lab"
	"github.com/spillwayhq/spillway/internal/tools"
	"github.com/spillwayhq/spillway/internal/tools/toolstest"
)

// axeSource is axe-core 4.14.1 (MPL-2.0), committed so the test needs no
// npm; see testdata/axe-core/README.md.
//
//go:embed testdata/axe-core/axe.min.js
var axeSource string

// rejected is the start of what the console says of a token the API
// refuses.
const rejected = "This token was not accepted"

// checkConsole signs in to the lab's console through its login link and
// checks: the token leaves the address bar; the page shows the lab's tiers
// with the numbers GET /v1/pools gives; a journal event refreshes it; the
// admin has write controls and the viewer none; a wrong token is told so;
// and axe-core finds no serious or critical violation, light and dark.
// The lab must run serve with its pools (LabPools) and a cloud pool, and
// be quiet: no scale-out under way.
func checkConsole(t *testing.T, l *lab.Lab) {
	b := newBrowser(t)

	// The admin, through the login link `spillway lab` prints.
	admin := b.tab("admin")
	b.do(admin, "open the login link", chromedp.Navigate(l.SpillwayURL+"/#token="+l.APIToken))
	b.do(admin, "signed in", chromedp.WaitVisible(chromedp.CSS(`[data-testid=whoami]`)))
	// The login link opens the overview; the capacity page is one click away.
	b.do(admin, "the capacity page from the menu", chromedp.WaitVisible(chromedp.CSS(`[data-testid=overview]`)),
		chromedp.Click(chromedp.CSS(`nav a[href="/capacity"]`)), chromedp.WaitVisible(chromedp.CSS(`article[data-pool]`)))
	loc := run(b, admin, "the address", chromedp.Evaluate[string](`location.href`))
	if strings.Contains(loc, l.APIToken) || strings.Contains(loc, "#") || strings.Contains(loc, "token") {
		t.Errorf("the address bar still holds the token: %s", loc)
	}
	if got := run(b, admin, "session storage", chromedp.Evaluate[string](`sessionStorage.getItem('spillway.token') || ''`)); got != l.APIToken {
		t.Errorf("session storage holds %q, want the login link's token", got)
	}
	if who := run(b, admin, "who", chromedp.Text(chromedp.CSS(`[data-testid=whoami]`))); !strings.Contains(who, "lab-admin") || !strings.Contains(who, "admin") {
		t.Errorf("whoami shows %q, want lab-admin (admin)", who)
	}
	b.waitLive(admin)
	b.samePools(admin, l)
	writes := run(b, admin, "write controls", chromedp.Evaluate[int](visibleWrites))
	if writes == 0 {
		t.Errorf("the admin sees no write control")
	}

	// A journal event refreshes the page: pause the cloud pool with the
	// API, and the page says so; resume it from the page, with the keyboard.
	pool := lab.AWSCloudPool
	card := fmt.Sprintf(`article[data-pool=%q]`, pool)
	reason, _ := json.Marshal(map[string]string{"reason": "the console's browser test"})
	events := run(b, admin, "events seen", chromedp.Evaluate[string](eventsSeen))
	post(t, l, "/v1/pools/"+pool+"/pause", reason)
	// Within 10 s: the page's safety-net poll is every 30 s.
	b.doWithin(admin, 10*time.Second, "the pause shows without a reload", chromedp.WaitVisible(chromedp.CSS(card+` [data-testid=paused]`)))
	if after := run(b, admin, "events seen", chromedp.Evaluate[string](eventsSeen)); after == events {
		t.Errorf("the page refreshed, but its event stream brought no event (%s before the pause, %s after)", events, after)
	}
	b.shot(admin, "capacity-paused")
	b.do(admin, "resume from the page",
		chromedp.Click(chromedp.CSS(card+` button[data-write]`)),
		chromedp.WaitVisible(chromedp.CSS(card+` form input[name=reason]`)),
		chromedp.SendKeys(chromedp.CSS(card+` form input[name=reason]`), "the console's browser test is done\r"),
		chromedp.WaitNotPresent(chromedp.CSS(card+` [data-testid=paused]`)),
	)
	if p := apiPools(t, l); p[pool].Paused != nil {
		t.Errorf("pool %s is still paused after the page resumed it: %+v", pool, p[pool].Paused)
	}

	// axe-core, light and dark.
	for _, dark := range []bool{false, true} {
		name := map[bool]string{false: "light", true: "dark"}[dark]
		b.scheme(admin, dark)
		bg := run(b, admin, "the background", chromedp.Evaluate[string](`getComputedStyle(document.body).backgroundColor`))
		if isDark := bg != "rgb(255, 255, 255)"; isDark != dark {
			t.Errorf("%s: the page's background is %s", name, bg)
		}
		b.axe(admin, "capacity, "+name)
		b.shot(admin, "capacity-"+name)
	}
	b.scheme(admin, false)

	// The viewer: the same page, no write control.
	viewer := b.tab("viewer")
	b.do(viewer, "the viewer signs in", chromedp.Navigate(l.SpillwayURL+"/capacity#token="+l.ViewerToken),
		chromedp.WaitVisible(chromedp.CSS(`article[data-pool]`)))
	if who := run(b, viewer, "who", chromedp.Text(chromedp.CSS(`[data-testid=whoami]`))); !strings.Contains(who, "lab-viewer") || !strings.Contains(who, "viewer") {
		t.Errorf("whoami shows %q, want lab-viewer (viewer)", who)
	}
	if n := run(b, viewer, "write controls", chromedp.Evaluate[int](`document.querySelectorAll('[data-write]').length`)); n != 0 {
		t.Errorf("the viewer's page has %d write controls, want none (the admin's has %d)", n, writes)
	}
	b.shot(viewer, "capacity-viewer")

	// A wrong token, typed in the form with the keyboard, and in a link.
	wrong := b.tab("wrong token")
	b.do(wrong, "the login form", chromedp.Navigate(l.SpillwayURL+"/capacity"),
		chromedp.WaitVisible(chromedp.CSS(`label[for=token]`)),
		chromedp.SendKeys(chromedp.ID("token"), "spw_not-a-token\r"),
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.querySelector('[data-testid=login-error]').textContent.includes(%q)`, rejected)),
	)
	if loc := run(b, wrong, "the address", chromedp.Evaluate[string](`location.href`)); strings.Contains(loc, "not-a-token") {
		t.Errorf("the typed token went into the address: %s", loc)
	}
	b.axe(wrong, "login, a wrong token")
	b.shot(wrong, "login-wrong-token")
	b.do(wrong, "a login link with a wrong token", chromedp.Navigate(l.SpillwayURL+"/#token=spw_not-a-token"),
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.querySelector('[data-testid=login-error]')?.textContent.includes(%q)`, rejected)),
	)
}

// eventsSeen is how many events the page's stream has brought.
const eventsSeen = `document.querySelector('[data-testid=freshness]').dataset.events`

// visibleWrites counts the write controls a person can see.
const visibleWrites = `[...document.querySelectorAll('[data-write]')].filter(e => e.getClientRects().length > 0).length`

// poolJSON is one pool of GET /v1/pools.
type poolJSON struct {
	Pool  string `json:"pool"`
	Tier  string `json:"tier"`
	Hosts struct {
		Total    int `json:"total"`
		Free     int `json:"free"`
		InUse    int `json:"in_use"`
		Borrowed int `json:"borrowed"`
	} `json:"hosts"`
	CPU         struct{ Total, Used, Free int64 } `json:"cpu_mhz"`
	Memory      struct{ Total, Used, Free int64 } `json:"memory_mb"`
	CostPerHour float64                           `json:"cost_per_hour"`
	Paused      *struct{ By, Reason string }      `json:"paused"`
}

// apiPools reads GET /v1/pools, by pool name.
func apiPools(t *testing.T, l *lab.Lab) map[string]poolJSON {
	t.Helper()
	var rep struct{ Pools []poolJSON }
	if err := json.Unmarshal([]byte(request(t, l, http.MethodGet, "/v1/pools", nil)), &rep); err != nil {
		t.Fatal(err)
	}
	out := map[string]poolJSON{}
	for _, p := range rep.Pools {
		out[p.Pool] = p
	}
	return out
}

// pageCard is what the page shows of one pool.
type pageCard struct {
	Pool, Tier, Section, Text string
	Fields                    map[string]string
}

const readCards = `[...document.querySelectorAll('article[data-pool]')].map(a => ({
	pool: a.dataset.pool, tier: a.dataset.tier, section: a.closest('section')?.dataset.testid ?? '', text: a.innerText,
	fields: Object.fromEntries([...a.querySelectorAll('[data-field]')].map(e => [e.dataset.field, e.textContent])),
}))`

// grouped writes n as the page does: 12,000.
func grouped(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// wantCard is what the page must show of p.
func wantCard(p poolJSON) (section string, fields map[string]string, text string) {
	section = map[string]string{"own": "tier-own", "shared": "tier-shared", "warm": "tier-cloud", "cold": "tier-cloud"}[p.Tier]
	fields = map[string]string{
		"hosts.total": grouped(int64(p.Hosts.Total)), "hosts.in_use": grouped(int64(p.Hosts.InUse)), "hosts.free": grouped(int64(p.Hosts.Free)),
		"cpu_mhz.total": grouped(p.CPU.Total), "cpu_mhz.used": grouped(p.CPU.Used), "cpu_mhz.free": grouped(p.CPU.Free),
		"memory_mb.total": grouped(p.Memory.Total), "memory_mb.used": grouped(p.Memory.Used), "memory_mb.free": grouped(p.Memory.Free),
	}
	if p.Tier == "own" || p.Tier == "shared" {
		fields["hosts.borrowed"] = grouped(int64(p.Hosts.Borrowed))
	}
	if p.Tier != "own" {
		// Two or three decimals, as the page writes money per hour.
		whole, frac, _ := strings.Cut(strconv.FormatFloat(p.CostPerHour, 'f', 3, 64), ".")
		n, _ := strconv.ParseInt(whole, 10, 64)
		fields["cost_per_hour"] = grouped(n) + "." + strings.TrimSuffix(frac, "0")
	}
	unit := "hosts"
	if p.Hosts.Total == 1 {
		unit = "host"
	}
	text = fmt.Sprintf("%s of %s %s in use, %s free", fields["hosts.in_use"], fields["hosts.total"], unit, fields["hosts.free"])
	return section, fields, text
}

// samePools waits until the page shows every pool GET /v1/pools gives,
// each in its tier's section, with the same numbers in its text. The lab
// is quiet, so both settle; a change between the two reads is read again.
func (b *browser) samePools(ctx context.Context, l *lab.Lab) {
	b.t.Helper()
	var problems []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		api := apiPools(b.t, l)
		cards := run(b, ctx, "the page's pools", chromedp.Evaluate[[]pageCard](readCards))
		problems = comparePools(api, cards)
		if len(problems) == 0 {
			tiers := map[string]bool{}
			for _, p := range api {
				tiers[p.Tier] = true
			}
			if !tiers["own"] || !tiers["shared"] || !(tiers["cold"] || tiers["warm"]) {
				b.t.Fatalf("the lab's /v1/pools lacks a tier (own, shared, cloud): %+v", api)
			}
			b.t.Logf("the console shows the %d pools of /v1/pools with their numbers", len(api))
			return
		}
		if time.Now().After(deadline) {
			b.shot(ctx, "pools-differ")
			b.t.Fatalf("the page's pools differ from GET /v1/pools:\n%s", strings.Join(problems, "\n"))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func comparePools(api map[string]poolJSON, cards []pageCard) []string {
	var problems []string
	seen := map[string]bool{}
	for _, c := range cards {
		seen[c.Pool] = true
		p, ok := api[c.Pool]
		if !ok {
			problems = append(problems, fmt.Sprintf("the page shows pool %s, which /v1/pools does not have", c.Pool))
			continue
		}
		section, fields, text := wantCard(p)
		if c.Section != section || c.Tier != p.Tier {
			problems = append(problems, fmt.Sprintf("%s: in section %q as tier %q, want %q (tier %s)", c.Pool, c.Section, c.Tier, section, p.Tier))
		}
		for k, v := range fields {
			if c.Fields[k] != v {
				problems = append(problems, fmt.Sprintf("%s: %s is %q on the page, %q in /v1/pools", c.Pool, k, c.Fields[k], v))
			}
		}
		if !strings.Contains(strings.Join(strings.Fields(c.Text), " "), text) {
			problems = append(problems, fmt.Sprintf("%s: the text %q does not say %q", c.Pool, c.Text, text))
		}
	}
	for name := range api {
		if !seen[name] {
			problems = append(problems, fmt.Sprintf("the page does not show pool %s", name))
		}
	}
	slices.Sort(problems)
	return problems
}

// browser is one Chromium, with a tab per session (each tab has its own
// sessionStorage, so its own token).
type browser struct {
	t     *testing.T
	root  context.Context
	shots string
	n     int
}

// newBrowser starts Debian's Chromium headless with a fresh profile; it
// skips t (fails it under CI=true) when Chromium is missing. The browser
// stops when t ends. As root it needs --no-sandbox; the background
// networking flags keep it from calling out of this closed network.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	toolstest.Need(t, tools.Chromium)
	bin, err := tools.Chromium.Path()
	if err != nil {
		t.Fatal(err)
	}
	profile, err := os.MkdirTemp("", "spillway-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	shots, err := os.MkdirTemp("", "spillway-console-screenshots-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("console screenshots go to %s", shots)
	var out lockedBuffer
	alloc, cancelAlloc := chromedp.NewExecAllocator(t.Context(),
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
		chromedp.CombinedOutput(&out),
	)
	root, cancelRoot := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancelRoot()
		cancelAlloc()
		if t.Failed() {
			t.Logf("chromium's output:\n%s", out.String())
		}
		// Chromium's helpers can write in the profile a moment after it exits.
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	// The first run starts the browser, with no deadline of its own.
	if err := chromedp.Do(root); err != nil {
		t.Fatalf("starting %s: %v\n%s", bin, err, out.String())
	}
	return &browser{t: t, root: root, shots: shots}
}

// tab opens a new tab, 1280 px wide.
func (b *browser) tab(name string) context.Context {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.root)
	b.t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		b.t.Fatalf("opening the %s tab: %v", name, err)
	}
	b.do(ctx, "the "+name+" tab at 1280 px", chromedp.EmulateViewport(1280, 900))
	return ctx
}

// do runs steps within 30 s; on an error it takes a screenshot and fails
// the test, saying what was being done.
func (b *browser) do(ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	b.doWithin(ctx, 30*time.Second, what, steps...)
}

// doWithin is do with another deadline.
func (b *browser) doWithin(ctx context.Context, d time.Duration, what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	runWithin(b, ctx, d, what, chromedp.Steps(steps...))
}

// run runs one action within 30 s and returns its value.
func run[T any](b *browser, ctx context.Context, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	return runWithin(b, ctx, 30*time.Second, what, a)
}

func runWithin[T any](b *browser, ctx context.Context, d time.Duration, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	step, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	v, err := chromedp.Run(step, a)
	if err != nil {
		b.shot(ctx, "failed")
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// waitLive waits until the freshness badge says the event stream is live.
func (b *browser) waitLive(ctx context.Context) {
	b.t.Helper()
	b.do(ctx, "the event stream is live", chromedp.WaitVisible(chromedp.CSS(`[data-testid=freshness][data-state=live]`)))
}

// shot saves a screenshot of the tab's whole page as a PNG in the
// screenshot directory.
func (b *browser) shot(ctx context.Context, name string) {
	b.n++
	step, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(step, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(b.shots, fmt.Sprintf("%02d-%s.png", b.n, url.PathEscape(name)))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
	}
}

// scheme emulates prefers-color-scheme: dark or light.
func (b *browser) scheme(ctx context.Context, dark bool) {
	b.t.Helper()
	value := map[bool]string{false: "light", true: "dark"}[dark]
	b.do(ctx, "prefers-color-scheme: "+value, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: value}},
		})
		return err
	}))
}

// axeViolation is one rule axe-core found broken.
type axeViolation struct {
	ID, Impact, Help string
	Nodes            []string
}

// axe runs axe-core on the tab's page and fails the test for every
// serious or critical violation; lesser ones are logged.
func (b *browser) axe(ctx context.Context, what string) {
	b.t.Helper()
	if !run(b, ctx, "is axe-core there", chromedp.Evaluate[bool](`typeof axe !== 'undefined'`)) {
		b.do(ctx, "injecting axe-core", chromedp.Evaluate[chromedp.Void](axeSource))
	}
	vs := run(b, ctx, "axe-core on "+what, chromedp.Evaluate[[]axeViolation](`axe.run(document, {resultTypes: ['violations']}).then(r =>
		r.violations.map(v => ({id: v.id, impact: v.impact || '', help: v.help, nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))})))`,
		chromedp.EvalAwaitPromise))
	for _, v := range vs {
		msg := fmt.Sprintf("axe-core, %s: %s (%s): %s, at %s", what, v.ID, v.Impact, v.Help, strings.Join(v.Nodes, "; "))
		if v.Impact == "serious" || v.Impact == "critical" {
			b.t.Error(msg)
		} else {
			b.t.Log(msg)
		}
	}
}
