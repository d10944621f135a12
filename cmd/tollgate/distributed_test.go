package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/chtest"
	"github.com/tollgate/tollgate/internal/poll"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage/chstore"
	"github.com/tollgate/tollgate/usage/sqlitestore"
)

// The same traffic through the embedded mode (serve) and the distributed
// mode (3 enforcers, a report API on ClickHouse, an aggregator) gives the
// same GetUsage, /v1/usage request counts and billing report.
func TestDistributedReportsEqualEmbedded(t *testing.T) {
	dsn := migratedClickHouse(t)

	// Distributed: the fleet's report API on ClickHouse, 3 enforcers, an
	// aggregator.
	f := newFleet(t)
	ao := f.options(false, true)
	ao.config, ao.clickhouse = f.config, dsn
	admin := f.start(ao)
	var enforcers []*fleetNode
	for range 3 {
		enforcers = append(enforcers, f.start(f.options(true, false)))
	}
	startAggregator(t, f, dsn)

	// Embedded: serve on the same configuration file.
	embData := filepath.Join(f.dir, "embedded")
	now := time.Now()
	emb := start(t, embData, f.config, &now)

	for _, e := range enforcers {
		e.waitStatus(t, "widgetwidgetwidget0001", 200, 10*time.Second)
	}
	// The same requests to both: 3 warm-up requests went to the
	// enforcers above; send them to serve too, then 60 more to each side.
	traffic := func(send func(i int, key string) int) {
		for i := range 63 {
			key := "widgetwidgetwidget0001"
			if i%7 == 0 {
				key = "no-such-key-000000000" // 403s are metered too
			}
			send(i, key)
		}
	}
	traffic(func(i int, key string) int {
		code, _ := get(t, "http://"+emb.addrs.gateway+"/prod/items", key)
		return code
	})
	warm := 3 // the waits above sent three
	traffic(func(i int, key string) int {
		if warm > 0 && key == "widgetwidgetwidget0001" {
			warm--
			return 200
		}
		return enforcers[i%3].status(key)
	})
	// A flood without keys, to both: each side counts it per group and
	// minute, and its reports must still show every request.
	flood(t, "http://"+emb.addrs.gateway)
	for i, e := range enforcers {
		flood(t, "http://"+e.addrs.gateway, i)
	}
	emb.stop(t) // writes every event
	// Stopped, the enforcers hand their events to Kafka, the counts of
	// the minute under way included.
	for _, e := range enforcers {
		e.stop(t)
	}
	emb = start(t, embData, "", &now)

	embCreds := adminCreds(t, embData)
	read := func(addr, token, path string) string {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		if r.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, r.StatusCode, b)
		}
		return string(b)
	}
	day := time.Now().UTC().Format("2006-01-02")
	planOf := func(n *fleetNode, token string) (plan, key string) {
		var plans struct{ Item []struct{ ID, Name string } }
		json.Unmarshal([]byte(read(n.addrs.admin, token, "/usageplans")), &plans)
		var keys struct{ Item []struct{ ID, Name string } }
		json.Unmarshal([]byte(read(n.addrs.admin, token, "/apikeys?name=widget")), &keys)
		return plans.Item[0].ID, keys.Item[0].ID
	}
	embNode := &fleetNode{addrs: emb.addrs, data: embData}
	distToken := adminCreds(t, admin.data).Token
	// Ids differ between the two catalogs; reports are compared with
	// the ids replaced by names.
	normalize := func(s string, n *fleetNode, token string) string {
		plan, key := planOf(n, token)
		return strings.NewReplacer(plan, "PLAN", key, "KEY").Replace(s)
	}
	reports := func(n *fleetNode, token string) []string {
		plan, key := planOf(n, token)
		usage := read(n.addrs.admin, token, fmt.Sprintf("/usageplans/%s/usage?keyId=%s&startDate=%s&endDate=%s", plan, key, day, day))
		v1 := read(n.addrs.admin, token, fmt.Sprintf("/v1/usage?from=%sT00:00:00Z&to=%s&group_by=key,decision,status&format=csv",
			day, time.Now().UTC().Add(24*time.Hour).Format("2006-01-02T00:00:00Z")))
		bill := read(n.addrs.admin, token, "/v1/reports/billing?month="+time.Now().UTC().Format("2006-01"))
		return []string{normalize(usage, n, token), normalize(requestsOnly(v1), n, token), normalize(bill, n, token)}
	}
	want := reports(embNode, embCreds.Token)
	// Every request of the flood is in the reports: 9 of the traffic
	// above and the flood's were refused (for their key or their route:
	// /v1/usage calls both forbidden).
	v1 := read(emb.addrs.admin, embCreds.Token, fmt.Sprintf("/v1/usage?from=%sT00:00:00Z&to=%s&group_by=decision&format=csv",
		day, time.Now().UTC().Add(24*time.Hour).Format("2006-01-02T00:00:00Z")))
	if w := fmt.Sprintf(",forbidden,%d,", 9+floodForbidden+floodMissing); !strings.Contains(v1, w) {
		t.Errorf("embedded /v1/usage:\n%s\nwant a row with %s", v1, w)
	}
	// ...and costs a few stored events, not one per request.
	st, err := sqlitestore.Open(filepath.Join(embData, "usage.db"))
	if err != nil {
		t.Fatal(err)
	}
	evs, err := st.Events(context.Background(), 0, math.MaxInt64, 1<<20)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("embedded store: %d events without a key for %d requests", keyless(evs), 9+floodForbidden+floodMissing)
	if n := keyless(evs); n > floodGroups*3 {
		t.Errorf("embedded store: %d events without a key for %d requests, want at most %d", n, 9+floodForbidden+floodMissing, floodGroups*3)
	}
	poll.UntilOK(t, 30*time.Second, 100*time.Millisecond, "distributed reports equal embedded", func() error {
		if got := reports(admin, distToken); strings.Join(got, "\n") != strings.Join(want, "\n") {
			return fmt.Errorf("they differ:\n got %q\nwant %q", got, want)
		}
		return nil
	})
	cs, err := chstore.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	evs, err = cs.Events(context.Background(), 0, math.MaxInt64, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ClickHouse: %d events without a key for %d requests", keyless(evs), 9+floodForbidden+floodMissing)
	if n := keyless(evs); n > 3*floodGroups*3 {
		t.Errorf("ClickHouse: %d events without a key for %d requests, want at most %d", n, 9+floodForbidden+floodMissing, 3*floodGroups*3)
	}
}

