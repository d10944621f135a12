package catalog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// AuditEntry is one entity changed by one catalog change: who, what,
// when, and the entity before and after (as stored: key values appear
// only as their first four characters and a hash).
type AuditEntry struct {
	Time      time.Time       `json:"time"`
	Actor     string          `json:"actor"`  // admin access key id, "bearer token" or "config file"
	Action    string          `json:"action"` // e.g. "PATCH /apikeys/{id}" or "apply tollgate.yaml"
	Kind      string          `json:"kind"`   // apiKey, usagePlan, api, gateway
	ID        string          `json:"id"`
	Name      string          `json:"name,omitempty"`
	KeyPrefix string          `json:"keyPrefix,omitempty"` // an API key's first four characters
	Old       json.RawMessage `json:"old,omitempty"`       // absent when created
	New       json.RawMessage `json:"new,omitempty"`       // absent when deleted
}

type actorKey struct{}

// WithActor records in ctx who makes a change and through what, for the
// audit log.
func WithActor(ctx context.Context, actor, action string) context.Context {
	return context.WithValue(ctx, actorKey{}, [2]string{actor, action})
}

// ActorOf returns what WithActor recorded in ctx.
func ActorOf(ctx context.Context) (actor, action string) {
	v, _ := ctx.Value(actorKey{}).([2]string)
	return v[0], v[1]
}

// AuditEntries lists the entities a change altered, keys first, then
// plans, APIs and the gateway, each kind in id order.
func AuditEntries(ch *Change, at time.Time, actor, action string) []AuditEntry {
	var out []AuditEntry
	emit := func(kind, id, name, prefix string, o, n any) {
		ob, _ := json.Marshal(o)
		nb, _ := json.Marshal(n)
		if string(ob) == string(nb) {
			return
		}
		e := AuditEntry{Time: at, Actor: actor, Action: action, Kind: kind, ID: id, Name: name, KeyPrefix: prefix}
		if o != nil {
			e.Old = ob
		}
		if n != nil {
			e.New = nb
		}
		out = append(out, e)
	}
	auditKeys(ch, ch.Keys, emit)
	auditOthers(ch, emit)
	return out
}

// An emitter receives each entity a change touched, before and after (an
// untyped nil where absent), as it is logged.
type emitter func(kind, id, name, prefix string, o, n any)

// auditKey is a key as logged: without its values' hashes (an unsalted
// SHA-256 of a chosen value could be guessed offline), with their
// fingerprints (Fingerprint: 32 bits of the hash, which say which value
// a key had, and which a rotation replaced, without the rest). A changed
// value shows as a changed valueFingerprint and keyValueChanged; a
// rotation as the previous value's fingerprint, prefix and
// previousValueUntil.
type auditKey struct {
	APIKey
	ValueHash                string `json:"valueHash,omitempty"`
	PreviousValueHash        string `json:"previousValueHash,omitempty"`
	KeyValueChanged          bool   `json:"keyValueChanged,omitempty"`
	ValueFingerprint         string `json:"valueFingerprint,omitempty"`
	PreviousValueFingerprint string `json:"previousValueFingerprint,omitempty"`
}

// newAuditKey returns k as logged; valueChanged: its value is not the
// one it had before the change.
func newAuditKey(k *APIKey, valueChanged bool) auditKey {
	return auditKey{APIKey: *k, KeyValueChanged: valueChanged, ValueFingerprint: k.ValueFingerprint(), PreviousValueFingerprint: k.PreviousValueFingerprint()}
}

// auditKeys emits the keys ids (of ch.Keys). AppendChange does not: it
// encodes keys with keyLines (auditjson.go), to the same bytes.
func auditKeys(ch *Change, ids []string, emit emitter) {
	for _, id := range ids {
		emitKey(ch.Old.Key(id), ch.New.Key(id), emit)
	}
}

// emitKey emits a key before (o) and after (n), nil where absent.
func emitKey(o, n *APIKey, emit emitter) {
	k := pick(o, n)
	var oa, na any
	if o != nil {
		oa = newAuditKey(o, false)
	}
	if n != nil {
		na = newAuditKey(n, o != nil && o.ValueHash != n.ValueHash)
	}
	emit("apiKey", k.ID, k.Name, k.ValuePrefix, oa, na)
}

