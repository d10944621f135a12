package usage

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/internal/utc"
	"github.com/tollgate/tollgate/schemas"
)

// Dimensions are what a Report groups by, in the order /v1/usage lists
// them.
var Dimensions = []string{"key", "plan", "api", "stage", "method", "resource", "status", "decision"}

// FilterDimensions are the dimensions a Report narrows to one value.
var FilterDimensions = []string{"key", "plan", "api", "stage"}

// Granularities are a Report's time buckets, all in UTC.
var Granularities = []string{"minute", "hour", "day", "month"}

// Report is one aggregating read of the per-minute rollup: the rows with
// Minute in [FromMinute, ToMinute) that hold every Filters value, summed
// per time bucket and per value of the GroupBy dimensions. Every store
// computes it in its own query (a GROUP BY, filters in its WHERE) and
// streams the rows; Aggregate is the same in memory, the reference the
// stores' tests hold them to.
type Report struct {
	FromMinute, ToMinute int64
	Granularity          string            // one of Granularities
	GroupBy              []string          // Dimensions, each at most once
	Filters              map[string]string // FilterDimensions → value
	// Over, when above 0, keeps only the rows whose Requests exceed it
	// (the store's HAVING): billing's days over a quota, without the
	// days under it.
	Over int64
}

// InWholeDays reports whether rows by UTC day answer r: its buckets are
// days or months, and its range starts and ends on a UTC midnight.
func (r *Report) InWholeDays() bool {
	return (r.Granularity == "day" || r.Granularity == "month") && r.alignedTo(24*60)
}

// InWholeHours reports whether rows by UTC hour answer r: its buckets
// are hours or longer, and its range starts and ends on an hour.
func (r *Report) InWholeHours() bool {
	return r.Granularity != "minute" && r.alignedTo(60)
}

// alignedTo reports whether r's range starts and ends on a multiple of
// period minutes (floored, whatever the sign).
func (r *Report) alignedTo(period int64) bool {
	return (r.FromMinute%period+period)%period == 0 && (r.ToMinute%period+period)%period == 0
}

// KeyRollupDims reports whether the stores' per-key rollups
// (usage_key_day, usage_key_hour) hold the dimensions dims: they keep
// key, plan, API, stage and decision, and drop method, resource and
// status.
func KeyRollupDims(dims []string) bool {
	for _, d := range dims {
		if d == "method" || d == "resource" || d == "status" {
			return false
		}
	}
	return true
}

// ReportRow is one row of a Report. Rows come ordered by Bucket, then by
// Dims (bytewise, first dimension first).
type ReportRow struct {
	Bucket                                        int64    // the bucket's first minute (Unix minutes)
	Dims                                          []string // the values of GroupBy, as DimValue gives them
	Requests, BytesIn, BytesOut, LatencyMicrosSum int64
}

// Check reports what is wrong with r, naming the field.
func (r *Report) Check() error {
	if r.FromMinute >= r.ToMinute {
		return fmt.Errorf("report: minutes [%d, %d) are empty", r.FromMinute, r.ToMinute)
	}
	if !slices.Contains(Granularities, r.Granularity) {
		return fmt.Errorf("report: granularity %q is not one of %s", r.Granularity, strings.Join(Granularities, ", "))
	}
	for i, d := range r.GroupBy {
		if !slices.Contains(Dimensions, d) {
			return fmt.Errorf("report: group by %q: not one of %s", d, strings.Join(Dimensions, ", "))
		}
		if slices.Contains(r.GroupBy[:i], d) {
			return fmt.Errorf("report: group by %q twice", d)
		}
	}
	for d := range r.Filters {
		if !slices.Contains(FilterDimensions, d) {
			return fmt.Errorf("report: filter %q: not one of %s", d, strings.Join(FilterDimensions, ", "))
		}
	}
	if r.Over < 0 {
		return fmt.Errorf("report: over %d is negative", r.Over)
	}
	return nil
}

// DecisionName is the decision as reports show it: requests refused
// before a plan applied (403s and 400s) are all "forbidden".
func DecisionName(d schemas.Decision) string {
	switch d {
	case schemas.DecisionAllowed:
		return "admitted"
	case schemas.DecisionThrottled:
		return "throttled"
	case schemas.DecisionQuotaExceeded:
		return "quota_exceeded"
	default:
		return "forbidden"
	}
}

// DimValue is m's value of a dimension, as a Report groups it.
func DimValue(m *MinuteCount, dim string) string {
	switch dim {
	case "key":
		return m.KeyID
	case "plan":
		return m.PlanID
	case "api":
		return m.APIID
	case "stage":
		return m.Stage
	case "method":
		return m.Method
	case "resource":
		return m.Resource
	case "status":
		return strconv.Itoa(int(m.Status))
	default:
		return DecisionName(m.Decision)
	}
}

// BucketOf is the first minute of the bucket of the given granularity
// that holds minute (Unix minutes, UTC).
func BucketOf(minute int64, granularity string) int64 {
	switch granularity {
	case "minute":
		return minute
	case "hour":
		return utc.FloorDiv(minute, 60) * 60
	case "month": // the calendar month, as MONTH quotas count it
		return catalog.Month.Start(catalog.Month.Index(minute*60e9)) / 60e9
	default:
		return utc.FloorDiv(minute, 1440) * 1440
	}
}

