package sqlitestore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
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
}

// openWriter takes a connection from db's pool and prepares the write
// statements on it.
func openWriter(ctx context.Context, db *sql.DB) (_ *writer, err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("open writer connection: %w", err)
	}
	w := &writer{
		conn:          conn,
		upsertMinutes: upserter{columns: minuteColumns},
		upsertDays:    upserter{columns: dayColumns},
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
	} {
		if *p.stmt, err = conn.PrepareContext(ctx, p.query); err != nil {
			return nil, fmt.Errorf("prepare %q: %w", p.query, err)
		}
	}
	if err := w.upsertMinutes.prepare(ctx, conn, upsertMinutesSQL); err != nil {
		return nil, err
	}
	if err := w.upsertDays.prepare(ctx, conn, upsertDailySQL); err != nil {
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
	for _, st := range []*sql.Stmt{w.begin, w.commit, w.rollback, w.insertBatch} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(append(errs, w.upsertMinutes.close(), w.upsertDays.close())...)
}
