package enforcer

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/schemas"
)

// widgetSignal is a signal for the widget key under its plan in gwYAML,
// whose quota is 5 a DAY; testEpoch's day ends at midnight. nodes are
// the aggregator's counts per enforcer; newEnv's gateway is the unnamed
// one ("").
func (e *env) widgetSignal(used int64, nodes ...schemas.NodeCount) *schemas.QuotaSignal {
	k := e.gw.table.Load().firstPlan(widget)
	return &schemas.QuotaSignal{PlanID: k.plan.id, KeyID: k.id, Used: used, Limit: 5,
		PeriodEnd: ts("2026-11-28T00:00:00Z"), AsOf: e.clock.Load(), Exhausted: used >= 5, Nodes: nodes}
}

func TestApplySignal(t *testing.T) {
	e := newEnv(t, gwYAML)
	if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
		t.Fatalf("first request: %d", r.status)
	}
	// The fleet counted 3, this enforcer's one among them: of the 2
	// left, this enforcer's share (of 2 enforcers) is 1.
	if !e.gw.ApplySignal(e.widgetSignal(3, schemas.NodeCount{Node: "", Counted: 1}, schemas.NodeCount{Node: "other", Counted: 2})) {
		t.Fatal("signal of the current period not applied")
	}
	e.advance(10 * time.Second)
	if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
		t.Fatalf("4th of 5: %d", r.status)
	}
	wantAWS(t, e.do("GET", "/prod/items", "x-api-key", widget), 429, "Limit Exceeded", "LimitExceededException")
	// The other enforcer did not use its share: the next signal gives
	// it to whoever has traffic.
	if !e.gw.ApplySignal(e.widgetSignal(4, schemas.NodeCount{Node: "", Counted: 2}, schemas.NodeCount{Node: "other", Counted: 2})) {
		t.Fatal("signal not applied")
	}
	e.advance(10 * time.Second)
	if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
		t.Fatalf("5th of 5: %d", r.status)
	}
	// Other enforcers used the rest.
	if !e.gw.ApplySignal(e.widgetSignal(5)) {
		t.Fatal("exhausted signal not applied")
	}
	r := e.do("GET", "/prod/items", "x-api-key", widget)
	wantAWS(t, r, 429, "Limit Exceeded", "LimitExceededException")
	if got, want := r.h.Get("Retry-After"), fmt.Sprint(14*3600-20); got != want {
		t.Errorf("Retry-After = %q, want %s (until midnight)", got, want)
	}
	if ev := e.lastEvent(); ev.Decision != schemas.DecisionQuotaExceeded || ev.Status != 429 {
		t.Errorf("event decision %v status %d, want quota exceeded 429", ev.Decision, ev.Status)
	}
	// A new period starts from zero.
	e.advance(14*time.Hour - 20*time.Second)
	if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
		t.Fatalf("next day: %d", r.status)
	}
}

// A signal that has counted only some of this enforcer's requests
// charges the others, still on their way, to its share.
func TestApplySignalCountsInFlight(t *testing.T) {
	e := newEnv(t, gwYAML)
	for i := range 3 {
		if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
			t.Fatalf("request %d: %d", i, r.status)
		}
	}
	// 1 of the 3 counted: 3 of 5 are used (not 1), 2 are left.
	if !e.gw.ApplySignal(e.widgetSignal(1, schemas.NodeCount{Counted: 1})) {
		t.Fatal("signal of the current period not applied")
	}
	e.advance(10 * time.Second)
	for i := range 2 {
		if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
			t.Fatalf("request %d: %d", 4+i, r.status)
		}
	}
	wantAWS(t, e.do("GET", "/prod/items", "x-api-key", widget), 429, "Limit Exceeded", "LimitExceededException")
}

// A count beyond what the counter holds saturates instead of wrapping.
func TestApplySignalHugeCount(t *testing.T) {
	e := newEnv(t, gwYAML)
	if !e.gw.ApplySignal(e.widgetSignal(1 << usedBits)) {
		t.Fatal("not applied")
	}
	wantAWS(t, e.do("GET", "/prod/items", "x-api-key", widget), 429, "Limit Exceeded", "LimitExceededException")
}

