package enforcer

import (
	"slices"
	"sync/atomic"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/schemas"
)

// A quota counter is one uint64: the period in the top 24 bits (its
// kind, DAY, WEEK or MONTH, in 2 bits and its index in 22), the requests
// used in that period in the low 40. Checking, rolling over to a new
// period and counting are one compare-and-swap, so concurrent requests
// never lose a count and never admit past the limit.
//
// Each key and plan has two such words (keyPlanState): the quota counter,
// which decides (it is what the key may still use here, as a lease set by
// quota signals, see ApplySignal), and the local counter, which only
// counts: the requests this enforcer admitted in the period, whatever
// signals did to the quota counter. Packing the period into both means a
// new period resets them without anyone resetting them; packing its kind
// means a plan whose quota changes from DAY to MONTH (say) does not read
// a day's index as a month's: a counter of another kind of period holds
// nothing for this one, as an empty counter does.
const (
	usedBits = 40
	usedMask = 1<<usedBits - 1
	idxBits  = 22
	idxMask  = 1<<idxBits - 1
)

// pack returns the counter word of period idx with used requests.
func (q *quota) pack(idx, used int64) uint64 {
	return uint64(q.kind)<<(usedBits+idxBits) | uint64(idx&idxMask)<<usedBits | uint64(used)&usedMask
}

// period returns the index of the period a counter word holds, and false
// if it holds a period of another kind (or is empty).
func (q *quota) period(v uint64) (int64, bool) {
	return int64(v>>usedBits) & idxMask, int(v>>(usedBits+idxBits)) == q.kind
}

// later reports whether a counter word holds a period after idx.
func (q *quota) later(v uint64, idx int64) bool {
	p, ok := q.period(v)
	return ok && p > idx&idxMask
}

// unpack returns the requests a counter word holds for period idx.
func (q *quota) unpack(v uint64, idx int64) (used int64) {
	if p, ok := q.period(v); !ok || p != idx&idxMask {
		return 0 // another period: nothing used yet in this one
	}
	return int64(v & usedMask)
}

// quota is a plan's compiled quota.
type quota struct {
	q    catalog.Quota
	kind int // of the period: 1 DAY, 2 WEEK, 3 MONTH
	// firstIdx is the period the plan was created in, where the offset applies.
	firstIdx int64
	// cur caches the bounds of the current period: computing a MONTH
	// index from a timestamp costs a calendar conversion, checking a
	// cached range costs two compares.
	cur atomic.Pointer[periodSpan]
}

type periodSpan struct{ idx, start, end int64 }

// span returns the period containing now.
func (q *quota) span(now int64) *periodSpan {
	if p := q.cur.Load(); p != nil && now >= p.start && now < p.end {
		return p
	}
	idx := q.q.Period.Index(now)
	p := &periodSpan{idx: idx, start: q.q.Period.Start(idx), end: q.q.Period.Start(idx + 1)}
	q.cur.Store(p)
	return p
}

func newQuota(q *catalog.Quota, created int64) *quota {
	if q == nil {
		return nil
	}
	kind := 1 + slices.Index([]catalog.Period{catalog.Day, catalog.Week, catalog.Month}, q.Period)
	return &quota{q: *q, kind: kind, firstIdx: q.Period.Index(created * 1e9)}
}

func (q *quota) limit(idx int64) int64 {
	if idx == q.firstIdx {
		return max(q.q.Limit-q.q.Offset, 0)
	}
	return q.q.Limit
}

