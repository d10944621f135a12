package notify

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the database/sql driver "sqlite"

	"github.com/tollgate/tollgate/internal/sqlitedsn"
)

// The outbox is a SQLite table in the node's data folder (notify.db):
// a notification is written there before anything tries to send it, and
// stays until it was delivered or given up on, so that a node killed
// mid-retry sends it after its restart, with the same id. Its primary
// key is the notification's id: noticing a crossing again (a restart, a
// key that stays above its threshold) inserts nothing.
const outboxSchema = `
CREATE TABLE IF NOT EXISTS notifications (
	id           TEXT    NOT NULL PRIMARY KEY,
	webhook_id   TEXT    NOT NULL,
	event        TEXT    NOT NULL,
	key_id       TEXT    NOT NULL,
	body         BLOB    NOT NULL, -- the Notification as sent, JSON; emptied once done
	created      INTEGER NOT NULL, -- Unix ns
	state        INTEGER NOT NULL, -- 0 pending, 1 delivered, 2 failed (given up)
	attempts     INTEGER NOT NULL DEFAULT 0,
	next_attempt INTEGER NOT NULL, -- Unix ns
	last_status  INTEGER NOT NULL DEFAULT 0,
	last_error   TEXT    NOT NULL DEFAULT '',
	done_at      INTEGER NOT NULL DEFAULT 0,
	-- kept until then (the end of the period it is about, or a week
	-- after it was done, whichever is later): until then its id keeps a
	-- crossing of that period from being sent again.
	keep_until   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (state, next_attempt);
CREATE INDEX IF NOT EXISTS notifications_created ON notifications (created);
-- List by key or webhook walks its own rows, newest first, not the whole
-- outbox (delivered rows stay until their period ends, plus a week).
CREATE INDEX IF NOT EXISTS notifications_key ON notifications (key_id, created);
CREATE INDEX IF NOT EXISTS notifications_webhook ON notifications (webhook_id, created);
`

// Delivery states.
const (
	Pending   = 0
	Delivered = 1
	Failed    = 2
)

var stateNames = [...]string{"pending", "delivered", "failed"}

// StateName returns a delivery state's name.
func StateName(s int) string {
	if s >= 0 && s < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// ParseState is the inverse of StateName; -1 if s names none.
func ParseState(s string) int {
	for i, n := range stateNames {
		if n == s {
			return i
		}
	}
	return -1
}

// Delivery is a notification in the outbox and what became of it.
type Delivery struct {
	ID          string    `json:"id"`
	WebhookID   string    `json:"webhookId"`
	Event       string    `json:"event"`
	KeyID       string    `json:"keyId"`
	Created     time.Time `json:"created"`
	State       string    `json:"state"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"nextAttempt,omitzero"`
	LastStatus  int       `json:"lastStatus,omitempty"`
	LastError   string    `json:"lastError,omitempty"`
	DoneAt      time.Time `json:"doneAt,omitzero"`
	Body        []byte    `json:"-"`
}

// Outbox is the durable queue of notifications.
type Outbox struct {
	db *sql.DB
}

// OpenOutbox opens or creates the outbox at path (its folder must exist).
func OpenOutbox(path string) (*Outbox, error) {
	// FULL: a notification noticed is on disk before the state that
	// noticed it moves on (one WAL sync per insert; notifications are
	// rare).
	dsn, err := sqlitedsn.For(path, 5*time.Second, "FULL")
	if err != nil {
		return nil, fmt.Errorf("open notification outbox: %w", err)
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open notification outbox: %w", err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(outboxSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open notification outbox %s: %w", path, err)
	}
	return &Outbox{db: db}, nil
}

// Close closes the outbox.
func (o *Outbox) Close() error { return o.db.Close() }

