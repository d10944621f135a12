package console_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
)

var now0 = time.Date(2026, 11, 27, 15, 30, 0, 0, time.UTC)

// user is a browser-like client of the console: a cookie jar, redirects
// not followed (so tests see them).
type user struct {
	t   testing.TB
	s   *stack
	c   *http.Client
	jar *cookiejar.Jar
}

func newUser(t testing.TB, s *stack) *user {
	jar, _ := cookiejar.New(nil)
	return &user{t: t, s: s, jar: jar, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (u *user) do(method, path string, form url.Values, hdr ...string) (*http.Response, string) {
	u.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, u.s.url+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	r, err := u.c.Do(req)
	if err != nil {
		u.t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r, string(b)
}

func (u *user) signIn(name string) {
	u.t.Helper()
	r, body := u.do("POST", "/ui/signin", url.Values{"token": {u.s.token}, "name": {name}})
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/" {
		u.t.Fatalf("sign in: %d %s\n%s", r.StatusCode, r.Header.Get("Location"), body)
	}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the session's token from a page's form.
func (u *user) csrf() string {
	u.t.Helper()
	_, body := u.do("GET", "/ui/keys/"+keyID(1), nil)
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		u.t.Fatalf("no CSRF token in the key page:\n%s", body)
	}
	return m[1]
}

// api calls the admin API with the bearer token, as curl would.
func (s *stack) api(t *testing.T, method, path string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, s.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+s.token)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	if out != nil {
		if err := json.NewDecoder(r.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return r.StatusCode
}

func TestSignInRefusesAWrongToken(t *testing.T) {
	s := newStack(t, 3, 1, now0)
	u := newUser(t, s)
	r, body := u.do("POST", "/ui/signin", url.Values{"token": {"not-the-token"}, "name": {"mallory"}})
	if r.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "not this gateway&#39;s admin token") {
		t.Fatalf("wrong token: %d\n%s", r.StatusCode, body)
	}
	if len(r.Cookies()) != 0 {
		t.Fatalf("a refused sign-in set cookies: %v", r.Cookies())
	}
	if r, _ := u.do("GET", "/ui/", nil); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/signin" {
		t.Fatalf("after a refused sign-in the overview answered %d %s", r.StatusCode, r.Header.Get("Location"))
	}
}

func TestSessionCookie(t *testing.T) {
	s := newStack(t, 3, 1, now0)
	u := newUser(t, s)
	r, _ := u.do("POST", "/ui/signin", url.Values{"token": {s.token}, "name": {"alice"}})
	cs := r.Cookies()
	if len(cs) != 1 {
		t.Fatalf("cookies: %v", cs)
	}
	c := cs[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/ui/" || c.Secure {
		t.Fatalf("cookie attributes: %+v", c)
	}
	if want := now0.Add(8 * time.Hour); !c.Expires.Equal(want) || c.MaxAge != 8*3600 {
		t.Fatalf("cookie expires %v (max-age %d), want %v", c.Expires, c.MaxAge, want)
	}
	if strings.Contains(c.Value, s.token) {
		t.Fatal("the cookie holds the token")
	}
	// Over TLS (a proxy in front that says so), the cookie is Secure.
	r, _ = u.do("POST", "/ui/signin", url.Values{"token": {s.token}}, "X-Forwarded-Proto", "https")
	if cs := r.Cookies(); len(cs) != 1 || !cs[0].Secure {
		t.Fatalf("cookie behind TLS: %v", cs)
	}
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options"} {
		if r.Header.Get(h) == "" {
			t.Errorf("no %s header", h)
		}
	}
}