// auditOthers emits the plans, APIs and gateway of ch.
func auditOthers(ch *Change, emit emitter) {
	for _, id := range ch.Plans {
		o, n := ch.Old.Plan(id), ch.New.Plan(id)
		p := pick(o, n)
		emit("usagePlan", p.ID, p.Name, "", orNil(o), orNil(n))
	}
	if ch.APIs {
		diffList(ch.Old.APIs(), ch.New.APIs(), func(a API) string { return a.ID }, func(o, n *API) {
			a := pick(o, n)
			emit("api", a.ID, a.Name, "", orNil(o), orNil(n))
		})
	}
	if ch.Gateway {
		emit("gateway", "gateway", "", "", ch.Old.Gateway(), ch.New.Gateway())
	}
	if ch.Webhooks {
		diffList(ch.Old.Webhooks(), ch.New.Webhooks(), func(w Webhook) string { return w.ID }, func(o, n *Webhook) {
			w := pick(o, n)
			var oa, na any
			if o != nil {
				oa = auditWebhook{Webhook: *o}
			}
			if n != nil {
				na = auditWebhook{Webhook: *n, SecretChanged: o != nil && o.Secret != n.Secret}
			}
			emit("webhook", w.ID, w.Name, "", oa, na)
		})
	}
}

// Diff lists the entities that differ between two catalogs (O(size): for
// whole catalogs, never on a change's path).
func Diff(old, next *Catalog, at time.Time, actor, action string) []AuditEntry {
	return AuditEntries(DiffStates(StateOf(old), StateOf(next)), at, actor, action)
}

func pick[T any](o, n *T) *T {
	if n != nil {
		return n
	}
	return o
}

// orNil turns a nil pointer into an untyped nil, so that it marshals as
// absent rather than as a zero entity.
func orNil[T any](p *T) any {
	if p == nil {
		return nil
	}
	return p
}

// diffList calls f for every id in either list, with the entity from each
// side (nil where absent), in id order.
func diffList[T any](old, next []T, id func(T) string, f func(o, n *T)) {
	byID := map[string][2]*T{}
	for i := range old {
		v := byID[id(old[i])]
		v[0] = &old[i]
		byID[id(old[i])] = v
	}
	for i := range next {
		v := byID[id(next[i])]
		v[1] = &next[i]
		byID[id(next[i])] = v
	}
	ids := make([]string, 0, len(byID))
	for k := range byID {
		ids = append(ids, k)
	}
	slices.Sort(ids)
	for _, k := range ids {
		f(byID[k][0], byID[k][1])
	}
}

// AuditLog is an append-only file of AuditEntry, one JSON object per line,
// synced to disk before a change is reported done. Its mutex keeps one
// change's lines together (a large change is written in many chunks), so
// a process must write a file through one AuditLog: take it from
// AuditLogAt.
type AuditLog struct {
	Path string
	mu   sync.Mutex
	// written and failed count the appends (one per change, synced once)
	// since the process started (Writes).
	written, failed atomic.Uint64
}

// Writes returns how many appends (Append, AppendChange: one per change)
// were written and synced, and how many failed, since the process
// started.
func (l *AuditLog) Writes() (written, failed uint64) { return l.written.Load(), l.failed.Load() }

func (l *AuditLog) count(err error) error {
	if err != nil {
		l.failed.Add(1)
	} else {
		l.written.Add(1)
	}
	return err
}

// auditLogs holds the process's AuditLog of each path.
var auditLogs sync.Map // cleaned path → *AuditLog

// AuditLogAt returns the process's AuditLog of the file at path, the same
// one for every caller, so that their writes are serialised.
func AuditLogAt(path string) *AuditLog {
	path = filepath.Clean(path)
	l, _ := auditLogs.LoadOrStore(path, &AuditLog{Path: path})
	return l.(*AuditLog)
}

// Append writes entries at the end of the log.
func (l *AuditLog) Append(entries []AuditEntry) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, e := range entries {
		if err := enc.Encode(e); err != nil {
			return l.count(fmt.Errorf("audit log: %w", err))
		}
	}
	return l.count(l.write(b.Bytes()))
}

// write appends b (whole lines) to the log and syncs it; nothing at all,
// not even an empty file, when b is empty.
func (l *AuditLog) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f, err := os.OpenFile(l.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return nil
}

// AppendChange writes the entries of ch (those AuditEntries lists, in
// its order) at the end of the log, synced once. The entries of keys are
// made and encoded in chunks on every core while earlier chunks are
// written, so that a change of a million keys (a first start from a
// file) is a few seconds and a few megabytes of buffers, not a million
// entries in memory.
func (l *AuditLog) AppendChange(ch *Change, at time.Time, actor, action string) error {
	return l.count(l.appendChange(ch, at, actor, action))
}

