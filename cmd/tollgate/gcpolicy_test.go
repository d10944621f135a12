package main

import (
	"bytes"
	"log/slog"
	"runtime"
	"strings"
	"testing"
)

func TestGCPercent(t *testing.T) {
	for _, tt := range []struct {
		live uint64
		want int
	}{
		{0, 400},
		{10 << 20, 400},
		{64 << 20, 400},
		{128 << 20, 200},
		{640 << 20, 40},
		{4 << 30, 25},
	} {
		if got := gcPercent(tt.live); got != tt.want {
			t.Errorf("gcPercent(%d MiB) = %d, want %d", tt.live>>20, got, tt.want)
		}
	}
}

// releaseStartMemory hands the freed heap back to the OS and says so in
// the line the scale benchmark waits for before it reads RSS.
func TestReleaseStartMemory(t *testing.T) {
	garbage := make([][]byte, 64)
	for i := range garbage {
		garbage[i] = make([]byte, 1<<20)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before) // the 64 MiB in use
	runtime.KeepAlive(garbage)
	garbage = nil
	var log bytes.Buffer
	releaseStartMemory(slog.New(slog.NewTextHandler(&log, nil)))
	runtime.ReadMemStats(&after)
	if after.HeapInuse+32<<20 > before.HeapInuse {
		t.Errorf("heap in use: %d MiB before, %d MiB after: the garbage was not collected", before.HeapInuse>>20, after.HeapInuse>>20)
	}
	// An eighth of the 64 MiB at most: goroutines other tests of the
	// package left running allocate between the release and the read
	// (4 MiB was exceeded once in a full run).
	if kept := after.HeapIdle - after.HeapReleased; kept > 8<<20 {
		t.Errorf("%d MiB of free heap kept from the OS", kept>>20)
	}
	if !strings.Contains(log.String(), `msg="start memory released"`) || !strings.Contains(log.String(), "liveHeapMiB=") {
		t.Errorf("log: %q", log.String())
	}
}
