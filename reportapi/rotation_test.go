package reportapi

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
)

// rotationFixture is an admin API on a clock the test moves, with an
// audit log, and one enabled key.
type rotationFixture struct {
	*adminClient
	clock atomic.Int64
	audit *catalog.AuditLog
	key   apiKeyJSON
	value string
}

func newRotationFixture(t *testing.T) *rotationFixture {
	f := &rotationFixture{}
	f.clock.Store(time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, f.clock.Load()).UTC() }
	f.adminClient = newAdminAt(t, now)
	f.audit = catalog.AuditLogAt(filepath.Join(t.TempDir(), "audit.log"))
	f.cat.SetAudit(f.audit, now)
	f.value = "oldoldoldoldoldoldold1"
	if code, body := f.call("POST", "/apikeys", map[string]any{"name": "rotating", "enabled": true, "value": f.value}, &f.key); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	return f
}

func (f *rotationFixture) advance(d time.Duration) { f.clock.Add(int64(d)) }

// rotate asks for a rotation with body and returns the answer, and the
// raw answer's Cache-Control.
func (f *rotationFixture) rotate(body any) (int, string, rotatedKeyJSON) {
	var out rotatedKeyJSON
	code, msg := f.call("POST", "/v1/apikeys/"+f.key.ID+"/rotate", body, &out)
	return code, msg, out
}

// A rotation: the new value shown once with both fingerprints and when
// the old one stops; GetApiKey and GetApiKeys show both fingerprints
// during the grace and only the new one after it; the catalog holds the
// previous value until then.
func TestRotateKey(t *testing.T) {
	f := newRotationFixture(t)
	oldFP := catalog.Fingerprint(catalog.HashKey(f.value))
	if f.key.ValueFingerprint != oldFP || f.key.PreviousValueFingerprint != "" {
		t.Fatalf("a new key: %+v", f.key)
	}
	r, b := f.send("POST", "/v1/apikeys/"+f.key.ID+"/rotate", strings.NewReader(`{"grace":"24h"}`))
	if r.StatusCode != 201 {
		t.Fatalf("rotate: %d %s", r.StatusCode, b)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store: the answer holds a key value", cc)
	}
	var got rotatedKeyJSON
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	newFP := catalog.Fingerprint(catalog.HashKey(got.Value))
	if len(got.Value) != 40 || got.ValueFingerprint != newFP || got.PreviousValueFingerprint != oldFP ||
		got.PreviousValueExpiresAt != "2026-11-28T10:00:00Z" || got.ID != f.key.ID || !got.Enabled {
		t.Fatalf("rotated: %s", b)
	}
	k := f.cat.State().Key(f.key.ID)
	if k.ValueHash != catalog.HashKey(got.Value) || k.PreviousValueHash != catalog.HashKey(f.value) ||
		k.PreviousValueUntil != time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC).UnixNano() {
		t.Fatalf("stored %+v", k)
	}
	// Shown during the grace, by GetApiKey and GetApiKeys; never a hash
	// or a value.
	var one apiKeyJSON
	f.call("GET", "/apikeys/"+f.key.ID, nil, &one)
	var list struct{ Item []apiKeyJSON }
	f.call("GET", "/apikeys", nil, &list)
	if len(list.Item) != 1 {
		t.Fatalf("GetApiKeys: %+v", list)
	}
	for _, shown := range []apiKeyJSON{one, list.Item[0]} {
		if shown.ValueFingerprint != newFP || shown.PreviousValueFingerprint != oldFP || shown.PreviousValueExpiresAt != "2026-11-28T10:00:00Z" || shown.Value != "" {
			t.Errorf("during the grace: %+v", shown)
		}
	}
	_, raw := f.send("GET", "/apikeys/"+f.key.ID+"?includeValue=true", nil)
	if strings.Contains(string(raw), k.PreviousValueHash) || strings.Contains(string(raw), k.ValueHash) || strings.Contains(string(raw), got.Value) {
		t.Errorf("GetApiKey shows a hash or the value: %s", raw)
	}
	// Rotating again in the grace: 409, saying until when and how.
	code, msg, _ := f.rotate(map[string]any{"grace": "1h"})
	if code != 409 || !strings.Contains(msg, "ConflictException") || !strings.Contains(msg, "2026-11-28T10:00:00Z") ||
		!strings.Contains(msg, "/rotate/finish") || !strings.Contains(msg, "/rotate/cancel") {
		t.Errorf("rotate in the grace: %d %q", code, msg)
	}
	// After the grace: shown no more, and the key may rotate again.
	f.advance(24 * time.Hour)
	one = apiKeyJSON{}
	f.call("GET", "/apikeys/"+f.key.ID, nil, &one)
	if one.PreviousValueFingerprint != "" || one.PreviousValueExpiresAt != "" || one.ValueFingerprint != newFP {
		t.Errorf("after the grace: %+v", one)
	}
	if code, msg, again := f.rotate(map[string]any{"graceSeconds": 60}); code != 201 || again.PreviousValueFingerprint != newFP ||
		again.PreviousValueExpiresAt != "2026-11-28T10:01:00Z" {
		t.Errorf("rotate after the grace: %d %s %+v", code, msg, again)
	}
}

