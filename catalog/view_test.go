package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/btree"

	"github.com/tollgate/tollgate/schemas"
)

// snapshotRoundTrip writes v's snapshot and reads it back.
func snapshotRoundTrip(t testing.TB, v *View) *View {
	t.Helper()
	var b bytes.Buffer
	if _, err := v.Snapshot().WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	again, err := ReadView(&b)
	if err != nil {
		t.Fatal(err)
	}
	return again
}

// recordGen makes random records over a few ids and names, so that
// records collide (names, values, stages), refer to what is missing,
// arrive out of order, and are rejected.
type recordGen struct{ r *rand.Rand }

var (
	genAPIs     = []string{"a1", "a2"}
	genPlans    = []string{"p1", "p2", "p3", "p", "p/x"} // "p/x" + "/k" and "p" + "/x/k": one record id
	genKeys     = []string{"k1", "k2", "k3", "k4", "k", "x/k"}
	genNames    = []string{"n1", "n2", "n3", "n4"}
	genWebhooks = []string{"w1", "w2", "w3"}
)

func (g *recordGen) pick(list []string) string { return list[g.r.IntN(len(list))] }

func (g *recordGen) api(id string) API {
	a := API{ID: id, Name: id}
	for _, s := range []string{"s1", "s2"} {
		if len(a.Stages) == 0 || g.r.IntN(2) == 0 {
			// Stage names clash across APIs now and then: rejected.
			name := id + s
			if g.r.IntN(8) == 0 {
				name = g.pick(genAPIs) + s
			}
			a.Stages = append(a.Stages, Stage{Name: name, Upstream: "http://up.example/" + id})
		}
	}
	a.Resources = []Resource{{Path: "/items", Methods: map[string]Method{"GET": {APIKeyRequired: true}}}}
	if g.r.IntN(2) == 0 {
		a.Resources[0].Methods["POST"] = Method{APIKeyRequired: true}
	}
	return a
}

func (g *recordGen) plan(id string) UsagePlan {
	p := UsagePlan{ID: id, Name: g.pick(genNames), CreatedDate: 1}
	if g.r.IntN(2) == 0 {
		p.Throttle = &Throttle{RateLimit: 10, BurstLimit: 20}
	}
	if g.r.IntN(10) == 0 {
		p.Throttle = &Throttle{RateLimit: -1, BurstLimit: 1} // rejected
	}
	if g.r.IntN(3) == 0 {
		p.Quota = &Quota{Limit: 100, Period: "DAY"}
	}
	for range g.r.IntN(3) {
		api := g.pick(genAPIs)
		as := APIStage{APIID: api, Stage: api + []string{"s1", "s1", "s2", "s3"}[g.r.IntN(4)]}
		if g.r.IntN(3) == 0 {
			as.Throttle = map[string]Throttle{"/items/GET": {RateLimit: 1, BurstLimit: 1}, "/items/POST": {RateLimit: 2, BurstLimit: 2}, "/nope/GET": {RateLimit: 3, BurstLimit: 3}}
		}
		p.APIStages = append(p.APIStages, as)
	}
	return p
}

func (g *recordGen) key(id string) APIKey {
	k := APIKey{ID: id, Name: g.pick(genNames), Enabled: g.r.IntN(4) > 0, ValueHash: HashKey(g.pick(genNames) + "-value-value-value"),
		ValuePrefix: "valu", CreatedDate: 1, CustomerID: []string{"", "c1", "c2"}[g.r.IntN(3)],
		Tags: map[string]map[string]string{"": nil, "t": {"team": "a"}}[[]string{"", "t"}[g.r.IntN(2)]]}
	if g.r.IntN(4) == 0 { // a rotation, its previous value from the same pool
		k.PreviousValueHash, k.PreviousValuePrefix, k.PreviousValueUntil = HashKey(g.pick(genNames)+"-value-value-value"), "valu", 1+g.r.Int64N(1e18)
	}
	return k
}

func (g *recordGen) webhook(id string) Webhook {
	w := Webhook{ID: id, Name: g.pick(genNames), URL: "https://hooks.example/" + id, Secret: "s-" + id, CreatedDate: 1}
	switch g.r.IntN(8) {
	case 0:
		w.Thresholds = []float64{50, 90}
	case 1:
		w.Thresholds = []float64{120} // rejected
	case 2:
		w.URL = "ftp://hooks.example/" // rejected
	case 3:
		w.Events = []string{EventKeyDisabled}
	}
	return w
}

