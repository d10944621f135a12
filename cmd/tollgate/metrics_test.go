package main

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/poll"
	"github.com/tollgate/tollgate/internal/promtest"
)

// wantFamilies reports the families of want that s lacks.
func wantFamilies(t *testing.T, role string, s promtest.Series, want ...string) {
	t.Helper()
	have := s.Families()
	for _, f := range want {
		if !have[f] {
			t.Errorf("%s: /metrics has no %s", role, f)
		}
	}
}

// runtimeFamilies are on every role's /metrics.
var runtimeFamilies = []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes", "process_cpu_seconds_total"}

// TestEveryFleetRoleServesMetrics scrapes an enforcer, a report API on
// ClickHouse and an aggregator, each on its admin listener over HTTP,
// after traffic went through them.
func TestEveryFleetRoleServesMetrics(t *testing.T) {
	dsn := migratedClickHouse(t)
	f := newFleet(t)
	ao := f.options(false, true)
	ao.config, ao.clickhouse = f.config, dsn
	admin := f.start(ao)
	eo := f.options(true, false)
	eo.adminListen = "127.0.0.1:0"
	e := f.start(eo)
	aggAddr := startAggregatorAt(t, f, dsn, "127.0.0.1:0")
	aggData := filepath.Join(f.dir, "agg")

	for _, path := range []string{"/healthz", "/readyz"} {
		poll.UntilOK(t, 10*time.Second, 20*time.Millisecond, "the aggregator's "+path, func() error {
			if code, body := get(t, "http://"+aggAddr+path, ""); code != 200 {
				return fmt.Errorf("%d %s", code, body)
			}
			return nil
		})
	}
	if code, _ := get(t, "http://"+aggAddr+"/metrics", ""); code != 403 {
		t.Errorf("aggregator's metrics without credentials: %d, want 403", code)
	}

	const key = "widgetwidgetwidget0001"
	e.waitStatus(t, key, 200, 10*time.Second)
	for range 9 {
		if code := e.status(key); code != 200 {
			t.Fatalf("request: %d", code)
		}
	}
	for i := range 3 {
		if code := e.status(fmt.Sprintf("unknown-key-%08d", i)); code != 403 {
			t.Fatalf("unknown key: %d", code)
		}
	}
	scrape := func(addr, data string) promtest.Series {
		return promtest.Scrape(t, "http://"+addr+"/metrics", "Bearer "+adminCreds(t, data).Token)
	}
	// The aggregator stores the 10 admitted requests and signals the key.
	var agg promtest.Series
	poll.UntilOK(t, 20*time.Second, 50*time.Millisecond, "the aggregator stores the requests and signals the key", func() error {
		agg = scrape(aggAddr, aggData)
		if agg["tollgate_aggregator_events_stored_total"] < 10 || agg["tollgate_aggregator_signals_sent_total"] < 1 {
			return fmt.Errorf("stored %v, signals %v", agg["tollgate_aggregator_events_stored_total"], agg["tollgate_aggregator_signals_sent_total"])
		}
		return nil
	})
	wantFamilies(t, "aggregator", agg, append(runtimeFamilies, "tollgate_aggregator_events_stored_total", "tollgate_aggregator_batches_stored_total",
		"tollgate_aggregator_insert_duration_seconds", "tollgate_aggregator_dead_letters_total", "tollgate_aggregator_consumer_lag_records",
		"tollgate_aggregator_quota_keys", "tollgate_aggregator_signals_sent_total", "tollgate_config_offset", "tollgate_config_lag_records")...)
	if n := agg["tollgate_aggregator_quota_keys"]; n != 1 {
		t.Errorf("aggregator: %v keys under quota authority, want 1", n)
	}
	if n := len(agg.With("tollgate_aggregator_consumer_lag_records{")); n == 0 || n > f.kafka.partitions {
		t.Errorf("aggregator: lag of %d partitions, want 1 to %d", n, f.kafka.partitions)
	}

	var enf promtest.Series
	poll.UntilOK(t, 10*time.Second, 50*time.Millisecond, "the enforcer applies a signal", func() error {
		enf = scrape(e.addrs.admin, e.data)
		if enf["tollgate_signals_applied_total"] < 1 {
			return fmt.Errorf("signals applied %v", enf["tollgate_signals_applied_total"])
		}
		return nil
	})
	wantFamilies(t, "enforcer", enf, append(runtimeFamilies, "tollgate_gateway_requests_total", "tollgate_gateway_stage_requests_total",
		"tollgate_gateway_request_duration_seconds", "tollgate_gateway_upstream_duration_seconds", "tollgate_gateway_upstream_failures_total",
		"tollgate_usage_events_queued", "tollgate_usage_events_dropped_total", "tollgate_usage_events_produced_total",
		"tollgate_usage_events_spilled_total", "tollgate_usage_spilled_bytes_total", "tollgate_kafka_produce_duration_seconds",
		"tollgate_kafka_produce_failures_total", "tollgate_config_offset", "tollgate_config_lag_records",
		"tollgate_signals_received_total", "tollgate_signals_applied_total", "tollgate_signals_newest_age_seconds")...)
	// waitStatus stopped at the first 200; refusals before it, if any,
	// were 403s.
	if got := enf[`tollgate_gateway_requests_total{class="2xx",decision="allowed"}`]; got != 10 {
		t.Errorf("enforcer: %v admitted, want 10", got)
	}
	if got := enf[`tollgate_gateway_requests_total{class="4xx",decision="forbidden"}`]; got < 3 {
		t.Errorf("enforcer: %v forbidden, want at least 3", got)
	}

	code, _ := admin.admin(t, "POST", "/apikeys", `{"name":"another","enabled":true}`)
	if code != 201 {
		t.Fatalf("create-api-key: %d", code)
	}
	rep := scrape(admin.addrs.admin, admin.data)
	wantFamilies(t, "reportapi", rep, append(runtimeFamilies, "tollgate_admin_request_duration_seconds", "tollgate_audit_writes_total",
		"tollgate_config_offset", "tollgate_config_lag_records")...)
	if got := rep[`tollgate_admin_request_duration_seconds_count{class="2xx",method="POST",route="/apikeys"}`]; got != 1 {
		t.Errorf("reportapi: create-api-key timed %v times, want 1", got)
	}
	if got := rep[`tollgate_audit_writes_total{result="ok"}`]; got < 1 {
		t.Errorf("reportapi: %v audit writes, want at least the key's", got)
	}
	if _, ok := rep["tollgate_gateway_requests_total"]; ok {
		t.Error("reportapi shows a gateway's metrics")
	}
}
