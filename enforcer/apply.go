package enforcer

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/catalog"
)

// Load makes s, a valid catalog, the one in force: a full load, which
// compiles every API, plan and key (O(catalog)) into a new table and
// swaps it in. Counters of keys under plans they remain in, and of the
// gateway's and stages' buckets, carry over; requests in flight finish on
// the table they started with.
func (g *Gateway) Load(s *catalog.State) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.load(s)
}

// Apply makes ch.New the catalog in force, updating only what ch names
// (ch must be a validated change whose Old is the catalog in force, as
// a catalog.Manager publishes them, applied in order):
//
//   - ch.Full: a full load of ch.New (see Load);
//   - ch.Gateway or ch.APIs: the routes and every plan's runtime are
//     compiled again into a new table (O(APIs + plans)); keys are not
//     touched;
//   - each plan in ch.Plans: its runtime is compiled again (O(its API
//     stages)) into a new table that shares everything else; its keys
//     refer to it by index and see the new one at once, whatever
//     changed (limits, stages, per-method throttles);
//   - each key in ch.Keys: its entry is replaced, added or removed in
//     place (O(1)), keeping its counters under the plans it stays in.
//     A key whose value changed moves to its new hash.
//
// Plans are published before keys: a request decided while Apply runs
// may see the change's plans and not yet its keys, never a key bound to
// a plan the table lacks. A deleted plan stays in the table until its
// keys have left it.
//
// On error (a stage's upstream that cannot be proxied to) nothing
// changed.
func (g *Gateway) Apply(ch *catalog.Change) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	prev := g.table.Load()
	if ch.Full || prev == nil {
		return g.load(ch.New)
	}
	s := ch.New
	t := prev
	var freed []int32
	if ch.Gateway || ch.APIs || len(ch.Plans) > 0 {
		if ch.Gateway || ch.APIs {
			var closeOld func()
			if ch.Gateway {
				closeOld = g.configureTransport(s.Gateway())
			}
			var err error
			if t, err = g.compileRoutes(s); err != nil {
				return fmt.Errorf("apply catalog change: %w", err)
			}
			if closeOld != nil {
				defer closeOld()
			}
			t.keys = prev.keys
			t.plans = slices.Clone(prev.plans)
			// Every plan is compiled against the new routes.
			s.Plans("", func(p *catalog.UsagePlan) bool {
				i := g.indexFor(p.ID)
				t.setPlan(i, compilePlan(p, t, prev.planAt(i)))
				return true
			})
		} else {
			c := *prev
			t = &c
			t.plans = slices.Clone(prev.plans)
		}
		for _, id := range ch.Plans {
			p := s.Plan(id)
			if p == nil {
				// Deleted: its keys leave it below; its runtime stays
				// until then.
				if i, ok := g.planIdx[id]; ok {
					delete(g.planIdx, id)
					freed = append(freed, i)
				}
				continue
			}
			i := g.indexFor(id)
			t.setPlan(i, compilePlan(p, t, prev.planAt(i)))
		}
		g.table.Store(t)
	}
	if len(ch.Keys) > 0 {
		ks := t.keys
		ks.mu.Lock()
		for _, id := range ch.Keys {
			old := ks.entry(id)
			var e, pe *keyEntry
			k := s.Key(id)
			if k != nil {
				e = newEntry(k, old, g.planIndex)
			}
			switch {
			case e != nil:
				pe = newPreviousEntry(k, e)
				ks.put(e, pe, old, ks.previousOf(id))
			case old != nil:
				ks.remove(old)
			}
		}
		ks.mu.Unlock()
	}
	if len(freed) > 0 {
		// No key is in the deleted plans any more.
		c := *t
		c.plans = slices.Clone(t.plans)
		for _, i := range freed {
			c.plans[i] = nil
		}
		g.table.Store(&c)
		g.freeIdx = append(g.freeIdx, freed...)
	}
	// Changes of keys alone come by the thousand when keys are created
	// in bulk: Debug, and not even the arguments unless it is on.
	level := slog.LevelDebug
	if ch.Gateway || ch.APIs || len(ch.Plans) > 0 {
		level = slog.LevelInfo
	}
	if ctx := context.Background(); g.cfg.Logger.Enabled(ctx, level) {
		g.cfg.Logger.Log(ctx, level, "catalog changed", "gateway", ch.Gateway, "apis", ch.APIs, "usagePlans", len(ch.Plans), "apiKeys", len(ch.Keys))
	}
	return nil
}

