package reportapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
)

type memSaver struct{}

func (memSaver) Save(*catalog.Change) error { return nil }

type adminClient struct {
	t   *testing.T
	url string
	cat *catalog.Manager
}

// newAdmin serves the admin API on a frozen clock (bearer tokens carry no
// time; SigV4 clients need newAdminAt(t, time.Now)).
func newAdmin(t *testing.T) *adminClient {
	clock := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	return newAdminAt(t, func() time.Time { return clock })
}

func newAdminAt(t *testing.T, now func() time.Time) *adminClient {
	t.Helper()
	return newAdminWith(t, now, nil)
}

// newAdminWith is newAdminAt with the configuration edited first.
func newAdminWith(t *testing.T, now func() time.Time, edit func(*Config)) *adminClient {
	t.Helper()
	m, err := catalog.NewManager(catalog.StateOf(&catalog.Catalog{}), memSaver{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The tests make thousands of requests on a frozen clock: no throttle.
	cfg := Config{Ready: func() bool { return true }, Credentials: testCreds, Catalog: m, Usage: fakeUsage{}, Now: now,
		Throttle: AdminThrottle{RateLimit: 1e9, BurstLimit: 1 << 30}}
	if edit != nil {
		edit(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &adminClient{t: t, url: srv.URL, cat: m}
}

// call sends a bearer-authenticated request and decodes a JSON answer.
func (c *adminClient) call(method, path string, body any, out any) (int, string) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	r, b := c.send(method, path, rd)
	if r.StatusCode >= 300 {
		var e struct{ Message string }
		json.Unmarshal(b, &e)
		return r.StatusCode, r.Header.Get("x-amzn-ErrorType") + " " + e.Message
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("decode %s: %v", b, err)
		}
	}
	return r.StatusCode, string(b)
}

// send sends a bearer-authenticated request and returns the response
// with its body read.
func (c *adminClient) send(method, path string, body io.Reader) (*http.Response, []byte) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.url+path, body)
	req.Header.Set("Authorization", "Bearer "+testCreds.Token)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r, b
}

func TestCreateGetUpdateDeleteAPIKey(t *testing.T) {
	c := newAdmin(t)
	var k apiKeyJSON
	code, body := c.call("POST", "/apikeys", map[string]any{"name": "Legacy-Client", "value": "custom-api-key-value-here-min-20-chars",
		"enabled": true, "customerId": "legacy", "tags": map[string]string{"team": "a"}}, &k)
	if code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	if k.Value != "custom-api-key-value-here-min-20-chars" || len(k.ID) != 10 || !k.Enabled || k.CreatedDate != 1795773600 {
		t.Fatalf("created %+v", k)
	}
	stored := c.cat.State().Key(k.ID)
	if stored == nil || stored.ValueHash != catalog.HashKey(k.Value) {
		t.Fatal("key not in the catalog by its hash")
	}
	var got apiKeyJSON
	c.call("GET", "/apikeys/"+k.ID+"?includeValue=true", nil, &got)
	if got.Value != "cust…" || got.Name != "Legacy-Client" || got.CustomerID != "legacy" {
		t.Errorf("get = %+v; the value must be masked after creation", got)
	}
	got = apiKeyJSON{}
	c.call("GET", "/apikeys/"+k.ID, nil, &got)
	if got.Value != "" {
		t.Errorf("value shown without includeValue: %q", got.Value)
	}

	code, body = c.call("PATCH", "/apikeys/"+k.ID, map[string]any{"patchOperations": []map[string]string{
		{"op": "replace", "path": "/enabled", "value": "false"}, {"op": "replace", "path": "/name", "value": "Renamed"}}}, &got)
	if code != 200 || got.Enabled || got.Name != "Renamed" {
		t.Fatalf("update: %d %s %+v", code, body, got)
	}
	if c.cat.State().Key(k.ID).Enabled {
		t.Error("update did not reach the catalog")
	}
	if code, _ := c.call("DELETE", "/apikeys/"+k.ID, nil, nil); code != 202 {
		t.Fatalf("delete: %d", code)
	}
	if code, body := c.call("GET", "/apikeys/"+k.ID, nil, nil); code != 404 || !strings.HasPrefix(body, "NotFoundException ") {
		t.Errorf("get after delete: %d %s", code, body)
	}
}

func TestCreateAPIKeyDefaults(t *testing.T) {
	c := newAdmin(t)
	var k apiKeyJSON
	c.call("POST", "/apikeys", map[string]any{"name": "Partner-Acme-Corp"}, &k)
	if k.Enabled {
		t.Error("enabled defaults to false, as in AWS")
	}
	if len(k.Value) != 40 || catalog.CheckKeyValue(k.Value) != "" {
		t.Errorf("generated value %q", k.Value)
	}
}

