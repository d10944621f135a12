package usage

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/schemas"
)

func TestBucketOf(t *testing.T) {
	minuteOf := func(s string) int64 {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm.Unix() / 60
	}
	for _, tt := range []struct {
		at, granularity, want string
	}{
		{"2026-11-27T10:37:00Z", "minute", "2026-11-27T10:37:00Z"},
		{"2026-11-27T10:37:00Z", "hour", "2026-11-27T10:00:00Z"},
		{"2026-11-27T10:37:00Z", "day", "2026-11-27T00:00:00Z"},
		{"2026-11-27T10:37:00Z", "month", "2026-11-01T00:00:00Z"},
		{"2024-02-29T23:59:00Z", "month", "2024-02-01T00:00:00Z"},
		{"2026-12-31T23:59:00Z", "month", "2026-12-01T00:00:00Z"},
		{"1969-12-31T23:59:00Z", "hour", "1969-12-31T23:00:00Z"}, // floors before 1970 too
		{"1969-12-31T23:59:00Z", "day", "1969-12-31T00:00:00Z"},
		{"1969-12-31T23:59:00Z", "month", "1969-12-01T00:00:00Z"},
	} {
		if got := BucketOf(minuteOf(tt.at), tt.granularity); got != minuteOf(tt.want) {
			t.Errorf("BucketOf(%s, %s) = %s, want %s", tt.at, tt.granularity, time.Unix(got*60, 0).UTC().Format(time.RFC3339), tt.want)
		}
	}
}

