package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"math/bits"
	"strings"

	"github.com/tollgate/tollgate/internal/utc"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
)

// insertBatchSQL stores one batch unless a batch with its first id is
// there already.
const insertBatchSQL = `INSERT OR IGNORE INTO usage_event_batches (first_id, min_time, max_time, n, events) VALUES (?, ?, ?, ?, ?)`

// upsertChunk is the most rows one rollup upsert carries. A batch's rows go
// in statements of upsertChunk, then of the powers of two that make up the
// rest (83 rows: 32, 32, 16, 2, 1), so a batch runs a few statements and
// Open prepares a few. Multi-row statements amortize database/sql's and the
// driver's per-statement cost: on a 2-vCPU VM a 1000-event batch (~83
// rollup rows) took 5-15% less time than row by row, with 40% of the
// allocations; 64 or 128 rows measured no better. What remains, ~4µs per
// row (13 values bound, a B-tree seek and write), is most of a batch's
// cost: it grows with the distinct rows a batch touches, not its events.
const upsertChunk = 32

// Columns bound per rollup row.
const (
	minuteColumns = 13
	dayColumns    = 7
	monthColumns  = 6
	keyDayColumns = 10
	apiColumns    = 8
)

// upsertMinutesSQL returns the upsert of rows usage_minute rows, in the
// column order of insertScratch.rollup's minuteArgs.
func upsertMinutesSQL(rows int) string {
	return upsertSQL("usage_minute",
		"minute, key_id, plan_id, api_id, stage, method, resource, status, decision",
		[]string{"requests", "bytes_in", "bytes_out", "latency_us_sum"}, minuteColumns, rows)
}

// upsertRollupSQL returns the upsert of rows rows of usage_hour or
// usage_day (table), in the column order of minuteArgs.
func upsertRollupSQL(table string) func(rows int) string {
	return func(rows int) string {
		return upsertSQL(table,
			"minute, key_id, plan_id, api_id, stage, method, resource, status, decision",
			[]string{"requests", "bytes_in", "bytes_out", "latency_us_sum"}, minuteColumns, rows)
	}
}

// upsertKeyRollupSQL returns the upsert of rows rows of usage_key_hour or
// usage_key_day (table), in the column order of keyArgs.
func upsertKeyRollupSQL(table string) func(rows int) string {
	return func(rows int) string {
		return upsertSQL(table, "minute, key_id, plan_id, api_id, stage, decision",
			[]string{"requests", "bytes_in", "bytes_out", "latency_us_sum"}, keyDayColumns, rows)
	}
}

// upsertAPIRollupSQL returns the upsert of rows rows of usage_api_hour or
// usage_api_day (table), in the column order of apiArgs.
func upsertAPIRollupSQL(table string) func(rows int) string {
	return func(rows int) string {
		return upsertSQL(table, "minute, api_id, stage, decision",
			[]string{"requests", "bytes_in", "bytes_out", "latency_us_sum"}, apiColumns, rows)
	}
}

// upsertDailySQL returns the upsert of rows usage_daily rows, in the column
// order of insertScratch.rollup's dayArgs.
func upsertDailySQL(rows int) string {
	return upsertSQL("usage_daily", "day, plan_id, key_id", []string{"admitted", "rejected", "throttled", "quota_exceeded"}, dayColumns, rows)
}

// upsertKeyMonthsSQL returns the upsert of rows usage_key_month rows, in
// the column order of insertScratch.rollup's monthArgs.
func upsertKeyMonthsSQL(rows int) string {
	return upsertSQL("usage_key_month", "month, plan_id, key_id", []string{"admitted", "throttled", "quota_exceeded"}, monthColumns, rows)
}

// upsertSQL returns an INSERT of rows rows into table that adds the sums to
// a row already there with the same key. The rows of one statement have
// distinct keys (they come from one map), as an upsert requires.
func upsertSQL(table, key string, sums []string, columns, rows int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO " + table + " (" + key + ", " + strings.Join(sums, ", ") + ") VALUES ")
	row := "(?" + strings.Repeat(",?", columns-1) + ")"
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(row)
	}
	b.WriteString(" ON CONFLICT (" + key + ") DO UPDATE SET ")
	for i, c := range sums {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(c + " = " + c + " + excluded." + c)
	}
	return b.String()
}

// upserter runs a rollup's rows in as few statements as it has prepared.
type upserter struct {
	columns int
	stmts   []*sql.Stmt // stmts[i] upserts 1<<i rows; the last one upsertChunk
}

