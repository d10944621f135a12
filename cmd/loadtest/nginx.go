package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/benchkit"
)

// defaultNginx is where Debian's nginx packages (nginx-light among them)
// install the binary.
const defaultNginx = "/usr/sbin/nginx"

// nginxSetup is what nginxConfig needs to know.
type nginxSetup struct {
	dir      string // the folder of the config, pid, error log, lock and temp files
	listen   string // 127.0.0.1:PORT
	upstream string // host:port of the upstream
	asRoot   bool   // nginx runs as root: its workers must too
}

// nginxConfig is nginx's equivalent of tollgateConfig: the same keys on
// the same plans, unknown keys refused with AWS's 403, each plan's
// throttle a limit_req zone keyed by the API key, the stage prefix
// stripped and the request proxied over kept-alive connections with the
// same headers tollgate sets. What nginx does not do: meter (tollgate
// writes every request to its event queue and usage store; nginx's access
// log is off), send RateLimit headers, or route by resource (any path
// under /prod/ is proxied; /prod alone is 404).
func nginxConfig(s nginxSetup) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	path := func(name string) string { return filepath.Join(s.dir, name) }

	w("# Written by loadtest run for one run; nginx's own files stay untouched.")
	w("daemon off;")
	w("master_process on;")
	// One worker per core, as nginx's documentation advises ("auto"
	// would pick 2 here too, but says nothing in the report). Fewer
	// would hold nginx to one core while the Go servers use both
	// (GOMAXPROCS is 2); more would only add context switches. The load
	// generator shares these cores with every side alike.
	w("worker_processes 2;")
	if s.asRoot {
		// Run as root, the master would hand its workers to "nobody";
		// they stay root, as the rest of the run.
		w("user root;")
	}
	w("pid %s;", path("nginx.pid"))
	w("lock_file %s;", path("nginx.lock"))
	w("error_log %s warn;", path("error.log"))
	w("events {")
	w("    worker_connections 4096;")
	w("}")
	w("http {")
	// Not written per request, as tollgate is not: but tollgate meters
	// every request, which this nginx does not.
	w("    access_log off;")
	w("    server_tokens off;")
	w("    default_type application/json;")
	// The Go servers keep a client connection 120 s idle and serve any
	// number of requests on it; nginx's default closes it after 1000.
	w("    keepalive_timeout 120s;")
	w("    keepalive_requests 1000000000;")
	for _, t := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		w("    %s_temp_path %s;", t, path(t))
	}
	// The catalog: a key's plan and a name of it for the upstream (as
	// tollgate's X-Tollgate-Key-Id and -Plan-Id); an unknown key, or
	// none, has no plan. (map compares strings without case, tollgate
	// keys exactly; the keys here are lower case.)
	plans := []plan{loadPlan, tightPlan}
	w("    map $http_x_api_key $plan {")
	w(`        default "";`)
	for _, p := range plans {
		w("        %q %s;", p.key, p.name)
	}
	w("    }")
	w("    map $http_x_api_key $key_name {")
	w(`        default "";`)
	for _, p := range plans {
		w("        %q %s-key;", p.key, strings.ToLower(p.name))
	}
	w("    }")
	// A plan's throttle is a zone keyed by the API key of its own plan's
	// keys only: limit_req does not count an empty key. tollgate's
	// bucket holds burst tokens; nginx's burst is the excess over the
	// one request the rate allows, hence burst - 1, and nodelay answers
	// at once instead of queueing the excess.
	for _, p := range plans {
		w("    map $plan $%s_key {", strings.ToLower(p.name))
		w(`        default "";`)
		w("        %s $http_x_api_key;", p.name)
		w("    }")
		w("    limit_req_zone $%s_key zone=%s:1m rate=%dr/s;", strings.ToLower(p.name), p.name, p.rate)
	}
	w("    limit_req_status 429;")
	// Kept-alive connections to the upstream, as the Go proxies keep
	// theirs: up to 64 idle per worker (the load's connections), 90 s,
	// any number of requests each.
	w("    upstream loadtest_upstream {")
	w("        server %s;", s.upstream)
	w("        keepalive 64;")
	w("        keepalive_timeout 90s;")
	w("        keepalive_requests 1000000000;")
	w("    }")
	w("    server {")
	w("        listen %s;", s.listen)
	w("        location /prod/ {")
	// The key check runs in the rewrite phase, before limit_req's: a
	// refused request takes no token, as in tollgate.
	w(`            if ($plan = "") {`)
	w("                add_header x-amzn-ErrorType ForbiddenException always;")
	w(`                return 403 '{"message":"Forbidden"}';`)
	w("            }")
	for _, p := range plans {
		if p.burst > 1 {
			w("            limit_req zone=%s burst=%d nodelay;", p.name, p.burst-1)
		} else { // burst=0 is nginx's default, and refused when written
			w("            limit_req zone=%s nodelay;", p.name)
		}
	}
	w("            error_page 429 @throttled;")
	// proxy_pass with a URI replaces the location's /prod/ with /.
	w("            proxy_pass http://loadtest_upstream/;")
	w("            proxy_http_version 1.1;")
	w(`            proxy_set_header Connection "";`)
	w("            proxy_set_header X-Forwarded-For $remote_addr;")
	w("            proxy_set_header X-Forwarded-Host $http_host;")
	w("            proxy_set_header X-Forwarded-Proto $scheme;")
	w(`            proxy_set_header X-Api-Key "";`)
	w("            proxy_set_header X-Tollgate-Key-Id $key_name;")
	w("            proxy_set_header X-Tollgate-Plan-Id $plan;")
	w("        }")
	w("        location @throttled {")
	w("            add_header x-amzn-ErrorType TooManyRequestsException always;")
	w(`            return 429 '{"message":"Too Many Requests"}';`)
	w("        }")
	w("        location = %s {", nginxReadyPath)
	w("            return 200 '{}';")
	w("        }")
	w("        location / {")
	w(`            return 404 '{"message":"Not Found"}';`)
	w("        }")
	w("    }")
	w("}")
	return b.String()
}

