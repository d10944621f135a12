// Package chtest gives tests a ClickHouse database of their own: on the
// server TOLLGATE_CLICKHOUSE_DSN names (default 127.0.0.1:9000), created
// for the test and dropped at its end. Without a server the test is
// skipped, unless TOLLGATE_REQUIRE_CLICKHOUSE=1 (CI), which makes it a
// failure.
package chtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"sync"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// DSN is the server's DSN.
func DSN() string {
	if d := os.Getenv("TOLLGATE_CLICKHOUSE_DSN"); d != "" {
		return d
	}
	return "clickhouse://127.0.0.1:9000/default"
}

var (
	once      sync.Once
	serverErr error
)

func connect(ctx context.Context) (clickhouse.Conn, error) {
	opts, err := clickhouse.ParseDSN(DSN())
	if err != nil {
		return nil, err
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, err
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// Database creates a database for the test and returns the DSN that
// names it.
func Database(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	once.Do(func() {
		c, err := connect(ctx)
		if err == nil {
			c.Close()
		}
		serverErr = err
	})
	if serverErr != nil {
		if os.Getenv("TOLLGATE_REQUIRE_CLICKHOUSE") == "1" {
			t.Fatalf("ClickHouse at %s (TOLLGATE_CLICKHOUSE_DSN) is required (TOLLGATE_REQUIRE_CLICKHOUSE=1): %v", DSN(), serverErr)
		}
		t.Skipf("no ClickHouse at %s (set TOLLGATE_CLICKHOUSE_DSN; TOLLGATE_REQUIRE_CLICKHOUSE=1 to fail instead): %v", DSN(), serverErr)
	}
	conn, err := connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	rand.Read(b[:])
	name := "tollgate_test_" + hex.EncodeToString(b[:])
	if err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		conn.Close()
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		if err := conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
		conn.Close()
	})
	u, err := url.Parse(DSN())
	if err != nil {
		t.Fatalf("TOLLGATE_CLICKHOUSE_DSN: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}