// prepare prepares the statements of 1, 2, 4 ... upsertChunk rows.
func (u *upserter) prepare(ctx context.Context, conn *sql.Conn, query func(rows int) string) error {
	for rows := 1; rows <= upsertChunk; rows *= 2 {
		st, err := conn.PrepareContext(ctx, query(rows))
		if err != nil {
			return fmt.Errorf("prepare upsert of %d rows: %w", rows, err)
		}
		u.stmts = append(u.stmts, st)
	}
	return nil
}

// exec upserts the rows whose values args holds, u.columns per row. It
// checks ctx between statements but does not pass it to them (see writer).
func (u *upserter) exec(ctx context.Context, args []any) error {
	nc := context.WithoutCancel(ctx)
	for len(args) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		rows := len(args) / u.columns
		i := min(bits.Len(uint(rows))-1, len(u.stmts)-1)
		n := (1 << i) * u.columns
		if _, err := u.stmts[i].ExecContext(nc, args[:n]...); err != nil {
			return err
		}
		args = args[n:]
	}
	return nil
}

func (u *upserter) close() error {
	var err error
	for _, st := range u.stmts {
		if e := st.Close(); e != nil && err == nil {
			err = e
		}
	}
	return err
}

// minuteKey is one usage_minute row, its strings as dictionary indexes of
// the batch's encoding: a fixed-size key that hashes as plain memory.
type minuteKey struct {
	minute   int64
	refs     eventRefs
	status   int32
	decision schemas.Decision
}

type minuteSums struct{ requests, bytesIn, bytesOut, latency int64 }

// dayKey is one usage_daily row; plan and key are dictionary indexes.
type dayKey struct {
	day       int64
	plan, key uint32
}

type dayCounts struct{ admitted, rejected, throttled, limited int64 }

// monthKey is one usage_key_month row; plan and key are dictionary
// indexes.
type monthKey struct {
	month     int64
	plan, key uint32
}

type monthCounts struct{ admitted, throttled, limited int64 }

// insertScratch holds what InsertEvents reuses from batch to batch.
type insertScratch struct {
	enc  batchEncoder
	blob []byte
	// The rollup rows of the batch: the maps index the slices, so that an
	// event costs one map lookup per rollup.
	minuteRow  map[minuteKey]int32
	minuteKeys []minuteKey
	minuteSums []minuteSums
	dayRow     map[dayKey]int32
	dayKeys    []dayKey
	dayCounts  []dayCounts
	monthRow   map[monthKey]int32
	monthKeys  []monthKey
	monthSums  []monthCounts
	monthArgs  []any
	// lastDay and lastMonth remember the month of the day last seen
	// (a batch's minutes are mostly of one day).
	lastDay, lastMonth int64
	boxed              []any // the dictionary's strings, boxed once per batch
	minuteArgs         []any
	dayArgs            []any
	// usage_hour's and usage_day's rows: the minute rows summed by hour
	// and by day (their keys' minute is the bucket's first).
	coarse      map[minuteKey]int32
	coarseKeys  []minuteKey
	coarseSums  []minuteSums
	hourArgs    []any
	allDayArgs  []any
	keyDayRows  []any
	keyHourRows []any
	apiDayRows  []any
	apiHourRows []any
}

// Indexes into eventRefs.
const (
	refAPI = iota
	refStage
	refKey
	refPlan
	refMethod
	refResource
)

