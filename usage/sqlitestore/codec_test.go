package sqlitestore

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/schemas"
)

// goldenBatch encodes to goldenHex. Change either only with a new
// batchVersion: stored batches must stay readable.
var goldenBatch = []schemas.UsageEvent{
	{
		ID:   schemas.EventID{0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, 0x70, 0x00, 0x80, 0, 0, 0, 0, 0, 0, 0x01},
		Time: 1_700_000_000_000_000_000, APIID: "a", Stage: "p", KeyID: "k1", PlanID: "pro", Method: "GET", Resource: "/x",
		Status: 200, Decision: schemas.DecisionAllowed, LatencyMicros: 1500, BytesIn: 0, BytesOut: 512,
	},
	{
		ID:   schemas.EventID{0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, 0x70, 0x00, 0x80, 0, 0, 0, 0, 0, 0, 0x02},
		Time: 1_700_000_000_000_001_000, APIID: "a", Stage: "p", KeyID: "k1", PlanID: "pro", Method: "GET", Resource: "/x",
		Status: 429, Decision: schemas.DecisionThrottled, LatencyMicros: 20, BytesIn: 0, BytesOut: 0,
	},
	{ // ended before the others began; no key, plan or resource
		ID:   schemas.EventID{0x01, 0x8b, 0xcf, 0xe5, 0x67, 0xff, 0x70, 0x00, 0x80, 0, 0, 0, 0, 0, 0, 0x03},
		Time: 1_699_999_999_999_000_000, APIID: "a", Stage: "p", Method: "GET",
		Status: 403, Decision: schemas.DecisionForbidden, LatencyMicros: 3, BytesIn: 7, BytesOut: 24,
	},
}

const goldenHex = "01" + // version
	"07" + "0161" + "0170" + "026b31" + "0370726f" + "03474554" + "022f78" + "00" + // 7 strings: a p k1 pro GET /x ""
	"03" + // 3 events
	"018bcfe5680070008000000000000001" + // id
	"8080d0e2c6bfce972f" + // time 1.7e18 - 0
	"000102030405" + // a p k1 pro GET /x
	"9003" + "01" + "b817" + "00" + "8008" + // status 200, allowed, latency 1500, in 0, out 512
	"018bcfe5680070008000000000000002" +
	"d00f" + // time +1000
	"000102030405" +
	"da06" + "04" + "28" + "00" + "00" + // 429, throttled, 20, 0, 0
	"018bcfe567ff70008000000000000003" +
	"cf987a" + // time -1001000
	"000106060406" + // a p "" "" GET ""
	"a606" + "02" + "06" + "0e" + "30" // 403, forbidden, 3, 7, 24

// goldenCountHex is goldenBatch with a count on its third event (the
// enforcer's per-minute count of rejected requests): version 2, each event
// ending with its count, the rest as in goldenHex. Change it only with a
// new batchVersion.
const goldenCountHex = "02" + // version
	"07" + "0161" + "0170" + "026b31" + "0370726f" + "03474554" + "022f78" + "00" +
	"03" +
	"018bcfe5680070008000000000000001" + "8080d0e2c6bfce972f" + "000102030405" + "9003" + "01" + "b817" + "00" + "8008" +
	"00" + // count 0: one request
	"018bcfe5680070008000000000000002" + "d00f" + "000102030405" + "da06" + "04" + "28" + "00" + "00" +
	"00" +
	"018bcfe567ff70008000000000000003" + "cf987a" + "000106060406" + "a606" + "02" + "06" + "0e" + "30" +
	"e807" // count 1000

func TestEncodeBatchGolden(t *testing.T) {
	got := encodeBatch(nil, goldenBatch)
	if h := hex.EncodeToString(got); h != goldenHex {
		t.Errorf("encodeBatch:\n got %s\nwant %s", h, goldenHex)
	}
	want, _ := hex.DecodeString(goldenHex)
	evs, err := decodeBatch(want)
	if err != nil {
		t.Fatalf("decodeBatch: %v", err)
	}
	if !slices.Equal(evs, goldenBatch) {
		t.Errorf("decodeBatch:\n got %+v\nwant %+v", evs, goldenBatch)
	}

	// With a count: version 2; version 1 batches stay readable (above).
	counted := slices.Clone(goldenBatch)
	counted[2].Count = 1000
	if h := hex.EncodeToString(encodeBatch(nil, counted)); h != goldenCountHex {
		t.Errorf("encodeBatch with a count:\n got %s\nwant %s", h, goldenCountHex)
	}
	b, _ := hex.DecodeString(goldenCountHex)
	if evs, err := decodeBatch(b); err != nil || !slices.Equal(evs, counted) {
		t.Errorf("decodeBatch of version 2:\n got %+v, %v\nwant %+v", evs, err, counted)
	}

	// Appending keeps what dst held.
	prefix := []byte("xyz")
	if got := encodeBatch(prefix, goldenBatch); !bytes.Equal(got, append([]byte("xyz"), want...)) {
		t.Errorf("encodeBatch(%q, ...) = %x", prefix, got)
	}
}

