package chstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/schemas"
)

// Batch is a run of records of one partition of the events topic, already
// deduplicated by event id.
type Batch struct {
	Partition int   // the events topic's partition, 0-65535
	Last      int64 // the last offset the batch covers (may be a dropped duplicate or poison record)
	Offsets   []int64
	// Events[i] is the event of the record at Offsets[i]; offsets ascend.
	// Records without an event (duplicates, poison) have no entry.
	Events []schemas.UsageEvent
}

// Watermark is, per table, the last offset of a partition whose rows that
// table holds (-1: none): every event of the partition at or below it is
// in the table, none above it.
type Watermark struct{ Raw, Minute, Daily int64 }

// NoWatermark is the watermark of a partition no table holds rows of.
var NoWatermark = Watermark{-1, -1, -1}

// ErrInvalidBatch is wrapped by InsertBatch's errors for a batch it
// refuses before writing anything: the same batch would fail again, so
// retrying it is pointless.
var ErrInvalidBatch = errors.New("invalid batch")

// Days the Date columns hold on every server version: 1970-01-01 to
// 2105-12-31 (18.16's date functions stop at 2105; current releases'
// Date ends in 2149).
const (
	minDay = 0
	maxDay = 49672
)

// CheckEvent reports whether the store can hold e: its UTC day must be in
// 1970-01-01 ... 2105-12-31 (ClickHouse's Date). An event that fails is
// poison for this store: InsertBatch refuses a batch that holds one, so
// the caller checks events before batching them and sends those that
// fail to its dead-letter topic.
func CheckEvent(e *schemas.UsageEvent) error {
	if d := e.Day(); d < minDay || d > maxDay {
		return fmt.Errorf("event %s: time %d is outside 1970-01-01 ... 2105-12-31", e.ID, e.Time)
	}
	return nil
}

func (b *Batch) validate() error {
	if b.Partition < 0 || b.Partition > 65535 {
		return fmt.Errorf("partition %d is outside 0-65535", b.Partition)
	}
	if b.Last < 0 {
		return fmt.Errorf("last offset %d is negative", b.Last)
	}
	if len(b.Offsets) != len(b.Events) {
		return fmt.Errorf("%d offsets for %d events", len(b.Offsets), len(b.Events))
	}
	prev := int64(-1)
	for i, o := range b.Offsets {
		if o <= prev {
			return fmt.Errorf("offset %d after %d: offsets must ascend", o, prev)
		}
		if err := CheckEvent(&b.Events[i]); err != nil {
			return fmt.Errorf("offset %d: %w", o, err)
		}
		prev = o
	}
	if prev > b.Last {
		return fmt.Errorf("offset %d is past the last offset %d", prev, b.Last)
	}
	return nil
}

// Watermarks returns the watermark of each of partitions, read from the
// tables: max(src_offset) of the partition's rows in each table, -1 when
// it has none. A caller that does not know whether its last InsertBatch
// succeeded (an error, a lost reply, a restart) reads them again before
// retrying.
//
// A watermark read here may be below the one InsertBatch returned: a
// table that had no rows to write for the end of a batch (no events past
// some offset, or, for usage_daily, only events with neither plan nor
// key) does not record that end. That is harmless: those records add no
// rows to the table, however often they are retried.
//
// Each table's maximum is a scan of its src_partition and src_offset
// columns (10 bytes a row before compression): the tables are ordered
// for their reports, not for this query, which runs when partitions are
// assigned and after failures.
func (s *Store) Watermarks(ctx context.Context, partitions []int) (map[int]Watermark, error) {
	out := make(map[int]Watermark, len(partitions))
	if len(partitions) == 0 {
		return out, nil
	}
	for _, p := range partitions {
		if p < 0 || p > 65535 {
			return nil, fmt.Errorf("read watermarks: partition %d is outside 0-65535", p)
		}
		out[p] = NoWatermark
	}
	rows, err := s.conn.Query(ctx, watermarksSQL(partitions))
	if err != nil {
		return nil, fmt.Errorf("read watermarks: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			table uint8
			p     uint16
			top   int64
		)
		if err := rows.Scan(&table, &p, &top); err != nil {
			return nil, fmt.Errorf("read watermarks: %w", err)
		}
		wm := out[int(p)]
		switch table {
		case tableRaw:
			wm.Raw = top
		case tableMinute:
			wm.Minute = top
		case tableDaily:
			wm.Daily = top
		}
		out[int(p)] = wm
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read watermarks: %w", err)
	}
	return out, nil
}