// A grace of 0 is a hard cut: the old value stops at once (its end is
// now), so no rotation is in its grace.
func TestRotateKeyHardCut(t *testing.T) {
	f := newRotationFixture(t)
	f.advance(123 * time.Millisecond) // ends are whole seconds, never later than asked
	code, msg, got := f.rotate(map[string]any{"grace": "0s"})
	if code != 201 || got.PreviousValueExpiresAt != "2026-11-27T10:00:00Z" {
		t.Fatalf("grace 0: %d %s %+v", code, msg, got)
	}
	if k := f.cat.State().Key(f.key.ID); k.RotationActive(time.Unix(0, f.clock.Load())) {
		t.Fatal("a hard cut left the old value in its grace")
	}
	if code, msg := f.call("POST", "/v1/apikeys/"+f.key.ID+"/rotate/finish", nil, nil); code != 409 || !strings.Contains(msg, "stopped at 2026-11-27T10:00:00Z") {
		t.Errorf("finish after a hard cut: %d %q", code, msg)
	}
}

// Bad input is a 400 naming the field; an unknown key a 404.
func TestRotateKeyRefusals(t *testing.T) {
	f := newRotationFixture(t)
	for _, tc := range []struct {
		body any
		want string
	}{
		{map[string]any{"grace": "-1h"}, "grace: -1h0m0s is negative"},
		{map[string]any{"grace": "744h"}, "grace: 744h0m0s is over the longest grace, 30 days"},
		{map[string]any{"grace": "720h0m1s"}, "grace: 720h0m1s is over"},
		{map[string]any{"grace": "a day"}, `grace: "a day" is not a duration`},
		{map[string]any{"grace": 24}, "Invalid request body"},
		{map[string]any{"graceSeconds": -1}, "graceSeconds: -1 is outside 0 to 2592000"},
		{map[string]any{"graceSeconds": 2592001}, "graceSeconds: 2592001 is outside"},
		{map[string]any{"grace": "1h", "graceSeconds": 60}, "grace and graceSeconds: give one"},
		{map[string]any{}, "grace is required"},
	} {
		code, msg, _ := f.rotate(tc.body)
		if code != 400 || !strings.Contains(msg, "BadRequestException") || !strings.Contains(msg, tc.want) {
			t.Errorf("%v: %d %q, want 400 with %q", tc.body, code, msg, tc.want)
		}
	}
	if code, msg, _ := f.rotate(map[string]any{"grace": "720h"}); code != 201 {
		t.Fatalf("30 days: %d %s", code, msg)
	}
	var disabled apiKeyJSON
	f.call("POST", "/apikeys", map[string]any{"name": "off", "enabled": false}, &disabled)
	if code, msg := f.call("POST", "/v1/apikeys/"+disabled.ID+"/rotate", map[string]any{"grace": "1h"}, nil); code != 400 || !strings.Contains(msg, "enabled:") {
		t.Errorf("a disabled key: %d %q", code, msg)
	}
	for _, path := range []string{"/rotate", "/rotate/cancel", "/rotate/finish"} {
		if code, msg := f.call("POST", "/v1/apikeys/nosuchkey"+path, map[string]any{"grace": "1h"}, nil); code != 404 || !strings.Contains(msg, "NotFoundException") {
			t.Errorf("%s of an unknown key: %d %q", path, code, msg)
		}
	}
	for _, path := range []string{"/rotate/cancel", "/rotate/finish"} {
		if code, msg := f.call("POST", "/v1/apikeys/"+disabled.ID+path, nil, nil); code != 409 || !strings.Contains(msg, "no rotation in its grace") {
			t.Errorf("%s without a rotation: %d %q", path, code, msg)
		}
	}
}