// roundTripBatches returns batches that exercise every field's range.
func roundTripBatches() map[string][]schemas.UsageEvent {
	extremes := []schemas.UsageEvent{
		{Time: math.MaxInt64, Status: math.MaxInt32, Decision: 255, LatencyMicros: math.MaxInt64, BytesIn: math.MinInt64, BytesOut: -1},
		{ID: schemas.EventID{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
			Time: math.MinInt64, Status: math.MinInt32, LatencyMicros: math.MinInt64, BytesIn: math.MaxInt64},
		{Time: 0, APIID: "key-éñ-✓", Stage: "'quoted'\x00nul", KeyID: strings.Repeat("k", 1000), PlanID: "plan with spaces", Method: "PATCH", Resource: "/orders/{id}/lines"},
		{Time: -1, APIID: "key-éñ-✓", Status: -1}, // same strings in other fields
	}
	manyStrings := make([]schemas.UsageEvent, 130) // 138 strings: indexes of two bytes
	for i := range manyStrings {
		manyStrings[i] = schemas.UsageEvent{ID: schemas.NewEventID(int64(i)), Time: int64(i) * 1e9, KeyID: fmt.Sprint("key-", i), Resource: fmt.Sprint("/r/", i%7)}
	}
	realistic := make([]schemas.UsageEvent, 1000)
	t := int64(1_750_000_000e9)
	fillBatch(realistic, &t)
	aggregated := slices.Clone(realistic[:30])
	aggregated[3].Count, aggregated[7].Count, aggregated[8].Count = 1, 1<<32-1, 70000
	return map[string][]schemas.UsageEvent{
		"aggregated":      aggregated,
		"empty":           nil,
		"zero event":      {{}},
		"golden":          goldenBatch,
		"extremes":        extremes,
		"many strings":    manyStrings,
		"realistic":       realistic,
		"realistic small": realistic[:30],
	}
}

func TestBatchRoundTrip(t *testing.T) {
	var enc batchEncoder // reused, as the store does
	for name, batch := range roundTripBatches() {
		t.Run(name, func(t *testing.T) {
			b := enc.encode(nil, batch)
			if fresh := encodeBatch(nil, batch); !bytes.Equal(b, fresh) {
				t.Errorf("a reused encoder encodes differently from a new one")
			}
			got, err := decodeBatch(b)
			if err != nil {
				t.Fatalf("decodeBatch: %v", err)
			}
			if !slices.Equal(got, batch) {
				t.Errorf("decodeBatch(encodeBatch(x)) != x:\n got %+v\nwant %+v", got, batch)
			}
			if len(batch) > 0 {
				t.Logf("%d events in %d bytes, %.1f bytes per event", len(batch), len(b), float64(len(b))/float64(len(batch)))
			}
		})
	}
}

// rawBatch builds a batch byte by byte, to write invalid ones.
type rawBatch []byte

func (r rawBatch) u(v uint64) rawBatch    { return binary.AppendUvarint(r, v) }
func (r rawBatch) v(v int64) rawBatch     { return binary.AppendVarint(r, v) }
func (r rawBatch) b(b ...byte) rawBatch   { return append(r, b...) }
func (r rawBatch) s(s string) rawBatch    { return append(r.u(uint64(len(s))), s...) }
func (r rawBatch) id() rawBatch           { return append(r, make([]byte, 16)...) }
func (r rawBatch) refs(i uint64) rawBatch { return r.u(i).u(0).u(0).u(0).u(0).u(0) }

// event appends an event with time delta 0, the given first string index
// and status.
func (r rawBatch) event(ref uint64, status int64) rawBatch {
	return r.id().v(0).refs(ref).v(status).b(1).v(0).v(0).v(0)
}

func TestDecodeBatchErrors(t *testing.T) {
	header := rawBatch{batchVersion}.u(1).s("a") // one string
	valid := header.u(1).event(0, 200)
	if _, err := decodeBatch(valid); err != nil {
		t.Fatalf("the valid base case: %v", err)
	}
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"unknown version", append([]byte{3}, valid[1:]...)},
		{"version 2 event without its count", append([]byte{batchVersionCount}, valid[1:]...)},
		{"count above uint32", append(rawBatch{batchVersionCount}, valid[1:]...).u(1 << 32)},
		{"version 0", append([]byte{0}, valid[1:]...)},
		{"dictionary count beyond the input", rawBatch{batchVersion}.u(1 << 62)},
		{"string longer than the input", rawBatch{batchVersion}.u(1).u(1000).b('a', 'b')},
		{"string length over 64 bits", rawBatch{batchVersion}.u(1).b(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f)},
		{"event count beyond the input", header.u(1 << 40)},
		{"event count over 64 bits", header.b(0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01)},
		{"one event more than present", header.u(2).event(0, 200)},
		{"string index out of range", header.u(1).event(1, 200)},
		{"huge string index", header.u(1).event(1<<63, 200)},
		{"status above int32", header.u(1).event(0, math.MaxInt32+1)},
		{"status below int32", header.u(1).event(0, math.MinInt32-1)},
		{"time over 64 bits", header.u(1).id().b(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02).refs(0).v(200).b(1).v(0).v(0).v(0)},
		{"byte after the last event", valid.b(0)},
		{"event after the last event", valid.event(0, 200)},
		{"no events but bytes", header.u(0).event(0, 200)},
	}
	golden, _ := hex.DecodeString(goldenHex)
	for n := range golden {
		tests = append(tests, struct {
			name string
			in   []byte
		}{fmt.Sprintf("golden cut at %d", n), golden[:n]})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			got, err := decodeBatch(tt.in)
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatalf("decodeBatch(%x): got %d events and no error", tt.in, len(got))
			}
			if !errors.Is(err, errCorruptBatch) {
				t.Errorf("decodeBatch(%x): got %v, want an error wrapping errCorruptBatch", tt.in, err)
			}
			if got != nil {
				t.Errorf("decodeBatch(%x): got %d events with the error, want none", tt.in, len(got))
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
				t.Errorf("decodeBatch(%x) allocated %d bytes", tt.in, n)
			}
		})
	}

	// appendDecoded leaves dst as it was.
	dst := []schemas.UsageEvent{goldenBatch[0]}
	got, err := appendDecoded(dst, header.u(2).event(0, 200).event(5, 200))
	if err == nil || !slices.Equal(got, dst) {
		t.Errorf("appendDecoded of a bad batch: got %d events, %v; want dst unchanged and an error", len(got), err)
	}
}

