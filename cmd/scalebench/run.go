package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/tollgate/tollgate/internal/benchkit"
)

// bench is one run of the benchmark.
type bench struct {
	cfg      config
	env      []string // the tollgate processes' environment
	token    string   // their admin bearer token
	upstream string   // URL of the upstream their gateways proxy to
	client   *http.Client
	log      io.Writer
}

// run measures every size, the baseline first, and prints the table.
func run(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	work := cfg.workDir
	if work == "" {
		dir, err := os.MkdirTemp("", "scalebench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		work = dir
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	upstream, stopUpstream, err := startUpstream()
	if err != nil {
		return err
	}
	defer stopUpstream()
	secret := make([]byte, 20)
	rand.Read(secret)
	token := hex.EncodeToString(secret)
	b := &bench{cfg: cfg, env: benchkit.ChildEnv(
		"TOLLGATE_ADMIN_ACCESS_KEY_ID=TGAKSCALEBENCH000000",
		"TOLLGATE_ADMIN_SECRET_ACCESS_KEY=scalebench-secret-"+token,
		"TOLLGATE_ADMIN_TOKEN="+token), token: token, upstream: upstream, log: stderr,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}}}
	defer b.client.CloseIdleConnections()

	began := time.Now()
	importAt := cfg.baseline
	if len(cfg.sizes) > 0 {
		importAt = cfg.sizes[0]
	}
	var results []*sizeResult
	for _, n := range append([]int{cfg.baseline}, cfg.sizes...) {
		r := b.size(ctx, filepath.Join(work, fmt.Sprintf("keys-%d", n)), n, n == importAt)
		results = append(results, r)
		if ctx.Err() != nil {
			break
		}
	}
	out := table(cfg, results, began)
	fmt.Fprint(stdout, out)
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(out), 0o644); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
	return nil
}

// size measures one catalog size in dir, removed afterwards.
func (b *bench) size(ctx context.Context, dir string, n int, withImport bool) *sizeResult {
	began := time.Now()
	r := newSizeResult(n)
	defer func() {
		r.wall = time.Since(began)
		b.logf(n, "done in %s", dur(r.wall))
	}()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.err = err
		return r
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "catalog.json")
	wctx, cancel := context.WithTimeout(ctx, b.cfg.stepTimeout)
	err := b.bounded(ctx, wctx, writeCatalogFile(wctx, file, n, b.upstream))
	cancel()
	if err != nil {
		r.err = err
		return r
	}
	b.logf(n, "wrote %s in %s", file, dur(time.Since(began)))
	b.serve(ctx, r, dir, file, withImport)
	if !b.cfg.skipFleet && ctx.Err() == nil {
		b.fleet(ctx, r, dir, file)
	}
	return r
}

// step runs f with --step-timeout and logs what it gave.
func (b *bench) step(ctx context.Context, n int, what string, f func(ctx context.Context) error) error {
	sctx, cancel := context.WithTimeout(ctx, b.cfg.stepTimeout)
	defer cancel()
	err := f(sctx)
	if err != nil {
		b.logf(n, "%s: %v", what, err)
	}
	return b.bounded(ctx, sctx, err)
}

// timing runs a step that measures one duration.
func (b *bench) timing(ctx context.Context, n int, what string, f func(ctx context.Context) (time.Duration, error)) timing {
	var t timing
	t.err = b.step(ctx, n, what, func(ctx context.Context) error {
		var err error
		t.d, err = f(ctx)
		return err
	})
	if t.err == nil {
		b.logf(n, "%s: %s", what, dur(t.d))
	}
	return t
}

// repeat runs a step that calls f want times, timing each call.
func (b *bench) repeat(ctx context.Context, n int, what string, want int, f func(ctx context.Context, i int) error) latencies {
	l := latencies{want: want}
	l.err = b.step(ctx, n, what, func(ctx context.Context) error {
		for i := range want {
			began := time.Now()
			if err := f(ctx, i); err != nil {
				return err
			}
			l.samples = append(l.samples, time.Since(began))
		}
		return nil
	})
	if l.err == nil {
		b.logf(n, "%s: p50 %s, p99 %s over %d", what, dur(l.quantile(0.5)), dur(l.quantile(0.99)), len(l.samples))
	}
	return l
}

// bounded turns the error of a step whose own context (sctx, made from
// ctx) ran out into timedOut; an interrupted run stays an interruption.
func (b *bench) bounded(ctx, sctx context.Context, err error) error {
	if err != nil && ctx.Err() == nil && errors.Is(sctx.Err(), context.DeadlineExceeded) {
		return timedOut{after: b.cfg.stepTimeout}
	}
	return err
}

func (b *bench) logf(n int, format string, args ...any) {
	fmt.Fprintf(b.log, "%s %s keys: %s\n", time.Now().Format("15:04:05"), count(n), fmt.Sprintf(format, args...))
}