// nginxReadyPath answers 200 once a worker serves.
const nginxReadyPath = "/loadtest-ready"

// bindAttempts bounds how often startNginx tries another free port when
// the one it picked was taken before nginx could bind it.
const bindAttempts = 3

// startNginx starts the nginx binary at path in front of upstream
// (host:port), with its config and files in dir, and waits until a
// worker answers, all within timeout. It returns the address nginx
// listens on and its master process, kept by procs; stopping it (SIGTERM
// to its process group) stops the workers with it.
func startNginx(ctx context.Context, procs *benchkit.Procs, path, dir, upstream string, timeout time.Duration) (string, *benchkit.Proc, error) {
	return startNginxOn(ctx, procs, path, dir, upstream, timeout, freePort)
}

// startNginxOn is startNginx with the port picked by pick.
func startNginxOn(ctx context.Context, procs *benchkit.Procs, path, dir, upstream string, timeout time.Duration,
	pick func() (string, error)) (string, *benchkit.Proc, error) {
	deadline := time.Now().Add(timeout)
	for attempt := 1; ; attempt++ {
		addr, err := pick()
		if err != nil {
			return "", nil, err
		}
		p, err := startNginxOnce(ctx, procs, path, dir, addr, upstream, time.Until(deadline))
		if err == nil || !errors.Is(err, errPortTaken) || attempt == bindAttempts {
			return addr, p, err
		}
	}
}

// errPortTaken is nginx failing to bind the port picked for it.
var errPortTaken = errors.New("the port was taken before nginx bound it")

// startNginxOnce starts nginx on addr.
func startNginxOnce(ctx context.Context, procs *benchkit.Procs, path, dir, addr, upstream string, timeout time.Duration) (*benchkit.Proc, error) {
	conf := filepath.Join(dir, "nginx.conf")
	errorLog := filepath.Join(dir, "error.log")
	text := nginxConfig(nginxSetup{dir: dir, listen: addr, upstream: upstream, asRoot: os.Geteuid() == 0})
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, fmt.Errorf("write nginx config: %w", err)
	}
	os.Remove(errorLog) // a failed attempt's messages are not this one's
	for _, t := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.MkdirAll(filepath.Join(dir, t), 0o755); err != nil {
			return nil, fmt.Errorf("make nginx temp dir: %w", err)
		}
	}
	// -e: messages from before the config is read go to the same log.
	args := []string{"-p", dir + "/", "-c", conf, "-e", errorLog}
	p, err := procs.StartProc(ctx, procConfig("nginx", path, args, os.Environ(), nil))
	if err != nil {
		return nil, err
	}
	if err := waitHealthy(ctx, p, "http://"+addr+nginxReadyPath, timeout); err != nil {
		p.Stop()
		log := tail(errorLog, tailLines)
		if strings.Contains(log, "Address already in use") {
			return nil, fmt.Errorf("%w (%s)", errPortTaken, addr)
		}
		return nil, fmt.Errorf("%w\nnginx's error log:\n%s", err, log)
	}
	return p, nil
}

// freePort returns 127.0.0.1:PORT with a port free a moment ago. nginx
// cannot listen on port 0: a port the kernel just gave out and took back
// is free, unless another process takes it before nginx binds it, which
// nginx's error log then says (startNginxOn tries another).
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
}

// tail returns the last n lines of the file at path, indented, or why
// it could not be read.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "  | " + err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  | " + strings.Join(lines, "\n  | ")
}