// rollup groups the batch just encoded into rollup rows and fills
// sc.minuteArgs and sc.dayArgs with them. A UTC day is a whole number of
// minutes, so the day of an event is the day of its minute.
func (sc *insertScratch) rollup(events []schemas.UsageEvent) {
	if sc.minuteRow == nil {
		sc.minuteRow = make(map[minuteKey]int32)
		sc.dayRow = make(map[dayKey]int32)
		sc.monthRow = make(map[monthKey]int32)
	}
	refs := sc.enc.refs
	for i := range events {
		e := &events[i]
		mk := minuteKey{minute: utc.FloorDiv(e.Time, 60e9), refs: refs[i], status: e.Status, decision: e.Decision}
		r, ok := sc.minuteRow[mk]
		if !ok {
			r = int32(len(sc.minuteKeys))
			sc.minuteRow[mk] = r
			sc.minuteKeys = append(sc.minuteKeys, mk)
			sc.minuteSums = append(sc.minuteSums, minuteSums{})
		}
		m := &sc.minuteSums[r]
		m.requests += e.Requests()
		m.bytesIn += e.BytesIn
		m.bytesOut += e.BytesOut
		m.latency += e.LatencyMicros
	}

	// The daily rows are sums of minute rows: a pass over the rows, not
	// the events. Events with neither plan nor key (no stage matched, no
	// key sent) count in usage_minute only.
	empty, ok := sc.enc.index[""] // the dictionary index of "", if the batch has it
	if !ok {
		empty = math.MaxUint32 // no index
	}
	for i, mk := range sc.minuteKeys {
		plan, key := mk.refs[refPlan], mk.refs[refKey]
		if plan == empty && key == empty {
			continue
		}
		dk := dayKey{day: utc.FloorDiv(mk.minute, 24*60), plan: plan, key: key}
		r, ok := sc.dayRow[dk]
		if !ok {
			r = int32(len(sc.dayKeys))
			sc.dayRow[dk] = r
			sc.dayKeys = append(sc.dayKeys, dk)
			sc.dayCounts = append(sc.dayCounts, dayCounts{})
		}
		if mk.decision == schemas.DecisionAllowed {
			sc.dayCounts[r].admitted += sc.minuteSums[i].requests
		} else {
			sc.dayCounts[r].rejected += sc.minuteSums[i].requests
		}
		switch mk.decision {
		case schemas.DecisionThrottled:
			sc.dayCounts[r].throttled += sc.minuteSums[i].requests
		case schemas.DecisionQuotaExceeded:
			sc.dayCounts[r].limited += sc.minuteSums[i].requests
		}
		if dk.day != sc.lastDay || sc.lastMonth == 0 {
			sc.lastDay, sc.lastMonth = dk.day, usage.BucketOf(mk.minute, "month")
		}
		mo := monthKey{month: sc.lastMonth, plan: plan, key: key}
		r, ok = sc.monthRow[mo]
		if !ok {
			r = int32(len(sc.monthKeys))
			sc.monthRow[mo] = r
			sc.monthKeys = append(sc.monthKeys, mo)
			sc.monthSums = append(sc.monthSums, monthCounts{})
		}
		switch mk.decision {
		case schemas.DecisionAllowed:
			sc.monthSums[r].admitted += sc.minuteSums[i].requests
		case schemas.DecisionThrottled:
			sc.monthSums[r].throttled += sc.minuteSums[i].requests
		case schemas.DecisionQuotaExceeded:
			sc.monthSums[r].limited += sc.minuteSums[i].requests
		}
	}

	// Box each string once; a row then copies an interface, not a string.
	for _, s := range sc.enc.strs {
		sc.boxed = append(sc.boxed, s)
	}
	str := sc.boxed
	args := sc.minuteArgs[:0]
	for i, k := range sc.minuteKeys {
		m := &sc.minuteSums[i]
		args = append(args, k.minute,
			str[k.refs[refKey]], str[k.refs[refPlan]], str[k.refs[refAPI]], str[k.refs[refStage]],
			str[k.refs[refMethod]], str[k.refs[refResource]], int64(k.status), int64(k.decision),
			m.requests, m.bytesIn, m.bytesOut, m.latency)
	}
	sc.minuteArgs = args
	args = sc.dayArgs[:0]
	for i, k := range sc.dayKeys {
		d := &sc.dayCounts[i]
		args = append(args, k.day, str[k.plan], str[k.key], d.admitted, d.rejected, d.throttled, d.limited)
	}
	sc.dayArgs = args
	args = sc.monthArgs[:0]
	for i, k := range sc.monthKeys {
		m := &sc.monthSums[i]
		args = append(args, k.month, str[k.plan], str[k.key], m.admitted, m.throttled, m.limited)
	}
	sc.monthArgs = args
}

// coarseArgs appends to args the batch's minute rows before until (late
// rows: their hour or day is rolled up already) summed per bucket of
// period minutes (an hour, a day).
func (sc *insertScratch) coarseArgs(args []any, period, until int64) []any {
	return sc.rollupArgs(args, period, until, dimsAll)
}

// keyArgs is coarseArgs for usage_key_hour and usage_key_day: per hour
// or day, key, plan, API, stage and decision.
func (sc *insertScratch) keyArgs(args []any, period, until int64) []any {
	return sc.rollupArgs(args, period, until, dimsKey)
}

// apiArgs is coarseArgs for usage_api_hour and usage_api_day: per hour
// or day, API, stage and decision.
func (sc *insertScratch) apiArgs(args []any, period, until int64) []any {
	return sc.rollupArgs(args, period, until, dimsAPI)
}

// rollupDims are the dimensions a rollup keeps.
type rollupDims int

const (
	dimsAll rollupDims = iota // usage_hour, usage_day
	dimsKey                   // usage_key_hour, usage_key_day: no method, resource, status
	dimsAPI                   // usage_api_hour, usage_api_day: nor key and plan
)

