// Package reporttest holds a store's reports to usage.Aggregate, the
// in-memory form of what every store computes in its own query: the
// stores' tests call Check on the rows they hold.
package reporttest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/usage"
)

// Store computes reports.
type Store interface {
	Report(ctx context.Context, r usage.Report, f func(*usage.ReportRow) error) error
}

// Cases are reports over [from, to) minutes at every granularity: no
// grouping, single dimensions, every dimension, with and without the
// filters given (dimension → a value the rows hold), over the whole range,
// over a part that starts and ends inside a bucket, and over its whole
// hours and its whole days (which a store may read from coarser rollups).
func Cases(from, to int64, filters ...map[string]string) []usage.Report {
	groupings := [][]string{nil, {"key"}, {"decision", "status"}, {"status"}, {"plan", "key"}, usage.Dimensions}
	ceil := func(m, p int64) int64 { return (m + p - 1) / p * p }
	ranges := [][2]int64{{from, to}, {from + 37, to - 1001}, {ceil(from, 60), to / 60 * 60}, {ceil(from, 1440), to / 1440 * 1440}}
	filters = append([]map[string]string{nil}, filters...)
	var out []usage.Report
	for _, g := range usage.Granularities {
		for _, by := range groupings {
			for _, f := range filters {
				for i, r := range ranges {
					if r[0] < r[1] {
						out = append(out, usage.Report{FromMinute: r[0], ToMinute: r[1], Granularity: g, GroupBy: by, Filters: f})
						if i == 0 {
							// A threshold that keeps some rows and drops others
							// (the requests of a row are a few to some
							// hundreds).
							out = append(out, usage.Report{FromMinute: r[0], ToMinute: r[1], Granularity: g, GroupBy: by, Filters: f, Over: 7})
						}
					}
				}
			}
		}
	}
	return out
}

// Rows returns s's answer to r, each row its own (Report reuses them).
func Rows(t testing.TB, s Store, r usage.Report) []usage.ReportRow {
	t.Helper()
	var out []usage.ReportRow
	err := s.Report(context.Background(), r, func(row *usage.ReportRow) error {
		c := *row
		c.Dims = slices.Clone(row.Dims)
		out = append(out, c)
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %v", describe(r), err)
	}
	return out
}

// Check fails t unless s answers each report with the rows
// usage.Aggregate computes from minutes (all of the store's minute rows),
// in the same order; it also fails if no report had rows (the cases would
// prove nothing).
func Check(t testing.TB, s Store, minutes []usage.MinuteCount, reports []usage.Report) {
	t.Helper()
	nonEmpty := 0
	for _, r := range reports {
		got := Rows(t, s, r)
		want := usage.Aggregate(r, minutes)
		if !slices.EqualFunc(got, want, func(a, b usage.ReportRow) bool {
			return usage.CompareReportRows(a, b) == 0 && a.Requests == b.Requests && a.BytesIn == b.BytesIn &&
				a.BytesOut == b.BytesOut && a.LatencyMicrosSum == b.LatencyMicrosSum
		}) {
			t.Fatalf("%s:\n got %d rows %s\nwant %d rows %s", describe(r), len(got), head(got), len(want), head(want))
		}
		if len(want) > 0 {
			nonEmpty++
		}
	}
	if nonEmpty == 0 {
		t.Fatal("no report had rows")
	}
}

func describe(r usage.Report) string {
	return fmt.Sprintf("report [%d, %d) by %s, group by %v, filters %v, over %d", r.FromMinute, r.ToMinute, r.Granularity, r.GroupBy, r.Filters, r.Over)
}

func head(rows []usage.ReportRow) string {
	var b strings.Builder
	for i, r := range rows {
		if i == 6 {
			b.WriteString(" ...")
			break
		}
		fmt.Fprintf(&b, " {%d %q %d %d %d %d}", r.Bucket, r.Dims, r.Requests, r.BytesIn, r.BytesOut, r.LatencyMicrosSum)
	}
	return b.String()
}
