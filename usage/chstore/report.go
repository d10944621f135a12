package chstore

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
	row := usage.ReportRow{Dims: make([]string, len(r.GroupBy))}
	dest := []any{&row.Bucket}
	for i := range row.Dims {
		dest = append(dest, &row.Dims[i])
	}
	dest = append(dest, &row.Requests, &row.BytesIn, &row.BytesOut, &row.LatencyMicrosSum)
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("query usage report: %w", err)
		}
		if err := f(&row); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query usage report: %w", err)
	}
	return nil
}

// reportColumns are the SQL of each dimension's value, as usage.DimValue
// gives it (the decision by its report name, the status as text), so
// that grouping and ordering are those of the values reports show.
var reportColumns = map[string]string{
	"key": "key_id", "plan": "plan_id", "api": "api_id", "stage": "stage", "method": "method", "resource": "resource",
	"status": "toString(status)",
	"decision": "multiIf(decision = " + strconv.Itoa(int(schemas.DecisionAllowed)) + ", 'admitted', decision = " +
		strconv.Itoa(int(schemas.DecisionThrottled)) + ", 'throttled', decision = " +
		strconv.Itoa(int(schemas.DecisionQuotaExceeded)) + ", 'quota_exceeded', 'forbidden')",
}

// reportBuckets are the SQL of each granularity's bucket, its first
// minute. The month comes from day (the minute's UTC day, a Date): no
// time zone functions, whose behaviour differs across server versions.
var reportBuckets = map[string]string{
	"minute": "minute",
	"hour":   "minute - (minute % 60 + 60) % 60", // floor, whatever the sign
	"day":    "minute - (minute % 1440 + 1440) % 1440",
	"month":  "toInt64(toUInt16(toStartOfMonth(day))) * 1440",
}

// reportQuery returns Report's query; ok is false when no day of the
// range can hold rows.
func reportQuery(r usage.Report) (query string, args []any, ok bool, err error) {
	if err := r.Check(); err != nil {
		return "", nil, false, err
	}
	from, to, ok := clampDays(floorDiv(r.FromMinute, 24*60), floorDiv(r.ToMinute-1, 24*60))
	if !ok {
		return "", nil, false, nil
	}
	cols := []string{reportBuckets[r.Granularity] + " AS b"}
	group := []string{"b"}
	for i, d := range r.GroupBy {
		alias := "d" + strconv.Itoa(i)
		cols = append(cols, reportColumns[d]+" AS "+alias)
		group = append(group, alias)
	}
	where := []string{"day BETWEEN ? AND ?", "minute >= ?", "minute < ?"}
	args = []any{dayArg(from), dayArg(to), r.FromMinute, r.ToMinute}
	for _, d := range slices.Sorted(maps.Keys(r.Filters)) {
		where = append(where, reportColumns[d]+" = ?")
		args = append(args, r.Filters[d])
	}
	return "SELECT " + strings.Join(cols, ", ") +
		", sum(requests), sum(bytes_in), sum(bytes_out), sum(latency_us_sum)\nFROM usage_minute\nWHERE " +
		strings.Join(where, " AND ") + "\nGROUP BY " + strings.Join(group, ", ") + "\nORDER BY " + strings.Join(group, ", "), args, true, nil
}
