// Package utc is the calendar arithmetic every package shares: UTC days
// and minutes as integers since 1970-01-01, floored (a time before 1970
// belongs to the day it falls in, not the one after), and the division
// they are made of.
package utc

// Nanoseconds and minutes in a UTC day (no leap seconds: Unix time).
const (
	DayNanos   int64 = 86400e9
	DayMinutes int64 = 24 * 60
)

// FloorDiv returns a / b rounded toward negative infinity (b != 0).
func FloorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// Day returns the UTC day (days since 1970-01-01) of a time in Unix
// nanoseconds.
func Day(unixNano int64) int64 { return FloorDiv(unixNano, DayNanos) }

// DayStart returns the first instant of a UTC day, in Unix nanoseconds.
func DayStart(day int64) int64 { return day * DayNanos }

// Minute returns the Unix minute of a time in Unix nanoseconds.
func Minute(unixNano int64) int64 { return FloorDiv(unixNano, 60e9) }
