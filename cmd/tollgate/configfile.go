package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"

	"github.com/tollgate/tollgate/catalog"
)

// appliedConfig is the record, in a data folder, of the --config file
// applied last. A file is applied when it differs from that one, so that
// restarting with the same --config keeps what the admin API changed
// since (a key disabled, a plan's quota raised); an edited file is
// applied again and wins for the entities it names.
type appliedConfig struct{ path, sum string }

func newAppliedConfig(dataDir string, content []byte) appliedConfig {
	sum := sha256.Sum256(content)
	return appliedConfig{path: filepath.Join(dataDir, "config-applied.sha256"), sum: hex.EncodeToString(sum[:])}
}

// unchanged reports whether this file is the one applied last.
func (a appliedConfig) unchanged() bool {
	last, err := os.ReadFile(a.path)
	return err == nil && string(last) == a.sum
}

// record notes the file as applied.
func (a appliedConfig) record() error {
	if err := os.WriteFile(a.path, []byte(a.sum), 0o600); err != nil {
		return fmt.Errorf("record the applied configuration: %w", err)
	}
	return nil
}

// reportApplied logs what applying a file created and prints the values
// generated for new keys: once, on standard output only (the catalog
// keeps a hash).
func reportApplied(stdout io.Writer, logger *slog.Logger, cur *catalog.State, ch *catalog.Changes) {
	// A file of a million keys is not a million log lines: the first
	// ones, then how many.
	const shown = 20
	for _, c := range ch.Created[:min(len(ch.Created), shown)] {
		logger.Info("created " + c)
	}
	if len(ch.Created) > shown {
		logger.Info(fmt.Sprintf("created %d more plans and keys", len(ch.Created)-shown))
	}
	ids := make([]string, 0, len(ch.GeneratedKeys))
	for id := range ch.GeneratedKeys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if k := cur.Key(id); k != nil {
			fmt.Fprintf(stdout, "API key %q (id %s) value: %s\n", k.Name, id, ch.GeneratedKeys[id])
		}
	}
}
