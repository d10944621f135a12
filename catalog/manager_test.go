package catalog

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// memStore keeps the last state saved; err, when set, fails every Save.
type memStore struct {
	saved *State
	saves int
	err   error
}

func (m *memStore) Save(ch *Change) error {
	if m.err != nil {
		return m.err
	}
	m.saved, m.saves = ch.New, m.saves+1
	return nil
}

// edit returns a change function that replaces the key with id by
// f's version of it.
func editKey(id string, f func(k *APIKey)) func(tx *Tx) error {
	return func(tx *Tx) error {
		k := *tx.Key(id)
		f(&k)
		tx.PutKey(k)
		return nil
	}
}

func TestManagerChange(t *testing.T) {
	cat, _ := mustApply(t, &Catalog{}, issueExample)
	start := StateOf(cat)
	id := cat.APIKeys[0].ID
	fs := &memStore{}
	var published []*Change
	m, err := NewManager(start, fs, func(c *Change) error { published = append(published, c); return nil })
	if err != nil {
		t.Fatal(err)
	}
	next, err := m.Change(context.Background(), editKey(id, func(k *APIKey) { k.Enabled = false }))
	if err != nil {
		t.Fatal(err)
	}
	if m.State() != next || next.Key(id).Enabled || !start.Key(id).Enabled {
		t.Fatal("change not in force, or the old catalog was modified")
	}
	if fs.saved != next || len(published) != 1 || published[0].New != next || !slices.Equal(published[0].Keys, []string{id}) {
		t.Fatal("change not stored and published once, with the key it touched")
	}

	// An invalid result changes nothing.
	_, err = m.Change(context.Background(), func(tx *Tx) error {
		p := *tx.Plan(cat.UsagePlans[0].ID)
		q := *p.Quota
		q.Period = "YEAR"
		p.Quota = &q
		tx.PutPlan(p)
		return nil
	})
	var ve *ValidationError
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), "quota.period") {
		t.Fatalf("err = %v, want a validation error", err)
	}
	// f's own error changes nothing either.
	_, err = m.Change(context.Background(), func(tx *Tx) error { tx.DeleteKey(id); return errors.New("no") })
	if err == nil || m.State() != next || len(published) != 1 {
		t.Fatal("a failed change took effect")
	}
	// A change to nothing is not stored or published again, nor is an
	// entity written back as it was.
	if _, err := m.Change(context.Background(), func(*Tx) error { return nil }); err != nil || len(published) != 1 {
		t.Fatalf("empty change: %v, %d publications", err, len(published))
	}
	if _, err := m.Change(context.Background(), editKey(id, func(*APIKey) {})); err != nil || len(published) != 1 || fs.saves != 1 {
		t.Fatalf("unchanged key: %v, %d publications", err, len(published))
	}
}

func TestManagerStoreOrPublishFailure(t *testing.T) {
	cat, _ := mustApply(t, &Catalog{}, issueExample)
	start, id := StateOf(cat), cat.APIKeys[0].ID
	m, _ := NewManager(start, &memStore{err: errors.New("disk full")}, nil)
	if _, err := m.Change(context.Background(), editKey(id, func(k *APIKey) { k.Enabled = false })); err == nil || m.State() != start {
		t.Fatalf("store failure: %v; the change must not take effect", err)
	}
	fs := &memStore{saved: start}
	m, _ = NewManager(start, fs, func(*Change) error { return errors.New("gateway refused") })
	if _, err := m.Change(context.Background(), editKey(id, func(k *APIKey) { k.Enabled = false })); err == nil || m.State() != start {
		t.Fatalf("publish failure: %v", err)
	}
	if fs.saved != start {
		t.Error("the stored catalog was not restored after the publish failed")
	}
}

func TestManagerAudits(t *testing.T) {
	cat, _ := mustApply(t, &Catalog{}, issueExample)
	start := StateOf(cat)
	dir := t.TempDir()
	log := &AuditLog{Path: filepath.Join(dir, "audit.log")}
	fs := &memStore{saved: start}
	m, _ := NewManager(start, fs, nil)
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	m.SetAudit(log, func() time.Time { return at })
	ctx := WithActor(context.Background(), "TGAKEXAMPLE", "PATCH /apikeys/x")
	id := cat.APIKeys[0].ID
	if _, err := m.Change(ctx, func(tx *Tx) error {
		editKey(id, func(k *APIKey) { k.Enabled = false })(tx)
		tx.PutPlan(UsagePlan{ID: "newplan001", Name: "New", APIStages: []APIStage{}})
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
	before := m.State()
	if _, err := m.Change(ctx, editKey(id, func(k *APIKey) { k.Enabled = true })); err == nil || m.State() != before {
		t.Fatalf("unaudited change: %v", err)
	}
	if fs.saved != before {
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
	start := StateOf(&Catalog{APIKeys: []APIKey{{ID: "k1", Name: "legacy\u202ename", ValueHash: HashKey("legacylegacylegacy01")}}})
	m, err := NewManager(start, &memStore{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Change(context.Background(), func(tx *Tx) error {
		tx.PutKey(APIKey{ID: "k2", Name: "fresh", ValueHash: HashKey("freshfreshfreshfresh")})
		return nil
	})
	if err != nil {
		t.Fatalf("a change beside a legacy name: %v", err)
	}
	_, err = m.Change(context.Background(), editKey("k2", func(k *APIKey) { k.Description = "\x1b[2J" }))
	if err == nil || !strings.Contains(err.Error(), "description: contains the control character U+001B") {
		t.Fatalf("a change bringing in a control character: %v", err)
	}
}
