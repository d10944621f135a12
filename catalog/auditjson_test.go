package catalog

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/jsonw"
)

// keyGen makes random keys, times and strings for the encoder tests:
// strings of pieces that encoding/json escapes in each of its ways,
// empty and nil maps and slices, extreme numbers.
type keyGen struct{ r *rand.Rand }

// pieces of random strings: what encoding/json copies, and each thing it
// escapes (quote, backslash, control characters with and without a short
// escape, DEL, HTML's <>&, U+2028/2029, bytes that are not UTF-8:
// stray continuation bytes, a lone lead byte, a truncated sequence, an
// encoded surrogate, an overlong encoding, a code point past U+10FFFF).
var strPieces = []string{
	"a", "Z", "0", " ", "key", "/", "'", "`", "{}", "[]", ":", ",",
	`"`, `\`, `\"`, `\\u0041`,
	"\x00", "\x01", "\x08", "\x09", "\x0a", "\x0b", "\x0c", "\x0d", "\x1b", "\x1f", "\x7f",
	"<", ">", "&", "<script>", "&amp;",
	"\u2028", "\u2029", "\u2027", "\u202a",
	"\x80", "\xbf", "\xff", "\xfe", "\xc3", "\xe2\x80", "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80",
	"é", "ß", "日本", "😀", "\U0010ffff", "\ufffd", "\ufeff", "\u0300",
}

func (g keyGen) str() string {
	if g.r.IntN(5) == 0 {
		return ""
	}
	var s strings.Builder
	for range g.r.IntN(8) + 1 {
		if g.r.IntN(4) == 0 {
			s.WriteByte(byte(g.r.IntN(256))) // any byte at all
		} else {
			s.WriteString(strPieces[g.r.IntN(len(strPieces))])
		}
	}
	return s.String()
}

func (g keyGen) int64() int64 {
	switch g.r.IntN(6) {
	case 0:
		return 0
	case 1:
		return math.MinInt64
	case 2:
		return math.MaxInt64
	case 3:
		return -g.r.Int64N(1 << 40)
	}
	return g.r.Int64N(4e9)
}

func (g keyGen) strs() []string {
	switch g.r.IntN(4) {
	case 0:
		return nil
	case 1:
		return []string{}
	}
	s := make([]string, g.r.IntN(4)+1)
	for i := range s {
		s[i] = g.str()
	}
	return s
}

func (g keyGen) tags() map[string]string {
	switch g.r.IntN(4) {
	case 0:
		return nil
	case 1:
		return map[string]string{}
	}
	m := map[string]string{}
	for range g.r.IntN(6) + 1 {
		m[g.str()] = g.str()
	}
	if g.r.IntN(3) == 0 {
		// Names that escape alike: sorted as they are, not as escaped.
		m["\xff"], m["\xfe"], m["\ufffd"] = g.str(), g.str(), g.str()
	}
	return m
}

func (g keyGen) key(id string) APIKey {
	k := APIKey{
		ID:              id,
		Name:            g.str(),
		Description:     g.str(),
		Enabled:         g.r.IntN(2) == 0,
		CustomerID:      g.str(),
		Tags:            g.tags(),
		Value:           g.str(),
		ValueHash:       g.str(),
		ValuePrefix:     g.str(),
		UsagePlans:      g.strs(),
		CreatedDate:     g.int64(),
		LastUpdatedDate: g.int64(),
	}
	if g.r.IntN(3) == 0 { // a rotation
		k.PreviousValueHash, k.PreviousValuePrefix, k.PreviousValueUntil = g.str(), g.str(), g.int64()
	}
	return k
}

// changed returns k with some fields changed, or none (then it encodes
// the same, and is not logged), or only its value's hash (then only
// keyValueChanged differs).
func (g keyGen) changed(k APIKey) APIKey {
	c := k
	c.Tags = maps.Clone(k.Tags) // nil stays nil, empty empty
	c.UsagePlans = slices.Clone(k.UsagePlans)
	switch g.r.IntN(6) {
	case 0: // the same
	case 1:
		c.Value = g.str() // not logged
	case 2:
		c.ValueHash = g.str() + "x"
	default:
		n := g.key(k.ID)
		v, nv := reflect.ValueOf(&c).Elem(), reflect.ValueOf(n)
		for range g.r.IntN(3) + 1 {
			i := g.r.IntN(v.NumField())
			if v.Type().Field(i).Name != "ID" {
				v.Field(i).Set(nv.Field(i))
			}
		}
	}
	return c
}

