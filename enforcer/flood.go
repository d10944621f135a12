package enforcer

import (
	"context"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/internal/utc"
	"github.com/tollgate/tollgate/schemas"
)

// Requests rejected before a key was identified cost an attacker nothing:
// no key, an unknown one, an undeclared route, a malformed request, or a
// throttle on a route that needs no key. One usage event each would let a
// flood of them fill the queue, the events topic and the stores, a row per
// request. So they are not emitted one by one: the gateway counts them in
// a rejections table, per (API, stage, resource, method, decision,
// status) and minute, and emits one event per group and minute, with
// UsageEvent.Count requests and their summed latency and sizes. A flood
// then costs a row per group and minute, however many requests it sends.
// Every request whose key is known (admitted, throttled, over quota, or
// refused with its key: disabled, no plan for the stage) still has an
// event of its own, and only those count against quotas.
//
// The table is bounded by construction. The dimensions come from the
// catalog, not from the request: the API, stage and resource are the
// matched stage and resource template (or ""), and the method is one of
// the seven the catalog can declare or "OTHER". So a flood can reach at
// most (stages + 1) x (resources + 1) x 8 methods x 4 decisions groups,
// whatever paths and methods it sends. The table holds rejectionCells
// groups; a group that finds no cell within rejectionProbe of its hash
// (a catalog so large, or so often changed, that it filled the table) is
// counted in a spare cell that keeps only its decision and status, so a
// count is never lost and the table never grows.
//
// The request path is lock-free and allocation-free: it hashes the group
// (maphash over three catalog strings), finds its cell by linear probing
// and adds to four atomic counters. A new group allocates its key once,
// the first time it is seen. Each cell has two sets of counters, for
// even and odd minutes, so that a minute is emitted while the next one
// is being counted; each set carries the minute it counts. A request is
// counted in the minute in which its response was complete (the event's
// Time is the start of that minute).
//
// Run emits each minute once it has ended (within a second), and
// FlushRejections, on shutdown after the servers have stopped, emits the
// minute under way. A request that took its clock reading just before a
// minute was emitted and adds to its counters just after is counted in a
// later minute's event: totals are exact, a minute may gain a request
// from the one before it.
const (
	rejectionCells = 4096 // a power of two
	rejectionProbe = 16
	rejectionSpare = 32 // cells keyed by decision and status only
)

// rejectionMethods are the methods the rejections table keeps apart; any
// other method a client sends is counted as "OTHER".
var rejectionMethods = [...]string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "OTHER"}

const methodOther = uint8(len(rejectionMethods) - 1)

// rejectionMethod maps a client's method to its index in rejectionMethods.
func rejectionMethod(m string) uint8 {
	if i := methodIndex(m); i >= 0 && i < mANY {
		return uint8(i)
	}
	return methodOther
}

// aggregated reports whether a request's event goes to the rejections
// table rather than out on its own: it was rejected before a key was
// identified.
func aggregated(d *decision) bool {
	if d.key != nil {
		return false
	}
	switch d.outcome {
	case schemas.DecisionForbidden, schemas.DecisionMissingToken, schemas.DecisionBadRequest, schemas.DecisionThrottled:
		return true
	}
	return false
}

// rejectionKey is one group of the rejections table. Its strings are the
// catalog's (never built per request).
type rejectionKey struct {
	api, stage, resource string
	method               uint8
	decision             schemas.Decision
	status               int32
}

// rejectionSums are a group's counts in one minute.
type rejectionSums struct {
	requests, latency, bytesIn, bytesOut atomic.Int64
}

type rejectionCell struct {
	key  atomic.Pointer[rejectionKey] // nil: free
	sums [2]rejectionSums             // by minute & 1
}

// rejections is the table. The request path only adds to it; flushes are
// serialised by mu.
type rejections struct {
	seed  maphash.Seed
	cells [rejectionCells]rejectionCell
	spare [rejectionSpare]rejectionCell
	// minute[s] is the minute the counters of slot s count (math.MinInt64:
	// none yet). It only moves forward.
	minute [2]atomic.Int64
	mu     sync.Mutex
}

func newRejections() *rejections {
	r := &rejections{seed: maphash.MakeSeed()}
	r.minute[0].Store(math.MinInt64)
	r.minute[1].Store(math.MinInt64)
	return r
}

// add counts one rejected request whose response was complete at end
// (Unix nanoseconds).
func (r *rejections) add(d *decision, method string, end int64, status int32, latencyMicros, in, out int64) {
	k := rejectionKey{method: rejectionMethod(method), decision: d.outcome, status: status}
	if d.stage != nil {
		k.api, k.stage = d.stage.apiID, d.stage.stage
	}
	if d.route != nil {
		k.resource = d.route.resource
	}
	m := utc.FloorDiv(end, 60e9)
	slot := m & 1
	for {
		cur := r.minute[slot].Load()
		if cur >= m || r.minute[slot].CompareAndSwap(cur, m) {
			break
		}
	}
	s := &r.cell(&k).sums[slot]
	// Rejections read no body and answer in microseconds: most of these
	// are zero, and skipping them saves locked instructions. The sums go
	// first and the count last, while emit takes the count first: sums a
	// flush takes without their count go out with other requests, and a
	// count it misses stays for the next flush with whatever sums are
	// left. No sum is left behind with no count to carry it.
	if latencyMicros != 0 {
		s.latency.Add(latencyMicros)
	}
	if in != 0 {
		s.bytesIn.Add(in)
	}
	if out != 0 {
		s.bytesOut.Add(out)
	}
	s.requests.Add(1)
}