func TestApplySignalIgnored(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(e *env, s *schemas.QuotaSignal)
	}{
		{"past period", func(_ *env, s *schemas.QuotaSignal) { s.PeriodEnd = ts("2026-11-27T00:00:00Z") }},
		{"next period", func(_ *env, s *schemas.QuotaSignal) { s.PeriodEnd = ts("2026-11-29T00:00:00Z") }},
		{"unknown key", func(_ *env, s *schemas.QuotaSignal) { s.KeyID = "nope" }},
		{"unknown plan", func(_ *env, s *schemas.QuotaSignal) { s.PlanID = "nope" }},
		{"key not in the plan", func(e *env, s *schemas.QuotaSignal) {
			s.KeyID = e.gw.table.Load().firstPlan("planlessplanless000001").id
		}},
		{"plan without quota", func(e *env, s *schemas.QuotaSignal) {
			o := e.gw.table.Load().firstPlan("otherotherotherother01")
			s.KeyID, s.PlanID = o.id, o.plan.id
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, gwYAML)
			s := e.widgetSignal(5)
			tt.change(e, s)
			if e.gw.ApplySignal(s) {
				t.Errorf("ApplySignal(%+v) = true, want false", s)
			}
			if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
				t.Errorf("widget after an ignored exhausted signal: %d, want 200", r.status)
			}
			if r := e.do("GET", "/v1/things", "x-api-key", "otherotherotherother01"); r.status != 200 {
				t.Errorf("other-only after an ignored exhausted signal: %d, want 200", r.status)
			}
		})
	}
}

// Signals arrive while the catalog changes; counters carry over.
func TestApplySignalDuringUpdates(t *testing.T) {
	e := newEnv(t, gwYAML)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 500 {
			e.gw.ApplySignal(e.widgetSignal(int64(i % 4)))
		}
	})
	for range 20 {
		if err := e.gw.Update(e.cat); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if !e.gw.ApplySignal(e.widgetSignal(5)) {
		t.Fatal("not applied")
	}
	if err := e.gw.Update(e.cat); err != nil {
		t.Fatal(err)
	}
	wantAWS(t, e.do("GET", "/prod/items", "x-api-key", widget), 429, "Limit Exceeded", "LimitExceededException")
}

// BenchmarkApplySignal measures one signal applied to a bound key: the
// state lookup, the period check and the compare-and-swap that raises
// the counter.
func BenchmarkApplySignal(b *testing.B) {
	c := testCatalog(b, benchYAML)
	now := testEpoch.UnixNano()
	g, err := New(Config{Now: func() int64 { return now }}, c)
	if err != nil {
		b.Fatal(err)
	}
	k := g.table.Load().firstPlan("bench-key-00000000000000000001")
	s := schemas.QuotaSignal{PlanID: k.plan.id, KeyID: k.id, Limit: 1_000_000_000_000,
		PeriodEnd: ts("2026-12-01T00:00:00Z"), AsOf: now} // benchYAML's quota is MONTHly
	b.ReportAllocs()
	for b.Loop() {
		s.Used++
		if !g.ApplySignal(&s) {
			b.Fatal("not applied")
		}
	}
}

