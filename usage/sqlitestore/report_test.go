package sqlitestore

import (
	"cmp"
	"context"
	"math"
	"math/rand/v2"
	"slices"
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

// A database of an earlier version (usage_minute only) gets usage_hour
// and usage_day, rolled up from what it holds by the batches that follow
// (a few hours a batch); reports meanwhile read the minutes past the
// marks, and answer the same.
func TestRollupsMigrationFillsHoursAndDays(t *testing.T) {
	path := t.TempDir() + "/usage.db"
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := time.Date(2026, 10, 30, 0, 0, 0, 0, time.UTC)
	events := reportEvents(rand.New(rand.NewPCG(5, 6)), 3000, start, 3)
	if err := s.InsertEvents(ctx, events[:2000]); err != nil {
		t.Fatal(err)
	}
	// What the version before them left: no usage_hour, no usage_day.
	for _, q := range []string{"DROP TABLE usage_hour", "DROP TABLE usage_day", "DROP TABLE usage_key_day", "DROP TABLE usage_key_hour", "DROP TABLE rollup_marks", "PRAGMA user_version = 3"} {
		if _, err := s.db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.InsertEvents(ctx, events[2000:]); err != nil {
		t.Fatal(err)
	}
	minutes, err := s.Minutes(ctx, math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	from := start.Unix() / 60
	reporttest.Check(t, s, minutes, reporttest.Cases(from, from+3*1440, map[string]string{"key": "k2"}))
}

// Events in any order, in small batches: each batch rolls up the hours
// and days its events have passed, and adds the rows of hours and days
// already rolled up (late events) to them directly; reports over whole
// hours and days, read from the rollups below their marks and minutes
// above, equal the sums of the minutes.
func TestRollupsWithLateEvents(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	start := time.Date(2026, 10, 30, 0, 0, 0, 0, time.UTC)
	r := rand.New(rand.NewPCG(7, 8))
	events := reportEvents(r, 6000, start, 4)
	// Mostly in time order, with a tenth of the events hours late.
	slices.SortFunc(events, func(a, b schemas.UsageEvent) int { return cmp.Compare(a.Time, b.Time) })
	for i := range events {
		if r.IntN(10) == 0 {
			j := min(len(events)-1, i+r.IntN(2000))
			events[i], events[j] = events[j], events[i]
		}
	}
	s.now = func() time.Time { return start.AddDate(0, 0, 4) }
	for b := range slices.Chunk(events, 50) {
		if err := s.InsertEvents(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	var hour, day int64
	var keyHour, keyDay int64
	if err := s.db.QueryRow("SELECT (SELECT until FROM rollup_marks WHERE tbl = 'usage_hour'), (SELECT until FROM rollup_marks WHERE tbl = 'usage_day'), "+
		"(SELECT until FROM rollup_marks WHERE tbl = 'usage_key_hour'), (SELECT until FROM rollup_marks WHERE tbl = 'usage_key_day')").Scan(&hour, &day, &keyHour, &keyDay); err != nil {
		t.Fatal(err)
	}
	from := start.Unix() / 60
	if hour < from+3*1440 || day < from+3*1440 || keyHour < from+3*1440 || keyDay < from+3*1440 {
		t.Fatalf("marks: hours to %s, days to %s; want both past the third day", time.Unix(hour*60, 0).UTC(), time.Unix(day*60, 0).UTC())
	}
	minutes, err := s.Minutes(ctx, math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	reporttest.Check(t, s, minutes, reporttest.Cases(from, from+4*1440, map[string]string{"key": "k3"}))
}
