package reportapi

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/notify"
)

// newWebhookAdmin serves the admin API with the URL checks of a node
// that sends notifications (the real guard: loopback and private
// addresses refused) and deliveries listed by list.
func newWebhookAdmin(t *testing.T, list DeliveryLister) *adminClient {
	clock := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	return newAdminWith(t, func() time.Time { return clock }, func(c *Config) {
		c.CheckWebhookURL = notify.Guard{}.CheckURL
		c.Deliveries = list
	})
}

// A public address given as an IP: it needs no name resolution.
const publicHook = "https://93.184.215.14/hooks/quota"

func TestWebhookLifecycle(t *testing.T) {
	c := newWebhookAdmin(t, nil)
	var w webhookJSON
	code, body := c.call("POST", "/v1/webhooks", map[string]any{"name": "ops", "url": publicHook, "secret": "s3cret"}, &w)
	if code != 201 || w.ID == "" || len(w.Thresholds) != 2 || len(w.Events) != 3 {
		t.Fatalf("create: %d %s", code, body)
	}
	if strings.Contains(body, "s3cret") {
		t.Fatalf("the answer shows the secret: %s", body)
	}
	if got := c.cat.State().Webhook(w.ID); got == nil || got.Secret != "s3cret" {
		t.Fatalf("stored %+v", got)
	}
	code, body = c.call("PATCH", "/v1/webhooks/"+w.ID, map[string]any{"thresholds": []float64{50, 90, 100}}, &w)
	if code != 200 || len(w.Thresholds) != 3 || w.URL != publicHook {
		t.Fatalf("update: %d %s", code, body)
	}
	var list struct{ Items []webhookJSON }
	if code, body := c.call("GET", "/v1/webhooks", nil, &list); code != 200 || len(list.Items) != 1 || strings.Contains(body, "s3cret") {
		t.Fatalf("list: %d %s", code, body)
	}
	if code, _ := c.call("DELETE", "/v1/webhooks/"+w.ID, nil, nil); code != 202 {
		t.Fatalf("delete: %d", code)
	}
	if code, _ := c.call("GET", "/v1/webhooks/"+w.ID, nil, nil); code != 404 {
		t.Fatalf("get after delete: %d", code)
	}
}

// Bad input to POST and PATCH is a 400 whose message names the field,
// and changes nothing.
func TestWebhookErrors(t *testing.T) {
	c := newWebhookAdmin(t, nil)
	var w webhookJSON
	if code, body := c.call("POST", "/v1/webhooks", map[string]any{"name": "ops", "url": publicHook, "secret": "s3cret"}, &w); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	with := func(k string, v any) map[string]any {
		b := map[string]any{"name": "other", "url": publicHook, "secret": "x"}
		if v == nil {
			delete(b, k)
		} else {
			b[k] = v
		}
		return b
	}
	tests := []struct {
		name string
		body map[string]any
		want string // in the message, after the field's name
	}{
		{"ftp url", with("url", "ftp://93.184.215.14/q"), "url: must be an http or https URL"},
		{"relative url", with("url", "/hooks"), "url: "},
		{"no url", with("url", nil), "url: is required"},
		{"loopback url", with("url", "http://127.0.0.1:8080/q"), "url: is refused"},
		{"private url", with("url", "https://10.0.0.7/q"), "url: is refused"},
		{"metadata url", with("url", "http://169.254.169.254/latest/meta-data"), "url: is refused"},
		{"unresolvable url", with("url", "https://no-such-host.invalid/q"), "url: is unreachable"},
		{"threshold 0", with("thresholds", []float64{0}), "thresholds"},
		{"threshold 101", with("thresholds", []float64{80, 101}), "thresholds"},
		{"threshold negative", with("thresholds", []float64{-5}), "thresholds"},
		{"empty secret", with("secret", ""), "secret: is required"},
		{"no secret", with("secret", nil), "secret: is required"},
		{"unknown event", with("events", []string{"key.deleted"}), "events"},
	}
	for _, tt := range tests {
		t.Run("POST "+tt.name, func(t *testing.T) {
			code, got := c.call("POST", "/v1/webhooks", tt.body, nil)
			if code != 400 || !strings.Contains(got, tt.want) {
				t.Errorf("%d %s, want 400 containing %q", code, got, tt.want)
			}
		})
		if tt.name == "no url" || tt.name == "no secret" {
			continue // PATCH leaves an absent field as it is
		}
		t.Run("PATCH "+tt.name, func(t *testing.T) {
			body := tt.body
			delete(body, "name")
			code, got := c.call("PATCH", "/v1/webhooks/"+w.ID, body, nil)
			if code != 400 || !strings.Contains(got, tt.want) {
				t.Errorf("%d %s, want 400 containing %q", code, got, tt.want)
			}
		})
	}
	st := c.cat.State()
	if hooks := st.Webhooks(); len(hooks) != 1 || hooks[0].URL != publicHook || hooks[0].Secret != "s3cret" || len(hooks[0].Thresholds) != 0 {
		t.Errorf("a refused request changed the webhooks: %+v", hooks)
	}
}

