package catalog

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sync"
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
	add := func(kind, id, name, prefix string, o, n any) {
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
	// Keys are logged without their value's hash: an unsalted SHA-256 of
	// a chosen value could be guessed offline. A changed value shows as a
	// changed valuePrefix, or as keyValueChanged.
	type auditKey struct {
		APIKey
		ValueHash       string `json:"valueHash,omitempty"`
		KeyValueChanged bool   `json:"keyValueChanged,omitempty"`
	}
	for _, id := range ch.Keys {
		o, n := ch.Old.Key(id), ch.New.Key(id)
		k := pick(o, n)
		var oa, na any
		if o != nil {
			oa = auditKey{APIKey: *o}
		}
		if n != nil {
			na = auditKey{APIKey: *n, KeyValueChanged: o != nil && o.ValueHash != n.ValueHash}
		}
		add("apiKey", k.ID, k.Name, k.ValuePrefix, oa, na)
	}
	for _, id := range ch.Plans {
		o, n := ch.Old.Plan(id), ch.New.Plan(id)
		p := pick(o, n)
		add("usagePlan", p.ID, p.Name, "", orNil(o), orNil(n))
	}
	if ch.APIs {
		diffList(ch.Old.APIs(), ch.New.APIs(), func(a API) string { return a.ID }, func(o, n *API) {
			a := pick(o, n)
			add("api", a.ID, a.Name, "", orNil(o), orNil(n))
		})
	}
	if ch.Gateway {
		add("gateway", "gateway", "", "", ch.Old.Gateway(), ch.New.Gateway())
	}
	return out
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
// synced to disk before a change is reported done.
type AuditLog struct {
	Path string
	mu   sync.Mutex
}

// Append writes entries at the end of the log.
func (l *AuditLog) Append(entries []AuditEntry) error {
	if len(entries) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f, err := os.OpenFile(l.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, e := range entries {
		if err := enc.Encode(e); err != nil {
			f.Close()
			return fmt.Errorf("audit log: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("audit log: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("audit log: %w", err)
	}
	return f.Close()
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
