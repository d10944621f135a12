package ingest

// Changes larger than one produce request are written as transactions.
//
// A produce request appends its records as one batch: all of them or
// none. A change larger than one request (an import of 100,000 keys is
// about sixty) could be cut by its writer's crash, leaving part of it in
// force on every node. Such a change is therefore written as a
// transaction: each of its records carries the header tollgate-txn with
// the transaction's id, and after the last one the writer writes the
// marker record txn/commit/<id>. Readers hold the records of a
// transaction until its marker and apply them then, in one go; a writer
// that dies before the marker leaves nothing in force.
//
// Held records must not win compaction, which keeps only a key's latest
// record: a node rebuilding from the compacted log would lose the
// version in force of a key whose latest record belongs to an abandoned
// transaction. A writer of the log (ConfigLogConfig.Repair) that has
// read neither a record of a held transaction nor its marker for
// abandonAfter therefore writes the marker txn/abort/<id>, which every
// reader (and, since markers stay, every rebuild) takes as "drop it",
// then the version in force of each key it names (View.Restore). A
// writer gives each produce request at most its CommitTimeout, so twice
// that without a record is long past any live transaction (nodes should
// share a CommitTimeout); a commit marker read after the abort is
// rejected, and its writer's Commit fails. Two races remain, each
// needing a delay at the wrong moment: a commit marker held up in the
// broker past abandonAfter and read before the abort marker, whose
// change the restores then undo; and an aborting writer that dies
// between the abort marker and the restores, whose keys' versions in
// force compaction may then drop (topics keep records for at least
// min.compaction.lag.ms, an hour, first).
//
// Order: a record applied while a transaction is held (another writer's
// change, or another transaction committed first) supersedes the held
// records of the same key, which are skipped at the commit, as
// compaction would have removed them: nodes that follow the log and nodes
// that rebuild from the compacted log agree.
//
// Markers are never superseded (a commit and an abort of one transaction
// have keys of their own, so that compaction keeps whichever came
// first), so compaction keeps one or two per transaction: tens of bytes
// per large change (an import, a file applied), not per key. A snapshot
// is not written while a transaction is held (its records lie before the
// snapshot's offset and would be lost with it). Readers hold at most
// maxTxnRecords records of one transaction.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tollgate/tollgate/catalog"
)

const (
	// txnHeader is the header that names the transaction of a record.
	txnHeader = "tollgate-txn"
	// txnKeyPrefix begins the keys of transaction markers: txnCommit or
	// txnAbort follows, then the transaction's id.
	txnKeyPrefix = "txn/"
	txnCommit    = "commit/"
	txnAbort     = "abort/"
)

// txnMarker returns the key of a transaction's marker: what is txnCommit
// or txnAbort.
func txnMarker(what, id string) []byte { return []byte(txnKeyPrefix + what + id) }

// heldTxn is a transaction whose marker has not been read yet.
type heldTxn struct {
	id   string
	recs []catalog.Record // in log order; Key nil: superseded
	// since is when this node read its latest record.
	since time.Time
	// abortedAt: this node wrote repairs and an abort marker then (it
	// writes them again if the marker has not come back in abandonAfter).
	abortedAt time.Time
}

// heldRef is a held record: its transaction and index.
type heldRef struct {
	t *heldTxn
	i int
}

// newTxnID returns a transaction id: 16 random bytes, in hex.
func newTxnID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// isTxnMarker reports whether key is a transaction marker's.
func isTxnMarker(key []byte) bool { return bytes.HasPrefix(key, []byte(txnKeyPrefix)) }

// abandonAfter is how long a writer waits for a transaction's marker
// before it aborts the transaction.
func (l *ConfigLog) abandonAfter() time.Duration { return 2 * l.cfg.CommitTimeout }

// hold keeps a record of a transaction until its marker. Called with
// l.mu held.
func (l *ConfigLog) hold(r *record) {
	t := l.txns[r.txn]
	if t == nil {
		t = &heldTxn{id: r.txn}
		l.txns[r.txn] = t
	}
	t.since = l.cfg.Now()
	t.recs = append(t.recs, catalog.Record{Offset: r.offset, Key: r.key, Value: r.value})
	l.held[string(r.key)] = append(l.held[string(r.key)], heldRef{t, len(t.recs) - 1})
}

