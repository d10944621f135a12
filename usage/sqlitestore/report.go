package sqlitestore

import (
	"context"
	"fmt"
	"strconv"

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

// reportTable is the coarsest rollup that answers r exactly: usage_day
// when r's buckets are whole days (day, month) and its range starts and
// ends on a UTC midnight, usage_hour when they are whole hours on hour
// boundaries, else usage_minute. A rollup is read below its mark and
// usage_minute from the mark on (see the schema), in one statement, so
// the answer is the sums of every minute row whatever the mark: only the
// rows read differ (a month of a key's usage is 31 rows of usage_day, 744
// of usage_hour or 44,640 of usage_minute).
func reportTable(r usage.Report) string {
	aligned := func(period int64) bool {
		return (r.FromMinute%period+period)%period == 0 && (r.ToMinute%period+period)%period == 0
	}
	switch {
	case (r.Granularity == "day" || r.Granularity == "month") && aligned(24*60):
		return "usage_day"
	case r.Granularity != "minute" && aligned(60):
		return "usage_hour"
	default:
		return "usage_minute"
	}
}

// reportSource is the FROM of r's query, the first conditions of its
// WHERE and their arguments: usage_minute's rows in the range (the table
// itself, so that the range is a range of its primary key), or a
// rollup's below its mark and usage_minute's from it on.
func reportSource(r usage.Report) (from, where string, args []any) {
	const cols = "minute, key_id, plan_id, api_id, stage, method, resource, status, decision, requests, bytes_in, bytes_out, latency_us_sum"
	table := reportTable(r)
	if table == "usage_minute" {
		return "usage_minute", "minute >= ? AND minute < ?", []any{r.FromMinute, r.ToMinute}
	}
	mark := "(SELECT until FROM rollup_marks WHERE tbl = '" + table + "')"
	return "(SELECT " + cols + " FROM " + table + " WHERE minute >= ? AND minute < ? AND minute < " + mark +
			"\nUNION ALL SELECT " + cols + " FROM usage_minute WHERE minute >= max(?, " + mark + ") AND minute < ?)", "1",
		[]any{r.FromMinute, r.ToMinute, r.FromMinute, r.ToMinute}
}

func reportQuery(r usage.Report) (string, []any, error) {
	if err := r.Check(); err != nil {
		return "", nil, err
	}
	from, cond, args := reportSource(r)
	q, args := reportDialect.Query(r, from, cond, args)
	return q, args, nil
}
