package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
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
	nginx        string // path of the nginx binary; empty: nginx not measured
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
	fs.StringVar(&cfg.nginx, "nginx", defaultNginx, `path of the nginx binary; "" measures no nginx, and checks no target against it`)
	fs.IntVar(&cfg.conns, "conns", 64, "connections, one request in flight on each")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "measured time per run")
	fs.DurationVar(&cfg.warmup, "warmup", 2*time.Second, "unmeasured warm-up before each run")
	fs.IntVar(&cfg.rounds, "rounds", 3, "runs of each side per scenario, interleaved; medians are compared")
	fs.DurationVar(&cfg.timeout, "timeout", 5*time.Second, "per-request timeout")
	fs.Float64Var(&cfg.pacedRate, "paced-rate", 1000, "requests/s of the paced runs (the latency a proxy adds)")
	fs.IntVar(&cfg.pacedConns, "paced-conns", 8, "connections of the paced runs")
	fs.DurationVar(&cfg.pacedDuration, "paced-duration", 5*time.Second, "measured time per paced run; 0: no paced runs")
	fs.Float64Var(&cfg.maxOthers, "max-others", 0.1, "a run during which processes outside the harness used more than this share of the machine's CPU is run again")
	fs.IntVar(&cfg.reruns, "reruns", 2, "how often a run may be run again for --max-others")
	fs.StringVar(&cfg.gogc, "gogc", "400", "GOGC for every server process, baselines and tollgate alike")
	fs.StringVar(&cfg.out, "out", "", "also write the results as markdown to this file")
	fs.DurationVar(&cfg.startup, "startup-timeout", 30*time.Second, "how long each server may take to start")
	names := fs.String("scenarios", "proxy,reject,throttle", "comma-separated scenarios to run: proxy, reject, throttle")
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
	if cfg.nginx != "" {
		abs, err := benchkit.Binary(cfg.nginx)
		cfg.nginx = abs
		if err != nil {
			errs = append(errs, fmt.Errorf(`--nginx: %w (apt-get install nginx-light, or --nginx "" to measure no nginx)`, err))
		}
	}
	if cfg.conns < 1 || cfg.pacedConns < 1 {
		errs = append(errs, fmt.Errorf("--conns %d and --paced-conns %d must be at least 1", cfg.conns, cfg.pacedConns))
	}
	if cfg.duration <= 0 || cfg.warmup < 0 || cfg.timeout <= 0 || cfg.startup <= 0 || cfg.pacedDuration < 0 {
		errs = append(errs, errors.New("--duration, --timeout and --startup-timeout must be positive, --warmup and --paced-duration not negative"))
	}
	if !(cfg.pacedRate > 0) || math.IsInf(cfg.pacedRate, 0) {
		errs = append(errs, fmt.Errorf("--paced-rate %v must be a positive number", cfg.pacedRate))
	}
	if cfg.rounds < 1 {
		errs = append(errs, fmt.Errorf("--rounds %d must be at least 1", cfg.rounds))
	}
	if cfg.reruns < 0 || !(cfg.maxOthers >= 0 && cfg.maxOthers <= 1) {
		errs = append(errs, fmt.Errorf("--reruns %d must not be negative, --max-others %v must be within 0 and 1", cfg.reruns, cfg.maxOthers))
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
	if cfg.nginx != "" {
		rep.nginxVersion = nginxVersion(ctx, cfg.nginx)
	}
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
	if tmp, err = os.MkdirTemp("", "loadtest-"); err != nil {
		return nil, fmt.Errorf("make temp dir: %w", err)
	}
	servers, err := startServers(ctx, cfg, &procs, self, tmp, stdout)
	if err != nil {
		return nil, err
	}
	for _, sc := range cfg.scenarios {
		fmt.Fprintf(stdout, "\n%s\n", sc.title)
		o, err := measure(ctx, sc, servers, cfg.load, stdout)
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

// startServers starts the servers the scenarios of cfg measure, kept by
// procs, with their files under tmp, and returns them by side label.
func startServers(ctx context.Context, cfg runConfig, procs *benchkit.Procs, self, tmp string, stdout io.Writer) (map[string]*server, error) {
	env := benchkit.ChildEnv("GOGC=" + cfg.gogc) // every server collects garbage alike
	start := func(name string, args ...string) (*server, error) {
		addr, p, err := startServer(ctx, procs, self, env, cfg.startup, name, args...)
		return &server{addr: addr, proc: p}, err
	}
	needed := map[string]bool{}
	for _, sc := range cfg.scenarios {
		for _, label := range sc.sides {
			needed[label] = true
		}
	}

	upstream, err := start("upstream")
	if err != nil {
		return nil, err
	}
	servers := map[string]*server{sideDirect: upstream}
	for _, b := range []struct {
		label, name string
		args        []string
	}{
		{sideBareRP, "proxy", []string{"--target", "http://" + upstream.addr}},
		{sideBareFast, "fastproxy", []string{"--target", "http://" + upstream.addr}},
		{side403, "reject", nil},
	} {
		if !needed[b.label] {
			continue
		}
		if servers[b.label], err = start(b.name, b.args...); err != nil {
			return nil, err
		}
	}
	if cfg.nginx != "" && needed[sideNginx] {
		dir := filepath.Join(tmp, "nginx")
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, fmt.Errorf("make nginx dir: %w", err)
		}
		addr, p, err := startNginx(ctx, procs, cfg.nginx, dir, upstream.addr, cfg.startup)
		if err != nil {
			return nil, err
		}
		servers[sideNginx] = &server{addr: addr, proc: p}
		fmt.Fprintf(stdout, "nginx: %s\n", addr)
	}
	if !cfg.baselineOnly {
		for _, plane := range []struct{ label, name string }{{sideTollgate, "fasthttp"}, {sideTollgateNet, "net/http"}} {
			if !needed[plane.label] {
				continue
			}
			dir := filepath.Join(tmp, "tollgate-"+strings.ReplaceAll(plane.name, "/", ""))
			if err := os.Mkdir(dir, 0o755); err != nil {
				return nil, fmt.Errorf("make tollgate dir: %w", err)
			}
			addrs, p, err := startTollgate(ctx, procs, cfg.tollgate, dir, "http://"+upstream.addr, plane.name, env, cfg.startup)
			if err != nil {
				return nil, err
			}
			servers[plane.label] = &server{addr: addrs.gateway, proc: p}
			fmt.Fprintf(stdout, "%s: gateway %s, admin %s\n", plane.label, addrs.gateway, addrs.admin)
		}
	}
	return servers, nil
}

// nginxVersion is what `nginx -v` says, e.g. "nginx/1.22.1", for the
// report.
func nginxVersion(ctx context.Context, path string) string {
	out, err := exec.CommandContext(ctx, path, "-v").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("unknown (%v)", err)
	}
	v := strings.TrimSpace(string(out))
	return strings.TrimPrefix(v, "nginx version: ")
}

// startServer starts this binary's subcommand name as a child listening
// on a free loopback port, kept by procs, and returns the address it
// announced and the process.
func startServer(ctx context.Context, procs *benchkit.Procs, self string, env []string, timeout time.Duration, name string, args ...string) (string, *benchkit.Proc, error) {
	addrc := make(chan string, 1)
	onLine := func(line string) {
		if addr, ok := strings.CutPrefix(line, listeningPrefix); ok {
			offer(addrc, strings.TrimSpace(addr))
		}
	}
	args = append([]string{name, "--listen", "127.0.0.1:0"}, args...)
	p, err := procs.StartProc(ctx, procConfig(name, self, args, env, onLine))
	if err != nil {
		return "", nil, err
	}
	addr, err := waitFor(ctx, p, addrc, timeout, `"`+listeningPrefix+`ADDR" on stdout`)
	return addr, p, err
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
