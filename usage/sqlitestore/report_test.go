package sqlitestore

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
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
	reports := rollupCases(from, to,
		map[string]string{"key": "k1"}, map[string]string{"plan": "pro", "stage": "prod"}, map[string]string{"api": "a2", "key": ""},
		map[string]string{"stage": "beta", "api": "a1"})
	requireTables(t, reports)
	reporttest.Check(t, s, minutes, reports)
}

// rollupCases are reporttest.Cases, and the same reports grouped by what
// usage_api_hour and usage_api_day hold (API, stage, decision) where
// Cases has them ungrouped: every rollup is read by some of them, filtered
// (by the filters given) and not.
func rollupCases(from, to int64, filters ...map[string]string) []usage.Report {
	out := reporttest.Cases(from, to, filters...)
	for _, r := range out {
		if len(r.GroupBy) > 0 {
			continue
		}
		for _, by := range [][]string{{"decision"}, {"stage", "api"}, {"api", "stage", "decision"}} {
			r.GroupBy = by
			out = append(out, r)
		}
	}
	return out
}

// requireTables fails t unless every table a report may read is the one
// reportTable picks for some of reports, and some of those reports read
// the per-API tables with a filter: so that the reports, checked against
// usage.Aggregate, check every table.
func requireTables(t *testing.T, reports []usage.Report) {
	t.Helper()
	picked := map[string]int{}
	filtered := map[string]int{}
	for _, r := range reports {
		picked[reportTable(r)]++
		if len(r.Filters) > 0 {
			filtered[reportTable(r)]++
		}
	}
	for _, table := range reportTables {
		if picked[table] == 0 {
			t.Errorf("no report reads %s (reports per table: %v)", table, picked)
		}
	}
	if filtered["usage_api_hour"] == 0 || filtered["usage_api_day"] == 0 {
		t.Errorf("no filtered report reads usage_api_hour or usage_api_day (filtered reports per table: %v)", filtered)
	}
}

// reportTables are the tables reportTable picks from.
var reportTables = []string{"usage_minute", "usage_hour", "usage_day", "usage_key_hour", "usage_key_day", "usage_api_hour", "usage_api_day"}

// Each report reads the coarsest table that holds what it groups by and
// filters on, at its buckets and range.
func TestReportTable(t *testing.T) {
	const d = 20000 * 1440 // a UTC midnight, in minutes
	month := usage.Report{FromMinute: d, ToMinute: d + 31*1440, Granularity: "hour"}
	with := func(r usage.Report, f func(*usage.Report)) usage.Report { f(&r); return r }
	tests := []struct {
		name string
		r    usage.Report
		want string
	}{
		{"by hour", month, "usage_api_hour"},
		{"by hour, by API, stage and decision", with(month, func(r *usage.Report) { r.GroupBy = []string{"decision", "api", "stage"} }), "usage_api_hour"},
		{"by hour, filtered on API and stage", with(month, func(r *usage.Report) { r.Filters = map[string]string{"api": "a", "stage": "s"} }), "usage_api_hour"},
		{"by hour, filtered on key", with(month, func(r *usage.Report) { r.Filters = map[string]string{"key": "k"} }), "usage_key_hour"},
		{"by hour, filtered on no key", with(month, func(r *usage.Report) { r.Filters = map[string]string{"key": ""} }), "usage_key_hour"},
		{"by hour, filtered on plan", with(month, func(r *usage.Report) { r.Filters = map[string]string{"plan": "p", "api": "a"} }), "usage_key_hour"},
		{"by hour and key", with(month, func(r *usage.Report) { r.GroupBy = []string{"key"} }), "usage_key_hour"},
		{"by hour and plan", with(month, func(r *usage.Report) { r.GroupBy = []string{"decision", "plan"} }), "usage_key_hour"},
		{"by hour and status", with(month, func(r *usage.Report) { r.GroupBy = []string{"status"} }), "usage_hour"},
		{"by hour and method, filtered on API", with(month, func(r *usage.Report) {
			r.GroupBy, r.Filters = []string{"method"}, map[string]string{"api": "a"}
		}), "usage_hour"},
		{"by hour and resource, filtered on key", with(month, func(r *usage.Report) {
			r.GroupBy, r.Filters = []string{"resource"}, map[string]string{"key": "k"}
		}), "usage_hour"},
		{"by hour, from inside an hour", with(month, func(r *usage.Report) { r.FromMinute++ }), "usage_minute"},
		{"by minute", with(month, func(r *usage.Report) { r.Granularity = "minute" }), "usage_minute"},
		{"by day", with(month, func(r *usage.Report) { r.Granularity = "day" }), "usage_api_day"},
		{"by month, by decision, filtered on stage", with(month, func(r *usage.Report) {
			r.Granularity, r.GroupBy, r.Filters = "month", []string{"decision"}, map[string]string{"stage": "s"}
		}), "usage_api_day"},
		{"by day, filtered on key", with(month, func(r *usage.Report) { r.Granularity, r.Filters = "day", map[string]string{"key": "k"} }), "usage_key_day"},
		{"by month and plan", with(month, func(r *usage.Report) { r.Granularity, r.GroupBy = "month", []string{"plan"} }), "usage_key_day"},
		{"by day and status", with(month, func(r *usage.Report) { r.Granularity, r.GroupBy = "day", []string{"status"} }), "usage_day"},
		{"by day, from an hour", with(month, func(r *usage.Report) { r.Granularity, r.FromMinute = "day", d+60 }), "usage_api_hour"},
		{"by day and key, from an hour", with(month, func(r *usage.Report) {
			r.Granularity, r.FromMinute, r.GroupBy = "day", d+60, []string{"key"}
		}), "usage_key_hour"},
		{"by day, to inside an hour", with(month, func(r *usage.Report) { r.Granularity, r.ToMinute = "day", d+61 }), "usage_minute"},
		{"by hour, before 1970", usage.Report{FromMinute: -3 * 1440, ToMinute: -1440, Granularity: "hour"}, "usage_api_hour"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := reportTable(tt.r); got != tt.want {
				t.Errorf("reportTable(%+v) = %s, want %s", tt.r, got, tt.want)
			}
		})
	}
}

