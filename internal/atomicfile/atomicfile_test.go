package atomicfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// Replace leaves the old content and no temporary file when writing the
// new one fails, and the new content when it succeeds.
func TestReplace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := WriteFile(path, []byte("old")); err != nil {
		t.Fatal(err)
	}
	broken := errors.New("disk on fire")
	err := Replace(path, func(w io.Writer) error {
		w.Write([]byte("half"))
		return broken
	})
	if !errors.Is(err, broken) {
		t.Fatalf("Replace: %v, want the write's error", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "old" {
		t.Fatalf("after a failed write: %q, %v; want the old content", b, err)
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("after a failed write the temporary file is left: %v", err)
	}
	if err := WriteFile(path, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "new" {
		t.Fatalf("after a write: %q, %v; want the new content", b, err)
	}
	if err := WriteFile(filepath.Join(t.TempDir(), "missing", "f"), nil); err == nil {
		t.Error("WriteFile into a folder that does not exist succeeded")
	}
}
