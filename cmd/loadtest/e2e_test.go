package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/benchkit"
	"github.com/tollgate/tollgate/internal/loadgen"
)

// The end-to-end tests start this test binary as the harness's children:
// with testChildEnv set it is the loadtest command, or, given "serve", a
// fake tollgate, so no real tollgate binary is needed.
const (
	testChildEnv = "LOADTEST_TEST_CHILD"   // "1": act as a child
	testPIDDir   = "LOADTEST_TEST_PID_DIR" // children record their pid here
	fakeModeEnv  = "LOADTEST_FAKE_MODE"    // "", "broken" or "unhealthy"
)

func TestMain(m *testing.M) {
	if os.Getenv(testChildEnv) == "1" {
		os.Exit(testChild(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func testChild(args []string) int {
	if dir := os.Getenv(testPIDDir); dir != "" {
		pid := strconv.Itoa(os.Getpid())
		os.WriteFile(filepath.Join(dir, pid), []byte(pid), 0o644)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) > 0 && args[0] == "serve" {
		if err := fakeTollgate(ctx, args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "fake tollgate:", err)
			return 1
		}
		return 0
	}
	return cli(ctx, args, os.Stdout, os.Stderr)
}

// fakeTollgate stands in for `tollgate serve`: it reads the upstream and
// keys from the generated config, logs its addresses as tollgate does,
// proxies requests with the first key, throttles every request with the
// second (429) and answers 403 to others.
func fakeTollgate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	config := fs.String("config", "", "")
	listen := fs.String("listen", "", "")
	adminListen := fs.String("admin-listen", "", "")
	dataDir := fs.String("data-dir", "", "")
	plane := fs.String("data-plane", "", "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *plane != "fasthttp" && *plane != "net/http" {
		return fmt.Errorf("--data-plane %q", *plane)
	}
	if st, err := os.Stat(*dataDir); err != nil || !st.IsDir() {
		return fmt.Errorf("data dir %q: %v", *dataDir, err)
	}
	raw, err := os.ReadFile(*config)
	if err != nil {
		return err
	}
	up := regexp.MustCompile(`upstream: (\S+)`).FindSubmatch(raw)
	keys := regexp.MustCompile(`value: (\S+)`).FindAllSubmatch(raw, -1)
	if up == nil || len(keys) != 2 {
		return fmt.Errorf("config lacks upstream or its two keys:\n%s", raw)
	}
	valid, throttled := string(keys[0][1]), string(keys[1][1])
	target, err := url.Parse(string(up[1]))
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	log.Info("starting", "config", *config)

	proxy := newBareProxy(target, "/prod")
	forbidden := fixedResponse(http.StatusForbidden, forbiddenBody)
	throttle := fixedResponse(http.StatusTooManyRequests, []byte(`{"message":"Too Many Requests"}`))
	var gateway http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("X-Api-Key") {
		case valid:
			proxy.ServeHTTP(w, r)
		case throttled:
			throttle.ServeHTTP(w, r)
		default:
			forbidden.ServeHTTP(w, r)
		}
	})
	health := http.StatusOK
	switch os.Getenv(fakeModeEnv) {
	case "broken":
		gateway = fixedResponse(http.StatusInternalServerError, []byte(`{"message":"broken"}`))
	case "unhealthy":
		health = http.StatusServiceUnavailable
	}
	admin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(health) })

	errc := make(chan error, 2)
	for _, s := range []struct {
		name, addr string
		h          http.Handler
	}{{"gateway", *listen, gateway}, {"admin", *adminListen, admin}} {
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			return err
		}
		srv := newServer(s.h)
		go func() { errc <- srv.Serve(ln) }()
		defer srv.Close()
		log.Info(s.name+" listening", "addr", ln.Addr().String())
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return nil
	}
}

