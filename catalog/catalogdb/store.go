// Package catalogdb keeps the catalog of an embedded node (tollgate
// serve) in a SQLite database, one row per entity, so that a change
// writes the entities it touched and nothing else, in one transaction.
//
// Each row holds an entity as JSON (the catalog package's field names),
// readable with any SQLite client, except keys, which are a million rows
// where the rest are a handful: they have a compact encoding (see
// keycodec.go), decoded ten times faster. The table is WITHOUT ROWID with (kind, id) as its key, so a
// key's row is found by its id and Load reads every kind in id order,
// which is the order State's B-trees are built fastest in.
//
// A crash (kill -9, power cut) leaves the catalog as it was before or
// after a change, never half of it: a whole-file import of 100k keys is
// one transaction. synchronous=FULL makes a change durable before it is
// reported done.
package catalogdb

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the database/sql driver "sqlite"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/internal/sqlitedsn"
)

// Entity kinds, as stored.
const (
	kindGateway = 0
	kindAPI     = 1
	kindPlan    = 2
	kindKey     = 3
	kindWebhook = 4
)

const schema = `
CREATE TABLE IF NOT EXISTS catalog_entities (
	kind INTEGER NOT NULL, -- 0 gateway, 1 API, 2 usage plan, 3 API key, 4 webhook
	id   TEXT    NOT NULL,
	body BLOB    NOT NULL, -- the entity as JSON
	PRIMARY KEY (kind, id)
) WITHOUT ROWID;
`

// ErrCorrupt is wrapped by Open's error when the file fails its
// integrity check.
var ErrCorrupt = errors.New("catalog database is corrupt")

// Store is the catalog database. It implements catalog.Store.
type Store struct {
	db   *sql.DB
	path string
}

var _ catalog.Store = (*Store)(nil)

// Open opens or creates the database at path (its folder must exist) and
// checks its integrity (PRAGMA quick_check: one sequential read).
func Open(path string) (*Store, error) {
	// FULL: a change the admin API answered is on disk, also after a
	// power cut (one WAL sync per change).
	dsn, err := sqlitedsn.For(path, 5*time.Second, "FULL")
	if err != nil {
		return nil, fmt.Errorf("open catalog database: %w", err)
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open catalog database: %w", err)
	}
	// One connection: changes are serialised by the catalog's Manager,
	// and Load runs before any.
	db.SetMaxOpenConns(1)
	s := &Store{db: db, path: path}
	if err := s.init(context.Background()); err != nil {
		db.Close()
		return nil, fmt.Errorf("open catalog database %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) init(ctx context.Context) error {
	var found []string
	rows, err := s.db.QueryContext(ctx, "PRAGMA quick_check(5)")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	for rows.Next() {
		var msg string
		if err := rows.Scan(&msg); err != nil {
			rows.Close()
			return fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		if msg != "ok" {
			found = append(found, msg)
		}
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if len(found) > 0 {
		return fmt.Errorf("%w: %s", ErrCorrupt, strings.Join(found, "; "))
	}
	if _, err := s.db.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Empty reports whether the database holds no entity.
func (s *Store) Empty(ctx context.Context) (bool, error) {
	var any bool
	if err := s.db.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM catalog_entities)").Scan(&any); err != nil {
		return false, fmt.Errorf("read catalog database: %w", err)
	}
	return !any, nil
}

// Load reads the whole catalog. Rows are decoded on every core while
// they are read.
func (s *Store) Load(ctx context.Context) (*catalog.State, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT kind, id, body FROM catalog_entities ORDER BY kind, id")
	if err != nil {
		return nil, fmt.Errorf("load catalog: %w", err)
	}
	defer rows.Close()

	// The body is scanned into a string: the one copy of the row's
	// text a decoded key's strings then point into.
	type row struct {
		kind int
		id   string
		body string
	}
	const batch = 4096
	type job struct {
		rows []row
		out  []any
		err  error
		done chan struct{}
	}
	jobs := make(chan *job, runtime.GOMAXPROCS(0)*2)
	order := make(chan *job, runtime.GOMAXPROCS(0)*2)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				j.out = make([]any, len(j.rows))
				for i, r := range j.rows {
					v, err := decode(r.kind, r.body)
					if err != nil {
						j.err = fmt.Errorf("load catalog: kind %d id %q: %w", r.kind, r.id, err)
						break
					}
					j.out[i] = v
				}
				close(j.done)
			}
		}()
	}
	b := catalog.NewBuilder()
	var buildErr error
	built := make(chan struct{})
	go func() {
		defer close(built)
		for j := range order {
			<-j.done
			if buildErr == nil && j.err != nil {
				buildErr = j.err
			}
			if buildErr != nil {
				continue
			}
			for _, v := range j.out {
				b.Add(v)
			}
		}
	}()
	cur := &job{done: make(chan struct{})}
	send := func() {
		jobs <- cur
		order <- cur
		cur = &job{done: make(chan struct{})}
	}
	var scanErr error
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.kind, &r.id, &r.body); err != nil {
			scanErr = fmt.Errorf("load catalog: %w", err)
			break
		}
		cur.rows = append(cur.rows, r)
		if len(cur.rows) == batch {
			send()
		}
	}
	if scanErr == nil {
		scanErr = rows.Err()
	}
	if len(cur.rows) > 0 {
		send()
	}
	close(jobs)
	close(order)
	wg.Wait()
	<-built
	if scanErr != nil {
		return nil, scanErr
	}
	if buildErr != nil {
		return nil, buildErr
	}
	return b.State(), nil
}

