package ingest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tollgate/tollgate/schemas"
)

const spillT0 = 1_700_000_000_000_000_000

// spillEvent returns event i: every field set, keys k0..k2 in turn, even
// events admitted. Events of one test encode to the same size as long as
// i < 1e6.
func spillEvent(i int) schemas.UsageEvent {
	e := schemas.UsageEvent{
		ID:            schemas.NewEventID(spillT0 + int64(i)),
		Time:          spillT0 + int64(i),
		APIID:         "a1",
		Stage:         "prod",
		KeyID:         fmt.Sprintf("k%d", i%3),
		PlanID:        "p1",
		Method:        "GET",
		Resource:      "/items/{id}",
		Status:        200,
		Decision:      schemas.DecisionAllowed,
		LatencyMicros: 1500,
		BytesIn:       300,
		BytesOut:      4000,
	}
	if i%2 == 1 {
		e.Status, e.Decision = 429, schemas.DecisionThrottled
	}
	return e
}

func spillEvents(from, n int) []schemas.UsageEvent {
	out := make([]schemas.UsageEvent, n)
	for i := range out {
		out[i] = spillEvent(from + i)
	}
	return out
}

// spillRecordSize computes, independently of spill.go, the size of the
// record holding events.
func spillRecordSize(events []schemas.UsageEvent) int64 {
	payload := binary.AppendUvarint(nil, uint64(len(events)))
	for i := range events {
		b := schemas.AppendUsageEvent(nil, &events[i])
		payload = binary.AppendUvarint(payload, uint64(len(b)))
		payload = append(payload, b...)
	}
	return int64(8 + len(payload))
}

