package enforcer

import (
	"flag"
	"fmt"
	"hash/maphash"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/schemas"
)

var applySeed = flag.Uint64("apply.seed", 0, "seed of TestApplyMatchesFullLoad (0: several fixed seeds)")

// applyWorld is the catalog TestApplyMatchesFullLoad changes at random:
// two APIs (three stages), up to five plans, up to 24 keys.
type applyWorld struct {
	t      *testing.T
	rnd    *rand.Rand
	state  *catalog.State
	values map[string]string // key id → value
	old    []string          // values of keys deleted or given a new value
	prev   map[string]string // key id → the previous value of a key in a rotation
	nextID int
}

var applyStages = []catalog.APIStage{{APIID: "api1", Stage: "prod"}, {APIID: "api1", Stage: "beta"}, {APIID: "api2", Stage: "v1"}}

// applyMethods are the per-method throttle keys of each API.
var applyMethods = map[string][]string{"api1": {"/items/GET", "/items/POST", "/items/{id}/GET"}, "api2": {"/things/ANY"}}

// applyRequests are the requests sent after each change: every method
// of every stage, an undeclared route, a keyless one.
var applyRequests = []struct{ method, path string }{
	{"GET", "/prod/items"}, {"POST", "/prod/items"}, {"GET", "/prod/items/7"}, {"GET", "/prod/health"},
	{"GET", "/beta/items"}, {"POST", "/beta/items"}, {"GET", "/beta/items/7"},
	{"PUT", "/v1/things"}, {"GET", "/v1/things"}, {"GET", "/prod/extra"}, {"GET", "/prod/nope"},
}

func newApplyWorld(t *testing.T, seed uint64) *applyWorld {
	w := &applyWorld{t: t, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), values: map[string]string{}, prev: map[string]string{}}
	tx := catalog.NewState().Begin()
	tx.SetGateway(catalog.Gateway{})
	for _, a := range []catalog.API{
		{ID: "api1", Name: "api1", Stages: []catalog.Stage{{Name: "prod", Upstream: "http://127.0.0.1:1"}, {Name: "beta", Upstream: "http://127.0.0.1:1"}},
			Resources: []catalog.Resource{
				{Path: "/items", Methods: map[string]catalog.Method{"GET": {APIKeyRequired: true}, "POST": {APIKeyRequired: true}}},
				{Path: "/items/{id}", Methods: map[string]catalog.Method{"GET": {APIKeyRequired: true}}},
				{Path: "/health", Methods: map[string]catalog.Method{"GET": {}}},
			}},
		{ID: "api2", Name: "api2", Stages: []catalog.Stage{{Name: "v1", Upstream: "http://127.0.0.1:1"}},
			Resources: []catalog.Resource{{Path: "/things", Methods: map[string]catalog.Method{"ANY": {APIKeyRequired: true}}}}},
	} {
		tx.PutAPI(a)
	}
	for range 3 {
		tx.PutPlan(w.randomPlan(tx.State, ""))
	}
	for range 12 {
		tx.PutKey(w.randomKey(tx.State, ""))
	}
	if err := tx.Validate(nil); err != nil {
		t.Fatal(err)
	}
	w.state = tx.State
	return w
}

func (w *applyWorld) newID(prefix string) string {
	w.nextID++
	return fmt.Sprintf("%s%03d", prefix, w.nextID)
}

// randomPlan returns a plan with id (a new one if "") and random limits
// and stages.
func (w *applyWorld) randomPlan(s *catalog.State, id string) catalog.UsagePlan {
	r := w.rnd
	if id == "" {
		id = w.newID("p")
	}
	p := catalog.UsagePlan{ID: id, Name: id, CreatedDate: testEpoch.Unix() - int64(r.IntN(3))*86400}
	if r.IntN(4) > 0 {
		p.Throttle = &catalog.Throttle{RateLimit: float64(1 + r.IntN(4)), BurstLimit: int64(1 + r.IntN(4))}
	}
	if r.IntN(3) > 0 {
		p.Quota = &catalog.Quota{Limit: int64(2 + r.IntN(8)), Period: []catalog.Period{catalog.Day, catalog.Week, catalog.Month}[r.IntN(3)]}
		if r.IntN(4) == 0 {
			p.Quota.Offset = int64(r.IntN(2))
		}
	}
	for _, as := range applyStages {
		if r.IntN(2) == 0 {
			continue
		}
		for _, m := range applyMethods[as.APIID] {
			if r.IntN(3) == 0 {
				if as.Throttle == nil {
					as.Throttle = map[string]catalog.Throttle{}
				}
				as.Throttle[m] = catalog.Throttle{RateLimit: float64(1 + r.IntN(3)), BurstLimit: int64(1 + r.IntN(3))}
			}
		}
		p.APIStages = append(p.APIStages, as)
	}
	return p
}