// fakeDeliveries lists what it holds, recording the filter.
type fakeDeliveries struct {
	list []notify.Delivery
	got  *notify.Filter
}

func (f fakeDeliveries) List(_ context.Context, flt notify.Filter) ([]notify.Delivery, error) {
	*f.got = flt
	return f.list[:min(len(f.list), flt.Limit)], nil
}

func TestWebhookDeliveries(t *testing.T) {
	if code, _ := newWebhookAdmin(t, nil).call("GET", "/v1/webhooks/deliveries", nil, nil); code != 501 {
		t.Fatalf("deliveries on a node that sends none: %d, want 501", code)
	}
	at := time.Date(2026, 11, 27, 9, 0, 0, 5, time.UTC)
	f := fakeDeliveries{got: new(notify.Filter), list: []notify.Delivery{
		{ID: "a", WebhookID: "w1", Created: at, State: "pending"}, {ID: "b", WebhookID: "w1", Created: at, State: "delivered"}}}
	c := newWebhookAdmin(t, f)
	var page struct {
		Items    []notify.Delivery
		Position string
	}
	if code, body := c.call("GET", "/v1/webhooks/deliveries?limit=2&state=pending&webhookId=w1", nil, &page); code != 200 || len(page.Items) != 2 || page.Position == "" {
		t.Fatalf("list: %d %s", code, body)
	}
	if f.got.State != notify.Pending || f.got.WebhookID != "w1" || f.got.Limit != 2 {
		t.Fatalf("filter %+v", *f.got)
	}
	if code, body := c.call("GET", "/v1/webhooks/deliveries?limit=2&position="+page.Position, nil, nil); code != 200 ||
		!f.got.Before.Equal(at) || f.got.BeforeID != "b" {
		t.Fatalf("next page: %d %s, filter %+v", code, body, *f.got)
	}
	for _, q := range []string{"state=lost", "position=nope", "before=yesterday", "limit=0"} {
		if code, body := c.call("GET", "/v1/webhooks/deliveries?"+q, nil, nil); code != 400 || !strings.Contains(body, strings.Split(q, "=")[0]) {
			t.Errorf("%s: %d %s, want 400 naming the parameter", q, code, body)
		}
	}
}

// A node that sends notifications without serving the catalog (the
// aggregator's admin listener) lists its deliveries, and nothing of the
// catalog.
func TestDeliveriesWithoutCatalog(t *testing.T) {
	f := fakeDeliveries{got: new(notify.Filter), list: []notify.Delivery{{ID: "a", WebhookID: "w1", State: "pending"}}}
	c := newAdminWith(t, time.Now, func(c *Config) {
		c.Catalog, c.Usage, c.Quotas, c.Minutes = nil, nil, nil, nil
		c.Deliveries = f
	})
	var page struct{ Items []notify.Delivery }
	if code, body := c.call("GET", "/v1/webhooks/deliveries", nil, &page); code != 200 || len(page.Items) != 1 {
		t.Fatalf("deliveries: %d %s", code, body)
	}
	for _, path := range []string{"/v1/webhooks", "/apikeys"} {
		if code, _ := c.call("GET", path, nil, nil); code != 404 {
			t.Errorf("GET %s on a node without the catalog: %d, want 404", path, code)
		}
	}
}
