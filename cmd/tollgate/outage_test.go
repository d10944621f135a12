package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/aggregator"
	"github.com/tollgate/tollgate/internal/poll"
)

// outageYAML is one key on a plan of 600 a day, no throttle to speak of,
// and one on a plan without a quota, whose requests tell the aggregator
// which enforcers there are.
const outageYAML = `
apis:
  - id: outageapi
    stages: [{name: prod, upstream: "{{UPSTREAM}}"}]
    resources:
      - path: /items
        methods: {GET: {apiKeyRequired: true}}
usagePlans:
  - name: Daily
    throttle: {rateLimit: 100000, burstLimit: 100000}
    quota: {limit: 600, period: DAY}
    apiStages: [{apiId: outageapi, stage: prod}]
  - name: Unmetered
    apiStages: [{apiId: outageapi, stage: prod}]
apiKeys:
  - {name: old, value: oldoldoldoldoldold0001, enabled: true, usagePlans: [Daily]}
  - {name: ping, value: pingpingpingpingping01, enabled: true, usagePlans: [Unmetered]}
`

// outageFleet is a report API on ClickHouse, three enforcers (restartable)
// and an aggregator the test stops and starts.
type outageFleet struct {
	t         *testing.T
	f         *fleet
	dsn       string
	admin     *fleetNode
	opts      []options
	enforcers []*fleetNode
	stopAgg   func()
}

// startOutageFleet starts the fleet with an enforcer per clock offset
// (nil: three on the true time).
func startOutageFleet(t *testing.T, clocks []time.Duration) *outageFleet {
	t.Helper()
	if clocks == nil {
		clocks = make([]time.Duration, 3)
	}
	of := &outageFleet{t: t, dsn: migratedClickHouse(t), f: newFleet(t)}
	cfg := of.f.fleetConfig("outage.yaml", outageYAML)
	ao := of.f.options(false, true)
	ao.config, ao.clickhouse = cfg, of.dsn
	of.admin = of.f.start(ao)
	fleet := 0 // the enforcers whose events the aggregator takes
	for _, off := range clocks {
		o := of.f.options(true, false)
		if off != 0 {
			o.now = func() time.Time { return time.Now().Add(off) }
		}
		if off <= aggregator.MaxAhead {
			fleet++
		}
		of.opts = append(of.opts, o)
		of.enforcers = append(of.enforcers, of.f.start(o))
	}
	of.startAggregator()
	for _, e := range of.enforcers {
		e.waitStatus(t, "oldoldoldoldoldold0001", 200, 10*time.Second)
	}
	// The enforcers learn the fleet's size from the aggregator's fleet
	// signal (no --fleet-size), which counts the enforcers it read
	// events from, once it has run for 10 s: a request to each every
	// 200 ms until each has the size in its snapshot.
	for _, o := range of.opts {
		snap := filepath.Join(o.dataDir, "signals-snapshot.json")
		poll.UntilOK(t, 30*time.Second, 200*time.Millisecond, "the fleet's size in "+snap, func() error {
			for _, e := range of.enforcers {
				e.status("pingpingpingpingping01") // an event at once (an unknown key's wait for the minute's flush)
			}
			if b, err := os.ReadFile(snap); err != nil || !strings.Contains(string(b), fmt.Sprintf(`"fleet":%d`, fleet)) {
				return fmt.Errorf("not yet (%v)", err)
			}
			return nil
		})
	}
	return of
}

func (of *outageFleet) startAggregator() {
	_, of.stopAgg = startAggregatorWith(of.t, of.f, aggregatorOptions{clickhouse: of.dsn})
}

// restart stops enforcer i gracefully and starts it again on its data.
func (of *outageFleet) restart(i int) {
	of.enforcers[i].stop(of.t)
	of.enforcers[i] = of.f.start(of.opts[i])
}

// drive sends rps requests a second of key, spread over the enforcers,
// for d, and returns how many were admitted.
func (of *outageFleet) drive(key string, rps float64, d time.Duration) int64 {
	var admitted atomic.Int64
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / rps)
	start := time.Now()
	jobs := make(chan *fleetNode, 64)
	for range 8 {
		wg.Go(func() {
			for e := range jobs {
				if e.status(key) == 200 {
					admitted.Add(1)
				}
			}
		})
	}
	for n := 0; ; n++ {
		at := start.Add(time.Duration(n) * interval)
		if at.Sub(start) >= d {
			break
		}
		time.Sleep(time.Until(at))
		jobs <- of.enforcers[n%len(of.enforcers)]
	}
	close(jobs)
	wg.Wait()
	return admitted.Load()
}

// used is GetUsage's count of key today, once the aggregator has stored
// want (or its last answer after 20 s).
func (of *outageFleet) used(keyID string, want int64) int64 {
	plan := planID(of.t, of.admin, "Daily")
	day := time.Now().UTC().Format("2006-01-02")
	var got int64 = -1
	poll.Wait(20*time.Second, 50*time.Millisecond, "GetUsage", func() error {
		code, out := of.admin.admin(of.t, "GET", fmt.Sprintf("/usageplans/%s/usage?keyId=%s&startDate=%s&endDate=%s", plan, keyID, day, day), "")
		if code != 200 {
			return fmt.Errorf("get-usage %d", code)
		}
		var v [][]float64
		if vals, ok := out["values"].(map[string]any); ok {
			for _, d := range vals[keyID].([]any) {
				pair := d.([]any)
				v = append(v, []float64{pair[0].(float64), pair[1].(float64)})
			}
		}
		if len(v) == 0 {
			return fmt.Errorf("no usage yet")
		}
		got = int64(v[0][0])
		if got != want {
			return fmt.Errorf("%d used", got)
		}
		return nil
	})
	return got
}

