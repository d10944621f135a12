// Package dirlock gives a process exclusive use of a folder: a lock file
// in it, flocked for as long as the process holds it, with the holder's
// pid written inside so that a second process can say who holds it.
//
// The kernel releases a flock when its holder exits, however it exits
// (kill -9 included), so a stale lock file never blocks a restart: the
// file stays, the lock does not.
//
//	l, err := dirlock.Acquire(dir, "LOCK")
//	if err != nil {
//		return err // names the folder and, when it can, the holder's pid
//	}
//	defer l.Release()
package dirlock

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrHeld is wrapped by Acquire's error when another process holds the lock.
var ErrHeld = errors.New("folder in use by another process")

// Lock is a held folder lock.
type Lock struct{ f *os.File }

// Acquire takes the exclusive lock on the file name in dir, creating it if
// need be, and writes this process's pid into it. It does not wait: when
// another process holds the lock, the error wraps ErrHeld and names the
// holder's pid as the file records it.
func Acquire(dir, name string) (*Lock, error) {
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := "another process"
			if pid := readPID(f); pid > 0 {
				holder = "process " + strconv.Itoa(pid)
			}
			return nil, fmt.Errorf("%w: %s is locked by %s (%s); stop it, or give this one another folder", ErrHeld, dir, holder, path)
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	// The pid is informative only: the flock is the lock. Written in
	// place (truncate, then write) while held, so a reader that races
	// the write at worst shows no pid.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

func readPID(f *os.File) int {
	b, err := io.ReadAll(io.LimitReader(f, 32))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return pid
}

// Release gives the lock up. The file stays (removing it would let a
// third process lock a new file while a second still waits on the old).
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
