package enforcer

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/schemas"
)

// TestMetricsCountWhatTheGatewayAnswered holds the decision counters to
// the answers the clients got.
func TestMetricsCountWhatTheGatewayAnswered(t *testing.T) {
	e := newEnv(t, gwYAML)
	answers := map[int]int{}
	do := func(n int, path, key string) {
		for range n {
			answers[e.do("GET", path, "x-api-key", key).status]++
		}
	}
	do(3, "/prod/items", widget) // the burst: admitted
	do(2, "/prod/items", widget) // throttled
	e.advance(10 * time.Second)
	do(2, "/prod/items", widget)                  // admitted: the quota (5) is used up
	do(1, "/prod/items", widget)                  // quota exceeded
	do(4, "/prod/items", "unknown-key-000000001") // forbidden
	do(1, "/prod/nope", widget)                   // missing token, on the stage
	do(1, "/elsewhere", widget)                   // missing token, no stage
	if answers[200] != 5 || answers[429] != 3 || answers[403] != 6 {
		t.Fatalf("answers = %v", answers)
	}
	got := promtest.Gather(t, e.metrics)
	want := promtest.Series{
		`tollgate_gateway_requests_total{class="2xx",decision="allowed"}`:                               5,
		`tollgate_gateway_requests_total{class="4xx",decision="throttled"}`:                             2,
		`tollgate_gateway_requests_total{class="4xx",decision="quota_exceeded"}`:                        1,
		`tollgate_gateway_requests_total{class="4xx",decision="forbidden"}`:                             4,
		`tollgate_gateway_requests_total{class="4xx",decision="missing_token"}`:                         2,
		`tollgate_gateway_stage_requests_total{api="abc123api",decision="allowed",stage="prod"}`:        5,
		`tollgate_gateway_stage_requests_total{api="abc123api",decision="throttled",stage="prod"}`:      2,
		`tollgate_gateway_stage_requests_total{api="abc123api",decision="quota_exceeded",stage="prod"}`: 1,
		`tollgate_gateway_stage_requests_total{api="abc123api",decision="forbidden",stage="prod"}`:      4,
		`tollgate_gateway_stage_requests_total{api="abc123api",decision="missing_token",stage="prod"}`:  1,
		`tollgate_gateway_request_duration_seconds_count`:                                               14,
		`tollgate_gateway_upstream_duration_seconds_count`:                                              5,
	}
	for name, w := range want {
		if g := got[name]; g != w {
			t.Errorf("%s = %v, want %v", name, g, w)
		}
	}
	for name, v := range got.With("tollgate_gateway_requests_total") {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected series %s = %v", name, v)
		}
	}
	for name, v := range got.With("tollgate_gateway_upstream_failures_total") {
		if v != 0 {
			t.Errorf("%s = %v, want 0", name, v)
		}
	}
}

func TestMetricsCountUpstreamFailures(t *testing.T) {
	e := newEnv(t, gwYAML)
	if r := e.do("GET", "/prod/slow", "x-api-key", widget); r.status != 504 {
		t.Fatalf("slow upstream: %d", r.status)
	}
	e.upstream.Close()
	e.advance(time.Minute)
	if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 502 {
		t.Fatalf("closed upstream: %d", r.status)
	}
	got := promtest.Gather(t, e.metrics)
	for name, w := range map[string]float64{
		`tollgate_gateway_upstream_failures_total{reason="timeout"}`:                             1,
		`tollgate_gateway_upstream_failures_total{reason="error"}`:                               1,
		`tollgate_gateway_requests_total{class="5xx",decision="allowed"}`:                        2,
		`tollgate_gateway_upstream_duration_seconds_count`:                                       2,
		`tollgate_gateway_upstream_failures_total{reason="client_closed"}`:                       0,
		`tollgate_gateway_upstream_failures_total{reason="body_timeout"}`:                        0,
		`tollgate_gateway_upstream_failures_total{reason="body_too_large"}`:                      0,
		`tollgate_gateway_stage_requests_total{api="abc123api",decision="allowed",stage="prod"}`: 2,
	} {
		if g, ok := got[name]; !ok || g != w {
			t.Errorf("%s = %v (present %v), want %v", name, g, ok, w)
		}
	}
}

// TestMetricsLabelsAreBounded sends many distinct paths and keys: no
// label takes a path or a key, and the series stay as many.
func TestMetricsLabelsAreBounded(t *testing.T) {
	e := newEnv(t, gwYAML)
	e.do("GET", "/prod/items", "x-api-key", widget)
	before := len(promtest.Gather(t, e.metrics))
	for i := range 100 {
		e.do("GET", fmt.Sprintf("/prod/items/%d", i), "x-api-key", widget)
		e.do("GET", fmt.Sprintf("/prod/nope%d", i), "x-api-key", widget)
		e.do("GET", fmt.Sprintf("/x%d/items", i), "x-api-key", fmt.Sprintf("unknown-key-%08d", i))
		e.do("GET", "/prod/items", "x-api-key", fmt.Sprintf("unknown-key-%08d", i))
	}
	got := promtest.Gather(t, e.metrics)
	// At most every decision × class and every decision on the stage:
	// far below the 400 distinct requests.
	if len(got) > before+20 {
		t.Errorf("%d series after 400 distinct requests, %d before", len(got), before)
	}
	for name := range got {
		if strings.Contains(name, "nope") || strings.Contains(name, "unknown-key") || strings.Contains(name, "/items") || strings.Contains(name, widget) {
			t.Errorf("series %s names a path or a key", name)
		}
	}
}

func TestStageSlotsAreCapped(t *testing.T) {
	m := newMetrics()
	for i := range MaxMetricStages + 10 {
		s := m.stageSlot("api", fmt.Sprint("s", i))
		if want := min(i, otherStage); int(s) != want {
			t.Fatalf("stage %d: slot %d, want %d", i, s, want)
		}
	}
	if s := m.stageSlot("api", "s3"); s != 3 {
		t.Errorf("a stage seen again: slot %d, want 3", s)
	}
	d := decision{outcome: schemas.DecisionAllowed, stage: &stageRoute{slot: otherStage}}
	m.record(&d, 0, 1, 200)
	got := promtest.Gather(t, registryOf(t, m))
	if v := got[`tollgate_gateway_stage_requests_total{api="other",decision="allowed",stage="other"}`]; v != 1 {
		t.Errorf("other stage = %v, want 1", v)
	}
	if n := len(got.With("tollgate_gateway_stage_requests_total")); n != 1 {
		t.Errorf("%d stage series, want 1", n)
	}
}

// BenchmarkMetricsRecord is what the request path pays for metrics: a
// refusal (record) and an admitted request (recordUpstream and record).
func BenchmarkMetricsRecord(b *testing.B) {
	m := newMetrics()
	sr := &stageRoute{slot: m.stageSlot("api", "prod")}
	for _, bc := range []struct {
		name     string
		d        decision
		upstream bool
	}{
		{"refused", decision{outcome: schemas.DecisionForbidden, stage: sr}, false},
		{"admitted", decision{outcome: schemas.DecisionAllowed, stage: sr}, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			now := time.Now().UnixNano()
			for i := 0; b.Loop(); i++ {
				start := now + int64(i)*997
				if bc.upstream {
					m.recordUpstream(start, start+1000, start+2_000_000, upstreamOK)
				}
				m.record(&bc.d, start, start+2_000_000, 200)
			}
			if n := testing.AllocsPerRun(100, func() { m.record(&bc.d, now, now+1, 200) }); n != 0 {
				b.Fatalf("%v allocations per record", n)
			}
		})
	}
}
