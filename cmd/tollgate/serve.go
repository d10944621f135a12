package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/catalog/catalogdb"
	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/ingest"
	"github.com/tollgate/tollgate/reportapi"
	"github.com/tollgate/tollgate/usage/sqlitestore"
)

type serveOptions struct {
	config       string
	listen       string
	adminListen  string
	dataDir      string
	demoUpstream string
	queueSize    int
	flushEvery   time.Duration
	pprof        bool
	// shutdownTimeout bounds how long requests in flight may finish.
	shutdownTimeout time.Duration
	adminRate       float64
	adminBurst      int
	// now replaces the clock in tests; nil means time.Now.
	now func() time.Time
	// recreateMissing starts on a data folder that checkDataDir finds
	// inconsistent, making the missing state anew.
	recreateMissing bool
	// node holds the fleet settings used with --kafka.
	node nodeOptions
}

func newServeCmd() *cobra.Command {
	o := serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the whole pipeline in one process: gateway, metering, admin API",
		Long: `Run the gateway, the usage metering and the admin API in one process,
on embedded storage under --data-dir (catalog.db and usage.db).

--config applies a declarative file to the catalog at start; an invalid
file stops the start and changes nothing.

Unless GOGC is set in the environment, serve lets about 256 MB of
garbage build up between collections: GOGC=400 with a small catalog
(the proxy allocates per request, and fewer collections buy throughput,
see BENCHMARKS.md), less as the catalog grows, so that a million keys
do not cost four times their memory.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			go tuneGC(cmd.Context(), 10*time.Second)
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			if o.node.kafka.enabled() {
				return runNode(cmd.Context(), o.fleet(), cmd.OutOrStdout(), logger, nil)
			}
			return runServe(cmd.Context(), o, cmd.OutOrStdout(), logger, nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "declarative configuration file (YAML) to apply at start")
	f.StringVar(&o.listen, "listen", "127.0.0.1:8080", "gateway listen address")
	f.StringVar(&o.adminListen, "admin-listen", "127.0.0.1:8081", "admin API listen address")
	f.StringVar(&o.dataDir, "data-dir", "./tollgate-data", "folder for the catalog and usage database")
	f.StringVar(&o.demoUpstream, "demo-upstream", "", "also run the built-in demo upstream on this address (e.g. 127.0.0.1:9080)")
	f.IntVar(&o.queueSize, "event-queue", 1<<16, "usage events buffered between requests and the store; beyond it events are dropped and counted")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 60*time.Second, "on SIGTERM, how long requests in flight may take to finish (then their connections are cut)")
	f.Float64Var(&o.adminRate, "admin-rate-limit", 100, "admin API requests per second; beyond, 429 TooManyRequestsException")
	f.IntVar(&o.adminBurst, "admin-burst-limit", 1000, "admin API burst")
	f.BoolVar(&o.pprof, "pprof", false, "serve Go profiles under /debug/pprof on the admin listener")
	f.BoolVar(&o.recreateMissing, "recreate-missing", false, "start on a data folder whose catalog.db or usage.db is missing, making it anew (serve refuses such a folder otherwise, and says what is lost)")
	f.DurationVar(&o.flushEvery, "flush-interval", 200*time.Millisecond, "longest time a usage event waits before it is written")
	o.node.limits.addFlags(f)
	o.node.kafka.addFlags(f, "; with it, serve runs every role of a fleet in one process on Kafka (catalog, events, quota states), the usage store staying embedded")
	f.Int64Var(&o.node.spillMax, "spill-max-bytes", 1<<30, "with --kafka: cap of the spill log (see tollgate enforcer)")
	f.DurationVar(&o.node.drainTimeout, "drain-timeout", 30*time.Second, "with --kafka: on SIGTERM, how long to spend handing spilled events to Kafka")
	host, _ := os.Hostname()
	f.StringVar(&o.node.node, "node", host, "with --kafka: this enforcer's name in usage events, quota signals and lost-usage records")
	return cmd
}

// fleet returns the options of serve --kafka: every role in one process.
func (o serveOptions) fleet() nodeOptions {
	n := o.node
	n.gateway, n.admin = true, true
	n.config, n.listen, n.adminListen, n.dataDir, n.demoUpstream = o.config, o.listen, o.adminListen, o.dataDir, o.demoUpstream
	n.queueSize, n.flushEvery, n.pprof, n.shutdownTimeout = o.queueSize, o.flushEvery, o.pprof, o.shutdownTimeout
	n.adminRate, n.adminBurst, n.now = o.adminRate, o.adminBurst, o.now
	return n
}

// ready, when not nil, receives the gateway and admin addresses once both
// listen (tests use it).
type serveAddrs struct{ gateway, admin string }

func runServe(ctx context.Context, o serveOptions, stdout io.Writer, logger *slog.Logger, ready chan<- serveAddrs) error {
	if o.now == nil {
		o.now = time.Now
	}
	lock, err := openDataDir(o.dataDir)
	if err != nil {
		return err
	}
	defer lock.Release()
	// The usage store opens (and is created) before the catalog is
	// written: a first start cut short between the two leaves an empty
	// store and no catalog, which checkDataDir accepts, never a catalog
	// without its store.
	usagePath := filepath.Join(o.dataDir, usageFile)
	_, statErr := os.Stat(usagePath)
	usageExisted := statErr == nil
	store, err := sqlitestore.Open(usagePath)
	if errors.Is(err, sqlitestore.ErrCorrupt) {
		return fmt.Errorf("%w\nRestore %s from a backup; or move it aside and start with --recreate-missing to begin an empty usage store (every quota counter restarts at 0)", err, usagePath)
	}
	if err != nil {
		return dataDirError(o.dataDir, "open usage store", err)
	}
	defer store.Close()
	if err := checkDataDir(ctx, o.dataDir, usageExisted, store, o.recreateMissing); err != nil {
		return err
	}
	cat, catDB, err := loadCatalog(ctx, o, stdout, logger)
	if err != nil {
		return err
	}
	defer catDB.Close()

	queue, err := ingest.NewQueue(o.queueSize)
	if err != nil {
		return fmt.Errorf("event queue: %w", err)
	}
	drainer, err := ingest.NewDrainer(ingest.DrainerConfig{
		Queue: queue, Writer: ingest.WriterFunc(store.InsertEvents), Interval: o.flushEvery, Logger: logger,
	})
	if err != nil {
		return err
	}
	gw, err := enforcer.New(enforcer.Config{Events: queue, Logger: logger, Now: func() int64 { return o.now().UnixNano() }}, nil)
	if err != nil {
		return err
	}
	if err := gw.Load(cat); err != nil {
		return err
	}
	if err := gw.RestoreQuotas(ctx, store); err != nil {
		return err
	}
	retuneGC() // the catalog is loaded: the collector's setting follows it
	// From here on every catalog change (the admin API's) is validated,
	// stored and handed to the gateway in one step.
	cats, err := catalog.NewManager(cat, catDB, gw.Apply)
	if err != nil {
		return err
	}
	cats.SetAudit(auditLog(o.dataDir), o.now)

	creds, err := adminCredentials(o.dataDir, stdout, o.adminListen)
	if err != nil {
		return err
	}
	var serving atomic.Bool
	admin, err := reportapi.New(reportapi.Config{Ready: serving.Load, Health: drainer.Health, Profiling: o.pprof, Credentials: creds, Catalog: cats, Usage: store, Quotas: quotaAdjuster{gw: gw, store: store, audit: auditLog(o.dataDir), now: o.now}, Minutes: store,
		Throttle: reportapi.AdminThrottle{RateLimit: o.adminRate, BurstLimit: o.adminBurst},
		Metrics: func() []reportapi.Metric {
			return []reportapi.Metric{
				{Name: "tollgate_usage_events_written_total", Help: "Usage events written to the store.", Type: "counter", Value: float64(drainer.Written())},
				{Name: "tollgate_usage_events_dropped_total", Help: "Usage events dropped because the queue was full.", Type: "counter", Value: float64(queue.Dropped())},
				{Name: "tollgate_usage_events_queued", Help: "Usage events waiting to be written.", Type: "gauge", Value: float64(queue.Len())},
				{Name: "tollgate_usage_write_failures_total", Help: "Failed batch writes (each retried).", Type: "counter", Value: float64(drainer.Failures())},
			}
		}})
	if err != nil {
		return err
	}
	var demoLn net.Listener
	if o.demoUpstream != "" {
		if demoLn, err = net.Listen("tcp", o.demoUpstream); err != nil {
			return fmt.Errorf("demo upstream listen: %w", err)
		}
	}
	gwLn, err := net.Listen("tcp", o.listen)
	if err != nil {
		closeAll(demoLn)
		return fmt.Errorf("gateway listen: %w", err)
	}
	adLn, err := net.Listen("tcp", o.adminListen)
	if err != nil {
		closeAll(demoLn, gwLn)
		return fmt.Errorf("admin listen: %w", err)
	}
	gwSrv := enforcer.NewServer(gw, o.node.limits.serverConfig())
	gwSrv.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelDebug)
	adSrv := reportapi.NewServer(admin)

	// The servers stop first (finishing requests in flight), then the
	// drainer flushes every event they produced to the store.
	drainCtx, stopDrain := context.WithCancel(context.WithoutCancel(ctx))
	defer stopDrain()
	drained := make(chan error, 1)
	go func() { drained <- drainer.Run(drainCtx) }()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serveUntil(gctx, gwSrv, enforcer.WrapListener(gwLn), o.shutdownTimeout) })
	g.Go(func() error { return serveUntil(gctx, adSrv, reportapi.WrapListener(adLn), o.shutdownTimeout) })
	g.Go(func() error { return gw.Run(gctx) }) // per-minute counts of requests rejected before a key was identified
	if demoLn != nil {
		logger.Info("demo upstream listening", "addr", demoLn.Addr().String())
		g.Go(func() error { return serveUntil(gctx, newDemoUpstream(), demoLn, o.shutdownTimeout) })
	}
	serving.Store(true)
	logger.Info("gateway listening", "addr", gwLn.Addr().String())
	logger.Info("admin listening", "addr", adLn.Addr().String())
	if ready != nil {
		ready <- serveAddrs{gateway: gwLn.Addr().String(), admin: adLn.Addr().String()}
	}
	go releaseStartMemory(logger)
	err = g.Wait()
	serving.Store(false)
	gw.FlushRejections() // the minute under way, before the last drain
	stopDrain()
	if derr := <-drained; derr != nil {
		err = errors.Join(err, derr)
	}
	logger.Info("stopped", "eventsWritten", drainer.Written(), "eventsDropped", queue.Dropped(), "eventsLeft", queue.Len())
	return err
}

func closeAll(ls ...net.Listener) {
	for _, l := range ls {
		if l != nil {
			l.Close()
		}
	}
}

// serveUntil serves until ctx ends, then lets requests in flight finish
// for up to timeout before it cuts the connections that remain.
func serveUntil(ctx context.Context, srv *http.Server, ln net.Listener, timeout time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		return fmt.Errorf("shut down %s: %w", ln.Addr(), err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// loadCatalog opens the catalog database, reads the stored catalog
// (importing a catalog.json of an earlier version once), and applies the
// config file to it.
func loadCatalog(ctx context.Context, o serveOptions, stdout io.Writer, logger *slog.Logger) (*catalog.State, *catalogdb.Store, error) {
	path := filepath.Join(o.dataDir, catalogFile)
	stored := hasFile(o.dataDir, catalogFile) || hasFile(o.dataDir, catalogFile+"-wal")
	db, err := catalogdb.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%w\nRestore %s from a backup, or move it aside and start with --config and --recreate-missing to rebuild it", err, path)
	}
	cur, err := readCatalog(ctx, db, o.dataDir, logger)
	if err == nil {
		stored = stored || cur.NumKeys() > 0 || cur.NumPlans() > 0
		cur, err = applyConfig(o, db, cur, stored, stdout, logger)
	}
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return cur, db, nil
}

// readCatalog loads the catalog database. An empty one beside the
// catalog.json of an earlier version imports it (in one transaction) and
// renames it catalog.json.imported.
func readCatalog(ctx context.Context, db *catalogdb.Store, dir string, logger *slog.Logger) (*catalog.State, error) {
	empty, err := db.Empty(ctx)
	if err != nil {
		return nil, err
	}
	legacy := filepath.Join(dir, legacyCatalogFile)
	if empty && hasFile(dir, legacyCatalogFile) {
		c, err := catalog.FileStore{Path: legacy}.Load()
		if err != nil {
			return nil, fmt.Errorf("%w\nRestore %s from a backup, or move it aside and start with --config and --recreate-missing to rebuild it", err, legacy)
		}
		s := catalog.StateOf(c)
		if err := db.Save(&catalog.Change{Old: catalog.NewState(), New: s, Delta: catalog.Delta{Full: true}}); err != nil {
			return nil, err
		}
		if err := os.Rename(legacy, legacy+".imported"); err != nil {
			return nil, fmt.Errorf("import %s: %w", legacy, err)
		}
		logger.Info("catalog imported into the catalog database", "from", legacy, "to", filepath.Join(dir, catalogFile), "keys", s.NumKeys())
		return s, nil
	}
	return db.Load(ctx)
}

// applyConfig applies --config to cur, storing the change in one
// transaction.
func applyConfig(o serveOptions, db *catalogdb.Store, cur *catalog.State, stored bool, stdout io.Writer, logger *slog.Logger) (*catalog.State, error) {
	if o.config == "" {
		return cur, nil
	}
	content, err := os.ReadFile(o.config)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	f, err := catalog.ParseFile(o.config, content)
	if err != nil {
		return nil, err
	}
	applied := newAppliedConfig(o.dataDir, content)
	// Without a stored catalog the record of the last file proves nothing
	// (checkDataDir let the start go on, so the catalog is to be rebuilt).
	if stored && applied.unchanged() {
		logger.Info("configuration file unchanged since it was applied; keeping the stored catalog", "file", o.config)
		return cur, nil
	}
	tx := cur.Begin()
	ch, err := catalog.ApplyFile(tx, f, o.now())
	if err != nil {
		return nil, err
	}
	if !ch.Changed {
		logger.Info("configuration unchanged", "file", o.config)
		return cur, applied.record()
	}
	change := &catalog.Change{Old: cur, New: tx.State, Delta: tx.Delta()}
	// Audited before it takes effect: the catalog database commits once
	// the audit log holds the change (both are written at once).
	at := o.now()
	if err := db.SaveWhile(change, func() error {
		return auditLog(o.dataDir).AppendChange(change, at, "config file", "apply "+o.config)
	}); err != nil {
		return nil, err
	}
	if err := applied.record(); err != nil {
		return nil, err
	}
	reportApplied(stdout, logger, tx.State, ch)
	return tx.State, nil
}

// quotaAdjuster carries out UpdateUsage: the gateway's counter changes at
// once, the change is recorded in the store so that a restart restores
// it, and it is audited. If the store refuses, the gateway's counter is
// put back: the change is made whole or not at all.
type quotaAdjuster struct {
	gw    *enforcer.Gateway
	store *sqlitestore.Store
	audit *catalog.AuditLog
	now   func() time.Time
}

func (q quotaAdjuster) SetRemaining(ctx context.Context, planID, keyID string, remaining int64) error {
	delta, day, err := q.gw.SetRemaining(planID, keyID, remaining)
	switch {
	case errors.Is(err, enforcer.ErrNoSuchKeyPlan):
		return fmt.Errorf("%w: %v", reportapi.ErrNotFound, err)
	case err != nil:
		return fmt.Errorf("%w: %v", reportapi.ErrInvalid, err)
	}
	// The client going away must not leave the gateway and store apart.
	ctx = context.WithoutCancel(ctx)
	undo := func() { q.gw.SetRemaining(planID, keyID, remaining+delta) }
	if err := q.store.AdjustQuota(ctx, planID, keyID, day, delta); err != nil {
		undo()
		return err
	}
	if err := auditRemaining(ctx, q.audit, q.now(), planID, keyID, remaining+delta, remaining); err != nil {
		q.store.AdjustQuota(ctx, planID, keyID, day, -delta)
		undo()
		return err
	}
	return nil
}

// auditRemaining records an UpdateUsage in the audit log: what remained
// of the key's quota before and after.
func auditRemaining(ctx context.Context, audit *catalog.AuditLog, at time.Time, planID, keyID string, before, after int64) error {
	actor, action := catalog.ActorOf(ctx)
	old, _ := json.Marshal(map[string]int64{"remaining": before})
	next, _ := json.Marshal(map[string]int64{"remaining": after})
	return audit.Append([]catalog.AuditEntry{{Time: at, Actor: actor, Action: action, Kind: "usage",
		ID: planID + "/" + keyID, Old: old, New: next}})
}

// auditLog is the data folder's log of catalog changes: one AuditLog per
// process, whichever part of it writes (the catalog, UpdateUsage, a
// configuration file).
func auditLog(dataDir string) *catalog.AuditLog {
	return catalog.AuditLogAt(filepath.Join(dataDir, "audit.log"))
}
