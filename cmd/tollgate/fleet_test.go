package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tollgate/tollgate/ingest"
	"github.com/tollgate/tollgate/internal/kafkatest"
	"github.com/tollgate/tollgate/internal/poll"
	"github.com/tollgate/tollgate/schemas"
)

// fleetYAML has one plan whose limits no test reaches: these tests look
// at what the fleet admits, not at throttling.
const fleetYAML = `
apis:
  - id: fleetapi
    stages: [{name: prod, upstream: "{{UPSTREAM}}"}]
    resources:
      - path: /items
        methods: {GET: {apiKeyRequired: true}}
usagePlans:
  - name: Fleet
    throttle: {rateLimit: 100000, burstLimit: 100000}
    quota: {limit: 100000000, period: DAY}
    apiStages: [{apiId: fleetapi, stage: prod}]
apiKeys:
  - {name: widget, value: widgetwidgetwidget0001, enabled: true, usagePlans: [Fleet]}
`

type fleetNode struct {
	addrs  serveAddrs
	data   string
	stdout *bytes.Buffer
	cancel context.CancelFunc
	done   chan error
}

// fleet is a Kafka cluster (behind a proxy the test can cut) and the
// nodes a test starts on it.
type fleet struct {
	t       *testing.T
	kafka   kafkaOptions
	proxy   *kafkatest.Proxy
	dir     string
	config  string
	nodes   int
	logging bool
}

