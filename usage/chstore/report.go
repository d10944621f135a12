package chstore

import (
	"context"
	"fmt"
	"strconv"

	"github.com/tollgate/tollgate/internal/utc"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
)

// Report streams the rows of r (see usage.Report), computed by one
// aggregating query: the server reads the months and minutes of the range
// (partition and primary key), keeps the rows the filters name, sums the
// batches' rows and the buckets in one GROUP BY and sorts; the rows then
// stream, one at a time in Go.
func (s *Store) Report(ctx context.Context, r usage.Report, f func(*usage.ReportRow) error) error {
	q, args, ok, err := reportQuery(r)
	if err != nil || !ok {
		return err
	}
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("query usage report: %w", err)
	}
	defer rows.Close()
	return usage.ScanReport(rows, len(r.GroupBy), f)
}

// reportDialect is ClickHouse's SQL of the report values. The month comes
// from day (the minute's UTC day, a Date): no time zone functions, whose
// behaviour differs across server versions.
var reportDialect = usage.ReportDialect{
	Status: "toString(status)",
	Decision: "multiIf(decision = " + strconv.Itoa(int(schemas.DecisionAllowed)) + ", 'admitted', decision = " +
		strconv.Itoa(int(schemas.DecisionThrottled)) + ", 'throttled', decision = " +
		strconv.Itoa(int(schemas.DecisionQuotaExceeded)) + ", 'quota_exceeded', 'forbidden')",
	Month: "toInt64(toUInt16(toStartOfMonth(day))) * 1440",
}

// reportQuery returns Report's query; ok is false when no day of the
// range can hold rows.
func reportQuery(r usage.Report) (query string, args []any, ok bool, err error) {
	if err := r.Check(); err != nil {
		return "", nil, false, err
	}
	r.FromMinute = max(r.FromMinute, 0) // below: the tables' marker rows
	if r.FromMinute >= r.ToMinute {
		return "", nil, false, nil
	}
	from, to, ok := clampDays(utc.FloorDiv(r.FromMinute, 24*60), utc.FloorDiv(r.ToMinute-1, 24*60))
	if !ok {
		return "", nil, false, nil
	}
	query, args = reportDialect.Query(r, reportTable(r), "day BETWEEN ? AND ? AND minute >= ? AND minute < ?",
		[]any{dayArg(from), dayArg(to), r.FromMinute, r.ToMinute})
	return query, args, true, nil
}

// reportTable is the coarsest rollup that answers r exactly:
// usage_key_day when r's buckets are whole days (day, month), its range
// starts and ends on a UTC midnight and it groups by none of method,
// resource and status (filters never name them); usage_day when it does;
// usage_hour when they are whole hours on hour
// boundaries; else usage_minute. All three hold every event (InsertBatch
// writes them together), so only the rows read differ: a month of a key
// is 31 rows of usage_day, 744 of usage_hour, 44,640 of usage_minute.
func reportTable(r usage.Report) string {
	switch {
	case r.InWholeDays() && usage.KeyRollupDims(r.GroupBy):
		return "usage_key_day"
	case r.InWholeDays():
		return "usage_day"
	case r.InWholeHours():
		return "usage_hour"
	default:
		return "usage_minute"
	}
}