// BatchWatermark is Watermarks for retrying one batch, at a cost bounded
// by what the batch touches rather than by the tables' history: b's
// partition's watermark as far as b's records go. before is the watermark the failed InsertBatch(b, before)
// was given: what the InsertBatch of the batch before b returned (or
// Watermarks before b). Retry with InsertBatch(b, BatchWatermark(b,
// before)); its result is then valid for the next batch, as after any
// InsertBatch.
//
// It reads only the rows b's events would have written: those of b's
// partition in their days, times (minutes) and keys (up to 1000 keys;
// a batch of more is read by days and times). In the raw table that is
// the batch's keys' rows of its days: cheaper than Watermarks by the
// days the tables hold, or more when a batch holds few of the keys. That suffices: with one writer per partition,
// a table holds everything up to its highest tag, so if it holds any of
// b's events, the row of one has a tag at or past it and is among those
// read; if it holds none, before is right for b. (It does not suffice for
// another batch than b, which is why it takes b: a shorter one could miss
// a run written past it.) A table whose watermark in before is b.Last or
// more is not read.
func (s *Store) BatchWatermark(ctx context.Context, b *Batch, before Watermark) (Watermark, error) {
	if err := b.validate(); err != nil {
		return before, fmt.Errorf("read the watermark of a batch of partition %d: %w: %w", b.Partition, ErrInvalidBatch, err)
	}
	q, args, ok := batchWatermarkQuery(b, before)
	if !ok {
		return before, nil
	}
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return before, fmt.Errorf("read the watermark of a batch of partition %d: %w", b.Partition, err)
	}
	defer rows.Close()
	wm := before
	for rows.Next() {
		var (
			table uint8
			top   int64
		)
		if err := rows.Scan(&table, &top); err != nil {
			return before, fmt.Errorf("read the watermark of a batch of partition %d: %w", b.Partition, err)
		}
		switch table {
		case tableRaw:
			wm.Raw = max(wm.Raw, top)
		case tableMinute:
			wm.Minute = max(wm.Minute, top)
		case tableDaily:
			wm.Daily = max(wm.Daily, top)
		}
	}
	if err := rows.Err(); err != nil {
		return before, fmt.Errorf("read the watermark of a batch of partition %d: %w", b.Partition, err)
	}
	return wm, nil
}

// InsertBatch writes the batch's rows that the tables lack according to
// wm: in order usage_events, usage_minute, usage_daily, each table the
// rows of the events past its watermark (usage_events: those events;
// the rollups: rows aggregated from them), every row tagged with
// src_partition b.Partition and src_offset b.Last. A table whose
// watermark is b.Last or more is skipped. It returns the new watermark,
// each table at b.Last (or where it was, if beyond).
//
// A table's rows are one INSERT, which ClickHouse applies whole or not at
// all, as long as the rows fall in one partition of the table (it writes
// one part per partition, and not atomically across them). A batch whose
// events span partitions (midnight for usage_events, the end of a month
// for the rollups) is therefore split, per table, into runs of
// consecutive records of one partition: one INSERT per run, in order,
// each tagged with its last event's offset, the last run with b.Last.
// A failure between runs leaves the table's watermark at the end of the
// last run written, which is again exact.
//
// On an error, the watermark returned holds the tables written before
// the failure; the failing INSERT itself may have been applied (a lost
// reply). Read Watermarks, or BatchWatermark(b, wm) with the wm given
// here, before retrying. The batch's slices are not retained.
func (s *Store) InsertBatch(ctx context.Context, b *Batch, wm Watermark) (Watermark, error) {
	if err := b.validate(); err != nil {
		return wm, fmt.Errorf("insert batch of partition %d: %w: %w", b.Partition, ErrInvalidBatch, err)
	}
	sc, _ := s.scratch.Get().(*insertScratch)
	if sc == nil {
		sc = newInsertScratch()
	}
	defer func() {
		sc.reset()
		s.scratch.Put(sc)
	}()

	for _, t := range [...]struct {
		table  uint8
		wm     *int64
		insert func(ctx context.Context, sc *insertScratch, b *Batch, r run) error
	}{
		{tableRaw, &wm.Raw, s.insertRaw},
		{tableMinute, &wm.Minute, s.insertMinute},
		{tableDaily, &wm.Daily, s.insertDaily},
	} {
		if *t.wm >= b.Last {
			continue
		}
		sc.runs = splitRuns(sc.runs[:0], b, firstAfter(b.Offsets, *t.wm), t.table)
		for _, r := range sc.runs {
			if err := t.insert(ctx, sc, b, r); err != nil {
				return wm, fmt.Errorf("insert batch of partition %d up to offset %d: %s: %w", b.Partition, r.tag, tableNames[t.table], err)
			}
			*t.wm = r.tag
		}
		*t.wm = b.Last // also when there was nothing to write
	}
	return wm, nil
}

