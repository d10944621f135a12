package chstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
)

func TestMigrate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := Open(ctx, testDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	want := []string{"0001_usage_events", "0002_usage_minute", "0003_usage_daily", "0004_quota_adjustments", "0005_usage_events_requests",
		"0006_usage_events_batch_end", "0007_usage_minute_next", "0008_usage_hour", "0009_usage_day", "0010_usage_daily_next",
		"0011_rollups_copy", "0012_rollups_swap", "0013_rollups_v1_drop", "0014_usage_events_markers",
		"0015_usage_key_day", "0016_usage_key_day_fill", "0017_usage_minute_by_key", "0018_usage_minute_by_key_copy",
		"0019_usage_minute_by_key_swap", "0020_usage_minute_v2_drop", "0021_usage_events_key_fingerprint", "0022_lost_usage"}
	applied, err := s.Migrate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(applied, want) {
		t.Errorf("first Migrate applied %q, want %q", applied, want)
	}
	applied, err = s.Migrate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != 0 {
		t.Errorf("second Migrate applied %q, want none", applied)
	}

	rows, err := s.conn.Query(ctx, `SELECT version, name, applied_at > toDateTime('2020-01-01 00:00:00') FROM tollgate_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	var recorded []string
	for rows.Next() {
		var (
			v    uint32
			name string
			ok   uint8
		)
		if err := rows.Scan(&v, &name, &ok); err != nil {
			t.Fatal(err)
		}
		if ok != 1 {
			t.Errorf("migration %d: applied_at not set", v)
		}
		recorded = append(recorded, migrationName(migration{version: v, name: name}))
	}
	rows.Close()
	if !slices.Equal(recorded, want) {
		t.Errorf("tollgate_migrations holds %q, want %q once each", recorded, want)
	}
	for _, table := range []string{"usage_events", "usage_minute", "usage_hour", "usage_day", "usage_key_day", "usage_daily", "quota_adjustments", "lost_usage"} {
		var n uint64
		if err := s.conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = ?", table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("table %s: not created", table)
		}
	}

	// A migration this program does not know: a newer program's.
	if err := s.conn.Exec(ctx, recordMigrationSQL, uint32(len(migrations)+1), "future"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Migrate(ctx); err == nil {
		t.Error("Migrate of a database with a newer migration: no error")
	}
}

// A database migrated before usage_events had requests keeps its rows,
// each read as one request, and takes events with a count after the
// migration. The migration is idempotent although 18.16 has no ADD
// COLUMN IF NOT EXISTS: a process that stopped after the ALTER, before
// recording it, records it on the next run.
func TestMigrateRequestsColumn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tt := range []struct {
		name         string
		alteredFirst bool // the ALTER ran, its record did not
	}{
		{"from version 4", false},
		{"stopped after the ALTER", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(ctx, testDatabase(t))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := migrateWith(ctx, s.conn, migrations[:4]); err != nil {
				t.Fatal(err)
			}
			old := genEvents(mrand.New(mrand.NewPCG(3, 4)), 50, day20000, 1e9, "old-")
			for i := range old {
				old[i].Count = 0 // written by a program without counts
			}
			// The raw row as the program before migration 5 wrote it.
			const oldInsertRaw = `INSERT INTO usage_events (day, key_id, time_ns, id, plan_id, api_id, stage, method, resource, status, decision, latency_us, bytes_in, bytes_out, node, kafka_offset, src_partition, src_offset)`
			for i, e := range old {
				if err := s.send(ctx, oldInsertRaw, []any{[]time.Time{dayTime(e.Day())}, []string{e.KeyID}, []int64{e.Time}, [][]byte{e.ID[:]},
					[]string{e.PlanID}, []string{e.APIID}, []string{e.Stage}, []string{e.Method}, []string{e.Resource}, []int32{e.Status},
					[]uint8{uint8(e.Decision)}, []int64{e.LatencyMicros}, []int64{e.BytesIn}, []int64{e.BytesOut}, []string{e.Node},
					[]int64{int64(i)}, []uint16{0}, []int64{int64(i)}}); err != nil {
					t.Fatal(err)
				}
			}
			if tt.alteredFirst {
				if err := s.conn.Exec(ctx, migrations[4].sql); err != nil {
					t.Fatal(err)
				}
			}
			applied, err := s.Migrate(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if want := migrationNames(5); !slices.Equal(applied, want) {
				t.Errorf("Migrate applied %q, want %q", applied, want)
			}
			counted := []schemas.UsageEvent{{ID: schemas.NewEventID(day20000 + 3600e9), Time: day20000 + 3600e9, APIID: "api1", Stage: "prod",
				Method: "OTHER", Status: 403, Decision: schemas.DecisionForbidden, Count: 4000, LatencyMicros: 4000 * 3}}
			if _, err := s.InsertBatch(ctx, &Batch{Partition: 0, Last: 1000, Offsets: []int64{1000}, Events: counted}, doneAt(49, 1000)); err != nil {
				t.Fatal(err)
			}
			var sum uint64
			if err := s.conn.QueryRow(ctx, "SELECT sum(requests) FROM usage_events").Scan(&sum); err != nil {
				t.Fatal(err)
			}
			if sum != 50+4000 {
				t.Errorf("sum(requests) = %d, want %d (50 old rows of one request, one of 4000)", sum, 50+4000)
			}
			got, err := s.Events(ctx, math.MinInt64, math.MaxInt64, 1000)
			if err != nil {
				t.Fatal(err)
			}
			var n int64
			for _, e := range got {
				n += e.Requests()
				if e.Time != counted[0].Time && e.Count != 0 {
					t.Errorf("an old row reads with Count %d, want 0", e.Count)
				}
			}
			if n != 50+4000 {
				t.Errorf("Events stand for %d requests, want %d", n, 50+4000)
			}
		})
	}
}

// doneAt is a watermark with usage_events done at raw and every rollup
// at rollups.
func doneAt(raw, rollups int64) Watermark {
	w := Watermark{}
	for t := range w.Done {
		w.Done[t] = rollups
	}
	w.Done[TableRaw] = raw
	return w
}

// migrationNames is the names of the migrations from version v on.
func migrationNames(v int) []string {
	var out []string
	for _, m := range migrations[v-1:] {
		out = append(out, migrationName(m))
	}
	return out
}

// insertAll writes the records of partition p in batches of size records
// with InsertBatch, chaining the watermarks it returns.
func insertAll(t testing.TB, s *Store, p int, recs []record, size int) Watermark {
	t.Helper()
	wm := watermark(t, s, p)
	for chunk := range slices.Chunk(recs, size) {
		var err error
		if wm, err = s.InsertBatch(context.Background(), batchOf(p, chunk), wm); err != nil {
			t.Fatal(err)
		}
	}
	return wm
}

func TestInsertBatchMatchesSQLite(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	r := mrand.New(mrand.NewPCG(1, 2))
	// Three partitions; one runs over a midnight, one over the end of a
	// month (2024-10-31), so batches split into runs.
	var all []schemas.UsageEvent
	starts := []int64{day20000 + 3600e9, 20027*dayNS - 30e9, 20026*dayNS + dayNS - 20e9}
	for p, start := range starts {
		events := genEvents(r, 3000, start, 20e6, "p"+itoa(p)+"-")
		all = append(all, events...)
		last := insertAll(t, s, p, topic(r, events), 500)
		if got := watermark(t, s, p); !got.Equal(last) {
			t.Errorf("partition %d: Watermarks %+v, InsertBatch returned %+v", p, got, last)
		}
	}
	sameAsOracle(t, s, oracle(t, all))
}

func TestDailyFilter(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	var batch []schemas.UsageEvent
	ev := func(ns int64, plan, key string, d schemas.Decision) schemas.UsageEvent {
		return schemas.UsageEvent{ID: schemas.NewEventID(ns), Time: ns, APIID: "api1", Stage: "prod",
			PlanID: plan, KeyID: key, Method: "GET", Resource: "/items/{id}", Status: 200, Decision: d}
	}
	for d := int64(0); d < 3; d++ {
		for _, plan := range []string{"free", "pro"} {
			for _, key := range []string{"k1", "k2"} {
				batch = append(batch, ev(day20000+d*dayNS+1, plan, key, schemas.DecisionAllowed),
					ev(day20000+d*dayNS+2, plan, key, schemas.DecisionThrottled))
			}
		}
	}
	var recs []record
	for i := range batch {
		recs = append(recs, record{offset: int64(i), event: &batch[i]})
	}
	insertAll(t, s, 0, recs, len(recs))
	o := oracle(t, batch)
	ctx := context.Background()
	for _, f := range []usage.Filter{
		everyDay,
		{FromDay: 20001, ToDay: 20001},
		{FromDay: 20000, ToDay: 20002, PlanID: "pro"},
		{FromDay: 20001, ToDay: 20002, KeyID: "k2"},
		{FromDay: 0, ToDay: 30000, PlanID: "free", KeyID: "k1"},
		{FromDay: 20000, ToDay: 20002, PlanID: "enterprise"},
		{FromDay: 19000, ToDay: 19999},
		{FromDay: 20003, ToDay: 21000},
		{FromDay: 20002, ToDay: 20000},
		{FromDay: 20000, ToDay: 20002, PlanID: "pr%"},
		{FromDay: 20000, ToDay: 20002, KeyID: "k1' OR '1'='1"},
		{FromDay: math.MinInt64, ToDay: -1},
		{FromDay: 100000, ToDay: math.MaxInt64},
	} {
		got, err := s.Daily(ctx, f)
		if err != nil {
			t.Fatalf("Daily(%+v): %v", f, err)
		}
		want, err := o.Daily(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("Daily(%+v):\n got %+v\nwant %+v", f, got, want)
		}
	}
	// A minute range within the data, and one across its edges.
	for _, rng := range [][2]int64{{20001 * 1440, 20002 * 1440}, {20000*1440 - 5, 20001*1440 + 1}, {0, 1}, {5, 5}} {
		got, err := s.Minutes(ctx, rng[0], rng[1])
		if err != nil {
			t.Fatal(err)
		}
		want, err := o.Minutes(ctx, rng[0], rng[1])
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("Minutes(%d, %d):\n got %+v\nwant %+v", rng[0], rng[1], got, want)
		}
	}
	// Events: a limit, and a range that cuts the data.
	got, err := s.Events(ctx, day20000+dayNS, day20000+2*dayNS+2, 5)
	if err != nil {
		t.Fatal(err)
	}
	want, err := o.Events(ctx, day20000+dayNS, day20000+2*dayNS+2, 5)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("Events with a limit:\n got %+v\nwant %+v", got, want)
	}
}

// TestLostReply: the inserts of a batch succeed but the caller does not
// learn it; it reads the watermarks and retries, with the same batch or
// with the consumer's next, larger one.
func TestLostReply(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	r := mrand.New(mrand.NewPCG(3, 4))
	events := genEvents(r, 2000, day20000, 1e6, "")
	recs := topic(r, events)
	first, rest := recs[:800], recs[800:]

	wm := watermark(t, s, 7)
	if !wm.Equal(NoWatermark) {
		t.Fatalf("empty partition: Watermarks %+v, want %+v", wm, NoWatermark)
	}
	if _, err := s.InsertBatch(ctx, batchOf(7, first), wm); err != nil {
		t.Fatal(err)
	}
	// The reply is lost. The watermarks show the batch stored.
	wm = watermark(t, s, 7)
	if last := first[len(first)-1].offset; !wm.Equal(doneAt(last, last)) {
		t.Fatalf("after a batch up to %d: Watermarks %+v", last, wm)
	}
	// The same batch again writes nothing.
	again, err := s.InsertBatch(ctx, batchOf(7, first), wm)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Equal(wm) {
		t.Errorf("retried batch: watermark %+v, want %+v", again, wm)
	}
	// The consumer re-reads from the committed offset (0) and cuts a
	// larger batch: only its new records are written.
	if _, err := s.InsertBatch(ctx, batchOf(7, recs[:1300]), wm); err != nil {
		t.Fatal(err)
	}
	insertAll(t, s, 7, rest[500:], 300)
	sameAsOracle(t, s, oracle(t, events))
}

// TestCrashBetweenTables: a batch is written to some tables only (the
// aggregator stopped between two INSERTs, of two tables or of two
// partitions of one); the next attempt, from the watermarks, completes
// it exactly.
func TestCrashBetweenTables(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// crash writes part of b, as a crash would leave it.
		crash func(t *testing.T, s *Store, b *Batch)
	}{
		{"after raw", func(t *testing.T, s *Store, b *Batch) {
			if _, err := s.InsertBatch(context.Background(), b, doneAt(-1, b.Last)); err != nil {
				t.Fatal(err)
			}
		}},
		{"after minute", func(t *testing.T, s *Store, b *Batch) {
			wm := doneAt(b.Last, b.Last)
			wm.Done[TableRaw], wm.Done[TableMinute] = -1, -1
			if _, err := s.InsertBatch(context.Background(), b, wm); err != nil {
				t.Fatal(err)
			}
		}},
		{"the first partition of each table", func(t *testing.T, s *Store, b *Batch) {
			// The first INSERT of each table, as InsertBatch writes it: a
			// state no single failure leaves, but each table's part is.
			sc := newInsertScratch()
			for tb := range NumTables {
				sc.group(b, tb, &NoWatermark)
				if len(sc.groups) < 2 {
					t.Fatalf("table %s: the batch is %d partitions; the test wants more", tableNames[tb], len(sc.groups))
				}
				if err := s.insertGroup(context.Background(), sc, b, tb, sc.groups[0], false, -1); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"after each INSERT", nil}, // below: a failure before the k-th INSERT, every k
		{"context cancelled", func(t *testing.T, s *Store, b *Batch) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if _, err := s.InsertBatch(ctx, b, NoWatermark); !errors.Is(err, context.Canceled) {
				t.Fatalf("InsertBatch with a cancelled context: %v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Around the end of October, the events' days alternating, so
			// that every table's rows fall in two partitions.
			r := mrand.New(mrand.NewPCG(5, 6))
			events := alternating(r, genEvents(r, 1500, 20028*dayNS, 1e6, ""), 20028*dayNS)
			recs := topic(r, events)
			b := batchOf(2, recs)
			ks := []int{-1}
			if tt.crash == nil {
				ks = []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11} // 6 tables × 2 partitions
			}
			for _, k := range ks {
				s := openTest(t)
				if k >= 0 {
					s.failBeforeInsert(k)
					_, err := s.InsertBatch(context.Background(), b, NoWatermark)
					s.failBeforeInsert(-1)
					if err == nil {
						t.Fatalf("InsertBatch failing before INSERT %d: no error", k)
					}
				} else {
					tt.crash(t, s, b)
				}
				wm := watermark(t, s, 2)
				got, err := s.InsertBatch(context.Background(), b, wm)
				if err != nil {
					t.Fatal(err)
				}
				if want := doneAt(b.Last, b.Last); !got.Equal(want) {
					t.Errorf("InsertBatch returned %+v, want %+v", got, want)
				}
				if again := watermark(t, s, 2); !again.Equal(got) {
					t.Errorf("then Watermarks %+v, want %+v", again, got)
				}
				sameAsOracle(t, s, oracle(t, events))
			}
		})
	}
}

// alternating moves events to within a second of midnight, their days
// alternating as enforcers' clocks a second apart make them.
func alternating(r *mrand.Rand, events []schemas.UsageEvent, midnight int64) []schemas.UsageEvent {
	for i := range events {
		ts := midnight + r.Int64N(1e9)
		if i%2 == 0 {
			ts = midnight - 1 - r.Int64N(1e9)
		}
		events[i].Time, events[i].ID = ts, schemas.NewEventID(ts)
	}
	return events
}

// TestFailuresModel runs partitions' records through InsertBatch the way
// an aggregator does (read watermarks, insert a batch, commit), with a
// failure at random after each attempt: the reply lost, or the writer
// stopped after one or two tables, or part way (a prefix of the batch
// written). Then either the writer restarts (Watermarks, and a batch of
// another size from the last commit) or it retries the same batch
// (BatchWatermark). Whatever happened, the store ends up holding every
// event once. The negative control retries without reading the store (as
// a store without watermarks would) and must count some events twice.
func TestFailuresModel(t *testing.T) {
	for _, mode := range []string{"restart", "retry", "negative control"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			s := openTest(t)
			ctx := context.Background()
			r := mrand.New(mrand.NewPCG(7, 8))
			var all []schemas.UsageEvent
			failures := 0
			for p := range 3 {
				// Partition 0: 5 s over the end of October (2024-10-31,
				// day 20027), a batch or two in two partitions of each
				// table; partition 1: five days around it, most batches
				// in several; partition 2: within a second of that
				// midnight, the days alternating.
				start, step := 20028*dayNS-2e9, int64(2e6)
				if p == 1 {
					start, step = 20025*dayNS, 172.8e9
				}
				events := genEvents(r, 2500, start, step, "p"+itoa(p)+"-")
				if p == 2 {
					events = alternating(r, events, 20028*dayNS)
				}
				all = append(all, events...)
				recs := topic(r, events)
				committed := 0 // index of the next record to read
				committedWM := NoWatermark
				for committed < len(recs) {
					n := min(1+r.IntN(600), len(recs)-committed)
					b := batchOf(p, recs[committed:committed+n])
					wm := committedWM
					if mode == "restart" {
						wm = watermark(t, s, p)
					}
					if fate := r.IntN(7); fate >= 2 {
						failures++
						fail(t, s, r, min(fate, 5), b, wm)
						switch mode {
						case "restart":
							continue // a batch of another size, from the last commit
						case "retry":
							var err error
							if wm, err = s.BatchWatermark(ctx, b, wm); err != nil {
								t.Fatal(err)
							}
						}
					}
					got, err := s.InsertBatch(ctx, b, wm)
					if err != nil {
						t.Fatal(err)
					}
					committed += n
					committedWM = got
				}
			}
			err := diffOracle(s, oracle(t, all))
			if mode == "negative control" {
				if err == nil {
					t.Fatalf("stale watermarks over %d failures: the store matches the oracle; the test cannot see double counts", failures)
				}
				t.Logf("negative control fails as it must: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("after %d failures: %v", failures, err)
			}
			t.Logf("%d failures, store exact", failures)
		})
	}
}

// fail leaves the store as a failed InsertBatch(b, wm) may: fate 2 all
// written but the reply lost; 3 stopped after raw; 4 after minute; 5
// stopped before one of its INSERTs, at random.
func fail(t *testing.T, s *Store, r *mrand.Rand, fate int, b *Batch, wm Watermark) {
	t.Helper()
	ctx := context.Background()
	var err error
	switch fate {
	case 2:
		_, err = s.InsertBatch(ctx, b, wm)
	case 3:
		skip := wm
		for tb := TableMinute; tb < NumTables; tb++ {
			skip.Done[tb] = max(wm.Done[tb], b.Last)
		}
		_, err = s.InsertBatch(ctx, b, skip)
	case 4:
		skip := wm
		for tb := TableHour; tb < NumTables; tb++ {
			skip.Done[tb] = max(wm.Done[tb], b.Last)
		}
		_, err = s.InsertBatch(ctx, b, skip)
	case 5:
		s.failBeforeInsert(r.IntN(14))
		_, err = s.InsertBatch(ctx, b, wm)
		s.failBeforeInsert(-1)
		if errors.Is(err, errInjected) {
			err = nil
		}
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestInvalidBatch(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	e := schemas.UsageEvent{ID: schemas.NewEventID(day20000), Time: day20000, KeyID: "k", Decision: schemas.DecisionAllowed}
	old := e
	old.Time = -1
	late := e
	late.Time = 49673 * dayNS // 2106-01-01
	for _, tt := range []struct {
		name string
		b    Batch
	}{
		{"partition", Batch{Partition: 70000, Last: 0, Offsets: []int64{0}, Events: []schemas.UsageEvent{e}}},
		{"negative partition", Batch{Partition: -1, Last: 0, Offsets: []int64{0}, Events: []schemas.UsageEvent{e}}},
		{"offsets and events", Batch{Last: 1, Offsets: []int64{0, 1}, Events: []schemas.UsageEvent{e}}},
		{"offsets not ascending", Batch{Last: 5, Offsets: []int64{3, 3}, Events: []schemas.UsageEvent{e, e}}},
		{"offset past last", Batch{Last: 5, Offsets: []int64{6}, Events: []schemas.UsageEvent{e}}},
		{"negative last", Batch{Last: -1}},
		{"before 1970", Batch{Last: 1, Offsets: []int64{0, 1}, Events: []schemas.UsageEvent{e, old}}},
		{"after 2105", Batch{Last: 1, Offsets: []int64{0, 1}, Events: []schemas.UsageEvent{e, late}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wm, err := s.InsertBatch(context.Background(), &tt.b, NoWatermark)
			if !errors.Is(err, ErrInvalidBatch) {
				t.Errorf("InsertBatch: %v, want ErrInvalidBatch", err)
			}
			if !wm.Equal(NoWatermark) {
				t.Errorf("InsertBatch returned %+v, want the watermark given", wm)
			}
		})
	}
	if err := CheckEvent(&e); err != nil {
		t.Errorf("CheckEvent(2024-10-04): %v", err)
	}
	if err := CheckEvent(&late); err == nil {
		t.Error("CheckEvent(2106-01-01): no error")
	}
	if got := watermark(t, s, 0); !got.Equal(NoWatermark) {
		t.Errorf("after refused batches: Watermarks %+v, want %+v", got, NoWatermark)
	}
}

// TestMergesChangeNothing: after ClickHouse merged every part, the
// answers and the watermarks are what they were.
func TestMergesChangeNothing(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	r := mrand.New(mrand.NewPCG(9, 10))
	events := genEvents(r, 3000, day20000, 1e7, "")
	recs := topic(r, events)
	for i := 0; i < 3; i++ { // the same minutes and keys in several batches
		insertAll(t, s, 1, recs[i*len(recs)/3:(i+1)*len(recs)/3], 100)
	}
	if err := s.AdjustQuota(ctx, "free", "key-0", 20000, 5); err != nil {
		t.Fatal(err)
	}
	if err := s.AdjustQuota(ctx, "free", "key-0", 20000, -5); err != nil {
		t.Fatal(err)
	}
	o := oracle(t, events)
	o.AdjustQuota(ctx, "free", "key-0", 20000, 5)
	o.AdjustQuota(ctx, "free", "key-0", 20000, -5)
	before := watermark(t, s, 1)
	sameAsOracle(t, s, o)
	for _, table := range []string{"usage_events", "usage_minute", "usage_hour", "usage_day", "usage_key_day", "usage_daily", "quota_adjustments", "lost_usage"} {
		if err := s.conn.Exec(ctx, "OPTIMIZE TABLE "+table+" FINAL"); err != nil {
			t.Fatal(err)
		}
	}
	sameAsOracle(t, s, o)
	if after := watermark(t, s, 1); !after.Equal(before) {
		t.Errorf("after merges: Watermarks %+v, before %+v", after, before)
	}
}

func TestWatermarksPartitions(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	r := mrand.New(mrand.NewPCG(11, 12))
	events := genEvents(r, 100, day20000, 1e6, "")
	recs := topic(r, events)
	insertAll(t, s, 3, recs, 40)
	// Anonymous events only: usage_daily gets no rows of this batch.
	anon := []schemas.UsageEvent{{ID: schemas.NewEventID(day20000), Time: day20000, Status: 403, Decision: schemas.DecisionForbidden}}
	if _, err := s.InsertBatch(ctx, &Batch{Partition: 4, Last: 9, Offsets: []int64{8}, Events: anon}, NoWatermark); err != nil {
		t.Fatal(err)
	}
	got, err := s.Watermarks(ctx, []int{3, 4, 5})
	if err != nil {
		t.Fatal(err)
	}
	last := recs[len(recs)-1].offset
	// Partition 4's batch has no usage_daily rows, but its marker.
	want := map[int]Watermark{3: doneAt(last, last), 4: doneAt(9, 9), 5: NoWatermark}
	for p, w := range want {
		if !got[p].Equal(w) {
			t.Errorf("partition %d: %+v, want %+v", p, got[p], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("Watermarks: %d partitions, want %d", len(got), len(want))
	}
	if _, err := s.Watermarks(ctx, []int{70000}); err == nil {
		t.Error("Watermarks of partition 70000: no error")
	}
	if got, err := s.Watermarks(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("Watermarks(nil) = %v, %v", got, err)
	}
}

// A database migrated before usage_events had key_fingerprint keeps its
// raw rows, read with none, and stores the fingerprint of events written
// after the migration; the ALTER run without its record is recorded on
// the next run, not run again.
func TestMigrateKeyFingerprintColumn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, alteredFirst := range []bool{false, true} {
		t.Run(fmt.Sprint("alteredFirst=", alteredFirst), func(t *testing.T) {
			s, err := Open(ctx, testDatabase(t))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := migrateWith(ctx, s.conn, migrations[:20]); err != nil {
				t.Fatal(err)
			}
			// The raw row as the program before migration 21 wrote it.
			old := schemas.UsageEvent{ID: schemas.NewEventID(day20000 + 1), Time: day20000 + 1, KeyID: "k1", PlanID: "p", Status: 200, Decision: schemas.DecisionAllowed}
			const oldInsertRaw = `INSERT INTO usage_events (day, key_id, time_ns, id, plan_id, status, decision, requests, node, kafka_offset, src_partition, src_offset, batch_end)`
			if err := s.send(ctx, oldInsertRaw, []any{[]time.Time{dayTime(old.Day())}, []string{old.KeyID}, []int64{old.Time}, [][]byte{old.ID[:]},
				[]string{old.PlanID}, []int32{old.Status}, []uint8{uint8(old.Decision)}, []uint32{1}, []string{""},
				[]int64{0}, []uint16{0}, []int64{0}, []uint8{1}}); err != nil {
				t.Fatal(err)
			}
			if alteredFirst {
				if err := s.conn.Exec(ctx, migrations[20].sql); err != nil {
					t.Fatal(err)
				}
			}
			applied, err := s.Migrate(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if want := migrationNames(21); !slices.Equal(applied, want) {
				t.Errorf("Migrate applied %q, want %q", applied, want)
			}
			e := old
			e.ID, e.Time, e.KeyFingerprint = schemas.NewEventID(day20000+2), day20000+2, "5a4c9e01"
			if _, err := s.InsertBatch(ctx, &Batch{Partition: 1, Last: 7, Offsets: []int64{7}, Events: []schemas.UsageEvent{e}}, NoWatermark); err != nil {
				t.Fatal(err)
			}
			got, err := s.Events(ctx, day20000, day20000+3, 10)
			if err != nil {
				t.Fatal(err)
			}
			if want := []schemas.UsageEvent{old, e}; !slices.Equal(got, want) {
				t.Errorf("Events:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}
