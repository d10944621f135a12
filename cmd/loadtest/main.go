// Command loadtest is the load benchmark behind `make loadtest`: it measures
// tollgate against baselines on this machine, in one run, and fails when
// tollgate misses the performance budget of ARCHITECTURE.md.
//
//	loadtest run --tollgate bin/tollgate [--nginx /usr/sbin/nginx --conns 64 --duration 10s --rounds 3
//	             --paced-rate 1000 --paced-conns 8 --paced-duration 5s --gogc 400 --out FILE]
//
// On the same upstream and the same load it measures the upstream called
// directly, nginx configured as tollgate is (nginx.go), a bare
// ReverseProxy, a bare fasthttp proxy, and tollgate on each of its data
// planes. The Go baselines are subcommands of this same binary, which
// `run` starts as child processes:
//
//	loadtest upstream --listen ADDR                a small JSON upstream
//	loadtest proxy --listen ADDR --target URL      a bare httputil.ReverseProxy
//	loadtest fastproxy --listen ADDR --target URL  a bare fasthttp Server + HostClient
//	loadtest reject --listen ADDR                  answers 403 at once
//
// Each prints "listening on HOST:PORT" once it listens.
package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/tollgate/tollgate/internal/benchkit"
)

func main() { benchkit.Main(cli) }

const usage = `usage:
  loadtest [run] --tollgate PATH [--nginx PATH] [--conns 64] [--duration 10s]
                 [--warmup 2s] [--rounds 3] [--paced-rate 1000] [--paced-conns 8]
                 [--paced-duration 5s] [--gogc 400] [--out FILE]
                                                          compare tollgate with baselines
  loadtest upstream --listen ADDR                         JSON upstream
  loadtest proxy --listen ADDR --target URL               bare ReverseProxy baseline
  loadtest fastproxy --listen ADDR --target URL           bare fasthttp proxy baseline
  loadtest reject --listen ADDR                           403 baseline
run "loadtest run -h" for all run flags.
`

// cli runs the subcommand named by args[0] ("run" when absent) and
// returns the exit code.
func cli(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd, rest := "run", args
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, rest = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return runCmd(ctx, rest, stdout, stderr)
	case "upstream":
		return serveCmd(ctx, "upstream", rest, stdout, stderr, upstreamHandler)
	case "proxy":
		return serveCmd(ctx, "proxy", rest, stdout, stderr, proxyHandler)
	case "fastproxy":
		return fastProxyCmd(ctx, rest, stdout, stderr)
	case "reject":
		return serveCmd(ctx, "reject", rest, stdout, stderr, rejectHandler)
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "loadtest: unknown subcommand %q\n%s", cmd, usage)
		return 2
	}
}
