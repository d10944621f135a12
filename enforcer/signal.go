package enforcer

import "github.com/tollgate/tollgate/schemas"

// ApplySignal combines the aggregator's quota state of a key under a plan
// with the key's local counter, and reports whether it applied: the key
// is bound to the plan, the plan has a quota, and the signal is of the
// plan's current period (its PeriodEnd is the end of the period that
// contains g's clock). A signal of a past period, or of a period that has
// not begun here yet (clocks differ), is ignored.
//
// s.Used is the fleet's total as of s.AsOf. The counter is raised to it,
// never lowered, and what this enforcer admits from then on is counted on
// top of it by later local takes. What the other enforcers admit between
// two signals (and what this one admitted between AsOf and the signal's
// arrival: the counter cannot tell those counts apart) reaches it only
// with the next signal, so the fleet can overshoot a quota by at most the
// signal interval × the key's admitted rate × the number of enforcers
// (the aggregator issue refines this bound).
//
// A signal with Used >= Limit (Exhausted) therefore blocks the key like
// local exhaustion: requests get 429 Limit Exceeded until the period
// ends. The plan's limit here decides, not s.Limit: when the two differ,
// one side has not yet read a change of the plan, and as the counter
// cannot be lowered, a stale signal must not block a raised limit for the
// rest of the period.
//
// ApplySignal does not allocate (except once per period, when it is the
// first to see the period begin) and is safe to call concurrently with
// requests and Update.
func (g *Gateway) ApplySignal(s *schemas.QuotaSignal) bool {
	now := g.cfg.Now()
	// The counters exist for every key in a plan; compile made them. A
	// key removed from the plan may keep its counters (states outlive
	// recompiles), and the plan check below cannot tell: raising them is
	// harmless, as no binding uses them until the key joins the plan
	// again, in the same period, where they are right.
	st := g.states.lookup(s.KeyID, s.PlanID, &g.mu)
	if st == nil {
		return false
	}
	p := g.table.Load().plans[s.PlanID]
	if p == nil || p.quota == nil {
		return false
	}
	q := p.quota
	if q.span(now).end != s.PeriodEnd {
		return false
	}
	q.raise(&st.quota, now, min(s.Used, usedMask))
	return true
}