func TestPagesNeedASession(t *testing.T) {
	s := newStack(t, 3, 1, now0)
	u := newUser(t, s)
	for _, p := range []string{"/ui/", "/ui/keys/" + keyID(1), "/ui/plans/basic", "/ui/billing", "/ui/billing.csv?month=2026-11", "/ui/confirm?op=disable&key=" + keyID(1)} {
		r, _ := u.do("GET", p, nil)
		if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/signin" {
			t.Errorf("GET %s without a session: %d %s", p, r.StatusCode, r.Header.Get("Location"))
		}
	}
	r, _ := u.do("POST", "/ui/change", url.Values{"op": {"disable"}, "key": {keyID(1)}})
	if r.StatusCode != http.StatusForbidden {
		t.Fatalf("POST without a session: %d", r.StatusCode)
	}
	if !s.state().Key(keyID(1)).Enabled {
		t.Fatal("a change without a session was made")
	}
	// A forged cookie is no session.
	base, _ := url.Parse(s.url + "/ui/")
	u.jar.SetCookies(base, []*http.Cookie{{Name: "tollgate_console", Value: "v1.9999999999.YWRtaW4.bm9uY2U.c2ln", Path: "/ui/"}})
	if r, _ := u.do("GET", "/ui/", nil); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("forged cookie: %d", r.StatusCode)
	}
}

func TestSessionExpires(t *testing.T) {
	s := newStack(t, 3, 1, now0)
	u := newUser(t, s)
	u.signIn("alice")
	if r, _ := u.do("GET", "/ui/", nil); r.StatusCode != http.StatusOK {
		t.Fatalf("overview: %d", r.StatusCode)
	}
	s.clock.Advance(8*time.Hour - time.Second)
	if r, _ := u.do("GET", "/ui/", nil); r.StatusCode != http.StatusOK {
		t.Fatalf("a second before expiry: %d", r.StatusCode)
	}
	// The browser would drop the cookie at its expiry; a client that
	// keeps it past then is refused all the same.
	base, _ := url.Parse(s.url + "/ui/")
	kept := u.jar.Cookies(base)
	s.clock.Advance(time.Second)
	u.jar.SetCookies(base, []*http.Cookie{{Name: kept[0].Name, Value: kept[0].Value, Path: "/ui/"}})
	r, _ := u.do("GET", "/ui/", nil)
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/signin?why=expired" {
		t.Fatalf("expired: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	if _, body := u.do("GET", "/ui/signin?why=expired", nil); !strings.Contains(body, "Your session has expired") {
		t.Fatalf("the sign-in page does not say why:\n%s", body)
	}
}

