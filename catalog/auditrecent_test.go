package catalog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// auditLine is the line Append writes of e.
func auditLine(t testing.TB, e AuditEntry) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(e); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// writeAuditLog writes lines (each with its newline, or not) as the
// whole log.
func writeAuditLog(t testing.TB, lines ...string) *AuditLog {
	t.Helper()
	l := &AuditLog{Path: filepath.Join(t.TempDir(), "audit.log")}
	if err := os.WriteFile(l.Path, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	return l
}

// seqEntry is the i-th change of entity id: its action says which.
func seqEntry(i int, id string) AuditEntry {
	return AuditEntry{Time: time.Date(2026, 12, 1, 0, 0, i, 0, time.UTC), Actor: "admin", Action: fmt.Sprint("change ", i),
		Kind: "apiKey", ID: id, Name: "name-" + id, New: json.RawMessage(`{"id":` + quoteJSON(id) + `}`)}
}

func quoteJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func actions(es []AuditEntry) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, e.Action)
	}
	return out
}

func TestAuditRecent(t *testing.T) {
	ids := []string{"a", "b", "a", "c", "a", "b"}
	var lines []string
	for i, id := range ids {
		lines = append(lines, auditLine(t, seqEntry(i, id)))
	}
	l := writeAuditLog(t, lines...)
	size := int64(len(strings.Join(lines, "")))
	last2 := int64(len(lines[4]) + len(lines[5]))
	tests := []struct {
		name     string
		contains string
		match    func(*AuditEntry) bool
		n        int
		maxBytes int64
		want     []string
		complete bool
	}{
		{"newest first", "", AuditMatchID("a"), 10, math.MaxInt64, []string{"change 4", "change 2", "change 0"}, true},
		{"prefiltered", `"a"`, AuditMatchID("a"), 10, math.MaxInt64, []string{"change 4", "change 2", "change 0"}, true},
		{"every entry", "", nil, 10, math.MaxInt64, []string{"change 5", "change 4", "change 3", "change 2", "change 1", "change 0"}, true},
		{"n found", "", AuditMatchID("a"), 2, math.MaxInt64, []string{"change 4", "change 2"}, true},
		{"n found within maxBytes", "", AuditMatchID("b"), 1, int64(len(lines[5])) + 1, []string{"change 5"}, true},
		{"no match", `"z"`, AuditMatchID("z"), 3, math.MaxInt64, []string{}, true},
		{"exactly the whole file", "", AuditMatchID("a"), 10, size, []string{"change 4", "change 2", "change 0"}, true},
		// The window starts where line 4 does: the newline before it
		// is not in reach, so line 4 might be the end of a longer one.
		{"line at the window's start", "", AuditMatchID("a"), 10, last2, []string{}, false},
		{"newline before it in reach", "", AuditMatchID("a"), 10, last2 + 1, []string{"change 4"}, false},
		{"mid-line", "", AuditMatchID("a"), 10, last2 + 5, []string{"change 4"}, false},
		{"nothing in reach", "", nil, 10, 0, []string{}, false},
		{"nothing asked", "", nil, 0, math.MaxInt64, []string{}, true},
		{"contains a newline", "a\n", nil, 10, math.MaxInt64, []string{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, chunk := range []int{1, 2, 7, 64, auditChunk} {
				got, complete, err := l.recent(tt.contains, tt.match, tt.n, tt.maxBytes, chunk)
				if err != nil {
					t.Fatalf("chunk %d: %v", chunk, err)
				}
				if !reflect.DeepEqual(actions(got), tt.want) || complete != tt.complete {
					t.Errorf("chunk %d: got %q complete %v, want %q complete %v", chunk, actions(got), complete, tt.want, tt.complete)
				}
			}
		})
	}
}

func TestAuditRecentMissingAndEmpty(t *testing.T) {
	missing := &AuditLog{Path: filepath.Join(t.TempDir(), "none.log")}
	if got, complete, err := missing.Recent("", nil, 10, 1<<20); got != nil || !complete || err != nil {
		t.Errorf("missing log: %v %v %v, want nil true nil", got, complete, err)
	}
	empty := writeAuditLog(t)
	if got, complete, err := empty.Recent("", nil, 10, 1<<20); got != nil || !complete || err != nil {
		t.Errorf("empty log: %v %v %v, want nil true nil", got, complete, err)
	}
}