// record returns a random record: its key and value (nil: a tombstone).
func (g *recordGen) record() ([]byte, []byte) {
	var rec schemas.ConfigRecord
	var e any
	switch n := g.r.IntN(100); {
	case n < 3:
		return g.malformed()
	case n < 6:
		rec = schemas.ConfigRecord{Kind: schemas.KindGateway, ID: "gateway"}
		e = Gateway{UnknownRouteStatus: []int{0, 403, 404, 500}[g.r.IntN(4)]}
	case n < 14:
		a := g.api(g.pick(genAPIs))
		rec, e = schemas.ConfigRecord{Kind: schemas.KindAPI, ID: a.ID}, a
	case n < 30:
		p := g.plan(g.pick(genPlans))
		rec, e = schemas.ConfigRecord{Kind: schemas.KindUsagePlan, ID: p.ID}, p
	case n < 34:
		w := g.webhook(g.pick(genWebhooks))
		rec, e = schemas.ConfigRecord{Kind: schemas.KindWebhook, ID: w.ID}, w
	case n < 55:
		k := g.key(g.pick(genKeys))
		if g.r.IntN(10) == 0 {
			k.UsagePlans = []string{"p1"} // ignored: memberships are records
		}
		rec, e = schemas.ConfigRecord{Kind: schemas.KindAPIKey, ID: k.ID}, k
	default:
		m := planKeyEntity{UsagePlanID: g.pick(genPlans), KeyID: g.pick(genKeys)}
		rec, e = schemas.ConfigRecord{Kind: schemas.KindUsagePlanKey, ID: m.UsagePlanID + "/" + m.KeyID}, m
		if g.r.IntN(20) == 0 {
			rec.ID = g.pick(genPlans) + "/" + g.pick(genKeys) // mismatch: rejected
		}
	}
	if g.r.IntN(5) == 0 {
		return []byte(rec.Key()), nil // a tombstone
	}
	rec.Entity, _ = json.Marshal(e)
	b, err := schemas.EncodeConfigRecord(&rec)
	if err != nil {
		panic(err)
	}
	return []byte(rec.Key()), b
}

// malformed returns a record that a one-pass decoding could read
// otherwise than the two-pass one, or that is not a record at all.
func (g *recordGen) malformed() ([]byte, []byte) {
	id := g.pick(genKeys)
	key := []byte("apiKey/" + id)
	good := fmt.Sprintf(`{"id":%q,"name":%q,"valueHash":%q}`, id, g.pick(genNames), HashKey(g.pick(genNames)+"-value-value-value"))
	env := func(rest string) []byte {
		return []byte(`{"type":"tollgate.config.v1","kind":"apiKey","id":"` + id + `",` + rest + `}`)
	}
	switch g.r.IntN(9) {
	case 0:
		return key, []byte("not a record")
	case 1: // two entities: the last wins, and it has no name
		return key, env(`"entity":` + good + `,"entity":{"id":"` + id + `"}`)
	case 2: // the same, the second member spelt otherwise
		return key, env(`"entity":` + good + `,"Entity":{"id":"` + id + `"}`)
	case 3: // the same, escaped
		return key, env(`"entity":` + good + `,"\u0065ntity":{"id":"` + id + `"}`)
	case 4:
		return key, env(`"entity":[` + good + `]`)
	case 5:
		return key, env(`"entity":"` + id + `"`)
	case 6:
		return key, []byte(`{"type":"tollgate.config.v2","kind":"apiKey","id":"` + id + `","entity":` + good + `}`)
	case 7: // another kind than the key's
		return []byte("usagePlan/" + id), env(`"entity":` + good)
	default: // fine, with a tag that looks like a member
		return key, env(`"entity":` + strings.Replace(good, `"name"`, `"tags":{"entity":"x"},"name"`, 1))
	}
}

func (g *recordGen) log(n int) *testLog {
	l := &testLog{}
	for range n {
		k, v := g.record()
		l.keys, l.values = append(l.keys, k), append(l.values, v)
	}
	return l
}

func catalogJSON(c *Catalog) string {
	b, _ := json.Marshal(c)
	return string(b)
}

// webhooksJSON encodes a list of webhooks, none as [] (they are not part
// of a Catalog: compared beside it).
func webhooksJSON(list []Webhook) string {
	if list == nil {
		list = []Webhook{}
	}
	b, _ := json.Marshal(list)
	return " webhooks " + string(b)
}

