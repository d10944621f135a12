package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/console"
	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/ingest"
	"github.com/tollgate/tollgate/internal/logs"
	"github.com/tollgate/tollgate/reportapi"
)

// serveAddrs are the addresses run listens on; ready, when not nil,
// receives them once every listener is open (tests use it).
type serveAddrs struct{ gateway, admin string }

// run runs the roles o names until ctx ends. It assembles a process from
// the packages, in one way for every command: the parts are opened
// (embedded: openEmbedded; a fleet: openFleet), then served (serve), then
// closed in the reverse order (close).
func run(ctx context.Context, o options, stdout io.Writer, logger *slog.Logger, ready chan<- serveAddrs) (err error) {
	if o.now == nil {
		o.now = time.Now
	}
	if o.embedded() && !(o.gateway && o.admin) {
		return fmt.Errorf("--kafka is required (or %s)", envName("kafka"))
	}
	if !o.embedded() { // refused before the data folder is made
		if _, err := o.kafka.config(); err != nil {
			return err
		}
	}
	lock, err := openDataDir(o.dataDir)
	if err != nil {
		return err
	}
	p := &process{o: o, stdout: stdout, logger: logger, log: logs.For(logger, "process"), reg: newRegistry()}
	p.admin.Metrics, p.admin.Registerer = p.reg, p.reg
	p.onClose(func() error { lock.Release(); return nil })
	defer func() { err = errors.Join(err, p.close()) }()
	p.bgCtx, p.stopBG = context.WithCancel(context.WithoutCancel(ctx))
	if o.embedded() {
		err = p.openEmbedded(ctx)
	} else {
		err = p.openFleet(ctx)
	}
	if err != nil || ctx.Err() != nil {
		return err
	}
	return p.serve(ctx, ready)
}

// runE is the RunE of serve, enforcer and reportapi: run with the
// command's streams, logging in slog's text format to stderr. A process
// with a gateway lets the collector's setting follow its heap (tuneGC).
func runE(o *options) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		if o.gateway {
			go tuneGC(cmd.Context(), 10*time.Second)
		}
		logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
		return run(cmd.Context(), *o, cmd.OutOrStdout(), logger, nil)
	}
}

// process is what run assembles: the parts of each role and what closes
// them.
type process struct {
	o      options
	stdout io.Writer
	logger *slog.Logger // handed to the packages, which name themselves
	log    *slog.Logger // the process's own lines: component=process

	gw   *enforcer.Gateway // the gateway role's; nil without it
	edge *ingest.Edge      // its events' way to the store or Kafka
	// admin is the admin API's configuration: the catalog, the usage
	// store and UpdateUsage of the admin role, the health, readiness and
	// metrics of every role.
	admin reportapi.Config
	// reg is the process's metrics registry, which every part registers
	// on and the admin listener serves.
	reg *prometheus.Registry
	// loaded is closed once the catalog is in (at once when embedded).
	loaded <-chan struct{}

	// Background readers (config log, signals, usage loader) run on
	// bgCtx until close, which stops them before the stores they write
	// to close.
	bgCtx   context.Context
	stopBG  context.CancelFunc
	bg      sync.WaitGroup
	closers []func() error
}

// goBG runs f in the background until close.
func (p *process) goBG(f func(context.Context) error) { p.bg.Go(func() { f(p.bgCtx) }) }

// onClose adds f to what close does, before what was added earlier.
func (p *process) onClose(f func() error) { p.closers = append(p.closers, f) }

// close hands the edge's events on (the servers have stopped), stops
// the background readers, then closes the rest in reverse order.
func (p *process) close() error {
	var errs []error
	if p.edge != nil {
		errs = append(errs, p.edge.Close())
	}
	p.stopBG()
	p.bg.Wait()
	for i := len(p.closers) - 1; i >= 0; i-- {
		errs = append(errs, p.closers[i]())
	}
	return errors.Join(errs...)
}

// auditLog is the data folder's log of catalog changes: one AuditLog per
// process, whichever part of it writes (the catalog, UpdateUsage, a
// configuration file).
func (p *process) auditLog() *catalog.AuditLog {
	return catalog.AuditLogAt(filepath.Join(p.o.dataDir, auditFile))
}

// applyConfig applies --config to the catalog mgr holds (see
// catalog.ConfigFile): force when the catalog is being rebuilt.
func (p *process) applyConfig(ctx context.Context, mgr *catalog.Manager, force bool) error {
	if p.o.config == "" {
		return nil
	}
	cf := catalog.ConfigFile{Path: p.o.config, DataDir: p.o.dataDir, Force: force, Now: p.o.now, OnRetry: func(err error) {
		p.log.Info("another node changed the catalog meanwhile; applying the file again", "err", err)
	}}
	ch, skipped, err := cf.Apply(ctx, mgr)
	switch {
	case err != nil:
		return err
	case skipped:
		p.log.Info("configuration file unchanged since it was applied; keeping the catalog", "file", p.o.config)
	case !ch.Changed:
		p.log.Info("configuration unchanged", "file", p.o.config)
	default:
		reportApplied(p.stdout, p.log, mgr.State(), ch)
	}
	return nil
}

