package schemas

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func sampleEvent() UsageEvent {
	id, _ := ParseEventID("019ac4f2-7a00-7abc-8def-0123456789ab")
	return UsageEvent{ID: id, Time: time.Date(2026, 11, 27, 10, 0, 0, 123, time.UTC).UnixNano(), APIID: "abc123api", Stage: "prod",
		KeyID: "k1", PlanID: "p1", Method: "GET", Resource: "/items/{id}", Status: 200, Decision: DecisionAllowed,
		LatencyMicros: 1234, BytesIn: 0, BytesOut: 512}
}

// The encoding of a fixed event is fixed: a change here breaks every
// stored record and every reader.
func TestUsageEventGolden(t *testing.T) {
	e := sampleEvent()
	got := hex.EncodeToString(AppendUsageEvent(nil, &e))
	// Field by field (checked against an independent zigzag/varint
	// computation): 0a10+id | 10 time=zigzag(1795773600000000123) |
	// 1a09 "abc123api" | 2204 "prod" | 2a02 "k1" | 3202 "p1" | 3a03 "GET" |
	// 420b "/items/{id}" | 48 c801 status 200 | 5001 decision 1 |
	// 58 a413 latency zigzag(1234) | (bytes_in 0 omitted) | 68 8008 bytes_out zigzag(512).
	const want = "0a10019ac4f27a007abc8def0123456789ab" + "10f681b2d0e4a4efeb31" + "1a09616263313233617069" + "220470726f64" +
		"2a026b31" + "32027031" + "3a03474554" + "420b2f6974656d732f7b69647d" + "48c801" + "5001" + "58a413" + "688008"
	if got != want {
		t.Errorf("encoding changed:\n got %s\nwant %s", got, want)
	}

	// Field 14 (node) came later: it is appended, so a record written
	// before it is the same bytes minus the field, and decodes with
	// Node "". Readers that predate it skip it.
	e.Node = "edge-a"
	const withNode = want + "7206656467652d61" // 72 = field 14, bytes | 06 "edge-a"
	if got := hex.EncodeToString(AppendUsageEvent(nil, &e)); got != withNode {
		t.Errorf("encoding with node changed:\n got %s\nwant %s", got, withNode)
	}
	// Field 15 (count) came later still: events of one request never
	// write it (0 means 1), so their bytes are unchanged by it; an
	// aggregated event appends it.
	e.Count = 1000
	const withCount = withNode + "78e807" // 78 = field 15, varint | e807 = 1000
	if got := hex.EncodeToString(AppendUsageEvent(nil, &e)); got != withCount {
		t.Errorf("encoding with count changed:\n got %s\nwant %s", got, withCount)
	}
	// Field 16 (key_fingerprint) came with key rotations: appended, so
	// records without it are the bytes of before, and readers that
	// predate it skip it.
	e.KeyFingerprint = "5a4c9e01"
	const withFingerprint = withCount + "8201" + "083561346339653031" // 8201 = field 16, bytes | 08 "5a4c9e01"
	if got := hex.EncodeToString(AppendUsageEvent(nil, &e)); got != withFingerprint {
		t.Errorf("encoding with key fingerprint changed:\n got %s\nwant %s", got, withFingerprint)
	}
	for _, tt := range []struct {
		name, hex   string
		node        string
		count       uint32
		fingerprint string
	}{
		{"record from before field 14", want, "", 0, ""},
		{"record with field 14", withNode, "edge-a", 0, ""},
		{"record with a field from the future", withNode + "f80601", "edge-a", 0, ""}, // field 111, varint 1
		{"record with field 15", withCount, "edge-a", 1000, ""},
		{"record with field 16", withFingerprint, "edge-a", 1000, "5a4c9e01"},
	} {
		b, _ := hex.DecodeString(tt.hex)
		var got UsageEvent
		if err := DecodeUsageEvent(b, &got); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		want := sampleEvent()
		want.Node, want.Count, want.KeyFingerprint = tt.node, tt.count, tt.fingerprint
		if got != want {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.name, got, want)
		}
	}
}

