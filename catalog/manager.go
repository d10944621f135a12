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

// Manager owns the catalog in force and serialises changes to it: the
// admin API and file applies both go through Change, so every change is
// validated as a whole, stored, and handed to the gateway, or not made at
// all.
type Manager struct {
	mu      sync.Mutex
	cur     atomic.Pointer[Catalog]
	saver   Saver
	publish func(*Catalog) error
	audit   *AuditLog
	now     func() time.Time
}

// SetAudit makes every change append what it changed to log first; a
// change that cannot be logged is not made. now stamps the entries.
func (m *Manager) SetAudit(log *AuditLog, now func() time.Time) {
	m.mu.Lock()
	m.audit, m.now = log, now
	m.mu.Unlock()
}

// NewManager returns a manager of cur. publish, called after each stored
// change, hands the new catalog to its users (the gateway); nil publishes
// nowhere.
func NewManager(cur *Catalog, saver Saver, publish func(*Catalog) error) (*Manager, error) {
	if cur == nil || saver == nil {
		return nil, errors.New("catalog manager: a catalog and a saver are required")
	}
	if publish == nil {
		publish = func(*Catalog) error { return nil }
	}
	m := &Manager{saver: saver, publish: publish}
	m.cur.Store(cur)
	return m, nil
}

// Current returns the catalog in force. It is shared: do not modify it.
func (m *Manager) Current() *Catalog { return m.cur.Load() }

// Change applies f to a copy of the current catalog. If f returns nil and
// the result is valid, the change is audited (see SetAudit; ctx names the
// actor, see WithActor), stored, published, and becomes current;
// otherwise nothing changes and the error (f's, or a *ValidationError) is
// returned.
func (m *Manager) Change(ctx context.Context, f func(c *Catalog) error) (*Catalog, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.cur.Load()
	next := old.Clone()
	if err := f(next); err != nil {
		return nil, err
	}
	if err := Validate(next, nil); err != nil {
		return nil, err
	}
	if old.Equal(next) {
		return old, nil
	}
	if err := m.saver.Save(next); err != nil {
		return nil, err
	}
	// Audited once stored, before it takes effect: a change the log
	// cannot record is undone.
	if m.audit != nil {
		actor, action := ActorOf(ctx)
		if err := m.audit.Append(Diff(old, next, m.now(), actor, action)); err != nil {
			if rerr := m.saver.Save(old); rerr != nil {
				return nil, fmt.Errorf("%w (and restoring the stored catalog failed: %v)", err, rerr)
			}
			return nil, err
		}
	}
	if err := m.publish(next); err != nil {
		if m.audit != nil {
			actor, _ := ActorOf(ctx)
			m.audit.Append(Diff(next, old, m.now(), actor, "undo (the gateway refused the change)"))
		}
		// Keep store and gateway in agreement: put the old one back.
		if rerr := m.saver.Save(old); rerr != nil {
			return nil, fmt.Errorf("publish catalog: %w (and restoring the stored catalog failed: %v)", err, rerr)
		}
		return nil, fmt.Errorf("publish catalog: %w", err)
	}
	m.cur.Store(next)
	return next, nil
}
