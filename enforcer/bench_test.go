package enforcer

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/schemas"
)

var testEpoch = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

const benchYAML = `
apis:
  - id: abc123api
    stages: [{name: prod, upstream: "http://127.0.0.1:1"}]
    resources:
      - path: /items
        methods: {GET: {apiKeyRequired: true}, POST: {apiKeyRequired: true}}
      - path: /items/{id}
        methods: {GET: {apiKeyRequired: true}}
usagePlans:
  - name: Big
    throttle: {rateLimit: 1000000000, burstLimit: 1000000000}
    quota: {limit: 1000000000000, period: MONTH}
    apiStages: [{apiId: abc123api, stage: prod, throttle: {"/items/POST": {rateLimit: 1000000000, burstLimit: 1000000000}}}]
apiKeys:
  - {name: k1, value: bench-key-00000000000000000001, enabled: true, usagePlans: [Big]}
`

// BenchmarkDecide measures the enforcer's own work for one admitted
// request: clock, route, key lookup (a verified-value cache hit: a known
// key is hashed once per catalog version), throttle, quota, building the
// usage event and handing it to the queue.
func BenchmarkDecide(b *testing.B) {
	benchDecide(b, "bench-key-00000000000000000001", "/prod/items/42", schemas.DecisionAllowed)
}

// BenchmarkDecideInAFleet is BenchmarkDecide on an enforcer of a fleet
// of three: the key's, stage's and gateway's buckets are scaled by its
// share (rate.go) on every request.
func BenchmarkDecideInAFleet(b *testing.B) {
	benchDecideWith(b, 3, "bench-key-00000000000000000001", "/prod/items/42", schemas.DecisionAllowed)
}

// BenchmarkDecideUnknownKey is the flood of one bad key: looked up,
// found in the keySet's remembered unknown values (hashed with SHA-256
// once), refused with 403 and counted in the rejections table.
// BenchmarkDecideUnknownKeys is the flood of ever-different bad keys,
// each hashed.
func BenchmarkDecideUnknownKey(b *testing.B) {
	benchDecide(b, "unknown-key-00000000000000000001", "/prod/items", schemas.DecisionForbidden)
}

// BenchmarkDecideMissingToken is the flood of undeclared paths: no key
// is hashed, so the metering is most of the cost.
func BenchmarkDecideMissingToken(b *testing.B) {
	benchDecide(b, "unknown-key-00000000000000000001", "/prod/nope", schemas.DecisionMissingToken)
}

func BenchmarkDecideUnknownKeys(b *testing.B) {
	g, err := New(Config{Events: discard{}}, testCatalog(b, benchYAML))
	if err != nil {
		b.Fatal(err)
	}
	t := g.table.Load()
	values := make([]string, 1<<16) // more than the keySet remembers
	for i := range values {
		values[i] = fmt.Sprintf("unknown-key-%020d", i)
	}
	keys := make([]string, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		keys[0] = values[i&(len(values)-1)]
		now := g.cfg.Now()
		var d decision
		t.decide(&d, "127.0.0.1:8080", "/prod/items", "GET", keys, now)
		if d.outcome != schemas.DecisionForbidden {
			b.Fatal(d.outcome)
		}
		g.emit(&d, "GET", now, now, 403, 0, 0)
	}
}

// BenchmarkDecideUnknownKeyParallel is the flood of bad keys from every
// core, all counted in one group of the rejections table.
func BenchmarkDecideUnknownKeyParallel(b *testing.B) {
	c := testCatalog(b, benchYAML)
	q := newEventBuffer(1 << 16)
	g, err := New(Config{Events: q}, c)
	if err != nil {
		b.Fatal(err)
	}
	t := g.table.Load()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		keys := []string{"unknown-key-00000000000000000001"}
		for pb.Next() {
			now := g.cfg.Now()
			var d decision
			t.decide(&d, "h", "/prod/items", "GET", keys, now)
			g.emit(&d, "GET", now, now, 403, 0, 23)
		}
	})
	b.StopTimer()
	if n := g.FlushRejections(); n == 0 {
		b.Fatal("nothing counted")
	}
}

func benchDecide(b *testing.B, key, path string, want schemas.Decision) {
	benchDecideWith(b, 1, key, path, want)
}

