package chstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/tollgate/tollgate/aggregator/aggstore"
	"github.com/tollgate/tollgate/internal/utc"
	"github.com/tollgate/tollgate/schemas"
)

// Batch is a run of records of one partition of the events topic, already
// deduplicated by event id: the aggregator's batch.
type Batch = aggstore.Batch

// Tables, in the order InsertBatch writes them and Watermark.Done lists
// them.
const (
	TableRaw    = iota // usage_events
	TableMinute        // usage_minute
	TableHour          // usage_hour
	TableDay           // usage_day
	TableKeyDay        // usage_key_day
	TableDaily         // usage_daily
	NumTables
)

var zeroID [16]byte

var tableNames = [NumTables]string{"usage_events", "usage_minute", "usage_hour", "usage_day", "usage_key_day", "usage_daily"}

// Watermark is what the tables hold of one partition of the events
// topic. Done[t] is the last offset up to which table t holds every
// event of the partition (-1: none). Ahead lists what a table holds past
// it: a batch whose events fall in several partitions of a table (days of
// usage_events, months of the others) is one INSERT per partition, and
// one that stopped part way leaves some written. An event is in table t
// when its offset is at most Done[t], or at most the Last of t's Ahead
// entry for the event's partition of t.
//
// A Watermark is a value: InsertBatch and BatchWatermark return new ones
// and never change the one given.
type Watermark struct {
	Done  [NumTables]int64
	Ahead []Ahead // sorted by table, then partition; each Last > the table's Done
}

// Ahead says that partition Part of table Table holds the events of the
// topic partition up to offset Last, past the table's Done.
type Ahead struct {
	Table int
	Part  int64 // a UTC day (usage_events) or a month, year*12 + month-1
	Last  int64
}

// NoWatermark is the watermark of a partition no table holds rows of.
var NoWatermark = Watermark{Done: [NumTables]int64{-1, -1, -1, -1, -1, -1}}

// Covered is the last offset up to which every table holds every event:
// a consumer that lost its place reads the partition again from
// Covered()+1.
func (w Watermark) Covered() int64 { return slices.Min(w.Done[:]) }

// Equal reports whether w and o say the same.
func (w Watermark) Equal(o Watermark) bool {
	return w.Done == o.Done && slices.Equal(w.Ahead, o.Ahead)
}

// ahead returns table t's mark for partition part: the last offset of
// the events of that partition the table holds, at least Done[t].
func (w *Watermark) ahead(t int, part int64) int64 {
	last := w.Done[t]
	for _, a := range w.Ahead {
		if a.Table == t && a.Part == part {
			last = max(last, a.Last)
		}
	}
	return last
}

// normalize sorts Ahead, keeps one entry per (table, partition) (the
// highest) and drops entries at or below their table's Done.
func (w *Watermark) normalize() {
	slices.SortFunc(w.Ahead, func(a, b Ahead) int {
		if c := cmp.Compare(a.Table, b.Table); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Part, b.Part); c != 0 {
			return c
		}
		return cmp.Compare(b.Last, a.Last)
	})
	w.Ahead = slices.CompactFunc(w.Ahead, func(a, b Ahead) bool { return a.Table == b.Table && a.Part == b.Part })
	w.Ahead = slices.DeleteFunc(w.Ahead, func(a Ahead) bool { return a.Last <= w.Done[a.Table] })
	if len(w.Ahead) == 0 {
		w.Ahead = nil
	}
}

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

func validateBatch(b *Batch) error {
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
// tables. A caller that does not know whether its last InsertBatch
// succeeded (an error, a lost reply, a restart) reads them again before
// retrying.
//
// A watermark read here may be below the one InsertBatch returned: a
// table that had no rows to write for the end of a batch (no events past
// some offset, or, for usage_daily, only events with neither plan nor
// key) does not record that end. That is harmless: those records add no
// rows to the table, however often they are retried.
//
// It reads the tables' marker rows only, which come first in their sort
// keys, so the primary indexes find them: a row per INSERT in
// usage_events (dropped with their days by DropRawBefore), a row per
// month and partition in the rollups once merged.
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
	marks, err := s.readMarks(ctx, rawMarksSQL(inList(partitions)), nil)
	if err != nil {
		return nil, fmt.Errorf("read watermarks: %w", err)
	}
	more, err := s.readMarks(ctx, rollupMarksSQL(inList(partitions)), nil)
	if err != nil {
		return nil, fmt.Errorf("read watermarks: %w", err)
	}
	byPartition := map[int][]mark{}
	for _, m := range append(marks, more...) {
		byPartition[m.p] = append(byPartition[m.p], m)
	}
	for p := range out {
		out[p] = marksOf(byPartition[p], p, NoWatermark)
	}
	return out, nil
}

