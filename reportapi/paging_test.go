package reportapi

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
)

// A position is a token of the list that returned it: a malformed one,
// or one of another list or plan, is a 400 that names it, never a page
// from the start or a skip.
func TestPositionTokens(t *testing.T) {
	c := newAdmin(t)
	withAPI(t, c)
	var p1, p2 usagePlanJSON
	c.call("POST", "/usageplans", map[string]any{"name": "Free", "apiStages": []map[string]any{{"apiId": "abc123api", "stage": "prod"}}}, &p1)
	c.call("POST", "/usageplans", map[string]any{"name": "Other"}, &p2)
	for i := 0; i < 3; i++ {
		var k apiKeyJSON
		c.call("POST", "/apikeys", map[string]any{"name": fmt.Sprintf("k%d", i)}, &k)
		c.call("POST", "/usageplans/"+p1.ID+"/keys", map[string]any{"keyId": k.ID, "keyType": "API_KEY"}, nil)
		c.call("POST", "/usageplans/"+p2.ID+"/keys", map[string]any{"keyId": k.ID, "keyType": "API_KEY"}, nil)
	}
	var page struct{ Position string }
	const days = "startDate=2026-11-01&endDate=2026-11-02"
	if code, body := c.call("GET", "/usageplans/"+p1.ID+"/usage?limit=1&"+days, nil, &page); code != 200 || page.Position == "" {
		t.Fatalf("first page: %d %s", code, body)
	}
	usagePos := page.Position
	page.Position = ""
	c.call("GET", "/apikeys?limit=1", nil, &page)
	keysPos := page.Position
	tests := []struct {
		name, path string
		status     int
		want       string
	}{
		{"next page of GetUsage", "/usageplans/" + p1.ID + "/usage?limit=1&" + days + "&position=" + usagePos, 200, `"values":{`},
		{"not base64", "/usageplans/" + p1.ID + "/usage?" + days + "&position=!!!", 400, "Invalid position parameter: position is not a token"},
		{"a bare id", "/usageplans/" + p1.ID + "/usage?" + days + "&position=" + base64.RawURLEncoding.EncodeToString([]byte("zzzz")), 400, "Invalid position parameter: position is not a token"},
		{"another plan's GetUsage", "/usageplans/" + p2.ID + "/usage?" + days + "&position=" + usagePos, 400, "position belongs to another list"},
		{"GetApiKeys' on GetUsage", "/usageplans/" + p1.ID + "/usage?" + days + "&position=" + keysPos, 400, "position belongs to another list"},
		{"GetUsage's on GetApiKeys", "/apikeys?position=" + usagePos, 400, "position belongs to another list"},
		{"GetUsage's on GetUsagePlanKeys", "/usageplans/" + p1.ID + "/keys?position=" + usagePos, 400, "position belongs to another list"},
		{"GetApiKeys' on GetUsagePlans", "/usageplans?position=" + keysPos, 400, "position belongs to another list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := c.call("GET", tt.path, nil, nil)
			if code != tt.status || !strings.Contains(body, tt.want) {
				t.Errorf("%d %s\nwant %d containing %q", code, body, tt.status, tt.want)
			}
		})
	}
}

// Whatever position a client sends, paginate answers a page or a 400,
// never panics, and accepts only the tokens of its own list.
func FuzzPaginate(f *testing.F) {
	ids := []string{"a1", "b2", "c3", "d4", "e5"}
	_, next, _ := paginate(ids, func(s string) string { return s }, "usageplans/p1/usage", "", 2)
	for _, seed := range []string{"", next, "!!!", base64.RawURLEncoding.EncodeToString([]byte("b2")),
		base64.RawURLEncoding.EncodeToString([]byte("usageplans/p2/usage\x00b2")), base64.RawURLEncoding.EncodeToString([]byte("\x00"))} {
		f.Add(seed, uint16(2))
	}
	f.Fuzz(func(t *testing.T, position string, l uint16) {
		limit := int(l%500) + 1 // pageLimit allows 1 to 500
		page, next, perr := paginate(ids, func(s string) string { return s }, "usageplans/p1/usage", position, limit)
		if perr != nil {
			if perr.status != 400 || !strings.Contains(perr.msg, "position") {
				t.Fatalf("error %d %q does not name position", perr.status, perr.msg)
			}
			return
		}
		if len(page) > limit {
			t.Fatalf("%d items, limit %d", len(page), limit)
		}
		if position != "" {
			b, _ := base64.RawURLEncoding.DecodeString(position)
			if !strings.HasPrefix(string(b), "usageplans/p1/usage\x00") {
				t.Fatalf("accepted %q, a token of another list", b)
			}
		}
		if next != "" {
			if _, _, perr := paginate(ids, func(s string) string { return s }, "usageplans/p2/usage", next, limit); perr == nil {
				t.Fatal("another plan's list accepted this list's token")
			}
		}
	})
}