// randomValue returns a new key value: mostly 30 characters (recorded
// in entries), sometimes 50 (hashed on every request).
func (w *applyWorld) randomValue() string {
	n := 30
	if w.rnd.IntN(5) == 0 {
		n = 50
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = "abcdefghijklmnopqrstuvwxyz0123456789"[w.rnd.IntN(36)]
	}
	return string(b)
}

// randomPlans returns random plans of s for a key, at most one per stage.
func (w *applyWorld) randomPlans(s *catalog.State) []string {
	var ids []string
	s.Plans("", func(p *catalog.UsagePlan) bool { ids = append(ids, p.ID); return true })
	w.rnd.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	taken := map[string]bool{}
	var out []string
	for _, id := range ids[:w.rnd.IntN(len(ids)+1)] {
		p := s.Plan(id)
		ok := true
		for _, as := range p.APIStages {
			ok = ok && !taken[as.APIID+":"+as.Stage]
		}
		if !ok {
			continue
		}
		for _, as := range p.APIStages {
			taken[as.APIID+":"+as.Stage] = true
		}
		out = append(out, id)
	}
	return out
}

// randomKey returns a key with id (a new one if "") and a new value.
func (w *applyWorld) randomKey(s *catalog.State, id string) catalog.APIKey {
	if id == "" {
		id = w.newID("k")
	}
	v := w.randomValue()
	if old, ok := w.values[id]; ok {
		w.old = append(w.old, old)
	}
	w.values[id] = v
	return catalog.APIKey{ID: id, Name: id, Enabled: w.rnd.IntN(6) > 0, ValueHash: catalog.HashKey(v), ValuePrefix: v[:4],
		UsagePlans: w.randomPlans(s), CreatedDate: testEpoch.Unix()}
}

func (w *applyWorld) keyIDs() []string {
	var ids []string
	w.state.Keys("", func(k *catalog.APIKey) bool { ids = append(ids, k.ID); return true })
	return ids
}

func (w *applyWorld) planIDs() []string {
	var ids []string
	w.state.Plans("", func(p *catalog.UsagePlan) bool { ids = append(ids, p.ID); return true })
	return ids
}

func pick[T any](r *rand.Rand, l []T) T { return l[r.IntN(len(l))] }

