package enforcer

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/schemas"
)

// widgetSignal is a signal for the widget key under its plan in gwYAML,
// whose quota is 5 a DAY; testEpoch's day ends at midnight.
func (e *env) widgetSignal(used int64) *schemas.QuotaSignal {
	k := e.gw.table.Load().lookupKey(widget)
	return &schemas.QuotaSignal{PlanID: k.bindings[0].plan.id, KeyID: k.id, Used: used, Limit: 5,
		PeriodEnd: ts("2026-11-28T00:00:00Z"), AsOf: e.clock.Load(), Exhausted: used >= 5}
}

func TestApplySignal(t *testing.T) {
	e := newEnv(t, gwYAML)
	if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
		t.Fatalf("first request: %d", r.status)
	}
	// The fleet counted 3, this enforcer's one among them.
	if !e.gw.ApplySignal(e.widgetSignal(3)) {
		t.Fatal("signal of the current period not applied")
	}
	// Local takes count on top of the fleet's total: 4 of 5.
	e.advance(10 * time.Second)
	if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
		t.Fatalf("4th of 5: %d", r.status)
	}
	// Other enforcers used the rest.
	if !e.gw.ApplySignal(e.widgetSignal(5)) {
		t.Fatal("exhausted signal not applied")
	}
	r := e.do("GET", "/prod/items", "x-api-key", widget)
	wantAWS(t, r, 429, "Limit Exceeded", "LimitExceededException")
	if got, want := r.h.Get("Retry-After"), fmt.Sprint(14*3600-10); got != want {
		t.Errorf("Retry-After = %q, want %s (until midnight)", got, want)
	}
	if ev := e.lastEvent(); ev.Decision != schemas.DecisionQuotaExceeded || ev.Status != 429 {
		t.Errorf("event decision %v status %d, want quota exceeded 429", ev.Decision, ev.Status)
	}
	// A new period starts from zero.
	e.advance(14*time.Hour - 10*time.Second)
	if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
		t.Fatalf("next day: %d", r.status)
	}
}

func TestApplySignalNeverLowers(t *testing.T) {
	e := newEnv(t, gwYAML)
	for i := range 3 {
		if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
			t.Fatalf("request %d: %d", i, r.status)
		}
	}
	// A signal older than this enforcer's own requests.
	if !e.gw.ApplySignal(e.widgetSignal(1)) {
		t.Fatal("signal of the current period not applied")
	}
	e.advance(10 * time.Second)
	for i := range 2 {
		if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
			t.Fatalf("request %d after the signal: %d", 4+i, r.status)
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
			s.KeyID = e.gw.table.Load().lookupKey("planlessplanless000001").id
		}},
		{"plan without quota", func(e *env, s *schemas.QuotaSignal) {
			o := e.gw.table.Load().lookupKey("otherotherotherother01")
			s.KeyID, s.PlanID = o.id, o.bindings[0].plan.id
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
	k := g.table.Load().lookupKey("bench-key-00000000000000000001")
	s := schemas.QuotaSignal{PlanID: k.bindings[0].plan.id, KeyID: k.id, Limit: 1_000_000_000_000,
		PeriodEnd: ts("2026-12-01T00:00:00Z"), AsOf: now} // benchYAML's quota is MONTHly
	b.ReportAllocs()
	for b.Loop() {
		s.Used++
		if !g.ApplySignal(&s) {
			b.Fatal("not applied")
		}
	}
}