// What flood sends: floodForbidden requests without a key to a declared
// route, floodMissing to an undeclared route or method, in floodGroups
// groups of the rejections table.
const (
	floodForbidden = 400
	floodMissing   = 2 * 400
	floodGroups    = 3
)

// flood sends the flood to a gateway, split among the parts enforcers
// given (none: all to this one).
func flood(t *testing.T, gateway string, part ...int) {
	t.Helper()
	c := &http.Client{}
	defer c.CloseIdleConnections()
	for i := range floodForbidden + floodMissing {
		if len(part) > 0 && i%3 != part[0] {
			continue
		}
		method, path := "GET", "/prod/items" // forbidden: no key
		switch i % 3 {
		case 1:
			path = "/prod/nope" // missing token
		case 2:
			method = "BREW" // missing token, method "OTHER"
		}
		wantForbidden(t, c, method, gateway+path)
	}
}

func keyless(evs []schemas.UsageEvent) int {
	n := 0
	for _, e := range evs {
		if e.KeyID == "" {
			n++
		}
	}
	return n
}

// requestsOnly keeps the columns of a /v1/usage CSV up to requests:
// latencies and sizes differ between two runs of the same traffic.
func requestsOnly(csv string) string {
	lines := strings.Split(strings.TrimSpace(csv), "\n")
	n := -1
	for i, c := range strings.Split(lines[0], ",") {
		if c == "requests" {
			n = i + 1
		}
	}
	if n < 0 {
		return csv
	}
	for i, line := range lines {
		if cols := strings.Split(line, ","); len(cols) >= n {
			lines[i] = strings.Join(cols[:n], ",")
		}
	}
	return strings.Join(lines, "\n")
}

