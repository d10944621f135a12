package chstore

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/tollgate/tollgate/internal/utc"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
)

// Daily returns the daily rollup rows matching f, with the quota
// adjustments of the same (day, plan, key), ordered by day, plan and key:
// what sqlitestore's Daily returns for the same events and adjustments.
func (s *Store) Daily(ctx context.Context, f usage.Filter) ([]usage.DayCount, error) {
	q, args, ok := dailyQuery(f)
	if !ok {
		return nil, nil
	}
	out, err := s.dayCounts(ctx, q, args)
	if err != nil {
		return nil, fmt.Errorf("query daily usage: %w", err)
	}
	return out, nil
}

// QuotaUsage returns what an aggregator assigned the given partitions of
// the events topic restores its quota counters from: per (day, plan, key,
// enforcer node) from fromDay on, the requests those partitions admitted,
// and per (day, plan, key) the quota adjustments (Node "") of the keys
// whose events those partitions carry. Ordered by day, plan, key, node.
//
// Adjustments carry no partition (AdjustQuota is called without one): a
// key's are returned with the partition that carries its events, as
// usage_daily shows it, so a key adjusted before it ever made a request
// is not returned until it has made one.
func (s *Store) QuotaUsage(ctx context.Context, partitions []int, fromDay int64) ([]usage.NodeDayCount, error) {
	for _, p := range partitions {
		if p < 0 || p > 65535 {
			return nil, fmt.Errorf("query quota usage since day %d: partition %d is outside 0-65535", fromDay, p)
		}
	}
	q, args, ok := quotaUsageQuery(partitions, fromDay)
	if !ok {
		return nil, nil
	}
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query quota usage since day %d: %w", fromDay, err)
	}
	defer rows.Close()
	var out []usage.NodeDayCount
	for rows.Next() {
		var (
			c   usage.NodeDayCount
			day uint16
		)
		if err := rows.Scan(&day, &c.PlanID, &c.KeyID, &c.Node, &c.Admitted, &c.Adjustment); err != nil {
			return nil, fmt.Errorf("query quota usage since day %d: %w", fromDay, err)
		}
		c.Day = int64(day)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query quota usage since day %d: %w", fromDay, err)
	}
	return out, nil
}

func (s *Store) dayCounts(ctx context.Context, q string, args []any) ([]usage.DayCount, error) {
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []usage.DayCount
	for rows.Next() {
		var (
			d   usage.DayCount
			day uint16
		)
		if err := rows.Scan(&day, &d.PlanID, &d.KeyID, &d.Admitted, &d.Rejected, &d.Adjustment); err != nil {
			return nil, err
		}
		d.Day = int64(day)
		out = append(out, d)
	}
	return out, rows.Err()
}

// EachMinute calls f for each per-minute rollup row with Minute in
// [fromMinute, toMinute), in the order of the table's key (minute first,
// as sqlitestore), summed over the batches that wrote it. f's error stops
// the scan and is returned. The server groups the range before the first
// row arrives; rows then stream.
func (s *Store) EachMinute(ctx context.Context, fromMinute, toMinute int64, f func(*usage.MinuteCount) error) error {
	q, args, ok := minutesQuery(fromMinute, toMinute)
	if !ok {
		return nil
	}
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("query minute usage: %w", err)
	}
	defer rows.Close()
	return usage.ScanMinutes[uint8](rows, f)
}

// Minutes returns the rows EachMinute visits.
func (s *Store) Minutes(ctx context.Context, fromMinute, toMinute int64) ([]usage.MinuteCount, error) {
	var out []usage.MinuteCount
	err := s.EachMinute(ctx, fromMinute, toMinute, func(m *usage.MinuteCount) error {
		out = append(out, *m)
		return nil
	})
	return out, err
}