// namedServer is one listener of the process.
type namedServer struct {
	name, addr string
	srv        server
	wrap       func(net.Listener) net.Listener
}

// server is what serveUntil runs: an *http.Server, or the gateway's
// server on its data plane (enforcer.Server).
type server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// serve opens the listeners (gateway, admin, demo upstream) and serves
// until ctx ends; then the servers finish the requests in flight, and
// the gateway's per-minute counts of the minute under way join the
// queue that close hands on.
func (p *process) serve(ctx context.Context, ready chan<- serveAddrs) error {
	o := p.o
	var servers []namedServer
	if p.gw != nil {
		srv, err := enforcer.NewGatewayServer(p.gw, o.limits.plane, o.limits.serverConfig())
		if err != nil {
			return err
		}
		if hs := enforcer.HTTPServer(srv); hs != nil {
			hs.ErrorLog = slog.NewLogLogger(p.logger.Handler(), slog.LevelDebug)
		}
		servers = append(servers, namedServer{name: "gateway", addr: o.listen, srv: srv})
	}
	var serving atomic.Bool
	if o.adminListen != "" {
		cfg := p.admin
		cfg.Profiling, cfg.Throttle = o.pprof, reportapi.AdminThrottle{RateLimit: o.adminRate, BurstLimit: o.adminBurst}
		var err error
		if cfg.Credentials, err = adminCredentials(o.dataDir, p.stdout, o.adminListen); err != nil {
			return err
		}
		ready := cfg.Ready
		cfg.Ready = func() bool { return serving.Load() && ready() }
		if cfg.Catalog != nil && !o.noConsole {
			audit := p.auditLog()
			cfg.Console = func(c reportapi.Console) (http.Handler, error) {
				return console.New(console.Config{Token: c.Token, Call: c.Call, Audit: audit, Now: o.now, Logger: p.logger})
			}
		}
		h, err := reportapi.New(cfg)
		if err != nil {
			return err
		}
		servers = append(servers, namedServer{name: "admin", addr: o.adminListen, srv: reportapi.NewServer(h), wrap: reportapi.WrapListener})
	}
	if o.demoUpstream != "" {
		servers = append(servers, namedServer{name: "demo upstream", addr: o.demoUpstream, srv: newDemoUpstream()})
	}
	lns := make([]net.Listener, len(servers))
	for i, s := range servers {
		var err error
		if lns[i], err = net.Listen("tcp", s.addr); err != nil {
			closeAll(lns...)
			return fmt.Errorf("%s listen: %w", s.name, err)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	var addrs serveAddrs
	for i, s := range servers {
		ln := lns[i]
		if s.wrap != nil {
			ln = s.wrap(ln)
		}
		g.Go(func() error { return serveUntil(gctx, s.srv, ln, o.shutdownTimeout) })
		if s.name == "gateway" {
			p.log.Info(s.name+" listening", "addr", lns[i].Addr().String(), "data_plane", string(o.limits.plane))
		} else {
			p.log.Info(s.name+" listening", "addr", lns[i].Addr().String())
		}
		switch s.name {
		case "gateway":
			addrs.gateway = lns[i].Addr().String()
		case "admin":
			addrs.admin = lns[i].Addr().String()
		}
	}
	if p.gw != nil {
		g.Go(func() error { return p.gw.Run(gctx) }) // per-minute counts of requests rejected before a key was identified
	}
	serving.Store(true)
	if ready != nil {
		ready <- addrs
	}
	go func() {
		select {
		case <-p.loaded: // the whole catalog is in: its start's garbage is made
			releaseStartMemory(p.log)
		case <-gctx.Done():
		}
	}()
	err := g.Wait()
	serving.Store(false)
	if p.gw != nil {
		p.gw.FlushRejections()
	}
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
func serveUntil(ctx context.Context, srv server, ln net.Listener, timeout time.Duration) error {
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

// openEdge opens the gateway's event pipeline, naming the flag a refused
// queue size came from.
func openEdge(cfg ingest.EdgeConfig) (*ingest.Edge, error) {
	e, err := ingest.OpenEdge(cfg)
	if errors.Is(err, ingest.ErrQueueCapacity) {
		return nil, fmt.Errorf("--event-queue: %w", ingest.ErrQueueCapacity)
	}
	return e, err
}