// cell returns k's cell, claiming a free one for a new group, or the
// spare cell of k's decision and status when the table has no room for
// k near its hash.
func (r *rejections) cell(k *rejectionKey) *rejectionCell {
	h := maphash.String(r.seed, k.api)
	h = h*0x9e3779b97f4a7c15 ^ maphash.String(r.seed, k.stage)
	h = h*0x9e3779b97f4a7c15 ^ maphash.String(r.seed, k.resource)
	h = h*0x9e3779b97f4a7c15 ^ uint64(k.method)<<40 ^ uint64(k.decision)<<32 ^ uint64(uint32(k.status))
	h ^= h >> 29
	if c := probe(r.cells[:], h, rejectionProbe, k); c != nil {
		return c
	}
	spare := rejectionKey{method: methodOther, decision: k.decision, status: k.status}
	if c := probe(r.spare[:], uint64(k.decision)*31+uint64(uint32(k.status)), rejectionSpare, &spare); c != nil {
		return c
	}
	// More (decision, status) pairs than spare cells: unreachable with
	// the four decisions and their statuses; counted, mislabelled.
	return &r.spare[rejectionSpare-1]
}

// probe looks for k in up to n cells of cells from h on (len(cells) a
// power of two), claiming the first free one if k is not there.
func probe(cells []rejectionCell, h uint64, n int, k *rejectionKey) *rejectionCell {
	mask := uint64(len(cells) - 1)
	for i := range uint64(n) {
		c := &cells[(h+i)&mask]
		got := c.key.Load()
		if got == nil {
			nk := new(rejectionKey) // once per group
			*nk = *k
			if c.key.CompareAndSwap(nil, nk) {
				return c
			}
			got = c.key.Load() // another request claimed it first
		}
		if *got == *k {
			return c
		}
	}
	return nil
}

// flush emits the counts of every minute before now's, or, with all, of
// every minute, the one under way included. It returns the requests
// emitted.
func (r *rejections) flush(now int64, all bool, sink EventSink, node string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := utc.FloorDiv(now, 60e9)
	var n int64
	for slot := range 2 {
		m := r.minute[slot].Load()
		if m == math.MinInt64 || (!all && m >= cur) {
			continue
		}
		for i := range r.cells {
			n += r.cells[i].emit(slot, m, sink, node)
		}
		for i := range r.spare {
			n += r.spare[i].emit(slot, m, sink, node)
		}
	}
	return n
}

// emit takes the counts of one slot of the cell and offers them as
// events of minute m: one event, or more if the count exceeds
// UsageEvent.Count's 32 bits (the sums then go with the first).
func (c *rejectionCell) emit(slot int, m int64, sink EventSink, node string) int64 {
	k := c.key.Load()
	if k == nil {
		return 0
	}
	s := &c.sums[slot]
	if s.requests.Load() == 0 {
		return 0
	}
	n := s.requests.Swap(0)
	t := m * 60e9
	ev := schemas.UsageEvent{
		Time: t, APIID: k.api, Stage: k.stage, Method: rejectionMethods[k.method], Resource: k.resource,
		Status: k.status, Decision: k.decision, Node: node,
		LatencyMicros: s.latency.Swap(0), BytesIn: s.bytesIn.Swap(0), BytesOut: s.bytesOut.Swap(0),
	}
	for left := n; left > 0; {
		ev.ID = schemas.NewEventID(t)
		ev.Count = uint32(min(left, math.MaxUint32))
		left -= int64(ev.Count)
		if !sink.Offer(ev) {
			// The queue is full: the counts go back into the cell and
			// out with its next flush (under that flush's minute if the
			// slot has moved on), never dropped for a single event's
			// worth of loss accounting while they stand for many.
			s.requests.Add(int64(ev.Count) + left)
			s.latency.Add(ev.LatencyMicros)
			s.bytesIn.Add(ev.BytesIn)
			s.bytesOut.Add(ev.BytesOut)
			return n - int64(ev.Count) - left
		}
		ev.LatencyMicros, ev.BytesIn, ev.BytesOut = 0, 0, 0
	}
	return n
}

// Run emits the counts of requests rejected before a key was identified
// (see the rejections table above) once their minute has ended, checking
// every second, until ctx ends. Minutes are told by Config.Now. Without
// Run, the counts wait for FlushRejections.
func (g *Gateway) Run(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			g.rejections.flush(g.cfg.Now(), false, g.cfg.Events, g.cfg.Node)
		}
	}
}

// FlushRejections emits every count of requests rejected before a key was
// identified, the minute under way included, and returns how many
// requests they stand for. Call it once the servers have stopped and
// before the event queue is drained for the last time, so that the
// partial minute is stored; counts of requests still arriving afterwards
// wait for the next flush.
func (g *Gateway) FlushRejections() int64 {
	return g.rejections.flush(g.cfg.Now(), true, g.cfg.Events, g.cfg.Node)
}
