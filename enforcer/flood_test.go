package enforcer

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/poll"
	"github.com/tollgate/tollgate/internal/utc"
	"github.com/tollgate/tollgate/schemas"
)

// floodYAML has keyed and keyless routes, a stage throttle a flood of the
// keyless route exhausts, and a key with a quota that a flood must not
// touch.
const floodYAML = `
apis:
  - id: abc123api
    stages:
      - {name: prod, upstream: "http://127.0.0.1:1", throttle: {rateLimit: 1, burstLimit: 50}}
    resources:
      - path: /items
        methods: {GET: {apiKeyRequired: true}, POST: {apiKeyRequired: true}}
      - path: /items/{id}
        methods: {GET: {apiKeyRequired: true}, DELETE: {apiKeyRequired: true}}
      - path: /health
        methods: {GET: {apiKeyRequired: false}}
  - id: otherapi
    stages: [{name: v1, upstream: "http://127.0.0.1:1"}]
    resources:
      - path: /things/{proxy+}
        methods: {ANY: {apiKeyRequired: true}}
usagePlans:
  - name: Small
    throttle: {rateLimit: 1000, burstLimit: 1000}
    quota: {limit: 100, period: DAY}
    apiStages: [{apiId: abc123api, stage: prod}]
apiKeys:
  - {name: k1, value: floodfloodfloodflood01, enabled: true, usagePlans: [Small]}
  - {name: off, value: floodfloodfloodflood02, enabled: false, usagePlans: [Small]}
`

// events is an EventSink that keeps what it is offered.
// events is an event sink whose take returns every event offered since.
type events struct{ eventLog }

func (s *events) take() []schemas.UsageEvent { return s.eventLog.take(math.MaxInt64) }

// group is what the rejections table keeps apart, with the minute.
type group struct {
	minute                              int64
	api, stage, resource, method, keyID string
	decision                            schemas.Decision
	status                              int32
}

type sums struct{ requests, latency, in, out int64 }

func groupOf(e *schemas.UsageEvent) group {
	return group{utc.FloorDiv(e.Time, 60e9), e.APIID, e.Stage, e.Resource, e.Method, e.KeyID, e.Decision, e.Status}
}

// randomRequest returns a request a flood (or a client) might send.
func randomRequest(r *rand.Rand) (host, path, method string, keys []string) {
	paths := []string{"/prod/items", "/prod/items/42", "/prod/health", "/prod/nope", "/v1/things/a/b", "/v1", "/elsewhere",
		fmt.Sprintf("/prod/items/%d/x", r.IntN(1e6)), fmt.Sprintf("/%x", r.Uint64())}
	methods := []string{"GET", "POST", "DELETE", "PUT", "get", "ANY", "OPTIONS", fmt.Sprintf("M%x", r.Uint32())}
	keySets := [][]string{nil, {""}, {"floodfloodfloodflood01"}, {"floodfloodfloodflood02"},
		{fmt.Sprintf("unknown-key-%016x", r.Uint64())}, {"floodfloodfloodflood01", "floodfloodfloodflood01"}}
	return "h", paths[r.IntN(len(paths))], methods[r.IntN(len(methods))], keySets[r.IntN(len(keySets))]
}