func TestAPIKeyErrors(t *testing.T) {
	c := newAdmin(t)
	var k apiKeyJSON
	c.call("POST", "/apikeys", map[string]any{"name": "a", "value": "aaaaaaaaaaaaaaaaaaaaaaaa"}, &k)
	tests := []struct {
		name, method, path string
		body               any
		status             int
		want               string
	}{
		{"short value", "POST", "/apikeys", map[string]any{"name": "b", "value": "short"}, 400, "BadRequestException API Key value must be 20 to 128 characters"},
		{"duplicate value", "POST", "/apikeys", map[string]any{"name": "b", "value": "aaaaaaaaaaaaaaaaaaaaaaaa"}, 409, "ConflictException"},
		{"duplicate name", "POST", "/apikeys", map[string]any{"name": "a"}, 409, "ConflictException"},
		{"bad json", "POST", "/apikeys", `{"name": 5}`, 400, "BadRequestException Invalid request body"},
		{"unknown key", "GET", "/apikeys/nope", nil, 404, "NotFoundException"},
		{"patch unknown key", "PATCH", "/apikeys/nope", map[string]any{"patchOperations": []any{}}, 404, "NotFoundException"},
		{"patch bad path", "PATCH", "/apikeys/" + k.ID, map[string]any{"patchOperations": []map[string]string{{"op": "replace", "path": "/value", "value": "x"}}}, 400,
			`path "/value" cannot be changed; use one of /name, /description, /enabled, /customerId`},
		{"patch bad enabled", "PATCH", "/apikeys/" + k.ID, map[string]any{"patchOperations": []map[string]string{{"op": "replace", "path": "/enabled", "value": "maybe"}}}, 400,
			"/enabled must be true or false"},
		{"delete unknown", "DELETE", "/apikeys/nope", nil, 404, "NotFoundException"},
		{"bad limit", "GET", "/apikeys?limit=501", nil, 400, "limit must be an integer from 1 to 500"},
		{"bad position", "GET", "/apikeys?position=!!!", nil, 400, "Invalid position"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body any = tt.body
			if s, ok := tt.body.(string); ok {
				body = json.RawMessage(s)
			}
			code, got := c.call(tt.method, tt.path, body, nil)
			if code != tt.status || !strings.Contains(got, tt.want) {
				t.Errorf("%d %s, want %d containing %q", code, got, tt.status, tt.want)
			}
		})
	}
	// Nothing accepted before was lost.
	if c.cat.State().Key(k.ID) == nil || c.cat.State().NumKeys() != 1 {
		t.Error("a refused request changed the catalog")
	}
}

func TestListAPIKeysPaginatesAndFilters(t *testing.T) {
	c := newAdmin(t)
	for i := 0; i < 1000; i++ {
		cust := "even"
		if i%2 == 1 {
			cust = "odd"
		}
		code, body := c.call("POST", "/apikeys", map[string]any{"name": fmt.Sprintf("key-%04d", i), "customerId": cust}, nil)
		if code != 201 {
			t.Fatalf("create %d: %d %s", i, code, body)
		}
	}
	seen := map[string]bool{}
	pos, pages := "", 0
	for {
		var page struct {
			Position string
			Item     []apiKeyJSON
		}
		path := "/apikeys?limit=300"
		if pos != "" {
			path += "&position=" + pos
		}
		if code, body := c.call("GET", path, nil, &page); code != 200 {
			t.Fatalf("list: %d %s", code, body)
		}
		pages++
		for _, k := range page.Item {
			if seen[k.ID] {
				t.Fatalf("key %s on two pages", k.ID)
			}
			seen[k.ID] = true
		}
		if page.Position == "" {
			break
		}
		pos = page.Position
	}
	if len(seen) != 1000 || pages != 4 {
		t.Fatalf("%d keys over %d pages, want 1000 over 4", len(seen), pages)
	}
	var page struct{ Item []apiKeyJSON }
	c.call("GET", "/apikeys?name=key-01&customerId=odd&limit=500", nil, &page)
	if len(page.Item) != 50 {
		t.Errorf("name prefix key-01 and customer odd: %d keys, want 50", len(page.Item))
	}
	c.call("GET", "/apikeys?limit=500", nil, &page)
	if len(page.Item) != 500 {
		t.Errorf("limit 500: %d", len(page.Item))
	}
	c.call("GET", "/apikeys?name=Key-01", nil, &page)
	if len(page.Item) != 0 {
		t.Errorf("name filter is case-sensitive: got %d", len(page.Item))
	}
}