// quotaYAML is one key on a plan with a quota of 10,000 a day.
const quotaYAML = `
apis:
  - id: quotaapi
    stages: [{name: prod, upstream: "{{UPSTREAM}}"}]
    resources:
      - path: /items
        methods: {GET: {apiKeyRequired: true}}
usagePlans:
  - name: Metered
    throttle: {rateLimit: 100000, burstLimit: 100000}
    quota: {limit: 10000, period: DAY}
    apiStages: [{apiId: quotaapi, stage: prod}]
apiKeys:
  - {name: shared, value: sharedsharedshared0001, enabled: true, usagePlans: [Metered]}
`

// fleetConfig writes yaml, with {{UPSTREAM}} the fleet's upstream, as
// the file name in the fleet's folder, and returns its path.
func (f *fleet) fleetConfig(name, yaml string) string {
	f.t.Helper()
	up := strings.Split(string(must(os.ReadFile(f.config))), "upstream: \"")[1]
	up = up[:strings.Index(up, "\"")]
	cfg := filepath.Join(f.dir, name)
	if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(yaml, "{{UPSTREAM}}", up)), 0o600); err != nil {
		f.t.Fatal(err)
	}
	return cfg
}

// startQuotaFleet runs quotaYAML on a fleet: a report API on ClickHouse,
// n enforcers and an aggregator.
func startQuotaFleet(t *testing.T, n int) (*fleet, *fleetNode, []*fleetNode) {
	t.Helper()
	dsn := migratedClickHouse(t)
	f := newFleet(t)
	cfg := f.fleetConfig("quota.yaml", quotaYAML)
	ao := f.options(false, true)
	ao.config, ao.clickhouse = cfg, dsn
	admin := f.start(ao)
	var enforcers []*fleetNode
	for range n {
		enforcers = append(enforcers, f.start(f.options(true, false)))
	}
	startAggregator(t, f, dsn)
	return f, admin, enforcers
}

