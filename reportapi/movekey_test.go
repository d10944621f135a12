package reportapi

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
)

// moveFixture is an admin server whose catalog holds an API of two
// stages, plans on them, and keys:
//
//	free, paid: prod    beta, beta2: beta
//	key "k": free and beta    key "k2": paid
//
// Every change the gateway is handed is kept (published).
type moveFixture struct {
	*adminClient
	audit *catalog.AuditLog
	mu    sync.Mutex
	// published holds the plans of key k in each catalog handed to the
	// gateway that touched it.
	published [][]string
}

func newMoveFixture(t *testing.T) *moveFixture {
	t.Helper()
	f := &moveFixture{}
	m, err := catalog.NewManager(catalog.StateOf(&catalog.Catalog{}), memSaver{}, func(ch *catalog.Change) error {
		if slices.Contains(ch.Delta.Keys, "k") {
			f.mu.Lock()
			f.published = append(f.published, slices.Clone(ch.New.Key("k").UsagePlans))
			f.mu.Unlock()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }
	f.adminClient = newAdminWith(t, now, func(cfg *Config) { cfg.Catalog = m })
	f.cat = m
	_, err = m.Change(context.Background(), func(tx *catalog.Tx) error {
		tx.PutAPI(catalog.API{ID: "shop", Stages: []catalog.Stage{{Name: "prod", Upstream: "http://127.0.0.1:1"}, {Name: "beta", Upstream: "http://127.0.0.1:1"}},
			Resources: []catalog.Resource{{Path: "/items", Methods: map[string]catalog.Method{"GET": {APIKeyRequired: true}}}}})
		for _, p := range []struct{ id, stage string }{{"free", "prod"}, {"paid", "prod"}, {"beta", "beta"}, {"beta2", "beta"}} {
			tx.PutPlan(catalog.UsagePlan{ID: p.id, Name: p.id, APIStages: []catalog.APIStage{{APIID: "shop", Stage: p.stage}}})
		}
		tx.PutKey(catalog.APIKey{ID: "k", Name: "key-k", Enabled: true, ValueHash: catalog.HashKey("value-of-k-0123456789"), ValuePrefix: "valu", UsagePlans: []string{"free", "beta"}})
		tx.PutKey(catalog.APIKey{ID: "k2", Name: "key-k2", Enabled: true, ValueHash: catalog.HashKey("value-of-k2-0123456789"), ValuePrefix: "valu", UsagePlans: []string{"paid"}})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Audited from here: the log holds what the tests do.
	f.audit = catalog.AuditLogAt(filepath.Join(t.TempDir(), "audit.log"))
	m.SetAudit(f.audit, now)
	f.mu.Lock()
	f.published = nil
	f.mu.Unlock()
	return f
}

// gateway returns what published holds.
func (f *moveFixture) gateway() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.published)
}

// members lists, per plan, the keys the catalog has in it (through the
// membership index the gateway's bindings follow).
func (f *moveFixture) members() map[string][]string {
	s := f.cat.State()
	out := map[string][]string{}
	for _, p := range []string{"free", "paid", "beta", "beta2"} {
		out[p] = []string{}
		s.PlanKeys(p, "", func(k *catalog.APIKey) bool { out[p] = append(out[p], k.ID); return true })
	}
	return out
}

func TestMoveKey(t *testing.T) {
	f := newMoveFixture(t)
	var got usagePlanKeyJSON
	code, body := f.call("POST", "/v1/apikeys/k/move", map[string]string{"fromUsagePlanId": "free", "toUsagePlanId": "paid"}, &got)
	if code != 200 {
		t.Fatalf("move: %d %s", code, body)
	}
	if want := (usagePlanKeyJSON{ID: "k", Type: "API_KEY", Value: "valu…", Name: "key-k"}); got != want {
		t.Errorf("answer %+v, want %+v", got, want)
	}
	// In from's place, the other plan kept.
	if plans := f.cat.State().Key("k").UsagePlans; !reflect.DeepEqual(plans, []string{"paid", "beta"}) {
		t.Errorf("key's plans %v, want [paid beta]", plans)
	}
	want := map[string][]string{"free": {}, "paid": {"k", "k2"}, "beta": {"k"}, "beta2": {}}
	if m := f.members(); !reflect.DeepEqual(m, want) {
		t.Errorf("members %v, want %v", m, want)
	}
	// One change reached the gateway, with the key in paid and not free.
	if g := f.gateway(); !reflect.DeepEqual(g, [][]string{{"paid", "beta"}}) {
		t.Errorf("the gateway was handed the key's plans %v, want one change to [paid beta]", g)
	}
	if code, body := f.call("GET", "/usageplans/paid/keys/k", nil, nil); code != 200 {
		t.Errorf("GetUsagePlanKey of the new plan: %d %s", code, body)
	}

	// Audited once, with who did it and through what.
	entries, err := f.audit.Read()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("%d audit entries, want 1: %+v", len(entries), entries)
	}
	e := entries[0]
	if e.Actor != "bearer token" || e.Action != "POST /v1/apikeys/k/move" || e.Kind != "apiKey" || e.ID != "k" {
		t.Errorf("audit entry %s %q %s %s, want bearer token \"POST /v1/apikeys/k/move\" apiKey k", e.Actor, e.Action, e.Kind, e.ID)
	}
	var o, n struct{ UsagePlans []string }
	if json.Unmarshal(e.Old, &o) != nil || json.Unmarshal(e.New, &n) != nil ||
		!reflect.DeepEqual(o.UsagePlans, []string{"free", "beta"}) || !reflect.DeepEqual(n.UsagePlans, []string{"paid", "beta"}) {
		t.Errorf("audited plans %s → %s, want [free beta] → [paid beta]", e.Old, e.New)
	}
	// What a console reads of the key's last changes.
	recent, complete, err := f.audit.Recent(`"k"`, catalog.AuditMatchID("k"), 5, 1<<20)
	if err != nil || !complete || len(recent) != 1 || recent[0].Action != e.Action {
		t.Errorf("Recent: %+v %v %v, want the move", recent, complete, err)
	}
}

// Every refused move answers AWS's error and changes nothing: the key
// stays in its plans (never in neither), nothing is audited or handed to
// the gateway.
func TestMoveKeyErrors(t *testing.T) {
	f := newMoveFixture(t)
	before := f.members()
	move := func(from, to string) map[string]string {
		return map[string]string{"fromUsagePlanId": from, "toUsagePlanId": to}
	}
	tests := []struct {
		name, key string
		body      any
		status    int
		want      string
	}{
		{"unknown key", "nope", move("free", "paid"), 404, "NotFoundException Invalid API Key identifier specified"},
		{"unknown from", "k", move("gold", "paid"), 404, "NotFoundException Invalid Usage Plan ID specified: fromUsagePlanId gold"},
		{"unknown to", "k", move("free", "gold"), 404, "NotFoundException Invalid Usage Plan ID specified: toUsagePlanId gold"},
		{"key not in from", "k2", move("free", "beta"), 404, "NotFoundException API Key k2 is not in usage plan free (fromUsagePlanId)"},
		{"no from", "k", map[string]string{"toUsagePlanId": "paid"}, 400, "BadRequestException fromUsagePlanId is required"},
		{"no to", "k", map[string]string{"fromUsagePlanId": "free"}, 400, "BadRequestException toUsagePlanId is required"},
		{"from is to", "k", move("free", "free"), 400, "BadRequestException toUsagePlanId is fromUsagePlanId (free)"},
		{"no body", "k", nil, 400, "BadRequestException Invalid request body"},
		{"already in to", "k", move("free", "beta"), 409, "ConflictException API Key k is already in usage plan beta (toUsagePlanId)"},
		// beta2 shares shop:beta with beta, a plan of the key that
		// stays.
		{"stage of another plan", "k", move("free", "beta2"), 409,
			"ConflictException Usage Plan beta2 cannot be added because API Key k cannot reference multiple Usage Plans with the same API Stage: shop:beta"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, got := f.call("POST", "/v1/apikeys/"+tt.key+"/move", tt.body, nil)
			if code != tt.status || !strings.HasPrefix(got, tt.want) {
				t.Errorf("%d %q, want %d starting %q", code, got, tt.status, tt.want)
			}
			if m := f.members(); !reflect.DeepEqual(m, before) {
				t.Errorf("the refused move changed the plans' keys: %v, was %v", m, before)
			}
		})
	}
	if g := f.gateway(); g != nil {
		t.Errorf("refused moves reached the gateway: %v", g)
	}
	if entries, err := f.audit.Read(); err != nil || len(entries) != 0 {
		t.Errorf("refused moves were audited: %+v %v", entries, err)
	}
}

