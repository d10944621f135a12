package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/tollgate/tollgate/internal/benchkit"
	"github.com/tollgate/tollgate/usage/chstore"
)

// bench is one run of the benchmark.
type bench struct {
	cfg    config
	out    io.Writer
	began  time.Time
	work   string
	dsn    string      // the benchmark's database
	server driver.Conn // the server's default database
	conn   driver.Conn // the benchmark's database
	broker *broker
	procs  *benchkit.Procs
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.out, "[%7.1fs] %s\n", time.Since(b.began).Seconds(), fmt.Sprintf(format, args...))
}

// outcome is everything the run measured, for the tables.
type outcome struct {
	header  string
	reused  *loadRecord
	load    *loadResult
	counts  []storedCounts
	merged  time.Duration
	merging uint64
	sizes   []tableSize
	results []*result
	store   []*storeRun
	problem error // what went wrong that does not stop the run
}

// run runs the benchmark; its progress and its tables go to stdout.
func run(ctx context.Context, cfg config, stdout, _ io.Writer) (err error) {
	b := &bench{cfg: cfg, out: stdout, began: time.Now(), procs: &benchkit.Procs{}}
	b.dsn, _ = cfg.dsn()
	if b.work = cfg.workDir; b.work == "" {
		if b.work, err = os.MkdirTemp("", "historybench-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(b.work, 0o755); err != nil {
		return err
	}
	o := &outcome{}
	if b.server, err = chstore.Connect(ctx, cfg.serverDSN()); err != nil {
		return err
	}
	defer b.server.Close()
	load, _ := os.ReadFile("/proc/loadavg")
	o.header = fmt.Sprintf("History benchmark of %s, %s: %d CPUs, ClickHouse %s at %s, load average %s at the start.\n"+
		"History: %s keys × %d days from %s at %g requests per key per hour (%s events), seed %d; events topic of %d partitions.\n",
		cfg.tollgate, b.began.UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), serverVersion(ctx, b.server), cfg.server,
		strings.Join(strings.Fields(string(load))[:3], " "), count(int64(cfg.keys)), cfg.days, cfg.start.Format("2006-01-02"),
		cfg.rate, count(cfg.history(cfg.start, cfg.days).Total()), cfg.seed, cfg.partitions)
	b.logf("work folder %s (logs of every process there)", b.work)

	fresh := true
	if cfg.reuse {
		rec, ok, err := readLoadRecord(ctx, b.server, cfg.database)
		switch {
		case err != nil:
			return err
		case ok && rec.flags == cfg.loadFlags():
			fresh, o.reused = false, &rec
			b.logf("--reuse: %s holds a history loaded %s with the same flags (%s events): not loaded again",
				cfg.database, rec.loaded.UTC().Format(time.RFC3339), count(int64(rec.events)))
		case ok:
			b.logf("--reuse: %s holds a history of other flags (%s); loading it anew", cfg.database, rec.flags)
		default:
			b.logf("--reuse: %s holds no complete history; loading it", cfg.database)
		}
	}

	var retention int64
	if fresh {
		if retention, err = retentionFor(cfg.history(cfg.start, 1), cfg.partitions, cfg.retentionDays); err != nil {
			return err
		}
	}
	if b.broker, err = startBroker(ctx, cfg.tollgate, cfg.partitions, retention); err != nil {
		return err
	}
	defer b.broker.close()
	defer b.procs.StopAll() // before the broker closes
	b.logf("Kafka-protocol broker (kfake) at %s, topics made by tollgate migrate kafka", b.broker.addr)

	catalogFile := filepath.Join(b.work, "history.json")
	if _, err := benchkit.Run(ctx, cfg.tollgate, "loadgen", "history", "--keys", strconv.Itoa(cfg.keys),
		"--days", strconv.Itoa(cfg.days), "--rate", strconv.FormatFloat(cfg.rate, 'g', -1, 64), "--start", cfg.start.Format("2006-01-02"),
		"--seed", strconv.FormatUint(cfg.seed, 10), "--config-out", catalogFile); err != nil {
		return err
	}

	var events int64
	if fresh {
		if err := recreateDatabase(ctx, b.server, cfg.database); err != nil {
			return err
		}
		if _, err := benchkit.Run(ctx, cfg.tollgate, "migrate", "clickhouse", "--clickhouse", b.dsn); err != nil {
			return err
		}
		b.logf("database %s created and migrated; the events topic keeps %.1f MB per partition (%g days of the load)",
			cfg.database, float64(retention)/1e6, cfg.retentionDays)
	} else {
		// A binary newer than the load may carry migrations (a new rollup
		// filled from the others): the reports are timed on its schema.
		out, err := benchkit.Run(ctx, cfg.tollgate, "migrate", "clickhouse", "--clickhouse", b.dsn)
		if err != nil {
			return err
		}
		b.logf("database %s migrated: %s", cfg.database, strings.TrimSpace(string(out)))
	}
	if b.conn, err = chstore.Connect(ctx, b.dsn); err != nil {
		return err
	}
	defer b.conn.Close()
	st, err := chstore.Open(ctx, b.dsn)
	if err != nil {
		return err
	}
	defer st.Close()

	if fresh {
		o.load, err = b.load(ctx, st, retention)
		if err != nil {
			b.printLoad(o)
			return err
		}
		b.printLoad(o)
		var expected int64
		events, expected, _ = o.load.total()
		if o.counts, err = countStored(ctx, b.conn); err != nil {
			return err
		}
		var wrong []string
		for _, c := range o.counts {
			if int64(c.requests) != expected {
				wrong = append(wrong, fmt.Sprintf("%s holds %s", c.table, count(int64(c.requests))))
			}
		}
		if len(wrong) > 0 {
			o.problem = fmt.Errorf("the tables do not hold the history's %s events: %s (not recorded as loaded: --reuse will load again)",
				count(expected), strings.Join(wrong, ", "))
			b.logf("PROBLEM: %v", o.problem)
		} else {
			b.logf("every table holds the history's %s events exactly", count(expected))
			if err := writeLoadRecord(ctx, b.conn, cfg.loadFlags(), uint64(expected)); err != nil {
				return err
			}
		}
		events = expected
	} else {
		events = int64(o.reused.events)
	}

	b.logf("waiting for ClickHouse's merges in %s to settle (at most %v)", cfg.database, cfg.mergeTimeout)
	if o.merged, o.merging, err = waitMerges(ctx, b.conn, cfg.database, cfg.mergeTimeout); err != nil {
		return err
	}
	if o.sizes, err = tableSizes(ctx, b.conn, cfg.database); err != nil {
		return err
	}
	b.logf("merges: %s", mergeNote(o))

	rapi, err := b.procs.Start("reportapi", cfg.tollgate, []string{"reportapi", "--kafka", b.broker.addr, "--clickhouse", b.dsn,
		"--config", catalogFile, "--admin-listen", "127.0.0.1:0", "--data-dir", filepath.Join(b.work, "reportapi"),
		"--admin-rate-limit", "1000000", "--admin-burst-limit", "1000000"},
		benchkit.ChildEnv("TOLLGATE_ADMIN_ACCESS_KEY_ID="+creds.AccessKeyID, "TOLLGATE_ADMIN_SECRET_ACCESS_KEY="+creds.SecretAccessKey),
		filepath.Join(b.work, "reportapi.log"), nil)
	if err != nil {
		return err
	}
	startCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	addr, err := rapi.Addr(startCtx, "admin")
	if err == nil {
		err = benchkit.WaitHealthy(startCtx, http.DefaultClient, addr, 100*time.Millisecond, rapi)
	}
	cancel()
	if err != nil {
		return fmt.Errorf("reportapi: %w", err)
	}
	b.logf("reportapi --clickhouse --config %s serves at %s, %.2f s after its start", filepath.Base(catalogFile), addr, time.Since(rapi.Started()).Seconds())

	s := b.span(events)
	o.results = b.queries(ctx, newClient(addr), b.conn, s)
	o.store = b.storeQueries(ctx, st, s)

	tables := b.tables(o)
	fmt.Fprint(stdout, "\n"+tables)
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(tables), 0o644); err != nil {
			return err
		}
	}
	for _, r := range o.results {
		if r.err != nil {
			o.problem = errors.Join(o.problem, r.err)
		}
	}
	return o.problem
}

func mergeNote(o *outcome) string {
	if o.merging > 0 {
		return fmt.Sprintf("%d still running after %s (--merge-timeout)", o.merging, dur(o.merged))
	}
	return fmt.Sprintf("settled after %s", dur(o.merged))
}