// Three enforcers share a key at 3,000 requests/s in all into a quota of
// 10,000 a day: with the aggregator's signals and the enforcers' leases,
// the fleet admits at most 1% more than the quota.
func TestFleetQuotaOvershootUnder1Percent(t *testing.T) {
	if testing.Short() {
		t.Skip("6s of load")
	}
	_, _, enforcers := startQuotaFleet(t, 3)
	const key = "sharedsharedshared0001"
	for _, e := range enforcers {
		e.waitStatus(t, key, 200, 10*time.Second)
	}
	// Up to 1,000 requests/s to each enforcer (the quota is reached after
	// about 3.3 s at full rate), until 2 s after the first 429: on a
	// loaded machine the pacer delivers less, and the quota must be
	// reached for the test to say anything. At most 30 s.
	var admitted, sent, limitedAt atomic.Int64
	admitted.Add(3) // the waits
	var wg sync.WaitGroup
	start := time.Now()
	for _, e := range enforcers {
		jobs := make(chan struct{}, 64)
		for range 8 {
			wg.Go(func() {
				for range jobs {
					switch e.status(key) {
					case 200:
						admitted.Add(1)
					case 429:
						limitedAt.CompareAndSwap(0, time.Now().UnixNano())
					}
				}
			})
		}
		wg.Go(func() {
			defer close(jobs)
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for now := range tick.C {
				if at := limitedAt.Load(); now.Sub(start) > 30*time.Second || (at != 0 && now.UnixNano()-at > int64(2*time.Second)) {
					return
				}
				jobs <- struct{}{}
				sent.Add(1)
			}
		})
	}
	wg.Wait()
	got := admitted.Load()
	t.Logf("sent %d requests in %v, admitted %d into a quota of 10,000", sent.Load(), time.Since(start).Round(time.Millisecond), got)
	if limitedAt.Load() == 0 {
		t.Fatalf("no 429 in 30s (%d sent): the quota was never reached", sent.Load())
	}
	if got > 10_100 {
		t.Fatalf("admitted %d, more than 10,100 (1%% over the quota)", got)
	}
	if got < 9_000 {
		t.Fatalf("admitted %d: the fleet held back more than 10%% of the quota", got)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// UpdateUsage on a report API on ClickHouse reaches the enforcers: the
// aggregator reads the adjustment and signals the new state.
func TestUpdateUsageReachesTheFleet(t *testing.T) {
	_, admin, enforcers := startQuotaFleet(t, 1)
	e := enforcers[0]
	const key = "sharedsharedshared0001"
	e.waitStatus(t, key, 200, 10*time.Second)
	plan := planID(t, admin, "Metered")
	_, keys := admin.admin(t, "GET", "/apikeys?name=shared", "")
	id := keys["item"].([]any)[0].(map[string]any)["id"].(string)
	// The first request must be in the store for the adjustment to count
	// it: what the store holds is what remains is computed from.
	poll.UntilOK(t, 10*time.Second, 20*time.Millisecond, "the first request's usage is stored", func() error {
		code, out := admin.admin(t, "GET", fmt.Sprintf("/usageplans/%s/usage?keyId=%s&startDate=%s&endDate=%s", plan, id,
			time.Now().UTC().Format("2006-01-02"), time.Now().UTC().Format("2006-01-02")), "")
		if code != 200 || !strings.Contains(fmt.Sprint(out["values"]), "[[1 9999]]") {
			return fmt.Errorf("get-usage: %d %v", code, out)
		}
		return nil
	})
	if code, out := admin.admin(t, "PATCH", "/usageplans/"+plan+"/keys/"+id+"/usage", `{"patchOperations":[{"op":"replace","path":"/remaining","value":"2"}]}`); code != 200 {
		t.Fatalf("update-usage: %d %v", code, out)
	}
	// Within the aggregator's refresh (1s) and a signal, the enforcer
	// refuses (what it admits meanwhile is counted, and is over the 2).
	patched := time.Now()
	admitted := 0
	poll.UntilOK(t, 5*time.Second, 5*time.Millisecond, "a 429 once update-usage set remaining to 2", func() error {
		switch e.status(key) {
		case 429:
			return nil
		case 200:
			admitted++
		}
		return fmt.Errorf("%d admitted since", admitted)
	})
	t.Logf("admitted %d after update-usage, until the signal arrived %v later", admitted, time.Since(patched))
}

// migratedClickHouse returns the DSN of a database of the test's own with
// the schema applied.
func migratedClickHouse(t *testing.T) string {
	t.Helper()
	dsn := chtest.Database(t)
	st, err := chstore.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return dsn
}

// startAggregator runs tollgate aggregator on the fleet until the test
// ends.
func startAggregator(t *testing.T, f *fleet, dsn string) { startAggregatorAt(t, f, dsn, "") }

// startAggregatorAt is startAggregator with --admin-listen adminListen;
// it returns the listener's address ("" without one).
func startAggregatorAt(t *testing.T, f *fleet, dsn, adminListen string) string {
	t.Helper()
	addr, _ := startAggregatorWith(t, f, aggregatorOptions{clickhouse: dsn, adminListen: adminListen})
	return addr
}

// startAggregatorWith runs tollgate aggregator on the fleet with o (its
// Kafka, data folder, group and flushing set here) until stop is called
// or the test ends; it returns the admin listener's address ("" without
// one).
func startAggregatorWith(t *testing.T, f *fleet, o aggregatorOptions) (addr string, stop func()) {
	t.Helper()
	o.kafka, o.dataDir, o.group = f.kafka, filepath.Join(f.dir, "agg"), "tollgate-aggregator"
	o.flushInterval, o.flushEvents = 100*time.Millisecond, 1<<16
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan string, 1)
	go func() { done <- runAggregator(ctx, o, io.Discard, slog.New(slog.DiscardHandler), ready) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("aggregator: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	if o.adminListen == "" {
		return "", stop
	}
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("aggregator did not start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("aggregator's admin listener not listening after 30s")
	}
	return addr, stop
}
