// Package poll is the tests' one way to wait for something another
// goroutine, process or server makes true: check, sleep a little, and
// fail the test, naming what was awaited, once the time allowed is over.
// (Waiting on a clock a test controls needs no polling; this is for what
// it does not: a broker, a ClickHouse server, a child process.)
package poll

import (
	"testing"
	"time"
)

// Until calls cond every interval until it returns true, and fails t
// (naming what) if it has not within the time allowed.
func Until(t testing.TB, within, interval time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(interval)
	}
}
