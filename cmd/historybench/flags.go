package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/benchkit"
	"github.com/tollgate/tollgate/internal/history"
	"github.com/tollgate/tollgate/usage/chstore"
)

// config is what the benchmark was asked to do.
type config struct {
	tollgate string // absolute path of the built binary
	server   string // ClickHouse DSN of the server (its database is ignored)
	database string // the benchmark's database, dropped and made anew
	out      string // also write the tables there

	// The history: --keys keys × --days days from --start at --rate
	// requests per key per hour, --seed.
	keys       int
	days       int
	rate       float64
	start      time.Time
	seed       uint64
	partitions int // of the events topic

	reuse         bool
	runs          int // warm runs of each query
	retentionDays float64
	dayTimeout    time.Duration
	mergeTimeout  time.Duration
	queryTimeout  time.Duration
	dropPageCache bool
	workDir       string
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("historybench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.tollgate, "tollgate", "bin/tollgate", "path of the built tollgate binary")
	fs.StringVar(&cfg.server, "clickhouse", "clickhouse://127.0.0.1:9000", "ClickHouse server, native protocol (the database comes from --database)")
	fs.StringVar(&cfg.database, "database", "tollgate_history", "database of the benchmark: dropped and created anew unless --reuse finds it loaded")
	fs.StringVar(&cfg.out, "out", "", "also write the tables to this markdown file")
	fs.IntVar(&cfg.keys, "keys", 10000, "API keys of the history")
	fs.IntVar(&cfg.days, "days", 31, "days of history")
	fs.Float64Var(&cfg.rate, "rate", 14, "requests per key per hour (× 24 a whole number, so that days written one at a time join up)")
	start := fs.String("start", "2026-10-01", "first day of the history (UTC)")
	fs.Uint64Var(&cfg.seed, "seed", 1, "seed of the history (loadgen history --seed)")
	fs.IntVar(&cfg.partitions, "partitions", 12, "partitions of the events topic (migrate kafka --partitions)")
	fs.BoolVar(&cfg.reuse, "reuse", false, "skip the load when the database already holds a history loaded with the same flags")
	fs.IntVar(&cfg.runs, "runs", 5, "warm runs of each query, after its cold run")
	fs.Float64Var(&cfg.retentionDays, "retention-days", 2, "the broker keeps this many days of the load per partition (retention.bytes of the events topic)")
	fs.DurationVar(&cfg.dayTimeout, "day-timeout", 30*time.Minute, "bound on loading and storing one day")
	fs.DurationVar(&cfg.mergeTimeout, "merge-timeout", 10*time.Minute, "bound on the wait for ClickHouse's merges after the load")
	fs.DurationVar(&cfg.queryTimeout, "query-timeout", 2*time.Minute, "bound on each query")
	fs.BoolVar(&cfg.dropPageCache, "drop-page-cache", false, "before each cold run, also drop the OS page cache (needs root; affects the whole machine)")
	fs.StringVar(&cfg.workDir, "work-dir", "", "folder for the logs, the catalog file and the data folders (default: a new temporary folder)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	errs := []error{benchkit.NoArgs(fs)} // errors.Join drops a nil
	var err error
	if cfg.start, err = time.Parse("2006-01-02", *start); err != nil {
		errs = append(errs, fmt.Errorf("--start: %q is not a date such as 2026-10-01", *start))
	}
	h := cfg.history(cfg.start, cfg.days)
	if err := h.Check(); err != nil {
		errs = append(errs, fmt.Errorf("--%w", err))
	}
	if perDay := cfg.rate * 24; perDay != math.Trunc(perDay) {
		errs = append(errs, fmt.Errorf("--rate %v: %v requests per key per day is not a whole number; days loaded one at a time would not join up", cfg.rate, perDay))
	}
	if cfg.days > 92 {
		errs = append(errs, fmt.Errorf("--days %d: /v1/usage by day reads at most 92 days", cfg.days))
	}
	if cfg.partitions < 1 || cfg.runs < 1 || cfg.retentionDays < 1.2 {
		errs = append(errs, errors.New("--partitions and --runs must be at least 1, --retention-days at least 1.2 (a day must fit)"))
	}
	if cfg.dayTimeout <= 0 || cfg.mergeTimeout < 0 || cfg.queryTimeout <= 0 {
		errs = append(errs, errors.New("--day-timeout and --query-timeout must be positive, --merge-timeout not negative"))
	}
	if !chstore.IsIdentifier(cfg.database) || strings.HasPrefix(cfg.database, "_") || cfg.database == "default" || cfg.database == "system" {
		errs = append(errs, fmt.Errorf("--database %q: a database of the benchmark's own (letters, digits, underscores; not default or system): it is dropped", cfg.database))
	}
	if _, err := cfg.dsn(); err != nil {
		errs = append(errs, err)
	}
	if cfg.tollgate, err = benchkit.Binary(cfg.tollgate); err != nil {
		errs = append(errs, fmt.Errorf("--tollgate: %w (make build makes bin/tollgate)", err))
	}
	return cfg, errors.Join(errs...)
}

// history is the history of the flags for days days from day.
func (c config) history(day time.Time, days int) history.Config {
	return history.Config{Keys: c.keys, Start: day, Days: days, Rate: c.rate, Seed: c.seed}
}

// loadFlags names the load: a database loaded with other flags is not
// reused.
func (c config) loadFlags() string {
	return fmt.Sprintf("keys=%d days=%d rate=%g start=%s seed=%d partitions=%d",
		c.keys, c.days, c.rate, c.start.Format("2006-01-02"), c.seed, c.partitions)
}

// dsn is the DSN of the benchmark's database on the server.
func (c config) dsn() (string, error) {
	u, err := url.Parse(c.server)
	if err != nil || (u.Scheme != "clickhouse" && u.Scheme != "tcp") || u.Host == "" {
		return "", fmt.Errorf("--clickhouse %q: not a native-protocol DSN such as clickhouse://127.0.0.1:9000", c.server)
	}
	u.Path = "/" + c.database
	return u.String(), nil
}

// serverDSN is the DSN of the server's default database, from which the
// benchmark's database is dropped and created.
func (c config) serverDSN() string {
	u, _ := url.Parse(c.server)
	u.Path = "/default"
	return u.String()
}
