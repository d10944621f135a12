package catalog

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

type failingSaver struct{ err error }

func (f failingSaver) Save(*Catalog) error { return f.err }

func TestManagerChange(t *testing.T) {
	start, _ := mustApply(t, &Catalog{}, issueExample)
	fs := FileStore{Path: filepath.Join(t.TempDir(), "catalog.json")}
	var published []*Catalog
	m, err := NewManager(start, fs, func(c *Catalog) error { published = append(published, c); return nil })
	if err != nil {
		t.Fatal(err)
	}
	next, err := m.Change(func(c *Catalog) error { c.APIKeys[0].Enabled = false; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if m.Current() != next || next.APIKeys[0].Enabled || !start.APIKeys[0].Enabled {
		t.Fatal("change not in force, or the old catalog was modified")
	}
	stored, _ := fs.Load()
	if !stored.Equal(next) || len(published) != 1 || published[0] != next {
		t.Fatal("change not stored and published once")
	}

	// An invalid result changes nothing.
	_, err = m.Change(func(c *Catalog) error { c.UsagePlans[0].Quota.Period = "YEAR"; return nil })
	var ve *ValidationError
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), "quota.period") {
		t.Fatalf("err = %v, want a validation error", err)
	}
	// f's own error changes nothing either.
	_, err = m.Change(func(c *Catalog) error { c.APIKeys = nil; return errors.New("no") })
	if err == nil || m.Current() != next || len(published) != 1 {
		t.Fatal("a failed change took effect")
	}
	// A change to nothing is not stored or published again.
	if _, err := m.Change(func(*Catalog) error { return nil }); err != nil || len(published) != 1 {
		t.Fatalf("empty change: %v, %d publications", err, len(published))
	}
}

func TestManagerStoreOrPublishFailure(t *testing.T) {
	start, _ := mustApply(t, &Catalog{}, issueExample)
	m, _ := NewManager(start, failingSaver{errors.New("disk full")}, nil)
	if _, err := m.Change(func(c *Catalog) error { c.APIKeys[0].Enabled = false; return nil }); err == nil || m.Current() != start {
		t.Fatalf("store failure: %v; the change must not take effect", err)
	}
	fs := FileStore{Path: filepath.Join(t.TempDir(), "catalog.json")}
	fs.Save(start)
	m, _ = NewManager(start, fs, func(*Catalog) error { return errors.New("gateway refused") })
	if _, err := m.Change(func(c *Catalog) error { c.APIKeys[0].Enabled = false; return nil }); err == nil || m.Current() != start {
		t.Fatalf("publish failure: %v", err)
	}
	if stored, _ := fs.Load(); !stored.Equal(start) {
		t.Error("the stored catalog was not restored after the publish failed")
	}
}