// mark is a row of the watermark queries: for table t and topic
// partition p, in the table's partition part (a day or, as YYYYMM, a
// month): done, the highest offset of a batch written whole (usage_events)
// or the sum of the progress markers' advances (the rollups), and last,
// the highest offset written part way (-1: none).
type mark struct {
	t, p       int
	part       int64
	done, last int64
}

func (s *Store) readMarks(ctx context.Context, q string, args []any) ([]mark, error) {
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []mark
	for rows.Next() {
		var (
			t    uint8
			p    uint16
			part uint32
			m    mark
		)
		if err := rows.Scan(&t, &p, &part, &m.done, &m.last); err != nil {
			return nil, err
		}
		if int(t) >= NumTables {
			return nil, fmt.Errorf("table %d: no such table", t)
		}
		m.t, m.p, m.part = int(t), int(p), int64(part)
		if m.t != TableRaw {
			m.part = int64(part/100)*12 + int64(part%100) - 1 // YYYYMM → month
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// marksOf folds the marks of partition p into a watermark, starting from
// base.
func marksOf(marks []mark, p int, base Watermark) Watermark {
	w := base
	w.Ahead = slices.Clone(base.Ahead)
	sums := [NumTables]int64{}
	seen := [NumTables]bool{}
	for _, m := range marks {
		if m.p != p {
			continue
		}
		if m.t == TableRaw {
			w.Done[m.t] = max(w.Done[m.t], m.done)
		} else {
			sums[m.t] += m.done
			seen[m.t] = true
		}
	}
	for t := range NumTables {
		if seen[t] {
			// The rollups' markers add up to their progress + 1 (see
			// InsertBatch); they are the truth, whatever base says.
			w.Done[t] = sums[t] - 1
		}
	}
	for _, m := range marks {
		if m.p == p && m.last > w.Done[m.t] {
			w.Ahead = append(w.Ahead, Ahead{Table: m.t, Part: m.part, Last: m.last})
		}
	}
	w.normalize()
	return w
}

// BatchWatermark is Watermarks for retrying one batch, at a cost bounded
// by what the batch touches rather than by the tables' history: b's
// partition's watermark as far as b's records go. before is the watermark
// the failed InsertBatch(b, before) was given: what the InsertBatch of
// the batch before b returned (or Watermarks before b). Retry with
// InsertBatch(b, BatchWatermark(b, before)); its result is then valid for
// the next batch, as after any InsertBatch.
//
// For usage_events it reads only the markers of b's partition in b's
// days. That suffices: with one writer per partition, a day holds b's
// marker only if b's INSERT for that day was applied. (It does not
// suffice for another batch than b, which is why it takes b.) The
// rollups' markers are read as Watermarks reads them.
func (s *Store) BatchWatermark(ctx context.Context, b *Batch, before Watermark) (Watermark, error) {
	if err := validateBatch(b); err != nil {
		return before, fmt.Errorf("read the watermark of a batch of partition %d: %w: %w", b.Partition, ErrInvalidBatch, err)
	}
	var marks []mark
	if q, args, ok := batchRawMarksQuery(b); ok && before.Done[TableRaw] < b.Last {
		m, err := s.readMarks(ctx, q, args)
		if err != nil {
			return before, fmt.Errorf("read the watermark of a batch of partition %d: %w", b.Partition, err)
		}
		marks = m
	}
	m, err := s.readMarks(ctx, rollupMarksSQL(fmt.Sprint(b.Partition)), nil)
	if err != nil {
		return before, fmt.Errorf("read the watermark of a batch of partition %d: %w", b.Partition, err)
	}
	return marksOf(append(marks, m...), b.Partition, before), nil
}

// InsertBatch writes the batch's rows that the tables lack according to
// wm, every table at once (a goroutine each: usage_events, usage_minute,
// usage_hour, usage_day, usage_key_day, usage_daily): each table the
// rows of the events it does not hold
// (usage_events: those events; the rollups: rows aggregated from them).
// A table whose Done is b.Last or more is skipped. It returns the new
// watermark: each table written at b.Last.
//
// A table's rows of one of its partitions (a UTC day for usage_events, a
// month for the rollups) are one INSERT, one block, which ClickHouse
// applies whole or not at all. A batch whose events span partitions
// (midnight, the end of a month, events of other days arriving late) is
// one INSERT per partition the events fall in, however they alternate.
// The last INSERT of a table says the batch is whole: its usage_events
// rows have batch_end 1, and in a rollup it holds the progress marker
// (minute -1, or plan and key empty in usage_daily) whose done column
// adds b.Last - Done to the sum that Watermarks reads back. The others
// are tagged as written part way: batch_end 0, or a marker holding
// b.Last (minute -2 - b.Last; node b.Last in usage_daily), which
// Watermarks reads as an Ahead entry.
//
// The sums make the rollups' progress exact after any merges provided
// each advance is counted once, which holds because wm is exact: what
// the InsertBatch before returned, or what Watermarks or BatchWatermark
// read. A table with no events of the batch past its watermark keeps its
// Done: no INSERT, so no marker.
//
// On an error, the watermark returned holds the INSERTs that succeeded
// (of the failing table, those before the failure; the other tables ran
// at once); a failing INSERT itself may have been applied (a lost
// reply). Read Watermarks, or BatchWatermark(b, wm) with the wm given
// here, before retrying. The batch's slices are not retained.
func (s *Store) InsertBatch(ctx context.Context, b *Batch, wm Watermark) (Watermark, error) {
	if err := validateBatch(b); err != nil {
		return wm, fmt.Errorf("insert batch of partition %d: %w: %w", b.Partition, ErrInvalidBatch, err)
	}
	bs := s.getScratch()
	defer s.putScratch(bs)
	bs.dims.intern(b) // before the tables' goroutines, which only read it

	// The tables are written at once, each by a goroutine of its own: they
	// are independent (each INSERT carries its own account), and a batch
	// then takes the time of its slowest table, not the sum of six.
	var (
		wg      sync.WaitGroup
		results [NumTables]tableResult
	)
	for t := range NumTables {
		if wm.Done[t] >= b.Last {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[t] = s.insertTable(ctx, bs.tables[t], b, t, &wm)
		}()
	}
	wg.Wait()
	out := wm
	out.Ahead = slices.Clone(wm.Ahead)
	var errs []error
	for t, r := range results {
		out.Ahead = append(out.Ahead, r.ahead...)
		if r.done {
			out.Done[t] = b.Last
		}
		if r.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", tableNames[t], r.err))
		}
	}
	out.normalize()
	if len(errs) > 0 {
		return out, fmt.Errorf("insert batch of partition %d up to offset %d: %w", b.Partition, b.Last, errors.Join(errs...))
	}
	return out, nil
}

// tableResult is what insertTable wrote of a batch to one table: whole
// (done), or the partitions written before a failure (ahead).
type tableResult struct {
	done  bool
	ahead []Ahead
	err   error
}

// insertTable writes b's rows that table t lacks according to wm: one
// INSERT per partition of the table, the last one marking the batch whole.
func (s *Store) insertTable(ctx context.Context, sc *insertScratch, b *Batch, t int, wm *Watermark) tableResult {
	var r tableResult
	sc.group(b, t, wm)
	for i, g := range sc.groups {
		last := i == len(sc.groups)-1
		if err := s.insertGroup(ctx, sc, b, t, g, last, wm.Done[t]); err != nil {
			r.err = err
			return r
		}
		if last {
			r.done = true
		} else {
			r.ahead = append(r.ahead, Ahead{Table: t, Part: g.part, Last: b.Last})
		}
	}
	if len(sc.groups) == 0 && t == TableRaw {
		// No rows, so no marker; usage_events' Done is a maximum, not a
		// sum, and may run ahead of the table.
		r.done = true
	}
	return r
}

// getScratch takes a scratch from the store's free list. A list, not a
// sync.Pool: a collection would empty the pool and the next batch would
// grow its columns and maps again. It holds one per InsertBatch running
// at once (one per partition the caller writes).
func (s *Store) getScratch() *batchScratch {
	s.scratchMu.Lock()
	defer s.scratchMu.Unlock()
	if n := len(s.scratch); n > 0 {
		bs := s.scratch[n-1]
		s.scratch = s.scratch[:n-1]
		return bs
	}
	return newBatchScratch()
}

func (s *Store) putScratch(bs *batchScratch) {
	bs.reset()
	s.scratchMu.Lock()
	s.scratch = append(s.scratch, bs)
	s.scratchMu.Unlock()
}

// group is the events of one partition of a table in a batch: indexes
// into Events, in offset order.
type group struct {
	part  int64
	day   int64 // a day of the partition, for the marker row
	index []int32
}

// group fills sc.groups with b's events that table t lacks according to
// wm, per partition of t, in order of partition.
func (sc *insertScratch) group(b *Batch, t int, wm *Watermark) {
	sc.groups = sc.groups[:0]
	from := firstAfter(b.Offsets, wm.Done[t])
	lastDay, part := int64(math.MinInt64), int64(0)
	cur := -1
	for i := from; i < len(b.Events); i++ {
		if d := b.Events[i].Day(); d != lastDay {
			lastDay, part = d, d
			if t != TableRaw {
				part = month(d)
			}
			cur = -1
			for j := range sc.groups {
				if sc.groups[j].part == part {
					cur = j
					break
				}
			}
			if cur < 0 {
				if len(sc.groups) < cap(sc.groups) {
					sc.groups = sc.groups[:len(sc.groups)+1]
					g := &sc.groups[len(sc.groups)-1]
					g.part, g.day, g.index = part, d, g.index[:0]
				} else {
					sc.groups = append(sc.groups, group{part: part, day: d})
				}
				cur = len(sc.groups) - 1
			}
		}
		if len(wm.Ahead) > 0 && b.Offsets[i] <= wm.ahead(t, part) {
			continue // written by an attempt that stopped part way
		}
		sc.groups[cur].index = append(sc.groups[cur].index, int32(i))
	}
	sc.groups = slices.DeleteFunc(sc.groups, func(g group) bool { return len(g.index) == 0 })
	slices.SortFunc(sc.groups, func(a, b group) int { return cmp.Compare(a.part, b.part) })
}

func (s *Store) insertGroup(ctx context.Context, sc *insertScratch, b *Batch, t int, g group, last bool, done int64) error {
	switch t {
	case TableRaw:
		return s.insertRaw(ctx, sc, b, g, last)
	case TableDaily:
		return s.insertDaily(ctx, sc, b, g, last, done)
	default:
		return s.insertRollup(ctx, sc, b, t, g, last, done)
	}
}

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
	if s.beforeInsert != nil {
		if err := s.beforeInsert(); err != nil {
			return err
		}
	}
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

const insertRawSQL = `INSERT INTO usage_events (day, key_id, time_ns, id, plan_id, api_id, stage, method, resource, status, decision, latency_us, bytes_in, bytes_out, requests, node, key_fingerprint, kafka_offset, src_partition, src_offset, batch_end)`

// insertRaw writes g's events to usage_events and a marker row (key
// empty, time_ns MinInt64, kafka_offset -1), all tagged b.Last, batch_end
// 1 if g is the batch's last INSERT into the table.
func (s *Store) insertRaw(ctx context.Context, sc *insertScratch, b *Batch, g group, last bool) error {
	c := &sc.cols
	c.reset()
	for _, i := range g.index {
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
		c.str[7] = append(c.str[7], e.KeyFingerprint)
		c.status = append(c.status, e.Status)
		c.decision = append(c.decision, uint8(e.Decision))
		c.i64[1] = append(c.i64[1], e.LatencyMicros)
		c.i64[2] = append(c.i64[2], e.BytesIn)
		c.i64[3] = append(c.i64[3], e.BytesOut)
		c.requests = append(c.requests, uint32(e.Requests()))
		c.i64[4] = append(c.i64[4], b.Offsets[i])
	}
	// The marker row: key '' and time_ns MinInt64 sort first in every
	// part, where Watermarks finds them through the primary index.
	c.day = append(c.day, dayTime(g.day))
	c.i64[0] = append(c.i64[0], math.MinInt64)
	c.id = append(c.id, zeroID[:])
	for j := range 8 {
		c.str[j] = append(c.str[j], "")
	}
	c.status = append(c.status, 0)
	c.decision = append(c.decision, 0)
	for j := 1; j <= 3; j++ {
		c.i64[j] = append(c.i64[j], 0)
	}
	c.requests = append(c.requests, 0)
	c.i64[4] = append(c.i64[4], -1)
	end := uint8(0)
	if last {
		end = 1
	}
	for range len(g.index) + 1 {
		c.partition = append(c.partition, uint16(b.Partition))
		c.offset = append(c.offset, b.Last)
		c.flag = append(c.flag, end)
	}
	return s.send(ctx, insertRawSQL, append(c.args[:0],
		c.day, c.str[0], c.i64[0], c.id, c.str[1], c.str[2], c.str[3], c.str[4], c.str[5],
		c.status, c.decision, c.i64[1], c.i64[2], c.i64[3], c.requests, c.str[6], c.str[7], c.i64[4], c.partition, c.offset, c.flag))
}

// insertRollupSQL is the INSERT of usage_minute, usage_hour or usage_day.
func insertRollupSQL(t int) string {
	return `INSERT INTO ` + tableNames[t] + ` (day, minute, key_id, plan_id, api_id, stage, method, resource, status, decision, src_partition, requests, bytes_in, bytes_out, latency_us_sum, done)`
}

var insertRollupSQLs = [NumTables]string{
	TableMinute: insertRollupSQL(TableMinute),
	TableHour:   insertRollupSQL(TableHour),
	TableDay:    insertRollupSQL(TableDay),
	TableKeyDay: insertRollupSQL(TableKeyDay),
}

// bucketMinutes is the width of a rollup's buckets, in minutes.
var bucketMinutes = [NumTables]int64{TableMinute: 1, TableHour: 60, TableDay: 24 * 60, TableKeyDay: 24 * 60}

// insertRollup writes g's events summed per bucket of table t and
// dimensions, and the marker row: the progress marker (minute -1, done
// b.Last - done) if g is the batch's last INSERT into t, else the
// part-way marker (minute -2 - b.Last, done 1: a row whose sums are all
// zero would vanish in a merge).
func (s *Store) insertRollup(ctx context.Context, sc *insertScratch, b *Batch, t int, g group, last bool, done int64) error {
	sc.rollupMinutes(b, g.index, bucketMinutes[t], t == TableKeyDay)
	c := &sc.cols
	c.reset()
	for i, rk := range sc.rowKeys {
		m := &sc.rowSums[i]
		k := &sc.in.dimList[rk.id]
		c.day = append(c.day, dayTime(utc.FloorDiv(rk.bucket, 24*60)))
		c.i64[0] = append(c.i64[0], rk.bucket)
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
		c.done = append(c.done, 0)
	}
	marker, adv := int64(-1), b.Last-done
	if !last {
		marker, adv = -2-b.Last, 1
	}
	c.day = append(c.day, dayTime(g.day))
	c.i64[0] = append(c.i64[0], marker)
	for j := range 6 {
		c.str[j] = append(c.str[j], "")
	}
	c.status = append(c.status, 0)
	c.decision = append(c.decision, 0)
	for j := 1; j <= 4; j++ {
		c.i64[j] = append(c.i64[j], 0)
	}
	c.done = append(c.done, adv)
	for range len(sc.rowKeys) + 1 {
		c.partition = append(c.partition, uint16(b.Partition))
	}
	return s.send(ctx, insertRollupSQLs[t], append(c.args[:0],
		c.day, c.i64[0], c.str[0], c.str[1], c.str[2], c.str[3], c.str[4], c.str[5],
		c.status, c.decision, c.partition, c.i64[1], c.i64[2], c.i64[3], c.i64[4], c.done))
}

const insertDailySQL = `INSERT INTO usage_daily (plan_id, key_id, day, node, src_partition, admitted, rejected, done)`

// insertDaily writes g's events summed per (plan, key, day, node), and
// the marker row (plan and key empty): node empty and done b.Last - done
// if g is the batch's last INSERT into the table, else node b.Last and
// done 1.
func (s *Store) insertDaily(ctx context.Context, sc *insertScratch, b *Batch, g group, last bool, done int64) error {
	sc.rollupDays(b, g.index)
	c := &sc.cols
	c.reset()
	for i, rk := range sc.rowKeys {
		d := &sc.rowCounts[i]
		k := &sc.in.ownerList[rk.id]
		c.str[0] = append(c.str[0], k.plan)
		c.str[1] = append(c.str[1], k.key)
		c.day = append(c.day, dayTime(rk.bucket))
		c.str[2] = append(c.str[2], k.node)
		c.i64[0] = append(c.i64[0], d.admitted)
		c.i64[1] = append(c.i64[1], d.rejected)
		c.done = append(c.done, 0)
	}
	node, adv := "", b.Last-done
	if !last {
		node, adv = strconv.FormatInt(b.Last, 10), 1
	}
	c.str[0] = append(c.str[0], "")
	c.str[1] = append(c.str[1], "")
	c.day = append(c.day, dayTime(g.day))
	c.str[2] = append(c.str[2], node)
	c.i64[0] = append(c.i64[0], 0)
	c.i64[1] = append(c.i64[1], 0)
	c.done = append(c.done, adv)
	for range len(sc.rowKeys) + 1 {
		c.partition = append(c.partition, uint16(b.Partition))
	}
	return s.send(ctx, insertDailySQL, append(c.args[:0],
		c.str[0], c.str[1], c.day, c.str[2], c.partition, c.i64[0], c.i64[1], c.done))
}

// columns holds the column slices of one INSERT, reused from table to
// table and batch to batch.
type columns struct {
	day       []time.Time
	str       [8][]string
	i64       [5][]int64
	id        [][]byte
	status    []int32
	decision  []uint8
	requests  []uint32
	partition []uint16
	offset    []int64
	flag      []uint8
	done      []int64
	args      []any
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
	c.partition, c.offset, c.flag, c.done = c.partition[:0], c.offset[:0], c.flag[:0], c.done[:0]
	clear(c.args)
	c.args = c.args[:0]
}

// dims is an event's dimensions as usage_minute, usage_hour and
// usage_day key their rows.
type dims struct {
	key, plan, api, stage, method, resource string
	status                                  int32
	decision                                schemas.Decision
}

// owner is what usage_daily keys its rows by, besides the day.
type owner struct{ plan, key, node string }

// rowKey is a rollup row of a batch: a bucket (a minute, an hour's or a
// day's first minute, or a day) and an interned dims or owner.
type rowKey struct {
	bucket int64
	id     int32
}

type minuteSums struct{ requests, bytesIn, bytesOut, latency int64 }

type dayCounts struct{ admitted, rejected int64 }

// batchScratch is what an InsertBatch reuses, through the store's free
// list, from batch to batch: the batch's interned dimensions, shared by
// the tables, and a scratch per table.
type batchScratch struct {
	dims   batchDims
	tables [NumTables]*insertScratch
}

func newBatchScratch() *batchScratch {
	bs := &batchScratch{dims: newBatchDims()}
	for t := range bs.tables {
		bs.tables[t] = &insertScratch{in: &bs.dims, rowOf: map[rowKey]int32{}}
	}
	return bs
}

func (bs *batchScratch) reset() {
	bs.dims.reset()
	for _, sc := range bs.tables {
		sc.reset()
	}
}

// batchDims is a batch's events' dimensions and owners, interned once for
// the four rollups (each event costs two lookups by strings, then lookups
// by numbers), before the tables' goroutines start: they only read it.
type batchDims struct {
	done      bool
	dimID     map[dims]int32
	dimList   []dims
	dimOf     []int32 // per event
	perKeyOf  []int32 // per dims: its usage_key_day dims
	ownerID   map[owner]int32
	ownerList []owner
	ownerOf   []int32 // per event; -1: neither plan nor key
}

func newBatchDims() batchDims {
	return batchDims{dimID: map[dims]int32{}, ownerID: map[owner]int32{}}
}

// insertScratch is what one table's INSERTs of a batch reuse.
type insertScratch struct {
	in     *batchDims
	groups []group
	cols   columns

	// The rows of the rollup being written: the map indexes the slices.
	rowOf     map[rowKey]int32
	rowKeys   []rowKey
	rowSums   []minuteSums
	rowCounts []dayCounts
}

// newInsertScratch is a table's scratch with a batchDims of its own.
func newInsertScratch() *insertScratch {
	d := newBatchDims()
	return &insertScratch{in: &d, rowOf: map[rowKey]int32{}}
}

// intern fills dimOf, ownerOf and perKeyOf for b's events, once per
// batch.
func (d *batchDims) intern(b *Batch) {
	if d.done {
		return
	}
	d.done = true
	for i := range b.Events {
		e := &b.Events[i]
		k := dims{key: e.KeyID, plan: e.PlanID, api: e.APIID, stage: e.Stage, method: e.Method, resource: e.Resource,
			status: e.Status, decision: e.Decision}
		d.dimOf = append(d.dimOf, d.dimIDOf(k))
		if e.PlanID == "" && e.KeyID == "" {
			d.ownerOf = append(d.ownerOf, -1)
			continue
		}
		o := owner{plan: e.PlanID, key: e.KeyID, node: e.Node}
		oid, ok := d.ownerID[o]
		if !ok {
			oid = int32(len(d.ownerList))
			d.ownerID[o] = oid
			d.ownerList = append(d.ownerList, o)
		}
		d.ownerOf = append(d.ownerOf, oid)
	}
	// Each dims' usage_key_day dims: without method, resource and status
	// (interned alongside; the loop sees the ones it adds, harmlessly).
	for id := 0; id < len(d.dimList); id++ {
		k := d.dimList[id]
		k.method, k.resource, k.status = "", "", 0
		d.perKeyOf = append(d.perKeyOf, d.dimIDOf(k))
	}
}

func (d *batchDims) dimIDOf(k dims) int32 {
	id, ok := d.dimID[k]
	if !ok {
		id = int32(len(d.dimList))
		d.dimID[k] = id
		d.dimList = append(d.dimList, k)
	}
	return id
}

func (d *batchDims) reset() {
	d.done = false
	clear(d.dimID)
	clear(d.dimList)
	d.dimList, d.dimOf, d.perKeyOf = d.dimList[:0], d.dimOf[:0], d.perKeyOf[:0]
	clear(d.ownerID)
	clear(d.ownerList)
	d.ownerList, d.ownerOf = d.ownerList[:0], d.ownerOf[:0]
}

// clearRows empties the rollup rows.
func (sc *insertScratch) clearRows() {
	clear(sc.rowOf)
	sc.rowKeys, sc.rowSums, sc.rowCounts = sc.rowKeys[:0], sc.rowSums[:0], sc.rowCounts[:0]
}

// row returns the index of the row of k, adding it.
func (sc *insertScratch) row(k rowKey) int32 {
	r, ok := sc.rowOf[k]
	if !ok {
		r = int32(len(sc.rowKeys))
		sc.rowOf[k] = r
		sc.rowKeys = append(sc.rowKeys, k)
		sc.rowSums = append(sc.rowSums, minuteSums{})
		sc.rowCounts = append(sc.rowCounts, dayCounts{})
	}
	return r
}

// rollupMinutes groups the events at index into rows of a rollup whose
// buckets are width minutes wide; summed over method, resource and
// status if perKey (usage_key_day).
func (sc *insertScratch) rollupMinutes(b *Batch, index []int32, width int64, perKey bool) {
	sc.in.intern(b)
	sc.clearRows()
	for _, i := range index {
		e := &b.Events[i]
		minute := utc.FloorDiv(e.Time, 60e9)
		id := sc.in.dimOf[i]
		if perKey {
			id = sc.in.perKeyOf[id]
		}
		m := &sc.rowSums[sc.row(rowKey{minute - (minute%width+width)%width, id})]
		m.requests += e.Requests()
		m.bytesIn += e.BytesIn
		m.bytesOut += e.BytesOut
		m.latency += e.LatencyMicros
	}
}

// rollupDays groups the events at index into usage_daily rows. Events
// with neither plan nor key count in the minute rollups only.
func (sc *insertScratch) rollupDays(b *Batch, index []int32) {
	sc.in.intern(b)
	sc.clearRows()
	for _, i := range index {
		if sc.in.ownerOf[i] < 0 {
			continue
		}
		e := &b.Events[i]
		c := &sc.rowCounts[sc.row(rowKey{e.Day(), sc.in.ownerOf[i]})]
		if e.Decision == schemas.DecisionAllowed {
			c.admitted += e.Requests()
		} else {
			c.rejected += e.Requests()
		}
	}
}

// reset drops the references to the last batch's strings and events.
func (sc *insertScratch) reset() {
	sc.groups = sc.groups[:0]
	sc.cols.reset()
	sc.clearRows()
}
