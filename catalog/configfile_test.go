package catalog

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A file is applied once per content: the same file again is skipped
// (keeping what changed since), an edited one or a forced one applies.
func TestConfigFileAppliesOncePerContent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tollgate.yaml")
	if err := os.WriteFile(path, []byte(issueExample), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := NewManager(NewState(), &memStore{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	audit := filepath.Join(dir, "audit.log")
	m.SetAudit(AuditLogAt(audit), func() time.Time { return now })
	cf := ConfigFile{Path: path, DataDir: dir, Now: func() time.Time { return now }}
	ch, skipped, err := cf.Apply(context.Background(), m)
	if err != nil || skipped || !ch.Changed || m.State().NumKeys() != 1 {
		t.Fatalf("first apply: %+v, skipped %v, %v, %d keys", ch, skipped, err, m.State().NumKeys())
	}
	entries, err := AuditLogAt(audit).Read()
	if err != nil || len(entries) == 0 || entries[0].Actor != "config file" || entries[0].Action != "apply "+path {
		t.Fatalf("audit %+v, %v; want the config file as the actor", entries, err)
	}
	// An admin's change since survives a start with the same file.
	var keyID string
	m.State().Keys("", func(k *APIKey) bool { keyID = k.ID; return false })
	if _, err := m.Change(context.Background(), func(tx *Tx) error {
		k := *tx.State.Key(keyID)
		k.Enabled = false
		tx.PutKey(k)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if ch, skipped, err := cf.Apply(context.Background(), m); err != nil || !skipped || ch != nil {
		t.Fatalf("same file again: %+v, skipped %v, %v; want it skipped", ch, skipped, err)
	}
	if m.State().Key(keyID).Enabled {
		t.Error("the admin's change was undone by the same file")
	}
	forced := cf
	forced.Force = true
	if _, skipped, err := forced.Apply(context.Background(), m); err != nil || skipped || !m.State().Key(keyID).Enabled {
		t.Errorf("forced: skipped %v, %v, enabled %v; want the file applied again", skipped, err, m.State().Key(keyID).Enabled)
	}
	// An edited file applies.
	if err := os.WriteFile(path, []byte(strings.Replace(issueExample, "limit: 100", "limit: 200", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if ch, skipped, err := cf.Apply(context.Background(), m); err != nil || skipped || !ch.Changed {
		t.Errorf("edited file: %+v, skipped %v, %v", ch, skipped, err)
	}
	// A file that does not parse changes nothing and is not recorded.
	before := m.State()
	if err := os.WriteFile(path, []byte("usagePlans: [{quota: {limit: -1}}]"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cf.Apply(context.Background(), m); err == nil {
		t.Error("an invalid file applied")
	}
	if m.State() != before {
		t.Error("an invalid file changed the catalog")
	}
	if _, _, err := (ConfigFile{Path: filepath.Join(dir, "missing.yaml"), DataDir: dir}).Apply(context.Background(), m); err == nil || !strings.Contains(err.Error(), "read config") {
		t.Errorf("missing file: %v", err)
	}
}
