// Package sqlitestore is the embedded usage store: one SQLite file, written
// through modernc.org/sqlite (pure Go, no cgo), holding every usage event
// and its rollups: per minute and dimensions (key, plan, API, stage,
// method, resource, status, decision); the same per UTC hour and per UTC
// day; per hour and per day without method, resource and status; per hour
// and per day without key and plan either (per API, stage and decision:
// the totals a report reads when it neither groups by nor filters on key
// or plan, such as a month by hour); per (plan, key, UTC day) for
// GetUsage and quotas; and per (plan, key, UTC month) for billing
// (KeyMonths: a month's totals in a row per key; DailyAdmitted: the days
// over a limit, a scan that sorts nothing). The hour and day rollups are
// rolled up as hours and days end; a report over whole hours or days
// reads the coarsest that answers it, then finer ones past its mark, each
// table's rows filtered and, where finer than the report's buckets,
// summed where they are read. The per-day and per-month rows of keys are
// added to as each batch is stored.
//
// The gateway writes batches in the background while it proxies. Each
// batch is one row, its events packed in a compact binary BLOB (codec.go):
// raw events are only read for drill-down (Events), so they are stored for
// the least CPU per event, and the rollups are computed in Go from the
// batch and added in a few statements. Readers (the report API, quota
// checks on restart) query the rollups. WAL mode lets those reads run while
// a batch is being written.
//
// An event may stand for many requests (schemas.UsageEvent.Count: the
// enforcer's per-minute count of requests rejected before a key was
// identified). The rollups add its count, not 1: usage_minute.requests
// and usage_daily's admitted and rejected are requests, not events. Its
// count is kept in the raw batch (layout version 2, codec.go); batches
// written before it, and batches without a count, read with Count 0.
//
//	st, err := sqlitestore.Open("/var/lib/tollgate/usage.db")
//	if err != nil {
//		return err
//	}
//	defer st.Close()
//	err = st.InsertEvents(ctx, batch)
//	days, err := st.Daily(ctx, usage.Filter{FromDay: d0, ToDay: d1, KeyID: "k1"})
//	mins, err := st.Minutes(ctx, from.Unix()/60, to.Unix()/60)
//	err = st.Report(ctx, usage.Report{FromMinute: m0, ToMinute: m1, Granularity: "day", GroupBy: []string{"key"}}, emit)
package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"modernc.org/sqlite" // registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/tollgate/tollgate/internal/sqlitedsn"
)

// Connection settings, applied to every connection of the pool.
const (
	// busyTimeoutMillis is how long a statement waits for another
	// process's write lock before failing with SQLITE_BUSY. Writers of this
	// process never wait on each other there: Store serializes them first.
	busyTimeoutMillis = 5000
	// maxConns bounds the pool: one connection writes (SQLite allows a
	// single writer; InsertEvents keeps one for itself, see writer) and the
	// others serve concurrent WAL reads.
	maxConns = 4
)

// Store is a usage store backed by one SQLite file. It is safe for
// concurrent use.
type Store struct {
	db *sql.DB

	// writeSem serializes InsertEvents in this process, so writers queue
	// in Go (and honour their context) instead of polling SQLite's busy
	// handler, and so the fields below it need no other lock.
	writeSem chan struct{}
	scratch  insertScratch
	w        *writer // nil after a failure discarded it, until the next batch opens another
	// now bounds how far a batch moves the rollups' marks (see
	// writer.advanceRollups): time.Now, or a test's clock.
	now func() time.Time

	daily *sql.Stmt
	// daily for one plan, one key of a plan, a page of a plan's keys: a
	// seek per day (query.go).
	dailyOfPlan, dailyOfKey, dailyOfKeys *sql.Stmt
	events                               *sql.Stmt
	minutes                              *sql.Stmt
}

// ErrCorrupt is wrapped by Open's error when the file fails its integrity
// check.
var ErrCorrupt = errors.New("usage store is corrupt")