func decode(kind int, body string) (any, error) {
	switch kind {
	case kindGateway:
		var g catalog.Gateway
		return g, json.Unmarshal([]byte(body), &g)
	case kindAPI:
		var a catalog.API
		return a, json.Unmarshal([]byte(body), &a)
	case kindPlan:
		p := new(catalog.UsagePlan)
		return p, json.Unmarshal([]byte(body), p)
	case kindKey:
		return decodeKey(body)
	case kindWebhook:
		var w catalog.Webhook
		return w, json.Unmarshal([]byte(body), &w)
	}
	return nil, fmt.Errorf("unknown kind %d", kind)
}

// Save writes the entities ch touched, in one transaction.
func (s *Store) Save(ch *catalog.Change) error { return s.SaveWhile(ch, nil) }

// SaveWhile is Save running first (when not nil) beside the writes and
// committing only if first succeeded: a change that must be audited
// before it takes effect is audited and written at once (a million-key
// apply: seconds each, on different cores), and still not stored if
// the audit fails. first's error is returned as it is.
func (s *Store) SaveWhile(ch *catalog.Change, first func() error) error {
	var firstErr chan error
	if first != nil {
		firstErr = make(chan error, 1)
		go func() { firstErr <- first() }()
	}
	ctx := context.Background()
	tx, err := s.db.BeginTx(ctx, nil)
	if err == nil {
		defer tx.Rollback()
		err = write(ctx, tx, ch)
	}
	if firstErr != nil {
		if ferr := <-firstErr; ferr != nil {
			return ferr
		}
	}
	if err != nil {
		return fmt.Errorf("save catalog: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("save catalog: %w", err)
	}
	return nil
}

func write(ctx context.Context, tx *sql.Tx, ch *catalog.Change) error {
	put := &putter{ctx: ctx, tx: tx}
	defer put.close()
	del, err := tx.PrepareContext(ctx, "DELETE FROM catalog_entities WHERE kind = ? AND id = ?")
	if err != nil {
		return err
	}
	defer del.Close()
	store := func(kind int, id string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return put.add(kind, id, b)
	}
	storeKey := func(k *catalog.APIKey) error {
		b, err := encodeKey(k)
		if err != nil {
			return err
		}
		return put.add(kindKey, k.ID, b)
	}
	n := ch.New
	if ch.Full {
		if _, err := tx.ExecContext(ctx, "DELETE FROM catalog_entities"); err != nil {
			return err
		}
		if err := store(kindGateway, "gateway", n.Gateway()); err != nil {
			return err
		}
		for _, a := range n.APIs() {
			if err := store(kindAPI, a.ID, a); err != nil {
				return err
			}
		}
		for _, w := range n.Webhooks() {
			if err := store(kindWebhook, w.ID, w); err != nil {
				return err
			}
		}
		var err error
		n.Plans("", func(p *catalog.UsagePlan) bool { err = store(kindPlan, p.ID, p); return err == nil })
		if err != nil {
			return err
		}
		n.Keys("", func(k *catalog.APIKey) bool { err = storeKey(k); return err == nil })
		if err != nil {
			return err
		}
		return put.flush()
	}
	if ch.Gateway {
		if err := store(kindGateway, "gateway", n.Gateway()); err != nil {
			return err
		}
	}
	if ch.APIs {
		if err := put.flush(); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM catalog_entities WHERE kind = ?", kindAPI); err != nil {
			return err
		}
		for _, a := range n.APIs() {
			if err := store(kindAPI, a.ID, a); err != nil {
				return err
			}
		}
	}
	if ch.Webhooks {
		if err := put.flush(); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM catalog_entities WHERE kind = ?", kindWebhook); err != nil {
			return err
		}
		for _, w := range n.Webhooks() {
			if err := store(kindWebhook, w.ID, w); err != nil {
				return err
			}
		}
	}
	// Rows put and deleted have distinct (kind, id): the order in which
	// puts (batched) and deletes reach the table does not matter.
	for _, id := range ch.Plans {
		var err error
		if p := n.Plan(id); p != nil {
			err = store(kindPlan, id, p)
		} else {
			_, err = del.ExecContext(ctx, kindPlan, id)
		}
		if err != nil {
			return err
		}
	}
	for _, id := range ch.Keys {
		var err error
		if k := n.Key(id); k != nil {
			err = storeKey(k)
		} else {
			_, err = del.ExecContext(ctx, kindKey, id)
		}
		if err != nil {
			return err
		}
	}
	return put.flush()
}