func openTestSpill(t testing.TB, cfg SpillConfig) *Spill {
	t.Helper()
	s, err := OpenSpill(cfg)
	if err != nil {
		t.Fatalf("OpenSpill: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustAppend(t testing.TB, s *Spill, events []schemas.UsageEvent) {
	t.Helper()
	if kept, err := s.Append(events); err != nil || kept != len(events) {
		t.Fatalf("Append(%d events) = %d, %v", len(events), kept, err)
	}
}

// drainSpill peeks and acks until the log is empty and returns the batches.
func drainSpill(t testing.TB, s *Spill) [][]schemas.UsageEvent {
	t.Helper()
	var out [][]schemas.UsageEvent
	for {
		b, err := s.Peek()
		if err != nil {
			t.Fatalf("Peek: %v", err)
		}
		if b == nil {
			return out
		}
		out = append(out, b)
		if err := s.Ack(); err != nil {
			t.Fatalf("Ack: %v", err)
		}
	}
}

// segmentFiles returns the names of dir's segment files, in order.
func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.spill"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	slices.Sort(m)
	return m
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestSpillOrderAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpill(t, SpillConfig{Dir: dir, SegmentBytes: 500})
	if b, err := s.Peek(); b != nil || err != nil {
		t.Fatalf("Peek on an empty log = %v, %v; want nil, nil", b, err)
	}
	if err := s.Ack(); err == nil {
		t.Fatal("Ack without Peek succeeded")
	}
	var want [][]schemas.UsageEvent
	var size int64
	for i, n := 0, 0; i < 12; i++ {
		b := spillEvents(n, i%4+1)
		n += len(b)
		mustAppend(t, s, b)
		want = append(want, b)
		size += spillRecordSize(b)
	}
	files := segmentFiles(t, dir)
	if len(files) < 3 {
		t.Fatalf("segments = %v, want at least 3 with SegmentBytes 500", files)
	}
	if files[0] != "00000000000000000001.spill" {
		t.Errorf("first segment = %s, want 00000000000000000001.spill", files[0])
	}
	if s.Len() != 30 || s.Bytes() != size {
		t.Fatalf("Len, Bytes = %d, %d; want 30, %d", s.Len(), s.Bytes(), size)
	}

	for i, w := range want {
		got, err := s.Peek()
		if err != nil {
			t.Fatalf("batch %d: Peek: %v", i, err)
		}
		again, _ := s.Peek()
		if !slices.Equal(got, w) || !slices.Equal(again, w) {
			t.Fatalf("batch %d:\n got %v\nthen %v\nwant %v", i, got, again, w)
		}
		if err := s.Ack(); err != nil {
			t.Fatalf("batch %d: Ack: %v", i, err)
		}
		size -= spillRecordSize(w)
		if s.Bytes() != size {
			t.Errorf("after batch %d: Bytes = %d, want %d", i, s.Bytes(), size)
		}
		// Every segment before the cursor's is gone.
		cursor, err := os.ReadFile(filepath.Join(dir, "cursor"))
		if err != nil {
			t.Fatal(err)
		}
		var seq, off int64
		if _, err := fmt.Sscanf(string(cursor), "%d %d\n", &seq, &off); err != nil {
			t.Fatalf("cursor %q: %v", cursor, err)
		}
		if first := segmentFiles(t, dir)[0]; first != fmt.Sprintf("%020d.spill", seq) {
			t.Errorf("after batch %d: cursor %q but first segment %s", i, cursor, first)
		}
	}
	if b, err := s.Peek(); b != nil || err != nil {
		t.Fatalf("Peek after the last Ack = %v, %v; want nil, nil", b, err)
	}
	if got := segmentFiles(t, dir); len(got) != 1 || got[0] != files[len(files)-1] {
		t.Errorf("segments once all is read = %v, want only the tail %s", got, files[len(files)-1])
	}
	if s.Len() != 0 || s.Bytes() != 0 {
		t.Errorf("Len, Bytes = %d, %d; want 0, 0", s.Len(), s.Bytes())
	}
}

func TestSpillReopenKeepsPendingAndCursor(t *testing.T) {
	dir := t.TempDir()
	cfg := SpillConfig{Dir: dir, SegmentBytes: 400}
	s, err := OpenSpill(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var want [][]schemas.UsageEvent
	for i := range 6 {
		b := spillEvents(10*i, 3)
		mustAppend(t, s, b)
		want = append(want, b)
	}
	for range 2 {
		if _, err := s.Peek(); err != nil {
			t.Fatal(err)
		}
		if err := s.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Peek(); err != nil { // peeked, not acked: replayed after reopen
		t.Fatal(err)
	}
	wantLen, wantBytes := s.Len(), s.Bytes()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(want[0]); err == nil {
		t.Error("Append after Close succeeded")
	}

	s = openTestSpill(t, cfg)
	if s.Len() != wantLen || s.Bytes() != wantBytes || wantLen != 12 {
		t.Fatalf("after reopen Len, Bytes = %d, %d; want %d, %d (12 events)", s.Len(), s.Bytes(), wantLen, wantBytes)
	}
	extra := spillEvents(100, 2)
	mustAppend(t, s, extra)
	got := drainSpill(t, s)
	want = append(want[2:], extra)
	if len(got) != len(want) {
		t.Fatalf("got %d batches, want %d", len(got), len(want))
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("batch %d:\n got %v\nwant %v", i, got[i], want[i])
		}
	}
}

func TestSpillMissingCursorStartsAtFirstSegment(t *testing.T) {
	dir := t.TempDir()
	cfg := SpillConfig{Dir: dir}
	s := openTestSpill(t, cfg)
	a, b := spillEvents(0, 2), spillEvents(2, 2)
	mustAppend(t, s, a)
	mustAppend(t, s, b)
	s.Peek()
	if err := s.Ack(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.Remove(filepath.Join(dir, "cursor")); err != nil {
		t.Fatal(err)
	}
	s = openTestSpill(t, cfg)
	got := drainSpill(t, s)
	if len(got) != 2 || !slices.Equal(got[0], a) || !slices.Equal(got[1], b) {
		t.Fatalf("without a cursor got %v, want both batches from the start", got)
	}
}

func TestSpillCursorNamesMissingSegment(t *testing.T) {
	dir := t.TempDir()
	cfg := SpillConfig{Dir: dir, SegmentBytes: 100}
	s := openTestSpill(t, cfg)
	for i := range 3 {
		mustAppend(t, s, spillEvents(2*i, 2))
	}
	s.Close()
	if err := os.Remove(filepath.Join(dir, "00000000000000000001.spill")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cursor"), []byte("1 0\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	_, err := OpenSpill(cfg)
	if err == nil || !strings.Contains(err.Error(), "00000000000000000001.spill") || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("err = %v, want one naming the missing segment", err)
	}
}

func TestSpillTornTailIsCutAtOpen(t *testing.T) {
	for _, tc := range []struct {
		name string
		// damage breaks the last record, which starts at start of path.
		damage func(t *testing.T, path string, start int64)
		// keepsLast: the last record is whole, only what follows it goes.
		keepsLast bool
	}{
		{"short payload", func(t *testing.T, path string, start int64) {
			truncate(t, path, fileSize(t, path)-3)
		}, false},
		{"short header", func(t *testing.T, path string, start int64) {
			truncate(t, path, start+5)
		}, false},
		{"bad crc", func(t *testing.T, path string, start int64) {
			flipByte(t, path, fileSize(t, path)-2)
		}, false},
		{"length past the end", func(t *testing.T, path string, start int64) {
			flipByte(t, path, start+1)
		}, false},
		{"zeroed record", func(t *testing.T, path string, start int64) {
			n := fileSize(t, path) - start
			writeAt(t, path, start, make([]byte, n))
		}, false},
		{"zeros past the end", func(t *testing.T, path string, start int64) {
			writeAt(t, path, fileSize(t, path), make([]byte, 100))
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := SpillConfig{Dir: dir, SegmentBytes: 200}
			s, err := OpenSpill(cfg)
			if err != nil {
				t.Fatal(err)
			}
			a, b, c := spillEvents(0, 3), spillEvents(3, 1), spillEvents(4, 2)
			mustAppend(t, s, a) // fills segment 1
			mustAppend(t, s, b) // starts segment 2
			last := filepath.Join(dir, "00000000000000000002.spill")
			start := fileSize(t, last)
			mustAppend(t, s, c)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if got := segmentFiles(t, dir); len(got) != 2 {
				t.Fatalf("segments = %v, want 2", got)
			}
			tc.damage(t, last, start)

			want := [][]schemas.UsageEvent{a, b}
			if tc.keepsLast {
				want = append(want, c)
				start += spillRecordSize(c)
			}
			wantLen, wantBytes := int64(0), int64(0)
			for _, w := range want {
				wantLen += int64(len(w))
				wantBytes += spillRecordSize(w)
			}

			s = openTestSpill(t, cfg)
			if s.Len() != wantLen || s.Bytes() != wantBytes {
				t.Errorf("Len, Bytes = %d, %d; want %d, %d", s.Len(), s.Bytes(), wantLen, wantBytes)
			}
			if size := fileSize(t, last); size != start {
				t.Errorf("last segment is %d bytes, want it cut to %d", size, start)
			}
			d := spillEvents(10, 2)
			mustAppend(t, s, d)
			want = append(want, d)
			got := drainSpill(t, s)
			if len(got) != len(want) {
				t.Fatalf("got %d batches, want %d: %v", len(got), len(want), got)
			}
			for i := range want {
				if !slices.Equal(got[i], want[i]) {
					t.Errorf("batch %d:\n got %v\nwant %v", i, got[i], want[i])
				}
			}
		})
	}
}

func TestSpillCorruptionIsAnError(t *testing.T) {
	// Three segments of two records each (SegmentBytes is reached by the
	// second); records of 2 events.
	type layout struct {
		dir   string
		files []string
		rec   int64 // size of each record
	}
	build := func(t *testing.T) layout {
		dir := t.TempDir()
		b := spillEvents(0, 2)
		rec := spillRecordSize(b)
		s, err := OpenSpill(SpillConfig{Dir: dir, SegmentBytes: 2 * rec})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 6 {
			mustAppend(t, s, spillEvents(2*i, 2))
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		files := segmentFiles(t, dir)
		if len(files) != 3 {
			t.Fatalf("segments = %v, want 3", files)
		}
		return layout{dir, files, rec}
	}
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, l layout) (file string, off int64)
	}{
		{"bad crc in an older segment", func(t *testing.T, l layout) (string, int64) {
			flipByte(t, filepath.Join(l.dir, l.files[0]), 20)
			return l.files[0], 0
		}},
		{"torn older segment", func(t *testing.T, l layout) (string, int64) {
			path := filepath.Join(l.dir, l.files[1])
			truncate(t, path, fileSize(t, path)-3)
			return l.files[1], l.rec
		}},
		{"bad crc before a good record in the last segment", func(t *testing.T, l layout) (string, int64) {
			path := filepath.Join(l.dir, l.files[2])
			flipByte(t, path, 20)
			return l.files[2], 0
		}},
		{"bad length before a good record in the last segment", func(t *testing.T, l layout) (string, int64) {
			path := filepath.Join(l.dir, l.files[2])
			writeAt(t, path, 0, []byte{0, 0, 0, 9}) // the first record claims 9 bytes of payload
			return l.files[2], 0
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := build(t)
			file, off := tc.damage(t, l)
			s, err := OpenSpill(SpillConfig{Dir: l.dir, SegmentBytes: 2 * l.rec})
			if err == nil {
				s.Close()
				t.Fatal("OpenSpill succeeded on a corrupt log")
			}
			if msg := err.Error(); !strings.Contains(msg, file) || !strings.Contains(msg, fmt.Sprintf("offset %d", off)) {
				t.Errorf("err = %q, want it to name %s and offset %d", msg, file, off)
			}
		})
	}
}

func TestSpillCapKeepsWhatFitsAndTalliesTheRest(t *testing.T) {
	dir := t.TempDir()
	first := spillEvents(0, 10)
	maxBytes := spillRecordSize(first[:6]) + 5 // 6 fit, 7 do not
	cfg := SpillConfig{Dir: dir, MaxBytes: maxBytes, Node: "edge-1"}
	s := openTestSpill(t, cfg)

	kept, err := s.Append(first)
	if err != nil || kept != 6 {
		t.Fatalf("Append(10) = %d, %v; want 6 kept", kept, err)
	}
	// Dropped: 6 (k0, admitted), 7 (k1), 8 (k2, admitted), 9 (k0).
	second := spillEvents(100, 4) // k1 admitted, k2, k0 admitted: re-key them; then an aggregated one
	for i := range second {
		second[i].KeyID, second[i].PlanID = "k3", "p2"
	}
	// The enforcer's per-minute count of rejected requests without a key:
	// one event, 500 requests lost.
	second[3].KeyID, second[3].PlanID, second[3].Decision, second[3].Count = "", "", schemas.DecisionForbidden, 500
	if kept, err := s.Append(second); err != nil || kept != 0 {
		t.Fatalf("Append to a full log = %d, %v; want 0 kept", kept, err)
	}
	if s.Dropped() != 8 || s.Len() != 6 || s.Bytes() != spillRecordSize(first[:6]) {
		t.Fatalf("Dropped, Len, Bytes = %d, %d, %d; want 8, 6, %d", s.Dropped(), s.Len(), s.Bytes(), spillRecordSize(first[:6]))
	}
	lost := func(key, plan string, count, admitted int64, from, to int) schemas.LostUsage {
		return schemas.LostUsage{Type: schemas.EventTypeLostUsage, Node: "edge-1", KeyID: key, PlanID: plan, APIID: "a1", Stage: "prod",
			Count: count, Admitted: admitted, From: spillT0 + int64(from), To: spillT0 + int64(to)}
	}
	want := []schemas.LostUsage{
		lost("", "", 500, 0, 103, 103),
		lost("k0", "p1", 2, 1, 6, 9),
		lost("k1", "p1", 1, 0, 7, 7),
		lost("k2", "p1", 1, 1, 8, 8),
		lost("k3", "p2", 3, 2, 100, 102),
	}
	if got := s.Lost(); !slices.Equal(got, want) {
		t.Fatalf("Lost:\n got %+v\nwant %+v", got, want)
	}

	// Lost survives a restart; Dropped counts since open.
	s.Close()
	s = openTestSpill(t, cfg)
	if got := s.Lost(); !slices.Equal(got, want) || s.Dropped() != 0 || s.Len() != 6 {
		t.Fatalf("after reopen Lost = %+v, Dropped = %d, Len = %d", got, s.Dropped(), s.Len())
	}

	// Reported subtracts; a partial report leaves the rest.
	if err := s.Reported([]schemas.LostUsage{want[0], want[1], want[2], {KeyID: "k3", PlanID: "p2", APIID: "a1", Stage: "prod", Count: 1, Admitted: 1}}); err != nil {
		t.Fatal(err)
	}
	want = []schemas.LostUsage{lost("k2", "p1", 1, 1, 8, 8), lost("k3", "p2", 2, 1, 100, 102)}
	if got := s.Lost(); !slices.Equal(got, want) {
		t.Fatalf("after Reported:\n got %+v\nwant %+v", got, want)
	}
	s.Close()
	s = openTestSpill(t, cfg)
	if got := s.Lost(); !slices.Equal(got, want) {
		t.Fatalf("Reported did not persist:\n got %+v\nwant %+v", got, want)
	}
	if err := s.Reported(s.Lost()); err != nil {
		t.Fatal(err)
	}
	if got := s.Lost(); got != nil {
		t.Fatalf("Lost after reporting everything = %+v", got)
	}

	// Once read, the full segment makes way: a whole batch fits again.
	drainSpill(t, s)
	if kept, err := s.Append(first[:6]); err != nil || kept != 6 {
		t.Fatalf("Append after draining = %d, %v; want 6 kept", kept, err)
	}
	if files := segmentFiles(t, dir); len(files) != 1 || fileSize(t, filepath.Join(dir, files[0])) != spillRecordSize(first[:6]) {
		t.Errorf("segments after draining and appending = %v, want one holding the new batch", files)
	}
}

func TestSpillConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  SpillConfig
		want []string // substrings of the error; none: valid
	}{
		{"defaults", SpillConfig{Dir: "d"}, nil},
		{"small cap, default segment", SpillConfig{Dir: "d", MaxBytes: 1000}, nil},
		{"segment equals cap", SpillConfig{Dir: "d", MaxBytes: 1000, SegmentBytes: 1000}, nil},
		{"no dir", SpillConfig{}, []string{"Dir is required"}},
		{"negative cap", SpillConfig{Dir: "d", MaxBytes: -1}, []string{"MaxBytes must not be negative"}},
		{"negative segment", SpillConfig{Dir: "d", SegmentBytes: -1}, []string{"SegmentBytes must not be negative"}},
		{"segment over cap", SpillConfig{Dir: "d", MaxBytes: 1000, SegmentBytes: 1001}, []string{"SegmentBytes (1001) must not exceed MaxBytes (1000)"}},
		{"segment over default cap", SpillConfig{Dir: "d", SegmentBytes: 2 << 30}, []string{"must not exceed MaxBytes (1073741824)"}},
		{"every problem", SpillConfig{MaxBytes: -1, SegmentBytes: -1}, []string{"Dir", "MaxBytes", "SegmentBytes must not be negative"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error mentioning %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to mention %q", err, w)
				}
			}
			if _, oerr := OpenSpill(tc.cfg); oerr == nil || oerr.Error() != err.Error() {
				t.Errorf("OpenSpill() = %v, want the Validate error", oerr)
			}
		})
	}
}

