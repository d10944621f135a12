// Package sqlitedsn builds the data source name of the project's SQLite
// files (catalog.db, usage.db, notify.db) for the modernc driver: the
// settings they share, written once.
package sqlitedsn

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

// For returns the DSN of the file at path: a file: URI, so that any
// character in the path ('?', '#', '%') is escaped rather than taken for
// the start of the parameters. Every file waits up to busy for a lock,
// runs in WAL mode (readers see a snapshot and never block the writer,
// nor it them) and begins write transactions IMMEDIATE (the write lock
// taken up front, so a transaction never fails half way when upgrading
// from a read lock). synchronous is the file's durability: "FULL" (a
// sync per commit) or "NORMAL" (under WAL, syncs at checkpoints only: a
// power cut may lose the last commits but never corrupts the file).
func For(path string, busy time.Duration, synchronous string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+synchronous+")")
	q.Set("_txlock", "immediate")
	p := filepath.ToSlash(abs)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // file:/C:/... on Windows
	}
	return "file:" + (&url.URL{Path: p}).EscapedPath() + "?" + q.Encode(), nil
}
