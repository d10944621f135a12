// Package backoff is the one retry wait of tollgate's loops (reading
// topics, writing the usage store, replaying spilled events): after a
// failure, wait, twice as long as the last wait, between a floor and a
// ceiling; after a success, start again from the floor. Every retry logs
// the same way: a Warn with the loop's message and the wait under the
// key RetryIn.
package backoff

import (
	"context"
	"log/slog"
	"time"
)

// RetryIn is the log key of the wait before the next attempt.
const RetryIn = "retry_in"

// Next returns the wait after last (0: the first failure after a
// success): twice last, at least lo, at most hi.
func Next(last, lo, hi time.Duration) time.Duration { return min(max(last*2, lo), hi) }

// Retry logs msg and args at Warn with the next wait, sets *wait to it
// (Next(*wait, lo, hi)) and sleeps it. It returns false, without logging,
// if ctx has ended, and false if ctx ends during the wait.
func Retry(ctx context.Context, log *slog.Logger, wait *time.Duration, lo, hi time.Duration, msg string, args ...any) bool {
	if ctx.Err() != nil {
		return false
	}
	*wait = Next(*wait, lo, hi)
	log.Warn(msg, append(args, RetryIn, *wait)...)
	return Sleep(ctx, *wait)
}

// Sleep waits d; false if ctx ended first.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