// change makes one random change through a Tx, as the admin API does,
// and returns it, or nil when the change drawn was not valid (a key left
// with two plans on one stage) or empty.
func (w *applyWorld) change() (*catalog.Change, string) {
	r := w.rnd
	s := w.state
	tx := s.Begin()
	keys, plans := w.keyIDs(), w.planIDs()
	var what string
	values, prev := maps.Clone(w.values), maps.Clone(w.prev)
	old := len(w.old)
	op := r.IntN(23)
	if len(plans) == 0 && op >= 10 && op < 16 {
		op = 15 // create one
	}
	switch {
	case op < 3 || len(keys) == 0: // create a key
		if len(keys) >= 24 {
			return nil, ""
		}
		what = "create key"
		tx.PutKey(w.randomKey(tx.State, ""))
	case op < 5: // enable / disable
		k := *s.Key(pick(r, keys))
		k.Enabled = !k.Enabled
		what = "toggle key " + k.ID
		tx.PutKey(k)
	case op < 7: // new value
		k := *s.Key(pick(r, keys))
		n := w.randomKey(s, k.ID)
		k.ValueHash, k.ValuePrefix = n.ValueHash, n.ValuePrefix
		what = "new value for key " + k.ID
		tx.PutKey(k)
	case op < 9: // move between plans
		k := *s.Key(pick(r, keys))
		k.UsagePlans = w.randomPlans(s)
		what = fmt.Sprintf("key %s to plans %v", k.ID, k.UsagePlans)
		tx.PutKey(k)
	case op < 10: // delete a key
		id := pick(r, keys)
		w.old = append(w.old, w.values[id])
		delete(w.values, id)
		what = "delete key " + id
		tx.DeleteKey(id)
	case op < 12: // a plan's limits
		p := *s.Plan(pick(r, plans))
		n := w.randomPlan(s, p.ID)
		p.Throttle, p.Quota = n.Throttle, n.Quota
		what = "limits of plan " + p.ID
		tx.PutPlan(p)
	case op < 14: // a plan's per-method throttles
		p := *s.Plan(pick(r, plans))
		p.APIStages = slices.Clone(p.APIStages)
		for i := range p.APIStages {
			as := &p.APIStages[i]
			th := maps.Clone(as.Throttle)
			if th == nil {
				th = map[string]catalog.Throttle{}
			}
			m := pick(r, applyMethods[as.APIID])
			if _, ok := th[m]; ok && r.IntN(2) == 0 {
				delete(th, m)
			} else {
				th[m] = catalog.Throttle{RateLimit: float64(1 + r.IntN(3)), BurstLimit: int64(1 + r.IntN(3))}
			}
			as.Throttle = th
		}
		what = "method throttles of plan " + p.ID
		tx.PutPlan(p)
	case op < 15: // a plan's stages
		p := *s.Plan(pick(r, plans))
		p.APIStages = w.randomPlan(s, p.ID).APIStages
		what = "stages of plan " + p.ID
		tx.PutPlan(p)
	case op < 16: // create or delete a plan
		if len(plans) == 0 || len(plans) < 5 && r.IntN(2) == 0 {
			what = "create plan"
			tx.PutPlan(w.randomPlan(s, ""))
			break
		}
		id := pick(r, plans)
		s.PlanKeys(id, "", func(k *catalog.APIKey) bool {
			kk := *k
			kk.UsagePlans = slices.DeleteFunc(slices.Clone(k.UsagePlans), func(p string) bool { return p == id })
			tx.PutKey(kk)
			return true
		})
		what = "delete plan " + id
		tx.DeletePlan(id)
	case op < 18: // the APIs: a resource, a stage throttle
		a := *s.API("api1")
		a.Resources = slices.Clone(a.Resources)
		a.Stages = slices.Clone(a.Stages)
		if i := slices.IndexFunc(a.Resources, func(r catalog.Resource) bool { return r.Path == "/extra" }); i >= 0 {
			a.Resources = slices.Delete(a.Resources, i, i+1)
		} else {
			a.Resources = append(a.Resources, catalog.Resource{Path: "/extra", Methods: map[string]catalog.Method{"GET": {APIKeyRequired: r.IntN(2) == 0}}})
		}
		if r.IntN(2) == 0 {
			a.Stages[0].Throttle = &catalog.Throttle{RateLimit: float64(5 + r.IntN(10)), BurstLimit: int64(5 + r.IntN(10))}
		} else {
			a.Stages[0].Throttle = nil
		}
		what = "api1"
		tx.PutAPI(a)
	case op == 20: // rotate a key: a new value, the old one for a grace
		// of up to a quarter of an hour from the start (requests move
		// the clock ~2.4 s a change), or none
		k := *s.Key(pick(r, keys))
		was := w.values[k.ID]
		n := w.randomKey(s, k.ID)
		k.Rotate(n.ValueHash, n.ValuePrefix, testEpoch.UnixNano()+r.Int64N(900)*1e9)
		w.prev[k.ID] = was
		what = "rotate key " + k.ID
		tx.PutKey(k)
	case op == 21: // cancel a rotation: the previous value back
		k := *s.Key(pick(r, keys))
		if !k.HasRotation() {
			return nil, ""
		}
		k.CancelRotation()
		w.old = append(w.old, w.values[k.ID])
		w.values[k.ID] = w.prev[k.ID]
		delete(w.prev, k.ID)
		what = "cancel the rotation of key " + k.ID
		tx.PutKey(k)
	case op == 22: // finish a rotation: the previous value refused
		k := *s.Key(pick(r, keys))
		if !k.HasRotation() {
			return nil, ""
		}
		k.ClearRotation()
		delete(w.prev, k.ID)
		what = "finish the rotation of key " + k.ID
		tx.PutKey(k)
	default: // the gateway settings
		g := s.Gateway()
		if r.IntN(2) == 0 {
			g.Throttle = &catalog.Throttle{RateLimit: float64(20 + r.IntN(20)), BurstLimit: int64(20 + r.IntN(20))}
		} else {
			g.Throttle = nil
		}
		g.UnknownRouteStatus = pick(r, []int{0, 404})
		what = "gateway"
		tx.SetGateway(g)
	}
	if err := tx.Validate(nil); err != nil {
		w.values, w.prev, w.old = values, prev, w.old[:old]
		return nil, ""
	}
	d := tx.Delta()
	if d.Empty() {
		w.values, w.prev, w.old = values, prev, w.old[:old]
		return nil, ""
	}
	ch := &catalog.Change{Old: s, New: tx.State, Delta: d}
	w.state = tx.State
	return ch, what
}

