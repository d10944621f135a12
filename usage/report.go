package usage

import (
	"fmt"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/internal/utc"
)

// DateLayout is the date format of GetUsage's startDate and endDate.
const DateLayout = "2006-01-02"

// MinDay and MaxDay bound the days a report may name: 1970-01-01 to
// 2105-12-31 (days since 1970-01-01). Every store holds events of those
// days only (ClickHouse's Date ends in 2105; chstore.CheckEvent refuses
// others), and within them the quota arithmetic, in Unix nanoseconds,
// cannot overflow.
const (
	MinDay int64 = 0
	MaxDay int64 = 49672
)

// MaxGetUsageDays bounds a GetUsage range, startDate and endDate
// included: 90 days, what AWS API Gateway keeps for GetUsage. Its answer
// is a [used, remaining] pair per day per key of the page, so the bound
// makes a page at most 500 keys × 90 days, whatever the dates asked.
const MaxGetUsageDays = 90

// ParseDay parses a YYYY-MM-DD date between MinDay and MaxDay as a UTC
// day number.
func ParseDay(s string) (int64, error) {
	t, err := time.Parse(DateLayout, s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a date of the form YYYY-MM-DD", s)
	}
	day := t.Unix() / 86400
	if day < MinDay || day > MaxDay {
		return 0, fmt.Errorf("%q is outside %s ... %s", s, FormatDay(MinDay), FormatDay(MaxDay))
	}
	return day, nil
}

// ParseRange parses a GetUsage range, the dates start and end, whose
// parameters (startDate and endDate, or a CLI's flags) are named
// startName and endName in errors. end must not be before start, and
// the range holds at most MaxGetUsageDays days.
func ParseRange(startName, start, endName, end string) (from, to int64, err error) {
	if from, err = ParseDay(start); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", startName, err)
	}
	if to, err = ParseDay(end); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", endName, err)
	}
	if to < from {
		return 0, 0, fmt.Errorf("%s %s is before %s %s", endName, end, startName, start)
	}
	if n := to - from + 1; n > MaxGetUsageDays {
		return 0, 0, fmt.Errorf("%s: the range from %s to %s is %d days; at most %d days can be read at once", endName, start, end, n, MaxGetUsageDays)
	}
	return from, to, nil
}

// FormatDay formats a UTC day number as YYYY-MM-DD.
func FormatDay(day int64) string { return time.Unix(day*86400, 0).UTC().Format(DateLayout) }

// GetUsage is the AWS GetUsage response: per key, one [used, remaining]
// pair per UTC day from StartDate to EndDate.
type GetUsage struct {
	UsagePlanID string                `json:"usagePlanId"`
	StartDate   string                `json:"startDate"`
	EndDate     string                `json:"endDate"`
	Values      map[string][][2]int64 `json:"values"`
}

// Values computes a key's daily [used, remaining] from rollups of one plan
// and key, as AWS reports them: used is the day's admitted requests,
// remaining is the quota left in the day's period after that day (the
// period's limit, less the offset in the plan's first period, less what
// was used in the period up to and including the day, UpdateUsage's
// adjustments included). A plan without a quota reports remaining 0.
func Values(p *catalog.UsagePlan, keyID string, fromDay, toDay int64, rows []DayCount) [][2]int64 {
	// Walk from the start of fromDay's period so that remaining counts
	// what was used earlier in the same period.
	start := PeriodStartDay(p, fromDay)
	n := max(toDay-start+1, 0)
	// Per day from start: used, and quota counted without requests
	// (UpdateUsage). Slices, not maps: one allocation for the range.
	sums := make([]int64, 2*n)
	used, adjusted := sums[:n], sums[n:]
	for _, r := range rows {
		if r.PlanID == p.ID && r.KeyID == keyID && r.Day >= start && r.Day <= toDay {
			used[r.Day-start] += r.Admitted
			adjusted[r.Day-start] += r.Adjustment
		}
	}
	out := make([][2]int64, 0, max(toDay-fromDay+1, 0))
	if p.Quota == nil {
		for d := fromDay; d <= toDay; d++ {
			out = append(out, [2]int64{used[d-start], 0})
		}
		return out
	}
	q := p.Quota
	var idx, cum int64 = -1, 0
	for d := start; d <= toDay; d++ {
		if i := q.Period.Index(utc.DayStart(d)); i != idx {
			idx, cum = i, 0
		}
		cum += used[d-start] + adjusted[d-start]
		if d >= fromDay {
			rem := q.LimitAt(idx, p.CreatedDate) - cum
			out = append(out, [2]int64{used[d-start], max(rem, 0)})
		}
	}
	return out
}

// PeriodStartDay returns the first day of the quota period containing
// fromDay, the earliest day whose rollups Values needs.
func PeriodStartDay(p *catalog.UsagePlan, fromDay int64) int64 {
	if p.Quota == nil {
		return fromDay
	}
	return utc.Day(p.Quota.Period.Start(p.Quota.Period.Index(utc.DayStart(fromDay))))
}
