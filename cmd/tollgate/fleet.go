package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/tollgate/tollgate/aggregator"
	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/ingest"
	"github.com/tollgate/tollgate/internal/utc"
	"github.com/tollgate/tollgate/reportapi"
	"github.com/tollgate/tollgate/usage"
	"github.com/tollgate/tollgate/usage/chstore"
	"github.com/tollgate/tollgate/usage/sqlitestore"
)

// nodeOptions configure a node of a fleet: an enforcer (gateway), an
// admin and report API, or both (serve --kafka).
type nodeOptions struct {
	kafka      kafkaOptions
	clickhouse string // the usage store's DSN; "" keeps it embedded
	gateway    bool   // run the gateway (enforcer role)
	admin      bool   // run the admin and report API (reportapi role)

	config       string
	listen       string
	adminListen  string
	dataDir      string
	demoUpstream string
	queueSize    int
	flushEvery   time.Duration
	spillMax     int64
	drainTimeout time.Duration
	node         string
	pprof        bool
	// shutdownTimeout bounds how long requests in flight may finish.
	shutdownTimeout time.Duration
	adminRate       float64
	adminBurst      int
	// now replaces the clock in tests; nil means time.Now.
	now func() time.Time
	// limits bound the gateway listener.
	limits edgeLimits
}

// addEdgeFlags adds the flags of the gateway role.
func (o *nodeOptions) addEdgeFlags(f *pflag.FlagSet) {
	o.limits.addFlags(f)
	f.StringVar(&o.listen, "listen", "127.0.0.1:8080", "gateway listen address")
	f.IntVar(&o.queueSize, "event-queue", 1<<16, "usage events buffered between requests and Kafka; beyond it events are dropped and counted")
	f.DurationVar(&o.flushEvery, "flush-interval", 200*time.Millisecond, "longest time a usage event waits before it is handed to Kafka")
	f.Int64Var(&o.spillMax, "spill-max-bytes", 1<<30, "cap of the spill log (events kept on disk while Kafka is unreachable); beyond it the newest events are dropped, counted and reported as lost usage")
	f.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM, how long to spend handing spilled events to Kafka; what is left stays on disk for the next start")
	host, _ := os.Hostname()
	f.StringVar(&o.node, "node", host, "this enforcer's name in usage events, quota signals and lost-usage records: unique and stable per enforcer (quota leases are split by it)")
}

// addCommonFlags adds the flags every role has.
func (o *nodeOptions) addCommonFlags(f *pflag.FlagSet, adminDefault string) {
	o.kafka.addFlags(f, " (required)")
	f.StringVar(&o.adminListen, "admin-listen", adminDefault, "admin API listen address (the enforcer serves only /healthz, /readyz and /metrics on it; \"\" turns it off)")
	f.StringVar(&o.dataDir, "data-dir", "./tollgate-data", "folder for this node's catalog snapshot, quota states, spill log, usage database and admin credentials")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 60*time.Second, "on SIGTERM, how long requests in flight may take to finish (then their connections are cut)")
	f.BoolVar(&o.pprof, "pprof", false, "serve Go profiles under /debug/pprof on the admin listener")
	f.Float64Var(&o.adminRate, "admin-rate-limit", 100, "admin API requests per second; beyond, 429 TooManyRequestsException")
	f.IntVar(&o.adminBurst, "admin-burst-limit", 1000, "admin API burst")
}

// kafkaEdge carries an enforcer's usage events to Kafka: the gateway
// offers each to a bounded queue (never blocking a request), a drainer
// batches them into a Sink, which produces them or, while Kafka fails,
// spills them to the data folder and replays them in order later.
type kafkaEdge struct {
	queue    *ingest.Queue
	drainer  *ingest.Drainer
	sink     *ingest.Sink
	spill    *ingest.Spill
	producer *ingest.EventProducer
	lost     *ingest.LostProducer

	drainStop, sinkStop context.CancelFunc
	drained, sinkDone   chan error
}