// requestKey returns the x-api-key of a request: the value of a
// key, an old value, an unknown one, or none.
func (w *applyWorld) requestKey() []string {
	r := w.rnd
	switch n := r.IntN(20); {
	case n < 15 && len(w.values) > 0:
		return []string{w.values[pick(r, slices.Sorted(maps.Keys(w.values)))]}
	case n < 17 && len(w.old) > 0:
		return []string{pick(r, w.old)}
	case n < 19:
		return []string{"unknown-value-00000000000000"}
	}
	return nil
}

// decisionOf renders what a request's decision says, for comparison.
func decisionOf(d *decision) string {
	var key, plan string
	if d.key != nil {
		key = d.key.keyID() + "/" + d.key.fingerprint()
	}
	if d.plan != nil {
		plan = d.plan.id
	}
	return fmt.Sprintf("%v key=%s plan=%s retry=%d tokens=%d/%d/%v quota=%d/%d/%v",
		d.outcome, key, plan, d.retryAfter, d.tokensLeft, d.throttleReset, d.throttled, d.quotaLeft, d.quotaReset, d.quotaed)
}

// countersOf renders the counters of every key under every plan of s,
// for comparison.
func countersOf(g *Gateway, s *catalog.State) string {
	t := g.table.Load()
	var b strings.Builder
	s.Keys("", func(k *catalog.APIKey) bool {
		for _, pid := range k.UsagePlans {
			st, p := t.keyPlan(k.ID, pid)
			if st == nil {
				fmt.Fprintf(&b, "%s/%s: none\n", k.ID, pid)
				continue
			}
			fmt.Fprintf(&b, "%s/%s: tat=%d quota=%x local=%x asOf=%d", k.ID, p.id, st.tat.Load(), st.quota.Load(), st.local.Load(), st.asOf.Load())
			if m := st.methods.Load(); m != nil {
				for i, name := range m.layout.names {
					if v := m.tat[i].Load(); v != 0 {
						fmt.Fprintf(&b, " %s=%d", name, v)
					}
				}
			}
			b.WriteString("\n")
		}
		return true
	})
	return b.String()
}

// TestApplyMatchesFullLoad applies random changes, made with the Tx API
// the admin API uses, to gateway a with Apply and to gateway b with a
// full Load of each new state, sends both the same random requests after
// each change, and requires the same decisions, and in the end the same
// counters for every key under every plan. Finally, past every period,
// a sweep of every key on every route must be decided by a as by a
// gateway loaded from the final state alone.
func TestApplyMatchesFullLoad(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4, 5, 6, 7, 8}
	if *applySeed != 0 {
		seeds = []uint64{*applySeed}
	}
	steps := 150
	if testing.Short() {
		steps = 50
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			defer func() {
				if t.Failed() {
					t.Logf("seed %d: go test ./enforcer -run TestApplyMatchesFullLoad -apply.seed %d", seed, seed)
				}
			}()
			testApplyMatchesFullLoad(t, seed, steps)
		})
	}
}

