package catalog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// ConfigFile is a declarative configuration file given at start (the
// --config of serve, enforcer and reportapi), applied to the catalog at
// most once per content: the data folder records the file applied last
// (config-applied.sha256), and a start with the same file keeps what the
// admin API changed since (a key disabled, a plan's quota raised), while
// an edited file is applied again and wins for the entities it names.
type ConfigFile struct {
	// Path names the file.
	Path string
	// DataDir holds the record of the file applied last.
	DataDir string
	// Force applies the file even if the record names it: the catalog is
	// being rebuilt, so the record proves nothing.
	Force bool
	// Now is the clock of the change. Default time.Now.
	Now func() time.Time
	// OnRetry, if set, hears of each conflict with another writer before
	// the file is applied again (see ApplyFileTo).
	OnRetry func(error)
}

// Apply applies the file to the catalog c holds, as one audited change
// (the actor is "config file"), retrying on conflict as ApplyFileTo does,
// and records it as applied. skipped reports that the file is the one
// applied last, and was not applied again; ch is nil then.
func (cf ConfigFile) Apply(ctx context.Context, c Changer) (ch *Changes, skipped bool, err error) {
	content, err := os.ReadFile(cf.Path)
	if err != nil {
		return nil, false, fmt.Errorf("read config: %w", err)
	}
	f, err := ParseFile(cf.Path, content)
	if err != nil {
		return nil, false, err
	}
	sum := sha256.Sum256(content)
	hash := hex.EncodeToString(sum[:])
	record := filepath.Join(cf.DataDir, "config-applied.sha256")
	if last, err := os.ReadFile(record); !cf.Force && err == nil && string(last) == hash {
		return nil, true, nil
	}
	now := cf.Now
	if now == nil {
		now = time.Now
	}
	ch, err = ApplyFileTo(WithActor(ctx, "config file", "apply "+cf.Path), c, f, now, cf.OnRetry)
	if err != nil {
		return nil, false, fmt.Errorf("apply %s: %w", cf.Path, err)
	}
	if err := os.WriteFile(record, []byte(hash), 0o600); err != nil {
		return nil, false, fmt.Errorf("record the applied configuration: %w", err)
	}
	return ch, false, nil
}
