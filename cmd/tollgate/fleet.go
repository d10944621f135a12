package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/aggregator"
	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/ingest"
	"github.com/tollgate/tollgate/notify"
	"github.com/tollgate/tollgate/reportapi"
	"github.com/tollgate/tollgate/usage"
	"github.com/tollgate/tollgate/usage/chstore"
	"github.com/tollgate/tollgate/usage/sqlitestore"
)

// openFleet opens the parts of a node of a fleet on Kafka. Every role
// follows the catalog on the config topic (ingest.ConfigLog). The gateway
// role starts on the snapshot's catalog, applies the aggregator's quota
// signals (ingest.SignalReader) and hands its events to the events topic
// (ingest.Edge). The admin role writes the catalog through the config
// log and reads usage from ClickHouse (--clickhouse), or from a usage
// store in its data folder that an aggregator of its own fills from the
// events topic (every partition, no consumer group, no quota authority).
func (p *process) openFleet(ctx context.Context) error {
	o := p.o
	k, err := o.kafka.config()
	if err != nil {
		return err
	}
	// The gateway starts on an empty catalog; the config log publishes
	// the snapshot's, then the topic's.
	var signals atomic.Pointer[ingest.SignalReader]
	var publish func(*catalog.Change) error
	if o.gateway {
		if p.edge, err = openEdge(ingest.EdgeConfig{Kafka: &k, SpillDir: filepath.Join(o.dataDir, "spill"), SpillMaxBytes: o.spillMax,
			QueueSize: o.queueSize, FlushInterval: o.flushEvery, Node: o.node, DrainTimeout: o.drainTimeout, Logger: p.logger,
			Metrics: p.reg}); err != nil {
			return err
		}
		if p.gw, err = enforcer.New(enforcer.Config{Events: p.edge.Queue(), Logger: p.logger, Node: o.node, Fleet: o.fleetSize,
			Now: func() int64 { return o.now().UnixNano() }, Metrics: p.reg}, nil); err != nil {
			return err
		}
		publish = func(ch *catalog.Change) error {
			if err := p.gw.Apply(ch); err != nil {
				return err
			}
			if sr := signals.Load(); sr != nil {
				sr.ApplyGained(ch)
			}
			return nil
		}
	}
	cl, err := ingest.OpenConfigLog(ingest.ConfigLogConfig{Kafka: k, Snapshot: filepath.Join(o.dataDir, "catalog-snapshot.json"),
		Publish: publish, Logger: p.logger, Now: o.now, Repair: o.admin, Metrics: p.reg})
	if err != nil {
		return err
	}
	hadSnapshot := cl.Offset() > 0
	p.goBG(cl.Run)
	p.loaded = cl.Loaded()
	if o.gateway {
		// What this enforcer admitted before it stopped, on the
		// snapshot's catalog, before the signals' leases are set.
		n, err := restoreLocalCounts(o.dataDir, p.gw)
		if err != nil {
			return err
		}
		if n > 0 {
			p.log.Info("quota counts of the last run restored", "keys", n)
		}
		unclean, err := markRunning(o.dataDir)
		if err != nil {
			return err
		}
		uncleanStart := prometheus.NewGauge(prometheus.GaugeOpts{Name: "tollgate_enforcer_unclean_start",
			Help: "1 if the last run of this enforcer ended without a stop (killed or crashed): its queued usage events were lost, and its quota leases may be granted once more."})
		if unclean {
			uncleanStart.Set(1)
			p.log.Warn("the last run ended without a stop (killed or crashed): the usage events in its queue (at most --flush-interval of them) were lost, and what it admitted since its last quota signal may be admitted again, at most its share of each key's quota", "flush-interval", o.flushEvery)
		}
		if err := p.reg.Register(uncleanStart); err != nil {
			return err
		}
		p.onClose(func() error { return saveLocalCounts(o.dataDir, p.gw) })
		sr, err := ingest.OpenSignalReader(ingest.SignalReaderConfig{Kafka: k, Snapshot: filepath.Join(o.dataDir, "signals-snapshot.json"),
			Apply: p.gw.ApplySignal, ApplyRate: p.gw.ApplyRate, Fleet: p.gw.SetFleet, Skewed: p.gw.SetClockSkewed, Logger: p.logger, Now: o.now, Metrics: p.reg})
		if err != nil {
			return err
		}
		signals.Store(sr)
		p.goBG(sr.Run)
		// /readyz answers 503 while this enforcer's clock is off the
		// aggregators': its periods, leases and expiries would be.
		p.admin.Health = sr.Health
		p.edge.Start(ctx)
	}
	// Ready once serving on a catalog: the topic's, or, for an enforcer,
	// its snapshot's (it serves while Kafka is away; a readiness probe
	// must not take it out of rotation for that).
	p.admin.Ready = func() bool {
		select {
		case <-cl.Loaded():
			return true
		default:
			return o.gateway && !o.admin && hadSnapshot
		}
	}
	var mgr *catalog.Manager
	var restore func() error // the gateway's quota counters from the usage store
	if o.admin {
		mgr = catalog.NewManagerOn(cl)
		mgr.SetAudit(p.auditLog(), o.now)
		p.admin.Audit = p.auditLog()
		if restore, err = p.openFleetUsage(ctx, k, mgr); err != nil {
			return err
		}
	}
	// Wait for the catalog where serving without it would answer wrongly:
	// an enforcer with no snapshot would refuse every key, and --config
	// must apply to the fleet's catalog, not to an empty one.
	if (o.gateway && !hadSnapshot) || o.config != "" {
		p.log.Info("waiting for the catalog from Kafka", "topic", k.Topics().Config)
		select {
		case <-cl.Loaded():
		case <-ctx.Done():
			return nil
		}
	}
	if err := p.applyConfig(ctx, mgr, false); err != nil {
		return err
	}
	if restore != nil {
		return restore()
	}
	return nil
}