// take counts one request at now. It returns whether it was admitted, the
// period it counted in (for countLocal), the requests remaining in the
// period after it, and the period's end.
func (q *quota) take(c *atomic.Uint64, now int64) (ok bool, idx, remaining, end int64) {
	p := q.span(now)
	for {
		old := c.Load()
		idx, end := p.idx, p.end
		if q.later(old, idx) {
			// A request that read the clock before a period ended
			// reached the counter after one from the next period: count
			// it there, never move the counter back (that would wipe
			// the new period's count and reopen an exhausted one).
			idx, _ = q.period(old)
			end = q.q.Period.Start(idx + 1)
		}
		lim := q.limit(idx)
		used := q.unpack(old, idx)
		if used >= lim {
			return false, idx, 0, end
		}
		if c.CompareAndSwap(old, q.pack(idx, used+1)) {
			return true, idx, lim - used - 1, end
		}
	}
}

// refund gives back a request take counted in period idx that a later
// check refused.
func (q *quota) refund(c *atomic.Uint64, idx int64) {
	for {
		old := c.Load()
		if p, ok := q.period(old); !ok || p != idx&idxMask || old&usedMask == 0 || c.CompareAndSwap(old, old-1) {
			return
		}
	}
}

// failSafe is the part of lim a share allows, rounded up: a fleet of N
// enforcers that each take it admits at most lim + N - 1.
func failSafe(lim int64, share uint32) int64 {
	return (lim*int64(share) + schemas.ShareOne - 1) / schemas.ShareOne
}

// countLocal adds one admitted request of period idx to a local counter,
// starting the period's count when the counter holds an older one (or
// one of another kind), unless the period's count is already capN
// (capN < 0: no cap); it returns the count after and whether it added.
// A count for a period older than the counter's is dropped: that period
// is over, and no signal of it applies any more. One compare-and-swap
// checks the cap and counts, so concurrent requests never pass it.
func (q *quota) countLocal(c *atomic.Uint64, idx, capN int64) (int64, bool) {
	for {
		old := c.Load()
		next := old + 1
		switch p, ok := q.period(old); {
		case ok && p > idx&idxMask:
			return 0, true
		case !ok || p < idx&idxMask:
			next = q.pack(idx, 1)
		}
		n := int64(next & usedMask)
		if capN >= 0 && n > capN {
			return n - 1, false
		}
		if c.CompareAndSwap(old, next) {
			return n, true
		}
	}
}

// lease sets the quota counter of period idx to what signal-based
// allocation leaves this enforcer: with share its part of the fleet's
// remaining quota and counted what the aggregator has counted of its
// admissions, the allowance is share minus its admissions not counted
// yet, and the counter becomes lim - allowance, lower or higher than it
// was (see ApplySignal). If a request is taken between reading the
// counter and setting it, the compare-and-swap fails and both words are
// read again, so the request is in the local count that sized the lease
// rather than taken from an older one.
func (q *quota) lease(c, local *atomic.Uint64, idx, lim, share, counted int64) {
	for {
		old := c.Load()
		if q.later(old, idx) {
			return // the counter is in a later period already
		}
		inFlight := max(q.unpack(local.Load(), idx)-counted, 0)
		allowance := min(max(share-inFlight, 0), lim)
		if c.CompareAndSwap(old, q.pack(idx, lim-allowance)) {
			return
		}
	}
}

// used returns the requests counted in the period containing now.
func (q *quota) used(c *atomic.Uint64, now int64) int64 {
	return q.unpack(c.Load(), q.span(now).idx)
}

// raise sets the period's count to at least n (restoring after a restart
// never lowers what was counted since).
func (q *quota) raise(c *atomic.Uint64, now, n int64) {
	idx := q.span(now).idx
	for {
		old := c.Load()
		if q.later(old, idx) || q.unpack(old, idx) >= n || c.CompareAndSwap(old, q.pack(idx, n)) {
			return
		}
	}
}

// set makes the current period's count used and returns how much it
// changed.
func (q *quota) set(c *atomic.Uint64, now, used int64) (delta int64) {
	idx := q.span(now).idx
	for {
		old := c.Load()
		prev := q.unpack(old, idx)
		if c.CompareAndSwap(old, q.pack(idx, used)) {
			return used - prev
		}
	}
}
