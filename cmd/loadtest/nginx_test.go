package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/benchkit"
)

// nginxOrSkip returns the nginx binary, or skips the test where there is
// none, unless TOLLGATE_REQUIRE_NGINX=1 (CI) makes that a failure.
func nginxOrSkip(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(defaultNginx); err != nil {
		if os.Getenv("TOLLGATE_REQUIRE_NGINX") == "1" {
			t.Fatalf("TOLLGATE_REQUIRE_NGINX=1 but %s: %v", defaultNginx, err)
		}
		t.Skipf("no nginx (%v); apt-get install nginx-light", err)
	}
	return defaultNginx
}

func TestNginxConfig(t *testing.T) {
	got := nginxConfig(nginxSetup{dir: "/tmp/lt", listen: "127.0.0.1:4000", upstream: "127.0.0.1:5000", asRoot: true})
	for _, want := range []string{
		"daemon off;\nmaster_process on;\n",
		"worker_processes 2;\nuser root;\npid /tmp/lt/nginx.pid;\nlock_file /tmp/lt/nginx.lock;\nerror_log /tmp/lt/error.log warn;\n",
		"    access_log off;\n",
		"    proxy_temp_path /tmp/lt/proxy;\n",
		"        \"loadtest-key-0000000000000001\" Load;\n        \"loadtest-key-0000000000000002\" Tight;\n",
		"    limit_req_zone $load_key zone=Load:1m rate=1000000000r/s;\n",
		"    limit_req_zone $tight_key zone=Tight:1m rate=1r/s;\n",
		"    limit_req_status 429;\n",
		"        server 127.0.0.1:5000;\n        keepalive 64;\n",
		"        listen 127.0.0.1:4000;\n",
		"            limit_req zone=Load burst=999999999 nodelay;\n            limit_req zone=Tight nodelay;\n",
		"            proxy_pass http://loadtest_upstream/;\n            proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n",
		"            proxy_set_header X-Forwarded-For $remote_addr;\n",
		"                add_header x-amzn-ErrorType ForbiddenException always;\n                return 403 '{\"message\":\"Forbidden\"}';\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("config lacks\n%s\nconfig:\n%s", want, got)
		}
	}
	if strings.Contains(nginxConfig(nginxSetup{dir: "/d", listen: "a:1", upstream: "b:2"}), "user ") {
		t.Error("a config for a user other than root names a user")
	}
}

// TestNginxAnswersAsTollgate starts nginx as the harness does and holds
// its answers to tollgate's: what the upstream sees of an admitted
// request, AWS's 403 and 429, and no process left once it is stopped.
func TestNginxAnswersAsTollgate(t *testing.T) {
	path := nginxOrSkip(t)
	type seen struct{ path, xff, key, keyID, planID string }
	var mu sync.Mutex
	var got seen
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = seen{r.URL.RequestURI(), r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Api-Key"),
			r.Header.Get("X-Tollgate-Key-Id"), r.Header.Get("X-Tollgate-Plan-Id")}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(upstreamBody)
	}))
	defer upstream.Close()

	ctx := context.Background()
	var procs benchkit.Procs
	defer procs.StopAll()
	addr, master, err := startNginx(ctx, &procs, path, t.TempDir(), strings.TrimPrefix(upstream.URL, "http://"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}

	get := func(path, key string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		if key != "" {
			req.Header.Set("X-Api-Key", key)
		}
		req.Header.Set("X-Forwarded-For", "6.6.6.6") // must not be trusted
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	tests := []struct {
		name, path, key string
		wantStatus      int
		wantBody        string
		wantErrorType   string
		wantSeen        seen
	}{
		{"admitted", "/prod/items?page=2", validKey, 200, string(upstreamBody), "",
			seen{"/items?page=2", "127.0.0.1", "", "load-key", "Load"}},
		{"unknown key", "/prod/items", unknownKey, 403, `{"message":"Forbidden"}`, "ForbiddenException", seen{}},
		{"no key", "/prod/items", "", 403, `{"message":"Forbidden"}`, "ForbiddenException", seen{}},
		{"throttled key, its one token", "/prod/items", throttledKey, 200, string(upstreamBody), "",
			seen{"/items", "127.0.0.1", "", "tight-key", "Tight"}},
		{"throttled key, no token left", "/prod/items", throttledKey, 429, `{"message":"Too Many Requests"}`, "TooManyRequestsException", seen{}},
		{"outside the stage", "/items", validKey, 404, `{"message":"Not Found"}`, "", seen{}},
	}
	for _, tt := range tests {
		mu.Lock()
		got = seen{}
		mu.Unlock()
		resp, body := get(tt.path, tt.key)
		mu.Lock()
		upstreamSaw := got
		mu.Unlock()
		if resp.StatusCode != tt.wantStatus || body != tt.wantBody {
			t.Errorf("%s: %d %q, want %d %q", tt.name, resp.StatusCode, body, tt.wantStatus, tt.wantBody)
		}
		if ct, et := resp.Header.Get("Content-Type"), resp.Header.Get("X-Amzn-Errortype"); ct != "application/json" || et != tt.wantErrorType {
			t.Errorf("%s: Content-Type %q, x-amzn-ErrorType %q; want application/json, %q", tt.name, ct, et, tt.wantErrorType)
		}
		if upstreamSaw != tt.wantSeen {
			t.Errorf("%s: upstream saw %+v, want %+v", tt.name, upstreamSaw, tt.wantSeen)
		}
	}

	// The master and its workers, all gone once stopped.
	workers := childrenOf(t, master.PID())
	if len(workers) != 2 {
		t.Errorf("nginx has %d workers, want 2", len(workers))
	}
	procs.StopAll()
	for _, pid := range append(workers, master.PID()) {
		if processExists(pid) {
			t.Errorf("nginx process %d still exists after Stop", pid)
		}
	}
}

// childrenOf lists the processes whose parent is pid, from /proc.
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

// processExists reports whether pid is a process that has not exited (a
// zombie has).
func processExists(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !os.IsNotExist(err)
	}
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(f) == 0 || f[0] != "Z"
}

// TestNginxTriesAnotherPort gives nginx a port another process holds
// first: it must start on the next one.
func TestNginxTriesAnotherPort(t *testing.T) {
	path := nginxOrSkip(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	var picked []string
	pick := func() (string, error) {
		addr, err := freePort()
		if len(picked) == 0 {
			addr = taken.Addr().String()
		}
		picked = append(picked, addr)
		return addr, err
	}
	var procs benchkit.Procs
	defer procs.StopAll()
	upstream := httptest.NewServer(fixedResponse(http.StatusOK, upstreamBody))
	defer upstream.Close()
	addr, _, err := startNginxOn(context.Background(), &procs, path, t.TempDir(), strings.TrimPrefix(upstream.URL, "http://"), 20*time.Second, pick)
	if err != nil {
		t.Fatal(err)
	}
	if len(picked) != 2 || addr != picked[1] {
		t.Errorf("nginx on %s after trying %q, want the second port", addr, picked)
	}
}