var zones = []*time.Location{
	time.UTC, time.Local,
	time.FixedZone("", 0), time.FixedZone("CET", 3600), time.FixedZone("", -(3*3600 + 30*60)),
	time.FixedZone("odd", 5*3600+45*60+17), time.FixedZone("", 14*3600), time.FixedZone("", -12*3600),
}

func (g keyGen) time() time.Time {
	switch g.r.IntN(8) {
	case 0:
		return time.Time{}
	case 1:
		return time.Now() // with a monotonic reading
	case 2:
		return time.Unix(g.r.Int64N(1e10), 0).In(zones[g.r.IntN(len(zones))])
	case 3: // nanoseconds with trailing zeros, which RFC3339Nano drops
		return time.Unix(g.r.Int64N(1e10), g.r.Int64N(1000)*1e6).In(zones[g.r.IntN(len(zones))])
	}
	return time.Unix(g.r.Int64N(253402300799), g.r.Int64N(1e9)).In(zones[g.r.IntN(len(zones))])
}

// firstDiff describes where two encodings part.
func firstDiff(want, got []byte) string {
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	lo := max(0, i-60)
	return fmt.Sprintf("at byte %d:\nencoding/json: %q\nkeyLines:      %q", i, want[lo:min(len(want), i+60)], got[lo:min(len(got), i+60)])
}

// keyLines writes, key by key, what encodeEntries writes through
// encoding/json of what emitKey emits: many random keys, old, new or
// both (changed, the same, or only in value), under random times, actors
// and actions.
func TestKeyLinesMatchEncodingJSON(t *testing.T) {
	g := keyGen{rand.New(rand.NewPCG(1, 2))}
	var lines, skipped int
	for round := range 400 {
		at, actor, action := g.time(), g.str(), g.str()
		e := newKeyLines(at, actor, action) // reused: its scratch too
		var want, got []byte
		for i := range 25 {
			var o, n *APIKey
			id := fmt.Sprintf("%d-%d%s", round, i, g.str())
			switch g.r.IntN(4) {
			case 0:
				k := g.key(id)
				o = &k
			case 1:
				k := g.key(id)
				n = &k
			default:
				k := g.key(id)
				c := g.changed(k)
				o, n = &k, &c
			}
			var w bytes.Buffer
			if err := encodeEntries(&w, at, actor, action, func(emit emitter) { emitKey(o, n, emit) }); err != nil {
				t.Fatal(err)
			}
			before := len(got)
			var err error
			if got, err = e.appendLine(got, o, n); err != nil {
				t.Fatal(err)
			}
			want = append(want, w.Bytes()...)
			if !bytes.Equal(want, got) {
				t.Fatalf("round %d key %d (old %v, new %v): lines differ %s", round, i, o != nil, n != nil, firstDiff(want, got))
			}
			if len(got) == before {
				skipped++
			} else {
				lines++
			}
		}
	}
	// The generator must reach both outcomes, and often.
	if lines < 5000 || skipped < 500 {
		t.Fatalf("%d lines, %d unchanged keys skipped: the random keys cover too little", lines, skipped)
	}
}

// A time encoding/json refuses is the same error, at the first line
// written; a key found unchanged is no line and no error, as before.
func TestKeyLinesTimeError(t *testing.T) {
	k := APIKey{ID: "k1", Name: "n", UsagePlans: []string{}}
	for _, at := range []time.Time{
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", 24*3600)),
	} {
		for _, c := range []struct{ o, n *APIKey }{{nil, &k}, {&k, nil}, {&k, &k}} {
			var w bytes.Buffer
			werr := encodeEntries(&w, at, "a", "b", func(emit emitter) { emitKey(c.o, c.n, emit) })
			e := newKeyLines(at, "a", "b")
			got, gerr := e.appendLine([]byte("x"), c.o, c.n)
			if (werr != nil) != (c.o != c.n) || fmt.Sprintf("%T %[1]v", werr) != fmt.Sprintf("%T %[1]v", gerr) || w.Len() != 0 || string(got) != "x" {
				t.Errorf("%v, old %v new %v: encoding/json %v %q; keyLines %v %q", at, c.o != nil, c.n != nil, werr, w.Bytes(), gerr, got)
			}
		}
	}
}