// withWebhooks returns s with the given webhooks (StateOf a Catalog has
// none).
func withWebhooks(s *State, list []Webhook) *State {
	tx := s.Begin()
	for _, w := range list {
		tx.PutWebhook(w)
	}
	return tx.State
}

// stateJSON encodes a state's catalog, with no APIs as null (a State
// may hold an empty list or none).
func stateJSON(s *State) string {
	c := s.Catalog()
	if len(c.APIs) == 0 {
		c.APIs = nil
	}
	return catalogJSON(c)
}

// checkDelta fails unless every entity that differs between old and
// next is named by d.
func checkDelta(t *testing.T, old, next *State, d Delta) {
	t.Helper()
	if d.Full {
		return
	}
	diff := DiffStates(old, next)
	if diff.Gateway && !d.Gateway || diff.APIs && !d.APIs {
		t.Fatalf("delta %+v misses the gateway or APIs (diff %+v)", d, diff.Delta)
	}
	for _, id := range diff.Plans {
		if !slices.Contains(d.Plans, id) {
			t.Fatalf("delta %+v misses plan %s", d, id)
		}
	}
	for _, id := range diff.Keys {
		if !slices.Contains(d.Keys, id) {
			t.Fatalf("delta %+v misses key %s", d, id)
		}
	}
}

// The View keeps its State record by record (after loading into maps);
// the reference rebuilds the catalog from all records in force. On
// random logs, compacted or not, applied one by one or in batches, both
// accept the same records, describe the same catalog, ask for the same
// repairs, and agree on which records are in force; each delta names
// every entity that changed; and a view loaded from a snapshot taken on
// the way goes on like the original.
func TestViewMatchesTheReference(t *testing.T) {
	runs := 200
	if testing.Short() {
		runs = 50
	}
	for run := range runs {
		seed := uint64(run)
		g := &recordGen{r: rand.New(rand.NewPCG(seed, 1))}
		l := g.log(20 + g.r.IntN(200))
		logs := map[string]*testLog{"log": l, "compacted": l.compact(t)}
		for _, name := range []string{"log", "compacted"} {
			l := logs[name]
			// The view loads (bulk) up to settleAt, then goes on record
			// by record; batchOf > 1 applies batches through ApplyBatch.
			c := referenceCase{settleAt: g.r.IntN(len(l.keys)), snapAt: g.r.IntN(len(l.keys)), batchOf: 1}
			if g.r.IntN(3) == 0 {
				c.settleAt = 0
			}
			if g.r.IntN(3) == 0 {
				c.batchOf = 1 + g.r.IntN(40)
			}
			t.Run(fmt.Sprintf("seed%d/%s", seed, name), func(t *testing.T) { checkAgainstReference(t, l, c) })
		}
	}
}

type referenceCase struct{ settleAt, snapAt, batchOf int }

