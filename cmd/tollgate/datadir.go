package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/tollgate/tollgate/internal/dirlock"
	"github.com/tollgate/tollgate/usage/sqlitestore"
)

// The files of serve's data folder. catalog.db and usage.db hold state
// that nothing else can give back; the others record what was done.
const (
	catalogFile = "catalog.db"
	// legacyCatalogFile is the catalog of versions before catalog.db:
	// imported once, then renamed catalog.json.imported.
	legacyCatalogFile = "catalog.json"
	usageFile         = "usage.db"
	auditFile         = "audit.log"
	appliedFile       = "config-applied.sha256"
	dataLockFile      = "tollgate.lock"
)

// openDataDir creates the data folder if need be and takes its lock, held
// until the process ends or the lock is released: two processes on one
// folder would overwrite each other's catalog and count quotas twice. A
// folder this process cannot write is refused with that reason, before
// anything else is tried.
func openDataDir(dir string) (*dirlock.Lock, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, dataDirError(dir, "create data folder", err)
	}
	l, err := dirlock.Acquire(dir, dataLockFile)
	if err != nil {
		if errors.Is(err, dirlock.ErrHeld) {
			return nil, fmt.Errorf("data folder: %w", err)
		}
		return nil, dataDirError(dir, "lock data folder", err)
	}
	return l, nil
}

// dataDirError says plainly when the folder is read-only or not ours to
// write, which the bare errno of the failed call hides.
func dataDirError(dir, doing string, err error) error {
	switch {
	case errors.Is(err, syscall.EROFS):
		return fmt.Errorf("%s: %s is on a read-only file system; tollgate writes its catalog and usage there: give --data-dir a writable folder (%w)", doing, dir, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s: %s is not writable by this user (uid %d); tollgate writes its catalog and usage there: fix its permissions or give --data-dir another folder (%w)", doing, dir, os.Getuid(), err)
	}
	return fmt.Errorf("%s: %w", doing, err)
}

// checkDataDir refuses a data folder of serve whose files do not belong
// together: state that is missing would otherwise be recreated silently,
// an empty catalog answering 403 to every key, or a fresh usage store
// restarting every quota at 0. It runs before anything in the folder is
// written. store is the opened usage store (nil when usage.db was absent
// before it was opened).
//
// With recreate (--recreate-missing) the operator has seen the message and
// accepts the loss: the start goes on and what is missing is made anew.
func checkDataDir(ctx context.Context, dir string, usageExisted bool, store *sqlitestore.Store, recreate bool) error {
	if recreate {
		return nil
	}
	has := func(name string) bool { return hasFile(dir, name) }
	// Under WAL a database killed before its first checkpoint is an empty
	// file beside its -wal.
	catalogThere := has(catalogFile) || has(catalogFile+"-wal") || has(legacyCatalogFile)
	var why []string
	if !catalogThere {
		if has(appliedFile) {
			why = append(why, appliedFile+" (a configuration file was applied)")
		}
		if has(auditFile) {
			why = append(why, auditFile+" (changes were made)")
		}
		if store != nil && usageExisted {
			used, err := store.HasUsage(ctx)
			if err != nil {
				return err
			}
			if used {
				why = append(why, usageFile+" (usage was recorded)")
			}
		}
		if len(why) > 0 {
			return fmt.Errorf("data folder %s is inconsistent: %s is missing, but %s. The catalog was deleted or moved: "+
				"restore %s from a backup; or start once with --recreate-missing to rebuild it from --config "+
				"(plans and keys the file names get back their ids, so their usage stays theirs; keys created through the admin API are lost, "+
				"and keys without a value in the file get new values)",
				dir, catalogFile, strings.Join(why, ", "), catalogFile)
		}
		return nil
	}
	if !usageExisted {
		return fmt.Errorf("data folder %s is inconsistent: %s is there but %s is missing. The usage store was deleted or moved: "+
			"restore %s from a backup; or start once with --recreate-missing to start an empty one "+
			"(every quota counter restarts at 0 and past usage is gone)",
			dir, catalogFile, usageFile, usageFile)
	}
	return nil
}

// hasFile reports whether dir holds a non-empty file name.
func hasFile(dir, name string) bool {
	st, err := os.Stat(filepath.Join(dir, name))
	return err == nil && st.Size() > 0
}