// openFleetUsage opens the admin role's usage store: ClickHouse, where
// the aggregators keep usage and UpdateUsage records an adjustment that
// the quota authority reads; or a usage.db of its own, filled from the
// events topic by an aggregator on every partition, whose UpdateUsage needs a gateway in the process (serve
// --kafka) to hold the counters. With a gateway in the process it
// returns what starts the gateway's quota counters from that store.
func (p *process) openFleetUsage(ctx context.Context, k ingest.Kafka, mgr *catalog.Manager) (restore func() error, err error) {
	o := p.o
	p.admin.Catalog = mgr
	// Webhooks are checked here; their notifications are sent, and listed,
	// by the aggregators (the quota authority), not by this node.
	p.admin.CheckWebhookURL = notify.Guard{AllowPrivate: o.webhookAllowPrivate}.CheckURL
	if o.clickhouse != "" {
		ch, err := chstore.Open(ctx, o.clickhouse)
		if err != nil {
			return nil, err
		}
		p.onClose(ch.Close)
		p.admin.Usage, p.admin.Minutes = ch, ch
		p.admin.Quotas = &usage.QuotaUpdate{Catalog: mgr, Store: ch, Audit: p.auditLog(), Now: o.now}
		return nil, nil
	}
	store, err := sqlitestore.Open(filepath.Join(o.dataDir, usageFile))
	if err != nil {
		return nil, fmt.Errorf("open usage store: %w", err)
	}
	p.onClose(store.Close)
	// An aggregator on the node's own store (not a quota authority):
	// every partition, no consumer group.
	loader, err := aggregator.New(aggregator.Config{Kafka: k, Store: store, AllPartitions: true,
		FlushEvents: 4096, FlushInterval: 200 * time.Millisecond, Logger: p.logger, Metrics: p.reg})
	if err != nil {
		return nil, err
	}
	p.goBG(loader.Run)
	p.admin.Usage, p.admin.Minutes = store, store
	if p.gw == nil {
		p.admin.Quotas = reportapi.NoQuotas("UpdateUsage needs the quota authority: run tollgate aggregator and give this reportapi --clickhouse (or use serve --kafka, whose gateway holds the counters)")
		return nil, nil
	}
	// serve --kafka: the gateway's quota counters start from the store,
	// as serve's do, and again once its aggregator has caught up with what
	// the topic held (raising never lowers a count).
	p.admin.Quotas = &usage.QuotaUpdate{Catalog: mgr, Store: store, Live: p.gw, Audit: p.auditLog(), Now: o.now}
	return func() error {
		if err := p.gw.RestoreQuotas(ctx, store); err != nil {
			return err
		}
		p.goBG(func(ctx context.Context) error {
			select {
			case <-loader.CaughtUp():
				if err := p.gw.RestoreQuotas(ctx, store); err != nil {
					p.log.Error("restore quota counters after catching up", "err", err)
				}
			case <-ctx.Done():
			}
			return nil
		})
		return nil
	}, nil
}