func (of *outageFleet) keyID(name string) string {
	_, keys := of.admin.admin(of.t, "GET", "/apikeys?name="+name, "")
	return keys["item"].([]any)[0].(map[string]any)["id"].(string)
}

// Quotas hold when the aggregator's signals stop: a key created during
// an outage is admitted at most its limit (each enforcer grants a third,
// the fail-safe lease), where each used to grant the whole; and a rolling
// restart of the enforcers during an outage admits no more than the
// quota (each keeps its local count across the restart), where each
// restart used to grant its lease again. GetUsage then equals what the
// fleet admitted.
func TestFleetQuotaHoldsWhenSignalsStop(t *testing.T) {
	if testing.Short() {
		t.Skip("seconds of load")
	}
	of := startOutageFleet(t, nil)
	const limit = 600

	// 1. 180 of the old key's quota used while signals flow.
	before := of.drive("oldoldoldoldoldold0001", 100, 1800*time.Millisecond) + 3 // the waits
	time.Sleep(1500 * time.Millisecond)                                          // a signal of it reaches every enforcer

	// The aggregator stops.
	of.stopAgg()

	// 2. A key created during the outage.
	plan := planID(t, of.admin, "Daily")
	code, key := of.admin.admin(t, "POST", "/apikeys", `{"name":"new","value":"newnewnewnewnewnew0001","enabled":true}`)
	if code != 201 {
		t.Fatalf("create-api-key: %d %v", code, key)
	}
	newID := key["id"].(string)
	if code, out := of.admin.admin(t, "POST", "/usageplans/"+plan+"/keys", `{"keyId":"`+newID+`","keyType":"API_KEY"}`); code != 201 {
		t.Fatalf("create-usage-plan-key: %d %v", code, out)
	}
	for _, e := range of.enforcers {
		if err := e.statusWithin("newnewnewnewnewnew0001", 200, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	fresh := of.drive("newnewnewnewnewnew0001", 200, 5*time.Second) + 3

	// 3. A rolling restart of the enforcers, the old key's traffic going on.
	during := of.drive("oldoldoldoldoldold0001", 200, time.Second)
	for i := range of.enforcers {
		of.restart(i)
		during += of.drive("oldoldoldoldoldold0001", 200, time.Second)
	}
	during += of.drive("oldoldoldoldoldold0001", 200, 2*time.Second)
	old := before + during
	t.Logf("aggregator down: a key created meanwhile admitted %d of %d; the old key %d before the outage, %d during it and three restarts: %d of %d",
		fresh, limit, before, during, old, limit)
	if fresh > limit*105/100 || old > limit*105/100 {
		t.Fatalf("admitted %d (new key) and %d (old key), more than 5%% over the quota of %d", fresh, old, limit)
	}
	if fresh < limit*9/10 {
		t.Fatalf("the new key admitted %d: the fleet held back more than 10%% of its quota", fresh)
	}

	// The aggregator back: GetUsage is what the fleet admitted.
	of.startAggregator()
	if got := of.used(newID, fresh); got != fresh {
		t.Errorf("GetUsage of the new key %d, the fleet admitted %d", got, fresh)
	}
	if got := of.used(of.keyID("old"), old); got != old {
		t.Errorf("GetUsage of the old key %d, the fleet admitted %d", got, old)
	}
}

// Four enforcers, one a day fast and one a day slow: each sees, once the
// aggregator's fleet signals show it, that its clock is off, and grants
// no fail-safe lease (the periods it is in are its alone); the two on
// time share the quota. The fleet admits at most the quota today, and
// GetUsage says what they admitted.
func TestFleetQuotaWithSkewedClocks(t *testing.T) {
	if testing.Short() {
		t.Skip("seconds of load")
	}
	of := startOutageFleet(t, []time.Duration{0, 0, 24 * time.Hour, -24 * time.Hour})
	const limit = 600
	var byNode [4]atomic.Int64
	var wg sync.WaitGroup
	interval := 10 * time.Millisecond // 100 req/s
	start := time.Now()
	jobs := make(chan int, 64)
	for range 8 {
		wg.Go(func() {
			for i := range jobs {
				if of.enforcers[i].status("oldoldoldoldoldold0001") == 200 {
					byNode[i].Add(1)
				}
			}
		})
	}
	// 80% to the two on time (the quota is reached after ~7.5 s), 10%
	// to each skewed one.
	order := []int{0, 1, 0, 1, 0, 1, 0, 1, 2, 3}
	for n := 0; n < 900; n++ {
		time.Sleep(time.Until(start.Add(time.Duration(n) * interval)))
		jobs <- order[n%len(order)]
	}
	close(jobs)
	wg.Wait()
	onTime := byNode[0].Load() + byNode[1].Load() + 2 // the waits
	t.Logf("admitted by the enforcers on time %d, a day fast %d, a day slow %d (quota %d)", onTime, byNode[2].Load(), byNode[3].Load(), limit)
	if byNode[2].Load() != 0 || byNode[3].Load() != 0 {
		t.Errorf("the skewed enforcers admitted %d and %d, want 0: no lease on a period their clock alone is in", byNode[2].Load(), byNode[3].Load())
	}
	if onTime > limit*105/100 {
		t.Errorf("admitted %d today, more than 5%% over the quota of %d", onTime, limit)
	}
	if onTime < limit*9/10 {
		t.Errorf("admitted %d today: the quota of %d was not reached, the test says nothing", onTime, limit)
	}
	if got := of.used(of.keyID("old"), onTime); got != onTime {
		t.Errorf("GetUsage %d today, the fleet admitted %d", got, onTime)
	}
}