func TestSignOutEndsTheSession(t *testing.T) {
	s := newStack(t, 3, 1, now0)
	u := newUser(t, s)
	u.signIn("alice")
	base, _ := url.Parse(s.url + "/ui/")
	kept := u.jar.Cookies(base)[0]
	tok := u.csrf()
	r, _ := u.do("POST", "/ui/signout", url.Values{"csrf": {tok}})
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/signin?why=ended" {
		t.Fatalf("sign out: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	// The old cookie, replayed, is refused.
	u.jar.SetCookies(base, []*http.Cookie{{Name: kept.Name, Value: kept.Value, Path: "/ui/"}})
	if r, _ := u.do("GET", "/ui/", nil); r.Header.Get("Location") != "/ui/signin?why=ended" {
		t.Fatalf("replayed cookie after sign-out: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
}

func TestCrossSiteChangesAreRefused(t *testing.T) {
	s := newStack(t, 3, 1, now0)
	u := newUser(t, s)
	u.signIn("alice")
	tok := u.csrf()
	form := func(csrf string) url.Values {
		return url.Values{"csrf": {csrf}, "op": {"disable"}, "key": {keyID(1)}}
	}
	for _, c := range []struct {
		name string
		form url.Values
		hdr  []string
	}{
		{"a browser says cross-site", form(tok), []string{"Sec-Fetch-Site", "cross-site"}},
		{"another origin", form(tok), []string{"Origin", "http://evil.example"}},
		{"no CSRF token", form(""), nil},
		{"another session's token", form("b3RoZXItc2Vzc2lvbi10b2tlbg"), nil},
	} {
		r, body := u.do("POST", "/ui/change", c.form, c.hdr...)
		if r.StatusCode != http.StatusForbidden || !strings.Contains(body, "Refused") {
			t.Errorf("%s: %d\n%s", c.name, r.StatusCode, body)
		}
	}
	if !s.state().Key(keyID(1)).Enabled {
		t.Fatal("a refused change was made")
	}
	// The same form, same-origin with the token, is accepted.
	r, _ := u.do("POST", "/ui/change", form(tok), "Sec-Fetch-Site", "same-origin", "Origin", s.url)
	if r.StatusCode != http.StatusSeeOther || s.state().Key(keyID(1)).Enabled {
		t.Fatalf("same-origin change: %d, enabled %v", r.StatusCode, s.state().Key(keyID(1)).Enabled)
	}
	// Sign-in from another site is refused too (login CSRF).
	r, _ = newUser(t, s).do("POST", "/ui/signin", url.Values{"token": {s.token}}, "Sec-Fetch-Site", "cross-site")
	if r.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site sign-in: %d", r.StatusCode)
	}
}

func TestSignInIsBounded(t *testing.T) {
	s := newStack(t, 3, 1, now0)
	u := newUser(t, s)
	r, body := u.do("POST", "/ui/signin", url.Values{"token": {strings.Repeat("x", 64<<10)}})
	if r.StatusCode != http.StatusBadRequest || !strings.Contains(body, "could not be read") {
		t.Fatalf("a 64 KiB form: %d\n%s", r.StatusCode, body)
	}
	// Failed sign-ins: the burst, then 429 until time passes.
	codes := map[int]int{}
	for range 40 {
		r, _ := u.do("POST", "/ui/signin", url.Values{"token": {"guess"}})
		codes[r.StatusCode]++
	}
	if codes[http.StatusUnauthorized] != 20 || codes[http.StatusTooManyRequests] != 20 {
		t.Fatalf("40 failed sign-ins on a frozen clock: %v, want 20 × 401 then 20 × 429", codes)
	}
	s.clock.Advance(time.Second)
	if r, _ := u.do("POST", "/ui/signin", url.Values{"token": {"guess"}}); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a second later: %d", r.StatusCode)
	}
	// The right token still signs in while guesses are refused.
	for range 30 {
		u.do("POST", "/ui/signin", url.Values{"token": {"guess"}})
	}
	u.signIn("alice")
	r, body = u.do("POST", "/ui/signin", url.Values{"token": {s.token}, "name": {strings.Repeat("n", 65)}})
	if r.StatusCode != http.StatusBadRequest || !strings.Contains(body, "at most 64 characters") {
		t.Fatalf("a 65-character name: %d", r.StatusCode)
	}
}

// Changes go through the admin API as the signed-in user: audited with
// "console:<name>", refused with the API's own error.
func TestChangesAreTheAPIs(t *testing.T) {
	s := newStack(t, 12, 2, now0)
	u := newUser(t, s)
	u.signIn("alice")
	tok := u.csrf()
	post := func(f url.Values) (*http.Response, string) {
		f.Set("csrf", tok)
		return u.do("POST", "/ui/change", f)
	}
	if r, body := post(url.Values{"op": {"disable"}, "key": {keyID(11)}}); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/keys/"+keyID(11)+"?done=disabled" {
		t.Fatalf("disable: %d %s\n%s", r.StatusCode, r.Header.Get("Location"), body)
	}
	if s.state().Key(keyID(11)).Enabled {
		t.Fatal("not disabled")
	}
	entries, _, err := s.audit.Recent("", nil, 1, 1<<20)
	if err != nil || len(entries) != 1 || entries[0].Actor != "console:alice" || entries[0].Action != "PATCH /apikeys/"+keyID(11) {
		t.Fatalf("audit: %+v %v", entries, err)
	}
	// UpdateUsage beyond the period's limit: the API's 400, shown.
	r, body := post(url.Values{"op": {"grant"}, "key": {keyID(11)}, "plan": {"basic"}, "remaining": {"999999"}})
	if r.StatusCode != http.StatusBadRequest || !strings.Contains(body, "BadRequestException") {
		t.Fatalf("grant over the limit: %d\n%s", r.StatusCode, body)
	}
	r, _ = post(url.Values{"op": {"grant"}, "key": {keyID(11)}, "plan": {"basic"}, "remaining": {"4000"}})
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("grant: %d", r.StatusCode)
	}
	var got struct {
		Values map[string][][2]int64 `json:"values"`
	}
	day := now0.Format("2006-01-02")
	s.api(t, "GET", "/usageplans/basic/usage?keyId="+keyID(11)+"&startDate="+day+"&endDate="+day, &got)
	if v := got.Values[keyID(11)]; len(v) != 1 || v[0][1] != 4000 {
		t.Fatalf("GetUsage after the grant: %v", got.Values)
	}
	// Move, in one change.
	r, _ = post(url.Values{"op": {"move"}, "key": {keyID(11)}, "from": {"basic"}, "to": {"spare"}})
	if k := s.state().Key(keyID(11)); r.StatusCode != http.StatusSeeOther || len(k.UsagePlans) != 1 || k.UsagePlans[0] != "spare" {
		t.Fatalf("move: %d, plans %v", r.StatusCode, k.UsagePlans)
	}
	// Create: the value is shown once.
	r, body = post(url.Values{"op": {"create"}, "name": {"new-customer"}, "customer": {"c-new"}, "plan": {"basic"}})
	k := s.state().KeyByNameOrID("new-customer")
	if r.StatusCode != http.StatusCreated || k == nil || !k.Enabled || len(k.UsagePlans) != 1 {
		t.Fatalf("create: %d %+v\n%s", r.StatusCode, k, body)
	}
	if m := regexp.MustCompile(`id="created-value">([^<]+)<`).FindStringSubmatch(body); m == nil || len(m[1]) < 20 || !strings.HasPrefix(m[1], k.ValuePrefix) {
		t.Fatalf("created value not shown:\n%s", body)
	}
	// A name taken: the API's 409.
	r, body = post(url.Values{"op": {"create"}, "name": {"new-customer"}})
	if r.StatusCode != http.StatusConflict || !strings.Contains(body, "already exists") {
		t.Fatalf("create a taken name: %d\n%s", r.StatusCode, body)
	}
	// A change the console does not make.
	if r, _ := post(url.Values{"op": {"delete-everything"}}); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("unknown op: %d", r.StatusCode)
	}
}

