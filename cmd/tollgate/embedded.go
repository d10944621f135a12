package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/catalog/catalogdb"
	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/ingest"
	"github.com/tollgate/tollgate/notify"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
	"github.com/tollgate/tollgate/usage/sqlitestore"
)

// openEmbedded opens tollgate serve's parts on its data folder: the usage
// store (usage.db), the catalog (catalog.db) with --config applied, the
// gateway writing its events to the store through an Edge, and the admin
// API on both.
func (p *process) openEmbedded(ctx context.Context) error {
	o := p.o
	// The usage store opens (and is created) before the catalog is
	// written: a first start cut short between the two leaves an empty
	// store and no catalog, which checkDataDir accepts, never a catalog
	// without its store.
	usagePath := filepath.Join(o.dataDir, usageFile)
	_, statErr := os.Stat(usagePath)
	store, err := sqlitestore.Open(usagePath)
	if errors.Is(err, sqlitestore.ErrCorrupt) {
		return fmt.Errorf("%w\nRestore %s from a backup; or move it aside and start with --recreate-missing to begin an empty usage store (every quota counter restarts at 0)", err, usagePath)
	}
	if err != nil {
		return dataDirError(o.dataDir, "open usage store", err)
	}
	p.onClose(store.Close)
	if err := checkDataDir(ctx, o.dataDir, statErr == nil, store, o.recreateMissing); err != nil {
		return err
	}
	cat, catDB, stored, err := openCatalog(ctx, o.dataDir, p.log)
	if err != nil {
		return err
	}
	p.onClose(catDB.Close)

	// Quota notifications: the events the drainer wrote say which keys
	// moved, the gateway's counters (the keys' usage in serve) say how
	// far. The notifier is set once the gateway is; no event is written
	// before the edge starts.
	// Set once the notifier is open; read by callbacks that other
	// goroutines may run first.
	var noticing atomic.Pointer[closingNotifier]
	written := func(ctx context.Context, events []schemas.UsageEvent) error {
		if err := store.InsertEvents(ctx, events); err != nil {
			return err
		}
		notifier := noticing.Load()
		if notifier == nil {
			return nil
		}
		if err := notifier.Written(ctx, events); err != nil {
			p.log.Warn("notice quota notifications", "err", err)
		}
		return nil
	}
	if p.edge, err = openEdge(ingest.EdgeConfig{Store: ingest.WriterFunc(written),
		QueueSize: o.queueSize, FlushInterval: o.flushEvery, Logger: p.logger, Metrics: p.reg}); err != nil {
		return err
	}
	if p.gw, err = enforcer.New(enforcer.Config{Events: p.edge.Queue(), Logger: p.logger, Now: func() int64 { return o.now().UnixNano() },
		Metrics: p.reg}, nil); err != nil {
		return err
	}
	// Every catalog change (--config's, then the admin API's) is
	// validated, audited, stored and handed to the gateway in one step;
	// the gateway loads the catalog once --config is in.
	var started bool
	mgr, err := catalog.NewManager(cat, catDB, func(ch *catalog.Change) error {
		if !started {
			return nil
		}
		if err := p.gw.Apply(ch); err != nil {
			return err
		}
		notifier := noticing.Load()
		if notifier == nil {
			return nil
		}
		if err := notifier.CatalogChanged(context.Background(), ch); err != nil {
			p.log.Warn("notice disabled keys", "err", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	guard := notify.Guard{AllowPrivate: o.webhookAllowPrivate}
	notifier, err := openNotifier(o.dataDir, mgr.State, guard, p.logger, o.now, p.gw.QuotaUsage)
	if err != nil {
		return err
	}
	noticing.Store(notifier)
	p.onClose(notifier.Close)
	audit := p.auditLog()
	mgr.SetAudit(audit, o.now)
	// Without a stored catalog the record of the last file proves nothing
	// (checkDataDir let the start go on, so the catalog is to be rebuilt).
	if err := p.applyConfig(ctx, mgr, !stored); err != nil {
		return err
	}
	if err := p.gw.Load(mgr.State()); err != nil {
		return err
	}
	started = true
	if err := p.gw.RestoreQuotas(ctx, store); err != nil {
		return err
	}
	retuneGC() // the catalog is loaded: the collector's setting follows it
	p.edge.Start(ctx)
	p.goBG(notifier.Run)

	loaded := make(chan struct{})
	close(loaded)
	p.loaded = loaded
	p.admin.Ready = func() bool { return true }
	p.admin.Health = p.edge.Health
	p.admin.Catalog, p.admin.Usage, p.admin.Minutes = mgr, store, store
	p.admin.Quotas = &usage.QuotaUpdate{Catalog: mgr, Store: store, Live: p.gw, Audit: audit, Now: o.now}
	p.admin.Audit = audit
	p.admin.Deliveries, p.admin.CheckWebhookURL = notifier, guard.CheckURL
	if err := registerNotifyMetrics(p.reg, notifier); err != nil {
		return err
	}
	return nil
}

// openCatalog opens the catalog database and reads the stored catalog,
// importing the catalog.json of an earlier version once (see
// readCatalog). stored reports whether the folder held a catalog.
func openCatalog(ctx context.Context, dir string, logger *slog.Logger) (*catalog.State, *catalogdb.Store, bool, error) {
	path := filepath.Join(dir, catalogFile)
	stored := hasFile(dir, catalogFile) || hasFile(dir, catalogFile+"-wal")
	db, err := catalogdb.Open(path)
	if err != nil {
		return nil, nil, false, fmt.Errorf("%w\nRestore %s from a backup, or move it aside and start with --config and --recreate-missing to rebuild it", err, path)
	}
	cur, err := readCatalog(ctx, db, dir, logger)
	if err != nil {
		db.Close()
		return nil, nil, false, err
	}
	return cur, db, stored || cur.NumKeys() > 0 || cur.NumPlans() > 0, nil
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
