package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/benchkit"
)

// runConfig is what `loadtest run` was asked to do.
type runConfig struct {
	tollgate     string // path of the tollgate binary; empty with baselineOnly
	baselineOnly bool
	load
	gogc      string
	out       string
	scenarios []scenario
	startup   time.Duration // bound on each server's start
}

func parseRunFlags(args []string, stderr io.Writer) (runConfig, error) {
	var cfg runConfig
	fs := flag.NewFlagSet("loadtest run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.tollgate, "tollgate", "", "path of the built tollgate binary (required unless --baseline-only)")
	fs.BoolVar(&cfg.baselineOnly, "baseline-only", false, "measure only the baselines, without tollgate and without targets")
	fs.IntVar(&cfg.conns, "conns", 64, "connections, one request in flight on each")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "measured time per run")
	fs.DurationVar(&cfg.warmup, "warmup", 2*time.Second, "unmeasured warm-up before each run")
	fs.IntVar(&cfg.rounds, "rounds", 3, "runs of each side per scenario, interleaved; medians are compared")
	fs.DurationVar(&cfg.timeout, "timeout", 5*time.Second, "per-request timeout")
	fs.StringVar(&cfg.gogc, "gogc", "400", "GOGC for every server process, baselines and tollgate alike")
	fs.StringVar(&cfg.out, "out", "", "also write the results as markdown to this file")
	fs.DurationVar(&cfg.startup, "startup-timeout", 30*time.Second, "how long each server may take to start")
	names := fs.String("scenarios", "proxy,reject", "comma-separated scenarios to run: proxy, reject")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}

	errs := []error{benchkit.NoArgs(fs)} // errors.Join drops a nil
	switch {
	case cfg.tollgate == "" && !cfg.baselineOnly:
		errs = append(errs, errors.New("--tollgate PATH is required (or --baseline-only)"))
	case cfg.tollgate != "" && cfg.baselineOnly:
		errs = append(errs, errors.New("--tollgate and --baseline-only exclude each other"))
	case cfg.tollgate != "":
		abs, err := benchkit.Binary(cfg.tollgate)
		cfg.tollgate = abs
		if err != nil {
			errs = append(errs, fmt.Errorf("--tollgate: %w", err))
		}
	}
	if cfg.conns < 1 {
		errs = append(errs, fmt.Errorf("--conns %d must be at least 1", cfg.conns))
	}
	if cfg.duration <= 0 || cfg.warmup < 0 || cfg.timeout <= 0 || cfg.startup <= 0 {
		errs = append(errs, errors.New("--duration, --timeout and --startup-timeout must be positive, --warmup not negative"))
	}
	if cfg.rounds < 1 {
		errs = append(errs, fmt.Errorf("--rounds %d must be at least 1", cfg.rounds))
	}
	if n, err := strconv.Atoi(cfg.gogc); cfg.gogc != "off" && (err != nil || n <= 0) {
		errs = append(errs, fmt.Errorf(`--gogc %q must be a positive integer or "off"`, cfg.gogc))
	}
	for name := range strings.SplitSeq(*names, ",") {
		i := indexScenario(strings.TrimSpace(name))
		if i < 0 {
			errs = append(errs, fmt.Errorf("--scenarios: unknown scenario %q", name))
			continue
		}
		cfg.scenarios = append(cfg.scenarios, scenarios[i])
	}
	return cfg, errors.Join(errs...)
}

func indexScenario(name string) int {
	for i, sc := range scenarios {
		if sc.name == name {
			return i
		}
	}
	return -1
}