// The article's create-api-key commands, through the real aws CLI.
func TestAWSCLIApiKeys(t *testing.T) {
	awsBin, err := exec.LookPath("aws")
	if err != nil {
		if os.Getenv("TOLLGATE_REQUIRE_AWSCLI") == "1" {
			t.Fatal("aws CLI not found and TOLLGATE_REQUIRE_AWSCLI=1")
		}
		t.Skip("aws CLI not installed")
	}
	c := newAdminAt(t, time.Now)
	aws := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, awsBin, append(append([]string{"apigateway"}, args...), "--endpoint-url", c.url, "--output", "json")...)
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+testCreds.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+testCreds.SecretAccessKey,
			"AWS_DEFAULT_REGION=us-east-1", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_PAGER=",
			"AWS_MAX_ATTEMPTS=1", "AWS_EC2_METADATA_DISABLED=true")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("aws %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	aws("create-api-key", "--name", "Partner-Acme-Corp", "--description", "API key for Acme Corp integration", "--enabled")
	aws("create-api-key", "--name", "Partner-Widget-Inc", "--description", "API key for Widget Inc", "--enabled")
	out := aws("create-api-key", "--name", "Legacy-Client", "--value", "custom-api-key-value-here-min-20-chars", "--enabled")
	// Only the fields that print the same in awscli v1 and v2 (v2 shows
	// dates as ISO 8601).
	var k struct{ ID, Value string }
	if err := json.Unmarshal([]byte(out), &k); err != nil || k.Value != "custom-api-key-value-here-min-20-chars" {
		t.Fatalf("create-api-key with a value: %v %s", err, out)
	}
	var list struct {
		Items []struct{ ID, Name string } `json:"items"`
	}
	json.Unmarshal([]byte(aws("get-api-keys", "--name-query", "Partner-")), &list)
	if len(list.Items) != 2 {
		t.Errorf("get-api-keys --name-query Partner-: %+v", list.Items)
	}
	aws("update-api-key", "--api-key", k.ID, "--patch-operations", "op=replace,path=/enabled,value=false")
	if c.cat.State().Key(k.ID).Enabled {
		t.Error("update-api-key did not disable the key")
	}
	aws("delete-api-key", "--api-key", k.ID)
	if c.cat.State().Key(k.ID) != nil {
		t.Error("delete-api-key did not delete")
	}
	csvFile := t.TempDir() + "/keys.csv"
	os.WriteFile(csvFile, []byte("Name,Key,Enabled\nImported-1,imported-key-value-0000000001,true\nImported-2,imported-key-value-0000000002,false\n"), 0o600)
	var imported struct{ IDs []string }
	json.Unmarshal([]byte(aws("import-api-keys", "--body", "fileb://"+csvFile, "--format", "csv", "--fail-on-warnings")), &imported)
	if len(imported.IDs) != 2 || c.cat.State().KeyByName("Imported-2") == nil {
		t.Errorf("import-api-keys: %+v", imported)
	}
}

func (c *adminClient) importCSV(query, body string) (int, string) {
	c.t.Helper()
	req, _ := http.NewRequest("POST", c.url+"/apikeys?mode=import&format=csv"+query, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testCreds.Token)
	req.Header.Set("Content-Type", "text/csv")
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b)
}

func TestImportTenThousandKeys(t *testing.T) {
	c := newAdmin(t)
	withAPI(t, c)
	var p usagePlanJSON
	c.call("POST", "/usageplans", map[string]any{"name": "Free", "apiStages": []map[string]any{{"apiId": "abc123api", "stage": "prod"}}}, &p)
	var b strings.Builder
	b.WriteString("usageplanIds,Key,name,Enabled,Description\n")
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&b, "%s,imported-key-value-%08d,imported-%05d,true,row %d\n", p.ID, i, i, i)
	}
	start := time.Now()
	code, body := c.importCSV("", b.String())
	if code != 201 {
		t.Fatalf("import: %d %s", code, body)
	}
	var out struct {
		IDs      []string
		Warnings []string
	}
	json.Unmarshal([]byte(body), &out)
	if len(out.IDs) != 10000 || len(out.Warnings) != 0 {
		t.Fatalf("imported %d with %d warnings", len(out.IDs), len(out.Warnings))
	}
	t.Logf("10,000 keys imported in %v", time.Since(start))
	cur := c.cat.State()
	k := cur.Key(out.IDs[9999])
	if k == nil || k.Name != "imported-09999" || !k.Enabled || k.Description != "row 9999" || k.ValueHash != catalog.HashKey("imported-key-value-00009999") ||
		len(k.UsagePlans) != 1 || k.UsagePlans[0] != p.ID {
		t.Fatalf("imported key %+v", k)
	}
}