func openKafkaEdge(k ingest.Kafka, o nodeOptions, logger *slog.Logger) (*kafkaEdge, error) {
	queue, err := ingest.NewQueue(o.queueSize)
	if err != nil {
		return nil, fmt.Errorf("--event-queue: %w", err)
	}
	spill, err := ingest.OpenSpill(ingest.SpillConfig{Dir: filepath.Join(o.dataDir, "spill"), MaxBytes: o.spillMax,
		SegmentBytes: min(64<<20, o.spillMax), Node: o.node})
	if err != nil {
		return nil, fmt.Errorf("open spill log: %w", err)
	}
	producer, err := ingest.NewEventProducer(k)
	if err != nil {
		spill.Close()
		return nil, err
	}
	e := &kafkaEdge{queue: queue, spill: spill, producer: producer, lost: ingest.NewLostProducer(k)}
	// Short enough that the queue does not overflow while the first
	// batch of an outage waits, long enough for a healthy broker's acks.
	if e.sink, err = ingest.NewSink(ingest.SinkConfig{Producer: producer, Spill: spill, Lost: e.lost,
		ProduceTimeout: time.Second, Logger: logger, Node: o.node, QueueDropped: queue.Dropped,
		// Kafka slow rather than down: spill before the queue overflows.
		Pressure: func() bool { return queue.Len() > queue.Cap()*3/4 }}); err != nil {
		e.close()
		return nil, err
	}
	if e.drainer, err = ingest.NewDrainer(ingest.DrainerConfig{Queue: queue, Writer: e.sink, Interval: o.flushEvery, Logger: logger}); err != nil {
		e.close()
		return nil, err
	}
	if n := spill.Len(); n > 0 {
		logger.Info("spill log holds events from before; replaying them to Kafka", "events", n)
	}
	return e, nil
}

func (e *kafkaEdge) start(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	var dctx, sctx context.Context
	dctx, e.drainStop = context.WithCancel(ctx)
	sctx, e.sinkStop = context.WithCancel(ctx)
	e.drained, e.sinkDone = make(chan error, 1), make(chan error, 1)
	go func() { e.drained <- e.drainer.Run(dctx) }()
	go func() { e.sinkDone <- e.sink.Run(sctx) }()
}

// stop flushes the queue into the sink, then hands the spill log to
// Kafka for up to drainTimeout; what is left stays on disk.
func (e *kafkaEdge) stop(drainTimeout time.Duration, logger *slog.Logger) error {
	e.drainStop()
	err := <-e.drained
	e.sinkStop()
	<-e.sinkDone
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if derr := e.sink.Drain(ctx); derr != nil {
		logger.Warn("spill log not fully handed to Kafka; the rest is replayed at the next start", "err", derr)
	}
	st := e.sink.Stats()
	logger.Info("usage events handed off", "produced", st.Produced+st.Replayed, "spilledLeft", st.Pending,
		"droppedAtSpillCap", st.Dropped, "droppedAtQueue", e.queue.Dropped())
	return errors.Join(err, e.close())
}

func (e *kafkaEdge) close() error {
	var errs []error
	errs = append(errs, e.producer.Close(), e.lost.Close(), e.spill.Close())
	return errors.Join(errs...)
}

func (e *kafkaEdge) metrics() []reportapi.Metric {
	st := e.sink.Stats()
	return []reportapi.Metric{
		{Name: "tollgate_usage_events_dropped_total", Help: "Usage events dropped because the queue was full.", Type: "counter", Value: float64(e.queue.Dropped())},
		{Name: "tollgate_usage_events_queued", Help: "Usage events waiting in the queue.", Type: "gauge", Value: float64(e.queue.Len())},
		{Name: "tollgate_usage_events_produced_total", Help: "Usage events produced to Kafka directly.", Type: "counter", Value: float64(st.Produced)},
		{Name: "tollgate_usage_events_spilled_total", Help: "Usage events written to the spill log while Kafka failed.", Type: "counter", Value: float64(st.Spilled)},
		{Name: "tollgate_usage_events_replayed_total", Help: "Usage events replayed from the spill log to Kafka.", Type: "counter", Value: float64(st.Replayed)},
		{Name: "tollgate_usage_events_spill_pending", Help: "Usage events waiting in the spill log.", Type: "gauge", Value: float64(st.Pending)},
		{Name: "tollgate_usage_events_spill_dropped_total", Help: "Usage events dropped at the spill log's cap (reported as lost usage).", Type: "counter", Value: float64(st.Dropped)},
		{Name: "tollgate_kafka_produce_failures_total", Help: "Failed produce attempts (each batch retried or spilled).", Type: "counter", Value: float64(st.Failures)},
	}
}

