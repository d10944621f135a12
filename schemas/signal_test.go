package schemas

import (
	"encoding/hex"
	"errors"
	"reflect"
	"testing"
)

func TestQuotaSignalGoldenAndRoundTrip(t *testing.T) {
	s := QuotaSignal{PlanID: "p1", KeyID: "k1", Used: 100, Limit: 100, PeriodEnd: 1_795_824_000_000_000_000, AsOf: 1, Exhausted: true}
	b := AppendQuotaSignal(nil, &s)
	// 0a02 "p1" | 1202 "k1" | 18 c801 used zigzag(100) | 20 c801 limit |
	// 28 period_end zigzag | 30 02 as_of zigzag(1) | 38 01 exhausted.
	const want = "0a027031" + "12026b31" + "18c801" + "20c801" + "288080f8f1b99a86ec31" + "3002" + "3801"
	if got := hex.EncodeToString(b); got != want {
		t.Errorf("encoding changed:\n got %s\nwant %s", got, want)
	}
	var got QuotaSignal
	if err := DecodeQuotaSignal(b, &got); err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if got.Nodes != nil {
		t.Errorf("a signal without nodes decoded with Nodes %#v, want nil", got.Nodes)
	}
	if got.Remaining() != 0 {
		t.Errorf("remaining = %d", got.Remaining())
	}
	for name, bad := range map[string][]byte{"empty": nil, "no key": b[:4], "truncated": b[:len(b)-1], "field 0": {0x00, 0x01}} {
		if err := DecodeQuotaSignal(bad, &got); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func nodesSignal() QuotaSignal {
	return QuotaSignal{PlanID: "p1", KeyID: "k1", Used: 8, Limit: 10, PeriodEnd: 1_795_824_000_000_000_000, AsOf: 1,
		Nodes: []NodeCount{{"", 2}, {"edge-a", 5}, {"edge-b", 1}}}
}

// Field 8 (nodes) is a repeated embedded message. A signal written
// before it decodes with Nodes nil (the golden above); readers that
// predate it skip it.
func TestQuotaSignalNodesGolden(t *testing.T) {
	s := nodesSignal()
	b := AppendQuotaSignal(nil, &s)
	// ... 18 10 used zigzag(8) | 20 14 limit zigzag(10) | 28 period_end |
	// 30 02 as_of | (exhausted false omitted) | then one 42 (field 8,
	// bytes) per node: 42 02 {10 04 counted 2} (node "" omitted) |
	// 42 0a {0a 06 "edge-a" | 10 0a counted 5} | 42 0a {0a 06 "edge-b" | 10 02}.
	// Checked against an independent varint/zigzag computation.
	const want = "0a027031" + "12026b31" + "1810" + "2014" + "288080f8f1b99a86ec31" + "3002" +
		"42021004" + "420a0a06656467652d61100a" + "420a0a06656467652d621002"
	if got := hex.EncodeToString(b); got != want {
		t.Errorf("encoding changed:\n got %s\nwant %s", got, want)
	}
	var got QuotaSignal
	if err := DecodeQuotaSignal(b, &got); err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	// Unknown fields, in the signal and in an entry, are skipped.
	future, _ := hex.DecodeString(want + "f80601" + "4205" + "0a0163" + "1801" + "5004")
	if err := DecodeQuotaSignal(future, &got); err != nil {
		t.Fatal(err)
	}
	if want := append(nodesSignal().Nodes, NodeCount{Node: "c"}); !reflect.DeepEqual(got.Nodes, want) {
		t.Errorf("with unknown fields: Nodes %+v, want %+v", got.Nodes, want)
	}
}

func TestQuotaSignalRoundTrip(t *testing.T) {
	for _, s := range []QuotaSignal{
		nodesSignal(),
		{PlanID: "p", KeyID: "k", Nodes: []NodeCount{{}}}, // an all-zero entry is an empty message, and comes back
		{PlanID: "p", KeyID: "k", Used: -3, Limit: 1 << 62, Nodes: []NodeCount{{"n", -1}, {"n", 1 << 62}, {"m", -(1 << 62)}}},
	} {
		var got QuotaSignal
		if err := DecodeQuotaSignal(AppendQuotaSignal(nil, &s), &got); err != nil || !reflect.DeepEqual(got, s) {
			t.Errorf("round trip:\n got %+v, %v\nwant %+v", got, err, s)
		}
	}
}

func TestDecodeQuotaSignalRejectsMalformedNodes(t *testing.T) {
	s := nodesSignal()
	good := AppendQuotaSignal(nil, &s)
	for i := 1; i < len(good); i++ {
		var got QuotaSignal
		// Every cut either decodes a prefix or fails with ErrMalformed.
		if err := DecodeQuotaSignal(good[:i], &got); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("cut at %d: %v is not ErrMalformed", i, err)
		}
	}
	ids := []byte{0x0a, 0x01, 'p', 0x12, 0x01, 'k'}
	for name, entry := range map[string][]byte{
		"entry longer than the signal": {0x42, 0x05, 0x0a, 0x01},
		"node longer than its entry":   {0x42, 0x03, 0x0a, 0x05, 'a'},
		"entry as a varint":            {0x40, 0x01},
		"node as a varint":             {0x42, 0x02, 0x08, 0x01},
		"counted as bytes":             {0x42, 0x03, 0x12, 0x01, 0x00},
		"counted truncated":            {0x42, 0x01, 0x10},
		"counted overflowing":          {0x42, 0x0b, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
		"bad wire type in entry":       {0x42, 0x01, 0x0b},
		"field 0 in entry":             {0x42, 0x02, 0x00, 0x01},
	} {
		b := append(append([]byte(nil), ids...), entry...)
		var got QuotaSignal
		if err := DecodeQuotaSignal(b, &got); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func FuzzDecodeQuotaSignal(f *testing.F) {
	s := QuotaSignal{PlanID: "p1", KeyID: "k1", Used: 3, Limit: 10}
	f.Add(AppendQuotaSignal(nil, &s))
	s = nodesSignal()
	f.Add(AppendQuotaSignal(nil, &s))
	f.Add([]byte{0x0a, 0x01, 'p', 0x12, 0x01, 'k', 0x42, 0x03, 0x0a, 0x01, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		var got QuotaSignal
		if DecodeQuotaSignal(b, &got) != nil {
			return
		}
		var again QuotaSignal
		if err := DecodeQuotaSignal(AppendQuotaSignal(nil, &got), &again); err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("re-encoding %+v gave %+v, %v", got, again, err)
		}
	})
}

// BenchmarkQuotaSignalCodec encodes into a reused buffer and decodes a
// signal of a key shared by three enforcers.
func BenchmarkQuotaSignalCodec(b *testing.B) {
	s := nodesSignal()
	buf := make([]byte, 0, 256)
	var got QuotaSignal
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendQuotaSignal(buf[:0], &s)
		if err := DecodeQuotaSignal(buf, &got); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(buf)), "bytes/signal")
}