// putBatch is the number of rows one INSERT statement writes (3
// parameters each, far below SQLite's 32766). A row a statement cost
// 9 µs at a million rows, most of it database/sql's and the driver's
// per statement; a hundred rows a statement share that.
const putBatch = 100

// putter writes rows in statements of putBatch rows.
type putter struct {
	ctx  context.Context
	tx   *sql.Tx
	args []any
	// full is the prepared statement of putBatch rows, once needed.
	full *sql.Stmt
}

func (p *putter) add(kind int, id string, body []byte) error {
	p.args = append(p.args, kind, id, body)
	if len(p.args) < 3*putBatch {
		return nil
	}
	if p.full == nil {
		var err error
		if p.full, err = p.tx.PrepareContext(p.ctx, insertRows(putBatch)); err != nil {
			return err
		}
	}
	_, err := p.full.ExecContext(p.ctx, p.args...)
	p.args = p.args[:0]
	return err
}

// flush writes the rows added since the last full batch.
func (p *putter) flush() error {
	if len(p.args) == 0 {
		return nil
	}
	_, err := p.tx.ExecContext(p.ctx, insertRows(len(p.args)/3), p.args...)
	p.args = p.args[:0]
	return err
}

func (p *putter) close() {
	if p.full != nil {
		p.full.Close()
	}
}

// insertRows is the statement that puts n rows.
func insertRows(n int) string {
	var b strings.Builder
	b.WriteString("INSERT OR REPLACE INTO catalog_entities (kind, id, body) VALUES (?, ?, ?)")
	for range n - 1 {
		b.WriteString(", (?, ?, ?)")
	}
	return b.String()
}