func newFleet(t *testing.T) *fleet {
	t.Helper()
	_, px, brokers := kafkatest.StartBehindProxy(t)
	f := &fleet{t: t, proxy: px, dir: t.TempDir(),
		kafka:   kafkaOptions{brokers: brokers, prefix: "tollgate.", partitions: 4, timeout: 2 * time.Second},
		logging: os.Getenv("FLEET_LOG") != ""} // FLEET_LOG=1 shows the nodes' logs
	k, err := f.kafka.config()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ingest.Migrate(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(up.Close)
	f.config = filepath.Join(f.dir, "fleet.yaml")
	if err := os.WriteFile(f.config, []byte(strings.ReplaceAll(fleetYAML, "{{UPSTREAM}}", up.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fleet) options(gateway, admin bool) options {
	f.nodes++
	o := options{kafka: f.kafka, gateway: gateway, admin: admin, dataDir: filepath.Join(f.dir, fmt.Sprintf("node%d", f.nodes)),
		listen: "127.0.0.1:0", queueSize: 1 << 16, flushEvery: 5 * time.Millisecond, spillMax: 1 << 30,
		drainTimeout: 10 * time.Second, node: fmt.Sprintf("node%d", f.nodes), shutdownTimeout: 10 * time.Second,
		adminRate: 1e6, adminBurst: 1e6}
	if admin {
		o.adminListen = "127.0.0.1:0"
	}
	return o
}

func (f *fleet) start(o options) *fleetNode {
	t := f.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	n := &fleetNode{data: o.dataDir, stdout: &bytes.Buffer{}, cancel: cancel, done: make(chan error, 1)}
	ready := make(chan serveAddrs, 1)
	logger := slog.New(slog.DiscardHandler)
	if f.logging {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", o.node)
	}
	go func() { n.done <- run(ctx, o, n.stdout, logger, ready) }()
	select {
	case n.addrs = <-ready:
	case err := <-n.done:
		cancel()
		t.Fatalf("node did not start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("node not listening after 30s")
	}
	t.Cleanup(func() { n.stop(t) })
	return n
}

func (n *fleetNode) stop(t *testing.T) {
	t.Helper()
	if n.cancel == nil {
		return
	}
	n.cancel()
	n.cancel = nil
	if err := <-n.done; err != nil {
		t.Errorf("node returned %v", err)
	}
}

// admin calls the admin API with the node's token.
func (n *fleetNode) admin(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+n.addrs.admin+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminCreds(t, n.data).Token)
	req.Header.Set("Content-Type", "application/json")
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var out map[string]any
	json.NewDecoder(r.Body).Decode(&out)
	return r.StatusCode, out
}

func (n *fleetNode) status(key string) int {
	req, _ := http.NewRequest("GET", "http://"+n.addrs.gateway+"/prod/items", nil)
	req.Header.Set("x-api-key", key)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, r.Body)
	r.Body.Close()
	return r.StatusCode
}

// waitStatus polls the gateway until key gets want.
func (n *fleetNode) waitStatus(t *testing.T, key string, want int, timeout time.Duration) {
	t.Helper()
	if err := n.statusWithin(key, want, timeout); err != nil {
		t.Fatal(err)
	}
}

// statusWithin is waitStatus for another goroutine than the test's: it
// returns the failure.
func (n *fleetNode) statusWithin(key string, want int, timeout time.Duration) error {
	return poll.Wait(timeout, time.Millisecond, fmt.Sprintf("gateway %s answers key %q with %d", n.addrs.gateway, key, want), func() error {
		if code := n.status(key); code != want {
			return fmt.Errorf("answered %d (0: no answer)", code)
		}
		return nil
	})
}

func planID(t *testing.T, admin *fleetNode, name string) string {
	t.Helper()
	code, out := admin.admin(t, "GET", "/usageplans", "")
	items, _ := out["item"].([]any)
	for _, it := range items {
		if m := it.(map[string]any); m["name"] == name {
			return m["id"].(string)
		}
	}
	t.Fatalf("usage plan %q not listed (%d %v)", name, code, out)
	return ""
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// A new key, a disabled key and a key added to a plan reach every
// enforcer within 1s (p99), measured from the admin API's answer to the
// first request the enforcer answers accordingly.
func TestFleetChangesReachEveryEnforcerWithin1s(t *testing.T) {
	f := newFleet(t)
	ao := f.options(false, true)
	ao.config = f.config
	admin := f.start(ao)
	var enforcers []*fleetNode
	for range 3 {
		enforcers = append(enforcers, f.start(f.options(true, false)))
	}
	for _, e := range enforcers {
		e.waitStatus(t, "widgetwidgetwidget0001", 200, 10*time.Second)
	}
	plan := planID(t, admin, "Fleet")
	var lags []time.Duration
	var mu sync.Mutex
	// measure waits until every enforcer answers want for key.
	measure := func(key string, want int) {
		answered := time.Now()
		var wg sync.WaitGroup
		for _, e := range enforcers {
			wg.Go(func() {
				if err := e.statusWithin(key, want, 10*time.Second); err != nil {
					t.Error(err) // not Fatal: this is not the test's goroutine
					return
				}
				mu.Lock()
				lags = append(lags, time.Since(answered))
				mu.Unlock()
			})
		}
		wg.Wait()
	}
	for i := range 10 {
		value := fmt.Sprintf("fleet-key-value-%04d", i)
		code, key := admin.admin(t, "POST", "/apikeys", `{"name":"k`+fmt.Sprint(i)+`","value":"`+value+`","enabled":true}`)
		if code != 201 {
			t.Fatalf("create-api-key: %d %v", code, key)
		}
		id := key["id"].(string)
		// A key in no plan is refused everywhere; added to the plan it
		// is admitted everywhere.
		if code, out := admin.admin(t, "POST", "/usageplans/"+plan+"/keys", `{"keyId":"`+id+`","keyType":"API_KEY"}`); code != 201 {
			t.Fatalf("create-usage-plan-key: %d %v", code, out)
		}
		measure(value, 200)
		if code, out := admin.admin(t, "PATCH", "/apikeys/"+id, `{"patchOperations":[{"op":"replace","path":"/enabled","value":"false"}]}`); code != 200 {
			t.Fatalf("update-api-key: %d %v", code, out)
		}
		measure(value, 403)
	}
	p50, p99 := percentile(lags, 0.5), percentile(lags, 0.99)
	t.Logf("config propagation over %d samples (3 enforcers): p50 %v, p99 %v, max %v", len(lags), p50, p99, percentile(lags, 1))
	if p99 > time.Second {
		t.Fatalf("p99 propagation %v, want <= 1s", p99)
	}
}

// Two admin APIs create keys with one value at once: one wins, the other
// gets 409, and every node ends with the same catalog.
func TestFleetConflictingWritesResolveIdentically(t *testing.T) {
	f := newFleet(t)
	ao := f.options(false, true)
	ao.config = f.config
	admins := []*fleetNode{f.start(ao), f.start(f.options(false, true))}
	nodes := slices.Clone(admins)
	for range 3 {
		nodes = append(nodes, f.start(f.options(true, false)))
	}
	for round := range 5 {
		value := fmt.Sprintf("contested-value-%04d", round)
		codes := make([]int, len(admins))
		var wg sync.WaitGroup
		for i, a := range admins {
			wg.Go(func() {
				codes[i], _ = a.admin(t, "POST", "/apikeys", fmt.Sprintf(`{"name":"r%d-a%d","value":"%s","enabled":true}`, round, i, value))
			})
		}
		wg.Wait()
		slices.Sort(codes)
		if !slices.Equal(codes, []int{201, 409}) {
			t.Fatalf("round %d: statuses %v, want one 201 and one 409", round, codes)
		}
	}
	// A last change through each admin marks the end of the log; then
	// every node's snapshot (written when it stops) must hold the same
	// records.
	for i, a := range admins {
		if code, _ := a.admin(t, "POST", "/apikeys", fmt.Sprintf(`{"name":"last-%d","value":"last-value-%012d","enabled":true}`, i, i)); code != 201 {
			t.Fatalf("last key through admin %d: %d", i, code)
		}
	}
	for _, e := range nodes[2:] {
		e.waitStatus(t, "last-value-000000000001", 403, 10*time.Second) // known, in no plan
	}
	// The admin nodes too: admin 0 reads its own writes at once, admin
	// 1's only when it has applied them.
	for i, a := range admins {
		poll.Until(t, 10*time.Second, time.Millisecond, fmt.Sprintf("admin %d lists last-1", i), func() bool {
			_, out := a.admin(t, "GET", "/apikeys?name=last-1", "")
			items, _ := out["item"].([]any)
			return len(items) == 1
		})
	}
	var want string
	for i, n := range nodes {
		n.stop(t)
		st, _, err := ingest.ReadCatalogSnapshot(filepath.Join(n.data, "catalog-snapshot.json"))
		if err != nil {
			t.Fatalf("node %d snapshot: %v", i, err)
		}
		b, err := json.Marshal(st.Catalog())
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			want = string(b)
			if got := st.NumKeys(); got != 1+5+2 {
				t.Fatalf("%d api keys, want 8 (widget, one per round, two last)", got)
			}
		} else if string(b) != want {
			t.Fatalf("node %d's catalog differs from node 0's:\n%s\n%s", i, b, want)
		}
	}
}

// readEvents reads the events topic from the start of every partition up
// to its end.
func readEvents(t *testing.T, k ingest.Kafka) []schemas.UsageEvent {
	t.Helper()
	c := &kafka.Client{Addr: kafka.TCP(k.Brokers...), Timeout: 5 * time.Second}
	topic := k.Topics().Events
	ctx := context.Background()
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		t.Fatal(err)
	}
	var out []schemas.UsageEvent
	for _, p := range md.Topics[0].Partitions {
		for off := int64(0); ; {
			res, err := c.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: p.ID, Offset: off, MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 10 * time.Millisecond})
			if err != nil || res.Error != nil {
				t.Fatalf("fetch %s/%d: %v %v", topic, p.ID, err, res.Error)
			}
			for {
				r, err := res.Records.ReadRecord()
				if err != nil {
					break
				}
				if r.Offset < off {
					continue
				}
				b, _ := kafka.ReadAll(r.Value)
				var e schemas.UsageEvent
				if err := schemas.DecodeUsageEvent(b, &e); err != nil {
					t.Fatalf("offset %d: %v", r.Offset, err)
				}
				out = append(out, e)
				off = r.Offset + 1
			}
			if off >= res.HighWatermark {
				break
			}
		}
	}
	return out
}

