package sqlitestore

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
	"github.com/tollgate/tollgate/usage/reporttest"
)

// reportEvents returns n events over days days from start, across a few
// keys, plans, stages, methods, statuses and every decision.
func reportEvents(r *rand.Rand, n int, start time.Time, days int) []schemas.UsageEvent {
	keys := []string{"k1", "k2", "k3", "", "k10"}
	plans := []string{"free", "pro", ""}
	decisions := []schemas.Decision{schemas.DecisionAllowed, schemas.DecisionAllowed, schemas.DecisionForbidden,
		schemas.DecisionMissingToken, schemas.DecisionThrottled, schemas.DecisionQuotaExceeded, schemas.DecisionBadRequest}
	statuses := []int32{200, 200, 201, 403, 404, 429, 500, 99}
	span := int64(days) * 86400e9
	out := make([]schemas.UsageEvent, n)
	for i := range out {
		ns := start.UnixNano() + r.Int64N(span)
		out[i] = schemas.UsageEvent{ID: schemas.NewEventID(ns), Time: ns, APIID: []string{"a1", "a2"}[r.IntN(2)],
			Stage: []string{"prod", "beta"}[r.IntN(2)], KeyID: keys[r.IntN(len(keys))], PlanID: plans[r.IntN(len(plans))],
			Method: []string{"GET", "POST"}[r.IntN(2)], Resource: []string{"/items", "/items/{id}"}[r.IntN(2)],
			Status: statuses[r.IntN(len(statuses))], Decision: decisions[r.IntN(len(decisions))],
			LatencyMicros: r.Int64N(5000), BytesIn: r.Int64N(100), BytesOut: r.Int64N(10000)}
	}
	return out
}

// Every report the store computes in SQL is what usage.Aggregate computes
// from its minute rows: buckets of every granularity (a month boundary
// inside the range), groupings, filters, ranges that cut buckets.
func TestReportMatchesAggregate(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	start := time.Date(2026, 10, 29, 13, 0, 0, 0, time.UTC)
	events := reportEvents(rand.New(rand.NewPCG(1, 2)), 4000, start, 5)
	if err := s.InsertEvents(ctx, events); err != nil {
		t.Fatal(err)
	}
	minutes, err := s.Minutes(ctx, math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	from, to := start.Unix()/60, start.Unix()/60+5*1440
	reporttest.Check(t, s, minutes, reporttest.Cases(from, to,
		map[string]string{"key": "k1"}, map[string]string{"plan": "pro", "stage": "prod"}, map[string]string{"api": "a2", "key": ""}))
}

// A report that names what it cannot compute is refused, naming it.
func TestReportRefusesBadReports(t *testing.T) {
	s, _ := openTemp(t)
	for _, r := range []usage.Report{
		{FromMinute: 10, ToMinute: 10, Granularity: "day"},
		{FromMinute: 0, ToMinute: 10, Granularity: "week"},
		{FromMinute: 0, ToMinute: 10, Granularity: "day", GroupBy: []string{"node"}},
		{FromMinute: 0, ToMinute: 10, Granularity: "day", GroupBy: []string{"key", "key"}},
		{FromMinute: 0, ToMinute: 10, Granularity: "day", Filters: map[string]string{"status": "200"}},
	} {
		err := s.Report(context.Background(), r, func(*usage.ReportRow) error { return nil })
		if err == nil {
			t.Errorf("%+v: no error", r)
		}
	}
}
