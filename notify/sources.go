package notify

import (
	"context"
	"errors"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/schemas"
)

// Where the notifier's inputs come from, in each mode.

// Signals notices the thresholds crossed in quota signals: in a fleet,
// the aggregator that owns a key's partition is the one that counts the
// key and signals it, so it notices each crossing once for the fleet,
// however many enforcers the requests went through.
func (n *Notifier) Signals(ctx context.Context, sigs []schemas.QuotaSignal) error {
	us := make([]Usage, 0, len(sigs))
	for i := range sigs {
		s := &sigs[i]
		us = append(us, Usage{PlanID: s.PlanID, KeyID: s.KeyID, Used: s.Used, Limit: s.Limit, PeriodEnd: s.PeriodEnd})
	}
	return n.Quota(ctx, us)
}

// SignalTee is a signal writer that hands what it writes to a notifier
// too: the aggregator's SignalWriter in a fleet.
type SignalTee struct {
	Writer interface {
		Write(ctx context.Context, signals []schemas.QuotaSignal) error
	}
	Notifier *Notifier
}

// Write writes the signals, then notices their crossings (a failure to
// notice is logged, never the signals' failure: the enforcers must have
// them).
func (t SignalTee) Write(ctx context.Context, sigs []schemas.QuotaSignal) error {
	if err := t.Writer.Write(ctx, sigs); err != nil {
		return err
	}
	if err := t.Notifier.Signals(ctx, sigs); err != nil {
		t.Notifier.log.Warn("notice quota crossings", "err", err)
	}
	return nil
}

// Written notices what a batch of usage events written to the store
// shows: in tollgate serve, the keys whose requests were admitted have
// their usage read from Config.Usage (the gateway's counters, the key's
// usage in serve), as are those of requests refused for the quota, and
// throttled requests start a throttling.
func (n *Notifier) Written(ctx context.Context, events []schemas.UsageEvent) error {
	hooks := n.cfg.Catalog().Webhooks()
	if len(hooks) == 0 {
		return nil // the common case costs one look at the catalog a batch
	}
	var errs []error
	if n.cfg.Usage != nil && anyWants(hooks, catalog.EventQuotaThreshold) {
		seen := map[[2]string]bool{}
		var us []Usage
		for i := range events {
			e := &events[i]
			k := [2]string{e.PlanID, e.KeyID}
			// A request refused for the quota looks too: a key whose last
			// admitted request's crossing was not written (the node
			// stopped in between) is at its limit, and is refused after.
			if !e.Admitted() && e.Decision != schemas.DecisionQuotaExceeded || e.PlanID == "" || e.KeyID == "" || seen[k] {
				continue
			}
			seen[k] = true
			if u, ok := n.cfg.Usage(e.PlanID, e.KeyID); ok {
				us = append(us, u)
			}
		}
		errs = append(errs, n.Quota(ctx, us))
	}
	errs = append(errs, n.Events(ctx, events))
	return errors.Join(errs...)
}

// Stored is Events for the aggregator's Config.Stored (errors logged).
func (n *Notifier) Stored(ctx context.Context, events []schemas.UsageEvent) {
	if err := n.Events(ctx, events); err != nil {
		n.log.Warn("notice throttled keys", "err", err)
	}
}
