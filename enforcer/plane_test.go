package enforcer

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/schemas"
)

// These tests run on the test's data plane (testPlane), as every gateway
// test does: make test runs the package on both.

// planeEnv is a gateway on the test's plane in front of upstream, with
// gwYAML's catalog; the server is returned for tests that stop it.
func planeEnv(t *testing.T, sc ServerConfig, upstream http.Handler) (gw *Gateway, url string, srv Server, events *eventLog) {
	t.Helper()
	up := httptest.NewServer(upstream)
	t.Cleanup(up.Close)
	events = &eventLog{}
	c := testCatalog(t, strings.ReplaceAll(gwYAML, "{{UPSTREAM}}", up.URL))
	// A clock a minute ahead at every reading: gwYAML's throttles hold
	// a token or three, and these tests are not about them.
	var clock atomic.Int64
	clock.Store(testEpoch.UnixNano())
	now := func() int64 { return clock.Add(int64(time.Minute)) }
	gw, err := New(Config{Events: events, Metrics: prometheus.NewRegistry(), Now: now}, c)
	if err != nil {
		t.Fatal(err)
	}
	url, srv = serveGateway(t, gw, sc)
	return gw, url, srv, events
}

func (l *eventLog) all() []schemas.UsageEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]schemas.UsageEvent(nil), l.evs...)
}

// heapPeak samples the heap in use until stop is called, and returns the
// largest growth over base it saw.
func heapPeak() (stop func() uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > base && ms.HeapInuse-base > peak.Load() {
					peak.Store(ms.HeapInuse - base)
				}
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		return peak.Load()
	}
}

// pattern is an endless reader of bytes; it allocates nothing.
type pattern struct{}

func (pattern) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a' + byte(i%26)
	}
	return len(p), nil
}

// Request and response bodies go through the gateway as streams: 64 MiB
// each way, with and without a Content-Length, grow the heap (gateway,
// upstream and client together) by far less than the bodies.
func TestStreamingKeepsMemoryFlat(t *testing.T) {
	const size = 64 << 20
	var upRead atomic.Int64
	_, url, _, events := planeEnv(t, ServerConfig{MaxBodyBytes: 2 * size}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/items": // POST: a sink
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				w.WriteHeader(500)
				return
			}
			upRead.Store(n)
			fmt.Fprint(w, n)
		case "/reports": // GET: a source, ?length=1 to declare its length
			if r.URL.Query().Get("length") == "1" {
				w.Header().Set("Content-Length", strconv.Itoa(size))
			}
			io.Copy(w, io.LimitReader(pattern{}, size))
		}
	}))
	client := &http.Client{}
	for _, tt := range []struct {
		name    string
		do      func() (*http.Response, error)
		in, out int64
	}{
		{"upload with a length", func() (*http.Response, error) {
			req, _ := http.NewRequest("POST", url+"/prod/items", io.LimitReader(pattern{}, size))
			req.ContentLength = size
			req.Header.Set("x-api-key", widget)
			return client.Do(req)
		}, size, 8},
		{"upload chunked", func() (*http.Response, error) {
			req, _ := http.NewRequest("POST", url+"/prod/items", io.NopCloser(io.LimitReader(pattern{}, size)))
			req.ContentLength = -1
			req.Header.Set("x-api-key", widget)
			return client.Do(req)
		}, size, 8},
		{"download with a length", func() (*http.Response, error) {
			req, _ := http.NewRequest("GET", url+"/prod/reports?length=1", nil)
			req.Header.Set("x-api-key", widget)
			return client.Do(req)
		}, 0, size},
		{"download chunked", func() (*http.Response, error) {
			req, _ := http.NewRequest("GET", url+"/prod/reports", nil)
			req.Header.Set("x-api-key", widget)
			return client.Do(req)
		}, 0, size},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// The first requests lay out the pools; measure from there.
			stop := heapPeak()
			resp, err := tt.do()
			if err != nil {
				stop()
				t.Fatal(err)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			peak := stop()
			if err != nil || resp.StatusCode != 200 || n != tt.out {
				t.Fatalf("status %d, %d bytes (%v); want 200 and %d bytes", resp.StatusCode, n, err, tt.out)
			}
			if tt.in > 0 && upRead.Load() != tt.in {
				t.Errorf("upstream read %d bytes, want %d", upRead.Load(), tt.in)
			}
			if peak > 16<<20 {
				t.Errorf("heap grew by %d MiB while %d MiB went through", peak>>20, max(tt.in, tt.out)>>20)
			}
			evs := events.all()
			if ev := evs[len(evs)-1]; ev.Status != 200 || ev.BytesIn != tt.in || ev.BytesOut != tt.out {
				t.Errorf("event status %d in %d out %d, want 200 %d %d", ev.Status, ev.BytesIn, ev.BytesOut, tt.in, tt.out)
			}
		})
	}
}

