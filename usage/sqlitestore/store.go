// Package sqlitestore is the embedded usage store: one SQLite file, written
// through modernc.org/sqlite (pure Go, no cgo), holding every usage event
// and a daily rollup per (plan, key, UTC day).
//
// The gateway writes batches in the background while it proxies; readers
// (the report API, quota checks on restart) query the rollup. WAL mode lets
// those reads run while a batch is being written.
//
//	st, err := sqlitestore.Open("/var/lib/tollgate/usage.db")
//	if err != nil {
//		return err
//	}
//	defer st.Close()
//	err = st.InsertEvents(ctx, batch)
//	days, err := st.Daily(ctx, usage.Filter{FromDay: d0, ToDay: d1, KeyID: "k1"})
package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Connection settings, applied to every connection of the pool.
const (
	// busyTimeoutMillis is how long a statement waits for another
	// process's write lock before failing with SQLITE_BUSY. Writers of this
	// process never wait on each other there: Store serializes them first.
	busyTimeoutMillis = 5000
	// maxConns bounds the pool: one connection writes at a time (SQLite
	// allows a single writer) and the others serve concurrent WAL reads.
	maxConns = 4
)

// Store is a usage store backed by one SQLite file. It is safe for
// concurrent use.
type Store struct {
	db *sql.DB

	// writeSem serializes InsertEvents in this process, so writers queue
	// in Go (and honour their context) instead of polling SQLite's busy
	// handler, and so the scratch buffers below need no other lock.
	writeSem chan struct{}
	scratch  insertScratch // guarded by writeSem

	insertRow  *sql.Stmt // one event
	insertRows *sql.Stmt // insertChunk events in one statement
	upsertDay  *sql.Stmt // add to one rollup row
	daily      *sql.Stmt
	events     *sql.Stmt
}

// Open opens or creates the database file at path (its folder must exist),
// sets WAL journal mode, synchronous=NORMAL and a busy timeout, and brings
// the schema up to date. Opening an up-to-date file changes nothing.
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
	s := &Store{db: db, writeSem: make(chan struct{}, 1)}
	if err := s.init(context.Background()); err != nil {
		db.Close()
		return nil, fmt.Errorf("open usage store %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) init(ctx context.Context) error {
	if _, err := migrate(ctx, s.db); err != nil {
		return err
	}
	for _, p := range []struct {
		stmt  **sql.Stmt
		query string
	}{
		{&s.insertRow, insertEventsSQL(1)},
		{&s.insertRows, insertEventsSQL(insertChunk)},
		{&s.upsertDay, upsertDailySQL},
		{&s.daily, dailySQL},
		{&s.events, eventsSQL},
	} {
		st, err := s.db.PrepareContext(ctx, p.query)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", p.query, err)
		}
		*p.stmt = st
	}
	return nil
}

// Close closes the statements and the database. The caller must not use
// the store afterwards.
func (s *Store) Close() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.insertRow, s.insertRows, s.upsertDay, s.daily, s.events} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	errs = append(errs, s.db.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close usage store: %w", err)
	}
	return nil
}

// dsn returns the driver's data source name for the file at path: a file:
// URI, so that any character in the path ('?', '#', '%') is escaped rather
// than taken for the start of the parameters.
func dsn(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMillis))
	// WAL: readers see a snapshot and never block the writer, nor it them.
	q.Add("_pragma", "journal_mode(WAL)")
	// NORMAL under WAL syncs only at checkpoints, not per commit: a power
	// cut may lose the last commits (as it loses events still queued in
	// memory) but never corrupts the file.
	q.Add("_pragma", "synchronous(NORMAL)")
	// BEGIN IMMEDIATE for write transactions: take the write lock up front
	// so a transaction never fails half way when upgrading from a read lock.
	q.Set("_txlock", "immediate")
	p := filepath.ToSlash(abs)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // file:/C:/... on Windows
	}
	return "file:" + (&url.URL{Path: p}).EscapedPath() + "?" + q.Encode(), nil
}