// Lines far longer than a chunk are read whole, whatever the chunk.
func TestAuditRecentLongLines(t *testing.T) {
	long := seqEntry(1, "a")
	long.Name = strings.Repeat("x", 5000)
	lines := []string{auditLine(t, seqEntry(0, "a")), auditLine(t, long), auditLine(t, seqEntry(2, "b")), auditLine(t, long)}
	l := writeAuditLog(t, lines...)
	for _, chunk := range []int{1, 3, 100, 4096, auditChunk} {
		got, complete, err := l.recent(`"a"`, AuditMatchID("a"), 10, math.MaxInt64, chunk)
		if err != nil {
			t.Fatalf("chunk %d: %v", chunk, err)
		}
		if want := []string{"change 1", "change 1", "change 0"}; !reflect.DeepEqual(actions(got), want) || !complete {
			t.Errorf("chunk %d: got %q complete %v, want %q complete", chunk, actions(got), complete, want)
		}
		if got[0].Name != long.Name {
			t.Errorf("chunk %d: the long line's name is %d bytes, want %d", chunk, len(got[0].Name), len(long.Name))
		}
	}
	// A line longer than maxBytes stops Recent, incomplete.
	got, complete, err := l.recent("", AuditMatchID("a"), 10, int64(len(lines[3])), 64)
	if err != nil || len(got) != 0 || complete {
		t.Errorf("line over maxBytes: %q %v %v, want none, incomplete", actions(got), complete, err)
	}
}

// A corrupt line is an error naming its offset when it is decoded; one
// Recent does not reach, or that the prefilter skips, is not.
func TestAuditRecentCorruptLine(t *testing.T) {
	first, second := auditLine(t, seqEntry(0, "a")), auditLine(t, seqEntry(2, "a"))
	l := writeAuditLog(t, first, "{\"time\": not json\n", second)
	_, _, err := l.recent("", AuditMatchID("a"), 10, math.MaxInt64, 16)
	if want := fmt.Sprintf("line at byte %d:", len(first)); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), l.Path) {
		t.Errorf("err = %v, want one naming %s and %q", err, l.Path, want)
	}
	got, complete, err := l.recent("", AuditMatchID("a"), 1, math.MaxInt64, 16)
	if err != nil || len(got) != 1 || !complete {
		t.Errorf("stopping before the corrupt line: %q %v %v", actions(got), complete, err)
	}
	got, complete, err = l.recent(`"a"`, AuditMatchID("a"), 10, math.MaxInt64, 16)
	if err != nil || len(got) != 2 || !complete {
		t.Errorf("corrupt line without the prefilter's string: %q %v %v, want 2 entries", actions(got), complete, err)
	}
}

// A last line without its newline is being written (or was torn by a
// crash): Recent reads the whole lines before it.
func TestAuditRecentUnterminatedTail(t *testing.T) {
	whole := auditLine(t, seqEntry(0, "a"))
	for _, tail := range []string{`{"time":"2026-12-01T00:00:01Z","actor":"adm`, strings.Repeat("y", 300)} {
		l := writeAuditLog(t, whole, tail)
		for _, chunk := range []int{1, 16, auditChunk} {
			got, complete, err := l.recent("", nil, 10, math.MaxInt64, chunk)
			if err != nil || !reflect.DeepEqual(actions(got), []string{"change 0"}) || !complete {
				t.Errorf("tail %.10q, chunk %d: %q %v %v, want the whole line", tail, chunk, actions(got), complete, err)
			}
		}
	}
	only := writeAuditLog(t, `{"time":`)
	if got, complete, err := only.Recent("", nil, 10, math.MaxInt64); got != nil || !complete || err != nil {
		t.Errorf("only a partial line: %v %v %v, want nil true nil", got, complete, err)
	}
}

