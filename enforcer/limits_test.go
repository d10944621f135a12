package enforcer

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/internal/poll"
	"github.com/tollgate/tollgate/schemas"
)

// dial opens a raw connection to the gateway with a deadline on it.
func (e *env) dial(t *testing.T, d time.Duration) (net.Conn, *bufio.Reader) {
	t.Helper()
	c := rawConn(t, e.url)
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(d))
	return c, bufio.NewReader(c)
}

// Clients that send headers and never their body must not hold the
// gateway: each is refused at once without its body being read, its
// connection is closed, and a keyed request is served meanwhile.
func TestStalledBodiesDoNotHoldTheGateway(t *testing.T) {
	e := newEnv(t, gwYAML)
	const n = 60
	var wg sync.WaitGroup
	errs := make(chan string, n)
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, br := e.dial(t, 5*time.Second)
			// No key: 403, whatever the body would have been.
			fmt.Fprintf(c, "POST /prod/items HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n%s", strings.Repeat("b", i%3))
			statuses, closed := readResponses(br)
			if len(statuses) != 1 || statuses[0] != 403 || !closed {
				errs <- fmt.Sprintf("stalled client %d got %v (closed: %v), want [403] and the connection closed", i, statuses, closed)
			}
		}()
	}
	if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
		t.Errorf("keyed request among stalled ones: %d", r.status)
	}
	wg.Wait()
	close(errs)
	for s := range errs {
		t.Error(s)
	}
	// Answers are immediate; closing waits for the linger (500 ms).
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("%d stalled clients took %v to be refused and closed", n, d)
	}
	e.gw.FlushRejections() // the 403s without a key are counted per minute
	e.mu.Lock()
	defer e.mu.Unlock()
	var metered int64
	for _, ev := range e.events {
		metered += ev.Requests()
	}
	if metered != int64(n+1) {
		t.Errorf("%d requests metered, want %d", metered, n+1)
	}
}

// An admitted request whose body stops coming is cut at the body deadline.
func TestStalledBodyIsCut(t *testing.T) {
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			e := newEnvServer(t, gwYAML, ServerConfig{BodyTimeout: 200 * time.Millisecond})
			c, br := e.dial(t, 5*time.Second)
			start := time.Now()
			if chunked {
				io.WriteString(c, "POST /prod/items HTTP/1.1\r\nHost: x\r\nx-api-key: "+widget+"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
			} else {
				io.WriteString(c, "POST /prod/items HTTP/1.1\r\nHost: x\r\nx-api-key: "+widget+"\r\nContent-Length: 100\r\n\r\nab")
			}
			statuses, closed := readResponses(br)
			if len(statuses) != 1 || statuses[0] != 408 || !closed {
				t.Errorf("client got %v (closed: %v), want [408] and the connection closed", statuses, closed)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("cut after %v; the body deadline is 200ms", d)
			}
			ev := e.lastEvent()
			if ev.Status != 408 || ev.Decision != schemas.DecisionAllowed {
				t.Errorf("event status %d decision %v, want 408 allowed", ev.Status, ev.Decision)
			}
			// The upstream's read fails when the gateway aborts the
			// request, maybe after this point: it must not succeed.
			e.mu.Lock()
			defer e.mu.Unlock()
			for _, n := range e.bodies {
				if n != -1 {
					t.Errorf("upstream read a body of %d bytes", n)
				}
			}
		})
	}
}

