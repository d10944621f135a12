package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
)

// dailySQL reads a day range of the rollup in primary-key order; an empty
// plan or key parameter matches every row.
const dailySQL = `SELECT day, plan_id, key_id, admitted, rejected FROM usage_daily
WHERE day BETWEEN ? AND ? AND (? = '' OR plan_id = ?) AND (? = '' OR key_id = ?)
ORDER BY day, plan_id, key_id`

// eventsSQL reads a time range of raw events through usage_events_time.
const eventsSQL = `SELECT id, time, api_id, stage, key_id, plan_id, method, resource, status, decision, latency_us, bytes_in, bytes_out
FROM usage_events WHERE time >= ? AND time < ?
ORDER BY time, id LIMIT ?`

// Daily returns the rollup rows matching f, ordered by day, plan and key.
func (s *Store) Daily(ctx context.Context, f usage.Filter) ([]usage.DayCount, error) {
	rows, err := s.daily.QueryContext(ctx, f.FromDay, f.ToDay, f.PlanID, f.PlanID, f.KeyID, f.KeyID)
	if err != nil {
		return nil, fmt.Errorf("query daily usage: %w", err)
	}
	defer rows.Close()
	var out []usage.DayCount
	for rows.Next() {
		var d usage.DayCount
		if err := rows.Scan(&d.Day, &d.PlanID, &d.KeyID, &d.Admitted, &d.Rejected); err != nil {
			return nil, fmt.Errorf("query daily usage: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query daily usage: %w", err)
	}
	return out, nil
}

// Events returns at most limit raw events with Time in [from, to) Unix
// nanoseconds, ordered by time, then id. A limit of zero or less returns
// none.
func (s *Store) Events(ctx context.Context, from, to int64, limit int) ([]schemas.UsageEvent, error) {
	if limit <= 0 || from >= to {
		return nil, nil
	}
	rows, err := s.events.QueryContext(ctx, from, to, limit)
	if err != nil {
		return nil, fmt.Errorf("query events: %w", err)
	}
	defer rows.Close()
	out := make([]schemas.UsageEvent, 0, min(limit, 1024))
	for rows.Next() {
		var (
			e        schemas.UsageEvent
			id       sql.RawBytes // valid until Next; copied into e.ID
			decision int64
		)
		if err := rows.Scan(&id, &e.Time, &e.APIID, &e.Stage, &e.KeyID, &e.PlanID, &e.Method, &e.Resource,
			&e.Status, &decision, &e.LatencyMicros, &e.BytesIn, &e.BytesOut); err != nil {
			return nil, fmt.Errorf("query events: %w", err)
		}
		if len(id) != len(e.ID) {
			return nil, fmt.Errorf("query events: id of %d bytes, want %d", len(id), len(e.ID))
		}
		copy(e.ID[:], id)
		e.Decision = schemas.Decision(decision)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query events: %w", err)
	}
	return out, nil
}