func (l *AuditLog) appendChange(ch *Change, at time.Time, actor, action string) error {
	const chunk = 2048
	if len(ch.Keys) <= chunk {
		return l.appendSmall(ch, at, actor, action)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	w := &lazyFile{path: l.Path}
	bw := bufio.NewWriterSize(w, 1<<20)

	type job struct {
		ids  []string
		out  []byte
		err  error
		done chan struct{}
	}
	workers := runtime.GOMAXPROCS(0)
	jobs := make(chan *job, workers*2)
	order := make(chan *job, workers*2)
	// free holds the buffers of chunks written, for chunks to come: a
	// chunk's buffer (~0.5 MiB) grown from nothing by append allocates
	// several times its size, for every chunk.
	free := make(chan []byte, workers*4)
	for range workers {
		go func() {
			lines := newKeyLines(at, actor, action)
			for j := range jobs {
				select {
				case j.out = <-free:
				default:
				}
				j.out, j.err = lines.appendKeys(j.out, ch, j.ids)
				close(j.done)
			}
		}()
	}
	go func() {
		for ids := ch.Keys; len(ids) > 0; {
			n := min(chunk, len(ids))
			j := &job{ids: ids[:n], done: make(chan struct{})}
			jobs <- j
			order <- j
			ids = ids[n:]
		}
		close(jobs)
		close(order)
	}()
	var err error
	for j := range order {
		<-j.done
		if err == nil {
			err = j.err
		}
		if err == nil {
			_, err = bw.Write(j.out)
		}
		select {
		case free <- j.out[:0]:
		default:
		}
	}
	var rest bytes.Buffer
	if err == nil {
		err = encodeEntries(&rest, at, actor, action, func(emit emitter) { auditOthers(ch, emit) })
	}
	if err == nil {
		_, err = bw.Write(rest.Bytes())
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil && w.f != nil {
		err = w.f.Sync()
	}
	if w.f != nil {
		if cerr := w.f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return nil
}

// appendSmall is AppendChange for a change of a few keys (an admin
// call): encoded here into one buffer the size of its entries, written
// and synced. The large path's 1 MiB writer and workers would be
// allocated per call: a megabyte of garbage for each create-api-key,
// which at a million keys (a live heap of ~650 MB, so a collection's
// mark phase of ~0.6 s) put a collection under every few hundred calls
// and their p99 from 2 ms to 20-40 ms.
func (l *AuditLog) appendSmall(ch *Change, at time.Time, actor, action string) error {
	var keys []byte
	var err error
	if len(ch.Keys) > 0 {
		// Room for the lines of up to four keys, 1 KiB each (a line is
		// ~300-600 bytes): an admin call's lines are one allocation,
		// not one per growth.
		lines := newKeyLines(at, actor, action)
		keys, err = lines.appendKeys(make([]byte, 0, min(len(ch.Keys), 4)<<10), ch, ch.Keys)
	}
	b := bytes.NewBuffer(keys) // the others are written after the keys
	if err == nil {
		err = encodeEntries(b, at, actor, action, func(emit emitter) { auditOthers(ch, emit) })
	}
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return l.write(b.Bytes())
}

// encodeEntries writes the entries that visit emits to b, as Append
// writes AuditEntries: the same JSON, but each entity is encoded once,
// in its line, rather than marshalled, compacted and copied; and only an
// entity found on both sides is marshalled beforehand, to see whether it
// changed. AppendChange writes plans, APIs and the gateway with it; keys
// go through keyLines, which writes what this writes of them.
func encodeEntries(b *bytes.Buffer, at time.Time, actor, action string, visit func(emitter)) error {
	type line struct {
		Time      time.Time `json:"time"`
		Actor     string    `json:"actor"`
		Action    string    `json:"action"`
		Kind      string    `json:"kind"`
		ID        string    `json:"id"`
		Name      string    `json:"name,omitempty"`
		KeyPrefix string    `json:"keyPrefix,omitempty"`
		Old       any       `json:"old,omitempty"`
		New       any       `json:"new,omitempty"`
	}
	enc := json.NewEncoder(b)
	var err error
	visit(func(kind, id, name, prefix string, o, n any) {
		if err != nil {
			return
		}
		if o != nil && n != nil {
			ob, oerr := json.Marshal(o)
			nb, nerr := json.Marshal(n)
			if err = errors.Join(oerr, nerr); err != nil || string(ob) == string(nb) {
				return
			}
			o, n = json.RawMessage(ob), json.RawMessage(nb)
		}
		err = enc.Encode(line{Time: at, Actor: actor, Action: action, Kind: kind, ID: id, Name: name, KeyPrefix: prefix, Old: o, New: n})
	})
	return err
}

// lazyFile opens the log for appending at the first write: a change
// whose entities all turn out unchanged writes nothing, not even an
// empty file.
type lazyFile struct {
	path string
	f    *os.File
}

func (w *lazyFile) Write(p []byte) (int, error) {
	if w.f == nil {
		f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return 0, err
		}
		w.f = f
	}
	return w.f.Write(p)
}

// Read returns every entry, oldest first. A missing log is empty.
func (l *AuditLog) Read() ([]AuditEntry, error) {
	f, err := os.Open(l.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	var out []AuditEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for line := 1; sc.Scan(); line++ {
		var e AuditEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return out, fmt.Errorf("audit log %s line %d: %w", l.Path, line, err)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}