// appendKey is json.Marshal of an auditKey, its own valueHash included
// (which emitKey leaves empty).
func TestAppendKeyMatchesMarshal(t *testing.T) {
	g := keyGen{rand.New(rand.NewPCG(3, 4))}
	e := &keyLines{}
	for i := range 5000 {
		k := auditKey{APIKey: g.key(g.str()), KeyValueChanged: g.r.IntN(2) == 0}
		if g.r.IntN(2) == 0 {
			k.ValueHash = g.str()
		}
		if g.r.IntN(2) == 0 {
			k.PreviousValueHash = g.str()
		}
		if g.r.IntN(2) == 0 {
			k.ValueFingerprint, k.PreviousValueFingerprint = g.str(), g.str()
		}
		want, err := json.Marshal(k)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.appendKey(nil, &k); !bytes.Equal(want, got) {
			t.Fatalf("key %d: %s", i, firstDiff(want, got))
		}
	}
}

// keyLines.appendKey knows auditKey's and APIKey's fields, their JSON
// names and options, and their types (none with a MarshalJSON): a field
// added, renamed or retagged must be written there too.
func TestAppendKeyKnowsEveryField(t *testing.T) {
	const want = `auditKey:
APIKey catalog.APIKey ""
ValueHash string "valueHash,omitempty"
PreviousValueHash string "previousValueHash,omitempty"
KeyValueChanged bool "keyValueChanged,omitempty"
ValueFingerprint string "valueFingerprint,omitempty"
PreviousValueFingerprint string "previousValueFingerprint,omitempty"
APIKey:
ID string "id"
Name string "name"
Description string "description,omitempty"
Enabled bool "enabled"
CustomerID string "customerId,omitempty"
Tags map[string]string "tags,omitempty"
Value string "-"
ValueHash string "valueHash"
ValuePrefix string "valuePrefix,omitempty"
PreviousValueHash string "previousValueHash,omitempty"
PreviousValuePrefix string "previousValuePrefix,omitempty"
PreviousValueUntil int64 "previousValueUntil,omitempty"
UsagePlans []string "usagePlans"
CreatedDate int64 "createdDate"
LastUpdatedDate int64 "lastUpdatedDate,omitempty"
`
	var got strings.Builder
	for _, t := range []reflect.Type{reflect.TypeFor[auditKey](), reflect.TypeFor[APIKey]()} {
		fmt.Fprintf(&got, "%s:\n", t.Name())
		for i := range t.NumField() {
			f := t.Field(i)
			fmt.Fprintf(&got, "%s %s %q\n", f.Name, f.Type, f.Tag.Get("json"))
		}
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[auditKey](), reflect.TypeFor[APIKey]()} {
		for _, typ := range []reflect.Type{typ, reflect.PointerTo(typ)} {
			if typ.Implements(reflect.TypeFor[json.Marshaler]()) || typ.Implements(reflect.TypeFor[encoding.TextMarshaler]()) {
				t.Errorf("%s marshals itself now: appendKey does not know how", typ)
			}
		}
	}
	if got.String() != want {
		t.Fatalf("auditKey's fields are now\n%s\nappendKey and this test know\n%s", got.String(), want)
	}
}

// appendJSONString quotes as json.Marshal does.
func FuzzAppendJSONString(f *testing.F) {
	for _, p := range strPieces {
		f.Add(p)
	}
	f.Add("plain ascii text")
	f.Add("a\u2028b\u2029c<d>e&f\"g\\h\x00i\x7fj\xffk")
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := jsonw.AppendString(nil, s); !bytes.Equal(want, got) {
			t.Fatalf("%q: encoding/json %s, appendJSONString %s", s, want, got)
		}
	})
}

