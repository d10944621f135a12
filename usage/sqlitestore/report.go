package sqlitestore

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
)

// Report streams the rows of r (see usage.Report), computed by one
// aggregating query of the coarsest rollup that answers it (reportTable,
// with usage_hour and usage_minute past the rollup's mark: reportSource):
// the minute range is a range of the tables' primary keys, the filters
// are in the WHERE, and SQLite groups, sums and orders; what Go holds is
// one row at a time.
func (s *Store) Report(ctx context.Context, r usage.Report, f func(*usage.ReportRow) error) error {
	q, args, err := reportQuery(r)
	if err != nil {
		return err
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("query usage report: %w", err)
	}
	defer rows.Close()
	return usage.ScanReport(rows, len(r.GroupBy), f)
}

// reportDialect is SQLite's SQL of the report values.
var reportDialect = usage.ReportDialect{
	Status: "CAST(status AS TEXT)",
	Decision: "CASE decision WHEN " + strconv.Itoa(int(schemas.DecisionAllowed)) + " THEN 'admitted' WHEN " +
		strconv.Itoa(int(schemas.DecisionThrottled)) + " THEN 'throttled' WHEN " +
		strconv.Itoa(int(schemas.DecisionQuotaExceeded)) + " THEN 'quota_exceeded' ELSE 'forbidden' END",
	Month: "CAST(strftime('%s', minute * 60, 'unixepoch', 'start of month') AS INTEGER) / 60",
}

// reportTable is the coarsest rollup that answers r exactly. When r's
// buckets are whole days (day, month) and its range starts and ends on a
// UTC midnight: usage_api_day if r groups by and filters on API, stage
// and decision only (apiDims), else usage_key_day if it groups by none of
// method, resource and status (no filter names them), else usage_day.
// When they are whole hours on hour boundaries: usage_api_hour,
// usage_key_hour or usage_hour the same way. Else usage_minute. A rollup
// is read below its mark and finer tables from the mark on (see
// reportSource), in one statement, so the answer is the sums of every
// minute row whatever the marks: only the rows read differ (a month of a
// key's usage is 31 rows of usage_day, 744 of usage_hour or 44,640 of
// usage_minute; a month's totals by hour are a few rows an hour of
// usage_api_hour, where usage_key_hour has a few per key and hour).
func reportTable(r usage.Report) string {
	switch {
	case r.InWholeDays() && apiDims(r):
		return "usage_api_day"
	case r.InWholeDays() && usage.KeyRollupDims(r.GroupBy):
		return "usage_key_day"
	case r.InWholeDays():
		return "usage_day"
	case r.InWholeHours() && apiDims(r):
		return "usage_api_hour"
	case r.InWholeHours() && usage.KeyRollupDims(r.GroupBy):
		return "usage_key_hour"
	case r.InWholeHours():
		return "usage_hour"
	default:
		return "usage_minute"
	}
}

// apiDims reports whether usage_api_day and usage_api_hour hold what r
// groups by and filters on: API, stage and decision only. A filter on key
// or plan, even on "" (no key), needs the per-key tables.
func apiDims(r usage.Report) bool {
	for _, d := range r.GroupBy {
		if d != "api" && d != "stage" && d != "decision" {
			return false
		}
	}
	for d := range r.Filters {
		if d != "api" && d != "stage" {
			return false
		}
	}
	return true
}

// reportTails are the tables a report reads after its rollup, past the
// rollup's mark, each past the marks of those before it: the hour rollup
// of the same dimensions after a day rollup (a month's last day, not
// rolled up yet, is then 24 hours of usage_api_hour, not every key's and
// resource's rows of usage_hour), then usage_hour. usage_minute comes
// last, after them all.
var reportTails = map[string][]string{
	"usage_hour":     nil,
	"usage_key_hour": {"usage_hour"},
	"usage_api_hour": {"usage_hour"},
	"usage_day":      {"usage_hour"},
	"usage_key_day":  {"usage_key_hour", "usage_hour"},
	"usage_api_day":  {"usage_api_hour", "usage_hour"},
}

