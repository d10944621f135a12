// Package poll is the tests' one way to wait for something another
// goroutine, process or server makes true: check, sleep a little, and
// fail the test, naming what was awaited, once the time allowed is over.
// (Waiting on a clock a test controls needs no polling; this is for what
// it does not: a broker, a ClickHouse server, a child process.)
//
// Until takes a condition; UntilOK takes a check that says what it found
// instead, which the failure reports:
//
//	poll.UntilOK(t, 10*time.Second, 20*time.Millisecond, "the usage is stored", func() error {
//		if got := stored(); got != 5 {
//			return fmt.Errorf("%d requests stored, want 5", got)
//		}
//		return nil
//	})
package poll

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// Until calls cond every interval until it returns true, and fails t
// (naming what) if it has not within the time allowed.
func Until(t testing.TB, within, interval time.Duration, what string, cond func() bool) {
	t.Helper()
	if wait(within, interval, func() error {
		if cond() {
			return nil
		}
		return errPending
	}) != nil {
		t.Fatalf("not within %v: %s", within, what)
	}
}

// UntilOK calls check every interval until it returns nil, and fails t
// if it has not within the time allowed, naming what and the error the
// last check returned.
func UntilOK(t testing.TB, within, interval time.Duration, what string, check func() error) {
	t.Helper()
	if err := wait(within, interval, check); err != nil {
		t.Fatalf("not within %v: %s: %v", within, what, err)
	}
}

// Wait is UntilOK for a goroutine other than the test's, which must not
// call t.Fatalf: it returns the failure (naming what, with the last
// check's error) for the caller to report, nil once check passed.
func Wait(within, interval time.Duration, what string, check func() error) error {
	if err := wait(within, interval, check); err != nil {
		return fmt.Errorf("not within %v: %s: %w", within, what, err)
	}
	return nil
}

var errPending = errors.New("pending")

// wait calls check every interval until it returns nil or the time
// allowed is over, and returns the last check's error. check is called
// at least once.
func wait(within, interval time.Duration, check func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(interval)
	}
}
