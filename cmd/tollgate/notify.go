package main

import (
	"log/slog"
	"path/filepath"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/notify"
	"github.com/tollgate/tollgate/reportapi"
)

// notifyFile is the outbox of quota notifications, in the data folder of
// the node that sends them (serve, the aggregator).
const notifyFile = "notify.db"

// openNotifier opens the outbox in dir and the notifier on it. usage,
// when not nil, reads a key's quota usage (serve: the gateway's
// counters). Closing the returned notifier closes its outbox.
func openNotifier(dir string, cat func() *catalog.State, guard notify.Guard, logger *slog.Logger, now func() time.Time,
	usage func(planID, keyID string) (used, limit, end int64, ok bool)) (*closingNotifier, error) {
	ob, err := notify.OpenOutbox(filepath.Join(dir, notifyFile))
	if err != nil {
		return nil, err
	}
	cfg := notify.Config{Outbox: ob, Catalog: cat, Guard: guard, Logger: logger, Now: now}
	if usage != nil {
		cfg.Usage = func(planID, keyID string) (notify.Usage, bool) {
			used, limit, end, ok := usage(planID, keyID)
			return notify.Usage{PlanID: planID, KeyID: keyID, Used: used, Limit: limit, PeriodEnd: end}, ok
		}
	}
	n, err := notify.New(cfg)
	if err != nil {
		ob.Close()
		return nil, err
	}
	return &closingNotifier{Notifier: n, ob: ob}, nil
}

// closingNotifier is a notifier that closes its outbox.
type closingNotifier struct {
	*notify.Notifier
	ob *notify.Outbox
}

func (c *closingNotifier) Close() error { return c.ob.Close() }

// notifyMetrics publishes the notifier's counters.
func notifyMetrics(n *closingNotifier) func() []reportapi.Metric {
	return func() []reportapi.Metric {
		st := n.Stats()
		return []reportapi.Metric{
			{Name: "tollgate_notifications_noticed_total", Help: "Quota notifications written to the outbox.", Type: "counter", Value: float64(st.Noticed)},
			{Name: "tollgate_notifications_dropped_total", Help: "Quota notifications dropped: the outbox was full.", Type: "counter", Value: float64(st.Dropped)},
			{Name: "tollgate_notification_attempts_total", Help: "Webhook delivery attempts.", Type: "counter", Value: float64(st.Attempts)},
			{Name: "tollgate_notifications_delivered_total", Help: "Quota notifications delivered (2xx).", Type: "counter", Value: float64(st.Delivered)},
			{Name: "tollgate_notification_failures_total", Help: "Webhook delivery attempts that failed (each retried).", Type: "counter", Value: float64(st.Failures)},
			{Name: "tollgate_notifications_given_up_total", Help: "Quota notifications given up after 24h of retries, or whose webhook was deleted.", Type: "counter", Value: float64(st.GivenUp)},
			{Name: "tollgate_notifications_pending", Help: "Quota notifications waiting to be delivered.", Type: "gauge", Value: float64(st.Pending)},
		}
	}
}
