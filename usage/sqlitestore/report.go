package sqlitestore

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
)

// Report streams the rows of r (see usage.Report), computed by one
// aggregating query of the coarsest rollup that answers it (reportTable,
// with usage_minute past the rollup's mark): the minute range is a range
// of the tables' primary keys, the filters are in the WHERE, and SQLite
// groups, sums and orders; what Go holds is one row at a time.
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

// reportTable is the coarsest rollup that answers r exactly: when r's
// buckets are whole days (day, month) and its range starts and ends on a
// UTC midnight, usage_key_day if it groups by none of method, resource
// and status (filters never do), else usage_day; when they are whole hours
// on hour boundaries, usage_key_hour or usage_hour the same way; else
// usage_minute. A rollup is read below its mark and
// usage_minute from the mark on (see the schema), in one statement, so
// the answer is the sums of every minute row whatever the mark: only the
// rows read differ (a month of a key's usage is 31 rows of usage_day, 744
// of usage_hour or 44,640 of usage_minute).
func reportTable(r usage.Report) string {
	aligned := func(period int64) bool {
		return (r.FromMinute%period+period)%period == 0 && (r.ToMinute%period+period)%period == 0
	}
	switch {
	case (r.Granularity == "day" || r.Granularity == "month") && aligned(24*60) && keyDayDims(r.GroupBy):
		return "usage_key_day"
	case (r.Granularity == "day" || r.Granularity == "month") && aligned(24*60):
		return "usage_day"
	case r.Granularity != "minute" && aligned(60) && keyDayDims(r.GroupBy):
		return "usage_key_hour"
	case r.Granularity != "minute" && aligned(60):
		return "usage_hour"
	default:
		return "usage_minute"
	}
}

// keyDayDims reports whether usage_key_day and usage_key_hour hold the
// dimensions dims.
func keyDayDims(dims []string) bool {
	for _, d := range dims {
		if d == "method" || d == "resource" || d == "status" {
			return false
		}
	}
	return true
}

// reportSource is the FROM of r's query, the first conditions of its
// WHERE and their arguments: usage_minute's rows in the range (the table
// itself, so that the range is a range of its primary key); or the
// rollup's rows below its mark, usage_hour's from there to its own mark
// (marks only lag one another: key-day ≤ day ≤ hour), and usage_minute's
// from that on, so that the days or hours not rolled up yet (today's, at
// the end of a month's report) are read from the next coarsest table.
func reportSource(r usage.Report) (from, where string, args []any) {
	cols := "minute, key_id, plan_id, api_id, stage, method, resource, status, decision, requests, bytes_in, bytes_out, latency_us_sum"
	table := reportTable(r)
	if table == "usage_minute" {
		return "usage_minute", "minute >= ? AND minute < ?", []any{r.FromMinute, r.ToMinute}
	}
	if table == "usage_key_day" || table == "usage_key_hour" {
		cols = "minute, key_id, plan_id, api_id, stage, decision, requests, bytes_in, bytes_out, latency_us_sum"
	}
	mark := func(t string) string { return "(SELECT until FROM rollup_marks WHERE tbl = '" + t + "')" }
	parts := []string{"SELECT " + cols + " FROM " + table + " WHERE minute >= ? AND minute < ? AND minute < " + mark(table)}
	args = []any{r.FromMinute, r.ToMinute}
	lower := mark(table)
	if table != "usage_hour" {
		parts = append(parts, "SELECT "+cols+" FROM usage_hour WHERE minute >= max(?, "+lower+") AND minute < ? AND minute < "+mark("usage_hour"))
		args = append(args, r.FromMinute, r.ToMinute)
		lower = mark("usage_hour")
	}
	parts = append(parts, "SELECT "+cols+" FROM usage_minute WHERE minute >= max(?, "+lower+") AND minute < ?")
	args = append(args, r.FromMinute, r.ToMinute)
	return "(" + strings.Join(parts, "\nUNION ALL ") + ")", "1", args
}

func reportQuery(r usage.Report) (string, []any, error) {
	if err := r.Check(); err != nil {
		return "", nil, err
	}
	from, cond, args := reportSource(r)
	q, args := reportDialect.Query(r, from, cond, args)
	return q, args, nil
}
