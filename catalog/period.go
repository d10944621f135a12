package catalog

import (
	"time"

	"github.com/tollgate/tollgate/internal/utc"
)

// Period is a quota period. Periods follow UTC calendar boundaries: DAY
// starts at 00:00 UTC, WEEK on Monday 00:00 UTC (AWS leaves the week start
// unspecified; tollgate documents Monday, ISO 8601), MONTH on the first of
// the calendar month.
type Period string

// Quota periods, spelled as AWS spells them.
const (
	Day   Period = "DAY"
	Week  Period = "WEEK"
	Month Period = "MONTH"
)

const nsPerDay = int64(24 * time.Hour)

// Valid reports whether p is one of DAY, WEEK, MONTH.
func (p Period) Valid() bool { return p == Day || p == Week || p == Month }

// Index numbers the period containing the Unix time ns: days, weeks or
// months since the one containing 1970-01-01. It is cheap enough for the
// request path (integer arithmetic only).
func (p Period) Index(ns int64) int64 {
	d := utc.FloorDiv(ns, nsPerDay)
	switch p {
	case Week:
		// 1970-01-01 was a Thursday; shift so that weeks start on Monday.
		return utc.FloorDiv(d+3, 7)
	case Month:
		y, m, _ := civil(d)
		return y*12 + m - 1 - 1970*12
	default:
		return d
	}
}

// Start returns the first instant (Unix ns) of period number idx.
func (p Period) Start(idx int64) int64 {
	switch p {
	case Week:
		return (idx*7 - 3) * nsPerDay
	case Month:
		m := idx + 1970*12
		return daysFromCivil(utc.FloorDiv(m, 12), m-utc.FloorDiv(m, 12)*12+1, 1) * nsPerDay
	default:
		return idx * nsPerDay
	}
}

// Bounds returns [start, end) in Unix ns of the period containing ns.
func (p Period) Bounds(ns int64) (start, end int64) {
	i := p.Index(ns)
	return p.Start(i), p.Start(i + 1)
}

// Seconds is a nominal length for display (RateLimit-Policy's window):
// 86400, 604800, or 30 days for MONTH.
func (p Period) Seconds() int64 {
	switch p {
	case Week:
		return 7 * 86400
	case Month:
		return 30 * 86400
	default:
		return 86400
	}
}

// LimitAt returns the quota limit in force during period idx for a plan
// created at createdUnix seconds: Limit minus Offset in the creation
// period, Limit otherwise (never below zero).
func (q *Quota) LimitAt(idx int64, createdUnix int64) int64 {
	if q.Offset != 0 && q.Period.Index(createdUnix*int64(time.Second)) == idx {
		return max(q.Limit-q.Offset, 0)
	}
	return q.Limit
}

// civil converts days since 1970-01-01 to a proleptic Gregorian date
// (Howard Hinnant's algorithm).
func civil(z int64) (y, m, d int64) {
	z += 719468
	era := utc.FloorDiv(z, 146097)
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	if mp < 10 {
		m = mp + 3
	} else {
		m = mp - 9
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}

// daysFromCivil is the inverse of civil.
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := utc.FloorDiv(y, 400)
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}
