package usage

import (
	"reflect"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
)

func day(s string) int64 {
	d, err := ParseDay(s)
	if err != nil {
		panic(err)
	}
	return d
}

func TestValues(t *testing.T) {
	created := time.Date(2026, 10, 15, 0, 0, 0, 0, time.UTC).Unix()
	rows := []DayCount{
		{Day: day("2026-11-20"), PlanID: "p", KeyID: "k", Admitted: 10},
		{Day: day("2026-11-23"), PlanID: "p", KeyID: "k", Admitted: 5, Rejected: 7}, // Monday
		{Day: day("2026-11-24"), PlanID: "p", KeyID: "k", Admitted: 3},
		{Day: day("2026-11-24"), PlanID: "p", KeyID: "k", Adjustment: 20},
		{Day: day("2026-11-24"), PlanID: "p", KeyID: "other", Admitted: 50},
		{Day: day("2026-11-24"), PlanID: "q", KeyID: "k", Admitted: 50},
	}
	tests := []struct {
		name     string
		quota    *catalog.Quota
		from, to string
		want     [][2]int64
	}{
		{"day", &catalog.Quota{Limit: 100, Period: catalog.Day}, "2026-11-23", "2026-11-25",
			[][2]int64{{5, 95}, {3, 77}, {0, 100}}},
		{"week counts earlier days of the week", &catalog.Quota{Limit: 100, Period: catalog.Week}, "2026-11-24", "2026-11-25",
			[][2]int64{{3, 72}, {0, 72}}},
		{"week boundary resets", &catalog.Quota{Limit: 100, Period: catalog.Week}, "2026-11-20", "2026-11-23",
			[][2]int64{{10, 90}, {0, 90}, {0, 90}, {5, 95}}},
		{"month from mid-month", &catalog.Quota{Limit: 100, Period: catalog.Month}, "2026-11-24", "2026-11-24",
			[][2]int64{{3, 62}}},
		{"offset in the creation period only", &catalog.Quota{Limit: 100, Offset: 40, Period: catalog.Month}, "2026-10-31", "2026-11-01",
			[][2]int64{{0, 60}, {0, 100}}},
		{"no quota", nil, "2026-11-23", "2026-11-24", [][2]int64{{5, 0}, {3, 0}}},
		{"remaining never negative", &catalog.Quota{Limit: 4, Period: catalog.Day}, "2026-11-23", "2026-11-23", [][2]int64{{5, 0}}},
		// k's adjustment on the 24th (UpdateUsage) lowers what remains, not what was used.
		{"adjustments count against remaining", &catalog.Quota{Limit: 100, Period: catalog.Week}, "2026-11-24", "2026-11-25",
			[][2]int64{{3, 72}, {0, 72}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &catalog.UsagePlan{ID: "p", Quota: tt.quota, CreatedDate: created}
			got := Values(p, "k", day(tt.from), day(tt.to), rows)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Values = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseDay(t *testing.T) {
	if _, err := ParseDay("2026-13-01"); err == nil {
		t.Error("month 13 accepted")
	}
	if d := day("1970-01-02"); d != 1 || FormatDay(d) != "1970-01-02" {
		t.Errorf("day = %d", d)
	}
}
