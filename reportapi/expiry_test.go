package reportapi

import (
	"strings"
	"testing"

	"github.com/tollgate/tollgate/catalog"
)

// A key's expiry: set natively (expiresAt) or as the tag the AWS CLI sets
// (tollgate:expiresAt), shown both ways, changed and removed by
// UpdateApiKey; a time in the past, one that does not parse, or the two
// ways disagreeing is a 400 that names the field.
func TestKeyExpiry(t *testing.T) {
	c := newAdmin(t) // 2026-11-27T10:00:00Z
	var k apiKeyJSON
	if code, body := c.call("POST", "/apikeys", map[string]any{"name": "native", "enabled": true, "expiresAt": "2027-01-31T00:00:00Z"}, &k); code != 201 {
		t.Fatalf("create with expiresAt: %d %s", code, body)
	}
	if k.ExpiresAt != "2027-01-31T00:00:00Z" || k.Tags[catalog.ExpiresAtTag] != "2027-01-31T00:00:00Z" {
		t.Fatalf("created %+v", k)
	}
	if got := c.cat.State().Key(k.ID).ExpiresAt(); got != 1801353600e9 {
		t.Fatalf("stored expiry %d", got)
	}
	var tagged apiKeyJSON
	if code, body := c.call("POST", "/apikeys", map[string]any{"name": "tagged", "enabled": true,
		"tags": map[string]string{catalog.ExpiresAtTag: "2027-02-01T12:00:00+02:00", "team": "a"}}, &tagged); code != 201 {
		t.Fatalf("create with the tag: %d %s", code, body)
	}
	if tagged.ExpiresAt != "2027-02-01T10:00:00Z" || tagged.Tags["team"] != "a" {
		t.Fatalf("tagged %+v", tagged)
	}
	for _, bad := range []struct {
		body map[string]any
		want string
	}{
		{map[string]any{"name": "past", "expiresAt": "2026-11-01T00:00:00Z"}, "expiresAt: 2026-11-01T00:00:00Z is not in the future"},
		{map[string]any{"name": "now", "expiresAt": "2026-11-27T10:00:00Z"}, "expiresAt: 2026-11-27T10:00:00Z is not in the future"},
		{map[string]any{"name": "garbled", "expiresAt": "next tuesday"}, `expiresAt: "next tuesday" is not an RFC 3339 time`},
		{map[string]any{"name": "tag past", "tags": map[string]string{catalog.ExpiresAtTag: "2020-01-01T00:00:00Z"}}, `tags["tollgate:expiresAt"]: 2020-01-01T00:00:00Z is not in the future`},
		{map[string]any{"name": "both", "expiresAt": "2027-01-01T00:00:00Z", "tags": map[string]string{catalog.ExpiresAtTag: "2027-02-01T00:00:00Z"}}, "differ"},
	} {
		code, msg := c.call("POST", "/apikeys", bad.body, nil)
		if code != 400 || !strings.Contains(msg, bad.want) {
			t.Errorf("%v: %d %q, want 400 with %q", bad.body, code, msg, bad.want)
		}
	}
	patch := func(op, value string) (int, string) {
		var out apiKeyJSON
		code, msg := c.call("PATCH", "/apikeys/"+k.ID, map[string]any{"patchOperations": []map[string]string{{"op": op, "path": "/expiresAt", "value": value}}}, &out)
		if code == 200 {
			return code, out.ExpiresAt
		}
		return code, msg
	}
	if code, got := patch("replace", "2027-03-01T00:00:00Z"); code != 200 || got != "2027-03-01T00:00:00Z" {
		t.Fatalf("move the expiry: %d %q", code, got)
	}
	if code, msg := patch("replace", "2026-11-27T09:59:59Z"); code != 400 || !strings.Contains(msg, "patchOperations[0]: /expiresAt: 2026-11-27T09:59:59Z is not in the future") {
		t.Fatalf("an expiry in the past: %d %q", code, msg)
	}
	if code, got := patch("remove", ""); code != 200 || got != "" {
		t.Fatalf("remove the expiry: %d %q", code, got)
	}
	if e := c.cat.State().Key(k.ID).ExpiresAt(); e != 0 {
		t.Fatalf("after remove, expiry %d", e)
	}
	var got apiKeyJSON
	c.call("GET", "/apikeys/"+tagged.ID, nil, &got)
	if got.ExpiresAt != "2027-02-01T10:00:00Z" {
		t.Fatalf("GetApiKey: %+v", got)
	}
}