func TestUsageEventRoundTrip(t *testing.T) {
	for _, e := range []UsageEvent{
		sampleEvent(),
		{ID: NewEventID(0)}, // zero values are omitted and come back zero
		{ID: NewEventID(1), Time: -5, Status: -1, LatencyMicros: -1, BytesIn: 1 << 62, BytesOut: -(1 << 62), Decision: DecisionBadRequest},
		{ID: NewEventID(2), Decision: DecisionAllowed, Node: "enforcer-eu-west-1a-7"},
		{ID: NewEventID(3), Decision: DecisionForbidden, Status: 403, Method: "OTHER", Count: 1<<32 - 1, LatencyMicros: 1 << 40},
		{ID: NewEventID(4), Decision: DecisionAllowed, KeyID: "k1", KeyFingerprint: "0123abcd", Node: "n"},
	} {
		var got UsageEvent
		if err := DecodeUsageEvent(AppendUsageEvent(nil, &e), &got); err != nil {
			t.Fatal(err)
		}
		if got != e {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, e)
		}
	}
}

func TestDecodeUsageEventRejectsMalformed(t *testing.T) {
	e := sampleEvent()
	good := AppendUsageEvent(nil, &e)
	for i := 1; i < len(good); i++ {
		var got UsageEvent
		// Every cut either decodes a prefix that still has an id, or fails.
		if err := DecodeUsageEvent(good[:i], &got); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("cut at %d: %v is not ErrMalformed", i, err)
		}
	}
	for name, b := range map[string][]byte{
		"empty":              nil,
		"no id":              {0x10, 0x02},
		"short id":           {0x0a, 0x02, 1, 2},
		"length too big":     {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"bad varint":         {0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
		"bad wire type":      {0x0b},
		"count over 32 bits": append(AppendUsageEvent(nil, &e), 0x78, 0x80, 0x80, 0x80, 0x80, 0x10), // 1<<32
	} {
		var got UsageEvent
		if err := DecodeUsageEvent(b, &got); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func FuzzDecodeUsageEvent(f *testing.F) {
	e := sampleEvent()
	f.Add(AppendUsageEvent(nil, &e))
	e.Node = "edge-a"
	f.Add(AppendUsageEvent(nil, &e))
	e.Count = 70000
	f.Add(AppendUsageEvent(nil, &e))
	e.KeyFingerprint = "0123abcd"
	f.Add(AppendUsageEvent(nil, &e))
	f.Add([]byte{0x0a, 0x10})
	f.Fuzz(func(t *testing.T, b []byte) {
		var got UsageEvent
		if err := DecodeUsageEvent(b, &got); err != nil {
			return
		}
		// What decodes re-encodes to something that decodes the same.
		var again UsageEvent
		if err := DecodeUsageEvent(AppendUsageEvent(nil, &got), &again); err != nil || again != got {
			t.Fatalf("re-encoding %+v gave %+v, %v", got, again, err)
		}
	})
}

// BenchmarkUsageEventCodec compares the chosen encoding with JSON, the
// readable alternative: encode into a reused buffer and decode.
func BenchmarkUsageEventCodec(b *testing.B) {
	e := sampleEvent()
	e.Node = "edge-a" // as every enforcer of a fleet stamps it
	b.Run("protobuf-wire", func(b *testing.B) {
		buf := make([]byte, 0, 256)
		var got UsageEvent
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			buf = AppendUsageEvent(buf[:0], &e)
			if err := DecodeUsageEvent(buf, &got); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(buf)), "bytes/event")
	})
	b.Run("json", func(b *testing.B) {
		var got UsageEvent
		var n int
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			j, _ := json.Marshal(&e)
			n = len(j)
			if err := json.Unmarshal(j, &got); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n), "bytes/event")
	})
}
