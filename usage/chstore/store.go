package chstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Config configures a Store.
type Config struct {
	// DSN locates the server, as clickhouse-go parses it:
	// clickhouse://[user[:password]@]host:port[,host:port...]/database[?param=value...].
	// Required. The native protocol only (clickhouse:// or tcp://, port
	// 9000 by default): ClickHouse 18.16, which CI runs, does not work
	// with clickhouse-go's HTTP protocol. The tables are those of the
	// DSN's database (the user's default database if the path is empty).
	DSN string
}

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	if strings.TrimSpace(c.DSN) == "" {
		return errors.New("DSN: required, e.g. clickhouse://127.0.0.1:9000/default")
	}
	opts, err := clickhouse.ParseDSN(c.DSN)
	if err != nil {
		return fmt.Errorf("DSN: %w", err)
	}
	var errs []error
	if opts.Protocol != clickhouse.Native {
		errs = append(errs, fmt.Errorf("DSN: %s is ClickHouse's HTTP protocol; use the native protocol (clickhouse://host:9000/db), the only one ClickHouse 18.16 serves to clickhouse-go", opts.Protocol))
	}
	if db := opts.Auth.Database; db != "" && !IsIdentifier(db) {
		errs = append(errs, fmt.Errorf("DSN: database %q: use letters, digits and underscores", db))
	}
	return errors.Join(errs...)
}

// IsIdentifier reports whether s is a plain ClickHouse identifier
// (letters, digits and underscores, not starting with a digit): a name
// that needs no quoting in a query.
func IsIdentifier(s string) bool {
	for i, r := range s {
		switch {
		case r == '_', 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z':
		case '0' <= r && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return s != ""
}

// Store reads and writes the usage tables of one ClickHouse database. It
// is safe for concurrent use: each call takes a connection of the
// driver's pool, and InsertBatch keeps its buffers per call.
type Store struct {
	conn      driver.Conn
	scratchMu sync.Mutex
	scratch   []*batchScratch // free
	// beforeInsert, set by tests only, runs before each INSERT; its
	// error fails the INSERT before anything is sent.
	beforeInsert func() error
}

// Open connects to the server the DSN names and checks that it answers.
// It does not change the schema: run Migrate (tollgate migrate
// clickhouse) before writing.
func Open(ctx context.Context, dsn string) (*Store, error) {
	return New(ctx, Config{DSN: dsn})
}

// New is Open with a Config.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("open clickhouse usage store: %w", err)
	}
	conn, err := Connect(ctx, cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("open clickhouse usage store: %w", err)
	}
	return &Store{conn: conn}, nil
}

// Connect opens a pool of connections to the server the DSN names and
// checks that it answers. New opens its store with it; tools that work
// on the server itself (creating or dropping a database) use it too.
func Connect(ctx context.Context, dsn string) (driver.Conn, error) {
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, err
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("ClickHouse at %s: %w", strings.Join(opts.Addr, ","), err)
	}
	return conn, nil
}

// Migrate applies the migrations the database lacks (see Migrate).
func (s *Store) Migrate(ctx context.Context) (applied []string, err error) {
	return Migrate(ctx, s.conn)
}

// Close closes the connections. The caller must not use the store
// afterwards.
func (s *Store) Close() error {
	if err := s.conn.Close(); err != nil {
		return fmt.Errorf("close clickhouse usage store: %w", err)
	}
	return nil
}
