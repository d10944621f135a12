package catalog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Store persists changes: it writes the entities a change touched (the
// SQLite store of package catalog/catalogdb does, in one transaction).
type Store interface {
	Save(ch *Change) error
}

// Errors a Committer may return (wrapped, with the details).
var (
	// ErrConflict: another change took a name or value first.
	ErrConflict = errors.New("conflict")
	// ErrUnavailable: the change could not be committed now (the log
	// did not answer); it may still take effect.
	ErrUnavailable = errors.New("unavailable")
)

// Committer makes a validated change the catalog in force: on local
// storage (Local), or on a shared config log (package ingest).
type Committer interface {
	// State returns the catalog in force.
	State() *State
	// Commit makes ch.New, a valid successor of ch.Old, the catalog in
	// force, and returns the catalog in force once it is; on error
	// nothing changed, or (for a log that did not answer) the change may
	// still take effect later: the error says which.
	Commit(ctx context.Context, ch *Change) (*State, error)
}

// Manager serialises the changes to the catalog: the admin API and file
// applies both go through Change, so every change is validated, audited,
// and committed, or not made at all.
type Manager struct {
	mu    sync.Mutex
	c     Committer
	audit *AuditLog
	now   func() time.Time
}

// SetAudit makes every change append what it changed to log first; a
// change that cannot be logged is not made. now stamps the entries.
func (m *Manager) SetAudit(log *AuditLog, now func() time.Time) {
	m.mu.Lock()
	m.audit, m.now = log, now
	m.mu.Unlock()
}

// NewManager returns a manager of cur on local storage: each change is
// saved, then handed to publish (the gateway; nil publishes nowhere).
func NewManager(cur *State, store Store, publish func(*Change) error) (*Manager, error) {
	l, err := NewLocal(cur, store, publish)
	if err != nil {
		return nil, err
	}
	return NewManagerOn(l), nil
}

// NewManagerOn returns a manager that commits through c.
func NewManagerOn(c Committer) *Manager { return &Manager{c: c} }

// State returns the catalog in force.
func (m *Manager) State() *State { return m.c.State() }

// Change runs f on a Tx of the catalog in force. If f returns nil and
// the change is valid, it is audited (see SetAudit; ctx names the actor,
// see WithActor) and committed; otherwise nothing changes and the error
// (f's, a *ValidationError, the audit log's or the committer's) is
// returned. Its cost is that of what f touches, not of the catalog.
func (m *Manager) Change(ctx context.Context, f func(tx *Tx) error) (*State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.c.State()
	tx := old.Begin()
	if err := f(tx); err != nil {
		return nil, err
	}
	if !tx.validated {
		if err := tx.Validate(nil); err != nil {
			return nil, err
		}
	}
	d := tx.Delta()
	if d.Empty() {
		return old, nil
	}
	ch := &Change{Old: old, New: tx.State, Delta: d}
	// Audited before it takes effect: a change the log cannot record is
	// not made.
	actor, action := ActorOf(ctx)
	if m.audit != nil {
		if err := m.audit.AppendChange(ch, m.now(), actor, action); err != nil {
			return nil, err
		}
	}
	cur, err := m.c.Commit(ctx, ch)
	if err != nil {
		if m.audit != nil {
			m.audit.AppendChange(ch.Reverse(), m.now(), actor, "undo ("+err.Error()+")")
		}
		return nil, err
	}
	return cur, nil
}

// Reverse returns the change that undoes ch.
func (ch *Change) Reverse() *Change { return &Change{Old: ch.New, New: ch.Old, Delta: ch.Delta} }

// Local keeps the catalog in force in memory and in a Store, and hands
// each change to a publish hook.
type Local struct {
	cur     atomic.Pointer[State]
	store   Store
	publish func(*Change) error
}

var _ Committer = (*Local)(nil)

// NewLocal returns a Local holding cur. publish nil publishes nowhere.
func NewLocal(cur *State, store Store, publish func(*Change) error) (*Local, error) {
	if cur == nil || store == nil {
		return nil, errors.New("catalog manager: a catalog and a store are required")
	}
	if publish == nil {
		publish = func(*Change) error { return nil }
	}
	l := &Local{store: store, publish: publish}
	l.cur.Store(cur)
	return l, nil
}

// State returns the catalog in force.
func (l *Local) State() *State { return l.cur.Load() }

// Commit saves the change, then publishes it; if publishing fails, the
// store is put back, so that store and gateway agree.
func (l *Local) Commit(_ context.Context, ch *Change) (*State, error) {
	if err := l.store.Save(ch); err != nil {
		return nil, err
	}
	if err := l.publish(ch); err != nil {
		if rerr := l.store.Save(ch.Reverse()); rerr != nil {
			return nil, fmt.Errorf("publish catalog: %w (and restoring the stored catalog failed: %v)", err, rerr)
		}
		return nil, fmt.Errorf("publish catalog: %w", err)
	}
	l.cur.Store(ch.New)
	return ch.New, nil
}
