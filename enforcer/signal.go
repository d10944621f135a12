package enforcer

import "github.com/tollgate/tollgate/schemas"

// ApplySignal combines the aggregator's quota state of a key under a plan
// with what this enforcer admitted locally since, and reports whether it
// applied: the key is bound to the plan, the plan has a quota, the signal
// is of the plan's current period (its PeriodEnd is the end of the period
// that contains g's clock; a signal of a past period, or of a period that
// has not begun here yet, as clocks differ, is ignored), and it is not
// older than the last signal applied to the key (an AsOf before that
// one's: a late delivery, or a replay after a restart, is ignored).
//
// # The lease
//
// A signal divides what the key has left among the enforcers that share
// it, and each one sets its quota counter to admit exactly its part until
// the next signal. With Limit this gateway's limit of the key's plan for
// the period, and Config.Node this enforcer's name:
//
//	R         = Limit - min(max(s.Used, 0), Limit)   what the fleet has left
//	N         = len(s.Nodes), + 1 if Node is not in s.Nodes
//	rank      = Node's index in s.Nodes, or len(s.Nodes) if absent
//	share     = R/N, + 1 if rank < R%N               (floor; the R%N left
//	                                                   over go to the first
//	                                                   nodes, so Σ share = R)
//	counted   = s.Nodes[rank].Counted, or 0 if absent
//	inFlight  = max(local - counted, 0)  admitted here, not yet counted
//	allowance = max(share - inFlight, 0)
//	counter  := Limit - allowance        exactly allowance more requests
//
// where local is the count of requests this enforcer admitted in the
// period (never changed by signals). The counter is set, not raised: the
// lease may give back more than this enforcer had left, or take back
// part of it. It is set with a compare-and-swap that reads local again if
// a request was admitted in between. Applying a signal again leaves the
// lease as it is (what was admitted since moved from allowance to
// inFlight), so replays, as after a catalog update, are harmless.
//
// Every enforcer applying the same signal, the fleet admits, until the
// next one, at most
//
//	s.Used + Σ_i (inFlight_i + allowance_i) = s.Used + Σ_i max(share_i, inFlight_i)
//
// which is ≤ s.Used + R = Limit as long as each enforcer's requests still
// on their way fit in its new share (inFlight_i ≤ share_i). Overshoot
// therefore comes only from:
//
//   - an enforcer whose uncounted admissions exceed its new share (a node
//     whose events reach the aggregator much later than the others',
//     near the end of the quota): by inFlight_i - share_i, at most its
//     admitted rate × its event delay;
//   - an enforcer the aggregator has not counted from yet: it takes a
//     share of R/(N+1) that the others, counting N nodes, hand out too;
//   - requests racing the compare-and-swap (taken from the counter, not
//     yet in local): at most one per request in flight in the gateway;
//   - the start of a period, before its first signal: each enforcer
//     enforces the limit alone, so the fleet admits up to its rate × the
//     time to the first signal (the aggregator publishes at least every
//     second, and at once when a key crosses 80%);
//   - Node names that are not unique across the fleet: two enforcers
//     named alike each take the one share, and each takes the other's
//     counted requests for its own.
//
// An enforcer whose events are lost on their way keeps them in inFlight
// for the rest of the period: it under-admits, never over-admits.
//
// Compared with raising the counter to s.Used (the previous rule), which
// let each enforcer admit R on top of its own count, the fleet's
// overshoot no longer grows with the signal interval × rate × enforcers.
// The price: near the end of a quota an enforcer answers 429 Limit
// Exceeded once its share is used up although others have not used
// theirs (R > 0 fleet-wide), until the next signal re-divides R (within a
// second: the aggregator publishes at least every second for keys that
// changed, and at once at 80% and 100%); and when R < N, the nodes at
// rank ≥ R%N get nothing, so up to N-1 requests of a period may go
// unused if traffic stays on those nodes. The quota and RateLimit headers
// this enforcer sends count its own lease, not the fleet's remainder.
//
// The plan's limit here decides, not s.Limit: when the two differ, one
// side has not yet read a change of the plan, and the gateway enforces
// the plan it has.
//
// SetRemaining (AWS UpdateUsage) sets the counter of this enforcer
// directly; in a fleet, the aggregator records the adjustment in s.Used,
// and the next signal gives every enforcer its lease of what is left.
//
// ApplySignal does not allocate (except once per period, when it is the
// first to see the period begin) and is safe to call concurrently with
// requests and catalog changes. Signals of one key are expected one at a
// time (one reader per partition of the signals topic): two applied
// concurrently may leave the older one's lease.
func (g *Gateway) ApplySignal(s *schemas.QuotaSignal) bool {
	now := g.cfg.Now()
	// The counters exist for every key in a plan, and only while it is
	// in the plan: a signal for a key that left the plan has nothing to
	// lease.
	st, p := g.table.Load().keyPlan(s.KeyID, s.PlanID)
	if st == nil || p.quota == nil {
		return false
	}
	q := p.quota
	sp := q.span(now)
	if sp.end != s.PeriodEnd || !st.newer(s.AsOf, sp.start) {
		return false
	}
	lim := q.limit(sp.idx)
	r := lim - min(max(s.Used, 0), lim)
	n, rank := int64(len(s.Nodes)), int64(len(s.Nodes))
	var counted int64
	for i := range s.Nodes {
		if s.Nodes[i].Node == g.cfg.Node {
			rank, counted = int64(i), s.Nodes[i].Counted
			break
		}
	}
	if rank == n {
		n++ // this enforcer, not counted from yet
	}
	share := r / n
	if rank < r%n {
		share++
	}
	q.lease(&st.quota, &st.local, sp.idx, lim, share, counted)
	return true
}

// newer records asOf as the last signal's, unless the last one applied
// in the period that starts at start is newer. An AsOf from before start
// is of an earlier period (or of a signal without events, AsOf 0) and
// does not hold back this period's signals.
func (st *keyPlanState) newer(asOf, start int64) bool {
	for {
		last := st.asOf.Load()
		if last >= start && asOf < last {
			return false
		}
		if last == asOf || st.asOf.CompareAndSwap(last, asOf) {
			return true
		}
	}
}