// The counts the rejections table emits equal what one event per request
// would have said, per group and minute; every other request keeps its
// event. The table is flushed as Run does (minutes that ended) at random
// moments, and once at the end as on shutdown.
func TestRejectionsEqualPerRequestEvents(t *testing.T) {
	for seed := range uint64(5) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 7))
			sink := &events{}
			now := testEpoch.UnixNano()
			g, err := New(Config{Events: sink, Now: func() int64 { return now }}, testCatalog(t, floodYAML))
			if err != nil {
				t.Fatal(err)
			}
			tab := g.table.Load()
			want := map[group]sums{} // one event per request, grouped
			var wantSingles []schemas.UsageEvent
			for range 20000 {
				now += r.Int64N(30e6) // 20000 requests over about five minutes
				host, path, method, keys := randomRequest(r)
				var d decision
				tab.decide(&d, host, path, method, keys, now)
				status, in, out := int32(200), r.Int64N(1000), r.Int64N(1000)
				if d.outcome != schemas.DecisionAllowed {
					rj := rejectionFor(d.outcome, tab.notFound)
					status, in, out = int32(rj.status), 0, int64(len(rj.body))
				}
				end := now + r.Int64N(2e6)
				var ev schemas.UsageEvent
				g.event(&ev, &d, method, now, end, status, in, out)
				if aggregated(&d) {
					// Counted in the minute it ended, under the method
					// the table keeps.
					ev.Time, ev.Method = end, rejectionMethods[rejectionMethod(method)]
					k := groupOf(&ev)
					s := want[k]
					s.requests++
					s.latency += ev.LatencyMicros
					s.in += ev.BytesIn
					s.out += ev.BytesOut
					want[k] = s
				} else {
					wantSingles = append(wantSingles, ev)
				}
				g.emit(&d, method, now, end, status, in, out)
				if r.IntN(500) == 0 {
					g.rejections.flush(now, false, g.cfg.Events, g.cfg.Node)
				}
			}
			g.FlushRejections()

			got := map[group]sums{}
			var gotSingles []schemas.UsageEvent
			for _, e := range sink.take() {
				if e.Count == 0 {
					gotSingles = append(gotSingles, e)
					continue
				}
				if e.KeyID != "" || e.PlanID != "" || e.Time%60e9 != 0 {
					t.Errorf("aggregated event %+v: want no key or plan, a minute's start", e)
				}
				k := groupOf(&e)
				s := got[k]
				s.requests += e.Requests()
				s.latency += e.LatencyMicros
				s.in += e.BytesIn
				s.out += e.BytesOut
				got[k] = s
			}
			for k, w := range want {
				if got[k] != w {
					t.Errorf("group %+v: got %+v, want %+v", k, got[k], w)
				}
			}
			for k, s := range got {
				if _, ok := want[k]; !ok {
					t.Errorf("group %+v: got %+v, want none", k, s)
				}
			}
			if !slices.EqualFunc(gotSingles, wantSingles, func(a, b schemas.UsageEvent) bool { a.ID = b.ID; return a == b }) {
				t.Errorf("per-request events: got %d, want %d (or they differ)", len(gotSingles), len(wantSingles))
			}
			var rejected int64
			for _, w := range want {
				rejected += w.requests
			}
			t.Logf("%d requests rejected before a key was identified in %d events; %d requests with events of their own",
				rejected, len(got), len(wantSingles))
			if len(want) == 0 || len(wantSingles) == 0 {
				t.Fatal("the random requests did not cover both kinds")
			}
		})
	}
}

