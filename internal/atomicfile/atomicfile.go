// Package atomicfile replaces files so that a crash leaves the old
// content or the new, never a mix: the spill log's cursor, the config
// log's snapshot, a catalog file.
package atomicfile

import (
	"io"
	"os"
	"path/filepath"
)

// Replace replaces the file at path with what write writes: to
// path.tmp, synced, renamed over path, then the folder synced. If
// anything fails, path.tmp is removed and path is as it was. One writer
// per path at a time: two would share path.tmp.
func Replace(path string, write func(io.Writer) error) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	err = write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// WriteFile is Replace with the content b.
func WriteFile(path string, b []byte) error {
	return Replace(path, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// SyncDir makes the names in dir durable (a file created, renamed or
// removed there).
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