// TestApplySignalLease checks the lease formula of ApplySignal on a
// quota of 100: local requests admitted before the signal, then how many
// the signal leaves this enforcer (named node) before a 429.
func TestApplySignalLease(t *testing.T) {
	nc := func(node string, counted int64) schemas.NodeCount {
		return schemas.NodeCount{Node: node, Counted: counted}
	}
	abc := []schemas.NodeCount{nc("a", 10), nc("b", 10), nc("c", 10)}
	for _, tt := range []struct {
		name      string
		node      string
		local     int // admitted here before the signal
		remaining int // SetUsed(limit - remaining) before the signal; -1: none
		used      int64
		nodes     []schemas.NodeCount
		want      int
	}{
		// R = 70, N = 3: 23 each, the one left over to the first node.
		{"all counted", "b", 10, -1, 30, abc, 23},
		{"left over to the first node", "a", 10, -1, 30, abc, 24},
		{"in flight charged", "b", 15, -1, 30, abc, 23 - 5},
		{"in flight beyond the share", "b", 40, -1, 30, abc, 0},
		// R = 80, N = 3 with this node: 26 each (left over to a and c),
		// its 5 requests all in flight.
		{"node not in Nodes", "b", 5, -1, 20, []schemas.NodeCount{nc("a", 10), nc("c", 10)}, 26 - 5},
		{"adjustments in Used", "b", 10, -1, 60, []schemas.NodeCount{nc("b", 10)}, 40},
		{"lease below what was left here", "b", 10, -1, 70, []schemas.NodeCount{nc("a", 30), nc("b", 10), nc("c", 30)}, 10},
		{"lease above what was left here", "b", 10, 0, 10, []schemas.NodeCount{nc("b", 10)}, 90},
		{"exhausted", "b", 50, -1, 100, []schemas.NodeCount{nc("a", 50), nc("b", 50)}, 0},
		{"used beyond the limit", "b", 0, -1, 250, []schemas.NodeCount{nc("a", 250)}, 0},
		{"negative used", "b", 0, -1, -10, []schemas.NodeCount{nc("b", 0)}, 100},
		// An aggregator that predates Nodes: every local request is
		// taken to be on its way.
		{"signal without nodes", "b", 30, -1, 30, nil, 40},
		{"unnamed enforcer", "", 10, -1, 10, []schemas.NodeCount{nc("", 10)}, 90},
		// R = 2 < N = 3: the first two nodes get one each.
		{"less left than nodes, first", "a", 33, -1, 98, []schemas.NodeCount{nc("a", 33), nc("b", 33), nc("c", 32)}, 1},
		{"less left than nodes, last", "c", 32, -1, 98, []schemas.NodeCount{nc("a", 33), nc("b", 33), nc("c", 32)}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var clock atomic.Int64
			clock.Store(testEpoch.UnixNano())
			n := newFleetNode(t, fleetCatalog(t, 100), tt.node, &clock)
			for i := range tt.local {
				if c := n.get(); c != 200 {
					t.Fatalf("local request %d: %d", i, c)
				}
			}
			s := n.signal(tt.used, clock.Load(), tt.nodes...)
			if tt.remaining >= 0 {
				if _, err := n.gw.SetUsed(s.PlanID, s.KeyID, 100-int64(tt.remaining)); err != nil {
					t.Fatal(err)
				}
			}
			if !n.gw.ApplySignal(s) {
				t.Fatal("not applied")
			}
			if got := n.admitUntilRefused(t, 200); got != tt.want {
				t.Errorf("admitted %d after the signal, want %d", got, tt.want)
			}
		})
	}
}

// A signal older than the last one applied (by AsOf) is ignored; one as
// old is applied (an UpdateUsage adjustment changes Used, not AsOf); the
// next period's signals do not compare with this period's.
func TestApplySignalStaleAsOf(t *testing.T) {
	var clock atomic.Int64
	clock.Store(testEpoch.UnixNano())
	n := newFleetNode(t, fleetCatalog(t, 100), "b", &clock)
	t0 := clock.Load()
	if !n.gw.ApplySignal(n.signal(100, t0, schemas.NodeCount{Node: "a", Counted: 100})) {
		t.Fatal("exhausting signal not applied")
	}
	if c := n.get(); c != 429 {
		t.Fatalf("after an exhausting signal: %d", c)
	}
	if n.gw.ApplySignal(n.signal(0, t0-1, schemas.NodeCount{Node: "a", Counted: 0})) {
		t.Error("an older signal applied")
	}
	if c := n.get(); c != 429 {
		t.Fatalf("after an older signal: %d, want 429 still", c)
	}
	// UpdateUsage gave the key 10 more: same events, same AsOf.
	if !n.gw.ApplySignal(n.signal(90, t0, schemas.NodeCount{Node: "a", Counted: 100})) {
		t.Error("a signal as old as the last not applied")
	}
	if got := n.admitUntilRefused(t, 200); got != 5 {
		t.Errorf("admitted %d after the adjustment, want 5 (half of 10: a and b share the key)", got)
	}
	// Tomorrow, the aggregator has counted nothing yet (AsOf 0).
	clock.Add(int64(24 * time.Hour))
	if !n.gw.ApplySignal(n.signal(95, 0)) {
		t.Error("the first signal of a period held back by the last period's")
	}
	if got := n.admitUntilRefused(t, 200); got != 5 {
		t.Errorf("admitted %d after the next day's signal, want 5", got)
	}
}