// benchDecideWith is benchDecide on an enforcer of a fleet of fleet.
func benchDecideWith(b *testing.B, fleet int, key, path string, want schemas.Decision) {
	c := testCatalog(b, benchYAML)
	q := newEventBuffer(1 << 16)
	g, err := New(Config{Events: q, Fleet: fleet}, c)
	if err != nil {
		b.Fatal(err)
	}
	t := g.table.Load()
	keys := []string{key}
	var buf []schemas.UsageEvent
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now := g.cfg.Now()
		var d decision
		t.decide(&d, "127.0.0.1:8080", path, "GET", keys, now)
		if d.outcome != want {
			b.Fatal(d.outcome)
		}
		g.emit(&d, "GET", now, now, 200, 0, 100)
		if i&1023 == 1023 {
			b.StopTimer()
			buf = q.Drain(buf[:0], 1<<16)
			b.StartTimer()
		}
	}
}

// BenchmarkDecideParallel runs the decision path from every core. With
// keys=1 all cores hammer one key, whose bucket and quota are single
// atomic words: this shows the cost of contention, and the final check
// proves no request was lost or admitted twice. With keys=1024 each
// goroutine walks the keys, as interleaved traffic from many consumers
// does. Events go to a sink that drops them, so that the benchmark adds
// no shared counter of its own (the queue is in BenchmarkDecide; on two
// cores a parallel producer/consumer benchmark of it measures scheduling
// more than the ring).
func BenchmarkDecideParallel(b *testing.B) {
	for _, nkeys := range []int{1, 1024} {
		b.Run(fmt.Sprintf("keys=%d", nkeys), func(b *testing.B) {
			y := benchYAML
			for i := 2; i <= nkeys; i++ {
				y += fmt.Sprintf("  - {name: k%d, value: bench-key-%020d, enabled: true, usagePlans: [Big]}\n", i, i)
			}
			c := testCatalog(b, y)
			g, err := New(Config{}, c)
			if err != nil {
				b.Fatal(err)
			}
			t := g.table.Load()
			keys := make([][]string, nkeys)
			for i := range keys {
				keys[i] = []string{fmt.Sprintf("bench-key-%020d", i+1)}
			}
			var seq, admitted atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(seq.Add(7919))
				n := int64(0)
				for pb.Next() {
					i++
					now := g.cfg.Now()
					var d decision
					t.decide(&d, "h", "/prod/items", "GET", keys[i%nkeys], now)
					if d.outcome != schemas.DecisionAllowed {
						b.Error(d.outcome)
						return
					}
					g.emit(&d, "GET", now, now, 200, 0, 0)
					n++
				}
				admitted.Add(n)
			})
			b.StopTimer()
			var used int64
			t.keys.byID.each(func(e *keyEntry) bool {
				used += t.plans[e.plans[0].plan].quota.used(&e.plans[0].state.quota, g.cfg.Now())
				return true
			})
			if used != admitted.Load() {
				b.Fatalf("quota counted %d, admitted %d", used, admitted.Load())
			}
		})
	}
}

// BenchmarkProxyAdmitted is one admitted request end to end over
// loopback: a keep-alive client, the gateway on its own listener (framing
// check, deadlines, metering) and an upstream, all in this process. Its
// allocations are the three's together; what matters is that the
// gateway's part does not grow.
func BenchmarkProxyAdmitted(b *testing.B) {
	for _, method := range []string{"GET", "POST"} {
		b.Run(method, func(b *testing.B) {
			e := newEnv(b, benchProxyYAML)
			req, _ := http.NewRequest(method, e.url+"/prod/items", nil)
			req.Header.Set("x-api-key", widget)
			body := []byte("0123456789")
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if method == "POST" {
					req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
				}
				r, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, r.Body)
				r.Body.Close()
				if r.StatusCode != 200 {
					b.Fatal(r.StatusCode)
				}
			}
		})
	}
}

var benchProxyYAML = strings.NewReplacer(
	"throttle: {rateLimit: 1, burstLimit: 3}", "throttle: {rateLimit: 1000000000, burstLimit: 1000000000}",
	"quota: {limit: 5, period: DAY}", "quota: {limit: 1000000000000, period: DAY}",
	`throttle: {"/items/POST": {rateLimit: 1, burstLimit: 1}}`, `throttle: {"/items/POST": {rateLimit: 1000000000, burstLimit: 1000000000}}`,
).Replace(gwYAML)
