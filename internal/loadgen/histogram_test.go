package loadgen

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketBoundsCoverEveryValue(t *testing.T) {
	values := []uint64{0, 1, 127, 128, 255, 256, 257, 511, 512, 1000, 1 << 20, 1<<20 + 12345, 1 << 40, math.MaxInt64}
	for _, v := range values {
		i := bucketOf(v)
		if i < 0 || i >= bucketCount {
			t.Fatalf("bucketOf(%d) = %d, out of [0,%d)", v, i, bucketCount)
		}
		lo, hi := bucketBounds(i)
		if uint64(lo) > v || v > uint64(hi) {
			t.Errorf("bucketOf(%d) = %d with bounds [%d,%d], not holding it", v, i, lo, hi)
		}
		if rel := float64(hi-lo) / float64(max(lo, 1)); rel > 0.01 {
			t.Errorf("bucket %d [%d,%d] is %.2f%% wide, want ≤ 1%%", i, lo, hi, rel*100)
		}
	}
	// Consecutive buckets tile the line with no gap or overlap.
	for i := 1; i < bucketCount; i++ {
		_, prevHi := bucketBounds(i - 1)
		lo, _ := bucketBounds(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ends at %d", i, lo, prevHi)
		}
	}
}

func TestHistogramQuantilesOnKnownData(t *testing.T) {
	tests := []struct {
		name   string
		values func() []time.Duration
	}{
		{"uniform 1µs..100ms", func() []time.Duration {
			v := make([]time.Duration, 100000)
			for i := range v {
				v[i] = time.Duration(i+1) * time.Microsecond
			}
			return v
		}},
		{"small exact ns", func() []time.Duration {
			v := make([]time.Duration, 200)
			for i := range v {
				v[i] = time.Duration(i)
			}
			return v
		}},
		{"lognormal shuffled", func() []time.Duration {
			r := rand.New(rand.NewPCG(1, 2))
			v := make([]time.Duration, 50000)
			for i := range v {
				v[i] = time.Duration(math.Exp(r.NormFloat64()*1.5 + 13)) // ~0.4ms median
			}
			return v
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			values := tt.values()
			var h Histogram
			for _, v := range values {
				h.Record(v)
			}
			sorted := slices.Clone(values)
			slices.Sort(sorted)
			if got, want := h.Count(), uint64(len(values)); got != want {
				t.Fatalf("Count = %d, want %d", got, want)
			}
			if got, want := h.Max(), sorted[len(sorted)-1]; got != want {
				t.Errorf("Max = %v, want %v", got, want)
			}
			if got, want := h.Min(), sorted[0]; got != want {
				t.Errorf("Min = %v, want %v", got, want)
			}
			for _, q := range []float64{0, 0.5, 0.9, 0.99, 0.999, 1} {
				rank := max(1, int(math.Ceil(q*float64(len(sorted)))))
				want := sorted[rank-1]
				got := h.Quantile(q)
				if got < want || float64(got-want) > 0.01*float64(want) {
					t.Errorf("Quantile(%v) = %v, want %v within +1%%", q, got, want)
				}
			}
		})
	}
}

func TestHistogramMergeAndMean(t *testing.T) {
	var a, b, all Histogram
	for i := 1; i <= 1000; i++ {
		d := time.Duration(i) * time.Millisecond
		all.Record(d)
		if i%2 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	a.Merge(&b)
	if a != all {
		t.Fatalf("merged histogram differs from one fed everything")
	}
	if got, want := a.Mean(), 500500*time.Microsecond; got != want {
		t.Errorf("Mean = %v, want %v", got, want)
	}
	var empty Histogram
	if empty.Quantile(0.99) != 0 || empty.Mean() != 0 || empty.Max() != 0 {
		t.Errorf("empty histogram reports non-zero values")
	}
}

func TestHistogramRecordDoesNotAllocate(t *testing.T) {
	h := new(Histogram)
	d := time.Duration(1)
	if n := testing.AllocsPerRun(1000, func() { h.Record(d); d = d*3 + 7 }); n != 0 {
		t.Errorf("Record allocates %v times per call, want 0", n)
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	b.ReportAllocs()
	h := new(Histogram)
	for i := 0; b.Loop(); i++ {
		h.Record(time.Duration(i&0xfffff) * 97)
	}
}
