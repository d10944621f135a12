package catalog

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func rotatedKey() APIKey {
	k := APIKey{ID: "k1", Name: "rotated", Enabled: true, ValueHash: HashKey("newnewnewnewnewnewnew1"), ValuePrefix: "newn",
		UsagePlans: []string{}, CreatedDate: 1}
	k.PreviousValueHash, k.PreviousValuePrefix, k.PreviousValueUntil = HashKey("oldoldoldoldoldoldold1"), "oldo", now.Add(time.Hour).UnixNano()
	return k
}

func TestFingerprint(t *testing.T) {
	h := HashKey("widgetwidgetwidget0001")
	if got := Fingerprint(h); got != h[:8] || len(got) != 8 {
		t.Fatalf("Fingerprint(%s) = %q", h, got)
	}
	if Fingerprint("") != "" {
		t.Fatal("no value has a fingerprint")
	}
	k := rotatedKey()
	if k.ValueFingerprint() != HashKey("newnewnewnewnewnewnew1")[:8] || k.PreviousValueFingerprint() != HashKey("oldoldoldoldoldoldold1")[:8] {
		t.Fatalf("fingerprints %s %s", k.ValueFingerprint(), k.PreviousValueFingerprint())
	}
}

// A rotation is in its grace up to the instant before PreviousValueUntil;
// Rotate, CancelRotation and ClearRotation move the values as they say.
func TestRotationLifecycle(t *testing.T) {
	k := APIKey{ValueHash: HashKey("oldoldoldoldoldoldold1"), ValuePrefix: "oldo"}
	if k.HasRotation() || k.RotationActive(now) {
		t.Fatal("a key never rotated has a rotation")
	}
	until := now.Add(24 * time.Hour)
	k.Rotate(HashKey("newnewnewnewnewnewnew1"), "newn", until.UnixNano())
	if k.ValueHash != HashKey("newnewnewnewnewnewnew1") || k.PreviousValueHash != HashKey("oldoldoldoldoldoldold1") || k.PreviousValuePrefix != "oldo" {
		t.Fatalf("rotated: %+v", k)
	}
	if !k.RotationActive(until.Add(-time.Nanosecond)) || k.RotationActive(until) || !k.HasRotation() {
		t.Fatal("the grace does not end at PreviousValueUntil")
	}
	c := k
	c.CancelRotation()
	if c.ValueHash != HashKey("oldoldoldoldoldoldold1") || c.ValuePrefix != "oldo" || c.HasRotation() || c.PreviousValueUntil != 0 {
		t.Fatalf("cancelled: %+v", c)
	}
	f := k
	f.ClearRotation()
	if f.ValueHash != HashKey("newnewnewnewnewnewnew1") || f.HasRotation() || f.PreviousValuePrefix != "" {
		t.Fatalf("finished: %+v", f)
	}
}

// The rotation's fields are validated on their own, and a previous value
// is a value like any other: no other key may hold it, as its current or
// previous value, whether the catalog is validated whole or a Tx.
func TestRotationValidation(t *testing.T) {
	other := APIKey{ID: "k2", Name: "other", ValueHash: HashKey("otherotherotherother1"), UsagePlans: []string{}, CreatedDate: 1}
	for _, tc := range []struct {
		name   string
		change func(k, o *APIKey)
		field  string // "" valid
	}{
		{"valid", func(k, o *APIKey) {}, ""},
		{"no rotation", func(k, o *APIKey) { k.ClearRotation() }, ""},
		{"hash not hex", func(k, o *APIKey) { k.PreviousValueHash = strings.ToUpper(k.PreviousValueHash) }, "previousValueHash"},
		{"hash short", func(k, o *APIKey) { k.PreviousValueHash = k.PreviousValueHash[:63] }, "previousValueHash"},
		{"until missing", func(k, o *APIKey) { k.PreviousValueUntil = 0 }, "previousValueUntil"},
		{"until without hash", func(k, o *APIKey) { k.ClearRotation(); k.PreviousValueUntil = 5 }, "previousValueUntil"},
		{"prefix without hash", func(k, o *APIKey) { k.ClearRotation(); k.PreviousValuePrefix = "oldo" }, "previousValuePrefix"},
		{"prefix too long", func(k, o *APIKey) { k.PreviousValuePrefix = "oldol" }, "previousValuePrefix"},
		{"previous is current", func(k, o *APIKey) { k.PreviousValueHash = k.ValueHash }, "previousValueHash"},
		// Which of the two keys is reported depends on the order of
		// validation; that it is refused does not.
		{"previous is another key's value", func(k, o *APIKey) { k.PreviousValueHash = o.ValueHash }, "values must be unique"},
		{"value is another key's previous", func(k, o *APIKey) { o.ValueHash = k.PreviousValueHash }, "values must be unique"},
		{"two keys, one previous value", func(k, o *APIKey) {
			o.PreviousValueHash, o.PreviousValueUntil = k.PreviousValueHash, 1
		}, "previousValueHash: is the same as a value of key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, o := rotatedKey(), other
			tc.change(&k, &o)
			whole := Validate(&Catalog{APIKeys: []APIKey{k, o}}, nil)
			tx := NewState().Begin()
			tx.PutKey(k)
			tx.PutKey(o)
			inTx := tx.Validate(nil)
			for name, err := range map[string]error{"Validate": whole, "Tx.Validate": inTx} {
				if tc.field == "" {
					if err != nil {
						t.Errorf("%s: %v", name, err)
					}
					continue
				}
				if err == nil || !strings.Contains(err.Error(), tc.field) {
					t.Errorf("%s: %v, want an error naming %s", name, err, tc.field)
				}
			}
		})
	}
}