// A body whose declared length is over the limit is refused before a byte
// of it is read: the client here never sends it.
func TestContentLengthOverTheLimit(t *testing.T) {
	e := newEnvServer(t, gwYAML, ServerConfig{MaxBodyBytes: 1000})
	tests := []struct {
		name   string
		length int
		status int
	}{
		{"at the limit", 1000, 200},
		{"over the limit", 1001, 413},
		{"far over", 1 << 40, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.advance(time.Minute)
			before := e.nSeen()
			c, br := e.dial(t, 5*time.Second)
			fmt.Fprintf(c, "POST /prod/items HTTP/1.1\r\nHost: x\r\nx-api-key: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", widget, tt.length)
			if tt.status == 200 {
				io.WriteString(c, strings.Repeat("a", tt.length))
			}
			r, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(r.Body)
			if r.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", r.StatusCode, tt.status)
			}
			if tt.status == 413 {
				wantAWS(t, resp{r.StatusCode, string(b), r.Header}, 413, "Request Too Long", "")
				if n := e.nSeen(); n != before {
					t.Errorf("upstream received %d requests", n-before)
				}
				e.gw.FlushRejections() // refused before its key was looked at: counted per minute
				if ev := e.lastEvent(); ev.Status != 413 || ev.Decision != schemas.DecisionBadRequest || ev.BytesIn != 0 || ev.Requests() != 1 {
					t.Errorf("event %+v, want status 413, bad request, no bytes in", ev)
				}
			}
		})
	}
}

// A chunked body that grows past the limit is cut, and the upstream
// request aborted.
func TestChunkedBodyOverTheLimit(t *testing.T) {
	e := newEnvServer(t, gwYAML, ServerConfig{MaxBodyBytes: 1000})
	tests := []struct {
		name   string
		chunks []int
		status int
	}{
		{"under", []int{600, 399}, 200},
		{"at the limit", []int{600, 400}, 200},
		{"one byte over", []int{600, 401}, 413},
		{"far over", []int{600, 600, 600, 600}, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.advance(time.Minute)
			e.mu.Lock()
			e.bodies = nil
			e.mu.Unlock()
			c, br := e.dial(t, 5*time.Second)
			var b strings.Builder
			total := 0
			fmt.Fprintf(&b, "POST /prod/items HTTP/1.1\r\nHost: x\r\nx-api-key: %s\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n", widget)
			for _, n := range tt.chunks {
				fmt.Fprintf(&b, "%x\r\n%s\r\n", n, strings.Repeat("c", n))
				total += n
			}
			b.WriteString("0\r\n\r\n")
			io.WriteString(c, b.String())
			statuses, closed := readResponses(br)
			if len(statuses) != 1 || statuses[0] != tt.status || !closed {
				t.Fatalf("client got %v (closed: %v), want [%d]", statuses, closed, tt.status)
			}
			ev := e.lastEvent()
			if int(ev.Status) != tt.status || ev.Decision != schemas.DecisionAllowed {
				t.Errorf("event status %d decision %v, want %d allowed", ev.Status, ev.Decision, tt.status)
			}
			e.mu.Lock()
			defer e.mu.Unlock()
			for _, n := range e.bodies {
				if tt.status == 413 && n != -1 || tt.status == 200 && n != total {
					t.Errorf("upstream read a body of %d bytes (-1: failed); sent %d", n, total)
				}
			}
		})
	}
}

// The exchange deadline bounds the upstream's whole answer, not only its
// headers: 504 if nothing was answered yet, a cut connection if the body
// was streaming.
func TestExchangeDeadline(t *testing.T) {
	e := newEnvServer(t, gwYAML, ServerConfig{ExchangeTimeout: 300 * time.Millisecond})
	// The header timeout alone would wait 10 s.
	c := e.catalogWith(func(c *catalog.Catalog) { c.Gateway.UpstreamTimeout = catalog.Duration(10 * time.Second) })
	if err := e.gw.Update(c); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	wantAWS(t, e.do("GET", "/prod/slow", "x-api-key", widget), 504, "Endpoint request timed out", "")
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("504 after %v; the exchange deadline is 300ms", d)
	}
	if ev := e.lastEvent(); ev.Status != 504 || ev.Decision != schemas.DecisionAllowed {
		t.Errorf("event status %d decision %v, want 504 allowed", ev.Status, ev.Decision)
	}

	e.advance(time.Minute)
	start = time.Now()
	conn, br := e.dial(t, 5*time.Second)
	io.WriteString(conn, "GET /prod/dribble HTTP/1.1\r\nHost: x\r\nx-api-key: "+widget+"\r\n\r\n")
	r, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(r.Body)
	if r.StatusCode != 200 || string(body) != "first part;" || err == nil {
		t.Errorf("dribbling upstream: %d %q, error %v; want 200, the first part, then a cut", r.StatusCode, body, err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("cut after %v; the exchange deadline is 300ms", d)
	}
	ev := e.lastEvent()
	if ev.Status != 504 || ev.Decision != schemas.DecisionAllowed || ev.BytesOut != int64(len("first part;")) {
		t.Errorf("event status %d decision %v bytes out %d, want 504 allowed %d", ev.Status, ev.Decision, ev.BytesOut, len("first part;"))
	}

	// The deadline is per request: a kept-alive connection serves the
	// next one in full.
	e.advance(time.Minute)
	if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
		t.Errorf("after the cut: %d", r.status)
	}
}