// Whatever methods and paths a flood sends, the table holds at most the
// groups the catalog allows, and a flood costs no allocation.
func TestRejectionsTableIsBounded(t *testing.T) {
	sink := &events{}
	now := testEpoch.UnixNano()
	g, err := New(Config{Events: sink, Now: func() int64 { return now }}, testCatalog(t, floodYAML))
	if err != nil {
		t.Fatal(err)
	}
	tab := g.table.Load()
	r := rand.New(rand.NewPCG(1, 2))
	const n = 100000
	for range n {
		now += 1e6
		host, path, method, _ := randomRequest(r)
		// Random bytes for a method and a path segment, unknown keys.
		if r.IntN(2) == 0 {
			method = string(rune('A' + r.IntN(26)))
		}
		keys := []string{fmt.Sprintf("%x", r.Uint64())}
		var d decision
		tab.decide(&d, host, path, method, keys, now)
		g.emit(&d, method, now, now, 403, 0, 23)
	}
	used := 0
	for i := range g.rejections.cells {
		if g.rejections.cells[i].key.Load() != nil {
			used++
		}
	}
	// Stages (2, and none) x resources of the stage (and none) x 8
	// methods x the decisions a keyless request gets (forbidden,
	// missing token, bad request, throttled).
	const bound = (1 + 4) * 8 * 4 * 2
	if used > bound {
		t.Errorf("%d groups in the table after %d random requests, want at most %d", used, n, bound)
	}
	g.FlushRejections()
	var total, aggregated int64
	for _, e := range sink.take() {
		total += e.Requests()
		if e.Count > 0 {
			aggregated++
		}
	}
	// The keyless /prod/health admits some (events of their own).
	minutes := int64(n)*1e6/60e9 + 1
	if total != n || aggregated == 0 || aggregated > int64(used)*minutes {
		t.Errorf("%d events of the table, %d requests in all; want %d requests, at most %d events of the table", aggregated, total, n, int64(used)*minutes)
	}
	t.Logf("%d requests, %d groups, %d events of the table", n, used, aggregated)

	// Counting allocates nothing, even for a method never seen before.
	var d decision
	tab.decide(&d, "h", "/prod/items", "GET", []string{"unknown-key-0000000000000001"}, now)
	methods := []string{"GET", "BREW", "get", strings.Repeat("X", 100)}
	i := 0
	if a := testing.AllocsPerRun(1000, func() {
		i++
		g.emit(&d, methods[i%len(methods)], now, now, 403, 0, 23)
	}); a != 0 {
		t.Errorf("counting a rejection allocates %v times", a)
	}
}

// A catalog too large (or changed too often) for the table: groups that
// find no cell go to the spare cell of their decision and status. No
// count is lost and the table does not grow.
func TestRejectionsOverflowToSpareCells(t *testing.T) {
	sink := &events{}
	now := testEpoch.UnixNano()
	g, err := New(Config{Events: sink, Now: func() int64 { return now }}, testCatalog(t, floodYAML))
	if err != nil {
		t.Fatal(err)
	}
	sr := &stageRoute{apiID: "big", stage: "prod"}
	const groups = 3 * rejectionCells
	for i := range groups {
		d := decision{outcome: schemas.DecisionForbidden, stage: sr, route: &methodRoute{resource: fmt.Sprintf("/r%d", i)}}
		g.emit(&d, "GET", now, now, 403, 0, 23)
		g.emit(&d, "GET", now, now, 403, 0, 23)
	}
	g.FlushRejections()
	var total, spare int64
	resources := map[string]bool{}
	for _, e := range sink.take() {
		total += e.Requests()
		if e.Resource == "" {
			if e.Method != "OTHER" || e.APIID != "" || e.Decision != schemas.DecisionForbidden || e.Status != 403 {
				t.Errorf("spare event %+v: want method OTHER, no API, forbidden, 403", e)
			}
			spare += e.Requests()
			continue
		}
		if resources[e.Resource] {
			t.Errorf("resource %s: two events in one minute", e.Resource)
		}
		resources[e.Resource] = true
	}
	if total != 2*groups {
		t.Errorf("events stand for %d requests, want %d", total, 2*groups)
	}
	if len(resources) > rejectionCells || spare != 2*int64(groups-len(resources)) {
		t.Errorf("%d groups with cells (at most %d), %d requests in spare cells, want %d", len(resources), rejectionCells, spare, 2*(groups-len(resources)))
	}
	t.Logf("%d of %d groups in the table, %d requests in spare cells", len(resources), groups, spare)
}