// Open opens or creates the database file at path (its folder must exist),
// checks its integrity, sets WAL journal mode, synchronous=NORMAL and a
// busy timeout, and brings the schema up to date. Opening an up-to-date
// file changes nothing.
//
// A file that fails the check is refused (the error wraps ErrCorrupt):
// SQLite opens a damaged file without complaint and fails later, at the
// pages that are damaged, so a store opened unchecked could accept the
// gateway's start and then refuse every batch. The check is SQLite's
// quick_check: every page of every B-tree is read and checked for
// structure (not index-vs-table consistency), which costs one sequential
// read of the file (BENCHMARKS.md has the figure).
func Open(path string) (*Store, error) {
	name, err := dsn(path)
	if err != nil {
		return nil, fmt.Errorf("open usage store: %w", err)
	}
	db, err := sql.Open("sqlite", name)
	if err != nil {
		return nil, fmt.Errorf("open usage store: %w", err)
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns) // keep connections, and the statements prepared on them
	s := &Store{db: db, writeSem: make(chan struct{}, 1), now: time.Now}
	if err := s.init(context.Background()); err != nil {
		db.Close()
		return nil, fmt.Errorf("open usage store %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) init(ctx context.Context) error {
	if err := quickCheck(ctx, s.db); err != nil {
		return err
	}
	if _, err := migrate(ctx, s.db); err != nil {
		return err
	}
	for _, p := range []struct {
		stmt  **sql.Stmt
		query string
	}{
		{&s.daily, dailySQL},
		{&s.dailyOfPlan, dailyOfPlanSQL("")},
		{&s.dailyOfKey, dailyOfPlanSQL(ofKey)},
		{&s.dailyOfKeys, dailyOfPlanSQL(ofKeys)},
		{&s.events, eventsSQL},
		{&s.minutes, minutesSQL},
	} {
		st, err := s.db.PrepareContext(ctx, p.query)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", p.query, err)
		}
		*p.stmt = st
	}
	// Opened here, not at the first batch, so that Open reports a
	// statement that does not prepare.
	w, err := openWriter(ctx, s.db)
	if err != nil {
		return err
	}
	s.w = w
	return nil
}

// HasUsage reports whether the store holds anything a restart depends
// on: events or quota adjustments. Each table is probed for one row.
func (s *Store) HasUsage(ctx context.Context) (bool, error) {
	var any bool
	err := s.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM usage_event_batches) OR EXISTS (SELECT 1 FROM quota_adjustments)`).Scan(&any)
	if err != nil {
		return false, fmt.Errorf("read usage store: %w", err)
	}
	return any, nil
}

// quickCheck runs PRAGMA quick_check and turns its findings (at most a
// few, to keep the message short) into an error wrapping ErrCorrupt.
func quickCheck(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, "PRAGMA quick_check(5)")
	if err != nil {
		if isCorruption(err) {
			return fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		return fmt.Errorf("integrity check: %w", err)
	}
	defer rows.Close()
	var found []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return fmt.Errorf("integrity check: %w", err)
		}
		if line != "ok" {
			found = append(found, line)
		}
	}
	if err := rows.Err(); err != nil {
		if isCorruption(err) {
			return fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		return fmt.Errorf("integrity check: %w", err)
	}
	if len(found) > 0 {
		return fmt.Errorf("%w: %s", ErrCorrupt, strings.Join(found, "; "))
	}
	return nil
}

// isCorruption reports SQLite's errors for a damaged or foreign file.
func isCorruption(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff { // the primary code of an extended one
	case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
		return true
	}
	return false
}

// Close closes the statements and the database. The caller must not use
// the store afterwards.
func (s *Store) Close() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.daily, s.dailyOfPlan, s.dailyOfKey, s.dailyOfKeys, s.events, s.minutes} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	s.writeSem <- struct{}{} // wait for a batch being written
	if s.w != nil {
		errs = append(errs, s.w.close())
		s.w = nil
	}
	<-s.writeSem
	errs = append(errs, s.db.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close usage store: %w", err)
	}
	return nil
}

// dsn returns the driver's data source name for the file at path
// (sqlitedsn.For). NORMAL under WAL syncs only at checkpoints, not per
// commit: a power cut may lose the last commits (as it loses events still
// queued in memory) but never corrupts the file.
func dsn(path string) (string, error) {
	return sqlitedsn.For(path, busyTimeoutMillis*time.Millisecond, "NORMAL")
}
