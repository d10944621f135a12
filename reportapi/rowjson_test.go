package reportapi

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
)

// The encoder writes what encoding/json writes for the map /v1/usage
// rows used to be built as: every grouping, random values, strings with
// every class of character encoding/json escapes.
func TestRowEncoderMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	pieces := []string{"a", "Z", "hist-0000001", "/items/{id}", "\"", "\\", "<", ">", "&", "\n", "\r", "\t", "\b", "\f", "\x00", "\x1f", "\x7f",
		"é", "日本", "\u2028", "\u2029", "\xff", "\xc3", "\xed\xa0\x80", "😀", " "}
	str := func() string {
		s := ""
		for range r.IntN(6) {
			s += pieces[r.IntN(len(pieces))]
		}
		return s
	}
	for n := range 3000 {
		var groupBy []string
		for _, d := range dimensions {
			if r.IntN(2) == 0 {
				groupBy = append(groupBy, d)
			}
		}
		row := usageRow{Time: time.Unix(r.Int64N(4e9), 0).UTC(), Requests: r.Int64() >> r.IntN(63), BytesIn: r.Int64N(1 << 40),
			BytesOut: -r.Int64N(10), LatencyMicrosSum: r.Int64() >> r.IntN(63)}
		if n%7 == 0 {
			row.LatencyMicrosSum = []int64{0, 1, 999, 1e24 / 1e6, -5}[n%5]
		}
		m := map[string]any{"time": row.Time.Format(time.RFC3339), "requests": row.Requests, "bytes_in": row.BytesIn,
			"bytes_out": row.BytesOut, "latency_ms_sum": float64(row.LatencyMicrosSum) / 1000}
		for _, d := range groupBy {
			v := str()
			if d == "status" {
				s := r.IntN(600)
				v = strconv.Itoa(s)
				m[d] = s
			} else {
				m[d] = v
			}
			row.Dims = append(row.Dims, v)
		}
		want, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if got := newRowEncoder(groupBy).encode(&row); string(got) != string(want) {
			t.Fatalf("group by %v:\n got %s\nwant %s", groupBy, got, want)
		}
	}
}

func TestAppendJSONFloat(t *testing.T) {
	for _, f := range []float64{0, 1, -1, 0.001, 1e-7, 1.5e-7, 1e20, 1e21, 1.234e22, 123456.789, -2e-9} {
		want, _ := json.Marshal(f)
		if got := appendJSONFloat(nil, f); string(got) != string(want) {
			t.Errorf("appendJSONFloat(%v) = %s, want %s", f, got, want)
		}
	}
}

func BenchmarkRowEncoder(b *testing.B) {
	groupBy := []string{"key"}
	row := usageRow{Time: time.Unix(1.7e9, 0).UTC(), Dims: []string{"hist-0005000"}, Requests: 336, BytesOut: 12345, LatencyMicrosSum: 98765}
	b.Run("encoder", func(b *testing.B) {
		e := newRowEncoder(groupBy)
		b.ReportAllocs()
		for b.Loop() {
			e.encode(&row)
		}
	})
	b.Run("map+encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m := map[string]any{"time": row.Time.Format(time.RFC3339), "requests": row.Requests, "bytes_in": row.BytesIn,
				"bytes_out": row.BytesOut, "latency_ms_sum": float64(row.LatencyMicrosSum) / 1000, "key": row.Dims[0]}
			json.Marshal(m)
		}
	})
}