// A minute is emitted once it has ended, the one under way only by
// FlushRejections; Run emits within a second of the end, by the
// injected clock.
func TestRejectionsFlushByMinute(t *testing.T) {
	sink := &events{}
	var mu sync.Mutex
	now := testEpoch.UnixNano() + 10e9 // 10:00:10
	clock := func() int64 { mu.Lock(); defer mu.Unlock(); return now }
	g, err := New(Config{Events: sink, Now: clock, Node: "edge-a"}, testCatalog(t, floodYAML))
	if err != nil {
		t.Fatal(err)
	}
	reject := func(n int) {
		t.Helper()
		for range n {
			var d decision
			g.table.Load().decide(&d, "h", "/prod/items", "GET", nil, clock())
			g.emit(&d, "GET", clock(), clock(), 403, 0, 23)
		}
	}
	reject(3)
	if n := g.rejections.flush(clock(), false, sink, "edge-a"); n != 0 {
		t.Fatalf("mid-minute flush emitted %d requests", n)
	}
	mu.Lock()
	now += 60e9 // 10:01:10
	mu.Unlock()
	reject(2)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	var evs []schemas.UsageEvent
	poll.Until(t, 5*time.Second, 10*time.Millisecond, "Run emits the rejections of 10:00 (it checks every second)", func() bool {
		evs = sink.take()
		return len(evs) > 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	want := schemas.UsageEvent{Time: testEpoch.UnixNano(), APIID: "abc123api", Stage: "prod", Method: "GET", Resource: "/items",
		Status: 403, Decision: schemas.DecisionForbidden, BytesOut: 3 * 23, Node: "edge-a", Count: 3}
	if len(evs) != 1 || evs[0].ID.UnixMilli() != want.Time/1e6 {
		t.Fatalf("Run emitted %+v, want one event of 10:00", evs)
	}
	evs[0].ID = schemas.EventID{}
	if evs[0] != want {
		t.Errorf("Run emitted\n %+v\nwant %+v", evs[0], want)
	}
	if n := g.FlushRejections(); n != 2 {
		t.Errorf("FlushRejections emitted %d requests, want the 2 of 10:01", n)
	}
	if evs := sink.take(); len(evs) != 1 || evs[0].Time != testEpoch.UnixNano()+60e9 || evs[0].Count != 2 {
		t.Errorf("FlushRejections emitted %+v, want 2 requests at 10:01", evs)
	}
	if n := g.FlushRejections(); n != 0 {
		t.Errorf("a second FlushRejections emitted %d requests", n)
	}
}

// A flood of unauthenticated requests over loopback: at most a few
// events per group and minute, their counts the requests sent; the key
// that then comes has its whole quota, and its requests their own events.
func TestFloodOverLoopback(t *testing.T) {
	e := newEnv(t, strings.ReplaceAll(floodYAML, `"http://127.0.0.1:1"`, "{{UPSTREAM}}"))
	const perMinute, minutes = 300, 3
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	defer c.CloseIdleConnections()
	var wg sync.WaitGroup
	for m := range minutes {
		for w := range 4 {
			wg.Go(func() {
				for i := range perMinute / 4 {
					path := []string{"/prod/items", "/prod/nope", "/prod/items/7"}[(w+i)%3]
					req, _ := http.NewRequest([]string{"GET", "BREW"}[i%2], e.url+path, nil)
					if i%3 == 0 {
						req.Header.Set("x-api-key", fmt.Sprintf("not-a-key-%020d", i))
					}
					r, err := c.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					r.Body.Close()
					if r.StatusCode != 403 {
						t.Errorf("%s %s: %d, want 403", req.Method, path, r.StatusCode)
					}
				}
			})
		}
		wg.Wait()
		e.advance(time.Minute)
		if m < minutes-1 {
			e.gw.rejections.flush(e.clock.Load(), false, e, "") // as Run does
		}
	}
	if r := e.do("GET", "/prod/items", "x-api-key", "floodfloodfloodflood01"); r.status != 200 {
		t.Fatalf("the key after the flood: %d", r.status)
	}
	if r := e.do("GET", "/prod/items", "x-api-key", "floodfloodfloodflood01"); !strings.Contains(r.h.Get("RateLimit"), `"quota";r=98;`) {
		t.Errorf("the key's second request: RateLimit %q, want 98 of 100 left: the flood took no quota", r.h.Get("RateLimit"))
	}
	e.gw.FlushRejections()
	e.mu.Lock()
	evs := slices.Clone(e.events)
	e.mu.Unlock()
	var flood int64
	var floodEvents, keyed int
	for _, ev := range evs {
		if ev.KeyID != "" {
			keyed++
			continue
		}
		floodEvents++
		flood += ev.Requests()
	}
	// Groups: /items and /items/{id} with GET (forbidden) or BREW
	// (missing token, no resource), /nope with either (missing token).
	if flood != perMinute*minutes || floodEvents > 4*minutes || keyed != 2 {
		t.Errorf("%d events for %d flood requests and %d of the key; want %d flood requests in at most %d events, 2 of the key",
			floodEvents, flood, keyed, perMinute*minutes, 4*minutes)
	}
	slices.SortFunc(evs, func(a, b schemas.UsageEvent) int { return cmp.Compare(a.Time, b.Time) })
	t.Logf("%d requests in %d events", flood, floodEvents)
}

// Requests counted from many goroutines while minutes end and are
// flushed: every request is in exactly one event.
func TestRejectionsConcurrentCountsAreExact(t *testing.T) {
	sink := &events{}
	var clock atomic.Int64
	clock.Store(testEpoch.UnixNano())
	g, err := New(Config{Events: sink, Now: clock.Load}, testCatalog(t, floodYAML))
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 5000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		for {
			select {
			case <-stop:
				return
			default:
				g.rejections.flush(clock.Load(), false, sink, "")
			}
		}
	}()
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 9))
			tab := g.table.Load()
			for i := range each {
				now := clock.Add(1e7) // 10ms a request: minutes end while others count
				host, path, method, _ := randomRequest(r)
				var d decision
				tab.decide(&d, host, path, method, []string{fmt.Sprint("bad-key-", i)}, now)
				if !aggregated(&d) {
					d = decision{outcome: schemas.DecisionMissingToken}
				}
				g.emit(&d, method, now, now, 403, 0, 1)
			}
		})
	}
	wg.Wait()
	close(stop)
	<-flushed
	g.FlushRejections()
	var requests, bytesOut int64
	for _, e := range sink.take() {
		requests += e.Requests()
		bytesOut += e.BytesOut
	}
	if requests != workers*each || bytesOut != workers*each {
		t.Errorf("events stand for %d requests and %d bytes, want %d of each", requests, bytesOut, workers*each)
	}
}