// Aggregate sums per bucket and dimension values, keeps the range and
// the filters, and orders rows by bucket, then values.
func TestAggregate(t *testing.T) {
	rows := []MinuteCount{
		{Minute: 1441, KeyID: "k2", PlanID: "p", Status: 200, Decision: schemas.DecisionAllowed, Requests: 2, BytesOut: 10},
		{Minute: 0, KeyID: "k1", PlanID: "p", Status: 429, Decision: schemas.DecisionThrottled, Requests: 1},
		{Minute: 5, KeyID: "k1", PlanID: "p", Status: 403, Decision: schemas.DecisionMissingToken, Requests: 4},
		{Minute: 6, KeyID: "k1", PlanID: "p", Status: 403, Decision: schemas.DecisionForbidden, Requests: 3},
		{Minute: 1440, KeyID: "k1", PlanID: "q", Status: 200, Decision: schemas.DecisionAllowed, Requests: 7, LatencyMicrosSum: 70},
		{Minute: 2880, KeyID: "k1", PlanID: "p", Status: 200, Decision: schemas.DecisionAllowed, Requests: 100}, // past the range
	}
	got := Aggregate(Report{FromMinute: 0, ToMinute: 2880, Granularity: "day", GroupBy: []string{"key", "decision"},
		Filters: map[string]string{"plan": "p"}}, rows)
	want := []ReportRow{
		{Bucket: 0, Dims: []string{"k1", "forbidden"}, Requests: 7}, // two decisions, one name
		{Bucket: 0, Dims: []string{"k1", "throttled"}, Requests: 1},
		{Bucket: 1440, Dims: []string{"k2", "admitted"}, Requests: 2, BytesOut: 10},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	for i := range got {
		if CompareReportRows(got[i], want[i]) != 0 || got[i].Requests != want[i].Requests || got[i].BytesOut != want[i].BytesOut {
			t.Errorf("row %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

// sliceRows is a ReportRows over rows of values, scanned by
// assignment (each destination is a pointer to its value's type).
type sliceRows struct {
	rows [][]any
	i    int
	err  error
}

func (r *sliceRows) Next() bool { r.i++; return r.i <= len(r.rows) }

func (r *sliceRows) Err() error { return r.err }

func (r *sliceRows) Scan(dest ...any) error {
	row := r.rows[r.i-1]
	if len(dest) != len(row) {
		return fmt.Errorf("%d destinations for %d columns", len(dest), len(row))
	}
	for i, v := range row {
		d := reflect.ValueOf(dest[i]).Elem()
		if d.Type() != reflect.TypeOf(v) {
			return fmt.Errorf("column %d: %T into %s", i, v, d.Type())
		}
		d.Set(reflect.ValueOf(v))
	}
	return nil
}

func TestScanMinutes(t *testing.T) {
	minuteRow := func(minute int64, key string, decision any) []any {
		return []any{minute, key, "p1", "a1", "prod", "GET", "/items", int32(200), decision, int64(3), int64(10), int64(20), int64(30)}
	}
	want := []MinuteCount{
		{Minute: 7, KeyID: "k1", PlanID: "p1", APIID: "a1", Stage: "prod", Method: "GET", Resource: "/items", Status: 200,
			Decision: schemas.DecisionAllowed, Requests: 3, BytesIn: 10, BytesOut: 20, LatencyMicrosSum: 30},
		{Minute: 8, KeyID: "k2", PlanID: "p1", APIID: "a1", Stage: "prod", Method: "GET", Resource: "/items", Status: 200,
			Decision: schemas.DecisionQuotaExceeded, Requests: 3, BytesIn: 10, BytesOut: 20, LatencyMicrosSum: 30},
	}
	collect := func(out *[]MinuteCount) func(*MinuteCount) error {
		return func(m *MinuteCount) error { *out = append(*out, *m); return nil }
	}
	for _, tc := range []struct {
		name     string
		decision func(schemas.Decision) any // the driver's value of the column
		scan     func(ReportRows, func(*MinuteCount) error) error
	}{
		{"uint8 decision", func(d schemas.Decision) any { return uint8(d) }, ScanMinutes[uint8]},
		{"int64 decision", func(d schemas.Decision) any { return int64(d) }, ScanMinutes[int64]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []MinuteCount
			rows := &sliceRows{rows: [][]any{
				minuteRow(7, "k1", tc.decision(schemas.DecisionAllowed)), minuteRow(8, "k2", tc.decision(schemas.DecisionQuotaExceeded))}}
			if err := tc.scan(rows, collect(&got)); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("got %+v, want %+v", got, want)
			}
		})
	}
	t.Run("errors", func(t *testing.T) {
		stop := errors.New("stop")
		calls := 0
		rows := &sliceRows{rows: [][]any{minuteRow(7, "k1", int64(1)), minuteRow(8, "k2", int64(1))}}
		err := ScanMinutes[int64](rows, func(*MinuteCount) error { calls++; return stop })
		if err != stop || calls != 1 {
			t.Fatalf("f's error: got %v after %d calls, want it as is after 1", err, calls)
		}
		rows = &sliceRows{rows: [][]any{minuteRow(7, "k1", "not a number")}}
		if err := ScanMinutes[int64](rows, collect(new([]MinuteCount))); err == nil || !strings.HasPrefix(err.Error(), "query minute usage: ") {
			t.Fatalf("scan error: got %v", err)
		}
		broken := errors.New("connection lost")
		rows = &sliceRows{err: broken}
		if err := ScanMinutes[int64](rows, collect(new([]MinuteCount))); !errors.Is(err, broken) {
			t.Fatalf("rows' error: got %v, want it wrapped", err)
		}
	})
}

func TestReportInWholeDaysAndHours(t *testing.T) {
	const day, hour = 24 * 60, 60
	tests := []struct {
		name                string
		from, to            int64
		granularity         string
		wantDays, wantHours bool
	}{
		{"days by day", 20000 * day, 20003 * day, "day", true, true},
		{"days by month", 20000 * day, 20031 * day, "month", true, true},
		{"days by hour", 20000 * day, 20003 * day, "hour", false, true},
		{"days by minute", 20000 * day, 20003 * day, "minute", false, false},
		{"hours by day", 20000*day + hour, 20003 * day, "day", false, true},
		{"hours by hour", 20000*day + hour, 20000*day + 5*hour, "hour", false, true},
		{"minutes by hour", 20000*day + 1, 20000*day + 5*hour, "hour", false, false},
		{"ends mid-hour", 20000 * day, 20001*day + 30, "day", false, false},
		{"before 1970, whole days", -3 * day, -day, "day", true, true},
		{"before 1970, mid-hour", -3*day - 30, -day, "hour", false, false},
	}
	for _, tt := range tests {
		r := Report{FromMinute: tt.from, ToMinute: tt.to, Granularity: tt.granularity}
		if got := r.InWholeDays(); got != tt.wantDays {
			t.Errorf("%s: InWholeDays %v, want %v", tt.name, got, tt.wantDays)
		}
		if got := r.InWholeHours(); got != tt.wantHours {
			t.Errorf("%s: InWholeHours %v, want %v", tt.name, got, tt.wantHours)
		}
	}
}

func TestKeyRollupDims(t *testing.T) {
	for _, tt := range []struct {
		dims []string
		want bool
	}{
		{nil, true},
		{[]string{"key", "plan", "api", "stage", "decision"}, true},
		{[]string{"key", "method"}, false},
		{[]string{"resource"}, false},
		{[]string{"api", "status"}, false},
	} {
		if got := KeyRollupDims(tt.dims); got != tt.want {
			t.Errorf("KeyRollupDims(%q) = %v, want %v", tt.dims, got, tt.want)
		}
	}
}
