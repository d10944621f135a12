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
// gives it: the decision by its report name, the status as text, so that
// grouping and ordering are those of the values reports show.
var reportColumns = map[string]string{
	"key": "key_id", "plan": "plan_id", "api": "api_id", "stage": "stage", "method": "method", "resource": "resource",
	"status": "CAST(status AS TEXT)",
	"decision": "CASE decision WHEN " + strconv.Itoa(int(schemas.DecisionAllowed)) + " THEN 'admitted' WHEN " +
		strconv.Itoa(int(schemas.DecisionThrottled)) + " THEN 'throttled' WHEN " +
		strconv.Itoa(int(schemas.DecisionQuotaExceeded)) + " THEN 'quota_exceeded' ELSE 'forbidden' END",
}

// reportBuckets are the SQL of each granularity's bucket, its first
// minute, as usage.BucketOf computes it.
var reportBuckets = map[string]string{
	"minute": "minute",
	"hour":   "minute - (minute % 60 + 60) % 60", // floor, also before 1970
	"day":    "minute - (minute % 1440 + 1440) % 1440",
	"month":  "CAST(strftime('%s', minute * 60, 'unixepoch', 'start of month') AS INTEGER) / 60",
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
	cols := []string{reportBuckets[r.Granularity] + " AS b"}
	group := []string{"b"}
	for i, d := range r.GroupBy {
		alias := "d" + strconv.Itoa(i)
		cols = append(cols, reportColumns[d]+" AS "+alias)
		group = append(group, alias)
	}
	from, cond, args := reportSource(r)
	where := []string{cond}
	for _, d := range slices.Sorted(maps.Keys(r.Filters)) {
		where = append(where, reportColumns[d]+" = ?")
		args = append(args, r.Filters[d])
	}
	return "SELECT " + strings.Join(cols, ", ") +
		", sum(requests), sum(bytes_in), sum(bytes_out), sum(latency_us_sum)\nFROM " + from + "\nWHERE " +
		strings.Join(where, " AND ") + "\nGROUP BY " + strings.Join(group, ", ") + "\nORDER BY " + strings.Join(group, ", "), args, nil
}
