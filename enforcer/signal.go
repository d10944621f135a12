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
// It sets the key's quota counter to this enforcer's lease: its share of
// what the fleet has left, less what it admitted that the signal has not
// counted yet. How the share is derived, what bounds the fleet's
// overshoot and what the lease costs are in the package doc, "Quota
// leases".
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
