package enforcer

import (
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/schemas"
)

// A fleet's enforcers divide a key's throttle: each admits its share of
// the plan's rate and burst, and of each per-method throttle's, so that
// the fleet admits the plan's rate wherever the key's requests arrive.
// The aggregator divides (schemas.RateSignal, and the package doc of
// aggregator for the rule); ApplyRate takes a division for this
// enforcer, and the request path scales the key's buckets by it
// (bucket.scaled). Where no division holds, the share is the fleet's
// default: 1/N of the limits, N the enforcers in the fleet as the aggregators say
// (SetFleet), or Config.Fleet before any; alone (N = 1) that is the whole
// rate, so a single gateway is unchanged.

// DefaultRateStale is how long a division of a key's throttle holds after
// the aggregator made it (its AsOf), unless Config.RateStale says.
const DefaultRateStale = 3 * time.Second

// The share word of a keyPlanState packs the share (17 bits, of
// schemas.ShareOne) above the time until which it holds (47 bits, Unix
// milliseconds); 0: no division.
const (
	shareShift = 47
	untilMask  = 1<<shareShift - 1
)

// ApplyRate takes a division of a key's throttle under a plan: this
// enforcer's share holds until the division's AsOf plus the staleness
// bound (Config.RateStale, compared with this enforcer's clock), unless a
// newer division replaces it. It reports whether it applied: the key is
// in the plan, and the division is neither stale nor older than the one
// in force. It does not allocate, and is safe to call concurrently with
// requests and changes.
func (g *Gateway) ApplyRate(s *schemas.RateSignal) bool {
	now := g.cfg.Now()
	until := s.AsOf + int64(g.cfg.RateStale)
	if until <= now || s.AsOf > now+int64(g.cfg.RateStale) {
		// Stale, or made by a clock ahead of this one by more than a
		// division lasts: it would hold, and keep newer ones out, for
		// as long as the clocks differ.
		return false
	}
	st, _ := g.table.Load().keyPlan(s.KeyID, s.PlanID)
	if st == nil {
		return false
	}
	// A share of 0 would refuse every request of the key: the
	// aggregator never divides so (a floor for everyone); read it as the
	// smallest share.
	w := uint64(max(s.ShareOf(g.cfg.Node), 1))<<shareShift | uint64(until/1e6)&untilMask
	for {
		old := st.share.Load()
		if old&untilMask > w&untilMask {
			return false // a newer division is in force
		}
		if st.share.CompareAndSwap(old, w) {
			return true
		}
	}
}

// SetFleet sets how many enforcers share the fleet's throttles where no
// division holds: each then admits 1/n of a key's limits. n < 1 is 1.
func (g *Gateway) SetFleet(n int) {
	n = min(max(n, 1), MaxFleet)
	g.fleetN.Store(int32(n))
	g.fleetShare.Store(uint32(schemas.ShareOne / n))
	g.setFailSafe()
}

// SetClockSkewed says whether this enforcer's clock is off the
// aggregators' (ingest.SignalReader watches it). While it is, a key
// without a quota signal of the period gets no fail-safe lease: the
// period it is in may be one that only this enforcer's clock is in (a
// clock a day ahead would grant a day that has not come, one behind a day
// that is over). Keys with a signal keep their leases.
func (g *Gateway) SetClockSkewed(skewed bool) {
	g.skewed.Store(skewed)
	g.setFailSafe()
}

func (g *Gateway) setFailSafe() {
	if g.skewed.Load() {
		g.failSafe.Store(0)
	} else {
		g.failSafe.Store(g.fleetShare.Load())
	}
}

// MaxFleet is the largest fleet SetFleet takes: 1/MaxFleet is the
// smallest default share (of schemas.ShareOne's 65,536 units).
const MaxFleet = 4096

// Fleet returns the fleet's size SetFleet last set (1 alone).
func (g *Gateway) Fleet() int { return int(g.fleetN.Load()) }

// shareAt returns the key's share at now: its division while it holds,
// else the fleet's default.
func (st *keyPlanState) shareAt(now int64, def *atomic.Uint32) uint32 {
	if w := st.share.Load(); w != 0 && int64(w&untilMask)*1e6 > now {
		return uint32(w >> shareShift)
	}
	return def.Load()
}

// scaled returns the bucket for a share f of its limits: the interval
// grows by 1/f and the tolerance, the burst's time, stays (so the burst
// shrinks by f), but never below one request. A whole share is b itself.
func (b *bucket) scaled(f uint32) bucket {
	if b.interval <= 0 || f >= schemas.ShareOne {
		return *b
	}
	if f == 0 {
		return bucket{}
	}
	// interval × 65536 / f, capped where tat arithmetic would overflow
	// (a token every 36 years: as good as none).
	const maxInterval = int64(1) << 60
	var iv int64
	switch q := b.interval / int64(f); {
	case b.interval <= maxInterval/schemas.ShareOne:
		iv = min(b.interval*schemas.ShareOne/int64(f), maxInterval)
	case q <= maxInterval/schemas.ShareOne:
		iv = q * schemas.ShareOne
	default:
		iv = maxInterval
	}
	return bucket{interval: iv, tolerance: max(b.tolerance, iv), burst: max(b.burst*int64(f)/schemas.ShareOne, 1)}
}
