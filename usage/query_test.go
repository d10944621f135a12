package usage

import (
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