func checkAgainstReference(t *testing.T, l *testLog, c referenceCase) {
	t.Helper()
	v, ref := NewView(), newRefView()
	var (
		loaded        *View
		prev          *State
		handedOut     []*State
		handedOutJSON []string
	)
	for start := 0; start < len(l.keys); {
		end := min(start+c.batchOf, len(l.keys))
		if start <= c.settleAt && c.settleAt < end {
			end = c.settleAt + 1 // the batch ends where the view settles
		}
		var got []error
		if c.batchOf > 1 {
			var recs []Record
			for i := start; i < end; i++ {
				recs = append(recs, Record{Offset: int64(i), Key: l.keys[i], Value: l.values[i]})
			}
			got = v.ApplyBatch(recs)
			if got == nil {
				got = make([]error, len(recs))
			}
		} else {
			got = []error{v.Apply(int64(start), l.keys[start], l.values[start])}
		}
		for i := start; i < end; i++ {
			err, rerr := got[i-start], ref.Apply(int64(i), l.keys[i], l.values[i])
			if (err == nil) != (rerr == nil) {
				t.Fatalf("record %d %s: view says %v, reference %v", i, l.keys[i], err, rerr)
			}
			if err != nil && !errors.As(err, new(*RejectedError)) {
				t.Fatalf("record %d: %v is not a *RejectedError", i, err)
			}
			if loaded != nil {
				loaded.Apply(int64(i), l.keys[i], l.values[i])
			}
			// The record just applied is in force iff the reference says so.
			if validRecordKey(string(l.keys[i])) && i == end-1 {
				if got, want := v.InForce(string(l.keys[i]), int64(i)), ref.LatestAt([]int64{int64(i)})[string(l.keys[i])]; got != want {
					t.Fatalf("record %d %s: InForce %v, reference %v", i, l.keys[i], got, want)
				}
			}
		}
		checkRepairs(t, v.Repairs(), ref.Repairs())
		last := end - 1
		start = end
		if last < c.settleAt {
			continue // loading: reading the state would settle the view
		}
		want := catalogJSON(ref.Catalog()) + webhooksJSON(ref.Webhooks())
		if got := catalogJSON(v.Catalog()) + webhooksJSON(v.State().Webhooks()); got != want {
			t.Fatalf("after record %d %s:\n view %s\n  ref %s", last, l.keys[last], got, want)
		}
		if loaded != nil {
			if got := catalogJSON(loaded.Catalog()) + webhooksJSON(loaded.State().Webhooks()); got != want {
				t.Fatalf("after record %d %s, the view loaded from the snapshot of record %d:\n got %s\nwant %s", last, l.keys[last], c.snapAt, got, want)
			}
		}
		cur := v.State()
		d := v.TakeDelta()
		if prev == nil {
			prev = NewState()
		}
		checkDelta(t, prev, cur, d)
		prev = cur
		handedOut = append(handedOut, cur)
		handedOutJSON = append(handedOutJSON, want)
		if loaded == nil && last >= c.snapAt {
			loaded = snapshotRoundTrip(t, v)
		}
	}
	rebuilt := withWebhooks(StateOf(v.Catalog()), v.st.webhooks)
	checkSameIndexes(t, v.st, rebuilt)
	if loaded != nil {
		checkSameIndexes(t, loaded.st, rebuilt)
	}
	// The states handed out did not change since.
	for i, s := range handedOut {
		c := s.Catalog()
		if c.APIs == nil {
			c.APIs = []API{}
		}
		if got := catalogJSON(c) + webhooksJSON(s.Webhooks()); got != handedOutJSON[i] {
			t.Fatalf("a state handed out changed since:\n now %s\n was %s", got, handedOutJSON[i])
		}
	}
}

// checkRepairs compares repairs by key and entity (the view encodes the
// entity in force again; the reference keeps the record's bytes).
func checkRepairs(t *testing.T, got, want []Repair) {
	t.Helper()
	entity := func(b []byte) string {
		if b == nil {
			return "tombstone"
		}
		var r schemas.ConfigRecord
		if err := schemas.DecodeConfigRecord(b, &r); err != nil {
			t.Fatal(err)
		}
		var e any
		switch r.Kind {
		case schemas.KindGateway:
			e = new(Gateway)
		case schemas.KindAPI:
			e = new(API)
		case schemas.KindUsagePlan:
			e = new(UsagePlan)
		case schemas.KindAPIKey:
			e = new(APIKey)
		case schemas.KindWebhook:
			e = new(Webhook)
		default:
			e = new(planKeyEntity)
		}
		json.Unmarshal(r.Entity, e)
		if k, ok := e.(*APIKey); ok {
			k.UsagePlans = nil
		}
		out, _ := json.Marshal(e)
		return string(out)
	}
	if len(got) != len(want) {
		t.Fatalf("repairs %d, reference %d", len(got), len(want))
	}
	for i := range got {
		if got[i].Key != want[i].Key || entity(got[i].Value) != entity(want[i].Value) {
			t.Fatalf("repair %d: %s %s, reference %s %s", i, got[i].Key, entity(got[i].Value), want[i].Key, entity(want[i].Value))
		}
	}
}

