package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/tollgate/tollgate/internal/atomicfile"
)

// FileStore keeps the catalog as a JSON snapshot in one file, replaced
// atomically (internal/atomicfile: a temporary file, fsync, rename), so a crash leaves
// either the old or the new catalog, never a mix. It is how versions
// before the catalog database kept the catalog (catalog.json): serve
// reads it once to import it, and tools may write whole catalogs with it.
// Every change rewrites the whole file: it is not a store for changes.
type FileStore struct {
	Path string
}

// Load returns the stored catalog, or an empty one if none was stored.
func (s FileStore) Load() (*Catalog, error) {
	b, err := os.ReadFile(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Catalog{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load catalog: %w", err)
	}
	var c Catalog
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("load catalog %s: %w", s.Path, err)
	}
	return &c, nil
}

// Save replaces the stored catalog.
func (s FileStore) Save(c *Catalog) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("save catalog: %w", err)
	}
	if err := atomicfile.WriteFile(s.Path, append(b, '\n')); err != nil {
		return fmt.Errorf("save catalog: %w", err)
	}
	return nil
}
