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
// shared host lent for the burst is listed with its lease's end; the admin
// has write controls and the viewer none; an operator's reclaim of more
// hosts than are lent shows the API's 422 in words, and an operator's
// lease extension is journaled (lease.extended) and shown; a wrong token
// is told so; and axe-core finds no serious or critical violation, light
// and dark, and with a dialog open. The lab must run serve with its pools
// (LabPools) and a cloud pool, have lent exactly one shared host, and be
// quiet: no scale-out under way.
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
	loan := sharedLoan(t, l)
	b.sameLoan(admin, loan)
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
	b.sameLoan(viewer, loan)
	if n := run(b, viewer, "loan controls", chromedp.Evaluate[int](`document.querySelectorAll('[data-testid=loans] button, [data-testid=loans] dialog').length`)); n != 0 {
		t.Errorf("the viewer's loans have %d buttons or dialogs, want none", n)
	}
	b.shot(viewer, "capacity-viewer")

	// The operator: a reclaim of more hosts than are lent shows the API's
	// 422 in words and changes nothing; an extension is journaled and shown.
	checkLoanControls(t, b, l, loan)

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

// loanJSON is one open loan of GET /v1/pools/loans.
type loanJSON struct {
	Host      string     `json:"host"`
	HostName  string     `json:"host_name"`
	Tier      string     `json:"tier"`
	Pool      string     `json:"pool"`
	Lender    string     `json:"lender"`
	Borrower  string     `json:"borrower"`
	Until     time.Time  `json:"until"`
	ReclaimBy *time.Time `json:"reclaim_by"`
}

// sharedLoans reads the shared pool's open loans from GET /v1/pools/loans.
func sharedLoans(t *testing.T, l *lab.Lab) []loanJSON {
	t.Helper()
	var page struct{ Loans []loanJSON }
	if err := json.Unmarshal([]byte(request(t, l, http.MethodGet, "/v1/pools/loans", nil)), &page); err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(page.Loans, func(x loanJSON) bool { return x.Tier != "shared" })
}

// sharedLoan is the lab's one lent shared host.
func sharedLoan(t *testing.T, l *lab.Lab) loanJSON {
	t.Helper()
	loans := sharedLoans(t, l)
	if len(loans) != 1 {
		t.Fatalf("the lab has %d shared loans, want the burst's one: %+v", len(loans), loans)
	}
	return loans[0]
}

// loanRow is what the page shows of one open loan.
type loanRow struct {
	Text, Until, State string
}

// readLoanRow reads the row of the loan of node (or null).
const readLoanRow = `(node => { const r = document.querySelector('[data-testid=loans-open] tr[data-node="' + node + '"]');
	return r && {text: r.innerText, until: r.querySelector('[data-field=until] time').getAttribute('datetime'), state: r.dataset.state}; })`

// sameLoan waits until the page lists loan with the lease's end GET
// /v1/pools/loans gives, its lender and borrower and its time left.
func (b *browser) sameLoan(ctx context.Context, loan loanJSON) loanRow {
	b.t.Helper()
	row := fmt.Sprintf(`[data-testid=loans-open] tr[data-node=%q]`, loan.Host)
	b.do(ctx, "the loan of "+loan.HostName, chromedp.WaitVisible(chromedp.CSS(row)))
	got := run(b, ctx, "the loan's row", chromedp.Evaluate[loanRow](fmt.Sprintf("%s(%q)", readLoanRow, loan.Host)))
	text := strings.Join(strings.Fields(got.Text), " ")
	until, err := time.Parse(time.RFC3339Nano, got.Until)
	if err != nil || !until.Equal(loan.Until) {
		b.t.Errorf("the page's lease end of %s is %q, GET /v1/pools/loans says %s", loan.HostName, got.Until, loan.Until.Format(time.RFC3339Nano))
	}
	// The lab's lease is an hour and its reclaim notice two minutes.
	for _, want := range []string{loan.HostName, loan.Lender, loan.Borrower, "left", "Not reclaimed"} {
		if !strings.Contains(text, want) {
			b.t.Errorf("the loan's row %q does not say %q", text, want)
		}
	}
	if got.State != "ok" {
		b.t.Errorf("the loan's row is in state %q, want ok (more than the reclaim notice left): %q", got.State, text)
	}
	return got
}

