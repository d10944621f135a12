package main

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// throttleYAML is one key on a plan of 100 requests/s, burst 50.
const throttleYAML = `
apis:
  - id: rateapi
    stages: [{name: prod, upstream: "{{UPSTREAM}}"}]
    resources:
      - path: /items
        methods: {GET: {apiKeyRequired: true}}
usagePlans:
  - name: Hundred
    throttle: {rateLimit: 100, burstLimit: 50}
    apiStages: [{apiId: rateapi, stage: prod}]
apiKeys:
  - {name: busy, value: busybusybusybusy000001, enabled: true, usagePlans: [Hundred]}
`

const (
	throttleKey  = "busybusybusybusy000001"
	throttleRate = 100.0
	throttleBin  = 100 * time.Millisecond
)

// throttleFleet is a report API, three enforcers and an aggregator
// (which the test can stop) on throttleYAML.
type throttleFleet struct {
	f         *fleet
	enforcers []*fleetNode
	stopAgg   func()
}

func startThrottleFleet(t *testing.T, whole bool) *throttleFleet {
	t.Helper()
	dsn := migratedClickHouse(t)
	f := newFleet(t)
	cfg := f.fleetConfig("throttle.yaml", throttleYAML)
	ao := f.options(false, true)
	ao.config, ao.clickhouse = cfg, dsn
	f.start(ao)
	tf := &throttleFleet{f: f}
	for range 3 {
		o := f.options(true, false)
		if !whole {
			o.fleetSize = 3
		}
		tf.enforcers = append(tf.enforcers, f.start(o))
	}
	_, tf.stopAgg = startAggregatorWith(t, f, aggregatorOptions{clickhouse: dsn, wholeThrottles: whole})
	for _, e := range tf.enforcers {
		e.waitStatus(t, throttleKey, 200, 10*time.Second)
	}
	return tf
}

// phase is traffic at a rate per enforcer for a while: the answers,
// binned by the time each request was sent.
type phase struct {
	admitted, refused []atomic.Int64 // per throttleBin
	sent              atomic.Int64
}

// drive sends rps[i] requests a second to enforcer i for d, paced, and
// returns what they were answered.
func (tf *throttleFleet) drive(rps []float64, d time.Duration) *phase {
	p := &phase{admitted: make([]atomic.Int64, d/throttleBin+1), refused: make([]atomic.Int64, d/throttleBin+1)}
	start := time.Now()
	var wg sync.WaitGroup
	for i, e := range tf.enforcers {
		if rps[i] == 0 {
			continue
		}
		jobs := make(chan time.Time, 256)
		for range 8 {
			wg.Go(func() {
				for at := range jobs {
					bin := at.Sub(start) / throttleBin
					switch e.status(throttleKey) {
					case 200:
						p.admitted[bin].Add(1)
					default:
						p.refused[bin].Add(1)
					}
				}
			})
		}
		wg.Go(func() {
			defer close(jobs)
			interval := time.Duration(float64(time.Second) / rps[i])
			for n := 0; ; n++ {
				at := start.Add(time.Duration(n) * interval)
				if at.Sub(start) >= d {
					return
				}
				time.Sleep(time.Until(at))
				jobs <- at
				p.sent.Add(1)
			}
		})
	}
	wg.Wait()
	return p
}

// count sums the admitted requests of the bins in [from, to).
func (p *phase) count(bins []atomic.Int64, from, to time.Duration) int64 {
	var n int64
	for b := from / throttleBin; b < to/throttleBin && int(b) < len(bins); b++ {
		n += bins[b].Load()
	}
	return n
}

// settled returns the start of the first 1 s window, from the phase's
// start on, whose admitted count is within ±5% of the rate, and whether
// one starts before maxSettle.
func (p *phase) settled(maxSettle time.Duration) (time.Duration, bool) {
	for s := time.Duration(0); s <= maxSettle; s += throttleBin {
		if n := float64(p.count(p.admitted, s, s+time.Second)); n >= throttleRate*0.95 && n <= throttleRate*1.05 {
			return s, true
		}
	}
	return 0, false
}

// scenario is one line of the measurement.
type scenario struct {
	name string
	rps  []float64
}

// throttleResult is what a scenario measured.
type throttleResult struct {
	name           string
	settle         time.Duration
	settledOK      bool
	perSecond      float64 // admitted per second over the window after settling
	refused, sent  int64
	windowDuration time.Duration
}

func (r throttleResult) String() string {
	if strings.HasPrefix(r.name, "under half") {
		return fmt.Sprintf("%-34s admitted %6.1f/s, refused %d of %d sent", r.name, r.perSecond, r.refused, r.sent)
	}
	s := "never"
	if r.settledOK {
		s = r.settle.String()
	}
	return fmt.Sprintf("%-34s settled after %-6s admitted %6.1f/s over %v (%.3f× the rate), refused %d of %d sent",
		r.name, s, r.perSecond, r.windowDuration, r.perSecond/throttleRate, r.refused, r.sent)
}