func distinctIDs(events []schemas.UsageEvent) int {
	ids := make(map[schemas.EventID]struct{}, len(events))
	for _, e := range events {
		ids[e.ID] = struct{}{}
	}
	return len(ids)
}

// load sends requests to the enforcers until stop closes, and records
// each one's latency by phase.
type load struct {
	mu      sync.Mutex
	phase   int
	lat     [3][]time.Duration // before, during and after the outage
	served  int
	failed  int
	statusN map[int]int
}

func (l *load) run(targets []*fleetNode, key string, workers int, stop <-chan struct{}) {
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				n := targets[(w+i)%len(targets)]
				req, _ := http.NewRequest("GET", "http://"+n.addrs.gateway+"/prod/items", nil)
				req.Header.Set("x-api-key", key)
				start := time.Now()
				r, err := client.Do(req)
				d := time.Since(start)
				l.mu.Lock()
				if err != nil {
					l.failed++
				} else {
					io.Copy(io.Discard, r.Body)
					r.Body.Close()
					l.served++
					l.statusN[r.StatusCode]++
					l.lat[l.phase] = append(l.lat[l.phase], d)
				}
				l.mu.Unlock()
				// A steady, bounded rate: ~2k requests/s over all
				// workers, enough to fill batches, far below the
				// machine's ceiling so latency reflects the gateway.
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	wg.Wait()
}

