package benchkit

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

// Main runs cli with the command's arguments and standard streams, under
// a context that ends on SIGINT or SIGTERM, and exits with the code cli
// returns.
func Main(cli func(ctx context.Context, args []string, stdout, stderr io.Writer) int) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Command is the command line of the benchmark name, for Main: it reads
// the arguments with parse, hands the configuration to run, and returns
// the exit code: 2 for bad flags, 1 when run failed, 0 otherwise. Either
// error is written to stderr after the command's name.
func Command[C any](name string, parse func(args []string, stderr io.Writer) (C, error),
	run func(ctx context.Context, cfg C, stdout, stderr io.Writer) error) func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		cfg, err := parse(args, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return 2
		}
		if err := run(ctx, cfg, stdout, stderr); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return 1
		}
		return 0
	}
}

// NoArgs refuses arguments left after fs's flags; nil when there are
// none.
func NoArgs(fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return nil
}

// Binary is the absolute path of the file at path, which must exist: the
// built binary a benchmark drives (its --tollgate flag).
func Binary(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(abs); err != nil {
		return "", err
	}
	return abs, nil
}