// A client that stops reading holds its exchange no longer than the
// deadline: the write the proxy is blocked in is cut too, not only reads.
func TestExchangeDeadlineCutsAStalledReader(t *testing.T) {
	e := newEnvServer(t, gwYAML, ServerConfig{ExchangeTimeout: 300 * time.Millisecond})
	conn, _ := e.dial(t, 10*time.Second)
	start := time.Now()
	io.WriteString(conn, "GET /prod/huge HTTP/1.1\r\nHost: x\r\nx-api-key: "+widget+"\r\n\r\n")
	// Never read: the gateway's writes block once the socket buffers
	// are full, until the deadline cuts them.
	var ev schemas.UsageEvent
	poll.Until(t, 5*time.Second, 20*time.Millisecond, "the exchange of a client that reads nothing is metered", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		if n := len(e.events); n > 0 {
			ev = e.events[n-1]
		}
		return ev.Status != 0
	})
	if ev.Status != 504 || ev.Decision != schemas.DecisionAllowed {
		t.Fatalf("after %v: event %+v, want the exchange metered as 504 once its 300ms deadline cut it", time.Since(start), ev)
	}
	if ev.BytesOut >= 256<<20 {
		t.Errorf("the whole body was written (%d bytes) to a client that read nothing", ev.BytesOut)
	}
}

// An upstream that fails mid-body makes the reverse proxy abort the
// response (net/http cuts the connection); the request is still metered.
func TestUpstreamCutMidBodyIsMetered(t *testing.T) {
	e := newEnv(t, gwYAML)
	conn, br := e.dial(t, 5*time.Second)
	io.WriteString(conn, "GET /prod/cut HTTP/1.1\r\nHost: x\r\nx-api-key: "+widget+"\r\n\r\n")
	r, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(r.Body)
	if r.StatusCode != 200 || string(body) != "first part;" || err == nil {
		t.Errorf("client got %d %q, error %v; want 200, the first part, then a cut", r.StatusCode, body, err)
	}
	ev := e.lastEvent()
	if ev.Status != 502 || ev.Decision != schemas.DecisionAllowed || ev.BytesOut != int64(len("first part;")) {
		t.Errorf("event status %d decision %v bytes out %d, want 502 allowed %d", ev.Status, ev.Decision, ev.BytesOut, len("first part;"))
	}
}

func TestUpstreamHeadersTooLarge(t *testing.T) {
	e := newEnv(t, gwYAML)
	wantAWS(t, e.do("GET", "/prod/bigheaders", "x-api-key", widget), 502, "Bad Gateway", "")
	if ev := e.lastEvent(); ev.Status != 502 || ev.Decision != schemas.DecisionAllowed {
		t.Errorf("event status %d decision %v, want 502 allowed", ev.Status, ev.Decision)
	}
}

func TestServerConfigValidate(t *testing.T) {
	if err := (ServerConfig{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
	err := ServerConfig{BodyTimeout: -1, MaxBodyBytes: -5}.Validate()
	if err == nil || !strings.Contains(err.Error(), "BodyTimeout must not be negative, got -1") || !strings.Contains(err.Error(), "MaxBodyBytes must not be negative, got -5") {
		t.Errorf("err = %v", err)
	}
}