// supersede drops the held records of key older than offset: a record at
// offset is in force. Called with l.mu held.
func (l *ConfigLog) supersede(key []byte, offset int64) {
	refs, ok := l.held[string(key)]
	if !ok {
		return
	}
	refs = slices.DeleteFunc(refs, func(r heldRef) bool {
		if r.t.recs[r.i].Offset < offset {
			r.t.recs[r.i].Key = nil
			return true
		}
		return false
	})
	if len(refs) == 0 {
		delete(l.held, string(key))
	} else {
		l.held[string(key)] = refs
	}
}

// release forgets t's held records. Called with l.mu held.
func (l *ConfigLog) release(t *heldTxn) {
	delete(l.txns, t.id)
	for i := range t.recs {
		if t.recs[i].Key == nil {
			continue
		}
		k := string(t.recs[i].Key)
		refs := slices.DeleteFunc(l.held[k], func(r heldRef) bool { return r.t == t })
		if len(refs) == 0 {
			delete(l.held, k)
		} else {
			l.held[k] = refs
		}
	}
}

// endTxn applies the marker r: a commit applies the transaction's records
// that nothing superseded, an abort drops them. A commit of a transaction
// this node no longer holds (it was aborted as abandoned) is rejected, so
// that its writer's Commit fails. Called with l.mu held.
func (l *ConfigLog) endTxn(r *record) {
	what, id, _ := strings.Cut(string(r.key[len(txnKeyPrefix):]), "/")
	commit := what+"/" == txnCommit
	t := l.txns[id]
	switch {
	case commit && t == nil:
		err := fmt.Errorf("transaction %s was aborted before its commit: its writer took longer than %v", id, l.abandonAfter())
		l.rejected[r.offset] = err
		l.cfg.Logger.Warn("config transaction committed after its abort; ignored", "offset", r.offset, "txn", id)
		return
	case t == nil:
		return
	}
	l.release(t)
	if !commit {
		l.cfg.Logger.Info("config transaction aborted", "txn", id, "records", len(t.recs))
		return
	}
	live := slices.DeleteFunc(t.recs, func(r catalog.Record) bool { return r.Key == nil })
	for i := range live {
		l.supersede(live[i].Key, live[i].Offset)
	}
	l.applyRecords(live)
}

// abortAbandoned aborts, on a writer of the log, the transactions with
// no record for abandonAfter: it writes their abort markers, then the
// version in force of their keys.
func (l *ConfigLog) abortAbandoned(ctx context.Context) {
	l.mu.Lock()
	if len(l.txns) == 0 {
		l.mu.Unlock()
		return
	}
	now := l.cfg.Now()
	var recs []kafka.Record
	var aborted []*heldTxn
	for _, t := range l.txns {
		if now.Sub(t.since) < l.abandonAfter() || (!t.abortedAt.IsZero() && now.Sub(t.abortedAt) < l.abandonAfter()) {
			continue
		}
		var keys []string
		for i := range t.recs {
			if t.recs[i].Key != nil {
				keys = append(keys, string(t.recs[i].Key))
			}
		}
		slices.Sort(keys)
		recs = append(recs, kafka.Record{Key: kafka.NewBytes(txnMarker(txnAbort, t.id)), Value: kafka.NewBytes([]byte{})})
		for _, r := range l.view.Restore(slices.Compact(keys)) {
			recs = append(recs, kafka.Record{Key: kafka.NewBytes([]byte(r.Key)), Value: kafka.NewBytes(r.Value)})
		}
		aborted = append(aborted, t)
		t.abortedAt = now
	}
	l.mu.Unlock()
	if len(recs) == 0 {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, l.cfg.CommitTimeout)
	defer cancel()
	if _, err := l.produce(wctx, recs); err != nil {
		l.failures.Add(1)
		l.cfg.Logger.Warn("aborting abandoned transactions failed; retrying", "transactions", len(aborted), "err", err)
		l.mu.Lock()
		for _, t := range aborted {
			t.abortedAt = time.Time{}
		}
		l.mu.Unlock()
		return
	}
	for _, t := range aborted {
		l.cfg.Logger.Warn("aborted a transaction its writer abandoned", "txn", t.id, "records", len(t.recs), "held", now.Sub(t.since))
	}
}