// The stage check leaves from out: the key leaves it in the same change,
// which is what lets it move between plans of one stage. k moves from
// beta to beta2 (both shop:beta), which CreateUsagePlanKey of beta2
// refuses while k is in beta.
func TestMoveKeyWithinStage(t *testing.T) {
	f := newMoveFixture(t)
	if code, got := f.call("POST", "/usageplans/beta2/keys", map[string]string{"keyId": "k", "keyType": "API_KEY"}, nil); code != 409 {
		t.Errorf("CreateUsagePlanKey beta2: %d %s, want 409", code, got)
	}
	if code, got := f.call("POST", "/v1/apikeys/k/move", map[string]string{"fromUsagePlanId": "beta", "toUsagePlanId": "beta2"}, nil); code != 200 {
		t.Fatalf("move beta → beta2: %d %s", code, got)
	}
	if plans := f.cat.State().Key("k").UsagePlans; !reflect.DeepEqual(plans, []string{"free", "beta2"}) {
		t.Errorf("key's plans %v, want [free beta2]", plans)
	}
}

// The route is behind authentication like the rest of the API.
func TestMoveKeyNeedsCredentials(t *testing.T) {
	f := newMoveFixture(t)
	r, err := http.Post(f.url+"/v1/apikeys/k/move", "application/json", strings.NewReader(`{"fromUsagePlanId":"free","toUsagePlanId":"paid"}`))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 403 {
		t.Errorf("unauthenticated move: %d, want 403", r.StatusCode)
	}
	if plans := f.cat.State().Key("k").UsagePlans; !reflect.DeepEqual(plans, []string{"free", "beta"}) {
		t.Errorf("an unauthenticated move changed the key: %v", plans)
	}
}
