package sqlitestore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/history"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
)

// fillBatch gives batch fresh ids and times from *t on, with field values
// drawn from a small catalog the way an enforcer's are: one API and stage,
// seven keys, each in one plan (a key has one plan per stage), three
// resources, and mixed outcomes: mostly 200, some throttled (429), upstream
// 404s and 500s, and requests without a key (403).
func fillBatch(batch []schemas.UsageEvent, t *int64) {
	plans := [...]string{"free", "free", "free", "pro", "pro", "pro", "enterprise"}
	keys := [...]string{"key-0001", "key-0002", "key-0003", "key-0004", "key-0005", "key-0006", "key-0007"}
	resources := [...]string{"/items", "/items/{id}", "/orders/{id}/lines"}
	for i := range batch {
		*t += 50_000 // 20k events/s
		k := i % len(keys)
		e := schemas.UsageEvent{
			ID:            schemas.NewEventID(*t),
			Time:          *t,
			APIID:         "a1b2c3d4e5",
			Stage:         "prod",
			KeyID:         keys[k],
			PlanID:        plans[k],
			Method:        "GET",
			Resource:      resources[i%len(resources)],
			Status:        200,
			Decision:      schemas.DecisionAllowed,
			LatencyMicros: 1234 + int64(i),
			BytesIn:       0,
			BytesOut:      5120 + int64(i),
		}
		switch {
		case i%10 == 9:
			e.Status, e.Decision, e.LatencyMicros, e.BytesOut = 429, schemas.DecisionThrottled, 3, 60
		case i%50 == 13:
			e.KeyID, e.PlanID, e.Status, e.Decision, e.LatencyMicros, e.BytesOut = "", "", 403, schemas.DecisionForbidden, 2, 42
		case i%25 == 7:
			e.Status = 404
		case i%100 == 21:
			e.Status = 500
		}
		batch[i] = e
	}
}

