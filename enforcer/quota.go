package enforcer

import (
	"sync/atomic"

	"github.com/tollgate/tollgate/catalog"
)

// A quota counter is one uint64: the period index in the top 24 bits, the
// requests used in that period in the low 40. Checking, rolling over to a
// new period and counting are one compare-and-swap, so concurrent requests
// never lose a count and never admit past the limit.
const (
	usedBits = 40
	usedMask = 1<<usedBits - 1
	idxMask  = 1<<(64-usedBits) - 1
)

func pack(idx, used int64) uint64 { return uint64(idx&idxMask)<<usedBits | uint64(used)&usedMask }

func unpack(v uint64, idx int64) (used int64) {
	if int64(v>>usedBits) != idx&idxMask {
		return 0 // another period: nothing used yet in this one
	}
	return int64(v & usedMask)
}

// quota is a plan's compiled quota.
type quota struct {
	q catalog.Quota
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
	return &quota{q: *q, firstIdx: q.Period.Index(created * 1e9)}
}

func (q *quota) limit(idx int64) int64 {
	if idx == q.firstIdx {
		return max(q.q.Limit-q.q.Offset, 0)
	}
	return q.q.Limit
}

// take counts one request at now. It returns whether it was admitted, the
// requests remaining in the period after it, and the period's end.
func (q *quota) take(c *atomic.Uint64, now int64) (ok bool, remaining, end int64) {
	p := q.span(now)
	for {
		old := c.Load()
		idx, end := p.idx, p.end
		if s := int64(old >> usedBits); s > idx&idxMask {
			// A request that read the clock before a period ended
			// reached the counter after one from the next period: count
			// it there, never move the counter back (that would wipe
			// the new period's count and reopen an exhausted one).
			idx, end = s, q.q.Period.Start(s+1)
		}
		lim := q.limit(idx)
		used := unpack(old, idx)
		if used >= lim {
			return false, 0, end
		}
		if c.CompareAndSwap(old, pack(idx, used+1)) {
			return true, lim - used - 1, end
		}
	}
}

// used returns the requests counted in the period containing now.
func (q *quota) used(c *atomic.Uint64, now int64) int64 {
	return unpack(c.Load(), q.span(now).idx)
}

// raise sets the period's count to at least n (restoring after a restart
// never lowers what was counted since).
func (q *quota) raise(c *atomic.Uint64, now, n int64) {
	idx := q.span(now).idx
	for {
		old := c.Load()
		if int64(old>>usedBits) > idx&idxMask || unpack(old, idx) >= n || c.CompareAndSwap(old, pack(idx, n)) {
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
		prev := unpack(old, idx)
		if c.CompareAndSwap(old, pack(idx, used)) {
			return used - prev
		}
	}
}