// Recent is Read's entries that match, newest first, cut at n and at
// maxBytes, on random logs (long lines, ids that JSON escapes), any
// chunk size, with and without the prefilter.
func TestAuditRecentMatchesRead(t *testing.T) {
	ids := []string{"k1", "k2", "plan1", "<a&b>", `q"uote`, "é\u2028", "k"}
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 1))
		l := &AuditLog{Path: filepath.Join(t.TempDir(), "audit.log")}
		var entries []AuditEntry
		for i := range rng.IntN(40) {
			e := seqEntry(i, ids[rng.IntN(len(ids))])
			e.Name = strings.Repeat("n", rng.IntN(3)*rng.IntN(700))
			// Other ids inside the entity: the prefilter lets them
			// through, match does not.
			e.Old = json.RawMessage(`{"usagePlans":[` + quoteJSON(ids[rng.IntN(len(ids))]) + `]}`)
			entries = append(entries, e)
		}
		if err := l.Append(entries); err != nil {
			t.Fatal(err)
		}
		all, err := l.Read()
		if err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(l.Path)
		var starts []int64
		for off := 0; off < len(data); off += bytes.IndexByte(data[off:], '\n') + 1 {
			starts = append(starts, int64(off))
		}
		size := int64(len(data))
		for q := range 20 {
			id := ids[rng.IntN(len(ids))]
			n := 1 + rng.IntN(6)
			maxBytes := int64(math.MaxInt64)
			if rng.IntN(2) == 0 {
				maxBytes = rng.Int64N(size + 2)
			}
			contains := ""
			if rng.IntN(2) == 0 {
				contains = quoteJSON(id)
			}
			chunk := 1 + rng.IntN(300)

			lo := max(size-maxBytes, 0)
			want, wantComplete := []AuditEntry{}, lo == 0
			for i := len(all) - 1; i >= 0 && (lo == 0 || starts[i] > lo); i-- {
				if all[i].ID == id {
					want = append(want, all[i])
				}
				if len(want) == n {
					wantComplete = true
					break
				}
			}
			got, complete, err := l.recent(contains, AuditMatchID(id), n, maxBytes, chunk)
			if err != nil {
				t.Fatalf("seed %d query %d: %v", seed, q, err)
			}
			if got == nil {
				got = []AuditEntry{}
			}
			if !reflect.DeepEqual(got, want) || complete != wantComplete {
				t.Fatalf("seed %d query %d (id %q, n %d, maxBytes %d of %d, contains %q, chunk %d): got %q complete %v, want %q complete %v",
					seed, q, id, n, maxBytes, size, contains, chunk, actions(got), complete, actions(want), wantComplete)
			}
		}
	}
}

// writeKeyChanges writes a log of lines changes of keys as AppendChange
// writes them, one a second: every every-th line is a change of key
// "target", the others of other keys.
func writeKeyChanges(tb testing.TB, lines, every int) *AuditLog {
	tb.Helper()
	var b []byte
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for i := range lines {
		id := fmt.Sprintf("k%08d", i)
		if i%every == every-1 {
			id = "target"
		}
		o := APIKey{ID: id, Name: "name-" + id, Enabled: true, ValueHash: HashKey(id), ValuePrefix: "k000", UsagePlans: []string{"plan1"}, CreatedDate: 1764547200}
		n := o
		n.Enabled = i%2 == 0
		n.LastUpdatedDate = at.Unix() + int64(i)
		kl := newKeyLines(at.Add(time.Duration(i)*time.Second), "AKIAADMIN", "PATCH /apikeys/"+id)
		var err error
		if b, err = kl.appendLine(b, &o, &n); err != nil {
			tb.Fatal(err)
		}
	}
	l := &AuditLog{Path: filepath.Join(tb.TempDir(), "audit.log")}
	if err := os.WriteFile(l.Path, b, 0o600); err != nil {
		tb.Fatal(err)
	}
	return l
}

// The benchmark's log and query find what they should.
func TestAuditRecentKeyChanges(t *testing.T) {
	l := writeKeyChanges(t, 5000, 97)
	got, complete, err := l.Recent(quoteJSON("target"), AuditMatchID("target"), 10, math.MaxInt64)
	if err != nil || !complete || len(got) != 10 {
		t.Fatalf("%d entries, complete %v, err %v; want 10, complete", len(got), complete, err)
	}
	for i, e := range got {
		if want := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(5000/97*97-1-i*97) * time.Second); e.ID != "target" || !e.Time.Equal(want) {
			t.Errorf("entry %d: %s at %s, want target at %s", i, e.ID, e.Time, want)
		}
	}
}

// A key's last 10 changes in a log of 100k lines (an import's worth),
// the key changed every thousand lines: the prefilter decodes its lines
// only; without it, every line read is decoded.
func BenchmarkAuditRecent(b *testing.B) {
	l := writeKeyChanges(b, 100000, 1000)
	for _, bm := range []struct{ name, contains string }{{"prefilter", quoteJSON("target")}, {"decode-all", ""}} {
		b.Run(bm.name, func(b *testing.B) {
			match := AuditMatchID("target")
			b.ReportAllocs()
			for b.Loop() {
				got, _, err := l.Recent(bm.contains, match, 10, 64<<20)
				if err != nil || len(got) != 10 {
					b.Fatalf("%d entries, %v", len(got), err)
				}
			}
		})
	}
}