// One goroutine appends while another replays, as the drainer and the
// replayer do: every event kept comes out exactly once, in order.
func TestSpillConcurrentAppendAndReplay(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxBytes int64
	}{
		{"room for all", 0},
		{"capped", 6 << 10}, // the appender outruns the replayer now and then
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestSpill(t, SpillConfig{Dir: t.TempDir(), MaxBytes: tc.maxBytes, SegmentBytes: 1 << 10})
			const batches = 150
			var want, got []schemas.UsageEvent
			var done atomic.Bool
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer done.Store(true)
				for i, n := 0, 0; i < batches; i++ {
					b := spillEvents(n, 1+i*7%16)
					n += len(b)
					kept, err := s.Append(b)
					if err != nil {
						t.Errorf("Append: %v", err)
						return
					}
					want = append(want, b[:kept]...)
				}
			}()
			for {
				finished := done.Load() // before Peek: a nil Peek after it means the end
				b, err := s.Peek()
				if err != nil {
					t.Fatalf("Peek: %v", err)
				}
				if b == nil {
					if finished {
						break
					}
					runtime.Gosched()
					continue
				}
				got = append(got, b...)
				if err := s.Ack(); err != nil {
					t.Fatalf("Ack: %v", err)
				}
				_, _, _ = s.Len(), s.Bytes(), s.Lost() // metrics, concurrently
			}
			wg.Wait()
			if !slices.Equal(got, want) {
				t.Fatalf("replayed %d events, appended %d kept ones: not the same sequence", len(got), len(want))
			}
			total := 0
			for i := range batches {
				total += 1 + i*7%16
			}
			var lost int64
			for _, l := range s.Lost() {
				lost += l.Count
			}
			if int(s.Dropped())+len(want) != total || lost != int64(s.Dropped()) {
				t.Errorf("kept %d + dropped %d (lost %d) != %d appended", len(want), s.Dropped(), lost, total)
			}
			if tc.maxBytes == 0 && s.Dropped() != 0 {
				t.Errorf("dropped %d without a cap", s.Dropped())
			}
			if s.Len() != 0 || s.Bytes() != 0 {
				t.Errorf("Len, Bytes = %d, %d after replaying everything", s.Len(), s.Bytes())
			}
		})
	}
}