// checkLoanControls signs the operator in and, on loan's row and its
// lender's, asks to reclaim one more host than the lender lent (the API's
// 422 shows, in its words, and nothing is reclaimed), then extends the
// lease by 2 hours: the row shows the new end, the page says so, and the
// journal has lease.extended by the operator with the reason.
func checkLoanControls(t *testing.T, b *browser, l *lab.Lab, loan loanJSON) {
	op := b.tab("operator")
	b.do(op, "the operator signs in", chromedp.Navigate(l.SpillwayURL+"/capacity#token="+l.OperatorToken),
		chromedp.WaitVisible(chromedp.CSS(`article[data-pool]`)))
	b.sameLoan(op, loan)

	lender := fmt.Sprintf(`[data-testid=loans-lenders] tr[data-lender=%q]`, loan.Lender)
	lent := run(b, op, "the lender's count", chromedp.Text(chromedp.CSS(lender+` td.num`)))
	n, err := strconv.Atoi(lent)
	if err != nil || n < 1 {
		t.Fatalf("the page says %s lent %q hosts", loan.Lender, lent)
	}
	dialog := `dialog[open]`
	b.do(op, "reclaim one host more than "+loan.Lender+" lent",
		chromedp.Click(chromedp.CSS(lender+` button[data-write=lender-reclaim]`)),
		chromedp.WaitVisible(chromedp.CSS(dialog+` input[name=count]`)),
		chromedp.SetValue(chromedp.CSS(dialog+` input[name=count]`), strconv.Itoa(n+1)),
		chromedp.SendKeys(chromedp.CSS(dialog+` input[name=reason]`), "the console's browser test: one too many\r"),
		chromedp.WaitVisible(chromedp.CSS(dialog+` [data-testid=action-error]`)),
	)
	shown := run(b, op, "the reclaim's error", chromedp.Text(chromedp.CSS(dialog+` [data-testid=action-error]`)))
	body, _ := json.Marshal(map[string]any{"count": n + 1, "lender": loan.Lender, "reason": "the console's browser test: the same ask"})
	code, answer := requestStatus(t, l, http.MethodPost, "/v1/pools/"+loan.Pool+"/reclaim", body)
	var refusal struct{ Error struct{ Message string } }
	_ = json.Unmarshal([]byte(answer), &refusal)
	if code != http.StatusUnprocessableEntity || refusal.Error.Message == "" || !strings.Contains(shown, refusal.Error.Message) {
		t.Errorf("reclaiming %d of %d: the dialog says %q; the API answers the same ask %d %s", n+1, n, shown, code, answer)
	}
	b.axe(op, "capacity, the reclaim dialog refused")
	b.shot(op, "capacity-reclaim-refused")
	b.do(op, "cancel the reclaim", chromedp.Click(chromedp.CSS(dialog+` button.secondary`)), chromedp.WaitNotPresent(chromedp.CSS(`dialog`)))
	if now := sharedLoan(t, l); now.ReclaimBy != nil {
		t.Fatalf("a refused reclaim reclaimed %s: %+v", now.HostName, now)
	}

	// Extend the lease by 2 hours, from the row, with the keyboard.
	row := fmt.Sprintf(`[data-testid=loans-open] tr[data-node=%q]`, loan.Host)
	reason := "the console's browser test: extend"
	asked := time.Now()
	b.do(op, "extend the lease of "+loan.HostName,
		chromedp.Click(chromedp.CSS(row+` button[data-write=loan-extend]`)),
		chromedp.WaitVisible(chromedp.CSS(dialog+` input[name=lease]`)),
		chromedp.SendKeys(chromedp.CSS(dialog+` input[name=lease]`), "2h"),
		chromedp.SendKeys(chromedp.CSS(dialog+` input[name=reason]`), reason+"\r"),
		chromedp.WaitNotPresent(chromedp.CSS(`dialog`)),
	)
	b.do(op, "the row shows the new lease end",
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`(r => r && Date.parse(r.until) > Date.now() + 110 * 60 * 1000)(%s(%q))`, readLoanRow, loan.Host)))
	extended := sharedLoan(t, l)
	if d := extended.Until.Sub(asked); d < 2*time.Hour-time.Minute || d > 2*time.Hour+time.Minute {
		t.Errorf("after the extension the lease of %s ends %s after it was asked, want 2h", loan.HostName, d)
	}
	b.sameLoan(op, extended)
	if said := run(b, op, "what the page says", chromedp.Text(chromedp.CSS(`[data-testid=loan-done]`))); !strings.Contains(said, "now ends at") || !strings.Contains(said, loan.HostName) {
		t.Errorf("after the extension the page says %q", said)
	}
	var ext []string
	for _, ev := range filterKind(allEvents(t, l), "lease.extended") {
		if ev.Actor == "lab-operator" && strings.Contains(ev.Message, reason) && ev.Subject == "host/"+loan.Host {
			ext = append(ext, ev.Message)
		}
	}
	if len(ext) != 1 {
		t.Errorf("the journal has %d lease.extended events by lab-operator for %s with the reason, want 1: %v", len(ext), loan.HostName, ext)
	}
	b.shot(op, "capacity-lease-extended")
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
