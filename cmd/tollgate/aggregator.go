package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/aggregator"
	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/ingest"
	"github.com/tollgate/tollgate/internal/logs"
	"github.com/tollgate/tollgate/notify"
	"github.com/tollgate/tollgate/reportapi"
	"github.com/tollgate/tollgate/usage/chstore"
)

type aggregatorOptions struct {
	kafka         kafkaOptions
	clickhouse    string
	dataDir       string
	group         string
	flushInterval time.Duration
	flushEvents   int
	rawRetention  time.Duration
	adminListen   string
	// webhookAllowPrivate lets webhooks reach loopback and private
	// addresses (notify.Guard).
	webhookAllowPrivate bool
	// wholeThrottles leaves keys' throttles undivided: each enforcer
	// applies whole rates (aggregator.Config.Rates nil).
	wholeThrottles bool
}

func newAggregatorCmd() *cobra.Command {
	var o aggregatorOptions
	cmd := &cobra.Command{
		Use:   "aggregator",
		Short: "Roll the fleet's usage events up into ClickHouse and publish quota state",
		Long: `Consume the events topic as a member of a consumer group (run several for
more partitions at once), store every event exactly once in ClickHouse
(raw events; minute, hour and day rollups), send records that are not usage
events to the dead-letter topic, and publish each key's quota state to
the signals topic: at least every second for keys that changed, at once
when a key crosses 80% or 100% of its quota. It also divides each busy
key's throttle among the enforcers by where its requests arrive, so that
the fleet admits the plan's rate, not the rate once per enforcer. Run tollgate migrate kafka
and tollgate migrate clickhouse first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			return runAggregator(cmd.Context(), o, cmd.OutOrStdout(), logger, nil)
		},
	}
	f := cmd.Flags()
	o.kafka.addFlags(f, " (required)")
	f.StringVar(&o.clickhouse, "clickhouse", "", "ClickHouse DSN, native protocol (clickhouse://HOST:9000/DATABASE) (required)")
	f.StringVar(&o.dataDir, "data-dir", "./tollgate-data", "folder for the catalog snapshot (plans and their quotas)")
	f.StringVar(&o.group, "group", "tollgate-aggregator", "consumer group of the aggregators")
	f.DurationVar(&o.flushInterval, "flush-interval", 500*time.Millisecond, "longest an event waits before its batch is stored (usage visible within about 2s)")
	f.IntVar(&o.flushEvents, "flush-events", 1<<16, "events per partition that make a batch be stored at once")
	f.StringVar(&o.adminListen, "admin-listen", "", "admin listen address: /healthz, /readyz, /metrics and the webhook deliveries this aggregator sent (/v1/webhooks/deliveries) (\"\" turns it off)")
	f.DurationVar(&o.rawRetention, "raw-retention", 90*24*time.Hour, "how long raw events are kept (whole days are dropped, hourly); the rollups reports read are kept; 0 keeps everything")
	f.BoolVar(&o.webhookAllowPrivate, "webhook-allow-private", false, webhookAllowPrivateHelp)
	f.BoolVar(&o.wholeThrottles, "whole-throttles", false, "do not divide keys' throttles among the enforcers: each enforcer then admits a key's whole rate, the fleet up to the rate times the enforcers")
	return cmd
}

// runAggregator runs tollgate aggregator until ctx ends; ready, when not
// nil, receives the admin listener's address once it listens (tests).
func runAggregator(ctx context.Context, o aggregatorOptions, stdout io.Writer, logger *slog.Logger, ready chan<- string) error {
	if !o.kafka.enabled() {
		return fmt.Errorf("--kafka is required (or %s)", envName("kafka"))
	}
	if o.clickhouse == "" {
		return fmt.Errorf("--clickhouse is required (or %s)", envName("clickhouse"))
	}
	k, err := o.kafka.config()
	if err != nil {
		return err
	}
	lock, err := openDataDir(o.dataDir)
	if err != nil {
		return err
	}
	defer lock.Release()
	store, err := chstore.Open(ctx, o.clickhouse)
	if err != nil {
		return err
	}
	defer store.Close()
	reg := newRegistry()
	// Quota notifications of the keys this aggregator is the authority
	// for: crossings from the signals it writes, throttling from the
	// events it stores, disabled keys from the config log (every
	// aggregator sees those: each sends it, with the same id).
	// Set once the notifier is open; read by callbacks that other
	// goroutines may run first.
	var noticing atomic.Pointer[closingNotifier]
	cl, err := ingest.OpenConfigLog(ingest.ConfigLogConfig{Kafka: k, Snapshot: filepath.Join(o.dataDir, "catalog-snapshot.json"), Logger: logger,
		Metrics: reg, Publish: func(ch *catalog.Change) error {
			if notifier := noticing.Load(); notifier != nil {
				if err := notifier.CatalogChanged(context.Background(), ch); err != nil {
					logger.Warn("notice disabled keys", "err", err)
				}
			}
			return nil
		}})
	if err != nil {
		return err
	}
	notifier, err := openNotifier(o.dataDir, cl.State, notify.Guard{AllowPrivate: o.webhookAllowPrivate}, logger, time.Now, nil)
	if err != nil {
		return err
	}
	noticing.Store(notifier)
	defer notifier.Close()
	if err := registerNotifyMetrics(reg, notifier); err != nil {
		return err
	}
	signals, err := ingest.NewSignalWriter(k)
	if err != nil {
		return err
	}
	defer signals.Close()
	agg, err := aggregator.New(aggregator.Config{Kafka: k, Store: store, GroupID: o.group, FlushEvents: o.flushEvents,
		FlushInterval: o.flushInterval, Catalog: cl.State, Signals: notify.SignalTee{Writer: signals, Notifier: notifier.Notifier},
		Rates: rateWriter(signals, o.wholeThrottles), Stored: notifier.Stored, Logger: logger, Metrics: reg})
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	clCtx, stopCL := context.WithCancel(context.WithoutCancel(ctx))
	wg.Go(func() { cl.Run(clCtx) })
	wg.Go(func() { notifier.Run(clCtx) })
	defer func() { stopCL(); wg.Wait() }()
	if o.rawRetention > 0 {
		wg.Go(func() { store.KeepRawFor(clCtx, o.rawRetention, time.Hour, time.Now, logger) })
	}
	log := logs.For(logger, "process")
	if o.adminListen != "" {
		stopAdmin, err := serveAggregatorAdmin(ctx, o, stdout, log, reg, notifier, cl.Loaded(), ready)
		if err != nil {
			return err
		}
		defer stopAdmin()
	}
	log.Info("aggregator running", "group", o.group, "topic", k.Topics().Events)
	err = agg.Run(ctx)
	st := agg.Stats()
	ns := notifier.Stats()
	log.Info("aggregator stopped", "stored", st.Stored, "duplicates", st.Duplicates, "poison", st.Poison, "signals", st.Signals,
		"notifications_delivered", ns.Delivered, "notifications_pending", ns.Pending)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// serveAggregatorAdmin serves the aggregator's admin listener: /healthz
// and /readyz (ready once the catalog is in: the plans' quotas),
// /metrics and its notification deliveries (/v1/webhooks/deliveries), as an enforcer's admin listener does, until ctx ends or stop
// is called; stop waits for it.
func serveAggregatorAdmin(ctx context.Context, o aggregatorOptions, stdout io.Writer, log *slog.Logger, reg *prometheus.Registry,
	deliveries reportapi.DeliveryLister, loaded <-chan struct{}, ready chan<- string) (stop func(), err error) {
	creds, err := adminCredentials(o.dataDir, stdout, o.adminListen)
	if err != nil {
		return nil, err
	}
	h, err := reportapi.New(reportapi.Config{Credentials: creds, Metrics: reg, Registerer: reg, Deliveries: deliveries, Ready: func() bool {
		select {
		case <-loaded:
			return true
		default:
			return false
		}
	}})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", o.adminListen)
	if err != nil {
		return nil, fmt.Errorf("admin listen: %w", err)
	}
	log.Info("admin listening", "addr", ln.Addr().String())
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := serveUntil(sctx, reportapi.NewServer(h), reportapi.WrapListener(ln), 5*time.Second); err != nil {
			log.Error("admin listener", "err", err)
		}
	}()
	if ready != nil {
		ready <- ln.Addr().String()
	}
	return func() { cancel(); <-done }, nil
}

// rateWriter is the aggregator's writer of throttle divisions: the
// signals topic's, or none with --whole-throttles.
func rateWriter(w *ingest.SignalWriter, whole bool) aggregator.RateWriter {
	if whole {
		return nil
	}
	return w
}