// BenchmarkInsertEvents measures the background write path: one batch per
// iteration, each with fresh ids, into a file that grows as it runs. 4096
// is the drainer's largest batch, what it sends under load.
func BenchmarkInsertEvents(b *testing.B) {
	for _, size := range []int{100, 1000, 4096} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			s, err := Open(filepath.Join(b.TempDir(), "usage.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			batch := make([]schemas.UsageEvent, size)
			t := int64(1_750_000_000e9)
			b.ReportAllocs()
			for b.Loop() {
				// Timed, but a few % of the cost: b.StopTimer per batch
				// costs more than it hides.
				fillBatch(batch, &t)
				if err := s.InsertEvents(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkEncodeBatch measures the encoding as InsertEvents runs it, with
// the encoder and the buffer reused.
func BenchmarkEncodeBatch(b *testing.B) {
	for _, size := range []int{100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			batch := make([]schemas.UsageEvent, size)
			t := int64(1_750_000_000e9)
			fillBatch(batch, &t)
			var (
				enc batchEncoder
				buf []byte
			)
			b.ReportAllocs()
			for b.Loop() {
				buf = enc.encode(buf[:0], batch)
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(len(buf))/float64(size), "bytes/event")
		})
	}
}

// BenchmarkDecodeBatch measures what Events pays per stored event.
func BenchmarkDecodeBatch(b *testing.B) {
	batch := make([]schemas.UsageEvent, 1000)
	t := int64(1_750_000_000e9)
	fillBatch(batch, &t)
	buf := encodeBatch(nil, batch)
	var out []schemas.UsageEvent
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if out, err = appendDecoded(out[:0], buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkOpen measures what the integrity check costs a start: Open of a
// file of N events (about 40 bytes each on disk), from the page cache. The
// MB/s figure is the check's read rate, so the start cost of a larger file
// is its size over that rate. TOLLGATE_BENCH_OPEN_EVENTS sets N (default
// 1M; BENCHMARKS.md has 10M).
func BenchmarkOpen(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("TOLLGATE_BENCH_OPEN_EVENTS")); err == nil && v > 0 {
		n = v
	}
	path := filepath.Join(b.TempDir(), "usage.db")
	s, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]schemas.UsageEvent, 4096)
	t := int64(1_764_000_000e9)
	for done := 0; done < n; done += len(batch) {
		fillBatch(batch, &t)
		if err := s.InsertEvents(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(st.Size())
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		s, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

// BenchmarkReport measures /v1/usage's query in the embedded store, day
// by key over one day, on TOLLGATE_BENCH_REPORT_KEYS keys (default 200)
// each making one request a minute for a day; "report" is Report (SQLite
// groups), "go-aggregate" the former path (every minute row read into Go
// and summed there), in the same run:
//
//	go test -run '^$' -bench Report -benchtime 3x ./usage/sqlitestore/
func BenchmarkReport(b *testing.B) {
	keys := 200
	if v := os.Getenv("TOLLGATE_BENCH_REPORT_KEYS"); v != "" {
		fmt.Sscan(v, &keys)
	}
	s, err := Open(filepath.Join(b.TempDir(), "usage.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const minutes = 1440
	start := int64(20000 * 86400e9)
	var events []schemas.UsageEvent
	for m := range int64(minutes) {
		for k := range keys {
			ts := start + m*60e9 + int64(k)*(60e9/int64(keys))
			events = append(events, schemas.UsageEvent{ID: schemas.NewEventID(ts), Time: ts, APIID: "api1", Stage: "prod",
				KeyID: "key-" + strconv.Itoa(k), PlanID: "pro", Method: "GET", Resource: "/items", Status: 200,
				Decision: schemas.DecisionAllowed, LatencyMicros: 1000, BytesOut: 100})
		}
		if len(events) >= 4096 || m == minutes-1 {
			if err := s.InsertEvents(ctx, events); err != nil {
				b.Fatal(err)
			}
			events = events[:0]
		}
	}
	from, to := start/60e9, start/60e9+minutes
	r := usage.Report{FromMinute: from, ToMinute: to, Granularity: "day", GroupBy: []string{"key"}}
	b.Run("report", func(b *testing.B) {
		for b.Loop() {
			rows := 0
			if err := s.Report(ctx, r, func(*usage.ReportRow) error { rows++; return nil }); err != nil {
				b.Fatal(err)
			}
			if rows != keys {
				b.Fatalf("%d rows, want %d", rows, keys)
			}
		}
	})
	b.Run("go-aggregate", func(b *testing.B) {
		for b.Loop() {
			sums := map[string]int64{}
			if err := s.EachMinute(ctx, from, to, func(m *usage.MinuteCount) error { sums[m.KeyID] += m.Requests; return nil }); err != nil {
				b.Fatal(err)
			}
			if len(sums) != keys {
				b.Fatalf("%d keys, want %d", len(sums), keys)
			}
		}
	})
}

// BenchmarkReportMonth measures the reports of a month in the embedded
// store: TOLLGATE_BENCH_REPORT_KEYS keys (default 1000) each making
// TOLLGATE_BENCH_REPORT_RATE requests an hour (default 6) for 31 days,
// made by internal/history (loaded before the timer, not timed):
//
//	go test -run '^$' -bench ReportMonth -benchtime 3x ./usage/sqlitestore/
func BenchmarkReportMonth(b *testing.B) {
	keys, rate := 1000, 6.0
	if v := os.Getenv("TOLLGATE_BENCH_REPORT_KEYS"); v != "" {
		fmt.Sscan(v, &keys)
	}
	if v := os.Getenv("TOLLGATE_BENCH_REPORT_RATE"); v != "" {
		fmt.Sscan(v, &rate)
	}
	s, err := Open(filepath.Join(b.TempDir(), "usage.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	c := history.Config{Keys: keys, Start: start, Days: 31, Rate: rate, Seed: 1}
	loaded := time.Now()
	if err := c.Generate(4096, func(events []schemas.UsageEvent) error { return s.InsertEvents(ctx, events) }); err != nil {
		b.Fatal(err)
	}
	b.Logf("loaded %d events in %v", c.Total(), time.Since(loaded).Round(time.Millisecond))
	for _, table := range []string{"usage_minute", "usage_hour", "usage_key_hour", "usage_api_hour", "usage_day", "usage_key_day", "usage_api_day"} {
		var n int64
		if err := s.db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
			b.Fatal(err)
		}
		b.Logf("%s: %d rows", table, n)
	}
	from := start.Unix() / 60
	month := from + 31*1440
	for _, tt := range []struct {
		name string
		r    usage.Report
	}{
		{"day-by-key", usage.Report{FromMinute: from, ToMinute: month, Granularity: "day", GroupBy: []string{"key"}}},
		{"hour", usage.Report{FromMinute: from, ToMinute: month, Granularity: "hour"}},
		{"day", usage.Report{FromMinute: from, ToMinute: month, Granularity: "day"}},
		{"top", usage.Report{FromMinute: from, ToMinute: month, Granularity: "month", GroupBy: []string{"key", "plan", "decision"}}},
		{"billing", usage.Report{FromMinute: from, ToMinute: month, Granularity: "day", GroupBy: []string{"key", "plan", "decision"}}},
		{"minute-one-key-day", usage.Report{FromMinute: from + 10*1440, ToMinute: from + 11*1440, Granularity: "minute",
			Filters: map[string]string{"key": history.KeyID(7)}}},
	} {
		b.Run(tt.name, func(b *testing.B) {
			for b.Loop() {
				rows := 0
				if err := s.Report(ctx, tt.r, func(*usage.ReportRow) error { rows++; return nil }); err != nil {
					b.Fatal(err)
				}
				if rows == 0 {
					b.Fatal("no rows")
				}
			}
		})
	}
}
