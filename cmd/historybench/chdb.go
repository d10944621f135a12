package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// recreateDatabase drops the benchmark's database and creates it empty.
func recreateDatabase(ctx context.Context, server driver.Conn, db string) error {
	if err := server.Exec(ctx, "DROP DATABASE IF EXISTS "+db); err != nil {
		return fmt.Errorf("drop database %s: %w", db, err)
	}
	if err := server.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		return fmt.Errorf("create database %s: %w", db, err)
	}
	return nil
}

// loadRecordTable records, in the benchmark's database, the flags of the
// load it holds; written once the load is whole and checked, so that
// --reuse never reuses a partial one.
const loadRecordTable = "historybench_load"

// loadRecord is what the database says was loaded into it.
type loadRecord struct {
	flags  string
	events uint64
	loaded time.Time
}

// readLoadRecord returns the database's load record; ok is false when
// there is none (no database, no table, no row).
func readLoadRecord(ctx context.Context, server driver.Conn, db string) (rec loadRecord, ok bool, err error) {
	var n uint64
	if err := server.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name = ?", db, loadRecordTable).Scan(&n); err != nil {
		return rec, false, fmt.Errorf("read the load record: %w", err)
	}
	if n == 0 {
		return rec, false, nil
	}
	rows, err := server.Query(ctx, "SELECT flags, events, loaded FROM "+db+"."+loadRecordTable+" ORDER BY loaded DESC LIMIT 1")
	if err != nil {
		return rec, false, fmt.Errorf("read the load record: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		return rec, false, rows.Err()
	}
	if err := rows.Scan(&rec.flags, &rec.events, &rec.loaded); err != nil {
		return rec, false, fmt.Errorf("read the load record: %w", err)
	}
	return rec, true, nil
}

func writeLoadRecord(ctx context.Context, conn driver.Conn, flags string, events uint64) error {
	if err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+loadRecordTable+" (flags String, events UInt64, loaded DateTime) ENGINE = TinyLog"); err != nil {
		return fmt.Errorf("write the load record: %w", err)
	}
	// A batch, as chstore inserts: 18.16 waits for a data block after
	// an INSERT sent as a query, even one whose VALUES it holds.
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+loadRecordTable+" (flags, events, loaded)")
	if err != nil {
		return fmt.Errorf("write the load record: %w", err)
	}
	if err := batch.Append(flags, events, time.Now()); err != nil {
		batch.Abort()
		return fmt.Errorf("write the load record: %w", err)
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("write the load record: %w", err)
	}
	return nil
}

// storedCounts is what each table holds of the history, in requests.
type storedCounts struct {
	table    string
	requests uint64
}

// countStored sums the requests every table holds, the marker rows left
// out (minute < 0 in the rollups, plan and key empty in usage_daily;
// usage_events' markers count 0 requests).
func countStored(ctx context.Context, conn driver.Conn) ([]storedCounts, error) {
	queries := []storedCounts{{table: "usage_events"}, {table: "usage_minute"}, {table: "usage_hour"}, {table: "usage_day"}, {table: "usage_key_day"}, {table: "usage_daily"}}
	sqls := []string{
		"SELECT toUInt64(sum(requests)) FROM usage_events",
		"SELECT toUInt64(sum(requests)) FROM usage_minute WHERE minute >= 0",
		"SELECT toUInt64(sum(requests)) FROM usage_hour WHERE minute >= 0",
		"SELECT toUInt64(sum(requests)) FROM usage_day WHERE minute >= 0",
		"SELECT toUInt64(sum(requests)) FROM usage_key_day WHERE minute >= 0",
		"SELECT toUInt64(sum(admitted + rejected)) FROM usage_daily WHERE plan_id != '' OR key_id != ''",
	}
	for i, q := range sqls {
		if err := conn.QueryRow(ctx, q).Scan(&queries[i].requests); err != nil {
			return nil, fmt.Errorf("count %s: %w", queries[i].table, err)
		}
	}
	return queries, nil
}