// Tables, as Watermarks' query tags them.
const (
	tableRaw uint8 = iota
	tableMinute
	tableDaily
)

var tableNames = [...]string{tableRaw: "usage_events", tableMinute: "usage_minute", tableDaily: "usage_daily"}

// firstAfter returns the index of the first offset past wm.
func firstAfter(offsets []int64, wm int64) int {
	lo, hi := 0, len(offsets)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if offsets[m] <= wm {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// run is Events[lo:hi] of a batch, all in one partition of a table,
// written as one INSERT tagged tag.
type run struct {
	lo, hi int
	tag    int64
}

// splitRuns appends to dst the runs of b.Events[from:] for table: maximal
// stretches of consecutive events in one partition of the table (a UTC
// day for usage_events, a month for the rollups). Each run's tag is the
// offset of its last event; the last run's is b.Last, which covers the
// records without events after it. No events, no runs.
func splitRuns(dst []run, b *Batch, from int, table uint8) []run {
	if from >= len(b.Events) {
		return dst
	}
	partOf := func(day int64) int64 { return day }
	if table != tableRaw {
		partOf = month
	}
	lastDay := b.Events[from].Day()
	part := partOf(lastDay)
	lo := from
	for i := from + 1; i < len(b.Events); i++ {
		d := b.Events[i].Day()
		if d == lastDay {
			continue
		}
		lastDay = d
		if p := partOf(d); p != part {
			dst = append(dst, run{lo: lo, hi: i, tag: b.Offsets[i-1]})
			lo, part = i, p
		}
	}
	return append(dst, run{lo: lo, hi: len(b.Events), tag: b.Last})
}

// month returns the month of a day (days since 1970-01-01) as
// year*12 + month-1.
func month(day int64) int64 {
	y, m, _ := dayTime(day).Date()
	return int64(y)*12 + int64(m) - 1
}

// dayTime returns the start of a day (days since 1970-01-01), UTC.
func dayTime(day int64) time.Time { return time.Unix(day*86400, 0).UTC() }

// send runs INSERT query (which names its columns) with one block of the
// given columns, in the query's order. ClickHouse applies a block to a
// MergeTree table whole or not at all when its rows fall in one partition.
func (s *Store) send(ctx context.Context, query string, cols []any) error {
	batch, err := s.conn.PrepareBatch(ctx, query)
	if err != nil {
		return err
	}
	defer batch.Abort() // closes the connection unless sent; an error after Send
	for i, c := range cols {
		if err := batch.Column(i).Append(c); err != nil {
			return fmt.Errorf("column %d: %w", i, err)
		}
	}
	return batch.Send()
}

const insertRawSQL = `INSERT INTO usage_events (day, key_id, time_ns, id, plan_id, api_id, stage, method, resource, status, decision, latency_us, bytes_in, bytes_out, requests, node, kafka_offset, src_partition, src_offset)`

func (s *Store) insertRaw(ctx context.Context, sc *insertScratch, b *Batch, r run) error {
	c := &sc.cols
	c.reset()
	for i := r.lo; i < r.hi; i++ {
		e := &b.Events[i]
		c.day = append(c.day, dayTime(e.Day()))
		c.str[0] = append(c.str[0], e.KeyID)
		c.i64[0] = append(c.i64[0], e.Time)
		c.id = append(c.id, e.ID[:])
		c.str[1] = append(c.str[1], e.PlanID)
		c.str[2] = append(c.str[2], e.APIID)
		c.str[3] = append(c.str[3], e.Stage)
		c.str[4] = append(c.str[4], e.Method)
		c.str[5] = append(c.str[5], e.Resource)
		c.str[6] = append(c.str[6], e.Node)
		c.status = append(c.status, e.Status)
		c.decision = append(c.decision, uint8(e.Decision))
		c.i64[1] = append(c.i64[1], e.LatencyMicros)
		c.i64[2] = append(c.i64[2], e.BytesIn)
		c.i64[3] = append(c.i64[3], e.BytesOut)
		c.requests = append(c.requests, uint32(e.Requests()))
		c.i64[4] = append(c.i64[4], b.Offsets[i])
	}
	c.tag(r.hi-r.lo, b.Partition, r.tag)
	return s.send(ctx, insertRawSQL, append(c.args[:0],
		c.day, c.str[0], c.i64[0], c.id, c.str[1], c.str[2], c.str[3], c.str[4], c.str[5],
		c.status, c.decision, c.i64[1], c.i64[2], c.i64[3], c.requests, c.str[6], c.i64[4], c.partition, c.offset))
}

const insertMinuteSQL = `INSERT INTO usage_minute (day, minute, key_id, plan_id, api_id, stage, method, resource, status, decision, src_partition, src_offset, requests, bytes_in, bytes_out, latency_us_sum)`

func (s *Store) insertMinute(ctx context.Context, sc *insertScratch, b *Batch, r run) error {
	sc.rollupMinutes(b.Events[r.lo:r.hi])
	c := &sc.cols
	c.reset()
	for i, k := range sc.minuteKeys {
		m := &sc.minuteSums[i]
		c.day = append(c.day, dayTime(floorDiv(k.minute, 24*60)))
		c.i64[0] = append(c.i64[0], k.minute)
		c.str[0] = append(c.str[0], k.key)
		c.str[1] = append(c.str[1], k.plan)
		c.str[2] = append(c.str[2], k.api)
		c.str[3] = append(c.str[3], k.stage)
		c.str[4] = append(c.str[4], k.method)
		c.str[5] = append(c.str[5], k.resource)
		c.status = append(c.status, k.status)
		c.decision = append(c.decision, uint8(k.decision))
		c.i64[1] = append(c.i64[1], m.requests)
		c.i64[2] = append(c.i64[2], m.bytesIn)
		c.i64[3] = append(c.i64[3], m.bytesOut)
		c.i64[4] = append(c.i64[4], m.latency)
	}
	c.tag(len(sc.minuteKeys), b.Partition, r.tag)
	return s.send(ctx, insertMinuteSQL, append(c.args[:0],
		c.day, c.i64[0], c.str[0], c.str[1], c.str[2], c.str[3], c.str[4], c.str[5],
		c.status, c.decision, c.partition, c.offset, c.i64[1], c.i64[2], c.i64[3], c.i64[4]))
}

const insertDailySQL = `INSERT INTO usage_daily (day, plan_id, key_id, node, src_partition, src_offset, admitted, rejected)`

func (s *Store) insertDaily(ctx context.Context, sc *insertScratch, b *Batch, r run) error {
	sc.rollupDays(b.Events[r.lo:r.hi])
	if len(sc.dayKeys) == 0 {
		return nil // only events with neither plan nor key
	}
	c := &sc.cols
	c.reset()
	for i, k := range sc.dayKeys {
		d := &sc.dayCounts[i]
		c.day = append(c.day, dayTime(k.day))
		c.str[0] = append(c.str[0], k.plan)
		c.str[1] = append(c.str[1], k.key)
		c.str[2] = append(c.str[2], k.node)
		c.i64[0] = append(c.i64[0], d.admitted)
		c.i64[1] = append(c.i64[1], d.rejected)
	}
	c.tag(len(sc.dayKeys), b.Partition, r.tag)
	return s.send(ctx, insertDailySQL, append(c.args[:0],
		c.day, c.str[0], c.str[1], c.str[2], c.partition, c.offset, c.i64[0], c.i64[1]))
}

// columns holds the column slices of one INSERT, reused from table to
// table and batch to batch.
type columns struct {
	day       []time.Time
	str       [7][]string
	i64       [5][]int64
	id        [][]byte
	status    []int32
	decision  []uint8
	requests  []uint32
	partition []uint16
	offset    []int64
	args      []any
}

// tag fills the src_partition and src_offset columns of n rows.
func (c *columns) tag(n, partition int, offset int64) {
	for range n {
		c.partition = append(c.partition, uint16(partition))
		c.offset = append(c.offset, offset)
	}
}

// reset empties the slices, dropping their references to strings and ids.
func (c *columns) reset() {
	c.day = c.day[:0]
	for i := range c.str {
		clear(c.str[i])
		c.str[i] = c.str[i][:0]
	}
	for i := range c.i64 {
		c.i64[i] = c.i64[i][:0]
	}
	clear(c.id)
	c.id = c.id[:0]
	c.status, c.decision, c.requests = c.status[:0], c.decision[:0], c.requests[:0]
	c.partition, c.offset = c.partition[:0], c.offset[:0]
	clear(c.args)
	c.args = c.args[:0]
}

// minuteKey is one usage_minute row of a run.
type minuteKey struct {
	minute                                  int64
	key, plan, api, stage, method, resource string
	status                                  int32
	decision                                schemas.Decision
}

type minuteSums struct{ requests, bytesIn, bytesOut, latency int64 }

// dayKey is one usage_daily row of a run.
type dayKey struct {
	day             int64
	plan, key, node string
}

type dayCounts struct{ admitted, rejected int64 }

// insertScratch holds what an InsertBatch reuses from table to table and,
// through the store's pool, from batch to batch.
type insertScratch struct {
	runs []run
	cols columns

	// The rollup rows of a run: the maps index the slices, so an event
	// costs one map lookup.
	minuteRow  map[minuteKey]int32
	minuteKeys []minuteKey
	minuteSums []minuteSums
	dayRow     map[dayKey]int32
	dayKeys    []dayKey
	dayCounts  []dayCounts
}

func newInsertScratch() *insertScratch {
	return &insertScratch{minuteRow: map[minuteKey]int32{}, dayRow: map[dayKey]int32{}}
}

// rollupMinutes groups events into usage_minute rows.
func (sc *insertScratch) rollupMinutes(events []schemas.UsageEvent) {
	clear(sc.minuteRow)
	clear(sc.minuteKeys)
	sc.minuteKeys, sc.minuteSums = sc.minuteKeys[:0], sc.minuteSums[:0]
	for i := range events {
		e := &events[i]
		k := minuteKey{
			minute: floorDiv(e.Time, 60e9),
			key:    e.KeyID, plan: e.PlanID, api: e.APIID, stage: e.Stage, method: e.Method, resource: e.Resource,
			status: e.Status, decision: e.Decision,
		}
		r, ok := sc.minuteRow[k]
		if !ok {
			r = int32(len(sc.minuteKeys))
			sc.minuteRow[k] = r
			sc.minuteKeys = append(sc.minuteKeys, k)
			sc.minuteSums = append(sc.minuteSums, minuteSums{})
		}
		m := &sc.minuteSums[r]
		m.requests += e.Requests()
		m.bytesIn += e.BytesIn
		m.bytesOut += e.BytesOut
		m.latency += e.LatencyMicros
	}
}

// rollupDays groups events into usage_daily rows. Events with neither
// plan nor key count in usage_minute only.
func (sc *insertScratch) rollupDays(events []schemas.UsageEvent) {
	clear(sc.dayRow)
	clear(sc.dayKeys)
	sc.dayKeys, sc.dayCounts = sc.dayKeys[:0], sc.dayCounts[:0]
	for i := range events {
		e := &events[i]
		if e.PlanID == "" && e.KeyID == "" {
			continue
		}
		k := dayKey{day: e.Day(), plan: e.PlanID, key: e.KeyID, node: e.Node}
		r, ok := sc.dayRow[k]
		if !ok {
			r = int32(len(sc.dayKeys))
			sc.dayRow[k] = r
			sc.dayKeys = append(sc.dayKeys, k)
			sc.dayCounts = append(sc.dayCounts, dayCounts{})
		}
		if e.Decision == schemas.DecisionAllowed {
			sc.dayCounts[r].admitted += e.Requests()
		} else {
			sc.dayCounts[r].rejected += e.Requests()
		}
	}
}

// reset drops the references to the last batch's strings and events.
func (sc *insertScratch) reset() {
	sc.runs = sc.runs[:0]
	sc.cols.reset()
	clear(sc.minuteRow)
	clear(sc.minuteKeys)
	sc.minuteKeys, sc.minuteSums = sc.minuteKeys[:0], sc.minuteSums[:0]
	clear(sc.dayRow)
	clear(sc.dayKeys)
	sc.dayKeys, sc.dayCounts = sc.dayKeys[:0], sc.dayCounts[:0]
}

// floorDiv returns a / b rounded toward negative infinity (b > 0).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
