package poll

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	var n atomic.Int32
	Until(t, time.Second, time.Millisecond, "three calls", func() bool { return n.Add(1) == 3 })
	if n.Load() != 3 {
		t.Errorf("cond called %d times, want 3", n.Load())
	}
	// A condition that never holds fails the test it is given.
	ft := fail(t, func(ft *fakeT) {
		Until(ft, 20*time.Millisecond, time.Millisecond, "never", func() bool { return false })
	})
	if want := "not within 20ms: never"; ft.msg != want {
		t.Errorf("Until with a condition that never holds: failed with %q, want %q", ft.msg, want)
	}
}

func TestUntilOK(t *testing.T) {
	var n atomic.Int32
	UntilOK(t, time.Second, time.Millisecond, "three calls", func() error {
		if n.Add(1) < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if n.Load() != 3 {
		t.Errorf("check called %d times, want 3", n.Load())
	}
	// A check that never passes fails the test, with the last error.
	n.Store(0)
	ft := fail(t, func(ft *fakeT) {
		UntilOK(ft, 20*time.Millisecond, time.Millisecond, "never", func() error {
			return fmt.Errorf("call %d", n.Add(1))
		})
	})
	if want := fmt.Sprintf("not within 20ms: never: call %d", n.Load()); ft.msg != want {
		t.Errorf("UntilOK with a check that never passes: failed with %q, want %q", ft.msg, want)
	}
	if n.Load() < 2 {
		t.Errorf("check called %d times in 20ms, want several", n.Load())
	}
}

// fail runs f with a fakeT in a goroutine of its own, as Fatalf ends it,
// and returns the fakeT once f has returned or failed. It fails t if f
// did not fail.
func fail(t *testing.T, f func(*fakeT)) *fakeT {
	t.Helper()
	ft := &fakeT{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(ft)
	}()
	<-done
	if !ft.failed {
		t.Error("did not fail the test")
	}
	return ft
}

// fakeT records Fatalf and ends its goroutine, as testing.T does.
type fakeT struct {
	testing.TB
	failed bool
	msg    string
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed = true
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestWait(t *testing.T) {
	var n atomic.Int32
	if err := Wait(time.Second, time.Millisecond, "two calls", func() error {
		if n.Add(1) < 2 {
			return errors.New("once")
		}
		return nil
	}); err != nil {
		t.Fatalf("Wait = %v, want nil after two calls", err)
	}
	err := Wait(10*time.Millisecond, time.Millisecond, "never", func() error { return errors.New("still 3") })
	if err == nil || err.Error() != "not within 10ms: never: still 3" {
		t.Errorf("Wait = %v, want the what and the last error", err)
	}
}