// fullQueue refuses the first refuse offers, as a full event queue does.
type fullQueue struct {
	events
	refuse int
}

func (q *fullQueue) Offer(ev schemas.UsageEvent) bool {
	if q.refuse > 0 {
		q.refuse--
		return false
	}
	return q.events.Offer(ev)
}

// A counted event the queue refuses goes back into its cell and out with
// the next flush: counts stand for many requests, and are never dropped.
func TestRejectionsRefusedByAFullQueueAreKept(t *testing.T) {
	q := &fullQueue{refuse: 1}
	now := testEpoch.UnixNano() + 10e9
	g, err := New(Config{Events: q, Now: func() int64 { return now }}, testCatalog(t, floodYAML))
	if err != nil {
		t.Fatal(err)
	}
	for range 7 {
		var d decision
		g.table.Load().decide(&d, "h", "/prod/items", "GET", nil, now)
		g.emit(&d, "GET", now, now, 403, 0, 23)
	}
	if n := g.FlushRejections(); n != 0 {
		t.Fatalf("a flush the queue refused reported %d requests emitted", n)
	}
	if evs := q.take(); len(evs) != 0 {
		t.Fatalf("refused flush left %d events", len(evs))
	}
	if n := g.FlushRejections(); n != 7 {
		t.Fatalf("next flush emitted %d requests, want 7", n)
	}
	var got, out int64
	for _, ev := range q.take() {
		got += ev.Requests()
		out += ev.BytesOut
	}
	if got != 7 || out != 7*23 {
		t.Fatalf("stored %d requests, %d bytes out; want 7, %d", got, out, 7*23)
	}
}