// checkSameIndexes compares every index of two states.
func checkSameIndexes(t *testing.T, got, want *State) {
	t.Helper()
	if n := reflect.TypeOf(State{}).NumField(); n != 11 {
		t.Fatalf("State has %d fields: check that viewstate.go keeps them all, then update this test", n)
	}
	pairs := func(name string, a, b *btree.BTreeG[pair]) {
		var x, y []pair
		a.Ascend(func(p pair) bool { x = append(x, p); return true })
		b.Ascend(func(p pair) bool { y = append(y, p); return true })
		if !slices.Equal(x, y) {
			t.Fatalf("index %s:\n got %v\nwant %v", name, x, y)
		}
		for _, p := range x { // listed is not enough: found by search
			if !a.Has(p) {
				t.Fatalf("index %s: %v is listed but not found", name, p)
			}
		}
	}
	got.keys.Ascend(func(k *APIKey) bool {
		if got.Key(k.ID) != k {
			t.Fatalf("key %s is listed but not found", k.ID)
		}
		return true
	})
	pairs("planNames", got.planNames, want.planNames)
	pairs("keyNames", got.keyNames, want.keyNames)
	pairs("keyHashes", got.keyHashes, want.keyHashes)
	pairs("prevHashes", got.prevHashes, want.prevHashes)
	pairs("customers", got.customers, want.customers)
	pairs("members", got.members, want.members)
	if a, b := stateJSON(got), stateJSON(want); a != b {
		t.Fatalf("states differ:\n got %s\nwant %s", a, b)
	}
	if a, b := webhooksJSON(got.webhooks), webhooksJSON(want.webhooks); a != b {
		t.Fatalf("webhooks differ:\n got %s\nwant %s", a, b)
	}
}

// Records from a change hold what ChangeRecords finds by comparing the
// whole catalogs, for deltas from a Tx and Full ones.
func TestChangeRecordsOfMatchesChangeRecords(t *testing.T) {
	replayed := 0
	for seed := range uint64(200) {
		g := &recordGen{r: rand.New(rand.NewPCG(seed, 2))}
		// Two catalogs the log went through.
		v := NewView()
		var states []*State
		for i, n := 0, 50+g.r.IntN(100); i < n; i++ {
			k, val := g.record()
			v.Apply(int64(i), k, val)
			if i%10 == 0 {
				states = append(states, v.State())
			}
		}
		old, next := states[g.r.IntN(len(states))], v.State()
		want, err := ChangeRecords(old.Catalog(), next.Catalog())
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range []*Change{DiffStates(old, next), {Old: old, New: next, Delta: Delta{Full: true}}, txChange(old, next)} {
			got, err := ChangeRecordsOf(ch)
			if err != nil {
				t.Fatal(err)
			}
			// Webhooks are not part of a Catalog: ChangeRecords has none,
			// and their records are checked on their own.
			got, hooks := splitWebhookRecords(got)
			if a, b := hooksJSON(hooks), webhookRecordsJSON(old, next); a != b {
				t.Fatalf("seed %d, delta %+v: webhook records\n got %s\nwant %s", seed, ch.Delta, a, b)
			}
			if a, b := recordsJSON(got), recordsJSON(want); a != b {
				t.Fatalf("seed %d, delta %+v:\n got %s\nwant %s", seed, ch.Delta, a, b)
			}
		}
		// Applied on top of the old catalog's records, they give the new.
		var l testLog
		recs, _ := Records(old.Catalog())
		l.write(t, recs)
		l.write(t, want)
		w, rejected := l.replay(t)
		if len(rejected) > 0 {
			// Two entities swapping names or values: the first record
			// meets the other's name (the log refuses such a change).
			continue
		}
		replayed++
		if a, b := stateJSON(w.State()), stateJSON(next); a != b {
			t.Fatalf("seed %d: replayed\n got %s\nwant %s", seed, a, b)
		}
	}
	if replayed < 100 {
		t.Fatalf("only %d of 200 changes replayed without a rejection", replayed)
	}
}

// txChange makes next from old through a Tx, as the admin API would.
func txChange(old, next *State) *Change {
	tx := old.Begin()
	tx.SetGateway(next.Gateway())
	for _, a := range old.APIs() {
		tx.DeleteAPI(a.ID)
	}
	for _, a := range next.APIs() {
		tx.PutAPI(a)
	}
	old.Plans("", func(p *UsagePlan) bool { tx.DeletePlan(p.ID); return true })
	next.Plans("", func(p *UsagePlan) bool { tx.PutPlan(*p); return true })
	old.Keys("", func(k *APIKey) bool { tx.DeleteKey(k.ID); return true })
	next.Keys("", func(k *APIKey) bool { tx.PutKey(*k); return true })
	for _, w := range old.Webhooks() {
		tx.DeleteWebhook(w.ID)
	}
	for _, w := range next.Webhooks() {
		tx.PutWebhook(w)
	}
	return &Change{Old: old, New: tx.State, Delta: tx.Delta()}
}

// splitWebhookRecords separates the webhooks' records from the others.
func splitWebhookRecords(recs []schemas.ConfigRecord) (others, hooks []schemas.ConfigRecord) {
	for _, r := range recs {
		if r.Kind == schemas.KindWebhook {
			hooks = append(hooks, r)
		} else {
			others = append(others, r)
		}
	}
	return others, hooks
}

