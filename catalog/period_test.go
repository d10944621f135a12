package catalog

import (
	"testing"
	"time"
)

func ts(s string) int64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UnixNano()
}

func TestPeriodBounds(t *testing.T) {
	tests := []struct {
		name       string
		p          Period
		at         string
		start, end string
	}{
		{"day mid", Day, "2026-11-27T10:00:00Z", "2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z"},
		{"day last ns", Day, "2026-11-27T23:59:59.999999999Z", "2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z"},
		{"day midnight", Day, "2026-11-28T00:00:00Z", "2026-11-28T00:00:00Z", "2026-11-29T00:00:00Z"},
		{"week friday", Week, "2026-11-27T10:00:00Z", "2026-11-23T00:00:00Z", "2026-11-30T00:00:00Z"},
		{"week sunday night", Week, "2026-11-29T23:59:59Z", "2026-11-23T00:00:00Z", "2026-11-30T00:00:00Z"},
		{"week monday 00:00", Week, "2026-11-30T00:00:00Z", "2026-11-30T00:00:00Z", "2026-12-07T00:00:00Z"},
		{"week across year", Week, "2027-01-01T00:00:00Z", "2026-12-28T00:00:00Z", "2027-01-04T00:00:00Z"},
		{"week before epoch", Week, "1969-12-31T12:00:00Z", "1969-12-29T00:00:00Z", "1970-01-05T00:00:00Z"},
		{"month mid", Month, "2026-11-27T10:00:00Z", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"},
		{"month end", Month, "2026-11-30T23:59:59.999Z", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"},
		{"month december", Month, "2026-12-31T23:00:00Z", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"},
		{"february leap", Month, "2028-02-29T12:00:00Z", "2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z"},
		{"february common", Month, "2027-02-28T12:00:00Z", "2027-02-01T00:00:00Z", "2027-03-01T00:00:00Z"},
		{"feb 29 day", Day, "2028-02-29T23:00:00Z", "2028-02-29T00:00:00Z", "2028-03-01T00:00:00Z"},
		{"century non-leap", Month, "2100-02-28T00:00:00Z", "2100-02-01T00:00:00Z", "2100-03-01T00:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, e := tt.p.Bounds(ts(tt.at))
			if s != ts(tt.start) || e != ts(tt.end) {
				t.Errorf("Bounds(%s) = [%s, %s), want [%s, %s)", tt.at,
					time.Unix(0, s).UTC().Format(time.RFC3339), time.Unix(0, e).UTC().Format(time.RFC3339), tt.start, tt.end)
			}
		})
	}
}

// Every day from 1900 to 2200 round-trips through the calendar
// conversion, and period indexes are contiguous.
func TestCivilRoundTrip(t *testing.T) {
	start := time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	for d := start; d.Year() < 2200; d = d.AddDate(0, 0, 1) {
		days := d.Unix() / 86400
		y, m, dd := civil(days)
		if y != int64(d.Year()) || m != int64(d.Month()) || dd != int64(d.Day()) {
			t.Fatalf("civil(%d) = %d-%d-%d, want %s", days, y, m, dd, d.Format("2006-01-02"))
		}
		if got := daysFromCivil(y, m, dd); got != days {
			t.Fatalf("daysFromCivil(%s) = %d, want %d", d.Format("2006-01-02"), got, days)
		}
		if mi := Month.Index(d.UnixNano()); Month.Start(mi) > d.UnixNano() || Month.Start(mi+1) <= d.UnixNano() {
			t.Fatalf("month %d does not contain %s", mi, d)
		}
	}
}

func TestQuotaLimitAtOffset(t *testing.T) {
	created := ts("2026-11-27T10:00:00Z") / 1e9
	q := Quota{Limit: 100, Offset: 30, Period: Day}
	if got := q.LimitAt(Day.Index(ts("2026-11-27T23:00:00Z")), created); got != 70 {
		t.Errorf("creation period limit = %d, want 70", got)
	}
	if got := q.LimitAt(Day.Index(ts("2026-11-28T00:00:00Z")), created); got != 100 {
		t.Errorf("next period limit = %d, want 100", got)
	}
	q = Quota{Limit: 10, Offset: 10, Period: Month}
	if got := q.LimitAt(Month.Index(ts("2026-11-02T00:00:00Z")), created); got != 0 {
		t.Errorf("full offset limit = %d, want 0", got)
	}
}
