package catalog

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	next, err := m.Change(context.Background(), func(c *Catalog) error { c.APIKeys[0].Enabled = false; return nil })
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
	_, err = m.Change(context.Background(), func(c *Catalog) error { c.UsagePlans[0].Quota.Period = "YEAR"; return nil })
	var ve *ValidationError
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), "quota.period") {
		t.Fatalf("err = %v, want a validation error", err)
	}
	// f's own error changes nothing either.
	_, err = m.Change(context.Background(), func(c *Catalog) error { c.APIKeys = nil; return errors.New("no") })
	if err == nil || m.Current() != next || len(published) != 1 {
		t.Fatal("a failed change took effect")
	}
	// A change to nothing is not stored or published again.
	if _, err := m.Change(context.Background(), func(*Catalog) error { return nil }); err != nil || len(published) != 1 {
		t.Fatalf("empty change: %v, %d publications", err, len(published))
	}
}

func TestManagerStoreOrPublishFailure(t *testing.T) {
	start, _ := mustApply(t, &Catalog{}, issueExample)
	m, _ := NewManager(start, failingSaver{errors.New("disk full")}, nil)
	if _, err := m.Change(context.Background(), func(c *Catalog) error { c.APIKeys[0].Enabled = false; return nil }); err == nil || m.Current() != start {
		t.Fatalf("store failure: %v; the change must not take effect", err)
	}
	fs := FileStore{Path: filepath.Join(t.TempDir(), "catalog.json")}
	fs.Save(start)
	m, _ = NewManager(start, fs, func(*Catalog) error { return errors.New("gateway refused") })
	if _, err := m.Change(context.Background(), func(c *Catalog) error { c.APIKeys[0].Enabled = false; return nil }); err == nil || m.Current() != start {
		t.Fatalf("publish failure: %v", err)
	}
	if stored, _ := fs.Load(); !stored.Equal(start) {
		t.Error("the stored catalog was not restored after the publish failed")
	}
}

func TestManagerAudits(t *testing.T) {
	start, _ := mustApply(t, &Catalog{}, issueExample)
	dir := t.TempDir()
	log := &AuditLog{Path: filepath.Join(dir, "audit.log")}
	m, _ := NewManager(start, FileStore{Path: filepath.Join(dir, "catalog.json")}, nil)
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	m.SetAudit(log, func() time.Time { return at })
	ctx := WithActor(context.Background(), "TGAKEXAMPLE", "PATCH /apikeys/x")
	id := start.APIKeys[0].ID
	if _, err := m.Change(ctx, func(c *Catalog) error {
		c.APIKeys[0].Enabled = false
		c.UsagePlans = append(c.UsagePlans, UsagePlan{ID: "newplan001", Name: "New", APIStages: []APIStage{}})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	entries, err := log.Read()
	if err != nil || len(entries) != 2 {
		t.Fatalf("entries %+v, %v", entries, err)
	}
	k, p := entries[0], entries[1]
	if k.Kind != "apiKey" || k.ID != id || k.Actor != "TGAKEXAMPLE" || k.Action != "PATCH /apikeys/x" || !k.Time.Equal(at) ||
		k.KeyPrefix != "widg" || !strings.Contains(string(k.Old), `"enabled":true`) || !strings.Contains(string(k.New), `"enabled":false`) {
		t.Errorf("key entry %+v", k)
	}
	if p.Kind != "usagePlan" || p.Old != nil || p.New == nil {
		t.Errorf("plan entry %+v", p)
	}
	if strings.Contains(string(k.Old)+string(k.New), "valueHash") {
		t.Errorf("the audit log holds a key's value hash: %s", k.New)
	}

	// A change that cannot be audited is not made.
	m.SetAudit(&AuditLog{Path: filepath.Join(dir, "missing", "audit.log")}, time.Now)
	before := m.Current()
	if _, err := m.Change(ctx, func(c *Catalog) error { c.APIKeys[0].Enabled = true; return nil }); err == nil || m.Current() != before {
		t.Fatalf("unaudited change: %v", err)
	}
	if stored, _ := (FileStore{Path: filepath.Join(dir, "catalog.json")}).Load(); !stored.Equal(before) {
		t.Error("an unaudited change stayed in the stored catalog")
	}
}

func TestAuditLogCorrupt(t *testing.T) {
	p := filepath.Join(t.TempDir(), "audit.log")
	os.WriteFile(p, []byte("{\"actor\":\"a\"}\nnot json\n"), 0o600)
	entries, err := (&AuditLog{Path: p}).Read()
	if err == nil || !strings.Contains(err.Error(), "line 2") || len(entries) != 1 {
		t.Errorf("Read = %d entries, %v; want the first and an error naming line 2", len(entries), err)
	}
}

// A stored catalog holding text that today's rules refuse (written by an
// older version) still takes changes to other entities; the text a change
// brings in is judged.
func TestManagerJudgesOnlyTheChangedText(t *testing.T) {
	start := &Catalog{APIKeys: []APIKey{{ID: "k1", Name: "legacy\u202ename", ValueHash: HashKey("legacylegacylegacy01")}}}
	m, err := NewManager(start, FileStore{Path: filepath.Join(t.TempDir(), "catalog.json")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Change(context.Background(), func(c *Catalog) error {
		c.APIKeys = append(c.APIKeys, APIKey{ID: "k2", Name: "fresh", ValueHash: HashKey("freshfreshfreshfresh")})
		return nil
	})
	if err != nil {
		t.Fatalf("a change beside a legacy name: %v", err)
	}
	_, err = m.Change(context.Background(), func(c *Catalog) error {
		c.Key("k2").Description = "\x1b[2J"
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "description: contains the control character U+001B") {
		t.Fatalf("a change bringing in a control character: %v", err)
	}
}
