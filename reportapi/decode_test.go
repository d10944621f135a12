package reportapi

import (
	"strings"
	"testing"
)

// raw sends body as it is, bearer-authenticated, and returns the status
// with the error type and message (or the body).
func (c *adminClient) raw(method, path, body string) (int, string) {
	c.t.Helper()
	r, b := c.send(method, path, strings.NewReader(body))
	return r.StatusCode, r.Header.Get("x-amzn-ErrorType") + " " + string(b)
}

// adminWithAKey is an admin API with one key, "existing", and its id.
func adminWithAKey(t *testing.T) (*adminClient, string) {
	t.Helper()
	c := newAdmin(t)
	code, body := c.raw("POST", "/apikeys", `{"name":"existing","value":"existing-key-value-0000001"}`)
	if code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	id := body[strings.Index(body, `"id":"`)+6:]
	return c, id[:strings.IndexByte(id, '"')]
}

// bodyCase is a request whose answer must have wantCode and contain want.
type bodyCase struct {
	name, method, path, body string
	wantCode                 int
	want                     string
}

func runBodyCases(t *testing.T, c *adminClient, tests []bodyCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := c.raw(tt.method, tt.path, tt.body)
			if len(body) > 300 {
				body = body[:300] + "…"
			}
			if code != tt.wantCode || !strings.Contains(body, tt.want) {
				t.Errorf("got %d %s, want %d with %q", code, body, tt.wantCode, tt.want)
			}
		})
	}
}

func TestAdminJSONIsStrict(t *testing.T) {
	c, id := adminWithAKey(t)
	tests := []bodyCase{
		{"trailing object", "POST", "/apikeys", `{"name":"a"} {"name":"b"}`, 400, "after the JSON object"},
		{"trailing garbage", "POST", "/apikeys", `{"name":"a"}x`, 400, "after the JSON object"},
		{"trailing whitespace is fine", "POST", "/apikeys", "{\"name\":\"ws\"}\n\t ", 201, `"name":"ws"`},
		{"duplicate field", "POST", "/apikeys", `{"name":"a","name":"b"}`, 400, `duplicate field \"name\"`},
		{"duplicate field in other case", "POST", "/apikeys", `{"name":"a","Name":"b"}`, 400, `duplicate field \"Name\"`},
		{"duplicate tag", "POST", "/apikeys", `{"name":"a","tags":{"t":"1","t":"2"}}`, 400, `duplicate field \"tags.t\"`},
		{"tags differing in case are two tags", "POST", "/apikeys", `{"name":"cased","tags":{"T":"1","t":"2"}}`, 201, `"T":"1"`},
		{"duplicate in a patch operation", "PATCH", "/apikeys/" + id, `{"patchOperations":[{"op":"replace","path":"/description","path":"/name","value":"x"}]}`, 400,
			`duplicate field \"patchOperations[0].path\"`},
		{"duplicate in a plan's stage", "POST", "/usageplans", `{"name":"p","apiStages":[{"apiId":"a","apiId":"b","stage":"s"}]}`, 400,
			`duplicate field \"apiStages[0].apiId\"`},
		{"invalid UTF-8", "POST", "/apikeys", "{\"name\":\"a\",\"description\":\"caf\xe9\"}", 400, `\"description\" is not valid UTF-8`},
		{"invalid UTF-8 in a tag", "POST", "/apikeys", "{\"name\":\"a\",\"tags\":{\"team\":\"\xff\"}}", 400, `\"tags.team\" is not valid UTF-8`},
		{"body over the bound", "POST", "/apikeys", `{"name":"a","description":"` + strings.Repeat("d", maxJSONBody) + `"}`, 413, "PayloadTooLargeException"},
	}
	runBodyCases(t, c, tests)
}

// Names, descriptions, customer ids and tags follow the catalog's rules
// (catalog.CheckName), which the configuration file and imports share.
func TestAdminFieldRules(t *testing.T) {
	c, id := adminWithAKey(t)
	tests := []bodyCase{
		{"bidi override in a key name", "POST", "/apikeys", `{"name":"admin\u202etxt.exe"}`, 400, "name: contains the bidirectional control U+202E"},
		{"bidi isolate in a plan name", "POST", "/usageplans", `{"name":"Free\u2066"}`, 400, "name: contains the bidirectional control U+2066"},
		{"control character in a key name", "POST", "/apikeys", `{"name":"a\u0007b"}`, 400, "name: contains the control character U+0007"},
		{"newline in a customer id", "POST", "/apikeys", `{"name":"a","customerId":"x\ny"}`, 400, "customerId: contains the control character U+000A"},
		{"newline in a description is fine", "POST", "/apikeys", `{"name":"multi","description":"line 1\nline 2"}`, 201, `"name":"multi"`},
		{"escape in a description", "POST", "/apikeys", `{"name":"a","description":"\u001b[31m"}`, 400, "description: contains the control character U+001B"},
		{"long name", "POST", "/apikeys", `{"name":"` + strings.Repeat("n", 1025) + `"}`, 400, "name: must be at most 1024 characters, got 1025"},
		{"long description", "POST", "/usageplans", `{"name":"p","description":"` + strings.Repeat("d", 4097) + `"}`, 400, "description: must be at most 4096 characters"},
		{"description patched too long", "PATCH", "/apikeys/" + id, `{"patchOperations":[{"op":"replace","path":"/description","value":"` + strings.Repeat("d", 4097) + `"}]}`, 400,
			"description: must be at most 4096 characters"},
		{"too many tags", "POST", "/apikeys", manyTags(51), 400, "tags: at most 50, got 51"},
		{"50 tags", "POST", "/apikeys", manyTags(50), 201, `"name":"tagged"`},
		{"long tag key", "POST", "/usageplans", `{"name":"p","tags":{"` + strings.Repeat("k", 129) + `":"v"}}`, 400, "tags: key of 129 characters; at most 128"},
		{"empty tag key", "POST", "/usageplans", `{"name":"p","tags":{"":"v"}}`, 400, "tags: a key is empty"},
		{"long tag value", "POST", "/apikeys", `{"name":"a","tags":{"k":"` + strings.Repeat("v", 257) + `"}}`, 400, `tags[\"k\"]: must be at most 256 characters`},
	}
	runBodyCases(t, c, tests)
}

// manyTags is a key creation with n tags.
func manyTags(n int) string {
	var b strings.Builder
	b.WriteString(`{"name":"tagged","tags":{`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"t` + strings.Repeat("x", i) + `":"v"`)
	}
	return b.String() + "}}"
}