// FuzzDecodeBatch checks that decodeBatch never panics, and that what it
// accepts survives an encode and decode unchanged, encoding canonically.
//
//	go test -run x -fuzz FuzzDecodeBatch -fuzztime 30s ./usage/sqlitestore
func FuzzDecodeBatch(f *testing.F) {
	for _, batch := range roundTripBatches() {
		if b := encodeBatch(nil, batch); len(b) <= 16<<10 { // big inputs slow the fuzzer, teach it nothing more
			f.Add(b)
		}
	}
	f.Add([]byte{})
	f.Add([]byte{batchVersion, 0, 0})
	f.Add([]byte{batchVersionCount, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := decodeBatch(b)
		if err != nil {
			if !errors.Is(err, errCorruptBatch) {
				t.Fatalf("decodeBatch: error %v does not wrap errCorruptBatch", err)
			}
			return
		}
		if len(evs) > len(b)/minEventLen {
			t.Fatalf("decodeBatch: %d events from %d bytes", len(evs), len(b))
		}
		enc := encodeBatch(nil, evs)
		got, err := decodeBatch(enc)
		if err != nil {
			t.Fatalf("decodeBatch(encodeBatch(x)): %v", err)
		}
		if !slices.Equal(got, evs) {
			t.Fatalf("decodeBatch(encodeBatch(x)) != x:\n got %+v\nwant %+v", got, evs)
		}
		if again := encodeBatch(nil, got); !bytes.Equal(again, enc) {
			t.Fatalf("encoding is not canonical:\n%x\n%x", enc, again)
		}
	})
}