// hooksJSON lists records by key: the webhooks' records in any order.
func hooksJSON(recs []schemas.ConfigRecord) string {
	recs = slices.Clone(recs)
	slices.SortFunc(recs, func(a, b schemas.ConfigRecord) int { return strings.Compare(a.Key(), b.Key()) })
	return recordsJSON(recs)
}

// webhookRecordsJSON is what hooksJSON shows of the records that make
// next's webhooks from old's: a put for each new or changed one, a
// tombstone for each removed.
func webhookRecordsJSON(old, next *State) string {
	var recs []schemas.ConfigRecord
	for _, w := range next.Webhooks() {
		if o := old.Webhook(w.ID); o == nil || !sameJSON(o, &w) {
			b, _ := json.Marshal(w)
			recs = append(recs, schemas.ConfigRecord{Kind: schemas.KindWebhook, ID: w.ID, Entity: b})
		}
	}
	for _, w := range old.Webhooks() {
		if next.Webhook(w.ID) == nil {
			recs = append(recs, schemas.ConfigRecord{Kind: schemas.KindWebhook, ID: w.ID})
		}
	}
	return hooksJSON(recs)
}

func recordsJSON(recs []schemas.ConfigRecord) string {
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "%s %s\n", r.Key(), r.Entity)
	}
	return b.String()
}

func TestViewDeltaAndStateSnapshots(t *testing.T) {
	c := exampleCatalog(t)
	v := NewView()
	var l testLog
	recs, _ := Records(c)
	l.write(t, recs)
	for i := range l.keys {
		if err := v.Apply(int64(i), l.keys[i], l.values[i]); err != nil {
			t.Fatal(err)
		}
	}
	first := v.State()
	if d := v.TakeDelta(); !d.Full {
		t.Fatalf("delta after the first load %+v, want Full", d)
	}
	if d := v.TakeDelta(); !d.Empty() {
		t.Fatalf("delta with no record since: %+v", d)
	}
	// Disabling one key names that key only, and leaves the state handed
	// out before as it was.
	k := *first.Key(c.APIKeys[0].ID)
	k.Enabled, k.UsagePlans = false, nil
	b, _ := json.Marshal(k)
	rec, _ := schemas.EncodeConfigRecord(&schemas.ConfigRecord{Kind: schemas.KindAPIKey, ID: k.ID, Entity: b})
	if err := v.Apply(100, []byte("apiKey/"+k.ID), rec); err != nil {
		t.Fatal(err)
	}
	if d := v.TakeDelta(); !slices.Equal(d.Keys, []string{k.ID}) || len(d.Plans) > 0 || d.APIs || d.Gateway || d.Full {
		t.Fatalf("delta %+v, want key %s", d, k.ID)
	}
	if !first.Key(k.ID).Enabled || v.State().Key(k.ID).Enabled {
		t.Fatal("the change reached the state handed out before, or not the view's")
	}
	if got := v.State().Key(k.ID).UsagePlans; !slices.Equal(got, first.Key(k.ID).UsagePlans) {
		t.Fatalf("the key record lost the key's memberships: %v", got)
	}
	// Past maxDeltaIDs, the delta is Full.
	for i := range maxDeltaIDs + 1 {
		id := fmt.Sprintf("bulk%06d", i)
		b, _ := json.Marshal(APIKey{ID: id, Name: id, ValueHash: HashKey(id + "-value-value-value")})
		rec, _ := schemas.EncodeConfigRecord(&schemas.ConfigRecord{Kind: schemas.KindAPIKey, ID: id, Entity: b})
		if err := v.Apply(int64(200+i), []byte("apiKey/"+id), rec); err != nil {
			t.Fatal(err)
		}
	}
	if d := v.TakeDelta(); !d.Full || len(d.Keys) > 0 {
		t.Fatalf("delta after %d keys is not Full", maxDeltaIDs+1)
	}
}

