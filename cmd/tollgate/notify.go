package main

import (
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/internal/metrics"
	"github.com/tollgate/tollgate/notify"
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

// Descriptions of the notifier's counters on /metrics.
var (
	notifyNoticed   = metrics.Desc("tollgate_notifications_noticed_total", "Quota notifications written to the outbox.")
	notifyDropped   = metrics.Desc("tollgate_notifications_dropped_total", "Quota notifications dropped: the outbox was full.")
	notifyAttempts  = metrics.Desc("tollgate_notification_attempts_total", "Webhook delivery attempts.")
	notifyDelivered = metrics.Desc("tollgate_notifications_delivered_total", "Quota notifications delivered (2xx).")
	notifyFailures  = metrics.Desc("tollgate_notification_failures_total", "Webhook delivery attempts that failed (each retried).")
	notifyGivenUp   = metrics.Desc("tollgate_notifications_given_up_total", "Quota notifications given up after 24h of retries, or whose webhook was deleted.")
	notifyPending   = metrics.Desc("tollgate_notifications_pending", "Quota notifications waiting to be delivered.")
)

// registerNotifyMetrics registers the notifier's counters on reg, read
// at scrape time.
func registerNotifyMetrics(reg prometheus.Registerer, n *closingNotifier) error {
	return metrics.Register(reg, "notify", &metrics.Collector{
		Descs: []*prometheus.Desc{notifyNoticed, notifyDropped, notifyAttempts, notifyDelivered, notifyFailures, notifyGivenUp, notifyPending},
		Read: func(ch chan<- prometheus.Metric) {
			st := n.Stats()
			ch <- metrics.Counter(notifyNoticed, st.Noticed)
			ch <- metrics.Counter(notifyDropped, st.Dropped)
			ch <- metrics.Counter(notifyAttempts, st.Attempts)
			ch <- metrics.Counter(notifyDelivered, st.Delivered)
			ch <- metrics.Counter(notifyFailures, st.Failures)
			ch <- metrics.Counter(notifyGivenUp, st.GivenUp)
			ch <- metrics.Gauge(notifyPending, st.Pending)
		},
	})
}