// asChildren makes children started by the harness in this test run as
// testChild and record their pids; it returns a check that they are gone,
// and that no nginx process is left that was not there before.
func asChildren(t *testing.T, fakeMode string) (assertGone func()) {
	dir := t.TempDir()
	t.Setenv(testChildEnv, "1")
	t.Setenv(testPIDDir, dir)
	t.Setenv(fakeModeEnv, fakeMode)
	nginxBefore := nginxProcesses()
	return func() {
		t.Helper()
		for _, pid := range nginxProcesses() {
			if !slices.Contains(nginxBefore, pid) {
				t.Errorf("nginx process %d still exists after the harness returned", pid)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) == 0 {
			t.Errorf("no child recorded its pid")
		}
		for _, e := range entries {
			pid, _ := strconv.Atoi(e.Name())
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("child pid %d still exists after the harness returned (kill 0: %v)", pid, err)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// nginxProcesses lists the nginx masters and workers running, by the
// title nginx gives them ("nginx: master process ...", "nginx: worker
// process").
func nginxProcesses() []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.HasPrefix(cmdline, []byte("nginx: ")) && processExists(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// TestBaselineServersUnderLoad starts upstream, proxy, fastproxy and
// reject as child processes, exactly as `run` does, and drives them with
// loadgen.
func TestBaselineServersUnderLoad(t *testing.T) {
	assertGone := asChildren(t, "")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var procs benchkit.Procs
	defer assertGone()
	defer procs.StopAll()
	start := func(name string, args ...string) string {
		t.Helper()
		addr, _, err := startServer(ctx, &procs, self, benchkit.ChildEnv("GOGC=400"), 10*time.Second, name, args...)
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		return addr
	}
	upstream := start("upstream")
	proxy := start("proxy", "--target", "http://"+upstream)
	fastproxy := start("fastproxy", "--target", "http://"+upstream)
	reject := start("reject")

	tests := []struct {
		name, addr, path, key string
		want                  int
	}{
		{"upstream", upstream, "/items", "", 200},
		{"proxy", proxy, "/prod/items", validKey, 200},
		{"proxy outside stage", proxy, "/items", validKey, 404},
		{"fastproxy", fastproxy, "/prod/items", validKey, 200},
		{"fastproxy outside stage", fastproxy, "/items", validKey, 404},
		{"reject", reject, "/prod/items", unknownKey, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := loadgen.New(loadgen.Config{Addr: tt.addr, Path: tt.path, Header: http.Header{"x-api-key": {tt.key}},
				Conns: 8, Warmup: 50 * time.Millisecond, Duration: 250 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			res, err := g.Run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if res.Responses == 0 || res.Status[tt.want] != res.Responses || res.Errors.Total() != 0 {
				t.Errorf("got %s, want only %d", fmtStatus(res.Status, res.Errors), tt.want)
			}
		})
	}

	// The upstream's body passes through the proxies whole.
	for _, addr := range []string{proxy, fastproxy} {
		resp, err := http.Get("http://" + addr + "/prod/items")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != string(upstreamBody) {
			t.Errorf("%s: body = %q (%v), want %q", addr, body, err, upstreamBody)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type = %q, want application/json", addr, ct)
		}
	}
}

// nginxArg is the --nginx flag of a test's run: nginx where it is
// installed, none where it is not (unless TOLLGATE_REQUIRE_NGINX=1, which
// fails the test instead).
func nginxArg(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(defaultNginx); err != nil {
		if os.Getenv("TOLLGATE_REQUIRE_NGINX") == "1" {
			t.Fatalf("TOLLGATE_REQUIRE_NGINX=1 but %s: %v", defaultNginx, err)
		}
		t.Logf("no nginx (%v): the run measures none", err)
		return ""
	}
	return defaultNginx
}

func runArgs(t *testing.T, extra ...string) []string {
	return append([]string{"--tollgate", os.Args[0], "--nginx", nginxArg(t), "--conns", "4", "--warmup", "50ms",
		"--duration", "200ms", "--paced-rate", "200", "--paced-conns", "2", "--paced-duration", "200ms",
		"--rounds", "1", "--reruns", "1", "--startup-timeout", "10s"}, extra...)
}

// TestRunWithFakeTollgate runs the whole harness. With runs this short the
// targets may be missed by chance, so it checks the plumbing: statuses,
// tables, the markdown file, and that no child outlives the harness.
func TestRunWithFakeTollgate(t *testing.T) {
	assertGone := asChildren(t, "")
	out := filepath.Join(t.TempDir(), "results.md")
	args := runArgs(t, "--out", out)
	withNginx := slices.Contains(args, defaultNginx)
	var stdout, stderr strings.Builder
	code := cli(context.Background(), append([]string{"run"}, args...), &stdout, &stderr)
	assertGone()
	if code != 0 && code != 1 {
		t.Fatalf("exit code %d, want 0 or 1\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	wants := []string{
		"PASS  every upstream, direct response is 200",
		"PASS  every bare ReverseProxy response is 200",
		"PASS  every bare fasthttp response is 200",
		"PASS  every tollgate fasthttp response is 200",
		"PASS  every tollgate net/http response is 200",
		"PASS  every Go 403 handler response is 403",
		"PASS  every tollgate fasthttp response is 403",
		"PASS  every tollgate net/http response is 403",
		"PASS  every tollgate fasthttp response is 429 (or 200, at most 1%), no errors",
		"tollgate net/http req/s ≥ 0.85 × bare ReverseProxy req/s",
		"tollgate net/http p99 ≤ bare ReverseProxy p99 + 1.000ms",
		"tollgate net/http req/s ≥ 0.85 × Go 403 handler req/s",
		"tollgate fasthttp p99 added to a direct call, paced (its p99 − upstream, direct p99) ≤ 1.000ms",
		"paced, 200 req/s on 2 connections:",
	}
	nginxChecks := []string{
		"PASS  every nginx response is 200",
		"PASS  every nginx response is 403",
		"PASS  every nginx response is 429 (or 200, at most 1%), no errors",
		"tollgate fasthttp CPU per request ≤ 1.30 × nginx's",
		"tollgate fasthttp req/s ≥ 0.80 × nginx req/s",
		"tollgate fasthttp req/s ≥ 0.90 × nginx req/s",
	}
	if withNginx {
		wants = append(wants, nginxChecks...)
	} else {
		wants = append(wants, "not checked: tollgate fasthttp req/s ≥ 0.80 × nginx req/s (nginx not measured)")
	}
	for _, want := range wants {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout lacks %q:\n%s\nstderr:\n%s", want, stdout.String(), stderr.String())
		}
	}
	if code == 1 && !strings.Contains(stderr.String(), "targets missed") {
		t.Errorf("exit 1 without naming the missed targets:\n%s", stderr.String())
	}
	md, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"- command: `", "- GOGC: 400", "- connections: 4", "- duration: 200ms",
		"- paced runs: 200 req/s on 2 connections", "- runs again: when others took more than 10% of the CPU, once at most",
		"- runtime.NumCPU(): ",
		"| side | req/s | × nginx | p50 | p90 | p99 | p99.9 | max | CPU µs/req | CPU × nginx | others | req/s by round |",
		"| side | req/s | p50 | p99 | p99.9 | added p50 | added p99 | late | CPU µs/req | CPU × nginx | others |",
		"| tollgate fasthttp | ", "| tollgate net/http | ", "| bare fasthttp | ",
		"| every tollgate fasthttp response is 403, no errors | 403×", "## Notes"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if withNginx && !strings.Contains(string(md), "| nginx | ") {
		t.Errorf("markdown lacks nginx's rows:\n%s", md)
	}
}

func TestRunFailsClearly(t *testing.T) {
	tests := []struct {
		name, mode string
		args       []string
		wantErr    []string
	}{
		{"tollgate answers 500", "broken", nil, []string{"preflight proxy", "500", "broken"}},
		{"tollgate never healthy", "unhealthy", []string{"--startup-timeout", "1s"},
			[]string{"did not answer 200 within", "503", "last output of tollgate", "gateway listening"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertGone := asChildren(t, tt.mode)
			var stdout, stderr strings.Builder
			code := cli(context.Background(), append([]string{"run"}, runArgs(t, tt.args...)...), &stdout, &stderr)
			assertGone()
			if code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
		})
	}
}

// TestRunStopsChildrenWhenInterrupted cancels the run midway, as SIGINT
// does through main's signal.NotifyContext.
func TestRunStopsChildrenWhenInterrupted(t *testing.T) {
	assertGone := asChildren(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	stdout := &watchWriter{want: "tollgate net/http: gateway", seen: make(chan struct{})}
	var stderr strings.Builder
	done := make(chan int)
	args := []string{"run", "--tollgate", os.Args[0], "--nginx", nginxArg(t), "--duration", "1h"}
	go func() { done <- cli(ctx, args, stdout, &stderr) }()
	select { // cancel once tollgate is up and the runs begin
	case <-stdout.seen:
	case code := <-done:
		t.Fatalf("run returned %d before tollgate was up:\n%s", code, stderr.String())
	case <-time.After(15 * time.Second):
		t.Fatal("tollgate did not come up")
	}
	cancel()
	select {
	case code := <-done:
		if code != 130 {
			t.Errorf("exit code %d, want 130", code)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after cancellation")
	}
	assertGone()
}

// watchWriter closes seen once want has been written to it.
type watchWriter struct {
	mu   sync.Mutex
	buf  strings.Builder
	want string
	seen chan struct{}
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	had := strings.Contains(w.buf.String(), w.want)
	w.buf.Write(p)
	if !had && strings.Contains(w.buf.String(), w.want) {
		close(w.seen)
	}
	return len(p), nil
}