func (l *load) setPhase(p int) {
	l.mu.Lock()
	l.phase = p
	l.mu.Unlock()
}

// lostUsage sums the lost-usage records per node.
func lostUsage(t *testing.T, k ingest.Kafka) map[string]int64 {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: k.Brokers, Topic: k.Topics().LostUsage, Partition: 0, MaxWait: 10 * time.Millisecond})
	defer r.Close()
	c := &kafka.Client{Addr: kafka.TCP(k.Brokers...)}
	var hwm int64
	res, err := c.ListOffsets(context.Background(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		k.Topics().LostUsage: {kafka.LastOffsetOf(0)}}})
	if err != nil {
		t.Fatal(err)
	}
	hwm = res.Topics[k.Topics().LostUsage][0].LastOffset
	out := map[string]int64{}
	for i := int64(0); i < hwm; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		m, err := r.ReadMessage(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		var l schemas.LostUsage
		if err := schemas.DecodeLostUsage(m.Value, &l); err != nil {
			t.Fatal(err)
		}
		out[l.Node] += l.Count
	}
	return out
}

// The broker is unreachable (the network drops every byte) for 10s while
// three enforcers serve: requests keep their latency, and afterwards
// every request's event is in Kafka — counting distinct ids, since
// retries may write one twice — except those one enforcer with a tiny
// spill cap dropped, which it reports to the last byte as lost usage.
func TestFleetServesThroughABrokerOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("10s outage")
	}
	f := newFleet(t)
	ao := f.options(false, true)
	ao.config = f.config
	admin := f.start(ao)
	var enforcers []*fleetNode
	for i := range 3 {
		o := f.options(true, false)
		if i == 2 {
			o.spillMax = 64 << 10 // a few hundred events
		}
		enforcers = append(enforcers, f.start(o))
	}
	for _, e := range enforcers {
		e.waitStatus(t, "widgetwidgetwidget0001", 200, 10*time.Second)
	}
	l := &load{statusN: map[int]int{}}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { l.run(enforcers, "widgetwidgetwidget0001", 6, stop); close(done) }()
	phase := func(p int, d time.Duration) {
		l.setPhase(p)
		time.Sleep(d) // wall time is what this test is about: a 10s outage under load
	}
	phase(0, 2*time.Second)
	f.proxy.Blackhole(t)
	phase(1, 10*time.Second)
	f.proxy.Restore(t)
	phase(2, 2*time.Second)
	close(stop)
	<-done
	before, during := percentile(l.lat[0], 0.99), percentile(l.lat[1], 0.99)
	t.Logf("served %d requests (%v), %d failed; latency p99 before %v, during the outage %v, after %v",
		l.served, l.statusN, l.failed, before, during, percentile(l.lat[2], 0.99))
	if l.failed > 0 || l.statusN[200] != l.served {
		t.Fatalf("%d requests failed, statuses %v: the outage reached clients", l.failed, l.statusN)
	}
	if during > 2*before+50*time.Millisecond {
		t.Errorf("p99 latency during the outage %v, before %v: requests waited on Kafka", during, before)
	}
	// Stopping the enforcers hands the queue and the spill logs to Kafka.
	for _, e := range enforcers {
		e.stop(t)
	}
	k, _ := f.kafka.config()
	events := readEvents(t, k)
	lost := lostUsage(t, k)
	var widget []schemas.UsageEvent
	for _, e := range events {
		if e.KeyID != "" {
			widget = append(widget, e)
		}
	}
	distinct := distinctIDs(widget)
	var lostTotal int64
	for _, n := range lost {
		lostTotal += n
	}
	// A stop that ran out of --drain-timeout (a loaded machine) leaves
	// events in the spill log for the next start: accounted, not lost.
	var left int64
	for _, e := range enforcers {
		sp, err := ingest.OpenSpill(ingest.SpillConfig{Dir: filepath.Join(e.data, "spill")})
		if err != nil {
			t.Fatal(err)
		}
		left += sp.Len()
		sp.Close()
	}
	t.Logf("events in Kafka %d (%d distinct), lost usage reported %v, left in spill logs %d", len(widget), distinct, lost, left)
	// The waits before the load count too: they were requests.
	if int64(distinct)+lostTotal+left != int64(l.served+3) {
		t.Fatalf("%d distinct events + %d reported lost + %d in spill logs != %d requests served", distinct, lostTotal, left, l.served+3)
	}
	if lost[enforcers[2].nodeName()] == 0 || lostTotal != lost[enforcers[2].nodeName()] {
		t.Fatalf("lost usage %v: want drops from the small-cap enforcer only", lost)
	}
	// The admin node's usage store, loaded from the events topic, counts
	// each event once: duplicates from retries are dropped by id.
	poll.UntilOK(t, 30*time.Second, 20*time.Millisecond, "/v1/usage counts each distinct event once", func() error {
		if got := admittedUsage(t, admin); got != int64(distinct) {
			return fmt.Errorf("/v1/usage counts %d admitted requests, want %d (distinct events in Kafka)", got, distinct)
		}
		return nil
	})
}

