package sqlitestore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"

	"github.com/tollgate/tollgate/internal/utc"
)

// writer is the one connection InsertEvents writes through, with its
// statements prepared on it.
//
// A batch's transaction is BEGIN IMMEDIATE ... COMMIT run as statements on
// this connection, not a sql.Tx: a sql.Tx starts a goroutine to watch its
// context and wakes it at commit, and that scheduler work (thread wake-ups)
// cost ~120µs per batch on a 2-vCPU VM, a tenth of a 1000-event batch. For
// the same reason the statements inside run with a context that cannot be
// cancelled (the driver would start a goroutine per statement to watch
// it): InsertEvents checks its context between them instead, as they take
// microseconds. BEGIN IMMEDIATE, which may wait up to busyTimeoutMillis
// for another process's lock, keeps the caller's context.
type writer struct {
	conn                                 *sql.Conn
	begin, commit, rollback, insertBatch *sql.Stmt
	upsertMinutes, upsertDays            upserter
	upsertKeyMonths                      upserter // usage_key_month
	upsertHours, upsertAllDays           upserter // usage_hour, usage_day: late rows
	// The rollups' marks (rollup_marks), as committed; and the statements
	// that advance them.
	marks                         rollupMarks
	upsertKeyHours                upserter // usage_key_hour: late rows
	upsertKeyDays                 upserter // usage_key_day: late rows
	upsertAPIHours                upserter // usage_api_hour: late rows
	upsertAPIDays                 upserter // usage_api_day: late rows
	nextDay, rollKeyDay           *sql.Stmt
	nextAPIHour, rollAPIHour      *sql.Stmt
	nextAPIDay, rollAPIDay        *sql.Stmt
	nextKeyHour, rollKeyHour      *sql.Stmt
	nextMinute, rollHour, rollDay *sql.Stmt
	nextHour, setMark             *sql.Stmt
}

// openWriter takes a connection from db's pool and prepares the write
// statements on it.
func openWriter(ctx context.Context, db *sql.DB) (_ *writer, err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("open writer connection: %w", err)
	}
	w := &writer{
		conn:            conn,
		upsertMinutes:   upserter{columns: minuteColumns},
		upsertDays:      upserter{columns: dayColumns},
		upsertKeyMonths: upserter{columns: monthColumns},
		upsertHours:     upserter{columns: minuteColumns},
		upsertAllDays:   upserter{columns: minuteColumns},
		upsertKeyDays:   upserter{columns: keyDayColumns},
		upsertKeyHours:  upserter{columns: keyDayColumns},
		upsertAPIHours:  upserter{columns: apiColumns},
		upsertAPIDays:   upserter{columns: apiColumns},
	}
	defer func() {
		if err != nil {
			w.close()
		}
	}()
	for _, p := range []struct {
		stmt  **sql.Stmt
		query string
	}{
		{&w.begin, "BEGIN IMMEDIATE"},
		{&w.commit, "COMMIT"},
		{&w.rollback, "ROLLBACK"},
		{&w.insertBatch, insertBatchSQL},
		{&w.nextMinute, "SELECT min(minute) FROM usage_minute WHERE minute >= ?"},
		{&w.nextHour, "SELECT min(minute) FROM usage_hour WHERE minute >= ?"},
		{&w.rollHour, rollupSQL("usage_hour", "usage_minute", 60)},
		{&w.rollDay, rollupSQL("usage_day", "usage_hour", 24*60)},
		{&w.nextDay, "SELECT min(minute) FROM usage_day WHERE minute >= ?"},
		{&w.rollKeyDay, keyRollupSQL("usage_key_day", "usage_day")},
		{&w.nextKeyHour, "SELECT min(minute) FROM usage_hour WHERE minute >= ?"},
		{&w.rollKeyHour, keyRollupSQL("usage_key_hour", "usage_hour")},
		{&w.nextAPIHour, "SELECT min(minute) FROM usage_key_hour WHERE minute >= ?"},
		{&w.rollAPIHour, apiRollupSQL("usage_api_hour", "usage_key_hour")},
		{&w.nextAPIDay, "SELECT min(minute) FROM usage_key_day WHERE minute >= ?"},
		{&w.rollAPIDay, apiRollupSQL("usage_api_day", "usage_key_day")},
		{&w.setMark, "UPDATE rollup_marks SET until = ? WHERE tbl = ?"},
	} {
		if *p.stmt, err = conn.PrepareContext(ctx, p.query); err != nil {
			return nil, fmt.Errorf("prepare %q: %w", p.query, err)
		}
	}
	m := &w.marks
	if err := conn.QueryRowContext(ctx, "SELECT "+
		"(SELECT until FROM rollup_marks WHERE tbl = 'usage_hour'), (SELECT until FROM rollup_marks WHERE tbl = 'usage_day'), "+
		"(SELECT until FROM rollup_marks WHERE tbl = 'usage_key_hour'), (SELECT until FROM rollup_marks WHERE tbl = 'usage_key_day'), "+
		"(SELECT until FROM rollup_marks WHERE tbl = 'usage_api_hour'), (SELECT until FROM rollup_marks WHERE tbl = 'usage_api_day')").
		Scan(&m.hour, &m.day, &m.keyHour, &m.keyDay, &m.apiHour, &m.apiDay); err != nil {
		return nil, fmt.Errorf("read rollup marks: %w", err)
	}
	if err := w.upsertMinutes.prepare(ctx, conn, upsertMinutesSQL); err != nil {
		return nil, err
	}
	if err := w.upsertHours.prepare(ctx, conn, upsertRollupSQL("usage_hour")); err != nil {
		return nil, err
	}
	if err := w.upsertAllDays.prepare(ctx, conn, upsertRollupSQL("usage_day")); err != nil {
		return nil, err
	}
	if err := w.upsertKeyHours.prepare(ctx, conn, upsertKeyRollupSQL("usage_key_hour")); err != nil {
		return nil, err
	}
	if err := w.upsertKeyDays.prepare(ctx, conn, upsertKeyRollupSQL("usage_key_day")); err != nil {
		return nil, err
	}
	if err := w.upsertAPIHours.prepare(ctx, conn, upsertAPIRollupSQL("usage_api_hour")); err != nil {
		return nil, err
	}
	if err := w.upsertAPIDays.prepare(ctx, conn, upsertAPIRollupSQL("usage_api_day")); err != nil {
		return nil, err
	}
	if err := w.upsertDays.prepare(ctx, conn, upsertDailySQL); err != nil {
		return nil, err
	}
	if err := w.upsertKeyMonths.prepare(ctx, conn, upsertKeyMonthsSQL); err != nil {
		return nil, err
	}
	return w, nil
}