// appendJSONString on every string of one or two bytes, and on random
// strings of random pieces.
func TestAppendJSONString(t *testing.T) {
	check := func(s string) {
		want, _ := json.Marshal(s)
		if got := jsonw.AppendString([]byte("x"), s); !bytes.Equal(append([]byte("x"), want...), got) {
			t.Fatalf("%q: encoding/json %s, appendJSONString %s", s, want, got[1:])
		}
	}
	for c := range 256 {
		check(string(rune(c)))
		check(string([]byte{byte(c)}))
		for d := range 256 {
			check(string([]byte{byte(c), byte(d)}))
		}
	}
	g := keyGen{rand.New(rand.NewPCG(5, 6))}
	for range 20000 {
		check(g.str())
	}
}

// A change of random keys through States, on the large path (chunks on
// workers) and the small one: AppendChange writes what Append writes of
// AuditEntries, byte for byte, with unchanged keys in the delta skipped.
func TestAuditAppendChangeRandomKeys(t *testing.T) {
	g := keyGen{rand.New(rand.NewPCG(7, 8))}
	dir := t.TempDir()
	for _, n := range []int{5000, 40} {
		b := NewState().Begin()
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("%06d%s", i, g.str())
			if g.r.IntN(3) > 0 { // else created by the change
				b.PutKey(g.key(ids[i]))
			}
		}
		old := b.State
		tx := old.Begin()
		for _, id := range ids {
			o := old.Key(id)
			switch {
			case o == nil:
				tx.PutKey(g.key(id))
			case g.r.IntN(4) == 0:
				tx.DeleteKey(id)
			default:
				tx.PutKey(g.changed(*o))
			}
		}
		// Every key in the delta, unchanged ones too.
		ch := &Change{Old: old, New: tx.State, Delta: Delta{Keys: ids}}
		at := g.time()
		want := &AuditLog{Path: filepath.Join(dir, fmt.Sprint(n, "-want.log"))}
		got := &AuditLog{Path: filepath.Join(dir, fmt.Sprint(n, "-got.log"))}
		if err := want.Append(AuditEntries(ch, at, "config file", "apply <x>.yaml")); err != nil {
			t.Fatal(err)
		}
		if err := got.AppendChange(ch, at, "config file", "apply <x>.yaml"); err != nil {
			t.Fatal(err)
		}
		w, _ := os.ReadFile(want.Path)
		gb, _ := os.ReadFile(got.Path)
		if lines := bytes.Count(w, []byte("\n")); lines < n/2 || lines == n {
			t.Fatalf("%d keys: %d lines: too few changes, or none unchanged", n, lines)
		}
		if !bytes.Equal(w, gb) {
			t.Fatalf("%d keys: AppendChange and Append differ %s", n, firstDiff(w, gb))
		}
	}
}

// The encoding of one key's line alone, through encoding/json (as
// before keyLines) and through keyLines: a created key, and a changed
// one (both sides encoded and compared).
func BenchmarkAuditKeyLine(b *testing.B) {
	at := time.Date(2026, 11, 27, 6, 40, 0, 123456789, time.UTC)
	k := APIKey{ID: "k00000001", Name: "name-k00000001", Enabled: true, CustomerID: "cust-1",
		Tags: map[string]string{"team": "payments", "env": "prod"}, ValueHash: HashKey("v"), ValuePrefix: "k000",
		UsagePlans: []string{"plan1"}, CreatedDate: 1764225600}
	c := k
	c.Enabled = false
	for _, p := range []struct {
		name string
		o, n *APIKey
	}{{"created", nil, &k}, {"changed", &k, &c}} {
		b.Run(p.name+"/encoding-json", func(b *testing.B) {
			var w bytes.Buffer
			b.ReportAllocs()
			for b.Loop() {
				w.Reset()
				if err := encodeEntries(&w, at, "config file", "apply", func(emit emitter) { emitKey(p.o, p.n, emit) }); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(p.name+"/keyLines", func(b *testing.B) {
			e := newKeyLines(at, "config file", "apply")
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = e.appendLine(buf[:0], p.o, p.n); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
