package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/tollgate/tollgate/internal/benchkit"
)

// serve measures `tollgate serve` on the n-key file: first start, RSS,
// admin operations, GetApiKeys, restart and, withImport, ImportApiKeys.
func (b *bench) serve(ctx context.Context, r *sizeResult, dir, file string, withImport bool) {
	n := r.keys
	r.imported = withImport
	var ps benchkit.Procs
	defer ps.StopAll()
	data := filepath.Join(dir, "serve-data")
	start := func(extra ...string) (*benchkit.Proc, error) {
		args := append([]string{"serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", data,
			// The admin API's own throttle is not what is measured.
			"--admin-rate-limit", "1000000", "--admin-burst-limit", "1000000"}, extra...)
		return ps.Start("serve", b.cfg.tollgate, args, b.env, "", nil)
	}
	lastKey := fileKeyValue(n - 1)

	var srv *benchkit.Proc
	r.serveStart = b.timing(ctx, n, "serve first start", func(ctx context.Context) (time.Duration, error) {
		var err error
		if srv, err = start("--config", file); err != nil {
			return 0, err
		}
		return timeToServe(ctx, b.client, srv, lastKey)
	})
	if r.serveStart.err != nil {
		return
	}
	r.rssStart = b.settledMemory(ctx, n, "RSS after start", srv)

	var a *admin
	var planID string
	if err := b.step(ctx, n, "find the admin API and the plan", func(ctx context.Context) error {
		addr, err := srv.Addr(ctx, "admin")
		if err != nil {
			return err
		}
		a = newAdmin(addr, b.token, b.client)
		planID, err = a.planID(ctx)
		return err
	}); err != nil {
		r.ops[0].err = err
		return
	}
	b.adminOps(ctx, r, a, planID)
	r.rssChanged = b.memory(n, "RSS after the changes", srv)
	r.pages = b.walkKeys(ctx, n, a, n+len(r.ops[0].samples))

	if !srv.Stop() {
		b.logf(n, "serve did not stop within %v of SIGTERM; killed", benchkit.StopGrace)
	}
	r.serveRestart = b.timing(ctx, n, "serve restart", func(ctx context.Context) (time.Duration, error) {
		var err error
		if srv, err = start(); err != nil {
			return 0, err
		}
		return timeToServe(ctx, b.client, srv, lastKey)
	})
	if r.serveRestart.err != nil {
		return
	}
	r.rssRestart = b.settledMemory(ctx, n, "RSS after the restart", srv)
	if !withImport {
		return
	}
	csv := importCSV(b.cfg.importRows, planID)
	r.importKeys = b.timing(ctx, n, fmt.Sprintf("ImportApiKeys of %d rows (%d bytes)", b.cfg.importRows, len(csv)), func(ctx context.Context) (time.Duration, error) {
		addr, err := srv.Addr(ctx, "admin")
		if err != nil {
			return 0, err
		}
		a := newAdmin(addr, b.token, b.client)
		began := time.Now()
		got, err := a.importKeys(ctx, csv)
		d := time.Since(began)
		if err == nil && got != b.cfg.importRows {
			err = fmt.Errorf("imported %d keys of %d", got, b.cfg.importRows)
		}
		return d, err
	})
}

// adminOps times create-api-key, then create-usage-plan-key and
// update-api-key (disable) on each key created.
func (b *bench) adminOps(ctx context.Context, r *sizeResult, a *admin, planID string) {
	n, want := r.keys, b.cfg.ops
	var ids []string
	r.ops[0] = b.repeat(ctx, n, adminOps[0], want, func(ctx context.Context, i int) error {
		id, err := a.createKey(ctx, fmt.Sprintf("sb-new-%06d", i), fmt.Sprintf("scalebench-new-key-%010d", i))
		if err == nil {
			ids = append(ids, id)
		}
		return err
	})
	r.changes = len(ids)
	if len(ids) == 0 {
		return
	}
	r.ops[1] = b.repeat(ctx, n, adminOps[1], len(ids), func(ctx context.Context, i int) error {
		err := a.addToPlan(ctx, planID, ids[i])
		if err == nil {
			r.changes++
		}
		return err
	})
	r.ops[2] = b.repeat(ctx, n, adminOps[2], len(ids), func(ctx context.Context, i int) error {
		err := a.disable(ctx, ids[i])
		if err == nil {
			r.changes++
		}
		return err
	})
	for i := range r.ops {
		r.ops[i].want = want
	}
}

// walkKeys times every page of GetApiKeys (limit 500), first to last, and
// checks that they held at least the keys the catalog has.
func (b *bench) walkKeys(ctx context.Context, n int, a *admin, atLeast int) latencies {
	var l latencies
	listed := 0
	l.err = b.step(ctx, n, "GetApiKeys pages", func(ctx context.Context) error {
		position := ""
		for {
			began := time.Now()
			got, next, err := a.keysPage(ctx, position)
			if err != nil {
				return err
			}
			l.samples = append(l.samples, time.Since(began))
			listed += got
			if next == "" {
				break
			}
			position = next
		}
		if listed < atLeast {
			return fmt.Errorf("GetApiKeys listed %d keys, want at least %d", listed, atLeast)
		}
		return nil
	})
	l.want = len(l.samples)
	if l.err == nil {
		b.logf(n, "GetApiKeys: %d pages, %d keys, slowest %s", len(l.samples), listed, dur(l.quantile(1)))
	}
	return l
}

// settledMemory is memory once p has released its start's memory
// (bounded by the step timeout).
func (b *bench) settledMemory(ctx context.Context, n int, what string, p *benchkit.Proc) memory {
	// serve and the enforcer log this once serving, having handed the
	// memory of their start back to the OS: RSS is measured after that.
	released := func(ctx context.Context) error { return p.Logged(ctx, "start memory released") }
	if err := b.step(ctx, n, what+": wait for the start's memory to be released", released); err != nil {
		return memory{err: err}
	}
	return b.memory(n, what, p)
}

// memory reads p's RSS.
func (b *bench) memory(n int, what string, p *benchkit.Proc) memory {
	if err := p.Exited(); err != nil {
		return memory{err: err}
	}
	rss, err := p.RSS()
	if err != nil {
		b.logf(n, "%s: %v", what, err)
		return memory{err: err}
	}
	b.logf(n, "%s: %s", what, mib(rss))
	return memory{rss: rss}
}