// A report's query reads each of its tables by a range of its primary
// key: its rollup, the rollup's reportTails, usage_minute; it scans none.
func TestReportQueryPlans(t *testing.T) {
	s, _ := openTemp(t)
	const d = 20000 * 1440
	for _, r := range []usage.Report{
		{FromMinute: d, ToMinute: d + 2880, Granularity: "hour"},
		{FromMinute: d, ToMinute: d + 2880, Granularity: "hour", GroupBy: []string{"decision"}, Filters: map[string]string{"api": "a"}},
		{FromMinute: d, ToMinute: d + 2880, Granularity: "hour", GroupBy: []string{"key"}},
		{FromMinute: d, ToMinute: d + 2880, Granularity: "hour", GroupBy: []string{"status"}},
		{FromMinute: d, ToMinute: d + 2880, Granularity: "day"},
		{FromMinute: d, ToMinute: d + 2880, Granularity: "month", Filters: map[string]string{"key": "k"}},
		{FromMinute: d, ToMinute: d + 2880, Granularity: "day", GroupBy: []string{"resource"}},
		{FromMinute: d, ToMinute: d + 2880, Granularity: "minute"},
	} {
		table := reportTable(r)
		t.Run(table, func(t *testing.T) {
			q, args, err := reportQuery(r)
			if err != nil {
				t.Fatal(err)
			}
			plan := strings.Join(queryStrings(t, s, "EXPLAIN QUERY PLAN "+q, args...), "\n")
			tables := slices.Concat([]string{table}, reportTails[table])
			if table != "usage_minute" {
				tables = append(tables, "usage_minute")
			}
			for _, tbl := range tables {
				if want := "SEARCH " + tbl + " USING PRIMARY KEY (minute>? AND minute<?)"; !strings.Contains(plan, want) {
					t.Errorf("plan has no %q:\n%s", want, plan)
				}
			}
			if n := strings.Count(plan, "SEARCH usage_"); n != len(tables) {
				t.Errorf("plan reads %d tables, want %d (%v):\n%s", n, len(tables), tables, plan)
			}
			if strings.Contains(strings.ReplaceAll(plan, "SCAN (subquery", ""), "SCAN ") {
				t.Errorf("plan scans a table:\n%s", plan)
			}
		})
	}
}