// A file declares values, not rotations: applying one that keeps a
// rotated key's value (or names none) keeps its rotation; one that
// declares another value ends it.
func TestApplyFileKeepsRotations(t *testing.T) {
	const file = `usagePlans:
  - name: Free
apiKeys:
  - name: rotated
    %s
    enabled: true
    usagePlans: [Free]
`
	cur, _ := mustApply(t, &Catalog{}, strings.Replace(file, "%s", "value: oldoldoldoldoldoldold1", 1))
	k := cur.KeyByName("rotated")
	k.Rotate(HashKey("newnewnewnewnewnewnew1"), "newn", now.Add(time.Hour).UnixNano())
	for _, value := range []string{"description: no value named", "value: newnewnewnewnewnewnew1"} {
		c, ch := mustApply(t, cur, strings.Replace(file, "%s", value, 1))
		if got := c.KeyByName("rotated"); got.PreviousValueHash != k.PreviousValueHash || got.PreviousValueUntil != k.PreviousValueUntil || got.ValueHash != k.ValueHash {
			t.Fatalf("%s: the rotation is gone: %+v", value, got)
		}
		if value == "value: newnewnewnewnewnewnew1" && ch.Changed {
			t.Fatal("applying the key's own value changed it")
		}
	}
	c, _ := mustApply(t, cur, strings.Replace(file, "%s", "value: otherotherotherother1", 1))
	if got := c.KeyByName("rotated"); got.HasRotation() || got.ValueHash != HashKey("otherotherotherother1") {
		t.Fatalf("a file's new value keeps the rotation: %+v", got)
	}
	// Files never set the fields themselves.
	for _, f := range []string{"previousValueHash: " + HashKey("x"), "previousValueUntil: 5"} {
		if _, err := ParseFile("tollgate.yaml", []byte(strings.Replace(file, "%s", f, 1))); err == nil {
			t.Errorf("a file sets %s", f)
		}
	}
}

// The audit log shows both fingerprints and when the previous value
// stops, never a hash: encoding/json's encoding and the hand-written one
// alike.
func TestAuditShowsRotation(t *testing.T) {
	o := rotatedKey()
	o.ClearRotation()
	o.ValueHash, o.ValuePrefix = HashKey("oldoldoldoldoldoldold1"), "oldo"
	n := rotatedKey()
	old, next := StateOf(&Catalog{APIKeys: []APIKey{o}}), StateOf(&Catalog{APIKeys: []APIKey{n}})
	ch := &Change{Old: old, New: next, Delta: Delta{Keys: []string{"k1"}}}
	entries := AuditEntries(ch, now, "alice", "POST /v1/apikeys/k1/rotate")
	if len(entries) != 1 {
		t.Fatalf("%d entries", len(entries))
	}
	var got struct {
		New map[string]any `json:"new"`
	}
	b, _ := json.Marshal(entries[0])
	json.Unmarshal(b, &got)
	want := map[string]any{"valueFingerprint": n.ValueFingerprint(), "previousValueFingerprint": n.PreviousValueFingerprint(),
		"previousValuePrefix": "oldo", "previousValueUntil": float64(n.PreviousValueUntil), "keyValueChanged": true}
	for f, v := range want {
		if got.New[f] != v {
			t.Errorf("new.%s = %v, want %v", f, got.New[f], v)
		}
	}
	if bytes.Contains(b, []byte(n.ValueHash)) || bytes.Contains(b, []byte(n.PreviousValueHash)) {
		t.Fatalf("a hash in the audit log: %s", b)
	}
	lines := newKeyLines(now, "alice", "POST /v1/apikeys/k1/rotate")
	hand, err := lines.appendKeys(nil, ch, ch.Keys)
	if err != nil {
		t.Fatal(err)
	}
	var viaJSON bytes.Buffer
	if err := encodeEntries(&viaJSON, now, "alice", "POST /v1/apikeys/k1/rotate", func(emit emitter) { auditKeys(ch, ch.Keys, emit) }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(hand, viaJSON.Bytes()) {
		t.Fatalf("the hand-written line differs:\n%s\n%s", hand, viaJSON.Bytes())
	}
}