// HTTP/1.0: a kept-alive connection serves a second request; a response
// of unknown length ends with the connection (no chunks, which HTTP/1.0
// cannot read).
func TestHTTP10(t *testing.T) {
	_, url, _, _ := planeEnv(t, ServerConfig{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/reports" {
			io.WriteString(w, "part one;")
			w.(http.Flusher).Flush() // no Content-Length: chunked to the gateway
			io.WriteString(w, "part two")
			return
		}
		io.WriteString(w, "ok")
	}))
	c := rawConn(t, url)
	defer c.Close()
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /prod/items HTTP/1.0\r\nConnection: keep-alive\r\nx-api-key: "+widget+"\r\n\r\n")
	r, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	if r.StatusCode != 200 || string(b) != "ok" || r.Close {
		t.Fatalf("first: %d %q close=%v; want 200 \"ok\" and the connection kept", r.StatusCode, b, r.Close)
	}
	io.WriteString(c, "GET /prod/reports HTTP/1.0\r\nConnection: keep-alive\r\nx-api-key: "+widget+"\r\n\r\n")
	raw, err := io.ReadAll(br) // to the connection's end
	if err != nil {
		t.Fatal(err)
	}
	head, body, _ := strings.Cut(string(raw), "\r\n\r\n")
	if !strings.HasPrefix(head, "HTTP/1.") || !strings.Contains(head, " 200 ") || strings.Contains(strings.ToLower(head), "chunked") || body != "part one;part two" {
		t.Errorf("second response:\n%s\nwant 200, no chunks, the body until the connection closed", raw)
	}
}

// Expect: 100-continue: a refused request gets its answer and no "100
// Continue" (its body is never asked for); an admitted one gets "100
// Continue", then its answer.
func TestExpectContinue(t *testing.T) {
	_, url, _, _ := planeEnv(t, ServerConfig{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%d", len(b))
	}))
	for _, tt := range []struct {
		name, key string
		status    int
		cont      bool
	}{
		{"refused", "nokey", 403, false},
		{"admitted", widget, 200, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := rawConn(t, url)
			defer c.Close()
			br := bufio.NewReader(c)
			io.WriteString(c, "POST /prod/items HTTP/1.1\r\nHost: x\r\nx-api-key: "+tt.key+"\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(time.Second))
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(line, " 100 "); got != tt.cont {
				t.Fatalf("first line %q; 100 Continue: %v, want %v", line, got, tt.cont)
			}
			if tt.cont {
				for { // the rest of the 100 response (net/http sends the headers set so far)
					if l, err := br.ReadString('\n'); err != nil || l == "\r\n" {
						break
					}
				}
				io.WriteString(c, "abcd")
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if !tt.cont {
				br = bufio.NewReader(io.MultiReader(strings.NewReader(line), br))
			}
			r, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(r.Body)
			if r.StatusCode != tt.status || tt.cont && string(b) != "4" {
				t.Errorf("answer %d %q, want %d", r.StatusCode, b, tt.status)
			}
		})
	}
}

// Shutdown lets a request in flight finish, and meters it, before it
// returns; it closes idle connections and accepts no new ones.
func TestShutdownFinishesRequestsInFlight(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	_, url, srv, events := planeEnv(t, ServerConfig{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/reports" {
			arrived <- struct{}{}
			<-release
		}
		io.WriteString(w, "done")
	}))
	idle := rawConn(t, url) // an idle keep-alive connection
	defer idle.Close()
	io.WriteString(idle, "GET /prod/health HTTP/1.1\r\nHost: x\r\n\r\n")
	ibr := bufio.NewReader(idle)
	if r, err := http.ReadResponse(ibr, nil); err != nil || r.StatusCode != 200 {
		t.Fatalf("idle connection's request: %v", err)
	} else {
		io.Copy(io.Discard, r.Body)
	}

	type result struct {
		status int
		body   string
		err    error
	}
	got := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("GET", url+"/prod/reports", nil)
		req.Header.Set("x-api-key", widget)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			got <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- result{resp.StatusCode, string(b), err}
	}()
	<-arrived
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Shutdown(context.Background()) }()

	// The idle connection is closed, and new ones are refused.
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := ibr.ReadByte(); err == nil {
		t.Error("the idle connection got bytes, want it closed")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "http://"), time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the listener still accepts after Shutdown")
		}
		time.Sleep(10 * time.Millisecond) // the listener closes as Shutdown starts
	}
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	default:
	}
	close(release)
	if r := <-got; r.err != nil || r.status != 200 || r.body != "done" {
		t.Errorf("request in flight: %d %q %v, want 200 \"done\"", r.status, r.body, r.err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	evs := events.all()
	if len(evs) == 0 || evs[len(evs)-1].Status != 200 || evs[len(evs)-1].Resource != "/reports" {
		t.Errorf("the request in flight was not metered before Shutdown returned: %+v", evs)
	}
}

// A client that sends requests and never reads the answers holds its
// connection no longer than the exchange's bound: the gateway's write,
// blocked on a full socket, is cut and the connection closed.
func TestRefusalsToAClientThatDoesNotRead(t *testing.T) {
	if testPlane(t) == NetHTTP {
		t.Skip("the net/http plane bounds writes only within an admitted exchange")
	}
	_, url, _, _ := planeEnv(t, ServerConfig{ExchangeTimeout: 300 * time.Millisecond}, http.NotFoundHandler())
	c := rawConn(t, url)
	defer c.Close()
	req := []byte(strings.Repeat("GET /prod/items HTTP/1.1\r\nHost: x\r\n\r\n", 100)) // 403s, the connection kept
	start := time.Now()
	var err error
	for written := 0; err == nil && written < 256<<20; written += len(req) {
		_, err = c.Write(req)
	}
	if err == nil {
		t.Fatal("256 MiB of requests written to a gateway whose answers nobody reads")
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("the connection was cut after %v; the exchange bound is 300ms", d)
	}
}