// Each report reads the table reportTable picks for it and no other: with
// a rollup's rows below every mark made wrong (a million requests more),
// every report that another table answers is still right, and some
// report that this one answers is wrong, the month's ungrouped report by
// hour among them when the table is usage_api_hour. A report filtered on
// key or plan, or grouped by them, never reads usage_api_hour or
// usage_api_day.
func TestReportReadsItsTable(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	start := time.Date(2026, 10, 29, 0, 0, 0, 0, time.UTC)
	events := reportEvents(rand.New(rand.NewPCG(3, 4)), 1500, start, 4)
	slices.SortFunc(events, func(a, b schemas.UsageEvent) int { return cmp.Compare(a.Time, b.Time) })
	s.now = func() time.Time { return start.AddDate(0, 0, 5) }
	for b := range slices.Chunk(events, 100) {
		if err := s.InsertEvents(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	from := start.Unix() / 60
	marks := rollupMarksOf(t, s)
	below := slices.Min(slices.Collect(maps.Values(marks)))
	if below < from+3*1440 {
		t.Fatalf("marks %v: want all past the third day", marks)
	}
	minutes, err := s.Minutes(ctx, math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	reports := rollupCases(from, from+4*1440, map[string]string{"plan": "pro"},
		map[string]string{"api": "a1", "key": ""}, map[string]string{"api": "a2", "stage": "beta"})
	requireTables(t, reports)
	// Reports by minute read usage_minute only.
	reports = slices.DeleteFunc(reports, func(r usage.Report) bool { return reportTable(r) == "usage_minute" })
	wants := make([][]usage.ReportRow, len(reports))
	for i, r := range reports {
		wants[i] = usage.Aggregate(r, minutes)
	}
	hourly := usage.Report{FromMinute: from, ToMinute: from + 4*1440, Granularity: "hour"}
	for _, table := range reportTables[1:] {
		t.Run(table, func(t *testing.T) {
			const wrong = 1_000_000
			if _, err := s.db.Exec("UPDATE "+table+" SET requests = requests + ? WHERE minute < ?", wrong, below); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if _, err := s.db.Exec("UPDATE "+table+" SET requests = requests - ? WHERE minute < ?", wrong, below); err != nil {
					t.Fatal(err)
				}
			}()
			differ := 0
			for i, r := range reports {
				got, want := reporttest.Rows(t, s, r), wants[i]
				same := slices.EqualFunc(got, want, func(a, b usage.ReportRow) bool {
					return usage.CompareReportRows(a, b) == 0 && a.Requests == b.Requests && a.BytesIn == b.BytesIn &&
						a.BytesOut == b.BytesOut && a.LatencyMicrosSum == b.LatencyMicrosSum
				})
				if reportTable(r) != table && !same {
					t.Errorf("report [%d, %d) by %s, group by %v, filters %v (from %s) read %s", r.FromMinute, r.ToMinute,
						r.Granularity, r.GroupBy, r.Filters, reportTable(r), table)
				}
				if !same {
					differ++
				}
			}
			if differ == 0 {
				t.Errorf("no report read %s", table)
			}
			if table == "usage_api_hour" {
				// Each of the first hour's rows of usage_api_hour is a
				// million requests more.
				got, want := reporttest.Rows(t, s, hourly), usage.Aggregate(hourly, minutes)
				if len(got) == 0 || len(got) != len(want) || got[0].Requests <= want[0].Requests || (got[0].Requests-want[0].Requests)%wrong != 0 {
					t.Errorf("the report by hour did not read usage_api_hour: first rows %+v, want %+v and some millions of requests", got[:min(1, len(got))], want[:min(1, len(want))])
				}
			}
		})
	}
}

// rollupMarksOf returns the rollups' marks, by table.
func rollupMarksOf(t *testing.T, s *Store) map[string]int64 {
	t.Helper()
	rows, err := s.db.Query("SELECT tbl, until FROM rollup_marks")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var tbl string
		var until int64
		if err := rows.Scan(&tbl, &until); err != nil {
			t.Fatal(err)
		}
		out[tbl] = until
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkRollups fails t unless every rollup holds, below its mark, exactly
// usage_minute's rows summed per bucket and the rollup's dimensions, and
// nothing from its mark on; and unless each mark is at or below the mark
// of the table it is rolled up from. It returns the marks.
func checkRollups(t *testing.T, s *Store) map[string]int64 {
	t.Helper()
	marks := rollupMarksOf(t, s)
	for _, lag := range [][2]string{
		{"usage_key_hour", "usage_hour"}, {"usage_api_hour", "usage_key_hour"},
		{"usage_day", "usage_hour"}, {"usage_key_day", "usage_day"}, {"usage_api_day", "usage_key_day"},
	} {
		if marks[lag[0]] > marks[lag[1]] {
			t.Errorf("mark of %s (%d) is past the mark of %s (%d)", lag[0], marks[lag[0]], lag[1], marks[lag[1]])
		}
	}
	all := "key_id, plan_id, api_id, stage, method, resource, status, decision"
	for _, tt := range []struct {
		table, dims string
		period      int
	}{
		{"usage_hour", all, 60},
		{"usage_day", all, 1440},
		{"usage_key_hour", "key_id, plan_id, api_id, stage, decision", 60},
		{"usage_key_day", "key_id, plan_id, api_id, stage, decision", 1440},
		{"usage_api_hour", "api_id, stage, decision", 60},
		{"usage_api_day", "api_id, stage, decision", 1440},
	} {
		mark, ok := marks[tt.table]
		if !ok {
			t.Errorf("no mark for %s", tt.table)
			continue
		}
		if mark%int64(tt.period) != 0 {
			t.Errorf("mark of %s: %d is not on a bucket's start", tt.table, mark)
		}
		sums := "sum(requests), sum(bytes_in), sum(bytes_out), sum(latency_us_sum)"
		p := strconv.Itoa(tt.period)
		got := queryStrings(t, s, "SELECT minute, "+tt.dims+", "+sums+" FROM "+tt.table+" GROUP BY minute, "+tt.dims+" ORDER BY minute, "+tt.dims)
		want := queryStrings(t, s, "SELECT minute - (minute % "+p+" + "+p+") % "+p+" AS m, "+tt.dims+", "+sums+
			" FROM usage_minute WHERE minute < ? GROUP BY m, "+tt.dims+" ORDER BY m, "+tt.dims, mark)
		if !slices.Equal(got, want) {
			t.Errorf("%s (mark %d): %d rows, want %d rows (or they differ)", tt.table, mark, len(got), len(want))
		}
	}
	return marks
}

// queryStrings returns the rows of q, each formatted as one string.
func queryStrings(t *testing.T, s *Store, q string, args ...any) []string {
	t.Helper()
	rows, err := s.db.Query(q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%v", vals))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
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
	s = reopenAfter(t, s, path, "DROP TABLE usage_hour", "DROP TABLE usage_day", "DROP TABLE usage_key_day", "DROP TABLE usage_key_hour",
		"DROP TABLE usage_api_hour", "DROP TABLE usage_api_day", "DROP TABLE rollup_marks", "DROP TABLE usage_key_month",
		dropDailySplit[0], dropDailySplit[1], "PRAGMA user_version = 3")
	if err := s.InsertEvents(ctx, events[2000:]); err != nil {
		t.Fatal(err)
	}
	minutes, err := s.Minutes(ctx, math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	from := start.Unix() / 60
	checkRollups(t, s)
	reporttest.Check(t, s, minutes, rollupCases(from, from+3*1440, map[string]string{"key": "k2"}, map[string]string{"stage": "beta"}))
}

// A database of version 6 (before usage_api_hour and usage_api_day), its
// other rollups complete for days, gets the per-API ones with their marks
// at 0; the batches that follow roll up what it held, six hours (two
// days) a batch, until their marks reach usage_key_hour's
// (usage_key_day's). Reports answer the same all along: before the first
// batch (the per-API tables empty: read from usage_hour), while the marks
// catch up, and after. From version 5 (before usage_key_hour too), the
// per-API hours catch up behind the per-key ones, never past them.
// reopenAfter runs stmts on s (what an earlier version left: tables
// dropped, its user_version), closes it and opens path again, so that
// Open migrates what stmts left. The store it returns is closed at the
// end of the test.
func reopenAfter(t *testing.T, s *Store, path string, stmts ...string) *Store {
	t.Helper()
	for _, q := range stmts {
		if _, err := s.db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestAPIRollupsMigration(t *testing.T) {
	for _, version := range []int{6, 5} {
		t.Run(fmt.Sprint("from version ", version), func(t *testing.T) {
			testAPIRollupsMigration(t, version)
		})
	}
}

func testAPIRollupsMigration(t *testing.T, version int) {
	path := t.TempDir() + "/usage.db"
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := time.Date(2026, 10, 30, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return start.AddDate(0, 0, 4) }
	s.now = clock
	events := reportEvents(rand.New(rand.NewPCG(9, 10)), 3000, start, 3)
	slices.SortFunc(events, func(a, b schemas.UsageEvent) int { return cmp.Compare(a.Time, b.Time) })
	for b := range slices.Chunk(events[:2000], 100) {
		if err := s.InsertEvents(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	// What the version left: no usage_api_hour, no usage_api_day (nor
	// usage_key_hour, before 6), nor their marks.
	drop := []string{"DROP TABLE usage_api_hour", "DROP TABLE usage_api_day", "DROP TABLE usage_key_month", dropDailySplit[0], dropDailySplit[1],
		"DELETE FROM rollup_marks WHERE tbl IN ('usage_api_hour', 'usage_api_day')"}
	if version == 5 {
		drop = append(drop, "DROP TABLE usage_key_hour", "DELETE FROM rollup_marks WHERE tbl = 'usage_key_hour'")
	}
	s = reopenAfter(t, s, path, append(drop, fmt.Sprint("PRAGMA user_version = ", version))...)
	s.now = clock
	from := start.Unix() / 60
	marks := checkRollups(t, s)
	if marks["usage_api_hour"] != 0 || marks["usage_api_day"] != 0 || marks["usage_key_day"] < from+1440 || marks["usage_hour"] < from+1440 {
		t.Fatalf("marks after the migration: %v; want the per-API ones at 0, the others past the first day", marks)
	}
	reports := rollupCases(from, from+3*1440, map[string]string{"api": "a1"}, map[string]string{"key": "k1"})
	minutes, err := s.Minutes(ctx, math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	reporttest.Check(t, s, minutes, reports)

	batches := slices.Collect(slices.Chunk(events[2000:], 50))
	for i, b := range batches {
		if err := s.InsertEvents(ctx, b); err != nil {
			t.Fatal(err)
		}
		marks = checkRollups(t, s)
		if i > 0 {
			continue
		}
		// One batch: six hours of usage_api_hour (and of usage_key_hour,
		// from version 5), two days of usage_api_day.
		if got := marks["usage_api_hour"]; got != from+6*60 || (version == 6) != (got < marks["usage_key_hour"]) {
			t.Errorf("after a batch, usage_api_hour's mark is %s; want %s (six hours), usage_key_hour's is %s",
				time.Unix(got*60, 0).UTC(), start.Add(6*time.Hour), time.Unix(marks["usage_key_hour"]*60, 0).UTC())
		}
		if got := marks["usage_api_day"]; got != min(from+2*1440, marks["usage_key_day"]) {
			t.Errorf("after a batch, usage_api_day's mark is %s; want two days on, or usage_key_day's %s",
				time.Unix(got*60, 0).UTC(), time.Unix(marks["usage_key_day"]*60, 0).UTC())
		}
		if minutes, err = s.Minutes(ctx, math.MinInt64, math.MaxInt64); err != nil {
			t.Fatal(err)
		}
		reporttest.Check(t, s, minutes, reports)
	}
	if marks["usage_api_hour"] != marks["usage_key_hour"] || marks["usage_key_hour"] != marks["usage_hour"] ||
		marks["usage_api_day"] != marks["usage_key_day"] || marks["usage_api_day"] < from+2*1440 {
		t.Errorf("marks after the batches: %v; want the per-API ones caught up with the per-key ones, past the second day", marks)
	}
	if minutes, err = s.Minutes(ctx, math.MinInt64, math.MaxInt64); err != nil {
		t.Fatal(err)
	}
	reporttest.Check(t, s, minutes, reports)
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
	from := start.Unix() / 60
	marks := checkRollups(t, s)
	if len(marks) != len(reportTables)-1 {
		t.Errorf("marks of %d tables, want %d: %v", len(marks), len(reportTables)-1, marks)
	}
	for table, mark := range marks {
		if mark < from+3*1440 {
			t.Errorf("mark of %s: %s; want it past the third day", table, time.Unix(mark*60, 0).UTC())
		}
	}
	minutes, err := s.Minutes(ctx, math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	reporttest.Check(t, s, minutes, rollupCases(from, from+4*1440, map[string]string{"key": "k3"}, map[string]string{"api": "a2"}))
}