// close closes the statements and returns the connection to the pool.
func (w *writer) close() error {
	return errors.Join(w.closeStmts(), w.conn.Close())
}

// discard closes the connection instead of returning it to the pool: after
// a failed ROLLBACK it may still be inside a transaction.
func (w *writer) discard() {
	w.closeStmts()                                           // first: the driver cannot close them on a closed connection
	w.conn.Raw(func(any) error { return driver.ErrBadConn }) // closes it
}

func (w *writer) closeStmts() error {
	var errs []error
	for _, st := range []*sql.Stmt{w.begin, w.commit, w.rollback, w.insertBatch, w.nextMinute, w.nextHour, w.rollHour, w.rollDay, w.setMark, w.nextDay, w.rollKeyDay, w.nextKeyHour, w.rollKeyHour, w.nextAPIHour, w.rollAPIHour, w.nextAPIDay, w.rollAPIDay} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(append(errs, w.upsertMinutes.close(), w.upsertDays.close(), w.upsertKeyMonths.close(), w.upsertHours.close(), w.upsertAllDays.close(), w.upsertKeyDays.close(), w.upsertKeyHours.close(), w.upsertAPIHours.close(), w.upsertAPIDays.close())...)
}

// rollupSQL sums the rows of from with minute in [?1, ?2) into table, per
// bucket of period minutes: the buckets of that range, which table does
// not hold yet (see the schema's rollup_marks).
func rollupSQL(table, from string, period int) string {
	p := strconv.Itoa(period)
	return "INSERT INTO " + table + " SELECT minute - (minute % " + p + " + " + p + ") % " + p +
		" AS m, key_id, plan_id, api_id, stage, method, resource, status, decision, " +
		"sum(requests), sum(bytes_in), sum(bytes_out), sum(latency_us_sum) FROM " + from +
		" WHERE minute >= ?1 AND minute < ?2 GROUP BY m, key_id, plan_id, api_id, stage, method, resource, status, decision"
}

// Rolling up, per batch at most: a backlog (a store an earlier version
// filled, a history loaded at once) is caught up over many batches, each
// holding the write lock for a bounded time, rather than in one.
const (
	maxRollHours = 6
	maxRollDays  = 2
)

