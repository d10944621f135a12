package loadgen

import (
	"math"
	"math/bits"
	"time"
)

// The histogram is log-linear, like HdrHistogram: values below 2·subCount
// nanoseconds each have their own bucket; above that, every power-of-two
// range [2^k, 2^(k+1)) is split into subCount equal buckets. A bucket is
// therefore never wider than 1/subCount of its lower bound, so any value it
// reports is within 1/128 ≈ 0.8% of the true one, over the whole int64 range,
// in a fixed array that Record only indexes.
const (
	subBits     = 7
	subCount    = 1 << subBits              // buckets per power of two
	bucketCount = (64 - subBits) * subCount // the last bucket holds math.MaxInt64
)

// Histogram records durations with at most 0.8% relative error. Record does
// not allocate. The zero value is empty and ready; a Histogram is not safe
// for concurrent use (give each goroutine its own and Merge them).
type Histogram struct {
	counts [bucketCount]uint64
	count  uint64
	sum    float64 // nanoseconds; float so it cannot overflow
	min    int64
	max    int64
}

// bucketOf returns the bucket index of v ≥ 0.
func bucketOf(v uint64) int {
	shift := bits.Len64(v) - (subBits + 1)
	if shift < 0 {
		shift = 0
	}
	return shift*subCount + int(v>>uint(shift))
}

// bucketBounds returns the lowest and highest value of bucket i.
func bucketBounds(i int) (lo, hi int64) {
	if i < 2*subCount {
		return int64(i), int64(i)
	}
	shift := uint(i/subCount - 1)
	top := int64(i%subCount + subCount)
	lo = top << shift
	return lo, lo + (1 << shift) - 1
}

// Record adds one duration; negative ones count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(uint64(v))]++
	if h.count == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.count++
	h.sum += float64(v)
}

// Merge adds every value recorded in o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.count == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.count == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.count += o.count
	h.sum += o.sum
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.count }

// Min is the smallest recorded value, exactly; 0 when empty.
func (h *Histogram) Min() time.Duration { return time.Duration(h.min) }

// Max is the largest recorded value, exactly; 0 when empty.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean is the arithmetic mean, exactly (up to float rounding); 0 when empty.
func (h *Histogram) Mean() time.Duration {
	if h.count == 0 {
		return 0
	}
	return time.Duration(math.Round(h.sum / float64(h.count)))
}

// Quantile returns the value below or at which a fraction q (0..1) of the
// recorded values lie: the highest value of the bucket holding the value of
// rank ⌈q·count⌉, capped at Max, so it is never below the true quantile and
// at most 0.8% above it. Quantile(0.99) is p99; 0 when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.count == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.count)))
	rank = max(1, min(rank, h.count))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			_, hi := bucketBounds(i)
			return time.Duration(min(hi, h.max))
		}
	}
	return time.Duration(h.max)
}