func TestImportWarnings(t *testing.T) {
	c := newAdmin(t)
	withAPI(t, c)
	var p1, p2 usagePlanJSON
	c.call("POST", "/usageplans", map[string]any{"name": "A", "apiStages": []map[string]any{{"apiId": "abc123api", "stage": "prod"}}}, &p1)
	c.call("POST", "/usageplans", map[string]any{"name": "B", "apiStages": []map[string]any{{"apiId": "abc123api", "stage": "prod"}}}, &p2)
	csvBody := "Name,Key,Enabled,UsagePlanIds\n" +
		"good,good-key-value-000000001,true,\n" +
		"short,short,true,\n" +
		"good,another-key-value-00000001,true,\n" +
		"dupvalue,good-key-value-000000001,true,\n" +
		"badbool,badbool-key-value-000001,yes please,\n" +
		"noplan,noplan-key-value-0000001,true,nope\n" +
		"twice,twice-key-value-00000001,true,PLAN;PLAN\n" +
		"twostages,twostages-key-value-0001,true,PLAN;PLAN2\n"
	csvBody = strings.ReplaceAll(strings.ReplaceAll(csvBody, "PLAN2", p2.ID), "PLAN", p1.ID)
	code, body := c.importCSV("&failonwarnings=true", csvBody)
	if code != 400 || !strings.Contains(body, "Row 3: Key must be 20 to 128 characters") {
		t.Fatalf("failonwarnings: %d %s", code, body)
	}
	if c.cat.State().NumKeys() != 0 {
		t.Fatal("a refused import created keys")
	}
	code, body = c.importCSV("", csvBody)
	var out struct {
		IDs      []string
		Warnings []string
	}
	json.Unmarshal([]byte(body), &out)
	want := []string{
		"Row 3: Key must be 20 to 128 characters long, got 5",
		`Row 4: an API key named "good" already exists`,
		"Row 5: Key already exists",
		`Row 6: Enabled must be true or false, got "yes please"`,
		`Row 7: usage plan "nope" does not exist`,
		`Row 8: usage plan "` + p1.ID + `" is listed twice`,
		`Row 9: usage plans "` + p1.ID + `" and "` + p2.ID + `" both cover stage abc123api:prod; a key may be in one`,
	}
	if code != 201 || len(out.IDs) != 1 || strings.Join(out.Warnings, "\n") != strings.Join(want, "\n") {
		t.Fatalf("import: %d %s", code, body)
	}
	for _, tt := range []struct{ query, body, want string }{
		{"", "Name,Value\nx,y\n", `unknown CSV column \"Value\"`},
		{"", "Name,Enabled\nx,true\n", "no Key column"},
		{"", "", "the CSV is empty"},
		{"&format=json", "Key\nabc\n", "format must be csv"},
	} {
		q := tt.query
		path := "/apikeys?mode=import"
		if !strings.Contains(q, "format=") {
			path += "&format=csv"
		}
		req, _ := http.NewRequest("POST", c.url+path+q, strings.NewReader(tt.body))
		req.Header.Set("Authorization", "Bearer "+testCreds.Token)
		r, _ := http.DefaultClient.Do(req)
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode != 400 || !strings.Contains(string(b), tt.want) {
			t.Errorf("%q: %d %s, want %q", tt.body, r.StatusCode, b, tt.want)
		}
	}
}

func TestApplyThroughTheAPI(t *testing.T) {
	c := newAdmin(t)
	file := `
apis:
  - id: abc123api
    stages: [{name: prod, upstream: "http://127.0.0.1:1"}]
    resources:
      - path: /items
        methods: {GET: {apiKeyRequired: true}}
usagePlans:
  - name: Free
    quota: {limit: 100, period: DAY}
    apiStages: [{apiId: abc123api, stage: prod}]
apiKeys:
  - {name: generated, enabled: true, usagePlans: [Free]}
`
	post := func(body string) (int, map[string]any) {
		req, _ := http.NewRequest("POST", c.url+"/v1/apply?name=setup.yaml", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testCreds.Token)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		var m map[string]any
		json.NewDecoder(r.Body).Decode(&m)
		return r.StatusCode, m
	}
	code, out := post(file)
	gen, _ := out["generatedKeys"].([]any)
	if code != 200 || out["changed"] != true || len(gen) != 1 {
		t.Fatalf("first apply: %d %v", code, out)
	}
	value := gen[0].(map[string]any)["value"].(string)
	if k := c.cat.State().KeyByName("generated"); k == nil || k.ValueHash != catalog.HashKey(value) {
		t.Fatal("the generated value is not the stored key's")
	}
	code, out = post(file)
	if code != 200 || out["changed"] != false {
		t.Fatalf("second apply of the same file: %d %v", code, out)
	}
	code, out = post(strings.Replace(file, "period: DAY", "period: YEAR", 1))
	if msg, _ := out["message"].(string); code != 400 || !strings.Contains(msg, "setup.yaml:") || !strings.Contains(msg, "quota.period") {
		t.Fatalf("invalid file: %d %v", code, out)
	}
	if c.cat.State().PlanByName("Free").Quota.Period != catalog.Day {
		t.Error("a refused file changed the catalog")
	}
}