// rollupMarks are the rollups' marks (rollup_marks): each rollup is
// complete before its mark and empty from it on. A mark never passes the
// one of the table it is rolled up from: apiHour <= keyHour <= hour,
// apiDay <= keyDay <= day <= hour.
type rollupMarks struct{ hour, day, keyHour, keyDay, apiHour, apiDay int64 }

// advanceRollups rolls up, in the batch's transaction, the hours that
// ended before the batch's latest minute (less 2 minutes, for events a
// moment out of order; later ones are added as late rows), the days whose
// hours are all rolled up, the per-key rollups as far as the rollups they
// come from, and the per-API rollups as far as the per-key ones. It
// returns the new marks, which the caller keeps once the transaction
// commits. latest is capped at now: one event from a clock years ahead
// must not mark every later event late.
func (w *writer) advanceRollups(ctx context.Context, latest, now int64) (rollupMarks, error) {
	m := w.marks
	var err error
	target := utc.FloorDiv(min(latest, now)-2, 60) * 60
	if m.hour, err = w.advance(ctx, "usage_hour", w.nextMinute, w.rollHour, m.hour, target, 60, maxRollHours); err != nil {
		return w.marks, err
	}
	if m.keyHour, err = w.advance(ctx, "usage_key_hour", w.nextKeyHour, w.rollKeyHour, m.keyHour, m.hour, 60, maxRollHours); err != nil {
		return w.marks, err
	}
	if m.apiHour, err = w.advance(ctx, "usage_api_hour", w.nextAPIHour, w.rollAPIHour, m.apiHour, m.keyHour, 60, maxRollHours); err != nil {
		return w.marks, err
	}
	if m.day, err = w.advance(ctx, "usage_day", w.nextHour, w.rollDay, m.day, utc.FloorDiv(m.hour, 24*60)*24*60, 24*60, maxRollDays); err != nil {
		return w.marks, err
	}
	if m.keyDay, err = w.advance(ctx, "usage_key_day", w.nextDay, w.rollKeyDay, m.keyDay, m.day, 24*60, maxRollDays); err != nil {
		return w.marks, err
	}
	if m.apiDay, err = w.advance(ctx, "usage_api_day", w.nextAPIDay, w.rollAPIDay, m.apiDay, m.keyDay, 24*60, maxRollDays); err != nil {
		return w.marks, err
	}
	return m, nil
}

// keyRollupSQL sums the rows of from (usage_hour, usage_day) with minute
// in [?1, ?2) into table (usage_key_hour, usage_key_day): the same
// buckets, without method, resource and status.
func keyRollupSQL(table, from string) string {
	return "INSERT INTO " + table + " SELECT minute, key_id, plan_id, api_id, stage, decision, " +
		"sum(requests), sum(bytes_in), sum(bytes_out), sum(latency_us_sum) FROM " + from +
		" WHERE minute >= ?1 AND minute < ?2 GROUP BY minute, key_id, plan_id, api_id, stage, decision"
}

// apiRollupSQL sums the rows of from (usage_key_hour, usage_key_day)
// with minute in [?1, ?2) into table (usage_api_hour, usage_api_day): the
// same buckets, without key and plan.
func apiRollupSQL(table, from string) string {
	return "INSERT INTO " + table + " SELECT minute, api_id, stage, decision, " +
		"sum(requests), sum(bytes_in), sum(bytes_out), sum(latency_us_sum) FROM " + from +
		" WHERE minute >= ?1 AND minute < ?2 GROUP BY minute, api_id, stage, decision"
}

// advance moves table's mark from until toward target (both multiples of
// period): it skips the stretch before the source's next row (nothing to
// sum), rolls up at most maxBuckets buckets, and records the new mark.
func (w *writer) advance(ctx context.Context, table string, next, roll *sql.Stmt, until, target, period, maxBuckets int64) (int64, error) {
	if target <= until {
		return until, nil
	}
	var first sql.NullInt64
	if err := next.QueryRowContext(ctx, until).Scan(&first); err != nil {
		return until, fmt.Errorf("roll up %s: %w", table, err)
	}
	to := target
	if first.Valid && first.Int64 < target {
		from := utc.FloorDiv(first.Int64, period) * period
		to = min(target, from+maxBuckets*period)
		if _, err := roll.ExecContext(ctx, from, to); err != nil {
			return until, fmt.Errorf("roll up %s: %w", table, err)
		}
	}
	if _, err := w.setMark.ExecContext(ctx, to, table); err != nil {
		return until, fmt.Errorf("roll up %s: %w", table, err)
	}
	return to, nil
}
