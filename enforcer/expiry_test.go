package enforcer

import (
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/schemas"
)

// A key with an expiry (catalog.ExpiresAtTag) is admitted up to the
// instant before it and refused from that instant on, as a disabled key
// is; two gateways, one built with the expiry and one that learnt it by a
// later change, stop it at the same instant: the time decides, not when
// the change arrived.
func TestKeyExpires(t *testing.T) {
	at := testEpoch.Add(time.Hour)
	tagged := strings.Replace(gwYAML, "{name: widget, value: widgetwidgetwidget0001, enabled: true, usagePlans: [Free Tier]}",
		"{name: widget, value: widgetwidgetwidget0001, enabled: true, usagePlans: [Free Tier], tags: {\"tollgate:expiresAt\": \""+catalog.FormatExpiresAt(at)+"\"}}", 1)
	if tagged == gwYAML {
		t.Fatal("the test's catalog has no widget key to tag")
	}
	built := newEnv(t, tagged)
	learnt := newEnv(t, gwYAML)
	if r := learnt.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
		t.Fatalf("before the expiry was set: %d", r.status)
	}
	if err := learnt.gw.Update(learnt.catalogWith(func(c *catalog.Catalog) {
		c.KeyByName("widget").Tags = map[string]string{catalog.ExpiresAtTag: catalog.FormatExpiresAt(at)}
	})); err != nil {
		t.Fatal(err)
	}
	for _, e := range []*env{built, learnt} {
		e.clock.Store(at.UnixNano() - 1)
		if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
			t.Fatalf("a nanosecond before the expiry: %d", r.status)
		}
		e.clock.Store(at.UnixNano())
		wantAWS(t, e.do("GET", "/prod/items", "x-api-key", widget), 403, "Forbidden", "ForbiddenException")
		if ev := e.lastRejection(); ev.Decision != schemas.DecisionForbidden || ev.KeyID == "" {
			t.Errorf("at the expiry, event %+v", ev)
		}
		e.advance(24 * time.Hour)
		wantAWS(t, e.do("GET", "/prod/items", "x-api-key", widget), 403, "Forbidden", "ForbiddenException")
	}
	// Moving the expiry later (or removing it) admits the key again.
	if err := built.gw.Update(built.catalogWith(func(c *catalog.Catalog) { c.KeyByName("widget").Tags = nil })); err != nil {
		t.Fatal(err)
	}
	if r := built.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
		t.Fatalf("the expiry removed: %d", r.status)
	}
}