// admittedUsage sums the admitted requests /v1/usage reports from
// yesterday to tomorrow.
func admittedUsage(t *testing.T, admin *fleetNode) int64 {
	t.Helper()
	day := time.Now().UTC().Truncate(24 * time.Hour)
	url := fmt.Sprintf("http://%s/v1/usage?from=%s&to=%s&group_by=decision&format=csv", admin.addrs.admin,
		day.Add(-24*time.Hour).Format(time.RFC3339), day.Add(48*time.Hour).Format(time.RFC3339))
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+adminCreds(t, admin.data).Token)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	rows, err := csv.NewReader(r.Body).ReadAll()
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("/v1/usage: %d %v", r.StatusCode, err)
	}
	var n int64
	for _, row := range rows[1:] {
		if row[1] == "admitted" {
			v, _ := strconv.ParseInt(row[2], 10, 64)
			n += v
		}
	}
	return n
}

func (n *fleetNode) nodeName() string { return filepath.Base(n.data) }

// An enforcer that starts while Kafka is unreachable serves from its
// snapshot; stopped with events still in its spill log, it keeps them on
// disk, and the next start replays them.
func TestEnforcerRestartReplaysItsSpillLog(t *testing.T) {
	f := newFleet(t)
	ao := f.options(false, true)
	ao.config = f.config
	f.start(ao)
	eo := f.options(true, false)
	eo.drainTimeout = 200 * time.Millisecond
	e := f.start(eo)
	e.waitStatus(t, "widgetwidgetwidget0001", 200, 10*time.Second)
	e.stop(t) // leaves a catalog snapshot

	f.proxy.Blackhole(t)
	e = f.start(eo)
	const n = 200
	for i := range n {
		if code := e.status("widgetwidgetwidget0001"); code != 200 {
			t.Fatalf("request %d with Kafka unreachable: %d, want 200 from the snapshot's catalog", i, code)
		}
	}
	e.stop(t) // the drain times out: the events stay in the spill log
	spill, err := ingest.OpenSpill(ingest.SpillConfig{Dir: filepath.Join(eo.dataDir, "spill")})
	if err != nil {
		t.Fatal(err)
	}
	pending := spill.Len()
	spill.Close()
	if pending == 0 {
		t.Fatal("nothing left in the spill log after a stop with Kafka unreachable")
	}

	f.proxy.Restore(t)
	e = f.start(eo)
	k, _ := f.kafka.config()
	poll.UntilOK(t, 30*time.Second, 50*time.Millisecond, "the restart replays the spill log into Kafka", func() error {
		if got := distinctIDs(readEvents(t, k)); got != n+1 {
			return fmt.Errorf("%d distinct events in Kafka, want %d (%d were spilled)", got, n+1, pending)
		}
		return nil
	})
}