// What this enforcer admitted counts in its period only: a signal of the
// next period does not charge yesterday's requests as in flight.
func TestApplySignalPeriodResetsLocal(t *testing.T) {
	var clock atomic.Int64
	clock.Store(testEpoch.UnixNano())
	n := newFleetNode(t, fleetCatalog(t, 100), "b", &clock)
	st := n.gw.table.Load().firstPlan(sharedKey).state
	q := n.gw.table.Load().firstPlan(sharedKey).plan.quota
	for range 60 {
		n.get()
	}
	if got := q.used(&st.local, clock.Load()); got != 60 {
		t.Fatalf("local count %d, want 60", got)
	}
	clock.Add(int64(24 * time.Hour))
	if got := q.used(&st.local, clock.Load()); got != 0 {
		t.Fatalf("local count of the next day %d, want 0", got)
	}
	if !n.gw.ApplySignal(n.signal(30, clock.Load(), schemas.NodeCount{Node: "a", Counted: 30})) {
		t.Fatal("not applied")
	}
	// R = 70, N = 2 (a, and b not counted yet): 35, none in flight.
	if got := n.admitUntilRefused(t, 200); got != 35 {
		t.Errorf("admitted %d, want 35", got)
	}
	if got := q.used(&st.local, clock.Load()); got != 35 {
		t.Errorf("local count %d, want 35", got)
	}
}

// SetUsed (UpdateUsage) sets this enforcer's counter over a lease, and the next
// signal replaces it with a new lease.
func TestSetUsedWithLeases(t *testing.T) {
	var clock atomic.Int64
	clock.Store(testEpoch.UnixNano())
	n := newFleetNode(t, fleetCatalog(t, 100), "b", &clock)
	s := n.signal(30, clock.Load(), schemas.NodeCount{Node: "a", Counted: 15}, schemas.NodeCount{Node: "c", Counted: 15})
	if !n.gw.ApplySignal(s) {
		t.Fatal("not applied")
	}
	// Lease: R = 70 among 3, 23 to b (rank 2, the left over to a).
	delta, err := n.gw.SetUsed(s.PlanID, s.KeyID, 100-5)
	if err != nil || delta != 23-5 {
		t.Fatalf("SetUsed = %d, %v; want delta 18 (the lease of 23 down to 5)", delta, err)
	}
	if got := n.admitUntilRefused(t, 200); got != 5 {
		t.Errorf("admitted %d after 5 remaining, want 5", got)
	}
	// The aggregator recorded UpdateUsage as used = 100 - 5 = 95, of
	// which b's 5 requests since are counted now.
	if !n.gw.ApplySignal(n.signal(95+5, clock.Load(), schemas.NodeCount{Node: "a", Counted: 15}, schemas.NodeCount{Node: "b", Counted: 5},
		schemas.NodeCount{Node: "c", Counted: 15})) {
		t.Fatal("not applied")
	}
	if c := n.get(); c != 429 {
		t.Errorf("after the adjusted signal: %d, want 429", c)
	}
	// Raising what remains works too, until the next signal.
	if _, err := n.gw.SetUsed(s.PlanID, s.KeyID, 100-3); err != nil {
		t.Fatal(err)
	}
	if got := n.admitUntilRefused(t, 200); got != 3 {
		t.Errorf("admitted %d after 3 remaining, want 3", got)
	}
}

// BenchmarkApplySignalFleet is BenchmarkApplySignal with the node counts
// of a fleet of three enforcers, this one among them.
func BenchmarkApplySignalFleet(b *testing.B) {
	c := testCatalog(b, benchYAML)
	now := testEpoch.UnixNano()
	g, err := New(Config{Node: "edge-b", Now: func() int64 { return now }}, c)
	if err != nil {
		b.Fatal(err)
	}
	k := g.table.Load().firstPlan("bench-key-00000000000000000001")
	s := schemas.QuotaSignal{PlanID: k.plan.id, KeyID: k.id, Limit: 1_000_000_000_000,
		PeriodEnd: ts("2026-12-01T00:00:00Z"), AsOf: now,
		Nodes: []schemas.NodeCount{{Node: "edge-a"}, {Node: "edge-b"}, {Node: "edge-c"}}}
	b.ReportAllocs()
	for b.Loop() {
		s.Used += 3
		s.Nodes[0].Counted++
		s.Nodes[1].Counted++
		s.Nodes[2].Counted++
		if !g.ApplySignal(&s) {
			b.Fatal("not applied")
		}
	}
}