// runNode runs the roles o names on a Kafka fleet until ctx ends.
func runNode(ctx context.Context, o nodeOptions, stdout io.Writer, logger *slog.Logger, ready chan<- serveAddrs) (err error) {
	if o.now == nil {
		o.now = time.Now
	}
	if !o.kafka.enabled() {
		return fmt.Errorf("--kafka is required (or %s)", envName("kafka"))
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
	// Background readers stop before what they write to is closed.
	var store *sqlitestore.Store
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var bgWG sync.WaitGroup
	defer func() {
		stopBG()
		bgWG.Wait()
		if store != nil {
			store.Close()
		}
	}()
	goBG := func(f func(context.Context) error) {
		bgWG.Go(func() { f(bg) })
	}

	// The gateway starts on an empty catalog; the config log publishes
	// the snapshot's, then the topic's.
	var (
		gw      *enforcer.Gateway
		edge    *kafkaEdge
		signals atomic.Pointer[ingest.SignalReader]
		publish func(*catalog.Change) error
	)
	if o.gateway {
		if edge, err = openKafkaEdge(k, o, logger); err != nil {
			return err
		}
		// However runNode ends, the edge hands its events on (or keeps
		// them in the spill log): after the servers stopped, last.
		defer func() { err = errors.Join(err, edge.shutdown(o, logger)) }()
		if gw, err = enforcer.New(enforcer.Config{Events: edge.queue, Logger: logger, Node: o.node,
			Now: func() int64 { return o.now().UnixNano() }}, nil); err != nil {
			return err
		}
		publish = func(ch *catalog.Change) error {
			if err := gw.Apply(ch); err != nil {
				return err
			}
			if sr := signals.Load(); sr != nil {
				applyGainedSignals(gw, sr, ch)
			}
			return nil
		}
	}
	cl, err := ingest.OpenConfigLog(ingest.ConfigLogConfig{Kafka: k, Snapshot: filepath.Join(o.dataDir, "catalog-snapshot.json"),
		Publish: publish, Logger: logger, Now: o.now, Repair: o.admin})
	if err != nil {
		return err
	}
	hadSnapshot := cl.Offset() > 0
	goBG(cl.Run)
	if o.gateway {
		sr, err := ingest.OpenSignalReader(ingest.SignalReaderConfig{Kafka: k, Snapshot: filepath.Join(o.dataDir, "signals-snapshot.json"),
			Apply: gw.ApplySignal, Logger: logger, Now: o.now})
		if err != nil {
			return err
		}
		signals.Store(sr)
		goBG(sr.Run)
		edge.start(ctx)
	}
	var metrics []func() []reportapi.Metric
	if edge != nil {
		metrics = append(metrics, edge.metrics)
	}
	metrics = append(metrics, func() []reportapi.Metric {
		return []reportapi.Metric{
			{Name: "tollgate_config_offset", Help: "Next offset of the config topic this node applies.", Type: "gauge", Value: float64(cl.Offset())},
			{Name: "tollgate_config_failures_total", Help: "Failed reads of the config topic and catalogs the gateway refused.", Type: "counter", Value: float64(cl.Failures())},
		}
	})

	// The admin role keeps the usage store, fed from the events topic.
	var (
		mgr    *catalog.Manager
		loader *aggregator.Aggregator
	)
	var ch *chstore.Store
	if o.admin && o.clickhouse != "" {
		// Usage from ClickHouse, where the aggregators keep it.
		if ch, err = chstore.Open(ctx, o.clickhouse); err != nil {
			return err
		}
		defer ch.Close()
		mgr = catalog.NewManagerOn(cl)
		mgr.SetAudit(auditLog(o.dataDir), o.now)
	} else if o.admin {
		if store, err = sqlitestore.Open(filepath.Join(o.dataDir, "usage.db")); err != nil {
			return fmt.Errorf("open usage store: %w", err)
		}
		// An aggregator on the node's own store (not a quota authority):
		// every partition, no consumer group.
		if loader, err = aggregator.New(aggregator.Config{Kafka: k, Store: store, AllPartitions: true,
			FlushEvents: 4096, FlushInterval: 200 * time.Millisecond, Logger: logger}); err != nil {
			return err
		}
		goBG(loader.Run)
		metrics = append(metrics, func() []reportapi.Metric {
			st := loader.Stats()
			return []reportapi.Metric{
				{Name: "tollgate_usage_events_loaded_total", Help: "Usage events loaded from Kafka into the usage store.", Type: "counter", Value: float64(st.Stored)},
				{Name: "tollgate_usage_events_duplicates_total", Help: "Usage events dropped as copies of one already loaded (producer retries).", Type: "counter", Value: float64(st.Duplicates)},
				{Name: "tollgate_usage_events_poison_total", Help: "Records of the events topic that are not usage events or not plausible (sent to the dead-letter topic).", Type: "counter", Value: float64(st.Poison)},
				{Name: "tollgate_usage_load_failures_total", Help: "Failed reads of Kafka or of the store, and writes of the store, while loading (each retried).", Type: "counter", Value: float64(st.Failures)},
			}
		})
		mgr = catalog.NewManagerOn(cl)
		mgr.SetAudit(auditLog(o.dataDir), o.now)
	}

	// Wait for the catalog where serving without it would answer wrongly:
	// an enforcer with no snapshot would refuse every key, and --config
	// must apply to the fleet's catalog, not to an empty one.
	if (o.gateway && !hadSnapshot) || o.config != "" {
		logger.Info("waiting for the catalog from Kafka", "topic", k.Topics().Config)
		select {
		case <-cl.Loaded():
		case <-ctx.Done():
			return nil
		}
	}
	if o.config != "" {
		if err := applyConfigToFleet(ctx, mgr, o, stdout, logger); err != nil {
			return err
		}
	}
	if gw != nil && store != nil {
		// serve --kafka: the gateway's quota counters start from the
		// store, as serve's do, and again once the loader has caught
		// up with what the topic held (raising never lowers a count).
		if err := gw.RestoreQuotas(ctx, store); err != nil {
			return err
		}
		goBG(func(ctx context.Context) error {
			select {
			case <-loader.CaughtUp():
				if err := gw.RestoreQuotas(ctx, store); err != nil {
					logger.Error("restore quota counters after catching up", "err", err)
				}
			case <-ctx.Done():
			}
			return nil
		})
	}

	var handlers []namedServer
	var serving atomic.Bool
	// Ready once serving on a catalog: the topic's, or, for an enforcer,
	// its snapshot's (it serves while Kafka is away; a readiness probe
	// must not take it out of rotation for that).
	loaded := func() bool {
		select {
		case <-cl.Loaded():
			return serving.Load()
		default:
			return serving.Load() && o.gateway && !o.admin && hadSnapshot
		}
	}
	if o.adminListen != "" {
		creds, err := adminCredentials(o.dataDir, stdout, o.adminListen)
		if err != nil {
			return err
		}
		cfg := reportapi.Config{Ready: loaded, Profiling: o.pprof, Credentials: creds,
			Throttle: reportapi.AdminThrottle{RateLimit: o.adminRate, BurstLimit: o.adminBurst},
			Metrics: func() []reportapi.Metric {
				var all []reportapi.Metric
				for _, m := range metrics {
					all = append(all, m()...)
				}
				return all
			}}
		switch {
		case o.admin && ch != nil:
			cfg.Catalog, cfg.Usage, cfg.Minutes = mgr, ch, ch
			cfg.Quotas = clickhouseQuotas{store: ch, cat: cl, audit: auditLog(o.dataDir), now: o.now}
		case o.admin:
			cfg.Catalog, cfg.Usage, cfg.Minutes = mgr, store, store
			cfg.Quotas = fleetQuotas{gw: gw, store: store, audit: auditLog(o.dataDir), now: o.now}
		}
		h, err := reportapi.New(cfg)
		if err != nil {
			return err
		}
		handlers = append(handlers, namedServer{name: "admin", addr: o.adminListen,
			srv: reportapi.NewServer(h), wrap: reportapi.WrapListener})
	}
	if o.gateway {
		srv := enforcer.NewServer(gw, o.limits.serverConfig())
		srv.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelDebug)
		handlers = append([]namedServer{{name: "gateway", addr: o.listen, srv: srv, wrap: enforcer.WrapListener}}, handlers...)
	}
	if o.demoUpstream != "" {
		handlers = append(handlers, namedServer{name: "demo upstream", addr: o.demoUpstream, srv: newDemoUpstream()})
	}
	lns := make([]net.Listener, len(handlers))
	for i, h := range handlers {
		if lns[i], err = net.Listen("tcp", h.addr); err != nil {
			closeAll(lns...)
			return fmt.Errorf("%s listen: %w", h.name, err)
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	var addrs serveAddrs
	for i, h := range handlers {
		ln := lns[i]
		if h.wrap != nil {
			ln = h.wrap(ln)
		}
		g.Go(func() error { return serveUntil(gctx, h.srv, ln, o.shutdownTimeout) })
		logger.Info(h.name+" listening", "addr", lns[i].Addr().String())
		switch h.name {
		case "gateway":
			addrs.gateway = lns[i].Addr().String()
		case "admin":
			addrs.admin = lns[i].Addr().String()
		}
	}
	if gw != nil {
		g.Go(func() error { return gw.Run(gctx) }) // per-minute counts of requests rejected before a key was identified
	}
	serving.Store(true)
	if ready != nil {
		ready <- addrs
	}
	go func() {
		select {
		case <-cl.Loaded(): // the whole catalog is in: its start's garbage is made
			releaseStartMemory(logger)
		case <-gctx.Done():
		}
	}()
	err = g.Wait()
	serving.Store(false)
	// The servers have stopped: every event they produced is in the
	// queue, with the counts of the minute under way, and the deferred
	// shutdown hands them on.
	if gw != nil {
		gw.FlushRejections()
	}
	return err
}

// applyGainedSignals hands the gateway the quota states of what a change
// gave it: each key put, in each of its plans, and every key of a plan
// the catalog did not have. A key or plan the gateway already held keeps
// its counters, so the cost is that of the change, not of the catalog
// (a full change, a first load or a rebuild, takes every signal).
func applyGainedSignals(gw *enforcer.Gateway, sr *ingest.SignalReader, ch *catalog.Change) {
	if ch.Delta.Full {
		for _, s := range sr.Latest() {
			gw.ApplySignal(&s)
		}
		return
	}
	apply := func(planID, keyID string) {
		if s, ok := sr.Get(planID, keyID); ok {
			gw.ApplySignal(&s)
		}
	}
	for _, id := range ch.Delta.Keys {
		if k := ch.New.Key(id); k != nil {
			for _, p := range k.UsagePlans {
				apply(p, id)
			}
		}
	}
	for _, id := range ch.Delta.Plans {
		if ch.Old.Plan(id) != nil || ch.New.Plan(id) == nil {
			continue
		}
		ch.New.PlanKeys(id, "", func(k *catalog.APIKey) bool {
			apply(id, k.ID)
			return true
		})
	}
}

type namedServer struct {
	name, addr string
	srv        *http.Server
	wrap       func(net.Listener) net.Listener
}

// shutdown stops the edge if it was started, or closes it.
func (e *kafkaEdge) shutdown(o nodeOptions, logger *slog.Logger) error {
	if e.drainStop == nil { // never started
		return e.close()
	}
	return e.stop(o.drainTimeout, logger)
}

// applyConfigToFleet applies --config to the fleet's catalog through the
// config log, unless this node applied the same file last time (so a
// restart keeps what the admin API changed since). Two nodes applying
// one file at once both succeed: the second finds the first's entities
// (a conflict on names is retried on the catalog that now holds them).
func applyConfigToFleet(ctx context.Context, mgr *catalog.Manager, o nodeOptions, stdout io.Writer, logger *slog.Logger) error {
	content, err := os.ReadFile(o.config)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	f, err := catalog.ParseFile(o.config, content)
	if err != nil {
		return err
	}
	applied := newAppliedConfig(o.dataDir, content)
	if applied.unchanged() {
		logger.Info("configuration file unchanged since this node applied it; keeping the fleet's catalog", "file", o.config)
		return nil
	}
	actx := catalog.WithActor(ctx, "config file", "apply "+o.config)
	ch, err := catalog.ApplyFileTo(actx, mgr, f, o.now, func(err error) {
		logger.Info("another node changed the catalog meanwhile; applying the file again", "err", err)
	})
	if err != nil {
		return fmt.Errorf("apply %s: %w", o.config, err)
	}
	if err := applied.record(); err != nil {
		return err
	}
	if ch == nil || !ch.Changed {
		logger.Info("configuration unchanged", "file", o.config)
		return nil
	}
	reportApplied(stdout, logger, mgr.State(), ch)
	return nil
}

// fleetQuotas carries out UpdateUsage on a fleet node. With a gateway in
// the process (serve --kafka) it adjusts that gateway's counter and
// records the change in the usage store, as serve does; the other
// enforcers learn the new state from the quota authority's signals,
// which the aggregator publishes. A reportapi without a gateway and
// without --clickhouse (clickhouseQuotas) has no counter to adjust, and
// answers 501 saying so.
type fleetQuotas struct {
	gw    *enforcer.Gateway
	store *sqlitestore.Store
	audit *catalog.AuditLog
	now   func() time.Time
}

func (q fleetQuotas) SetRemaining(ctx context.Context, planID, keyID string, remaining int64) error {
	if q.gw == nil {
		return fmt.Errorf("%w: UpdateUsage needs the quota authority: run tollgate aggregator and give this reportapi --clickhouse (or use serve --kafka, whose gateway holds the counters)", reportapi.ErrNotSupported)
	}
	return quotaAdjuster{gw: q.gw, store: q.store, audit: q.audit, now: q.now}.SetRemaining(ctx, planID, keyID, remaining)
}

// clickhouseQuotas carries out UpdateUsage on a fleet whose usage is in
// ClickHouse: it records the adjustment that makes what remains of the
// period's quota the value asked for, given what the store holds; the
// aggregator that owns the key reads it within seconds and signals the
// new state to every enforcer. Requests the aggregator has not stored yet
// (its flush interval, 500 ms) are not in that count.
type clickhouseQuotas struct {
	store *chstore.Store
	cat   interface{ State() *catalog.State }
	audit *catalog.AuditLog
	now   func() time.Time
}

func (q clickhouseQuotas) SetRemaining(ctx context.Context, planID, keyID string, remaining int64) error {
	c := q.cat.State()
	p := c.Plan(planID)
	if p == nil || c.Key(keyID) == nil || !slices.Contains(c.Key(keyID).UsagePlans, planID) {
		return fmt.Errorf("%w: %v", reportapi.ErrNotFound, enforcer.ErrNoSuchKeyPlan)
	}
	if p.Quota == nil {
		return fmt.Errorf("%w: %v", reportapi.ErrInvalid, enforcer.ErrNoQuota)
	}
	now := q.now().UnixNano()
	limit := p.Quota.LimitAt(p.Quota.Period.Index(now), p.CreatedDate)
	if remaining < 0 || remaining > limit {
		return fmt.Errorf("%w: remaining must be between 0 and the period's limit %d, got %d", reportapi.ErrInvalid, limit, remaining)
	}
	start, _ := p.Quota.Period.Bounds(now)
	rows, err := q.store.Daily(ctx, usage.Filter{FromDay: utc.Day(start), ToDay: utc.Day(now), PlanID: planID, KeyID: keyID})
	if err != nil {
		return err
	}
	var used int64
	for _, r := range rows {
		used += r.Admitted + r.Adjustment
	}
	delta := limit - remaining - used
	if delta == 0 {
		return nil
	}
	if err := q.store.AdjustQuota(context.WithoutCancel(ctx), planID, keyID, utc.Day(now), delta); err != nil {
		return err
	}
	return auditRemaining(ctx, q.audit, q.now(), planID, keyID, limit-used, remaining)
}
