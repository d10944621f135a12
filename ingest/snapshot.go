package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The readers of the compacted topics keep a snapshot of what they
// materialised and where they stopped, so that a node starts and serves
// while Kafka is unreachable: SignalReader's is JSON (read and written
// here), ConfigLog's binary (configsnapshot.go), as a catalog of a
// million keys needs.

// readSnapshot reads the snapshot at path into v. ok is false when there
// is none: no path configured, or no file yet. what names it in errors.
func readSnapshot(path, what string, v any) (ok bool, err error) {
	if path == "" {
		return false, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s snapshot: %w", what, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("read %s snapshot %s: %w (delete it to rebuild from Kafka)", what, path, err)
	}
	return true, nil
}

// writeSnapshot replaces the snapshot at path with v.
func writeSnapshot(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Dir(path), filepath.Base(path), b)
}