// runCmd is `loadtest run`.
func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseRunFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "loadtest run: %v\n", err)
		return 2
	}
	rep, err := runHarness(ctx, cfg, stdout)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "loadtest run: interrupted (%v); all servers stopped\n", err)
			return 130
		}
		fmt.Fprintf(stderr, "loadtest run: %v\n", err)
		return 1
	}
	if cfg.out != "" {
		if err := writeFile(cfg.out, rep.writeMarkdown); err != nil {
			fmt.Fprintf(stderr, "loadtest run: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "results written to %s\n", cfg.out)
	}
	if failed := rep.failures(); len(failed) > 0 {
		fmt.Fprintf(stderr, "loadtest run: FAILED, targets missed:\n")
		for _, f := range failed {
			fmt.Fprintf(stderr, "  - %s\n", f)
		}
		return 1
	}
	return 0
}

// runHarness starts the servers, measures every scenario and returns the
// report, which it has printed to stdout. Every child it started is
// stopped before it returns, whatever happened.
func runHarness(ctx context.Context, cfg runConfig, stdout io.Writer) (rep *report, err error) {
	rep = &report{command: shellQuote(os.Args), date: time.Now(), cfg: cfg, numCPU: runtime.NumCPU()}
	rep.writeIntro(stdout)

	var procs benchkit.Procs
	var tmp string
	defer func() {
		procs.StopAll()
		if tmp != "" {
			os.RemoveAll(tmp)
		}
	}()
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own binary: %w", err)
	}
	env := benchkit.ChildEnv("GOGC=" + cfg.gogc) // every server collects garbage alike
	start := func(name string, args ...string) (string, error) {
		return startServer(ctx, &procs, self, env, cfg.startup, name, args...)
	}

	upstream, err := start("upstream")
	if err != nil {
		return nil, err
	}
	baselines := map[string]string{}
	for _, sc := range cfg.scenarios {
		switch sc.name {
		case "proxy":
			baselines[sc.name], err = start("proxy", "--target", "http://"+upstream)
		case "reject":
			baselines[sc.name], err = start("reject")
		}
		if err != nil {
			return nil, err
		}
	}
	var gateway string
	if !cfg.baselineOnly {
		if tmp, err = os.MkdirTemp("", "loadtest-"); err != nil {
			return nil, fmt.Errorf("make temp dir: %w", err)
		}
		addrs, err := startTollgate(ctx, &procs, cfg.tollgate, tmp, "http://"+upstream, env, cfg.startup)
		if err != nil {
			return nil, err
		}
		gateway = addrs.gateway
		fmt.Fprintf(stdout, "tollgate: gateway %s, admin %s\n", addrs.gateway, addrs.admin)
	}

	for _, sc := range cfg.scenarios {
		fmt.Fprintf(stdout, "\n%s\n", sc.title)
		base := &side{label: sc.baseline, addr: baselines[sc.name]}
		var tg *side
		if gateway != "" {
			tg = &side{label: "tollgate", addr: gateway}
		}
		o, err := measure(ctx, sc, base, tg, cfg.load, stdout)
		if err != nil {
			return nil, err
		}
		rep.outcomes = append(rep.outcomes, o)
	}
	// A server that died during the runs makes the figures meaningless.
	for _, p := range procs.List() {
		if p.Exited() != nil {
			return nil, fmt.Errorf("a server died during the runs\n%s", p.Failure())
		}
	}
	rep.writeText(stdout)
	return rep, nil
}

// startServer starts this binary's subcommand name as a child listening
// on a free loopback port, kept by procs, and returns the address it
// announced.
func startServer(ctx context.Context, procs *benchkit.Procs, self string, env []string, timeout time.Duration, name string, args ...string) (string, error) {
	addrc := make(chan string, 1)
	onLine := func(line string) {
		if addr, ok := strings.CutPrefix(line, listeningPrefix); ok {
			offer(addrc, strings.TrimSpace(addr))
		}
	}
	args = append([]string{name, "--listen", "127.0.0.1:0"}, args...)
	p, err := procs.StartProc(ctx, server(name, self, args, env, onLine))
	if err != nil {
		return "", err
	}
	return waitFor(ctx, p, addrc, timeout, `"`+listeningPrefix+`ADDR" on stdout`)
}

// writeFile writes what write produces to path.
func writeFile(path string, write func(io.Writer)) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	write(f)
	if err := f.Close(); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// shellQuote joins args into a command line a shell would read back.
func shellQuote(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == "" {
			quoted[i] = a
		} else {
			quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(quoted, " ")
}
