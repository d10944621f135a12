package catalog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Saver persists a catalog (FileStore does).
type Saver interface {
	Save(c *Catalog) error
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
	// Current returns the catalog in force. It is shared: do not modify it.
	Current() *Catalog
	// Commit makes next, a valid successor of old, the catalog in force,
	// and returns the catalog in force once it is; on error nothing
	// changed, or (for a log that did not answer) the change may still
	// take effect later: the error says which.
	Commit(ctx context.Context, old, next *Catalog) (*Catalog, error)
}

// Manager serialises the changes to the catalog: the admin API and file
// applies both go through Change, so every change is validated as a
// whole, audited, and committed, or not made at all.
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
func NewManager(cur *Catalog, saver Saver, publish func(*Catalog) error) (*Manager, error) {
	l, err := NewLocal(cur, saver, publish)
	if err != nil {
		return nil, err
	}
	return NewManagerOn(l), nil
}

// NewManagerOn returns a manager that commits through c.
func NewManagerOn(c Committer) *Manager { return &Manager{c: c} }

// Current returns the catalog in force. It is shared: do not modify it.
func (m *Manager) Current() *Catalog { return m.c.Current() }

// Change applies f to a copy of the current catalog. If f returns nil and
// the result is valid, the change is audited (see SetAudit; ctx names the
// actor, see WithActor) and committed; otherwise nothing changes and the
// error (f's, a *ValidationError, the audit log's or the committer's) is
// returned.
func (m *Manager) Change(ctx context.Context, f func(c *Catalog) error) (*Catalog, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.c.Current()
	next := old.Clone()
	if err := f(next); err != nil {
		return nil, err
	}
	if err := ValidateChange(old, next, nil); err != nil {
		return nil, err
	}
	if old.Equal(next) {
		return old, nil
	}
	// Audited before it takes effect: a change the log cannot record is
	// not made.
	actor, action := ActorOf(ctx)
	if m.audit != nil {
		if err := m.audit.Append(Diff(old, next, m.now(), actor, action)); err != nil {
			return nil, err
		}
	}
	cur, err := m.c.Commit(ctx, old, next)
	if err != nil {
		if m.audit != nil {
			m.audit.Append(Diff(next, old, m.now(), actor, "undo ("+err.Error()+")"))
		}
		return nil, err
	}
	return cur, nil
}

// Local keeps the catalog in force in memory and in a Saver, and hands
// each change to a publish hook.
type Local struct {
	cur     atomic.Pointer[Catalog]
	saver   Saver
	publish func(*Catalog) error
}

var _ Committer = (*Local)(nil)

// NewLocal returns a Local holding cur. publish nil publishes nowhere.
func NewLocal(cur *Catalog, saver Saver, publish func(*Catalog) error) (*Local, error) {
	if cur == nil || saver == nil {
		return nil, errors.New("catalog manager: a catalog and a saver are required")
	}
	if publish == nil {
		publish = func(*Catalog) error { return nil }
	}
	l := &Local{saver: saver, publish: publish}
	l.cur.Store(cur)
	return l, nil
}

// Current returns the catalog in force.
func (l *Local) Current() *Catalog { return l.cur.Load() }

// Commit saves next, then publishes it; if publishing fails, the saved
// catalog is put back, so that store and gateway agree.
func (l *Local) Commit(_ context.Context, old, next *Catalog) (*Catalog, error) {
	if err := l.saver.Save(next); err != nil {
		return nil, err
	}
	if err := l.publish(next); err != nil {
		if rerr := l.saver.Save(old); rerr != nil {
			return nil, fmt.Errorf("publish catalog: %w (and restoring the stored catalog failed: %v)", err, rerr)
		}
		return nil, fmt.Errorf("publish catalog: %w", err)
	}
	l.cur.Store(next)
	return next, nil
}