// A damaged snapshot is refused, whatever byte is damaged.
func TestViewSnapshotDamage(t *testing.T) {
	c := exampleCatalog(t)
	recs, _ := Records(c)
	var l testLog
	l.write(t, recs)
	v, _ := l.replay(t)
	var b bytes.Buffer
	if _, err := v.Snapshot().WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	good := b.Bytes()
	for i := range good {
		bad := slices.Clone(good)
		bad[i] ^= 0x20
		if _, err := ReadView(bytes.NewReader(bad)); !errors.Is(err, ErrSnapshotFormat) {
			t.Fatalf("byte %d damaged: %v, want ErrSnapshotFormat", i, err)
		}
	}
	for _, n := range []int{0, 3, len(good) / 2, len(good) - 1} {
		if _, err := ReadView(bytes.NewReader(good[:n])); !errors.Is(err, ErrSnapshotFormat) {
			t.Fatalf("first %d bytes: %v, want ErrSnapshotFormat", n, err)
		}
	}
}

// The snapshot encodes keys field by field: a field added to APIKey
// must be added to it too.
func TestViewSnapshotKeepsEveryKeyField(t *testing.T) {
	k := APIKey{}
	rv := reflect.ValueOf(&k).Elem()
	for i := range rv.NumField() {
		f := rv.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(fmt.Sprintf("field%d", i))
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Int64:
			f.SetInt(int64(-1000 - i))
		case reflect.Map:
			f.Set(reflect.ValueOf(map[string]string{"a": "b", "c": "d"}))
		case reflect.Slice:
			// UsagePlans: through the plans, below.
		default:
			t.Fatalf("APIKey field %s of kind %s: teach viewsnapshot.go and this test", rv.Type().Field(i).Name, f.Kind())
		}
	}
	k.Value = "" // never stored
	k.UsagePlans = []string{"p1"}
	v := newSettledView()
	v.st.putPlan(&UsagePlan{ID: "p1", Name: "p1", APIStages: []APIStage{}})
	v.plans.ReplaceOrInsert(&UsagePlan{ID: "p1", Name: "p1"})
	v.st.putKey(&k)
	got := snapshotRoundTrip(t, v).st.Key(k.ID)
	if got == nil || !reflect.DeepEqual(*got, k) {
		t.Fatalf("after the snapshot:\n got %+v\nwant %+v", got, k)
	}
}

// plainSeeds are records as the admin API writes them, and variations.
func plainSeeds() [][2]string {
	h := HashKey("value-value-value-value-1")
	key := `{"id":"k1","name":"alice","description":"d","enabled":true,"customerId":"c","tags":{"a":"b","c":""},"valueHash":"` + h + `","valuePrefix":"valu","usagePlans":null,"createdDate":1700000000,"lastUpdatedDate":-5}`
	env := func(kind, id, entity string) string {
		return `{"type":"tollgate.config.v1","kind":"` + kind + `","id":"` + id + `","entity":` + entity + `}`
	}
	rotated := strings.Replace(key, `"usagePlans":null`, `"previousValueHash":"`+HashKey("value-value-value-value-0")+`","previousValuePrefix":"valu","previousValueUntil":1800000000000000000,"usagePlans":null`, 1)
	return [][2]string{
		{"apiKey/k1", env("apiKey", "k1", key)},
		{"apiKey/k1", env("apiKey", "k1", rotated)}, // a key in a rotation
		{"apiKey/k1", env("apiKey", "k1", `{"id":"k1","name":"a","enabled":false,"valueHash":"x","usagePlans":["p1","p2"],"createdDate":0}`)},
		{"apiKey/k1", env("apiKey", "k1", `null`)},
		{"apiKey/k1", " \n" + env("apiKey", "k1", `{ "id" : "k1" , "tags" : { } , "usagePlans" : [ ] }`) + "\t"},
		{"apiKey/k1", env("apiKey", "k1", `{"id":"k2","name":""}`)},
		{"usagePlanKey/p1/k1", env("usagePlanKey", "p1/k1", `{"usagePlanId":"p1","keyId":"k1"}`)},
		{"usagePlanKey/p/x/k", env("usagePlanKey", "p/x/k", `{"usagePlanId":"p","keyId":"x/k"}`)},
		{"usagePlanKey/p1/k1", env("usagePlanKey", "p1/k1", `{"usagePlanId":"p2","keyId":"k1"}`)},
		{"usagePlanKey/p1/k1", env("usagePlanKey", "p1/k1", `{"keyId":"k1"}`)},
		{"usagePlanKey/p1/k1", env("usagePlanKey", "p1/k1", `null`)},
		{"apiKey/k1", `{"kind":"apiKey","id":"k1","entity":{"id":"k1"},"type":"tollgate.config.v1"}`},
		{"apiKey/k1", env("apiKey", "k1", `{"id":"k1","createdDate":9223372036854775807,"lastUpdatedDate":-9223372036854775808}`)},
		{"apiKey/k1", env("apiKey", "k1", `{"id":"k1","createdDate":9223372036854775808}`)},
		{"apiKey/k1", env("apiKey", "k1", `{"id":"k1","createdDate":1e3}`)},
		{"apiKey/k1", env("apiKey", "k1", `{"id":"k1","previousValueUntil":1.5}`)},
		{"apiKey/k1", env("apiKey", "k1", `{"id":"k1","previousValueHash":"a","previousValueHash":"b"}`)},
		{"apiKey/k1", env("apiKey", "k1", `{"id":"k1","createdDate":01}`)},
		{"apiKey/k1", env("apiKey", "k1", `{"id":"k1","enabled":null}`)},
		{"apiKey/k1", env("apiKey", "k1", `{"id":"k1","ID":"k2"}`)},
		{"apiKey/k1", env("apiKey", "k1", `{"id":"k1","name":"a\"b"}`)},
		{"apiKey/k1", env("apiKey", "k1", `{"id":"k1","name":"é"}`)},
		{"apiKey/k1", env("apiKey", "k1", `{"id":"k1","name":"a\nb"}`)},
		{"apiKey/k1", env("apiKey", "k1", `{"id":"k1","name":"\u0041"}`)},
		{"apiKey/k1", env("apiKey", "k1", "{\"id\":\"k1\",\"name\":\"\xff\"}")},
		{"apiKey/k1", env("apiKey", "k1", "{\"id\":\"k1\",\"name\":\"a\tb\"}")},
		{"apiKey/k1", env("apiKey", "k1", `{"id":"k1","tags":{"a":"1","a":"2"}}`)},
		{"apiKey/k1", env("apiKey", "k1", `{"id":"k1","tags":{"a":"1"},"tags":{"b":"2"}}`)},
		{"apiKey/k1", env("apiKey", "k1", `{"id":"k1","usagePlans":[1]}`)},
		{"apiKey/k1", env("apiKey", "k1", `{"id":"k1"}`) + `x`},
		{"apiKey/k1", `{"type":"tollgate.config.v1","kind":"apiKey","id":"k1"}`},
		{"apiKey/k1", `{"type":"tollgate.config.v1","kind":"apiKey","id":"k1","id":"k1","entity":null}`},
		{"apiKey/k1", `{"type":"tollgate.config.v1","Kind":"apiKey","id":"k1","entity":null}`},
	}
}