// Events returns at most limit raw events with Time in [from, to) Unix
// nanoseconds, ordered by time, then id. A limit of zero or less returns
// none. An event of one request has Count 0, whatever it was written
// with (0 and 1 mean the same). It reads the days' partitions of usage_events whole (the table is
// ordered by key): a drill-down tool, not a report.
func (s *Store) Events(ctx context.Context, from, to int64, limit int) ([]schemas.UsageEvent, error) {
	q, args, ok := eventsQuery(from, to, limit)
	if !ok {
		return nil, nil
	}
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query events: %w", err)
	}
	defer rows.Close()
	var (
		out      []schemas.UsageEvent
		id       string
		decision uint8
		requests uint32
	)
	for rows.Next() {
		var e schemas.UsageEvent
		if err := rows.Scan(&id, &e.Time, &e.APIID, &e.Stage, &e.KeyID, &e.PlanID, &e.Method, &e.Resource,
			&e.Status, &decision, &e.LatencyMicros, &e.BytesIn, &e.BytesOut, &requests, &e.Node, &e.KeyFingerprint); err != nil {
			return nil, fmt.Errorf("query events: %w", err)
		}
		copy(e.ID[:], id)
		e.Decision = schemas.Decision(decision)
		if requests > 1 {
			e.Count = requests // one request reads as Count 0, as on the wire
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query events: %w", err)
	}
	return out, nil
}

// AdjustQuota records that the quota used by a key under a plan changes
// by delta on a day, without requests: UpdateUsage's adjustment of the
// remaining quota. Daily and UsageSince report it as Adjustment.
//
// It is one INSERT and not idempotent: a call retried after a lost reply
// may count twice. (UpdateUsage sets what remains; a caller that retries
// can read Daily first and adjust by the difference.)
func (s *Store) AdjustQuota(ctx context.Context, planID, keyID string, day, delta int64) error {
	if day < minDay || day > maxDay {
		return fmt.Errorf("adjust quota: day %d is outside 1970-01-01 ... 2105-12-31", day)
	}
	err := s.send(ctx, adjustSQL, []any{
		[]time.Time{dayTime(day)}, []string{planID}, []string{keyID}, []int64{delta}, []int64{1},
	})
	if err != nil {
		return fmt.Errorf("adjust quota: %w", err)
	}
	return nil
}

// DropRawBefore drops the partitions of usage_events, one per UTC day,
// of the days before day (days since 1970-01-01): retention of the raw
// events. The rollups are kept. It returns the ids of the partitions it
// dropped (the day as YYYYMMDD), in order.
//
// A dropped day's events are gone from Events and from Watermarks' Raw:
// if they held a partition's last rows (a partition without traffic for
// the whole retention), its raw watermark goes back, which is harmless,
// since the records of those days are behind the committed offsets.
func (s *Store) DropRawBefore(ctx context.Context, day int64) (dropped []string, err error) {
	rows, err := s.conn.Query(ctx, rawPartitionsSQL)
	if err != nil {
		return nil, fmt.Errorf("drop raw events before day %d: list partitions: %w", day, err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("drop raw events before day %d: list partitions: %w", day, err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("drop raw events before day %d: list partitions: %w", day, err)
	}
	for _, id := range partitionsBefore(ids, day) {
		if err := s.conn.Exec(ctx, dropPartitionSQL(id)); err != nil {
			return dropped, fmt.Errorf("drop raw events before day %d: partition %s: %w", day, id, err)
		}
		dropped = append(dropped, id)
	}
	return dropped, nil
}

// partitionsBefore returns the ids (YYYYMMDD) of days before day, in
// order. Ids that are not a date are kept: they are no partition of this
// schema's.
func partitionsBefore(ids []string, day int64) []string {
	var out []string
	for _, id := range ids {
		d, ok := parsePartitionID(id)
		if ok && d < day {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// parsePartitionID returns the day of a usage_events partition id.
func parsePartitionID(id string) (day int64, ok bool) {
	if len(id) != 8 {
		return 0, false
	}
	if _, err := strconv.Atoi(id); err != nil {
		return 0, false
	}
	t, err := time.Parse("20060102", id)
	if err != nil {
		return 0, false
	}
	return utc.FloorDiv(t.Unix(), 86400), true
}