// Aggregate computes r over minute rows held in memory, in any order:
// the simple form of what the stores compute in their queries.
func Aggregate(r Report, rows []MinuteCount) []ReportRow {
	type group struct {
		bucket int64
		dims   string
	}
	sums := map[group]*ReportRow{}
	for i := range rows {
		m := &rows[i]
		if m.Minute < r.FromMinute || m.Minute >= r.ToMinute {
			continue
		}
		if !matches(m, r.Filters) {
			continue
		}
		dims := make([]string, len(r.GroupBy))
		for j, d := range r.GroupBy {
			dims[j] = DimValue(m, d)
		}
		g := group{BucketOf(m.Minute, r.Granularity), strings.Join(dims, "\x00")}
		s := sums[g]
		if s == nil {
			s = &ReportRow{Bucket: g.bucket, Dims: dims}
			sums[g] = s
		}
		s.Requests += m.Requests
		s.BytesIn += m.BytesIn
		s.BytesOut += m.BytesOut
		s.LatencyMicrosSum += m.LatencyMicrosSum
	}
	out := make([]ReportRow, 0, len(sums))
	for _, s := range sums {
		if r.Over <= 0 || s.Requests > r.Over {
			out = append(out, *s)
		}
	}
	slices.SortFunc(out, CompareReportRows)
	return out
}

// CompareReportRows orders rows as reports come: by bucket, then by
// their dimension values, bytewise.
func CompareReportRows(a, b ReportRow) int {
	return cmp.Or(cmp.Compare(a.Bucket, b.Bucket), slices.Compare(a.Dims, b.Dims))
}

func matches(m *MinuteCount, filters map[string]string) bool {
	for d, v := range filters {
		if DimValue(m, d) != v {
			return false
		}
	}
	return true
}

// ReportRows is what a store's report query returns: database/sql's Rows
// and clickhouse-go's both have these.
type ReportRows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// ScanReport calls f with each row of rows, a report query of dims
// dimensions (ReportDialect.Query's columns: the bucket, the dimension
// values, the four sums). The row passed is reused: f keeps nothing of it.
func ScanReport(rows ReportRows, dims int, f func(*ReportRow) error) error {
	row := ReportRow{Dims: make([]string, dims)}
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

// ScanMinutes calls f with each row of rows, a minute rollup query whose
// columns are MinuteCount's in its order (minute, key, plan, API, stage,
// method, resource, status, decision, the four sums). D is the Go type
// the store's driver scans the decision column into (ClickHouse's UInt8,
// SQLite's INTEGER). The row passed is reused: f keeps nothing of it, and
// f's error stops the scan and is returned as it is.
func ScanMinutes[D uint8 | int64](rows ReportRows, f func(*MinuteCount) error) error {
	var (
		m        MinuteCount
		decision D
	)
	// Built once: a slice passed to the interface's Scan escapes.
	dest := []any{&m.Minute, &m.KeyID, &m.PlanID, &m.APIID, &m.Stage, &m.Method, &m.Resource,
		&m.Status, &decision, &m.Requests, &m.BytesIn, &m.BytesOut, &m.LatencyMicrosSum}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("query minute usage: %w", err)
		}
		m.Decision = schemas.Decision(decision)
		if err := f(&m); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query minute usage: %w", err)
	}
	return nil
}

// ReportDialect is what differs in a store's SQL of a report: the status
// as text and the decision by its report name (so that grouping and
// ordering are those of the values reports show, usage.DimValue's), and
// the first minute of a row's calendar month. The other dimensions are
// usage_minute's columns, and minute, hour and day buckets the same
// arithmetic everywhere (floored, whatever the sign).
type ReportDialect struct {
	Status, Decision, Month string
}

func (d ReportDialect) column(dim string) string {
	switch dim {
	case "status":
		return d.Status
	case "decision":
		return d.Decision
	case "key", "plan", "api":
		return dim + "_id"
	default:
		return dim
	}
}

// Bucket is the SQL of the first minute of a row's bucket.
func (d ReportDialect) Bucket(granularity string) string { return d.bucket(granularity) }

func (d ReportDialect) bucket(granularity string) string {
	switch granularity {
	case "minute":
		return "minute"
	case "hour":
		return "minute - (minute % 60 + 60) % 60"
	case "day":
		return "minute - (minute % 1440 + 1440) % 1440"
	default:
		return d.Month
	}
}

// Query is the SQL of r over from (a table or subquery with
// usage_minute's columns), whose rows cond (with args) selects: grouped
// by bucket and r.GroupBy, r.Filters in the WHERE, ordered as reports
// come.
func (d ReportDialect) Query(r Report, from, cond string, args []any) (string, []any) {
	cols := []string{d.bucket(r.Granularity) + " AS b"}
	group := []string{"b"}
	for i, dim := range r.GroupBy {
		alias := "d" + strconv.Itoa(i)
		cols = append(cols, d.column(dim)+" AS "+alias)
		group = append(group, alias)
	}
	where := []string{cond}
	for _, dim := range slices.Sorted(maps.Keys(r.Filters)) {
		where = append(where, d.column(dim)+" = ?")
		args = append(args, r.Filters[dim])
	}
	having := ""
	if r.Over > 0 {
		having = "\nHAVING sum(requests) > ?"
		args = append(args, r.Over)
	}
	return "SELECT " + strings.Join(cols, ", ") +
		", sum(requests), sum(bytes_in), sum(bytes_out), sum(latency_us_sum)\nFROM " + from + "\nWHERE " +
		strings.Join(where, " AND ") + "\nGROUP BY " + strings.Join(group, ", ") + having + "\nORDER BY " + strings.Join(group, ", "), args
}