// What decodePlain reads, the JSON decoding reads the same; on records
// it declines, decodeRecord decides as the JSON decoding does.
func TestPlainDecodingMatchesJSON(t *testing.T) {
	plain := 0
	for _, s := range plainSeeds() {
		if checkPlainDecoding(t, []byte(s[0]), []byte(s[1])) {
			plain++
		}
	}
	if plain < 8 {
		t.Fatalf("decodePlain read %d of the seeds, want the admin API's records at least", plain)
	}
	// Variations: every byte changed, and white space anywhere.
	r := rand.New(rand.NewPCG(1, 1))
	for _, s := range plainSeeds()[:7] {
		for range 300 {
			v := []byte(s[1])
			i := r.IntN(len(v))
			switch r.IntN(3) {
			case 0:
				const chars = " \"{}[],:0123456789-eE.truefalsn\\\x00\xff"
				v[i] = chars[r.IntN(len(chars))]
			case 1:
				v = slices.Insert(v, i, ' ')
			default:
				v = slices.Delete(v, i, i+1)
			}
			checkPlainDecoding(t, []byte(s[0]), v)
		}
	}
}

func FuzzPlainDecoding(f *testing.F) {
	for _, s := range plainSeeds() {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, key, value string) { checkPlainDecoding(t, []byte(key), []byte(value)) })
}

// checkPlainDecoding compares decodePlain with the JSON decoding on one
// record; it reports whether decodePlain read it.
func checkPlainDecoding(t *testing.T, key, value []byte) bool {
	t.Helper()
	got, ok := decodePlain(key, value)
	want, err := decodeSlow(key, value)
	if !ok {
		return false
	}
	if err != nil {
		t.Fatalf("%s %s: decodePlain read what the JSON decoding refuses (%v)", key, value, err)
	}
	if want.key != nil {
		want.key.UsagePlans = nil // not kept: memberships are records of their own
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s %s:\n plain %+v %+v\n  json %+v %+v", key, value, got, got.key, want, want.key)
	}
	return true
}