func testApplyMatchesFullLoad(t *testing.T, seed uint64, steps int) {
	w := newApplyWorld(t, seed)
	now := testEpoch.UnixNano()
	clock := func() int64 { return now }
	newGW := func(s *catalog.State) *Gateway {
		g, err := New(Config{Now: clock}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Load(s); err != nil {
			t.Fatal(err)
		}
		return g
	}
	a, b := newGW(w.state), newGW(w.state)
	var log []string
	for step := 0; step < steps; step++ {
		ch, what := w.change()
		if ch != nil {
			log = append(log, what)
			if err := a.Apply(ch); err != nil {
				t.Fatal(err)
			}
			if err := b.Load(ch.New); err != nil {
				t.Fatal(err)
			}
		}
		for range 12 {
			now += int64(w.rnd.IntN(400)) * 1e6
			if w.rnd.IntN(200) == 0 {
				now += 86400e9
			}
			req := pick(w.rnd, applyRequests)
			keys := w.requestKey()
			var da, db decision
			a.table.Load().decide(&da, "h", req.path, req.method, keys, now)
			b.table.Load().decide(&db, "h", req.path, req.method, keys, now)
			if x, y := decisionOf(&da), decisionOf(&db); x != y {
				t.Fatalf("step %d (after %q): %s %s with %q:\nApply: %s\nLoad:  %s\nchanges: %q", step, what, req.method, req.path, keys, x, y, log)
			}
		}
	}
	if x, y := countersOf(a, w.state), countersOf(b, w.state); x != y {
		t.Fatalf("counters differ:\nApply:\n%s\nLoad:\n%s\nchanges: %q", x, y, log)
	}
	// Past every period and bucket: a decides as a fresh gateway.
	now += 62 * 86400e9
	c := newGW(w.state)
	var values []string
	for _, id := range w.keyIDs() {
		values = append(values, w.values[id])
	}
	values = append(values, w.old...)
	for round := range 3 {
		for _, v := range values {
			for _, req := range applyRequests {
				var da, dc decision
				a.table.Load().decide(&da, "h", req.path, req.method, []string{v}, now)
				c.table.Load().decide(&dc, "h", req.path, req.method, []string{v}, now)
				if x, y := decisionOf(&da), decisionOf(&dc); x != y {
					t.Fatalf("round %d, %s %s with %q:\nApply: %s\nfresh: %s\nchanges: %q", round, req.method, req.path, v, x, y, log)
				}
			}
		}
	}
	if len(log) < steps/2 {
		t.Errorf("only %d of %d changes were valid", len(log), steps)
	}
}

// changeEnv is a gateway fed with changes made through Tx, as the admin
// API makes them, deciding requests at a clock the test moves.
type changeEnv struct {
	t     *testing.T
	now   int64
	state *catalog.State
	gw    *Gateway
}

func newChangeEnv(t *testing.T, yaml string) *changeEnv {
	e := &changeEnv{t: t, now: testEpoch.UnixNano()}
	e.state = catalog.StateOf(testCatalog(t, strings.ReplaceAll(yaml, "{{UPSTREAM}}", "http://127.0.0.1:1")))
	g, err := New(Config{Now: func() int64 { return e.now }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Load(e.state); err != nil {
		t.Fatal(err)
	}
	e.gw = g
	return e
}

// change makes f's change and applies it.
func (e *changeEnv) change(f func(tx *catalog.Tx)) *catalog.Change {
	e.t.Helper()
	tx := e.state.Begin()
	f(tx)
	if err := tx.Validate(nil); err != nil {
		e.t.Fatal(err)
	}
	ch := &catalog.Change{Old: e.state, New: tx.State, Delta: tx.Delta()}
	if err := e.gw.Apply(ch); err != nil {
		e.t.Fatal(err)
	}
	e.state = ch.New
	return ch
}

// key returns a copy of the key named name.
func (e *changeEnv) key(name string) catalog.APIKey { return *e.state.KeyByName(name) }

func (e *changeEnv) plan(name string) catalog.UsagePlan { return *e.state.PlanByName(name) }

func (e *changeEnv) decide(method, path, value string) decision {
	var d decision
	e.gw.table.Load().decide(&d, "h", path, method, []string{value}, e.now)
	return d
}

func (e *changeEnv) want(method, path, value string, want schemas.Decision) {
	e.t.Helper()
	if d := e.decide(method, path, value); d.outcome != want {
		e.t.Errorf("%s %s with %q: %v, want %v", method, path, value, d.outcome, want)
	}
}

// A key whose value was recorded (requests compare it instead of hashing
// it) is refused as soon as Apply returns once it is disabled, deleted or
// given a new value, and keeps its counters through all but deletion.
func TestApplyChangedKeyTakesEffectAtOnce(t *testing.T) {
	e := newChangeEnv(t, gwYAML)
	e.want("GET", "/prod/items", widget, schemas.DecisionAllowed)
	e.want("GET", "/prod/items", widget, schemas.DecisionAllowed)
	ks := e.gw.table.Load().keys
	cached := ks.byValue.get(maphashString(ks, widget), func(x *keyEntry) bool { return x.hasValue(widget) })
	if cached == nil {
		t.Fatal("the widget value was not recorded")
	}

	k := e.key("widget")
	k.Enabled = false
	e.change(func(tx *catalog.Tx) { tx.PutKey(k) })
	if !cached.stale.Load() {
		t.Error("the replaced entry is not stale")
	}
	e.want("GET", "/prod/items", widget, schemas.DecisionForbidden)

	k.Enabled = true
	e.change(func(tx *catalog.Tx) { tx.PutKey(k) })
	// Burst 3, two used before: one more, then throttled.
	e.want("GET", "/prod/items", widget, schemas.DecisionAllowed)
	e.want("GET", "/prod/items", widget, schemas.DecisionThrottled)

	const value = "a-new-value-for-widget-0000001"
	k.ValueHash = catalog.HashKey(value)
	e.change(func(tx *catalog.Tx) { tx.PutKey(k) })
	e.want("GET", "/prod/items", widget, schemas.DecisionForbidden)
	e.want("GET", "/prod/items", value, schemas.DecisionThrottled) // same counters
	e.now += 10e9
	e.want("GET", "/prod/items", value, schemas.DecisionAllowed)
	e.want("GET", "/prod/items", value, schemas.DecisionAllowed) // quota: 5 used
	e.want("GET", "/prod/items", value, schemas.DecisionQuotaExceeded)
	if ks.byValue.get(maphashString(ks, value), func(x *keyEntry) bool { return x.hasValue(value) }) == nil {
		t.Fatal("the new value was not recorded")
	}

	e.change(func(tx *catalog.Tx) { tx.DeleteKey(k.ID) })
	e.want("GET", "/prod/items", value, schemas.DecisionForbidden)
	if n := ks.byValue.live; n != 0 {
		t.Errorf("%d values recorded after the only recorded key was deleted", n)
	}
	// The same key again: new counters.
	e.change(func(tx *catalog.Tx) { tx.PutKey(k) })
	e.want("GET", "/prod/items", value, schemas.DecisionAllowed)
}

func maphashString(ks *keySet, v string) uint64 { return maphash.String(ks.seed, v) }

// The stale flag covers what index maintenance cannot: a lookup that
// found an entry just before a change replaced it, and a request that
// verified a value on the old entry and records it after the change.
func TestStaleEntryIsNeverUsed(t *testing.T) {
	e := newChangeEnv(t, gwYAML)
	e.want("GET", "/prod/items", widget, schemas.DecisionAllowed)
	ks := e.gw.table.Load().keys
	h := maphashString(ks, widget)
	old := ks.entry(e.key("widget").ID)

	k := e.key("widget")
	k.Enabled = false
	e.change(func(tx *catalog.Tx) { tx.PutKey(k) })
	// A request that verified the value on the old entry records it only
	// now: the old entry must not enter the table.
	ks.remember(old, widget, h)
	if got := ks.lookup(widget); got == old || got.enabled {
		t.Fatal("lookup returned the replaced entry after a late record")
	}
	// A lookup racing the change found the old entry in the table (put it
	// back, as it was): it must see it is stale and look again.
	ks.mu.Lock()
	ks.byValue.put(h, old, func(x *keyEntry) bool { return x.hasValue(widget) }, true)
	ks.mu.Unlock()
	if got := ks.lookup(widget); got == old || got.enabled {
		t.Fatal("lookup returned a stale entry")
	}
	e.want("GET", "/prod/items", widget, schemas.DecisionForbidden)
}

// A full load (Update) refuses a disabled key whose value was recorded,
// and keeps the recorded values of the others.
func TestUpdateRefusesRecordedKeyAtOnce(t *testing.T) {
	e := newChangeEnv(t, gwYAML)
	e.want("GET", "/prod/items", widget, schemas.DecisionAllowed)
	e.want("GET", "/v1/things", "otherotherotherother01", schemas.DecisionAllowed)
	c := e.state.Catalog()
	c.KeyByName("widget").Enabled = false
	if err := e.gw.Update(c); err != nil {
		t.Fatal(err)
	}
	e.want("GET", "/prod/items", widget, schemas.DecisionForbidden)
	ks := e.gw.table.Load().keys
	if ks.byValue.get(maphashString(ks, "otherotherotherother01"), func(x *keyEntry) bool { return x.hasValue("otherotherotherother01") }) == nil {
		t.Error("a full load dropped a recorded value")
	}
}

// A change of a plan reaches its keys without a new entry for any of
// them: limits, per-method throttles (whose buckets are kept by name)
// and stages.
func TestApplyPlanTouchesNoKey(t *testing.T) {
	e := newChangeEnv(t, gwYAML)
	ks := e.gw.table.Load().keys
	entry := ks.entry(e.key("widget").ID)
	e.want("POST", "/prod/items", widget, schemas.DecisionAllowed)
	e.want("POST", "/prod/items", widget, schemas.DecisionThrottled) // its own bucket: burst 1

	p := e.plan("Free Tier")
	p.Throttle = &catalog.Throttle{RateLimit: 1, BurstLimit: 10}
	p.Quota = &catalog.Quota{Limit: 100, Period: catalog.Day}
	as := slices.Clone(p.APIStages)
	as[0].Throttle = maps.Clone(as[0].Throttle)
	as[0].Throttle["/items/{id}/GET"] = catalog.Throttle{RateLimit: 1, BurstLimit: 1}
	p.APIStages = as
	ch := e.change(func(tx *catalog.Tx) { tx.PutPlan(p) })
	if len(ch.Keys) != 0 {
		t.Fatalf("the change names keys %v", ch.Keys)
	}
	e.want("POST", "/prod/items", widget, schemas.DecisionThrottled) // kept by name
	e.want("GET", "/prod/items/1", widget, schemas.DecisionAllowed)  // a new bucket
	e.want("GET", "/prod/items/1", widget, schemas.DecisionThrottled)
	for range 10 { // the plan's bucket: burst 10 (POST has its own)
		e.want("GET", "/prod/items", widget, schemas.DecisionAllowed)
	}
	e.want("GET", "/prod/items", widget, schemas.DecisionThrottled)

	p.APIStages = append(p.APIStages, catalog.APIStage{APIID: "otherapi", Stage: "v1"})
	e.change(func(tx *catalog.Tx) {
		tx.PutPlan(p)
		// The other key of otherapi's stage leaves Other, which covers it too.
		o := *tx.KeyByName("other-only")
		o.UsagePlans = nil
		tx.PutKey(o)
	})
	e.now += 60e9
	e.want("GET", "/v1/things", widget, schemas.DecisionAllowed)
	if got := ks.entry(e.key("widget").ID); got != entry || entry.stale.Load() {
		t.Error("the key's entry was replaced by changes of its plan")
	}
}

// Requests decided while changes are applied see each key before or
// after its change, never a torn entry; run with -race.
func TestApplyWhileDeciding(t *testing.T) {
	e := newChangeEnv(t, gwYAML)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	values := []string{widget, "disableddisabled000001", "planlessplanless000001", "otherotherotherother01"}
	widgetID := e.key("widget").ID
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := i; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				var d decision
				e.gw.table.Load().decide(&d, "h", "/prod/items", "GET", []string{values[j%len(values)]}, testEpoch.UnixNano())
				if d.outcome == schemas.DecisionAllowed && d.key.keyID() != widgetID {
					t.Errorf("%s admitted", d.key.keyID())
					return
				}
			}
		}()
	}
	k := e.key("widget")
	p := e.plan("Free Tier")
	for i := range 300 {
		switch i % 3 {
		case 0:
			k.Enabled = !k.Enabled
			e.change(func(tx *catalog.Tx) { tx.PutKey(k) })
			want := schemas.DecisionForbidden
			if k.Enabled {
				want = schemas.DecisionThrottled // the goroutines keep the bucket empty
			}
			if d := e.decide("GET", "/prod/items", widget); d.outcome != want && d.outcome != schemas.DecisionAllowed {
				t.Fatalf("change %d: %v, want %v", i, d.outcome, want)
			} else if !k.Enabled && d.outcome != want {
				t.Fatalf("change %d: a disabled key was %v", i, d.outcome)
			}
		case 1:
			p.Throttle = &catalog.Throttle{RateLimit: float64(1 + i%5), BurstLimit: 3}
			e.change(func(tx *catalog.Tx) { tx.PutPlan(p) })
		case 2:
			a := *e.state.API("otherapi")
			a.Stages = slices.Clone(a.Stages)
			a.Stages[0].Throttle = &catalog.Throttle{RateLimit: float64(1 + i), BurstLimit: 5}
			e.change(func(tx *catalog.Tx) { tx.PutAPI(a) })
		}
	}
	close(stop)
	wg.Wait()
}