func TestImportCSVForm(t *testing.T) {
	tests := []struct {
		name, body string
		wantCode   int
		want       string // in the answer
	}{
		{"byte order mark", "\uFEFFName,Key\nbom,bom-key-value-0000000001\n", 201, `"ids":["`},
		{"byte order mark alone", "\uFEFF", 400, "the CSV is empty"},
		{"column named twice", "Name,Key,name\na,dup-key-value-0000000001,b\n", 400, `CSV column \"name\" is named twice (columns 1 and 3)`},
		{"key column named twice", "Key,KEY\ndup-key-value-0000000001,x\n", 400, `CSV column \"KEY\" is named twice`},
		{"control character in a name", "Name,Key\n\"a\x1bb\",ctl-key-value-0000000001\n", 201, "Row 2: Name contains the control character U+001B"},
		{"bidi override in a description", "Name,Key,Description\nd,bidi-key-value-000000001,\"a\u202eb\"\n", 201,
			"Row 2: Description contains the bidirectional control U+202E"},
		{"invalid UTF-8 in a name", "Name,Key\n\"caf\xe9\",utf-key-value-0000000001\n", 201, "Row 2: Name is not valid UTF-8"},
		{"long description", "Name,Key,Description\nlong,long-key-value-000000001," + strings.Repeat("d", 4097) + "\n", 201,
			"Row 2: Description must be at most 4096 characters"},
		{"file over the bound", "Name,Key,Description\nbig,big-key-value-0000000001," + strings.Repeat("d", maxFileBody) + "\n", 413, "Request Too Long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newAdmin(t)
			code, body := c.importCSV("", tt.body)
			if len(body) > 300 {
				body = body[:300] + "…"
			}
			if code != tt.wantCode || !strings.Contains(body, tt.want) {
				t.Errorf("got %d %s, want %d with %q", code, body, tt.wantCode, tt.want)
			}
		})
	}
}

// An id with characters a path escapes ("a/b", which a configuration
// file may give) names its own key, not the one whose id is its escaped
// form: path parameters are unescaped once, for every route.
func TestPathParametersAreUnescaped(t *testing.T) {
	c := newAdmin(t)
	for _, k := range []catalog.APIKey{
		{ID: "a/b", Name: "slash", Enabled: true, ValueHash: catalog.HashKey("slashslashslashslash01"), UsagePlans: []string{}},
		{ID: "a%2Fb", Name: "percent", Enabled: true, ValueHash: catalog.HashKey("percentpercentpercent1"), UsagePlans: []string{}},
	} {
		if _, err := c.cat.Change(context.Background(), func(tx *catalog.Tx) error { tx.PutKey(k); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	var got apiKeyJSON
	if code, body := c.call("GET", "/apikeys/"+url.PathEscape("a/b"), nil, &got); code != 200 || got.Name != "slash" {
		t.Fatalf("GET a/b: %d %s", code, body)
	}
	if code, body := c.call("PATCH", "/apikeys/"+url.PathEscape("a/b"), map[string]any{"patchOperations": []map[string]string{{"op": "replace", "path": "/enabled", "value": "false"}}}, nil); code != 200 {
		t.Fatalf("PATCH a/b: %d %s", code, body)
	}
	if s := c.cat.State(); s.Key("a/b").Enabled || !s.Key("a%2Fb").Enabled {
		t.Fatalf("disabled the wrong key: a/b %v, a%%2Fb %v", s.Key("a/b").Enabled, s.Key("a%2Fb").Enabled)
	}
	if code, body := c.call("GET", "/apikeys/"+url.PathEscape("a%2Fb"), nil, &got); code != 200 || got.Name != "percent" {
		t.Fatalf("GET a%%2Fb: %d %s", code, body)
	}
}
