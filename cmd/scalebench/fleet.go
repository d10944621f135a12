package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/tollgate/tollgate/internal/benchkit"
)

// enforcers is how many enforcers the fleet runs.
const enforcers = 2

// fleet measures a fleet on the n-key file: a Kafka-protocol broker in
// this process, `reportapi --config` writing the file to the config log,
// enforcers starting from that log and from their snapshots, and the time
// admin changes take to reach them.
func (b *bench) fleet(ctx context.Context, r *sizeResult, dir, file string) {
	n := r.keys
	var cluster *kfake.Cluster
	var kafka string
	if err := b.step(ctx, n, "Kafka broker and migrate kafka", func(ctx context.Context) (err error) {
		cluster, kafka, err = benchkit.StartBroker(ctx, b.cfg.tollgate, 4)
		return err
	}); err != nil {
		r.fleetLoad.err = err
		return
	}
	defer cluster.Close()
	var ps benchkit.Procs
	defer ps.StopAll() // before the broker closes

	var a *admin
	r.fleetLoad = b.timing(ctx, n, "reportapi --config", func(ctx context.Context) (time.Duration, error) {
		p, err := ps.Start("reportapi", b.cfg.tollgate, []string{"reportapi", "--kafka", kafka, "--config", file,
			"--admin-listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "fleet-admin"),
			"--admin-rate-limit", "1000000", "--admin-burst-limit", "1000000"}, b.env, "", nil)
		if err != nil {
			return 0, err
		}
		addr, err := p.Addr(ctx, "admin")
		if err != nil {
			return 0, err
		}
		a = newAdmin(addr, b.token, b.client)
		if err := benchkit.WaitHealthy(ctx, b.client, addr, 10*time.Millisecond, p); err != nil {
			return 0, err
		}
		return time.Since(p.Started()), nil
	})
	if r.fleetLoad.err != nil {
		return
	}

	lastKey := fileKeyValue(n - 1)
	enforcer := func(ctx context.Context, name string) (*benchkit.Proc, time.Duration, error) {
		p, err := ps.Start(name, b.cfg.tollgate, []string{"enforcer", "--kafka", kafka, "--listen", "127.0.0.1:0",
			"--data-dir", filepath.Join(dir, name), "--node", name}, b.env, "", nil)
		if err != nil {
			return nil, 0, err
		}
		d, err := timeToServe(ctx, b.client, p, lastKey)
		return p, d, err
	}
	gws := make([]*benchkit.Proc, enforcers)
	r.enforcerStart = b.timing(ctx, n, "enforcer first start", func(ctx context.Context) (d time.Duration, err error) {
		gws[0], d, err = enforcer(ctx, "enforcer1")
		return d, err
	})
	if r.enforcerStart.err != nil {
		return
	}
	r.rssEnforcer = b.settledMemory(ctx, n, "enforcer RSS after its first start", gws[0])
	var others error // the other enforcers are needed for the propagation only
	for i := 1; i < enforcers && others == nil; i++ {
		name := fmt.Sprintf("enforcer%d", i+1)
		others = b.step(ctx, n, name+" first start", func(ctx context.Context) (err error) {
			gws[i], _, err = enforcer(ctx, name)
			return err
		})
	}

	if !gws[0].Stop() {
		b.logf(n, "enforcer1 did not stop within %v of SIGTERM; killed", benchkit.StopGrace)
	}
	// A restart without the snapshot would be a first start again.
	if _, err := os.Stat(filepath.Join(dir, "enforcer1", "catalog-snapshot.json")); err != nil {
		r.enforcerRestart.err = fmt.Errorf("no catalog snapshot after the enforcer stopped: %w", err)
		return
	}
	r.enforcerRestart = b.timing(ctx, n, "enforcer restart from its snapshot", func(ctx context.Context) (d time.Duration, err error) {
		gws[0], d, err = enforcer(ctx, "enforcer1")
		return d, err
	})
	switch {
	case others != nil:
		r.propagation.err = others
	case r.enforcerRestart.err == nil:
		r.propagation = b.propagation(ctx, n, a, gws)
	}
}

// propagation creates --fleet-changes keys, each with create-api-key and
// then create-usage-plan-key, and times from the answer to the second
// until every enforcer admits the new key (polled every millisecond).
func (b *bench) propagation(ctx context.Context, n int, a *admin, gws []*benchkit.Proc) latencies {
	l := latencies{want: b.cfg.fleetChanges}
	l.err = b.step(ctx, n, "changes to every enforcer", func(ctx context.Context) error {
		planID, err := a.planID(ctx)
		if err != nil {
			return err
		}
		addrs := make([]string, len(gws))
		for i, p := range gws {
			if addrs[i], err = p.Addr(ctx, "gateway"); err != nil {
				return err
			}
		}
		for i := range b.cfg.fleetChanges {
			value := fmt.Sprintf("scalebench-fleet-key-%010d", i)
			id, err := a.createKey(ctx, fmt.Sprintf("sb-fleet-%06d", i), value)
			if err != nil {
				return err
			}
			if err := a.addToPlan(ctx, planID, id); err != nil {
				return err
			}
			answered := time.Now()
			lags := make([]time.Duration, len(addrs))
			errs := make([]error, len(addrs))
			var wg sync.WaitGroup
			for j, addr := range addrs {
				wg.Go(func() {
					at, err := waitAdmitted(ctx, b.client, addr, value, time.Millisecond, gws[j])
					lags[j], errs[j] = at.Sub(answered), err
				})
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					return err
				}
			}
			l.samples = append(l.samples, slices.Max(lags))
		}
		return nil
	})
	if l.err == nil {
		b.logf(n, "changes to every enforcer: p50 %s, p99 %s over %d", dur(l.quantile(0.5)), dur(l.quantile(0.99)), len(l.samples))
	}
	return l
}