// waitMerges waits until the database has had no merge running for 5 s
// in a row, for at most timeout. It returns how long it waited and the
// merges still running when it gave up (0: settled).
func waitMerges(ctx context.Context, conn driver.Conn, db string, timeout time.Duration) (time.Duration, uint64, error) {
	began := time.Now()
	quiet := time.Time{}
	for {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.merges WHERE database = ?", db).Scan(&n); err != nil {
			return time.Since(began), 0, fmt.Errorf("read system.merges: %w", err)
		}
		switch {
		case n > 0:
			quiet = time.Time{}
		case quiet.IsZero():
			quiet = time.Now()
		case time.Since(quiet) >= 5*time.Second:
			return quiet.Sub(began), 0, nil
		}
		if time.Since(began) >= timeout {
			return time.Since(began), n, nil
		}
		select {
		case <-ctx.Done():
			return time.Since(began), n, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// tableSize is a table's active parts.
type tableSize struct {
	table               string
	parts, rows, bytes  uint64
	uncompressed, marks uint64
}

func tableSizes(ctx context.Context, conn driver.Conn, db string) ([]tableSize, error) {
	rows, err := conn.Query(ctx, `SELECT table, count(), sum(rows), sum(bytes_on_disk), sum(data_uncompressed_bytes), sum(marks)
FROM system.parts WHERE database = ? AND active GROUP BY table ORDER BY table`, db)
	if err != nil {
		return nil, fmt.Errorf("read system.parts: %w", err)
	}
	defer rows.Close()
	var out []tableSize
	for rows.Next() {
		var t tableSize
		if err := rows.Scan(&t.table, &t.parts, &t.rows, &t.bytes, &t.uncompressed, &t.marks); err != nil {
			return nil, fmt.Errorf("read system.parts: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// dropCaches empties ClickHouse's mark and uncompressed-block caches
// and, when pageCache, the OS page cache (after a sync), so that the
// next query reads cold.
func dropCaches(ctx context.Context, conn driver.Conn, pageCache bool) error {
	var errs []error
	for _, q := range []string{"SYSTEM DROP MARK CACHE", "SYSTEM DROP UNCOMPRESSED CACHE"} {
		if err := conn.Exec(ctx, q); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", q, err))
		}
	}
	if pageCache {
		syscall.Sync()
		if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("1\n"), 0); err != nil {
			errs = append(errs, fmt.Errorf("drop the page cache: %w", err))
		}
	}
	return errors.Join(errs...)
}

// logged is a query's line of system.query_log.
type logged struct {
	readRows, readBytes, resultRows uint64
	durationMS, memory              uint64
	tables                          []string
}

var tableRef = regexp.MustCompile(`FROM\s+(usage_\w+|quota_adjustments)`)

// queryLog returns the finished queries of ids from system.query_log
// (the queries must have run with log_queries=1).
func queryLog(ctx context.Context, conn driver.Conn, ids []string) (map[string]logged, error) {
	// A query's line is queued when the server ends it, which may be just
	// after the client read its last row: flush until all are there.
	var out map[string]logged
	var err error
	for range 10 {
		if out, err = readQueryLog(ctx, conn, ids); err != nil || len(out) == len(ids) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	return out, err
}

func readQueryLog(ctx context.Context, conn driver.Conn, ids []string) (map[string]logged, error) {
	if err := conn.Exec(ctx, "SYSTEM FLUSH LOGS"); err != nil {
		return nil, fmt.Errorf("flush the query log: %w", err)
	}
	rows, err := conn.Query(ctx, `SELECT query_id, read_rows, read_bytes, result_rows, query_duration_ms, memory_usage, query
FROM system.query_log WHERE type = 2 AND event_date >= yesterday() AND has(?, query_id)`, ids)
	if err != nil {
		return nil, fmt.Errorf("read the query log: %w", err)
	}
	defer rows.Close()
	out := map[string]logged{}
	for rows.Next() {
		var (
			id, q string
			l     logged
		)
		if err := rows.Scan(&id, &l.readRows, &l.readBytes, &l.resultRows, &l.durationMS, &l.memory, &q); err != nil {
			return nil, fmt.Errorf("read the query log: %w", err)
		}
		for _, m := range tableRef.FindAllStringSubmatch(q, -1) {
			if !slices.Contains(l.tables, m[1]) {
				l.tables = append(l.tables, m[1])
			}
		}
		out[id] = l
	}
	return out, rows.Err()
}

// serverVersion is the ClickHouse server's version.
func serverVersion(ctx context.Context, conn driver.Conn) string {
	var v string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&v); err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return v
}
