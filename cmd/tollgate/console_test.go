package main

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/catalog"
)

// serve mounts the console on its admin listener: signed in with the
// token, a disable made there reaches the gateway and the audit log under
// the signed-in name; --no-console leaves it out.
func TestServeServesTheConsole(t *testing.T) {
	_, data, cfg := fixture(t)
	now := frozen
	n := start(t, data, cfg, &now)
	creds := adminCreds(t, data)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	admin := "http://" + n.addrs.admin
	page := func(method, path string, form url.Values) (int, string) {
		t.Helper()
		var r *http.Response
		var err error
		if form == nil {
			r, err = c.Get(admin + path)
		} else {
			r, err = c.PostForm(admin+path, form)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, string(b)
	}
	if code, body := page("GET", "/ui/", nil); code != 200 || !strings.Contains(body, `id="token"`) {
		t.Fatalf("the console before sign-in: %d, not the sign-in page", code)
	}
	if code, body := page("POST", "/ui/signin", url.Values{"token": {creds.Token}, "name": {"ops"}}); code != 200 || !strings.Contains(body, "Overview") {
		t.Fatalf("sign in: %d\n%s", code, body)
	}
	_, body := page("GET", "/ui/keys?q=widget", nil)
	m := regexp.MustCompile(`href="/ui/keys/([^"]+)">widget<`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no widget key listed:\n%s", body)
	}
	id := m[1]
	_, body = page("GET", "/ui/keys/"+id, nil)
	tok := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(body)
	if tok == nil {
		t.Fatalf("no form token:\n%s", body)
	}
	if code, body := page("POST", "/ui/change", url.Values{"csrf": {tok[1]}, "op": {"disable"}, "key": {id}}); code != 200 || !strings.Contains(body, "The key is disabled") {
		t.Fatalf("disable: %d\n%s", code, body)
	}
	if code, _ := get(t, "http://"+n.addrs.gateway+"/prod/items", "widgetwidgetwidget0001"); code != 403 {
		t.Fatalf("the gateway after the console's disable: %d, want 403", code)
	}
	entries, _, err := catalog.AuditLogAt(data+"/"+auditFile).Recent("", nil, 1, 1<<20)
	if err != nil || len(entries) != 1 || entries[0].Actor != "console:ops" || entries[0].ID != id {
		t.Fatalf("audit: %+v %v", entries, err)
	}

	// --no-console: /ui/ is an unknown path of the API (which asks for
	// credentials first).
	n.stop(t)
	o := testServeOptions(data, cfg, &now)
	o.noConsole = true
	n2 := startWith(t, o)
	r, err := http.Get("http://" + n2.addrs.admin + "/ui/")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusForbidden {
		t.Fatalf("--no-console: /ui/ answered %d", r.StatusCode)
	}
}
