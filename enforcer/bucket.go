package enforcer

import (
	"math"
	"sync/atomic"
)

// bucket is a token bucket kept as one int64 with the generic cell rate
// algorithm (GCRA): tat is the theoretical arrival time of the next
// request in Unix nanoseconds. A request at now is admitted when taking
// one interval would not push tat more than tolerance (burst × interval)
// past now. One atomic word per bucket means no lock and no allocation:
// contended buckets retry a compare-and-swap, and a key hammered from
// every core stays exact.
type bucket struct {
	interval  int64 // nanoseconds per token; 0 means the bucket blocks every request
	tolerance int64 // burst × interval
	burst     int64
}

// unlimitedBucket is used where no throttle is configured.
var unlimitedBucket = bucket{interval: -1}

func newBucket(rate float64, burst int64) bucket {
	if rate <= 0 || burst <= 0 {
		return bucket{} // 0/0 throttles everything, as in AWS
	}
	iv := int64(math.Round(1e9 / rate))
	if iv < 1 {
		iv = 1
	}
	tol := int64(math.MaxInt64 / 4)
	if burst < tol/iv {
		tol = burst * iv
	}
	return bucket{interval: iv, tolerance: tol, burst: burst}
}

func (b *bucket) unlimited() bool { return b.interval < 0 }

// take admits one request at now. On refusal it returns how long until a
// token is available (or -1 if never). On success it returns the tokens
// left.
func (b *bucket) take(tat *atomic.Int64, now int64) (ok bool, left, wait int64) {
	if b.interval <= 0 {
		if b.interval < 0 {
			return true, math.MaxInt64, 0
		}
		return false, 0, -1
	}
	for {
		old := tat.Load()
		next := max(old, now) + b.interval
		if d := next - now; d > b.tolerance {
			return false, 0, d - b.tolerance
		}
		if tat.CompareAndSwap(old, next) {
			return true, (b.tolerance - (next - now)) / b.interval, 0
		}
	}
}

// refund gives back a token taken by a request that a later check
// rejected.
func (b *bucket) refund(tat *atomic.Int64) {
	if b.interval > 0 {
		tat.Add(-b.interval)
	}
}

// secondsUntilFull is the RateLimit header's reset: how long until the
// bucket would be full again, rounded up.
func (b *bucket) secondsUntilFull(tat *atomic.Int64, now int64) int64 {
	d := tat.Load() - now
	if d <= 0 || b.interval <= 0 {
		return 0
	}
	return (d + 1e9 - 1) / 1e9
}
