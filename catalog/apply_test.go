package catalog

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// issueExample is the configuration the gateway core must load as is.
const issueExample = `
apis:
  - id: abc123api
    name: items-api
    stages:
      - name: prod
        upstream: http://127.0.0.1:9000
    resources:
      - path: /items
        methods: {GET: {apiKeyRequired: true}, POST: {apiKeyRequired: true}}
      - path: /items/{id}
        methods: {GET: {apiKeyRequired: true}}
      - path: /health
        methods: {GET: {apiKeyRequired: false}}
usagePlans:
  - name: Free Tier
    description: Free plan for evaluation
    throttle: {rateLimit: 10, burstLimit: 20}
    quota: {limit: 100, period: DAY}
    apiStages:
      - apiId: abc123api
        stage: prod
        throttle: {"/items/POST": {rateLimit: 1, burstLimit: 2}}
apiKeys:
  - name: Partner-Widget-Inc
    value: widgetwidgetwidget0001
    enabled: true
    customerId: widget-inc
    usagePlans: [Free Tier]
`

func mustApply(t *testing.T, cur *Catalog, yaml string) (*Catalog, *Changes) {
	t.Helper()
	f, err := ParseFile("tollgate.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	c, ch, err := Apply(cur, f, now)
	if err != nil {
		t.Fatal(err)
	}
	return c, ch
}

func TestApplyIssueExample(t *testing.T) {
	c, ch := mustApply(t, &Catalog{}, issueExample)
	if !ch.Changed || len(ch.Created) != 2 {
		t.Fatalf("changes = %+v, want a plan and a key created", ch)
	}
	p := c.PlanByNameOrID("Free Tier")
	k := c.KeyByNameOrID("Partner-Widget-Inc")
	if p == nil || k == nil {
		t.Fatal("plan or key missing")
	}
	if len(p.ID) != 10 || len(k.ID) != 10 {
		t.Errorf("ids %q %q, want 10-character AWS-style ids", p.ID, k.ID)
	}
	if k.UsagePlans[0] != p.ID {
		t.Errorf("key plans = %v, want [%s]", k.UsagePlans, p.ID)
	}
	if k.ValueHash != HashKey("widgetwidgetwidget0001") || k.Value != "" {
		t.Errorf("key value not replaced by its hash: %+v", k)
	}
	if p.CreatedDate != now.Unix() {
		t.Errorf("createdDate = %d, want %d", p.CreatedDate, now.Unix())
	}
	b, _ := json.Marshal(c)
	if bytes.Contains(b, []byte("widgetwidgetwidget0001")) {
		t.Error("the catalog's JSON contains a key value")
	}
}

func TestApplyIsIdempotent(t *testing.T) {
	first, _ := mustApply(t, &Catalog{}, issueExample)
	f, _ := ParseFile("tollgate.yaml", []byte(issueExample))
	second, ch, err := Apply(first, f, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if ch.Changed || len(ch.Created) != 0 {
		t.Errorf("second apply changed the catalog: %+v", ch)
	}
	if !first.Equal(second) {
		t.Error("catalogs differ after applying the same file twice")
	}
}

func TestApplyKeepsIDsAndUpdates(t *testing.T) {
	first, _ := mustApply(t, &Catalog{}, issueExample)
	changed := strings.Replace(issueExample, "limit: 100,", "limit: 500,", 1)
	changed = strings.Replace(changed, "enabled: true", "enabled: false", 1)
	second, ch := mustApply(t, first, changed)
	if !ch.Changed {
		t.Fatal("change not detected")
	}
	p1, p2 := first.PlanByNameOrID("Free Tier"), second.PlanByNameOrID("Free Tier")
	if p1.ID != p2.ID || p1.CreatedDate != p2.CreatedDate {
		t.Errorf("plan identity changed: %s/%d → %s/%d", p1.ID, p1.CreatedDate, p2.ID, p2.CreatedDate)
	}
	if p2.Quota.Limit != 500 {
		t.Errorf("quota limit = %d, want 500", p2.Quota.Limit)
	}
	if second.KeyByNameOrID("Partner-Widget-Inc").Enabled {
		t.Error("key still enabled")
	}
}

func TestApplyGeneratesMissingValue(t *testing.T) {
	y := strings.Replace(issueExample, "    value: widgetwidgetwidget0001\n", "", 1)
	c, ch := mustApply(t, &Catalog{}, y)
	k := c.KeyByNameOrID("Partner-Widget-Inc")
	v := ch.GeneratedKeys[k.ID]
	if len(v) != 40 || CheckKeyValue(v) != "" {
		t.Fatalf("generated value %q is not a valid 40-character key", v)
	}
	if k.ValueHash != HashKey(v) {
		t.Error("stored hash does not match the generated value")
	}
	// Applying again keeps the generated value: nothing new to show.
	c2, ch2 := mustApply(t, c, y)
	if ch2.Changed || len(ch2.GeneratedKeys) != 0 || c2.KeyByNameOrID(k.ID).ValueHash != k.ValueHash {
		t.Errorf("second apply regenerated the key: %+v", ch2)
	}
}

func TestApplyKeepsEntitiesNotInFile(t *testing.T) {
	first, _ := mustApply(t, &Catalog{}, issueExample)
	other := `
usagePlans:
  - name: Other
    apiStages: []
`
	second, _ := mustApply(t, first, other)
	if second.PlanByNameOrID("Free Tier") == nil || second.PlanByNameOrID("Other") == nil {
		t.Error("apply of a second file lost or missed a plan")
	}
}

func TestValidationErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(string) string
		want []string // substrings of the error, each must appear
	}{
		{"negative rate", repl("rateLimit: 10,", "rateLimit: -1,"),
			[]string{"tollgate.yaml:", `usagePlans[0] "Free Tier"`, "throttle.rateLimit", "must not be negative"}},
		{"non-finite rate", repl("rateLimit: 10,", "rateLimit: .inf,"),
			[]string{`usagePlans[0] "Free Tier"`, "throttle.rateLimit", "finite"}},
		{"NaN rate", repl("rateLimit: 10,", "rateLimit: .nan,"),
			[]string{"throttle.rateLimit", "finite"}},
		{"negative burst", repl("burstLimit: 20", "burstLimit: -5"),
			[]string{"throttle.burstLimit", "must not be negative"}},
		{"burst 0 with rate", repl("burstLimit: 20", "burstLimit: 0"),
			[]string{"throttle.burstLimit", "is 0 while rateLimit is 10"}},
		{"negative quota", repl("limit: 100,", "limit: -100,"),
			[]string{"quota.limit", "must not be negative"}},
		{"offset above limit", repl("limit: 100,", "limit: 100, offset: 101,"),
			[]string{"quota.offset", "between 0 and the limit 100"}},
		{"unknown period", repl("period: DAY", "period: YEAR"),
			[]string{"quota.period", `"YEAR" is not one of DAY, WEEK, MONTH`}},
		{"lowercase period", repl("period: DAY", "period: day"),
			[]string{"quota.period", `"day" is not one of`}},
		{"duplicate plan name", func(s string) string {
			return strings.Replace(s, "apiKeys:", "  - name: Free Tier\n    apiStages: []\napiKeys:", 1)
		}, []string{`usagePlans`, `"Free Tier" is used by two plans`}},
		{"duplicate key name", func(s string) string {
			return s + "  - {name: Partner-Widget-Inc, value: otherotherotherother01, enabled: true}\n"
		}, []string{`apiKeys`, `"Partner-Widget-Inc" is used by two keys`}},
		{"short key value", repl("value: widgetwidgetwidget0001", "value: short"),
			[]string{"tollgate.yaml:", `apiKeys[0] "Partner-Widget-Inc"`, "value", "20 to 128 characters long, got 5"}},
		{"key value with space", repl("value: widgetwidgetwidget0001", "value: 'widget widget widget 0001'"),
			[]string{`apiKeys[0]`, "value", "without whitespace; character 7"}},
		{"key value non-ascii", repl("value: widgetwidgetwidget0001", "value: widgetwidgetwidget000é"),
			[]string{`apiKeys[0]`, "value", "printable ASCII"}},
		{"duplicate key value", func(s string) string {
			return s + "  - {name: Other, value: widgetwidgetwidget0001, enabled: true}\n"
		}, []string{`apiKeys[1] "Other"`, "value", `same as the value of key "Partner-Widget-Inc"`}},
		{"method key form", repl(`"/items/POST"`, `"items-POST"`),
			[]string{`usagePlans[0] "Free Tier"`, `apiStages[0].throttle["items-POST"]`, "/resource/METHOD"}},
		{"method key lowercase", repl(`"/items/POST"`, `"/items/post"`),
			[]string{`apiStages[0].throttle["/items/post"]`, "/resource/METHOD"}},
		{"method key unknown resource", repl(`"/items/POST"`, `"/orders/POST"`),
			[]string{`apiStages[0].throttle["/orders/POST"]`, `API "abc123api" has no resource "/orders"`}},
		{"method key undeclared method", repl(`"/items/POST"`, `"/items/{id}/DELETE"`),
			[]string{`resource "/items/{id}" of API "abc123api" declares no method DELETE`}},
		{"method throttle invalid", repl(`{rateLimit: 1, burstLimit: 2}`, `{rateLimit: 1, burstLimit: 0}`),
			[]string{`apiStages[0].throttle["/items/POST"].burstLimit`, "is 0 while rateLimit is 1"}},
		{"unknown api", repl("apiId: abc123api", "apiId: nope"),
			[]string{`apiStages[0].apiId`, `names API "nope", which does not exist`}},
		{"unknown stage", repl("stage: prod", "stage: dev"),
			[]string{`apiStages[0].stage`, `API "abc123api" has no stage "dev"`}},
		{"unknown plan", repl("usagePlans: [Free Tier]", "usagePlans: [Gold]"),
			[]string{`apiKeys[0] "Partner-Widget-Inc"`, "usagePlans[0]", `names plan "Gold", which does not exist`}},
		{"key in two plans for one stage", func(s string) string {
			s = strings.Replace(s, "apiKeys:", "  - name: Paid\n    apiStages: [{apiId: abc123api, stage: prod}]\napiKeys:", 1)
			return strings.Replace(s, "usagePlans: [Free Tier]", "usagePlans: [Free Tier, Paid]", 1)
		}, []string{`apiKeys[0] "Partner-Widget-Inc"`, `plans "Free Tier" and "Paid" both cover stage abc123api:prod`}},
		{"unknown field", repl("burstLimit: 20", "burstLimit: 20, burst: 3"),
			[]string{"tollgate.yaml", "field burst not found"}},
		{"bad upstream", repl("upstream: http://127.0.0.1:9000", "upstream: 127.0.0.1:9000"),
			[]string{`apis[0] "items-api"`, "stages[0].upstream", "absolute http://"}},
		{"bad resource path", repl("path: /items/{id}", "path: /items/{id"),
			[]string{`resources[1].path`, "unbalanced braces"}},
		{"unknown method", repl("{GET: {apiKeyRequired: false}}", "{FETCH: {apiKeyRequired: false}}"),
			[]string{`resources[2].methods.FETCH`, "unknown method"}},
		{"sibling path variables", func(s string) string {
			return strings.Replace(s, "      - path: /health\n", "      - path: /items/{name}\n        methods: {GET: {apiKeyRequired: false}}\n      - path: /health\n", 1)
		}, []string{"resources[2].path", `"/items/{name}": /items already has the path variable {id}`}},
		{"sibling greedy variable", func(s string) string {
			return strings.Replace(s, "      - path: /health\n", "      - path: /items/{proxy+}\n        methods: {GET: {apiKeyRequired: false}}\n      - path: /health\n", 1)
		}, []string{"resources[2].path", "already has the path variable {id}"}},
		{"host with port", repl("upstream: http://127.0.0.1:9000", "upstream: http://127.0.0.1:9000\n        host: api.example.com:8443"),
			[]string{"stages[0].host", "without port"}},
		{"quota over 40 bits", repl("limit: 100,", "limit: 1099511627776,"),
			[]string{"quota.limit", "must be at most 1099511627775"}},
		{"plan listed twice", repl("usagePlans: [Free Tier]", "usagePlans: [Free Tier, Free Tier]"),
			[]string{`apiKeys[0] "Partner-Widget-Inc"`, "usagePlans[1]", "lists plan"}},
		{"plan id given twice", func(s string) string {
			s = strings.Replace(s, "  - name: Free Tier\n", "  - name: Free Tier\n    id: planid0001\n", 1)
			return strings.Replace(s, "apiKeys:", "  - {name: Other, id: planid0001, apiStages: []}\napiKeys:", 1)
		}, []string{`usagePlans[1] "Other"`, "id", `"planid0001" is used by two plans`}},
		{"key id given twice", func(s string) string {
			s = strings.Replace(s, "  - name: Partner-Widget-Inc\n", "  - name: Partner-Widget-Inc\n    id: keyid00001\n", 1)
			return s + "  - {name: Other, id: keyid00001, value: otherotherotherother01, enabled: true}\n"
		}, []string{`apiKeys[1] "Other"`, `"keyid00001" is used by two keys`}},
		{"method reached through ANY", func(s string) string {
			s = strings.Replace(s, "{GET: {apiKeyRequired: true}, POST: {apiKeyRequired: true}}", "{ANY: {apiKeyRequired: true}}", 1)
			return s
		}, []string{`throttle["/items/POST"]`, "declares no method POST", "through ANY: throttle /items/ANY"}},
		{"bidi override in a description", repl("description: Free plan for evaluation", `description: "Free plan\u202e"`),
			[]string{"tollgate.yaml:", `usagePlans[0] "Free Tier"`, "description", "contains the bidirectional control U+202E at character 10"}},
		{"control character in a key name", repl("name: Partner-Widget-Inc", `name: "Partner\a"`),
			[]string{"tollgate.yaml:", `apiKeys[0] "Partner\a"`, ": name: contains the control character U+0007"}},
		{"newline in an API name", repl("name: items-api", `name: "items\napi"`),
			[]string{"tollgate.yaml:", `apis[0]`, ": name: contains the control character U+000A"}},
		{"long customer id", repl("customerId: widget-inc", "customerId: "+strings.Repeat("c", 1025)),
			[]string{"tollgate.yaml:", `apiKeys[0]`, "customerId: must be at most 1024 characters, got 1025"}},
		{"long key name, cut in the message", repl("name: Partner-Widget-Inc", "name: "+strings.Repeat("n", 2000)),
			[]string{`apiKeys[0] "` + strings.Repeat("n", 64) + `…"`, "name: must be at most 1024 characters, got 2000"}},
		{"long tag value", repl("customerId: widget-inc", "customerId: widget-inc\n    tags: {team: "+strings.Repeat("v", 257)+"}"),
			[]string{"tollgate.yaml:", `apiKeys[0]`, `tags["team"]: must be at most 256 characters, got 257`}},
		{"bidi in a tag key", repl("customerId: widget-inc", `customerId: widget-inc`+"\n    tags: {\"a\\u2067\": x}"),
			[]string{`apiKeys[0]`, "tags: key \"a\\u2067\" contains the bidirectional control U+2067"}},
		{"two errors reported together", func(s string) string {
			return repl("period: DAY", "period: YEAR")(repl("value: widgetwidgetwidget0001", "value: short")(s))
		}, []string{"quota.period", "value"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := tt.edit(issueExample)
			if y == issueExample {
				t.Fatal("edit changed nothing")
			}
			f, err := ParseFile("tollgate.yaml", []byte(y))
			if err == nil {
				_, _, err = Apply(&Catalog{}, f, now)
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// A file that fails validation changes nothing in the current catalog.
func TestApplyInvalidLeavesCatalog(t *testing.T) {
	cur, _ := mustApply(t, &Catalog{}, issueExample)
	before := cur.Clone()
	bad := strings.Replace(strings.Replace(issueExample, "limit: 100,", "limit: 7,", 1), "period: DAY", "period: YEAR", 1)
	f, _ := ParseFile("tollgate.yaml", []byte(bad))
	if _, _, err := Apply(cur, f, now); err == nil {
		t.Fatal("invalid file accepted")
	}
	if !cur.Equal(before) {
		t.Error("a refused file changed the catalog")
	}
}

func TestFileStoreRoundTrip(t *testing.T) {
	dir := t.TempDir()
	fs := FileStore{Path: filepath.Join(dir, "catalog.json")}
	empty, err := fs.Load()
	if err != nil || len(empty.APIs) != 0 {
		t.Fatalf("Load of a missing file = %+v, %v; want an empty catalog", empty, err)
	}
	c, _ := mustApply(t, &Catalog{}, issueExample)
	if err := fs.Save(c); err != nil {
		t.Fatal(err)
	}
	got, err := fs.Load()
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(c) {
		t.Error("catalog changed through Save and Load")
	}
	os.WriteFile(fs.Path, []byte("{not json"), 0o600)
	if _, err := fs.Load(); err == nil || !strings.Contains(err.Error(), "catalog.json") {
		t.Errorf("corrupt file error = %v, want one naming the file", err)
	}
}

func TestParseFileErrors(t *testing.T) {
	if _, err := ParseFile("x.yaml", []byte("")); err == nil || !strings.Contains(err.Error(), "x.yaml: the file is empty") {
		t.Errorf("empty file error = %v", err)
	}
	if _, err := ParseFile("x.yaml", []byte("apis: [")); err == nil || !strings.HasPrefix(err.Error(), "x.yaml: ") {
		t.Errorf("syntax error = %v", err)
	}
}

func repl(old, new string) func(string) string {
	return func(s string) string { return strings.Replace(s, old, new, 1) }
}

func TestGatewayBlockIsReplacedWhole(t *testing.T) {
	withGW := "gateway:\n  throttle: {rateLimit: 5, burstLimit: 5}\n  unknownRouteStatus: 404\n" + issueExample
	c, _ := mustApply(t, &Catalog{}, withGW)
	if c.Gateway.Throttle == nil || c.Gateway.UnknownRouteStatus != 404 {
		t.Fatalf("gateway = %+v", c.Gateway)
	}
	// A file without a gateway block leaves the settings alone.
	c2, ch := mustApply(t, c, issueExample)
	if ch.Changed || c2.Gateway.Throttle == nil {
		t.Fatalf("a file without gateway block changed it: %+v", c2.Gateway)
	}
	// A file with one replaces them whole: omitted fields are defaults.
	c3, _ := mustApply(t, c2, "gateway:\n  unknownRouteStatus: 404\n"+issueExample)
	if c3.Gateway.Throttle != nil || c3.Gateway.UnknownRouteStatus != 404 {
		t.Fatalf("gateway = %+v, want the throttle gone", c3.Gateway)
	}
}

func TestApplyMatchesKeysByIDOnly(t *testing.T) {
	// A key whose name looks like another key's id is not that key.
	c, _ := mustApply(t, &Catalog{}, issueExample)
	id := c.KeyByName("Partner-Widget-Inc").ID
	c2, _ := mustApply(t, c, issueExample+"  - {name: "+id+", value: otherotherotherother01, enabled: true}\n")
	if len(c2.APIKeys) != 2 || c2.KeyByName("Partner-Widget-Inc").ID != id {
		t.Fatalf("keys = %+v", c2.APIKeys)
	}
}

// A file applied to an empty catalog gives the same plan and key ids every
// time: a catalog rebuilt from its file finds its usage again (kept by id).
func TestApplyDerivesIDsFromNames(t *testing.T) {
	a, _ := mustApply(t, &Catalog{}, issueExample)
	b, _ := mustApply(t, &Catalog{}, issueExample)
	if len(a.UsagePlans) == 0 || len(a.APIKeys) == 0 {
		t.Fatal("example has no plans or keys")
	}
	for i := range a.UsagePlans {
		if a.UsagePlans[i].ID != b.UsagePlans[i].ID {
			t.Errorf("plan %q: id %s, then %s", a.UsagePlans[i].Name, a.UsagePlans[i].ID, b.UsagePlans[i].ID)
		}
	}
	for i := range a.APIKeys {
		if a.APIKeys[i].ID != b.APIKeys[i].ID {
			t.Errorf("key %q: id %s, then %s", a.APIKeys[i].Name, a.APIKeys[i].ID, b.APIKeys[i].ID)
		}
	}
	// Different names, different ids; AWS's shape (10 of [a-z0-9]).
	if p, k := a.UsagePlans[0].ID, a.APIKeys[0].ID; p == k || len(p) != 10 || strings.Trim(p, idAlphabet) != "" {
		t.Errorf("plan id %q, key id %q", p, k)
	}
	// An id already taken (here by a key the admin API renamed) is not
	// reused: the new entity gets a random one.
	c := a.Clone()
	c.APIKeys[0].Name = "renamed"
	c.APIKeys[0].ValueHash = HashKey("another-value-another-value")
	next, _ := mustApply(t, c, issueExample)
	if got := next.KeyByName(a.APIKeys[0].Name); got == nil || got.ID == a.APIKeys[0].ID {
		t.Fatalf("re-created key got id %v, the renamed key holds %s", got, a.APIKeys[0].ID)
	}
}

func TestParseFileRefusesWhatItWouldMisread(t *testing.T) {
	for _, tc := range []struct {
		name, content, want string
	}{
		{"latin-1 byte", "apis: []\nusagePlans:\n  - name: Caf\xe9\n", "x.yaml:3:14: byte 0xe9 is not UTF-8"},
		{"utf-16", "\xff\xfea\x00p\x00i\x00", "x.yaml:1:1: byte 0xff is not UTF-8 (the file looks like UTF-16)"},
		{"second document", "apis: []\n---\nusagePlans: []\n", "x.yaml:2: a second YAML document"},
		{"second document after content", issueExample + "---\napiKeys: []\n", "a second YAML document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseFile("x.yaml", []byte(tc.content))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	// A UTF-8 byte-order mark and non-ASCII names are fine.
	if _, err := ParseFile("x.yaml", []byte("\xef\xbb\xbfapis: []\nusagePlans:\n  - name: Café\n    quota: {limit: 1, period: DAY}\n")); err != nil {
		t.Fatalf("UTF-8 with a BOM: %v", err)
	}
}

func TestCheckName(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "Partner Widget, Inc. — Ünïcode", ""},
		{"replacement character written out", "a\uFFFDb", ""},
		{"invalid UTF-8", "caf\xe9", "is not valid UTF-8 (byte 4)"},
		{"truncated sequence", "ab\xe2\x80", "is not valid UTF-8 (byte 3)"},
		{"DEL", "a\x7f", "contains the control character U+007F at character 2"},
		{"C1 control", "a\u0085", "contains the control character U+0085 at character 2"},
		{"tab", "a\tb", "contains the control character U+0009 at character 2"},
		{"left-to-right embedding", "\u202a", "contains the bidirectional control U+202A at character 1"},
		{"pop directional isolate", "x\u2069", "contains the bidirectional control U+2069 at character 2"},
		{"1024 characters", strings.Repeat("é", 1024), ""},
		{"1025 characters", strings.Repeat("é", 1025), "must be at most 1024 characters, got 1025"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CheckName(tt.in); got != tt.want {
				t.Errorf("CheckName(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	if got := CheckDescription("line 1\r\n\tline 2"); got != "" {
		t.Errorf("CheckDescription with line breaks and tabs = %q, want \"\"", got)
	}
}