// reportSource is the FROM of r's query, the first conditions of its
// WHERE and their arguments: usage_minute's rows in the range (the table
// itself, so that the range is a range of its primary key); or the
// rollup's rows below its mark, then those of each of its reportTails
// from the highest mark of the tables before it to its own mark, and
// usage_minute's from the highest mark on, so that the days or hours not
// rolled up yet (today's, at the end of a month's report) are read from
// the next coarsest table. Each table is complete below its mark, and
// each minute of the range is read from exactly one table, the first
// whose mark is past it (or usage_minute), whatever the order of the
// marks: they only lag one another (api-hour <= key-hour <= hour, api-day
// <= key-day <= day <= hour), but a day rollup's mark may be past an hour
// rollup's (usage_api_day's past usage_api_hour's while a migrated
// database catches up). Only the columns the report groups by or
// filters on are read from each table (rawColumns).
//
// Each table's rows are summed per bucket and per the columns the report
// groups by and filters on before they are put together (bucket is the
// report's bucket of minute), and the report sums those sums: SQLite
// groups a few rows per key and bucket out of each table instead of
// carrying every row of the range through the union into one sort (a
// month of 1,000 keys' top consumers: 60,000 rows of usage_key_day
// grouped where they are read, in 95 ms rather than 230). A bucket's
// first minute is in the same bucket, so the outer query's bucket of it
// is itself.
func reportSource(r usage.Report, bucket string) (from, where string, args []any) {
	table := reportTable(r)
	if table == "usage_minute" {
		return "usage_minute", "minute >= ? AND minute < ?", []any{r.FromMinute, r.ToMinute}
	}
	dims, group := rawColumns(r), " GROUP BY 1"
	if dims != "" {
		group += ", " + dims
		dims += ", "
	}
	plain := "minute, " + dims + "requests, bytes_in, bytes_out, latency_us_sum"
	summed := bucket + " AS minute, " + dims + "sum(requests) AS requests, sum(bytes_in) AS bytes_in, " +
		"sum(bytes_out) AS bytes_out, sum(latency_us_sum) AS latency_us_sum"
	// arm reads t: summed where its rows are finer than the report's
	// buckets, else as they are (summing would only sort them twice).
	arm := func(t, where string) string {
		if grain[t] < granularityMinutes[r.Granularity] {
			return "SELECT " + summed + " FROM " + t + " WHERE " + where + group
		}
		return "SELECT " + plain + " FROM " + t + " WHERE " + where
	}
	// The filters in each table's WHERE too, on its stored columns: what
	// a table's rows are summed and sorted by is only the rows asked for
	// (a key's, a plan's), not every row of the range.
	filter, filterArgs := armFilters(r)
	mark := func(t string) string { return "(SELECT until FROM rollup_marks WHERE tbl = '" + t + "')" }
	var parts, before []string // before: the marks of the tables read so far
	for _, t := range append([]string{table}, reportTails[table]...) {
		lower := "?"
		if len(before) > 0 {
			lower = "max(?, " + strings.Join(before, ", ") + ")"
		}
		parts = append(parts, arm(t, "minute >= "+lower+" AND minute < ? AND minute < "+mark(t)+filter))
		args = append(append(args, r.FromMinute, r.ToMinute), filterArgs...)
		before = append(before, mark(t))
	}
	parts = append(parts, arm("usage_minute", "minute >= max(?, "+strings.Join(before, ", ")+") AND minute < ?"+filter))
	args = append(append(args, r.FromMinute, r.ToMinute), filterArgs...)
	return "(" + strings.Join(parts, "\nUNION ALL ") + ")", "1", args
}

// grain is the minutes of a table's rows; granularityMinutes a report's
// buckets' (a month counted as more than any day).
var (
	grain = map[string]int64{"usage_minute": 1, "usage_hour": 60, "usage_key_hour": 60, "usage_api_hour": 60,
		"usage_day": 1440, "usage_key_day": 1440, "usage_api_day": 1440}
	granularityMinutes = map[string]int64{"minute": 1, "hour": 60, "day": 1440, "month": 31 * 1440}
)

// armFilters is r's filters on the stored columns, as conditions to add
// to a table's WHERE, and their arguments.
func armFilters(r usage.Report) (string, []any) {
	var b strings.Builder
	var args []any
	for _, d := range slices.Sorted(maps.Keys(r.Filters)) {
		col := d
		if d != "stage" {
			col = d + "_id"
		}
		b.WriteString(" AND " + col + " = ?")
		args = append(args, r.Filters[d])
	}
	return b.String(), args
}

// rawColumns are the stored columns of what r groups by and filters on,
// in Dimensions' order (the decision and the status as stored; the
// report's query names them).
func rawColumns(r usage.Report) string {
	var cols []string
	for _, d := range usage.Dimensions {
		_, filtered := r.Filters[d]
		if !filtered && !slices.Contains(r.GroupBy, d) {
			continue
		}
		switch d {
		case "key", "plan", "api":
			cols = append(cols, d+"_id")
		default:
			cols = append(cols, d)
		}
	}
	return strings.Join(cols, ", ")
}

func reportQuery(r usage.Report) (string, []any, error) {
	if err := r.Check(); err != nil {
		return "", nil, err
	}
	d := reportDialect
	if r.Granularity == "month" {
		d.Month = monthBuckets(r.FromMinute, r.ToMinute)
	}
	from, cond, args := reportSource(r, d.Bucket(r.Granularity))
	q, args := d.Query(r, from, cond, args)
	return q, args, nil
}

// maxMonthCases bounds monthBuckets' CASE: past it, strftime's.
const maxMonthCases = 36

// monthBuckets is the month bucket of a row in [from, to) (Unix
// minutes) as comparisons with the months' first minutes, worked out
// here once: strftime on every row costs as much again as the rest of
// a report by month (top consumers over 30 days of 1,000 keys: 230 ms
// against 80). Ranges of more than maxMonthCases months keep strftime.
func monthBuckets(from, to int64) string {
	var starts []int64 // the first minute of each month the range meets
	for m := usage.BucketOf(from, "month"); m < to; m = usage.BucketOf(m+32*24*60, "month") {
		starts = append(starts, m)
		if len(starts) > maxMonthCases {
			return reportDialect.Month
		}
	}
	if len(starts) == 1 {
		return strconv.FormatInt(starts[0], 10)
	}
	var b strings.Builder
	b.WriteString("CASE")
	for i, m := range starts[:len(starts)-1] {
		fmt.Fprintf(&b, " WHEN minute < %d THEN %d", starts[i+1], m)
	}
	fmt.Fprintf(&b, " ELSE %d END", starts[len(starts)-1])
	return b.String()
}