// measure runs a scenario: settle (at most maxSettle), then a window.
func (tf *throttleFleet) measure(sc scenario, maxSettle, window time.Duration) throttleResult {
	p := tf.drive(sc.rps, maxSettle+window)
	r := throttleResult{name: sc.name, sent: p.sent.Load(), windowDuration: window}
	r.settle, r.settledOK = p.settled(maxSettle)
	from := r.settle
	if !r.settledOK {
		from = maxSettle
	}
	r.perSecond = float64(p.count(p.admitted, from, from+window)) / window.Seconds()
	r.refused = p.count(p.refused, 0, maxSettle+window)
	return r
}

// The scenarios of issue 16, at twice the plan's rate (the fleet must
// refuse half) and at under half of it (the fleet must refuse nothing).
var (
	over = []scenario{
		{"even (67/67/67 req/s)", []float64{200. / 3, 200. / 3, 200. / 3}},
		{"skewed 70/20/10 (140/40/20 req/s)", []float64{140, 40, 20}},
		{"all on enforcer 1 (200 req/s)", []float64{200, 0, 0}},
		{"moved: all on enforcer 2", []float64{0, 200, 0}},
	}
	under = []scenario{
		{"under half: 70/20/10 of 45 req/s", []float64{31.5, 9, 4.5}},
		{"under half: moved to enforcer 3", []float64{0, 0, 45}},
	}
)

// runThrottleScenarios runs the scenarios on a fleet and returns their
// results (under half the rate first, then over it), then those with
// the aggregator stopped. Under half comes first because a fleet that
// was over its rate has divided it by where the requests were: when the
// traffic then drops and moves, an enforcer left with the floor refuses
// until the next division (the settling time) although the fleet is
// under its rate; see the aggregator's package doc.
func runThrottleScenarios(t *testing.T, tf *throttleFleet, maxSettle, window time.Duration, full, outage bool) []throttleResult {
	var out []throttleResult
	for _, sc := range under {
		out = append(out, tf.measure(sc, 0, window/2))
		t.Log(out[len(out)-1])
	}
	for _, sc := range over {
		if sc.name == over[0].name && !full {
			out = append(out, throttleResult{}) // the suite leaves even traffic to the measurement
			continue
		}
		out = append(out, tf.measure(sc, maxSettle, window))
		t.Log(out[len(out)-1])
	}
	if outage {
		tf.stopAgg()
		time.Sleep(4 * time.Second) // past the divisions' 3 s staleness: the fallback share holds
		for _, sc := range over[:2] {
			r := tf.measure(scenario{"aggregator down, " + sc.name, sc.rps}, maxSettle, window)
			out = append(out, r)
			t.Log(r)
		}
	}
	return out
}

// A key on a 100 req/s plan behind three enforcers, with a real
// aggregator dividing its throttle: at twice the rate, evenly, skewed or
// moving from one enforcer to another, the fleet admits the plan's rate
// within ±5% over the window after settling, and settles within 2 s of
// each shift; under half the rate it refuses nothing, wherever the
// traffic moves. The suite runs 5 s windows; the measurement in
// BENCHMARKS.md (10 s windows, today's undivided throttles alongside,
// and an aggregator outage) is TOLLGATE_FLEET_THROTTLE=1 go test -run
// TestFleetThrottleMeasured ./cmd/tollgate (make bench-fleet-throttle).
func TestFleetThrottleHoldsTheRate(t *testing.T) {
	if testing.Short() {
		t.Skip("seconds of load")
	}
	tf := startThrottleFleet(t, false)
	checkThrottle(t, runThrottleScenarios(t, tf, 3*time.Second, 5*time.Second, false, false))
}

func checkThrottle(t *testing.T, results []throttleResult) {
	t.Helper()
	for i, r := range results {
		switch {
		case r.name == "":
		case i < len(under):
			if r.refused != 0 {
				t.Errorf("%s: %d requests refused under half the rate", r.name, r.refused)
			}
		case i < len(under)+len(over):
			if !r.settledOK || r.settle > 2*time.Second {
				t.Errorf("%s: did not settle within 2s", r.name)
			}
			if r.perSecond < throttleRate*0.95 || r.perSecond > throttleRate*1.05 {
				t.Errorf("%s: admitted %.1f/s, want 100 ±5%%", r.name, r.perSecond)
			}
		default: // the aggregator down: never 0, never the whole rate per enforcer
			if r.perSecond > throttleRate*1.05 || r.perSecond < throttleRate/3 {
				t.Errorf("%s: admitted %.1f/s, want between a third of the rate and the rate", r.name, r.perSecond)
			}
		}
	}
}

// The measurement of BENCHMARKS.md: the divided throttle and today's
// undivided one, in one run.
func TestFleetThrottleMeasured(t *testing.T) {
	if os.Getenv("TOLLGATE_FLEET_THROTTLE") == "" {
		t.Skip("a measurement of minutes: TOLLGATE_FLEET_THROTTLE=1 (make bench-fleet-throttle)")
	}
	t.Run("divided", func(t *testing.T) {
		checkThrottle(t, runThrottleScenarios(t, startThrottleFleet(t, false), 3*time.Second, 10*time.Second, true, true))
	})
	t.Run("whole", func(t *testing.T) {
		runThrottleScenarios(t, startThrottleFleet(t, true), 3*time.Second, 10*time.Second, true, false)
	})
}
