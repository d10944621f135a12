package enforcer

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/schemas"
)

// quotaGateway is a gateway of rateYAML's catalog with a quota of 100 a
// day instead of the plan's throttle, on the test's clock.
func quotaGateway(t *testing.T, clock *atomic.Int64, fleet int) *Gateway {
	t.Helper()
	yaml := strings.Replace(rateYAML, "throttle: {rateLimit: 100, burstLimit: 100}", "quota: {limit: 100, period: DAY}", 1)
	g, err := New(Config{Node: "b", Now: clock.Load, Fleet: fleet}, testCatalog(t, yaml))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// try decides one request of the test key at the clock's time.
func try(g *Gateway, clock *atomic.Int64) schemas.Decision {
	var dc decision
	g.table.Load().decide(&dc, "h", "/prod/items", "GET", []string{"rateratelimitkey00001"}, clock.Load())
	return dc.outcome
}

// admitted decides n requests and counts those admitted; any other
// refusal than the quota's fails the test.
func admitted(t *testing.T, g *Gateway, clock *atomic.Int64, n int) int {
	t.Helper()
	got := 0
	for range n {
		switch d := try(g, clock); d {
		case schemas.DecisionAllowed:
			got++
		case schemas.DecisionQuotaExceeded:
		default:
			t.Fatalf("outcome %v", d)
		}
	}
	return got
}

// dayEnd is the end of testEpoch's day, the quota's period.
var dayEnd = time.Unix(0, testEpoch.UnixNano()).UTC().Truncate(24 * time.Hour).Add(24 * time.Hour).UnixNano()

// In a fleet of N, a key with no quota signal of the period (a new key,
// a new period, the aggregator down) admits a 1/N share of its limit,
// not the whole; a signal then sets its lease; the next period starts at
// the share again. Alone, the whole limit.
func TestFailSafeLease(t *testing.T) {
	var clock atomic.Int64
	clock.Store(testEpoch.UnixNano())
	if n := admitted(t, quotaGateway(t, &clock, 0), &clock, 150); n != 100 {
		t.Fatalf("alone: %d admitted, want the whole 100", n)
	}
	g := quotaGateway(t, &clock, 4)
	if n := admitted(t, g, &clock, 150); n != 25 {
		t.Fatalf("no signal, a fleet of 4: %d admitted, want 25", n)
	}
	// The aggregator counted 25 from b and 5 from a: 70 left, split
	// between the two enforcers named: 35 for b.
	sig := schemas.QuotaSignal{PlanID: "gold", KeyID: "k1", Used: 30, Limit: 100, PeriodEnd: dayEnd, AsOf: clock.Load(),
		Nodes: []schemas.NodeCount{{Node: "a", Counted: 5}, {Node: "b", Counted: 25}}}
	if !g.ApplySignal(&sig) {
		t.Fatal("signal not applied")
	}
	if n := admitted(t, g, &clock, 100); n != 35 {
		t.Fatalf("after a signal: %d admitted, want 35", n)
	}
	// The next day, with no signal yet: the share again.
	clock.Store(dayEnd)
	if n := admitted(t, g, &clock, 100); n != 25 {
		t.Fatalf("a new period without a signal: %d admitted, want 25", n)
	}
	// A share that does not divide the limit rounds up: 100/3 → 34.
	if n := admitted(t, quotaGateway(t, &clock, 3), &clock, 100); n != 34 {
		t.Fatalf("a fleet of 3: %d admitted, want 34", n)
	}
}

// A restarted enforcer that gets back its local counts neither grants a
// signal's lease again nor the fail-safe lease: it admits what it had
// left before the restart.
func TestLocalCountsSurviveARestart(t *testing.T) {
	var clock atomic.Int64
	clock.Store(testEpoch.UnixNano())
	sig := schemas.QuotaSignal{PlanID: "gold", KeyID: "k1", Used: 0, Limit: 100, PeriodEnd: dayEnd, AsOf: clock.Load(),
		Nodes: []schemas.NodeCount{{Node: "a"}, {Node: "b"}}}
	for _, withSignal := range []bool{false, true} {
		g := quotaGateway(t, &clock, 2)
		if withSignal && !g.ApplySignal(&sig) {
			t.Fatal("signal not applied")
		}
		if n := admitted(t, g, &clock, 30); n != 30 {
			t.Fatalf("before the restart: %d admitted", n)
		}
		saved := g.LocalCounts()
		if len(saved) != 1 || saved[0] != (LocalCount{KeyID: "k1", PlanID: "gold", PeriodEnd: dayEnd, Local: 30}) {
			t.Fatalf("local counts %+v", saved)
		}
		restarted := quotaGateway(t, &clock, 2)
		if n := restarted.RestoreLocal(saved); n != 1 {
			t.Fatalf("restored %d", n)
		}
		if withSignal && !restarted.ApplySignal(&sig) {
			t.Fatal("signal not applied after the restart")
		}
		// Its share is 50 (signal: 100 left between a and b; fail-safe:
		// half of 100); 30 were admitted before the restart.
		if n := admitted(t, restarted, &clock, 100); n != 20 {
			t.Fatalf("signal %v: %d admitted after the restart, want the 20 left of the share", withSignal, n)
		}
	}
	// A count of another period is not restored.
	if n := quotaGateway(t, &clock, 2).RestoreLocal([]LocalCount{{KeyID: "k1", PlanID: "gold", PeriodEnd: dayEnd - 86400e9, Local: 30}}); n != 0 {
		t.Fatalf("restored a count of yesterday")
	}
}

// An enforcer whose clock is off the aggregators' grants no fail-safe
// lease: a key without a signal of the period it is in gets 429; a key
// with one keeps its lease; when the clock agrees again, the fail-safe
// lease is back.
func TestNoFailSafeLeaseOnASkewedClock(t *testing.T) {
	var clock atomic.Int64
	clock.Store(testEpoch.UnixNano())
	g := quotaGateway(t, &clock, 2)
	// A request before the skew was known was admitted under the
	// fail-safe lease; once it is known, nothing more.
	if d := try(g, &clock); d != schemas.DecisionAllowed {
		t.Fatalf("before the skew was known: %v", d)
	}
	g.SetClockSkewed(true)
	if d := try(g, &clock); d != schemas.DecisionQuotaExceeded {
		t.Fatalf("skewed, no signal: %v, want refused", d)
	}
	sig := schemas.QuotaSignal{PlanID: "gold", KeyID: "k1", Used: 0, Limit: 100, PeriodEnd: dayEnd, AsOf: clock.Load(),
		Nodes: []schemas.NodeCount{{Node: "b"}}}
	if !g.ApplySignal(&sig) {
		t.Fatal("signal not applied")
	}
	if d := try(g, &clock); d != schemas.DecisionAllowed {
		t.Fatalf("skewed, with a signal of its period: %v", d)
	}
	clock.Store(dayEnd) // the next day, no signal of it
	if d := try(g, &clock); d != schemas.DecisionQuotaExceeded {
		t.Fatalf("skewed, a new period: %v, want refused", d)
	}
	g.SetClockSkewed(false)
	clock.Store(dayEnd + 86400e9)
	if d := try(g, &clock); d != schemas.DecisionAllowed {
		t.Fatalf("the clock agrees again, a new period: %v, want the fail-safe lease", d)
	}
}

// The fail-safe lease caps what an enforcer counted of the period, not
// where its counter started: a key that began the period before the
// fleet's size was known (whole limits) is held to the share once it is,
// with what it admitted counted in.
func TestFailSafeLeaseFollowsTheFleetsSize(t *testing.T) {
	var clock atomic.Int64
	clock.Store(testEpoch.UnixNano())
	g := quotaGateway(t, &clock, 0)
	if n := admitted(t, g, &clock, 10); n != 10 {
		t.Fatalf("alone: %d", n)
	}
	g.SetFleet(4)
	if n := admitted(t, g, &clock, 100); n != 15 {
		t.Fatalf("a fleet of 4 once known: %d more admitted, want 15 (25 less the 10)", n)
	}
}

// Requests from every core never pass the fail-safe lease, and those it
// refuses are given back to the quota counter.
func TestFailSafeLeaseIsExactUnderContention(t *testing.T) {
	var clock atomic.Int64
	clock.Store(testEpoch.UnixNano())
	g := quotaGateway(t, &clock, 4)
	var n atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if try(g, &clock) == schemas.DecisionAllowed {
					n.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n.Load() != 25 {
		t.Fatalf("%d admitted from 8 goroutines, want the fail-safe 25", n.Load())
	}
	st, p := g.table.Load().keyPlan("k1", "gold")
	if used := p.quota.used(&st.quota, clock.Load()); used != 25 {
		t.Fatalf("the quota counter holds %d, want the 25 admitted", used)
	}
}