func (sc *insertScratch) rollupArgs(args []any, period, until int64, dims rollupDims) []any {
	if sc.coarse == nil {
		sc.coarse = make(map[minuteKey]int32)
	}
	clear(sc.coarse)
	sc.coarseKeys, sc.coarseSums = sc.coarseKeys[:0], sc.coarseSums[:0]
	for i, mk := range sc.minuteKeys {
		if mk.minute >= until {
			continue
		}
		mk.minute = utc.FloorDiv(mk.minute, period) * period
		if dims != dimsAll {
			mk.refs[refMethod], mk.refs[refResource], mk.status = 0, 0, 0
		}
		if dims == dimsAPI {
			mk.refs[refKey], mk.refs[refPlan] = 0, 0
		}
		r, ok := sc.coarse[mk]
		if !ok {
			r = int32(len(sc.coarseKeys))
			sc.coarse[mk] = r
			sc.coarseKeys = append(sc.coarseKeys, mk)
			sc.coarseSums = append(sc.coarseSums, minuteSums{})
		}
		m, c := &sc.minuteSums[i], &sc.coarseSums[r]
		c.requests += m.requests
		c.bytesIn += m.bytesIn
		c.bytesOut += m.bytesOut
		c.latency += m.latency
	}
	str := sc.boxed
	for i, k := range sc.coarseKeys {
		m := &sc.coarseSums[i]
		switch dims {
		case dimsAPI:
			args = append(args, k.minute, str[k.refs[refAPI]], str[k.refs[refStage]],
				int64(k.decision), m.requests, m.bytesIn, m.bytesOut, m.latency)
		case dimsKey:
			args = append(args, k.minute, str[k.refs[refKey]], str[k.refs[refPlan]], str[k.refs[refAPI]], str[k.refs[refStage]],
				int64(k.decision), m.requests, m.bytesIn, m.bytesOut, m.latency)
		default:
			args = append(args, k.minute,
				str[k.refs[refKey]], str[k.refs[refPlan]], str[k.refs[refAPI]], str[k.refs[refStage]],
				str[k.refs[refMethod]], str[k.refs[refResource]], int64(k.status), int64(k.decision),
				m.requests, m.bytesIn, m.bytesOut, m.latency)
		}
	}
	return args
}

// emptied clears s (dropping the references it holds) and returns it
// empty, its array kept for the next batch.
func emptied[S ~[]E, E any](s S) S {
	clear(s)
	return s[:0]
}

// reset drops the references to the last batch's strings.
func (sc *insertScratch) reset() {
	sc.enc.reset()
	clear(sc.minuteRow)
	sc.minuteKeys, sc.minuteSums = sc.minuteKeys[:0], sc.minuteSums[:0]
	clear(sc.dayRow)
	sc.dayKeys, sc.dayCounts = sc.dayKeys[:0], sc.dayCounts[:0]
	clear(sc.monthRow)
	sc.monthKeys, sc.monthSums = sc.monthKeys[:0], sc.monthSums[:0]
	sc.boxed = emptied(sc.boxed)
	sc.minuteArgs = emptied(sc.minuteArgs)
	sc.dayArgs = emptied(sc.dayArgs)
	sc.monthArgs = emptied(sc.monthArgs)
	sc.hourArgs = emptied(sc.hourArgs)
	sc.allDayArgs = emptied(sc.allDayArgs)
	sc.keyDayRows = emptied(sc.keyDayRows)
	sc.keyHourRows = emptied(sc.keyHourRows)
	sc.apiDayRows = emptied(sc.apiDayRows)
	sc.apiHourRows = emptied(sc.apiHourRows)
}

// InsertEvents stores a batch of events in one transaction: the events as
// one row of usage_event_batches, and their counts added to the per-minute
// and daily rollups. Either the whole batch is stored or nothing is.
//
// A batch is identified by its first event's id. If a batch with that id
// is stored already, InsertEvents writes nothing and returns nil: the
// drainer offers a batch that failed again unchanged, and the repeat must
// count once. Dedup is per batch, not per event: an event repeated within a
// batch, or sent again in a batch that starts with another event, is stored
// and counted again (see the schema for why that suffices).
func (s *Store) InsertEvents(ctx context.Context, events []schemas.UsageEvent) error {
	if len(events) == 0 {
		return nil
	}
	select {
	case s.writeSem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("insert events: %w", ctx.Err())
	}
	defer func() { <-s.writeSem }()

	if _, err := s.insertBatch(ctx, events, nil); err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	return nil
}

