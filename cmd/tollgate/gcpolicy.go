package main

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The collector's setting for serve: a fixed headroom above the live
// heap rather than a fixed ratio.
//
// The proxy allocates per request, and fewer collections buy throughput:
// with a small catalog (a live heap of tens of MB), GOGC=400 is what the
// load test measured best. But GOGC is a ratio: with a million keys (a
// live heap near 600 MB) GOGC=400 would let the heap grow to 3 GB before
// collecting. gcPercent gives the percentage that leaves gcHeadroom of
// garbage between collections — GOGC=400 at 64 MB live, ~40 at 600 MB —
// and tuneGC follows the live heap as the catalog grows or shrinks.
const (
	gcHeadroom   = 256 << 20
	gcMinPercent = 25
	gcMaxPercent = 400
)

// gcPercent returns the GOGC that leaves gcHeadroom above live bytes,
// within [gcMinPercent, gcMaxPercent].
func gcPercent(live uint64) int {
	if live == 0 {
		return gcMaxPercent
	}
	return int(min(max(uint64(gcHeadroom)*100/live, gcMinPercent), gcMaxPercent))
}

// retuneGC sets GOGC from the live heap (as of the last collection),
// unless GOGC is set in the environment.
func retuneGC() {
	if os.Getenv("GOGC") != "" {
		return
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() == metrics.KindUint64 {
		debug.SetGCPercent(gcPercent(sample[0].Value.Uint64()))
	}
}

// tuneGC calls retuneGC now and every interval until ctx ends.
func tuneGC(ctx context.Context, interval time.Duration) {
	set := retuneGC
	set()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			set()
		}
	}
}

// releaseStartMemory runs one collection that hands the start's garbage
// back to the OS, then sets the collector from the live heap it found.
//
// A start leaves garbage several times the catalog's size (the rows read,
// the sorted index entries; a first start also the parsed file and the
// audit's and rows' encodings), and the runtime returns freed memory only
// gradually: a million-key start held 1.0-1.2 GB of RSS for ~700 MiB of
// heap in use. The collection takes ~0.6 s there, so it runs once the
// start is serving (called on a goroutine) rather than before; the log
// line says when it is done and what is left.
func releaseStartMemory(logger *slog.Logger) {
	began := time.Now()
	debug.FreeOSMemory()
	retuneGC()
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(sample)
	var live uint64
	if sample[0].Value.Kind() == metrics.KindUint64 {
		live = sample[0].Value.Uint64()
	}
	logger.Info("start memory released", "liveHeapMiB", live>>20, "took", time.Since(began).Round(time.Millisecond))
}