// FuzzSpillOpen opens a log whose segment holds arbitrary bytes: OpenSpill
// either refuses it or recovers a log whose every counted event replays.
// With older set the bytes are an older segment, followed by a good one.
func FuzzSpillOpen(f *testing.F) {
	dir := f.TempDir()
	s, err := OpenSpill(SpillConfig{Dir: dir})
	if err != nil {
		f.Fatal(err)
	}
	for i := range 3 {
		if _, err := s.Append(spillEvents(3*i, i+1)); err != nil {
			f.Fatal(err)
		}
	}
	s.Close()
	good, err := os.ReadFile(filepath.Join(dir, "00000000000000000001.spill"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, false)
	f.Add(good, true)
	f.Add(good[:len(good)-3], false)
	f.Add(good[:len(good)-3], true)
	f.Add(append(bytes.Clone(good), make([]byte, 20)...), false)
	f.Add([]byte{}, false)
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0}, false)
	f.Fuzz(func(t *testing.T, data []byte, older bool) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "00000000000000000001.spill"), data, 0o640); err != nil {
			t.Fatal(err)
		}
		if older {
			if err := os.WriteFile(filepath.Join(dir, "00000000000000000002.spill"), good, 0o640); err != nil {
				t.Fatal(err)
			}
		}
		s, err := OpenSpill(SpillConfig{Dir: dir})
		if err != nil {
			return
		}
		defer s.Close()
		n := s.Len()
		var replayed int64
		for {
			b, err := s.Peek()
			if err != nil {
				// Framing and CRC passed, the event bytes did not decode:
				// reported, never skipped.
				if _, again := s.Peek(); again == nil {
					t.Fatal("a failed Peek succeeded the second time")
				}
				return
			}
			if b == nil {
				break
			}
			replayed += int64(len(b))
			if err := s.Ack(); err != nil {
				t.Fatal(err)
			}
		}
		if replayed != n || s.Len() != 0 || s.Bytes() != 0 {
			t.Fatalf("Len was %d, replayed %d; now Len %d, Bytes %d", n, replayed, s.Len(), s.Bytes())
		}
		if _, err := s.Append(spillEvents(0, 1)); err != nil {
			t.Fatalf("Append after recovery: %v", err)
		}
	})
}

func BenchmarkSpillAppend(b *testing.B) {
	const batch = 1000
	events := spillEvents(0, batch)
	cfg := SpillConfig{Dir: b.TempDir(), MaxBytes: 1 << 40}
	s := openTestSpill(b, cfg)
	b.SetBytes(spillRecordSize(events))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if s.Bytes() > 1<<30 { // start over rather than fill the disk
			b.StopTimer()
			s.Close()
			os.RemoveAll(cfg.Dir)
			s = openTestSpill(b, cfg)
			b.StartTimer()
		}
		if kept, err := s.Append(events); err != nil || kept != batch {
			b.Fatalf("Append = %d, %v", kept, err)
		}
		n++
	}
	b.ReportMetric(float64(n*batch)/b.Elapsed().Seconds(), "events/s")
}

func truncate(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
}

func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func TestSpillFolderTakenByOneProcess(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpill(t, SpillConfig{Dir: dir})
	if _, err := OpenSpill(SpillConfig{Dir: dir}); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second open of one folder: %v, want an in-use error", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := OpenSpill(SpillConfig{Dir: dir})
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	again.Close()
}