// insertBatch encodes and groups the batch before it takes SQLite's write
// lock, then writes it in one transaction, and with it the source offset
// at unless at is nil (InsertEventsAt; events may then be empty). If a
// batch with the first event's id is stored already, it writes nothing
// and reports repeated.
func (s *Store) insertBatch(ctx context.Context, events []schemas.UsageEvent, at *sourceOffset) (repeated bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	sc := &s.scratch
	defer sc.reset()
	var minTime, maxTime int64
	if len(events) > 0 {
		sc.blob = sc.enc.encode(sc.blob[:0], events)
		sc.rollup(events)
		minTime, maxTime = events[0].Time, events[0].Time
		for i := range events {
			minTime = min(minTime, events[i].Time)
			maxTime = max(maxTime, events[i].Time)
		}
	}

	if s.w == nil {
		if s.w, err = openWriter(ctx, s.db); err != nil {
			return false, err
		}
	}
	w := s.w
	marks := w.marks
	if _, err := w.begin.ExecContext(ctx); err != nil {
		return false, fmt.Errorf("begin: %w", err)
	}
	nc := context.WithoutCancel(ctx) // for the statements: see writer
	committed := false
	defer func() {
		if !committed {
			// Undo everything (nothing, for a repeated batch). A
			// ROLLBACK that fails may leave the connection inside the
			// transaction: drop it, the next batch opens another.
			if _, err := w.rollback.ExecContext(nc); err != nil {
				w.discard()
				s.w = nil
			}
		}
	}()

	if at != nil {
		if err := recordOffset(nc, w.conn, at); err != nil {
			return false, err
		}
	}
	if len(events) > 0 {
		res, err := w.insertBatch.ExecContext(nc, events[0].ID[:], minTime, maxTime, int64(len(events)), sc.blob)
		if err != nil {
			return false, fmt.Errorf("add to usage_event_batches: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return false, err
		}
		if n == 0 {
			// Stored by an earlier delivery of this batch, rollups included.
			return true, nil
		}
		if err := w.upsertMinutes.exec(ctx, sc.minuteArgs); err != nil {
			return false, fmt.Errorf("add to usage_minute: %w", err)
		}
		if err := w.upsertDays.exec(ctx, sc.dayArgs); err != nil {
			return false, fmt.Errorf("add to usage_daily: %w", err)
		}
		if err := w.upsertKeyMonths.exec(ctx, sc.monthArgs); err != nil {
			return false, fmt.Errorf("add to usage_key_month: %w", err)
		}
		// Late rows (before a rollup's mark) go to the rollups at once;
		// then the rollups advance past what this batch completed.
		sc.hourArgs = sc.coarseArgs(sc.hourArgs[:0], 60, w.marks.hour)
		if err := w.upsertHours.exec(ctx, sc.hourArgs); err != nil {
			return false, fmt.Errorf("add to usage_hour: %w", err)
		}
		sc.keyHourRows = sc.keyArgs(sc.keyHourRows[:0], 60, w.marks.keyHour)
		if err := w.upsertKeyHours.exec(ctx, sc.keyHourRows); err != nil {
			return false, fmt.Errorf("add to usage_key_hour: %w", err)
		}
		sc.apiHourRows = sc.apiArgs(sc.apiHourRows[:0], 60, w.marks.apiHour)
		if err := w.upsertAPIHours.exec(ctx, sc.apiHourRows); err != nil {
			return false, fmt.Errorf("add to usage_api_hour: %w", err)
		}
		sc.allDayArgs = sc.coarseArgs(sc.allDayArgs[:0], 24*60, w.marks.day)
		if err := w.upsertAllDays.exec(ctx, sc.allDayArgs); err != nil {
			return false, fmt.Errorf("add to usage_day: %w", err)
		}
		sc.keyDayRows = sc.keyArgs(sc.keyDayRows[:0], 24*60, w.marks.keyDay)
		if err := w.upsertKeyDays.exec(ctx, sc.keyDayRows); err != nil {
			return false, fmt.Errorf("add to usage_key_day: %w", err)
		}
		sc.apiDayRows = sc.apiArgs(sc.apiDayRows[:0], 24*60, w.marks.apiDay)
		if err := w.upsertAPIDays.exec(ctx, sc.apiDayRows); err != nil {
			return false, fmt.Errorf("add to usage_api_day: %w", err)
		}
		if marks, err = w.advanceRollups(nc, utc.FloorDiv(maxTime, 60e9), s.now().UnixNano()/60e9); err != nil {
			return false, err
		}
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if _, err := w.commit.ExecContext(nc); err != nil {
		return false, fmt.Errorf("commit: %w", err)
	}
	committed = true
	w.marks = marks
	return false, nil
}