// Cancel gives the previous value back; finish drops it; each is one
// audited change, whose line names the action and both fingerprints,
// and none holds a hash or a value.
func TestRotateCancelFinishAudited(t *testing.T) {
	f := newRotationFixture(t)
	oldHash := catalog.HashKey(f.value)
	_, _, first := f.rotate(map[string]any{"grace": "1h"})
	var k apiKeyJSON
	if code, msg := f.call("POST", "/v1/apikeys/"+f.key.ID+"/rotate/cancel", nil, &k); code != 200 {
		t.Fatalf("cancel: %d %s", code, msg)
	}
	if s := f.cat.State().Key(f.key.ID); s.ValueHash != oldHash || s.HasRotation() || k.ValueFingerprint != catalog.Fingerprint(oldHash) || k.PreviousValueFingerprint != "" {
		t.Fatalf("cancelled: stored %+v, shown %+v", s, k)
	}
	if code, _ := f.call("POST", "/v1/apikeys/"+f.key.ID+"/rotate/cancel", nil, nil); code != 409 {
		t.Errorf("cancel again: %d", code)
	}
	_, _, second := f.rotate(map[string]any{"grace": "1h"})
	if code, msg := f.call("POST", "/v1/apikeys/"+f.key.ID+"/rotate/finish", nil, &k); code != 200 {
		t.Fatalf("finish: %d %s", code, msg)
	}
	if s := f.cat.State().Key(f.key.ID); s.ValueHash != catalog.HashKey(second.Value) || s.HasRotation() || k.PreviousValueFingerprint != "" {
		t.Fatalf("finished: stored %+v, shown %+v", s, k)
	}
	entries, err := f.audit.Read()
	if err != nil {
		t.Fatal(err)
	}
	type line struct {
		action       string
		now, before  string // new and old valueFingerprint
		prev, until  string // new previousValueFingerprint, previousValueUntil
		prevWasThere bool
	}
	var got []line
	for _, e := range entries {
		if e.Kind != "apiKey" || !strings.Contains(e.Action, "/rotate") {
			continue
		}
		var o, n map[string]any
		json.Unmarshal(e.Old, &o)
		json.Unmarshal(e.New, &n)
		str := func(m map[string]any, f string) string { s, _ := m[f].(string); return s }
		l := line{action: e.Action, now: str(n, "valueFingerprint"), before: str(o, "valueFingerprint"), prev: str(n, "previousValueFingerprint")}
		if u, ok := n["previousValueUntil"].(float64); ok {
			l.until = time.Unix(0, int64(u)).UTC().Format(time.RFC3339)
		}
		got = append(got, l)
		for _, h := range []string{oldHash, catalog.HashKey(first.Value), catalog.HashKey(second.Value)} {
			if strings.Contains(string(e.Old)+string(e.New), h) {
				t.Errorf("%s: a value's hash in the audit log", e.Action)
			}
		}
		if e.Actor == "" {
			t.Errorf("%s: no actor", e.Action)
		}
	}
	oldFP, firstFP, secondFP := catalog.Fingerprint(oldHash), catalog.Fingerprint(catalog.HashKey(first.Value)), catalog.Fingerprint(catalog.HashKey(second.Value))
	id := f.key.ID
	want := []line{
		{action: "POST /v1/apikeys/" + id + "/rotate", now: firstFP, before: oldFP, prev: oldFP, until: "2026-11-27T11:00:00Z"},
		{action: "POST /v1/apikeys/" + id + "/rotate/cancel", now: oldFP, before: firstFP},
		{action: "POST /v1/apikeys/" + id + "/rotate", now: secondFP, before: oldFP, prev: oldFP, until: "2026-11-27T11:00:00Z"},
		{action: "POST /v1/apikeys/" + id + "/rotate/finish", now: secondFP, before: secondFP},
	}
	if len(got) != len(want) {
		t.Fatalf("audited %+v\nwant %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("audit line %d: %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

// The rotation routes take the signed-in actor in process as every
// route does (the console's calls), and are one change each: a failed
// change leaves nothing behind.
func TestRotateKeyIsOneChange(t *testing.T) {
	f := newRotationFixture(t)
	before := f.cat.State()
	if code, _, _ := f.rotate(map[string]any{"grace": "-5m"}); code != 400 {
		t.Fatal("a bad grace was accepted")
	}
	if f.cat.State() != before {
		t.Error("a refused rotation changed the catalog")
	}
	var n int
	_, err := f.cat.Change(context.Background(), func(tx *catalog.Tx) error { n = tx.NumKeys(); return nil })
	if err != nil || n != 1 {
		t.Fatalf("%d keys, %v", n, err)
	}
}