// load compiles s whole into a new table. The caller holds mu.
func (g *Gateway) load(s *catalog.State) error {
	closeOld := g.configureTransport(s.Gateway())
	t, err := g.compileRoutes(s)
	if err != nil {
		return fmt.Errorf("load catalog: %w", err)
	}
	prev := g.table.Load()
	live := map[string]bool{}
	s.Plans("", func(p *catalog.UsagePlan) bool {
		live[p.ID] = true
		i := g.indexFor(p.ID)
		var before *planRT
		if prev != nil {
			before = prev.planAt(i)
		}
		t.setPlan(i, compilePlan(p, t, before))
		return true
	})
	var freed []int32
	for id, i := range g.planIdx {
		if !live[id] {
			delete(g.planIdx, id)
			freed = append(freed, i)
		}
	}
	ks := newKeySet(s.NumKeys())
	ks.mu.Lock()
	s.Keys("", func(k *catalog.APIKey) bool {
		var old, oldPrev *keyEntry
		if prev != nil {
			old, oldPrev = prev.keys.entry(k.ID), prev.keys.previousOf(k.ID)
		}
		if e := newEntry(k, old, g.planIndex); e != nil {
			ks.put(e, newPreviousEntry(k, e), old, oldPrev)
		}
		return true
	})
	ks.mu.Unlock()
	t.keys = ks
	g.table.Store(t)
	g.freeIdx = append(g.freeIdx, freed...)
	if closeOld != nil {
		closeOld()
	}
	g.cfg.Logger.Info("catalog loaded", "apis", len(s.APIs()), "usagePlans", s.NumPlans(), "apiKeys", s.NumKeys())
	return nil
}

// configureTransport rebuilds the gateway's own transport when the
// upstream timeout changes. It returns a function that closes the old
// transport's idle connections, to call once the new table is in (requests
// in flight finish on the old one), or nil.
func (g *Gateway) configureTransport(gw catalog.Gateway) func() {
	if !g.ownTransport {
		return nil
	}
	timeout := time.Duration(gw.UpstreamTimeout)
	if timeout == 0 {
		timeout = catalog.DefaultUpstreamTimeout
	}
	if g.cfg.Transport != nil && timeout == g.timeout {
		return nil
	}
	old, _ := g.cfg.Transport.(*http.Transport)
	g.cfg.Transport, g.timeout = NewTransport(timeout), timeout
	if old == nil {
		return nil
	}
	return old.CloseIdleConnections
}

func (g *Gateway) compileRoutes(s *catalog.State) (*table, error) {
	upTimeout := time.Duration(s.Gateway().UpstreamTimeout)
	if upTimeout == 0 {
		upTimeout = catalog.DefaultUpstreamTimeout
	}
	t, err := compileRoutes(s.Gateway(), s.APIs(), g.globalFor, func(apiID string, st catalog.Stage, sr *stageRoute) error {
		p, err := newStageProxy(st, g.cfg.Transport, proxyError)
		if err != nil {
			return err
		}
		if sr.lean, err = g.upstreamFor(st.Upstream, st.Prefix(), upTimeout); err != nil {
			return err
		}
		sr.proxy = p
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, sr := range t.stages {
		sr.slot = g.metrics.stageSlot(sr.apiID, sr.stage)
	}
	t.share, t.failSafe = &g.fleetShare, &g.failSafe
	return t, nil
}

// globalFor returns the counter of a shared bucket by name.
func (g *Gateway) globalFor(name string) *atomic.Int64 {
	st := g.global[name]
	if st == nil {
		st = new(atomic.Int64)
		g.global[name] = st
	}
	return st
}

// planIndex returns the index of a plan, if it exists.
func (g *Gateway) planIndex(id string) (int32, bool) {
	i, ok := g.planIdx[id]
	return i, ok
}

// indexFor returns the index of a plan, giving it one if it has none:
// one freed by an earlier change, or a new one.
func (g *Gateway) indexFor(id string) int32 {
	if i, ok := g.planIdx[id]; ok {
		return i
	}
	var i int32
	if n := len(g.freeIdx); n > 0 {
		i, g.freeIdx = g.freeIdx[n-1], g.freeIdx[:n-1]
	} else {
		i = g.nextIdx
		g.nextIdx++
	}
	g.planIdx[id] = i
	return i
}

// setPlan puts p at index i of a table's plans, which the caller owns.
func (t *table) setPlan(i int32, p *planRT) {
	for int(i) >= len(t.plans) {
		t.plans = append(t.plans, nil)
	}
	t.plans[i] = p
}
