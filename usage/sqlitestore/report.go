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
// aggregating query: the minute range is a range of usage_minute's
// primary key, the filters are in its WHERE, and SQLite groups, sums and
// orders; what Go holds is one row at a time.
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
	where := []string{"minute >= ?", "minute < ?"}
	args := []any{r.FromMinute, r.ToMinute}
	for _, d := range slices.Sorted(maps.Keys(r.Filters)) {
		where = append(where, reportColumns[d]+" = ?")
		args = append(args, r.Filters[d])
	}
	return "SELECT " + strings.Join(cols, ", ") +
		", sum(requests), sum(bytes_in), sum(bytes_out), sum(latency_us_sum)\nFROM usage_minute\nWHERE " +
		strings.Join(where, " AND ") + "\nGROUP BY " + strings.Join(group, ", ") + "\nORDER BY " + strings.Join(group, ", "), args, nil
}
