package usage

import (
	"fmt"
	"time"

	"github.com/tollgate/tollgate/catalog"
)

// DateLayout is the date format of GetUsage's startDate and endDate.
const DateLayout = "2006-01-02"

// ParseDay parses a YYYY-MM-DD date as a UTC day number.
func ParseDay(s string) (int64, error) {
	t, err := time.Parse(DateLayout, s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a date of the form YYYY-MM-DD", s)
	}
	return t.Unix() / 86400, nil
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
	used := map[int64]int64{}
	adjusted := map[int64]int64{} // quota counted without requests (UpdateUsage)
	for _, r := range rows {
		if r.PlanID == p.ID && r.KeyID == keyID {
			used[r.Day] += r.Admitted
			adjusted[r.Day] += r.Adjustment
		}
	}
	out := make([][2]int64, 0, max(toDay-fromDay+1, 0))
	if p.Quota == nil {
		for d := fromDay; d <= toDay; d++ {
			out = append(out, [2]int64{used[d], 0})
		}
		return out
	}
	q := p.Quota
	// Walk from the start of fromDay's period so that remaining counts
	// what was used earlier in the same period.
	start := q.Period.Start(q.Period.Index(fromDay*86400e9)) / 86400e9
	var idx, cum int64 = -1, 0
	for d := start; d <= toDay; d++ {
		if i := q.Period.Index(d * 86400e9); i != idx {
			idx, cum = i, 0
		}
		cum += used[d] + adjusted[d]
		if d >= fromDay {
			rem := q.LimitAt(idx, p.CreatedDate) - cum
			out = append(out, [2]int64{used[d], max(rem, 0)})
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
	return p.Quota.Period.Start(p.Quota.Period.Index(fromDay*86400e9)) / 86400e9
}
