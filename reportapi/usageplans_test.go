package reportapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/usage"
)

// withAPI gives the admin test server's catalog an API to attach plans to.
func withAPI(t *testing.T, c *adminClient) {
	t.Helper()
	_, err := c.cat.Change(context.Background(), func(tx *catalog.Tx) error {
		tx.PutAPI(catalog.API{ID: "abc123api", Stages: []catalog.Stage{{Name: "prod", Upstream: "http://127.0.0.1:1"}},
			Resources: []catalog.Resource{{Path: "/items", Methods: map[string]catalog.Method{"GET": {APIKeyRequired: true}, "POST": {APIKeyRequired: true}}}}})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestUsagePlanLifecycle(t *testing.T) {
	c := newAdmin(t)
	withAPI(t, c)
	var p usagePlanJSON
	code, body := c.call("POST", "/usageplans", map[string]any{"name": "Free", "throttle": map[string]any{"rateLimit": 10.5, "burstLimit": 20},
		"quota": map[string]any{"limit": 100, "period": "DAY"}, "apiStages": []map[string]any{{"apiId": "abc123api", "stage": "prod"}}}, &p)
	if code != 201 || p.Throttle.RateLimit != 10.5 || p.Quota.Offset != 0 {
		t.Fatalf("create: %d %s", code, body)
	}
	ops := []map[string]string{
		{"op": "replace", "path": "/throttle/rateLimit", "value": "5"},
		{"op": "replace", "path": "/quota/limit", "value": "50"},
		{"op": "replace", "path": "/quota/period", "value": "WEEK"},
		{"op": "replace", "path": "/apiStages/abc123api:prod/throttle/~1items/POST/rateLimit", "value": "1"},
		{"op": "replace", "path": "/apiStages/abc123api:prod/throttle/~1items/POST/burstLimit", "value": "2"},
		{"op": "replace", "path": "/name", "value": "Free 2"},
	}
	code, body = c.call("PATCH", "/usageplans/"+p.ID, map[string]any{"patchOperations": ops}, &p)
	if code != 200 {
		t.Fatalf("update: %d %s", code, body)
	}
	stored := c.cat.State().Plan(p.ID)
	if stored.Name != "Free 2" || stored.Throttle.RateLimit != 5 || stored.Quota.Limit != 50 || stored.Quota.Period != catalog.Week ||
		stored.APIStages[0].Throttle["/items/POST"] != (catalog.Throttle{RateLimit: 1, BurstLimit: 2}) {
		t.Fatalf("stored plan %+v %+v", stored, stored.APIStages)
	}
	var k apiKeyJSON
	c.call("POST", "/apikeys", map[string]any{"name": "a", "enabled": true}, &k)
	if code, body := c.call("POST", "/usageplans/"+p.ID+"/keys", map[string]any{"keyId": k.ID, "keyType": "API_KEY"}, nil); code != 201 {
		t.Fatalf("add key: %d %s", code, body)
	}
	var plans struct{ Item []usagePlanJSON }
	c.call("GET", "/usageplans?keyId="+k.ID, nil, &plans)
	if len(plans.Item) != 1 || plans.Item[0].ID != p.ID {
		t.Errorf("plans of the key: %+v", plans)
	}
	if code, _ := c.call("DELETE", "/usageplans/"+p.ID, nil, nil); code != 202 {
		t.Fatalf("delete: %d", code)
	}
	if refs := c.cat.State().Key(k.ID).UsagePlans; len(refs) != 0 {
		t.Errorf("the deleted plan is still on the key: %v", refs)
	}
}

func TestUsagePlanErrors(t *testing.T) {
	c := newAdmin(t)
	withAPI(t, c)
	var p, p2 usagePlanJSON
	c.call("POST", "/usageplans", map[string]any{"name": "Free", "apiStages": []map[string]any{{"apiId": "abc123api", "stage": "prod"}}}, &p)
	c.call("POST", "/usageplans", map[string]any{"name": "Paid", "apiStages": []map[string]any{{"apiId": "abc123api", "stage": "prod"}}}, &p2)
	var k apiKeyJSON
	c.call("POST", "/apikeys", map[string]any{"name": "a"}, &k)
	c.call("POST", "/usageplans/"+p.ID+"/keys", map[string]any{"keyId": k.ID, "keyType": "API_KEY"}, nil)
	patch := func(path, value string) map[string]any {
		return map[string]any{"patchOperations": []map[string]string{{"op": "replace", "path": path, "value": value}}}
	}
	tests := []struct {
		name, method, path string
		body               any
		status             int
		want               string
	}{
		{"unknown stage", "POST", "/usageplans", map[string]any{"name": "X", "apiStages": []map[string]any{{"apiId": "abc123api", "stage": "dev"}}}, 400, `API "abc123api" has no stage "dev"`},
		{"bad throttle", "POST", "/usageplans", map[string]any{"name": "X", "throttle": map[string]any{"rateLimit": 5, "burstLimit": 0}}, 400, "throttle.burstLimit"},
		{"bad period", "POST", "/usageplans", map[string]any{"name": "X", "quota": map[string]any{"limit": 5, "period": "YEAR"}}, 400, "quota.period"},
		{"no name", "POST", "/usageplans", map[string]any{}, 400, "name is required"},
		{"duplicate name", "POST", "/usageplans", map[string]any{"name": "Free"}, 409, "ConflictException"},
		{"unknown plan", "GET", "/usageplans/nope", nil, 404, "Invalid Usage Plan ID specified"},
		{"patch unknown path", "PATCH", "/usageplans/" + p.ID, patch("/productCode", "x"), 400, "unsupported operation; the paths are /name"},
		{"patch not a number", "PATCH", "/usageplans/" + p.ID, patch("/throttle/rateLimit", "fast"), 400, `value "fast" is not a number`},
		{"patch invalid result", "PATCH", "/usageplans/" + p.ID, patch("/quota/period", "YEAR"), 400, "quota.period"},
		{"patch method of unknown resource", "PATCH", "/usageplans/" + p.ID, patch("/apiStages/abc123api:prod/throttle/~1orders/GET/rateLimit", "1"), 400, `has no resource "/orders"`},
		{"key type", "POST", "/usageplans/" + p.ID + "/keys", map[string]any{"keyId": k.ID, "keyType": "OTHER"}, 400, "keyType must be API_KEY"},
		{"unknown key", "POST", "/usageplans/" + p.ID + "/keys", map[string]any{"keyId": "nope", "keyType": "API_KEY"}, 404, "Invalid API Key identifier"},
		{"key twice", "POST", "/usageplans/" + p.ID + "/keys", map[string]any{"keyId": k.ID, "keyType": "API_KEY"}, 409, "already in usage plan"},
		{"second plan same stage", "POST", "/usageplans/" + p2.ID + "/keys", map[string]any{"keyId": k.ID, "keyType": "API_KEY"}, 409, "cannot reference multiple Usage Plans with the same API Stage"},
		{"key not in plan", "GET", "/usageplans/" + p2.ID + "/keys/" + k.ID, nil, 404, "Invalid API Key identifier"},
		{"remove key not in plan", "DELETE", "/usageplans/" + p2.ID + "/keys/" + k.ID, nil, 404, "NotFoundException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, got := c.call(tt.method, tt.path, tt.body, nil)
			if code != tt.status || !strings.Contains(got, tt.want) {
				t.Errorf("%d %s, want %d containing %q", code, got, tt.status, tt.want)
			}
		})
	}
	// Nothing accepted before was lost.
	cur := c.cat.State()
	if cur.NumPlans() != 2 || cur.Plan(p.ID).Quota != nil || len(cur.Key(k.ID).UsagePlans) != 1 {
		t.Errorf("a refused request changed the catalog: %+v", cur.Catalog().UsagePlans)
	}
}

type fakeUsage []usage.DayCount

func (f fakeUsage) Daily(context.Context, usage.Filter) ([]usage.DayCount, error) { return f, nil }

func TestGetUsageErrors(t *testing.T) {
	c := newAdmin(t)
	withAPI(t, c)
	var p usagePlanJSON
	c.call("POST", "/usageplans", map[string]any{"name": "Free"}, &p)
	for _, tt := range []struct{ query, want string }{
		{"startDate=2026-11-01", `endDate: "" is not a date`},
		{"startDate=11/01/2026&endDate=2026-11-02", "startDate:"},
		{"startDate=2026-11-02&endDate=2026-11-01", "endDate 2026-11-01 is before startDate 2026-11-02"},
		{"startDate=2026-11-01&endDate=2026-11-02&keyId=nope", "Invalid API Key identifier"},
	} {
		if code, got := c.call("GET", "/usageplans/"+p.ID+"/usage?"+tt.query, nil, nil); code < 400 || !strings.Contains(got, tt.want) {
			t.Errorf("%s: %d %s, want %q", tt.query, code, got, tt.want)
		}
	}
}

func TestPlanKeysFilterAndPages(t *testing.T) {
	c := newAdmin(t)
	withAPI(t, c)
	var p usagePlanJSON
	c.call("POST", "/usageplans", map[string]any{"name": "Free", "apiStages": []map[string]any{{"apiId": "abc123api", "stage": "prod"}}}, &p)
	for i := 0; i < 30; i++ {
		var k apiKeyJSON
		name := fmt.Sprintf("a-%02d", i)
		if i >= 20 {
			name = fmt.Sprintf("b-%02d", i)
		}
		c.call("POST", "/apikeys", map[string]any{"name": name}, &k)
		c.call("POST", "/usageplans/"+p.ID+"/keys", map[string]any{"keyId": k.ID, "keyType": "API_KEY"}, nil)
	}
	var page struct {
		Position string
		Item     []usagePlanKeyJSON
	}
	c.call("GET", "/usageplans/"+p.ID+"/keys?name=b-", nil, &page)
	if len(page.Item) != 10 || page.Position != "" {
		t.Fatalf("name filter b-: %d items, position %q", len(page.Item), page.Position)
	}
	c.call("GET", "/usageplans/"+p.ID+"/keys?limit=25", nil, &page)
	first := len(page.Item)
	pos := page.Position
	page.Position = ""
	c.call("GET", "/usageplans/"+p.ID+"/keys?limit=25&position="+pos, nil, &page)
	if first != 25 || len(page.Item) != 5 || page.Position != "" {
		t.Fatalf("pages of 25: %d then %d", first, len(page.Item))
	}
	var list struct{ Item []apiKeyJSON }
	c.call("GET", "/apikeys?limit=1", nil, &list)
	if len(list.Item) != 1 || list.Item[0].Value != "" {
		t.Errorf("value listed without includeValues: %+v", list.Item)
	}
	c.call("GET", "/apikeys?limit=1&includeValues=true", nil, &list)
	if !strings.HasSuffix(list.Item[0].Value, "…") {
		t.Errorf("includeValues: %+v", list.Item)
	}
}

type fakeAdjuster struct{ err error }

func (f fakeAdjuster) SetRemaining(context.Context, string, string, int64) error { return f.err }

func TestUpdateUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		name   string
		err    error
		body   string
		status int
		want   string
	}{
		{"not a number", nil, `{"patchOperations":[{"op":"replace","path":"/remaining","value":"lots"}]}`, 400, "/remaining must be an integer"},
		{"wrong path", nil, `{"patchOperations":[{"op":"replace","path":"/used","value":"1"}]}`, 400, "one replace of /remaining"},
		{"out of range", fmt.Errorf("%w: it must be between 0 and 5", catalog.ErrRemainingOutOfRange), `{"patchOperations":[{"op":"replace","path":"/remaining","value":"9"}]}`, 400, "between 0 and 5"},
		{"gateway lost the key", fmt.Errorf("gone: %w", catalog.ErrNoSuchKeyPlan), `{"patchOperations":[{"op":"replace","path":"/remaining","value":"1"}]}`, 404, "gone"},
		{"store failed", fmt.Errorf("disk full"), `{"patchOperations":[{"op":"replace","path":"/remaining","value":"1"}]}`, 500, "disk full"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := catalog.NewManager(catalog.StateOf(&catalog.Catalog{
				UsagePlans: []catalog.UsagePlan{{ID: "p1", Name: "Free", Quota: &catalog.Quota{Limit: 5, Period: catalog.Day}, APIStages: []catalog.APIStage{}},
					{ID: "p2", Name: "NoQuota", APIStages: []catalog.APIStage{}}},
				APIKeys: []catalog.APIKey{{ID: "k1", Name: "a", ValueHash: catalog.HashKey("aaaaaaaaaaaaaaaaaaaaaa"), UsagePlans: []string{"p1", "p2"}}},
			}), memSaver{}, nil)
			h, _ := New(Config{Ready: func() bool { return true }, Credentials: testCreds, Catalog: m, Usage: fakeUsage{}, Quotas: fakeAdjuster{tt.err}})
			srv := httptest.NewServer(h)
			defer srv.Close()
			c := &adminClient{t: t, url: srv.URL, cat: m}
			var body map[string]any
			json.Unmarshal([]byte(tt.body), &body)
			code, got := c.call("PATCH", "/usageplans/p1/keys/k1/usage", body, nil)
			if code != tt.status || !strings.Contains(got, tt.want) {
				t.Errorf("%d %s, want %d containing %q", code, got, tt.status, tt.want)
			}
			if code, _ := c.call("PATCH", "/usageplans/p1/keys/nope/usage", body, nil); code != 404 {
				t.Errorf("unknown key: %d", code)
			}
		})
	}
}
