package enforcer

// LocalCount is what an enforcer admitted of a key under a plan in the
// plan's current period: the local counter ApplySignal sizes leases by.
// A fleet's enforcer keeps them across a restart (SaveLocal at shutdown,
// RestoreLocal at the next start, before the signals snapshot is
// applied), so that a restart does not grant its lease again: without
// them the local count starts at 0, and the same signal's lease allows
// the whole share once more.
type LocalCount struct {
	KeyID  string `json:"keyId"`
	PlanID string `json:"planId"`
	// PeriodEnd is the end of the period counted (Unix ns): a count of
	// another period than the one in force at restore is not restored.
	PeriodEnd int64 `json:"periodEnd"`
	Local     int64 `json:"local"`
}

// LocalCounts returns the local counts of the current periods that are
// not 0. It reads every key's counters: O(keys), for a shutdown.
func (g *Gateway) LocalCounts() []LocalCount {
	now := g.cfg.Now()
	t := g.table.Load()
	var out []LocalCount
	t.keys.byID.each(func(e *keyEntry) bool {
		for _, b := range e.plans {
			p := t.planAt(b.plan)
			if p == nil || p.quota == nil {
				continue
			}
			sp := p.quota.span(now)
			if n := p.quota.unpack(b.state.local.Load(), sp.idx); n > 0 {
				out = append(out, LocalCount{KeyID: e.keyID(), PlanID: p.id, PeriodEnd: sp.end, Local: n})
			}
		}
		return true
	})
	return out
}

// RestoreLocal raises the local counters to what counts holds for the
// current periods, and returns how many it restored: the fail-safe lease
// caps them, and a signal's lease is sized by them. Call it before
// signals are applied: a lease is sized by the local count when it is
// set.
func (g *Gateway) RestoreLocal(counts []LocalCount) int {
	now := g.cfg.Now()
	t := g.table.Load()
	n := 0
	for _, c := range counts {
		st, p := t.keyPlan(c.KeyID, c.PlanID)
		if st == nil || p.quota == nil || c.Local <= 0 {
			continue
		}
		sp := p.quota.span(now)
		if sp.end != c.PeriodEnd {
			continue
		}
		p.quota.raise(&st.local, now, min(c.Local, usedMask))
		n++
	}
	return n
}