var cellOf = func(class string) *regexp.Regexp {
	return regexp.MustCompile(`class="` + class + `">([0-9,]+)<`)
}

// The key page's numbers are GetUsage's.
func TestKeyPageMatchesGetUsage(t *testing.T) {
	s := newStack(t, 12, 3, now0)
	u := newUser(t, s)
	u.signIn("alice")
	for _, k := range []int{1, 11} {
		plan := "pro"
		if k >= 10 {
			plan = "basic"
		}
		p := s.state().Plan(plan)
		start, _ := p.Quota.Period.Bounds(now0.UnixNano())
		var got struct {
			Values map[string][][2]int64 `json:"values"`
		}
		s.api(t, "GET", "/usageplans/"+plan+"/usage?keyId="+keyID(k)+"&startDate="+time.Unix(0, start).UTC().Format("2006-01-02")+"&endDate="+now0.Format("2006-01-02"), &got)
		var used int64
		vals := got.Values[keyID(k)]
		for _, v := range vals {
			used += v[0]
		}
		r, body := u.do("GET", "/ui/keys/"+keyID(k), nil)
		if r.StatusCode != http.StatusOK {
			t.Fatalf("key page: %d\n%s", r.StatusCode, body)
		}
		if m := cellOf("used").FindStringSubmatch(body); m == nil || m[1] != thousands(used) {
			t.Errorf("key %d: used %v, GetUsage says %d", k, m, used)
		}
		if m := cellOf("remaining").FindStringSubmatch(body); m == nil || m[1] != thousands(vals[len(vals)-1][1]) {
			t.Errorf("key %d: remaining %v, GetUsage says %d", k, m, vals[len(vals)-1][1])
		}
	}
}

