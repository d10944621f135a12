package console_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The console in a real browser: Debian's chromium, headless, driven
// through the DevTools protocol (chromedp). Where no chromium is found
// the test skips, unless TOLLGATE_REQUIRE_CHROMIUM is set (.ci/run sets
// it): then it fails.
//
// Screenshots go to TOLLGATE_ARTIFACTS (default: a folder under the
// system's temporary folder, logged); with TOLLGATE_SCREENSHOTS set to
// a folder, the overview and a key page are also written there under the
// names README.md shows (make screenshots).

func chromiumPath(t *testing.T) string {
	for _, p := range []string{os.Getenv("TOLLGATE_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("TOLLGATE_REQUIRE_CHROMIUM") != "" {
		t.Fatal("no chromium found, and TOLLGATE_REQUIRE_CHROMIUM is set (apt-get install chromium)")
	}
	t.Skip("no chromium found: set TOLLGATE_REQUIRE_CHROMIUM=1 to make this a failure")
	return ""
}

// browser is one headless chromium with one tab, and where its
// screenshots go.
type browser struct {
	t         *testing.T
	ctx       context.Context
	artifacts string
}

func newBrowser(t *testing.T, width, height int) *browser {
	path := chromiumPath(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(width, height), chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first run starts the browser, without a deadline (one would
	// stop the browser with it).
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(int64(width), int64(height))); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	dir := os.Getenv("TOLLGATE_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "tollgate-console-screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, ctx: ctx, artifacts: dir}
}

// do runs steps with a deadline, failing the test with what it was doing.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

func run[T any](b *browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	return strings.TrimSpace(run(b, "read "+sel, chromedp.Text(chromedp.CSS(sel))))
}

// open loads url and waits for sel.
func (b *browser) open(url, sel string) {
	b.t.Helper()
	b.do("open "+url, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(sel)))
}

// clickTo clicks sel and waits until the page's address holds want
// (a click that reloads a page which had the same elements).
func (b *browser) clickTo(sel, want string) {
	b.t.Helper()
	b.do("click "+sel, chromedp.Click(chromedp.CSS(sel)))
	deadline := time.Now().Add(20 * time.Second)
	for {
		loc := run(b, "location", chromedp.Location())
		if strings.Contains(loc, want) {
			b.do("load", chromedp.WaitReady(chromedp.CSS("body")))
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("after a click on %s the page is %s, not one with %q", sel, loc, want)
		}
		time.Sleep(20 * time.Millisecond) // the browser's own navigation; nothing of ours to wait on
	}
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	png := run(b, "screenshot "+name, chromedp.FullScreenshot(100))
	path := filepath.Join(b.artifacts, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", path)
	if dir := os.Getenv("TOLLGATE_SCREENSHOTS"); dir != "" && (name == "overview" || name == "key") {
		if err := os.WriteFile(filepath.Join(dir, "console-"+name+".png"), png, 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
}

// number reads a number the page shows ("1,234").
func (b *browser) number(sel string) int64 {
	b.t.Helper()
	s := b.text(sel)
	n, err := strconv.ParseInt(strings.ReplaceAll(s, ",", ""), 10, 64)
	if err != nil {
		b.t.Fatalf("%s shows %q, not a number", sel, s)
	}
	return n
}

func (b *browser) signIn(s *stack, token, name string) {
	b.t.Helper()
	b.open(s.url+"/ui/", "#token") // sent to the sign-in page
	b.do("sign in", chromedp.SendKeys(chromedp.CSS("#token"), token), chromedp.SendKeys(chromedp.CSS("#name"), name),
		chromedp.Click(chromedp.CSS("#signin")), chromedp.WaitVisible(chromedp.CSS("h1")))
}

// The whole tour: sign-in refused, then accepted; the overview, a key, a
// plan with many keys, a disable and an UpdateUsage, each page's numbers
// against the API's answers; a phone's screen; a cross-site POST; an
// expired session.
func TestConsoleInABrowser(t *testing.T) {
	s := newStack(t, 240, 8, now0)
	b := newBrowser(t, 1280, 900)

	// Refused sign-in.
	b.signIn(s, "not-the-token", "mallory")
	if got := b.text("#error"); !strings.Contains(got, "not this gateway's admin token") {
		t.Fatalf("refused sign-in shows %q", got)
	}
	b.screenshot("signin-refused")

	// Sign-in, and the overview: last day by decision.
	b.signIn(s, s.token, "alice")
	b.do("overview", chromedp.WaitVisible(chromedp.CSS("#totals")))
	var rep struct {
		Rows []struct {
			Decision string `json:"decision"`
			Requests int64  `json:"requests"`
		} `json:"rows"`
	}
	from := now0.Add(-24 * time.Hour).Truncate(time.Hour)
	s.api(t, "GET", "/v1/usage?granularity=hour&group_by=decision&from="+from.Format(time.RFC3339)+"&to="+now0.Format(time.RFC3339), &rep)
	want := map[string]int64{}
	for _, r := range rep.Rows {
		want[strings.ReplaceAll(r.Decision, "_", " ")] += r.Requests
	}
	if want["admitted"] == 0 || want["throttled"] == 0 || want["quota exceeded"] == 0 {
		t.Fatalf("the stack's last day has too little: %v", want)
	}
	for d, n := range want {
		if got := b.number(`#totals strong[data-decision="` + d + `"]`); got != n {
			t.Errorf("overview %s: page %d, API %d", d, got, n)
		}
	}
	var top struct {
		Rows []struct {
			Key      string `json:"key"`
			Name     string `json:"name"`
			Admitted int64  `json:"admitted"`
		} `json:"rows"`
	}
	s.api(t, "GET", "/v1/usage/top?limit=10&from="+from.Format(time.RFC3339)+"&to="+now0.Format(time.RFC3339), &top)
	if got := b.text("#top tbody tr:first-child td:first-child"); got != top.Rows[0].Name {
		t.Errorf("top consumer: page %q, API %q", got, top.Rows[0].Name)
	}
	if got := b.number("#top tbody tr:first-child td:nth-child(4)"); got != top.Rows[0].Admitted {
		t.Errorf("top consumer's admitted: page %d, API %d", got, top.Rows[0].Admitted)
	}
	if n := run(b, "bars", chromedp.Evaluate[int](`document.querySelectorAll("svg.chart rect").length`)); n < 6 {
		t.Errorf("the overview chart has %d bars", n)
	}
	b.screenshot("overview")

	// The 7-day range, through the picker.
	b.do("7 days", chromedp.Click(chromedp.CSS(`input[value="7d"]`)))
	b.clickTo("#apply-range", "range=7d")
	if got := b.text(".muted"); !strings.Contains(got, "per hour") {
		t.Errorf("7 days are drawn %q", got)
	}

	// A key: its quota this period, as GetUsage answers.
	key := keyID(12)
	b.open(s.url+"/ui/keys/"+key, "#key-name")
	used, remaining := getUsage(t, s, "basic", key)
	if got := b.number(".plan-use .used"); got != used {
		t.Errorf("key page used: %d, GetUsage %d", got, used)
	}
	if got := b.number(".plan-use .remaining"); got != remaining {
		t.Errorf("key page remaining: %d, GetUsage %d", got, remaining)
	}
	if got := b.text(".plan-use .period-end"); got != now0.Truncate(24*time.Hour).Add(24*time.Hour).Format("2006-01-02 15:04 UTC") {
		t.Errorf("period end: %q", got)
	}
	b.screenshot("key")

	// UpdateUsage: set what remains, confirm, see it.
	b.do("grant", chromedp.SetValue(chromedp.CSS(".grant-remaining"), "1234"), chromedp.Click(chromedp.CSS("button.grant")), chromedp.WaitVisible(chromedp.CSS("#confirm")))
	if got := b.text("#what"); !strings.Contains(got, "to 1234 requests") {
		t.Fatalf("the confirmation says %q", got)
	}
	b.screenshot("confirm-grant")
	b.do("confirm grant", chromedp.Click(chromedp.CSS("#confirm")), chromedp.WaitVisible(chromedp.CSS("#done")))
	if _, rem := getUsage(t, s, "basic", key); rem != 1234 {
		t.Fatalf("GetUsage after the grant: remaining %d", rem)
	}
	if got := b.number(".plan-use .remaining"); got != 1234 {
		t.Errorf("key page after the grant: remaining %d", got)
	}
	if got := b.text("#changes tbody tr:first-child .actor"); got != "console:alice" {
		t.Errorf("the last change's actor: %q", got)
	}

	// A refused grant shows the API's error.
	b.do("grant too much", chromedp.SetValue(chromedp.CSS(".grant-remaining"), "999999"), chromedp.Click(chromedp.CSS("button.grant")),
		chromedp.Click(chromedp.CSS("#confirm")), chromedp.WaitVisible(chromedp.CSS("#error")))
	if got := b.text("#error"); !strings.Contains(got, "BadRequestException") || !strings.Contains(got, "limit 5000") {
		t.Errorf("refused grant shows %q", got)
	}

	// Disable: confirm, and the API agrees.
	b.open(s.url+"/ui/keys/"+key, "#disable")
	b.do("disable", chromedp.Click(chromedp.CSS("#disable")), chromedp.WaitVisible(chromedp.CSS("#confirm")),
		chromedp.Click(chromedp.CSS("#confirm")), chromedp.WaitVisible(chromedp.CSS("#done")))
	if got := b.text("#key-state"); got != "disabled" {
		t.Errorf("key state after disable: %q", got)
	}
	var k struct {
		Enabled bool `json:"enabled"`
	}
	s.api(t, "GET", "/apikeys/"+key, &k)
	if k.Enabled {
		t.Fatal("the API says the key is still enabled")
	}

	// A plan with many keys: a page of 50 by id, the next page, the
	// order by use.
	b.open(s.url+"/ui/plans/basic", "#plan-keys")
	if n := run(b, "rows", chromedp.Evaluate[int](`document.querySelectorAll("#plan-keys tbody tr").length`)); n != 50 {
		t.Errorf("first page: %d rows", n)
	}
	if got := b.text("#plan-keys tbody tr:first-child td:nth-child(2)"); got != keyID(10) {
		t.Errorf("first key by id: %q", got)
	}
	if got := b.text("#methods tbody tr td:nth-child(2)"); got != "/items/GET" {
		t.Errorf("per-method throttle: %q", got)
	}
	b.clickTo("#next", "position=")
	if got := b.text("#plan-keys tbody tr:first-child td:nth-child(2)"); got != keyID(60) {
		t.Errorf("second page starts at %q", got)
	}
	b.do("sort by use", chromedp.Click(chromedp.CSS("#sort-used")), chromedp.WaitVisible(chromedp.CSS("#sort-id")))
	heavy := b.text("#plan-keys tbody tr:first-child td:nth-child(2)")
	hUsed, _ := getUsage(t, s, "basic", heavy)
	if got := b.number("#plan-keys tbody tr:first-child .used"); got != hUsed {
		t.Errorf("heaviest key %s: page %d, GetUsage %d", heavy, got, hUsed)
	}
	second := b.text("#plan-keys tbody tr:nth-child(2) td:nth-child(2)")
	if u2, _ := getUsage(t, s, "basic", second); u2 > hUsed {
		t.Errorf("order by use: %s (%d) before %s (%d)", heavy, hUsed, second, u2)
	}
	b.screenshot("plan")

	// Billing, as the API computes it.
	b.open(s.url+"/ui/billing?month=2026-11", "#billing")
	var bill struct {
		Rows []struct {
			Admitted int64 `json:"requests_admitted"`
		} `json:"rows"`
	}
	s.api(t, "GET", "/v1/reports/billing?month=2026-11", &bill)
	var total int64
	for _, r := range bill.Rows {
		total += r.Admitted
	}
	if got := b.number("#total-admitted"); got != total {
		t.Errorf("billing total: page %d, API %d", got, total)
	}
	if got := b.number("#row-count"); got != int64(len(bill.Rows)) {
		t.Errorf("billing rows: page %d, API %d", got, len(bill.Rows))
	}
	b.screenshot("billing")

	// A cross-site POST: a page on another site (localhost, where the
	// console is 127.0.0.1) posts a disable to the console. The browser
	// sends no cookie (SameSite=Strict) and says cross-site; the console
	// refuses, and the key stays enabled.
	evil := evilSite(t, s.url+"/ui/change", keyID(13))
	b.open(evil, "#error")
	if got := b.text("#error"); !strings.Contains(got, "Refused") {
		t.Errorf("the cross-site POST answered %q", got)
	}
	s.api(t, "GET", "/apikeys/"+keyID(13), &k)
	if !k.Enabled {
		t.Fatal("a cross-site POST disabled a key")
	}

	// A phone: the overview fits its width.
	b.do("phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	b.open(s.url+"/ui/", "#totals")
	if w := run(b, "width", chromedp.Evaluate[int](`document.documentElement.scrollWidth - window.innerWidth`)); w > 0 {
		t.Errorf("on a phone the overview is %d px wider than the screen", w)
	}
	b.screenshot("overview-phone")
	b.open(s.url+"/ui/keys/"+key, "#key-name")
	b.screenshot("key-phone")
	b.do("laptop", chromedp.EmulateViewport(1280, 900))

	// An expired session: the next page is the sign-in, saying why.
	s.clock.Advance(8*time.Hour + time.Minute)
	b.open(s.url+"/ui/plans/basic", "#notice")
	if got := b.text("#notice"); !strings.Contains(got, "expired") {
		t.Errorf("after expiry the page says %q", got)
	}
	b.screenshot("expired")
}

// getUsage is GetUsage's used this period and remaining today for a key.
func getUsage(t *testing.T, s *stack, plan, key string) (used, remaining int64) {
	t.Helper()
	p := s.state().Plan(plan)
	start, _ := p.Quota.Period.Bounds(s.Now().UnixNano())
	var got struct {
		Values map[string][][2]int64 `json:"values"`
	}
	s.api(t, "GET", "/usageplans/"+plan+"/usage?keyId="+key+"&startDate="+time.Unix(0, start).UTC().Format("2006-01-02")+"&endDate="+s.Now().Format("2006-01-02"), &got)
	vals := got.Values[key]
	for _, v := range vals {
		used += v[0]
	}
	return used, vals[len(vals)-1][1]
}

// evilSite serves, on localhost (another site than 127.0.0.1), a page
// whose form posts a disable of key to target as soon as it loads.
func evilSite(t *testing.T, target, key string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><form method="post" action="%s"><input name="op" value="disable"><input name="key" value="%s"><input name="csrf" value="x"></form><script>document.forms[0].submit()</script>`, target, key)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://localhost:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) + "/"
}
