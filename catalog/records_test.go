package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/schemas"
)

// sorted returns c with entities in the order a View builds them.
func sorted(c *Catalog) *Catalog {
	c = c.Clone()
	slices.SortFunc(c.APIs, func(a, b API) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(c.UsagePlans, func(a, b UsagePlan) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(c.APIKeys, func(a, b APIKey) int { return strings.Compare(a.ID, b.ID) })
	for i := range c.APIKeys {
		slices.Sort(c.APIKeys[i].UsagePlans)
	}
	return c
}

// logOf encodes records as a log: offset i holds records[i].
type testLog struct{ keys, values [][]byte }

func (l *testLog) write(t *testing.T, recs []schemas.ConfigRecord) {
	t.Helper()
	for i := range recs {
		var b []byte
		if !recs[i].Tombstone() {
			var err error
			if b, err = schemas.EncodeConfigRecord(&recs[i]); err != nil {
				t.Fatal(err)
			}
		}
		l.keys, l.values = append(l.keys, []byte(recs[i].Key())), append(l.values, b)
	}
}

// replay applies the log to a new view and returns it with the rejections.
func (l *testLog) replay(t *testing.T) (*View, []error) {
	t.Helper()
	v := NewView()
	var rejected []error
	for i, b := range l.values {
		if err := v.Apply(int64(i), l.keys[i], b); err != nil {
			var re *RejectedError
			if !errors.As(err, &re) {
				t.Fatalf("offset %d: %v is not a *RejectedError", i, err)
			}
			rejected = append(rejected, err)
		}
	}
	return v, rejected
}

// compact keeps each record key's last version, in log order, as a
// compacted topic does (tombstones included).
func (l *testLog) compact(t *testing.T) *testLog {
	t.Helper()
	last := map[string]int{}
	for i, k := range l.keys {
		last[string(k)] = i
	}
	out := &testLog{}
	for i, k := range l.keys {
		if last[string(k)] == i {
			out.keys, out.values = append(out.keys, k), append(out.values, l.values[i])
		}
	}
	return out
}

func exampleCatalog(t *testing.T) *Catalog {
	t.Helper()
	b, err := os.ReadFile("../examples/tollgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, _ := mustApply(t, &Catalog{}, string(b))
	return c
}

func TestViewRebuildsTheCatalog(t *testing.T) {
	c := exampleCatalog(t)
	recs, err := Records(c)
	if err != nil {
		t.Fatal(err)
	}
	var l testLog
	l.write(t, recs)
	v, rejected := l.replay(t)
	if len(rejected) > 0 {
		t.Fatalf("rejected: %v", rejected)
	}
	if got, want := v.Catalog(), sorted(c); !got.Equal(want) {
		t.Fatalf("view catalog differs:\n got %+v\nwant %+v", got, want)
	}
	if err := Validate(v.Catalog(), nil); err != nil {
		t.Fatal(err)
	}
	// The snapshot rebuilds the same view.
	if again := snapshotRoundTrip(t, v); !again.Catalog().Equal(v.Catalog()) {
		t.Fatal("snapshot does not rebuild the view")
	}
}

func TestChangeRecordsWritesOnlyWhatChanged(t *testing.T) {
	c := exampleCatalog(t)
	next := c.Clone()
	next.APIKeys[0].Enabled = false
	recs, err := ChangeRecords(c, next)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Kind != schemas.KindAPIKey || recs[0].ID != c.APIKeys[0].ID {
		t.Fatalf("records = %+v, want the one key", recs)
	}
	// Deleting a key deletes its memberships first, then the key.
	next = c.Clone()
	gone := next.APIKeys[0]
	next.APIKeys = next.APIKeys[1:]
	recs, _ = ChangeRecords(c, next)
	var keys []string
	for _, r := range recs {
		if !r.Tombstone() {
			t.Errorf("%s is not a tombstone", r.Key())
		}
		keys = append(keys, r.Key())
	}
	want := []string{}
	for _, p := range gone.UsagePlans {
		want = append(want, "usagePlanKey/"+p+"/"+gone.ID)
	}
	slices.Sort(want)
	want = append(want, "apiKey/"+gone.ID)
	if !slices.Equal(keys, want) {
		t.Fatalf("records = %v, want %v", keys, want)
	}
}

func TestViewFirstWriterWins(t *testing.T) {
	c := exampleCatalog(t)
	var l testLog
	recs, _ := Records(c)
	l.write(t, recs)
	k := c.APIKeys[0]
	twin := k
	twin.ID, twin.Name, twin.UsagePlans = "twin000001", "twin", nil // same value hash
	clash := k
	clash.ID, clash.ValueHash, clash.UsagePlans = "name000001", HashKey("another-value-0000000001"), nil // same name
	more, _ := ChangeRecords(&Catalog{}, &Catalog{APIKeys: []APIKey{twin, clash}})
	l.write(t, more)
	v, rejected := l.replay(t)
	if len(rejected) != 2 || !strings.Contains(rejected[0].Error()+rejected[1].Error(), "values must be unique") ||
		!strings.Contains(rejected[0].Error()+rejected[1].Error(), "is taken by key") {
		t.Fatalf("rejected = %v, want the twin value and the taken name", rejected)
	}
	if !v.Catalog().Equal(sorted(c)) {
		t.Fatal("rejected records changed the catalog")
	}
}

func TestViewSurvivesCompactionReordering(t *testing.T) {
	c := exampleCatalog(t)
	var l testLog
	recs, _ := Records(c)
	l.write(t, recs)
	// The plans and APIs are rewritten after the keys that use them, and
	// one key is deleted: compaction moves them behind the memberships.
	next := c.Clone()
	for i := range next.UsagePlans {
		next.UsagePlans[i].Description += " (edited)"
	}
	for i := range next.APIs {
		next.APIs[i].Name += "-v2"
	}
	next.APIKeys = next.APIKeys[1:]
	more, _ := ChangeRecords(c, next)
	l.write(t, more)
	full, _ := l.replay(t)
	compacted, rejected := l.compact(t).replay(t)
	if len(rejected) > 0 {
		t.Fatal(rejected)
	}
	if !full.Catalog().Equal(sorted(next)) || !compacted.Catalog().Equal(full.Catalog()) {
		t.Fatalf("compacted replay differs:\n got %+v\nwant %+v", compacted.Catalog(), sorted(next))
	}
}

func TestViewResolvesDanglingReferences(t *testing.T) {
	c := exampleCatalog(t)
	var l testLog
	recs, _ := Records(c)
	l.write(t, recs)
	// Records from a writer that skipped validation: an API removed
	// under its plans, a plan removed under its keys.
	plan := c.UsagePlans[0]
	l.write(t, []schemas.ConfigRecord{{Kind: schemas.KindAPI, ID: plan.APIStages[0].APIID}, {Kind: schemas.KindUsagePlan, ID: c.UsagePlans[1].ID}})
	v, rejected := l.replay(t)
	if len(rejected) > 0 {
		t.Fatal(rejected)
	}
	got := v.Catalog()
	if err := Validate(got, nil); err != nil {
		t.Fatalf("resolved catalog is invalid: %v", err)
	}
	for _, p := range got.UsagePlans {
		for _, as := range p.APIStages {
			if as.APIID == plan.APIStages[0].APIID {
				t.Errorf("plan %s still covers the deleted API", p.Name)
			}
		}
	}
	for _, k := range got.APIKeys {
		if slices.Contains(k.UsagePlans, c.UsagePlans[1].ID) {
			t.Errorf("key %s is still in the deleted plan", k.Name)
		}
	}
}

func TestViewRejectsBadRecords(t *testing.T) {
	v := NewView()
	bad := func(kind, id, entity string) []byte {
		return []byte(`{"type":"tollgate.config.v1","kind":"` + kind + `","id":"` + id + `","entity":` + entity + `}`)
	}
	for _, tc := range []struct {
		name, want string
		value      []byte
	}{
		{"not a record", "malformed", []byte(`{`)},
		{"id mismatch", "differs from the record's", bad("apiKey", "k1", `{"id":"k2","name":"n","valueHash":"x"}`)},
		{"negative rate", "rateLimit", bad("usagePlan", "p1", `{"id":"p1","name":"p","throttle":{"rateLimit":-1,"burstLimit":1}}`)},
		{"bad period", "quota.period", bad("usagePlan", "p1", `{"id":"p1","name":"p","quota":{"limit":1,"period":"YEAR"}}`)},
		{"bad method key", "must have the form", bad("usagePlan", "p1", `{"id":"p1","name":"p","apiStages":[{"apiId":"a","stage":"s","throttle":{"items":{"rateLimit":1,"burstLimit":1}}}]}`)},
		{"wrong entity type", "entity", bad("apiKey", "k1", `{"id":7}`)},
		{"membership mismatch", "does not match", bad("usagePlanKey", "p1/k1", `{"usagePlanId":"p2","keyId":"k1"}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r schemas.ConfigRecord
			key := []byte("apiKey/k1")
			if json.Unmarshal(tc.value, &r) == nil {
				key = []byte(r.Key())
			}
			err := v.Apply(1, key, tc.value)
			var re *RejectedError
			if !errors.As(err, &re) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a rejection naming %q", err, tc.want)
			}
		})
	}
	if c := v.Catalog(); len(c.APIKeys)+len(c.UsagePlans) != 0 {
		t.Fatalf("rejected records left %+v", c)
	}
}

// The text rules judge input (the admin API, files, imports), not the
// log: a record an older version accepted, with a name a newer rule
// refuses, stays in force when a node rebuilds from the log.
func TestViewKeepsRecordsOfOlderTextRules(t *testing.T) {
	v := NewView()
	bad := func(kind, id, entity string) []byte {
		return []byte(`{"type":"tollgate.config.v1","kind":"` + kind + `","id":"` + id + `","entity":` + entity + `}`)
	}
	for _, rec := range [][]byte{
		bad("usagePlan", "p1", `{"id":"p1","name":"p","description":"\u001b[2J","tags":{`+manyTags(51)+`}}`),
		bad("apiKey", "k1", `{"id":"k1","name":"a\u202eb","valueHash":"x"}`),
	} {
		var r schemas.ConfigRecord
		if err := json.Unmarshal(rec, &r); err != nil {
			t.Fatal(err)
		}
		if err := v.Apply(1, []byte(r.Key()), rec); err != nil {
			t.Fatalf("record %s: %v", rec, err)
		}
	}
	if c := v.Catalog(); len(c.APIKeys) != 1 || len(c.UsagePlans) != 1 {
		t.Fatalf("catalog after the records: %+v", c)
	}
	// A change through the manager's rules is refused, naming the field.
	if err := ValidateChange(&Catalog{}, v.Catalog(), nil); err == nil || !strings.Contains(err.Error(), "bidirectional control U+202E") {
		t.Fatalf("ValidateChange of the same entities as new: %v", err)
	}
}

func TestViewKeysAndTombstones(t *testing.T) {
	v := NewView()
	rec := []byte(`{"type":"tollgate.config.v1","kind":"apiKey","id":"k1","entity":{"id":"k1","name":"n","enabled":true,"valueHash":"` + HashKey("value-value-value-value-1") + `"}}`)
	if err := v.Apply(0, []byte("apiKey/k2"), rec); err == nil || !strings.Contains(err.Error(), "the record is for apiKey/k1") {
		t.Fatalf("a record under another key: %v", err)
	}
	if err := v.Apply(1, []byte("apiKey/k1"), rec); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"user/k1", "apiKey", "apiKey/"} {
		if err := v.Apply(2, []byte(key), nil); err == nil {
			t.Errorf("tombstone %q accepted", key)
		}
	}
	if err := v.Apply(3, []byte("apiKey/k1"), nil); err != nil || len(v.Catalog().APIKeys) != 0 || snapshotRoundTrip(t, v).State().NumKeys() != 0 {
		t.Fatalf("tombstone: %v, %+v", err, v.Catalog().APIKeys)
	}
}

// A rejected record left as its key's latest would survive compaction in
// place of the version in force. Repairs put the version in force back
// on top, so a node rebuilding from the compacted log agrees with one
// that applied it live.
func TestViewRepairsMakeCompactionSafe(t *testing.T) {
	key := func(id, name, value string) APIKey {
		return APIKey{ID: id, Name: name, Enabled: true, ValueHash: HashKey(value), CreatedDate: 1}
	}
	y := key("y000000001", "y", "shared-value-000000001")
	x := key("x000000001", "x", "shared-value-000000001") // Y's value: rejected
	var l testLog
	recs, _ := ChangeRecords(&Catalog{}, &Catalog{APIKeys: []APIKey{y}})
	l.write(t, recs)
	recs, _ = ChangeRecords(&Catalog{}, &Catalog{APIKeys: []APIKey{x}})
	l.write(t, recs)
	// Y renamed: only the Y record moves on; X's rejected record stays
	// its key's latest.
	y2 := y
	y2.Name = "y-renamed"
	recs, _ = ChangeRecords(&Catalog{APIKeys: []APIKey{y}}, &Catalog{APIKeys: []APIKey{y2}})
	l.write(t, recs)
	live, rejected := l.replay(t)
	if len(rejected) != 1 {
		t.Fatalf("rejected %v, want X", rejected)
	}
	// Without repair the compacted log rebuilds another catalog.
	if rebuilt, _ := l.compact(t).replay(t); rebuilt.Catalog().Equal(live.Catalog()) {
		t.Fatal("the unrepaired compacted log rebuilt the live catalog: the test shows nothing")
	}
	repairs := live.Repairs()
	if len(repairs) != 1 || repairs[0].Key != "apiKey/x000000001" || repairs[0].Value != nil {
		t.Fatalf("repairs %+v, want a tombstone for X", repairs)
	}
	for _, r := range repairs {
		l.keys, l.values = append(l.keys, []byte(r.Key)), append(l.values, r.Value)
	}
	live, _ = l.replay(t)
	if len(live.Repairs()) != 0 {
		t.Fatalf("repairs after repairing: %+v", live.Repairs())
	}
	rebuilt, _ := l.compact(t).replay(t)
	if !rebuilt.Catalog().Equal(live.Catalog()) {
		t.Fatalf("after repair, compacted replay differs:\n got %+v\nwant %+v", rebuilt.Catalog(), live.Catalog())
	}

	// A rejected change of an accepted entity is repaired with its
	// version in force (here: Y renamed to a name X... taken by Z).
	z := key("z000000001", "z", "z-value-0000000000001")
	recs, _ = ChangeRecords(&Catalog{}, &Catalog{APIKeys: []APIKey{z}})
	l.write(t, recs)
	y3 := y2
	y3.Name, y3.Enabled = "z", false
	recs, _ = ChangeRecords(&Catalog{APIKeys: []APIKey{y2}}, &Catalog{APIKeys: []APIKey{y3}})
	l.write(t, recs)
	live, _ = l.replay(t)
	repairs = live.Repairs()
	if len(repairs) != 1 || repairs[0].Key != "apiKey/y000000001" || !strings.Contains(string(repairs[0].Value), `"y-renamed"`) {
		t.Fatalf("repairs %+v, want Y as in force", repairs)
	}
}

// manyTags is n tags as JSON object members.
func manyTags(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`"t%d":"v"`, i)
	}
	return strings.Join(parts, ",")
}
