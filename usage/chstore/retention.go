package chstore

import (
	"context"
	"log/slog"
	"time"

	"github.com/tollgate/tollgate/internal/logs"
	"github.com/tollgate/tollgate/internal/utc"
)

// KeepRawFor drops, now and every interval until ctx ends, the
// partitions of usage_events (UTC days) older than retention
// (DropRawBefore); the rollups reports read are kept. Every aggregator
// may run it: dropping a partition that is gone already is a no-op.
func (s *Store) KeepRawFor(ctx context.Context, retention, interval time.Duration, now func() time.Time, logger *slog.Logger) {
	logger = logs.For(logger, "retention")
	for {
		before := utc.Day(now().Add(-retention).UnixNano())
		dropped, err := s.DropRawBefore(ctx, before)
		switch {
		case err != nil && ctx.Err() == nil:
			logger.Warn("drop raw events past their retention", "err", err)
		case len(dropped) > 0:
			logger.Info("dropped raw events past their retention", "days", dropped)
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
