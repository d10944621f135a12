package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/benchkit"
)

// config is what the benchmark was asked to do.
type config struct {
	// sizes are the catalog sizes measured, ascending, without the
	// baseline. Default 10000, 100000, 1000000.
	sizes []int
	// baseline is the size the admin operations are compared with,
	// measured in the same run. Default 1000.
	baseline int
	// tollgate is the absolute path of the built binary. Default
	// bin/tollgate.
	tollgate string
	// out, when set, also receives the table. Default none.
	out string
	// ops is the number of calls of each admin operation per size.
	// Default 200.
	ops int
	// importRows is the number of rows of the ImportApiKeys file.
	// Default 100000.
	importRows int
	// fleetChanges is the number of changes whose propagation to the
	// enforcers is measured. Default 50.
	fleetChanges int
	// skipFleet leaves out the fleet measurements. Default false.
	skipFleet bool
	// stepTimeout bounds each step. Default 2m.
	stepTimeout time.Duration
	// workDir is where the sizes' files and data folders go (each removed
	// when its size ends). Default: a new folder under the system's
	// temporary folder.
	workDir string
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("scalebench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sizes := fs.String("sizes", "10000,100000,1000000", "comma-separated catalog sizes (numbers of API keys)")
	fs.IntVar(&cfg.baseline, "baseline", 1000, "catalog size the admin operations are compared with, measured in the same run")
	fs.StringVar(&cfg.tollgate, "tollgate", "bin/tollgate", "path of the built tollgate binary")
	fs.StringVar(&cfg.out, "out", "", "also write the table to this markdown file")
	fs.IntVar(&cfg.ops, "ops", 200, "calls of each admin operation per size")
	fs.IntVar(&cfg.importRows, "import-rows", 100000, "rows of the ImportApiKeys file (measured once, at the smallest size)")
	fs.IntVar(&cfg.fleetChanges, "fleet-changes", 50, "changes whose time to reach every enforcer is measured")
	fs.BoolVar(&cfg.skipFleet, "skip-fleet", false, "leave out the fleet (Kafka) measurements")
	fs.DurationVar(&cfg.stepTimeout, "step-timeout", 2*time.Minute, "bound on each step (a start, a series of admin calls, ...)")
	fs.StringVar(&cfg.workDir, "work-dir", "", "folder for the generated files and data folders (default: a new temporary folder)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	errs := []error{benchkit.NoArgs(fs)} // errors.Join drops a nil
	var err error
	if cfg.sizes, err = parseSizes(*sizes); err != nil {
		errs = append(errs, fmt.Errorf("--sizes: %w", err))
	}
	cfg.sizes = slices.DeleteFunc(cfg.sizes, func(n int) bool { return n == cfg.baseline })
	if cfg.baseline < 1 {
		errs = append(errs, fmt.Errorf("--baseline %d must be at least 1", cfg.baseline))
	}
	if cfg.ops < 1 || cfg.importRows < 1 || cfg.fleetChanges < 1 {
		errs = append(errs, errors.New("--ops, --import-rows and --fleet-changes must be at least 1"))
	}
	if cfg.stepTimeout <= 0 {
		errs = append(errs, errors.New("--step-timeout must be positive"))
	}
	if cfg.tollgate, err = benchkit.Binary(cfg.tollgate); err != nil {
		errs = append(errs, fmt.Errorf("--tollgate: %w (make build makes bin/tollgate)", err))
	}
	return cfg, errors.Join(errs...)
}

// parseSizes reads "10000,100000" into ascending, distinct sizes.
func parseSizes(s string) ([]int, error) {
	var sizes []int
	for part := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number of keys", part)
		}
		sizes = append(sizes, n)
	}
	slices.Sort(sizes)
	return slices.Compact(sizes), nil
}
