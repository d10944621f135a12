package dirlock

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestSecondAcquireFailsNamingTheHolder(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir, "LOCK")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(dir, "LOCK")
	if !errors.Is(err, ErrHeld) {
		t.Fatalf("second Acquire: got %v, want ErrHeld", err)
	}
	if want := "process " + strconv.Itoa(os.Getpid()); !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("error %q should name the folder and %q", err, want)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l2, err := Acquire(dir, "LOCK")
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	l2.Release()
}

// A lock held by another process that was killed is free again: the
// kernel drops a flock with its holder, and the stale pid in the file
// blocks nothing.
func TestLockOfAKilledProcessIsFree(t *testing.T) {
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("flock(1) not installed")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "LOCK")
	os.WriteFile(path, []byte("999999\n"), 0o640)
	// flock(1) holds the lock (-o: itself only, not its child) while
	// the shell sleeps; the shell says when it runs, once the lock is held.
	cmd := exec.Command("flock", "-o", "-x", path, "sh", "-c", "echo held; exec sleep 60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the sleep
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "held\n" {
		t.Fatalf("flock(1) said %q", line)
	}
	if _, err := Acquire(dir, "LOCK"); !errors.Is(err, ErrHeld) {
		t.Fatalf("Acquire while flock(1) holds the lock: got %v, want ErrHeld", err)
	}
	cmd.Process.Kill() // the holder; Wait returns once it is gone, its lock with it
	cmd.Wait()
	l, err := Acquire(dir, "LOCK")
	if err != nil {
		t.Fatalf("Acquire after the holder was killed: %v", err)
	}
	l.Release()
	b, _ := os.ReadFile(path)
	if got := strings.TrimSpace(string(b)); got != strconv.Itoa(os.Getpid()) {
		t.Fatalf("lock file holds %q, want this process's pid", got)
	}
}