func thousands(n int64) string {
	s := []byte{}
	for i, c := range []byte(reverse(strconv.FormatInt(n, 10))) {
		if i > 0 && i%3 == 0 {
			s = append(s, ',')
		}
		s = append(s, c)
	}
	return reverse(string(s))
}

func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

// A key whose id a path escapes ("x/y") has its page, and a change made
// there reaches it, not the key whose id is its escaped form.
func TestOddKeyIDs(t *testing.T) {
	s := newStack(t, 3, 1, now0)
	for _, k := range []catalog.APIKey{
		{ID: "x/y", Name: "slash", Enabled: true, ValueHash: catalog.HashKey("slashslashslashslash01"), UsagePlans: []string{"basic"}},
		{ID: "x%2Fy", Name: "percent", Enabled: true, ValueHash: catalog.HashKey("percentpercentpercent1"), UsagePlans: []string{"basic"}},
	} {
		if _, err := s.mgr.Change(context.Background(), func(tx *catalog.Tx) error { tx.PutKey(k); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	u := newUser(t, s)
	u.signIn("alice")
	if r, body := u.do("GET", "/ui/keys/"+url.PathEscape("x/y"), nil); r.StatusCode != 200 || !strings.Contains(body, `id="key-name">slash<`) {
		t.Fatalf("the page of x/y: %d", r.StatusCode)
	}
	r, body := u.do("POST", "/ui/change", url.Values{"csrf": {u.csrf()}, "op": {"disable"}, "key": {"x/y"}})
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/keys/x%2Fy?done=disabled" {
		t.Fatalf("disable x/y: %d %s\n%s", r.StatusCode, r.Header.Get("Location"), body)
	}
	if st := s.state(); st.Key("x/y").Enabled || !st.Key("x%2Fy").Enabled {
		t.Fatal("the console disabled the wrong key")
	}
}

// The key page shows the value's fingerprint, and during a rotation's
// grace the previous value's and when it stops; past the grace, only
// the value's.
func TestKeyPageShowsRotation(t *testing.T) {
	s := newStack(t, 3, 1, now0)
	u := newUser(t, s)
	u.signIn("alice")
	k := s.state().Key(keyID(1))
	_, body := u.do("GET", "/ui/keys/"+keyID(1), nil)
	if !strings.Contains(body, `id="key-fingerprint">`+k.ValueFingerprint()+`<`) || strings.Contains(body, `id="key-previous"`) {
		t.Fatalf("a key without rotation:\n%s", body)
	}
	req, _ := http.NewRequest("POST", s.url+"/v1/apikeys/"+keyID(1)+"/rotate", strings.NewReader(`{"grace":"2h"}`))
	req.Header.Set("Authorization", "Bearer "+s.token)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 201 {
		t.Fatalf("rotate: %d", r.StatusCode)
	}
	rotated := s.state().Key(keyID(1))
	_, body = u.do("GET", "/ui/keys/"+keyID(1), nil)
	want := `id="key-previous">fingerprint <code>` + k.ValueFingerprint() + `</code>, still accepted until 2026-11-27T17:30:00Z`
	if !strings.Contains(body, `id="key-fingerprint">`+rotated.ValueFingerprint()+`<`) || !strings.Contains(body, want) {
		t.Fatalf("in the grace, the key page lacks %q:\n%s", want, body)
	}
	s.clock.ns.Add(int64(2 * time.Hour))
	if _, body = u.do("GET", "/ui/keys/"+keyID(1), nil); strings.Contains(body, `id="key-previous"`) {
		t.Fatalf("past the grace, the key page shows the previous value:\n%s", body)
	}
}