// add writes pending notifications, in one transaction, but those
// whose id is there already; it returns how many were new. keepUntil[i]
// is the keep_until of ds[i].
func (o *Outbox) add(ctx context.Context, ds []Delivery, keepUntil []int64) (int, error) {
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("add notifications: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO notifications
		(id, webhook_id, event, key_id, body, created, state, next_attempt, keep_until) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)`)
	if err != nil {
		return 0, fmt.Errorf("add notifications: %w", err)
	}
	defer stmt.Close()
	added := 0
	for i := range ds {
		d := &ds[i]
		res, err := stmt.ExecContext(ctx, d.ID, d.WebhookID, d.Event, d.KeyID, d.Body, d.Created.UnixNano(), d.Created.UnixNano(), keepUntil[i])
		if err != nil {
			return 0, fmt.Errorf("add notification: %w", err)
		}
		if n, err := res.RowsAffected(); err == nil && n == 1 {
			added++
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("add notifications: %w", err)
	}
	return added, nil
}

// pending counts the notifications waiting to be delivered.
func (o *Outbox) pending(ctx context.Context) (int, error) {
	var n int
	err := o.db.QueryRowContext(ctx, "SELECT count(*) FROM notifications WHERE state = 0").Scan(&n)
	return n, err
}

// due returns up to limit pending notifications whose next attempt is at
// or before now, but those of the webhooks held, oldest first.
func (o *Outbox) due(ctx context.Context, now time.Time, held []string, limit int) ([]Delivery, error) {
	in, args := inList(held)
	q := "WHERE state = 0 AND next_attempt <= ?"
	if in != "" {
		q += " AND webhook_id NOT IN " + in
	}
	return o.query(ctx, q+" ORDER BY next_attempt, id LIMIT ?", append(append([]any{now.UnixNano()}, args...), limit)...)
}

// expire gives up the pending notifications of the webhooks held that
// were created before the given time; it returns how many.
func (o *Outbox) expire(ctx context.Context, held []string, createdBefore, now time.Time) (int, error) {
	in, args := inList(held)
	res, err := o.db.ExecContext(ctx, `UPDATE notifications SET state = 2, done_at = ?, next_attempt = 0,
		last_error = 'given up: its receiver kept failing past the notification''s retry period', body = x'',
		keep_until = max(keep_until, ?) WHERE state = 0 AND created < ? AND webhook_id IN `+in,
		append([]any{now.UnixNano(), now.Add(retention).UnixNano(), createdBefore.UnixNano()}, args...)...)
	if err != nil {
		return 0, fmt.Errorf("give up notifications: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// inList returns "(?, ?, ...)" for ids and the ids as arguments; "" for
// none.
func inList(ids []string) (string, []any) {
	if len(ids) == 0 {
		return "", nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return "(" + strings.Repeat("?, ", len(ids)-1) + "?)", args
}

// nextDue returns the time of the earliest pending attempt, or false.
func (o *Outbox) nextDue(ctx context.Context) (time.Time, bool, error) {
	var t sql.NullInt64
	if err := o.db.QueryRowContext(ctx, "SELECT min(next_attempt) FROM notifications WHERE state = 0").Scan(&t); err != nil {
		return time.Time{}, false, err
	}
	return time.Unix(0, t.Int64), t.Valid, nil
}

// record stores the outcome of an attempt: state Delivered or Failed
// (done), or Pending again with its next attempt.
func (o *Outbox) record(ctx context.Context, d *Delivery, state int, next time.Time, status int, errMsg string, now time.Time) error {
	var doneAt, nextAt int64
	if state != Pending {
		doneAt = now.UnixNano()
	} else {
		nextAt = next.UnixNano()
	}
	// A notification done needs no body: its row stays only for its id
	// and the list of deliveries.
	_, err := o.db.ExecContext(ctx, `UPDATE notifications SET state = ?, attempts = attempts + 1, next_attempt = ?,
		last_status = ?, last_error = ?, done_at = ?, keep_until = max(keep_until, ?),
		body = CASE WHEN ? = 0 THEN body ELSE x'' END WHERE id = ?`,
		state, nextAt, status, errMsg, doneAt, now.Add(retention).UnixNano(), state, d.ID)
	if err != nil {
		return fmt.Errorf("record delivery: %w", err)
	}
	return nil
}

// retention is how long a done notification stays listed.
const retention = 7 * 24 * time.Hour

// prune deletes what is done and past its keep_until.
func (o *Outbox) prune(ctx context.Context, now time.Time) error {
	_, err := o.db.ExecContext(ctx, "DELETE FROM notifications WHERE state <> 0 AND keep_until < ?", now.UnixNano())
	return err
}

// Filter selects deliveries to list.
type Filter struct {
	WebhookID string
	KeyID     string
	State     int // -1: any
	// Before and BeforeID page: the deliveries listed after the one
	// created at Before with id BeforeID (the last of the previous page),
	// in the list's order; Before alone, those created before it; zero:
	// from the newest. Many deliveries share a created time (those noticed
	// together), hence the id.
	Before   time.Time
	BeforeID string
	Limit    int // default and at most 500
}

// List returns deliveries, newest first.
func (o *Outbox) List(ctx context.Context, f Filter) ([]Delivery, error) {
	var where []string
	var args []any
	if f.WebhookID != "" {
		where, args = append(where, "webhook_id = ?"), append(args, f.WebhookID)
	}
	if f.KeyID != "" {
		where, args = append(where, "key_id = ?"), append(args, f.KeyID)
	}
	if f.State >= 0 {
		where, args = append(where, "state = ?"), append(args, f.State)
	}
	switch {
	case !f.Before.IsZero() && f.BeforeID != "":
		b := f.Before.UnixNano()
		where, args = append(where, "(created < ? OR created = ? AND id > ?)"), append(args, b, b, f.BeforeID)
	case !f.Before.IsZero():
		where, args = append(where, "created < ?"), append(args, f.Before.UnixNano())
	}
	if f.Limit <= 0 || f.Limit > 500 {
		f.Limit = 500
	}
	q := ""
	if len(where) > 0 {
		q = "WHERE " + strings.Join(where, " AND ")
	}
	return o.query(ctx, q+" ORDER BY created DESC, id LIMIT ?", append(args, f.Limit)...)
}

func (o *Outbox) query(ctx context.Context, rest string, args ...any) ([]Delivery, error) {
	rows, err := o.db.QueryContext(ctx, `SELECT id, webhook_id, event, key_id, body, created, state, attempts,
		next_attempt, last_status, last_error, done_at FROM notifications `+rest, args...)
	if err != nil {
		return nil, fmt.Errorf("read notifications: %w", err)
	}
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		var d Delivery
		var created, next, done int64
		var state int
		if err := rows.Scan(&d.ID, &d.WebhookID, &d.Event, &d.KeyID, &d.Body, &created, &state, &d.Attempts,
			&next, &d.LastStatus, &d.LastError, &done); err != nil {
			return nil, fmt.Errorf("read notifications: %w", err)
		}
		d.Created, d.State = time.Unix(0, created).UTC(), StateName(state)
		if state == Pending {
			d.NextAttempt = time.Unix(0, next).UTC()
		}
		if done != 0 {
			d.DoneAt = time.Unix(0, done).UTC()
		}
		out = append(out, d)
	}
	return out, rows.Err()
}
