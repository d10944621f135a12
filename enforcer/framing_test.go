package enforcer

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/schemas"
)

// rawExchange writes payload to the gateway in one write and reads every
// response until the gateway closes the connection. closed reports that
// it did (rather than the read deadline passing).
// rawConn dials the gateway at url, with 5 s to do everything on it.
func rawConn(t *testing.T, url string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

func rawExchange(t *testing.T, url, payload string) (statuses []int, closed bool) {
	t.Helper()
	c := rawConn(t, url)
	defer c.Close()
	if _, err := io.WriteString(c, payload); err != nil {
		t.Fatal(err)
	}
	return readResponses(bufio.NewReader(c))
}

func readResponses(br *bufio.Reader) (statuses []int, closed bool) {
	for {
		r, err := http.ReadResponse(br, nil)
		if err != nil {
			var ne net.Error
			return statuses, !errors.As(err, &ne) || !ne.Timeout()
		}
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
		statuses = append(statuses, r.StatusCode)
	}
}

func (e *env) upstreamSaw() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var s []string
	for _, r := range e.seen {
		s = append(s, r.Method+" "+r.URL.Path)
	}
	return s
}

// eventStatuses returns the status of every request metered so far, in
// order, counted rejections (emitted per minute, here flushed first) last:
// a counted event stands for Requests() requests.
func (e *env) eventStatuses() []int {
	e.gw.FlushRejections()
	e.mu.Lock()
	defer e.mu.Unlock()
	var s []int
	for _, ev := range e.events {
		for range ev.Requests() {
			s = append(s, int(ev.Status))
		}
	}
	return s
}

// The requests of the framing matrix. Each case's payload ends with
// smuggled: a request with widget's key that must reach the upstream only
// where every request before it was answered and the connection kept.
const (
	health   = "GET /prod/health HTTP/1.1\r\nHost: x\r\n\r\n"
	smuggled = "GET /prod/reports HTTP/1.1\r\nHost: x\r\nx-api-key: " + widget + "\r\nConnection: close\r\n\r\n"
	// A chunked body of one chunk, "abcd", as it reads chunked.
	chunks = "4\r\nabcd\r\n0\r\n\r\n"
)

// post is a POST /prod/items with widget's key, the given header lines
// (each ending in its own line ending) and body; eol ends the request and
// Host lines.
func post(proto, eol, headers, body string) string {
	return "POST /prod/items " + proto + eol + "Host: x" + eol + "x-api-key: " + widget + eol + headers + eol + body
}

func TestFramingMatrix(t *testing.T) {
	const (
		up  = "POST /items"
		rep = "GET /reports"
		hl  = "GET /health"
	)
	tests := []struct {
		name     string
		payload  string
		statuses []int    // answers the client reads, then the connection closes
		upstream []string // what reached the upstream, in order
		byGo     bool     // net/http refused the request before the gateway saw it
		// On the fasthttp plane, where it differs: what the client and
		// the upstream get. Every answer there is metered, the parser's
		// refusals included.
		fast *fastFraming
	}{
		// Line endings.
		{"CL+TE, CRLF", post("HTTP/1.1", "\r\n", "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", chunks) + smuggled, []int{400}, nil, false, nil},
		{"CL+TE, bare LF", post("HTTP/1.1", "\n", "Content-Length: 4\nTransfer-Encoding: chunked\n", chunks) + smuggled, []int{400}, nil, false, nil},
		{"CL+TE, mixed, LF last", post("HTTP/1.1", "\r\n", "Content-Length: 4\nTransfer-Encoding: chunked\n", chunks) + smuggled, []int{400}, nil, false, nil},
		{"CL+TE, mixed, LF then CRLF blank line", "POST /prod/items HTTP/1.1\nHost: x\r\nx-api-key: " + widget + "\nTransfer-Encoding: chunked\r\nContent-Length: 4\n\r\n" + chunks + smuggled, []int{400}, nil, false, nil},
		{"TE alone, bare LF", post("HTTP/1.1", "\n", "Transfer-Encoding: chunked\n", chunks) + smuggled, []int{200, 200}, []string{up, rep}, false, nil},
		{"CL alone, bare LF", post("HTTP/1.1", "\n", "Content-Length: 4\n", "abcd") + smuggled, []int{200, 200}, []string{up, rep}, false, nil},

		// Pipelining: the ambiguous request second or last.
		{"pipelined, CL+TE second, CRLF", health + post("HTTP/1.1", "\r\n", "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", chunks) + smuggled, []int{200, 400}, []string{hl}, false, nil},
		{"pipelined, CL+TE second, bare LF", health + post("HTTP/1.1", "\n", "Content-Length: 4\nTransfer-Encoding: chunked\n", chunks) + smuggled, []int{200, 400}, []string{hl}, false, nil},
		{"pipelined, CL+TE third", health + health + post("HTTP/1.1", "\r\n", "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", chunks) + smuggled, []int{200, 200, 400}, []string{hl, hl}, false, nil},
		{"pipelined behind a body", post("HTTP/1.1", "\r\n", "Content-Length: 4\r\n", "abcd") + post("HTTP/1.1", "\r\n", "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", chunks) + smuggled, []int{200, 400}, []string{up}, false, nil},
		// A chunked request the gateway cannot prove unambiguous fails
		// closed, even without Content-Length.
		// On the fasthttp plane the header block is the request's own:
		// nothing to prove, nothing refused.
		{"pipelined, TE alone second", health + post("HTTP/1.1", "\r\n", "Transfer-Encoding: chunked\r\n", chunks) + smuggled, []int{200, 400}, []string{hl}, false,
			&fastFraming{[]int{200, 200, 200}, []string{hl, up, rep}}},
		{"pipelined, CL alone second", health + post("HTTP/1.1", "\r\n", "Content-Length: 4\r\n", "abcd") + smuggled, []int{200, 200, 200}, []string{hl, up, rep}, false, nil},

		// Transfer-Encoding spellings.
		{"TE Chunked", post("HTTP/1.1", "\r\n", "Content-Length: 4\r\nTransfer-Encoding: Chunked\r\n", chunks) + smuggled, []int{400}, nil, false, nil},
		{"te and content-length in lower case", post("HTTP/1.1", "\r\n", "content-length: 4\r\ntransfer-encoding: chunked\r\n", chunks) + smuggled, []int{400}, nil, false, nil},
		{"TE with spaces", post("HTTP/1.1", "\r\n", "Content-Length: 4\r\nTransfer-Encoding:   chunked  \r\n", chunks) + smuggled, []int{400}, nil, false, nil},
		{"TE with tabs", post("HTTP/1.1", "\r\n", "Content-Length: 4\r\nTransfer-Encoding:\tchunked\t\r\n", chunks) + smuggled, []int{400}, nil, false, nil},
		{"TE gzip, chunked", post("HTTP/1.1", "\r\n", "Content-Length: 4\r\nTransfer-Encoding: gzip, chunked\r\n", chunks) + smuggled, []int{501}, nil, true, nil},
		{"TE twice", post("HTTP/1.1", "\r\n", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", chunks) + smuggled, []int{501}, nil, true, nil},
		{"TE unknown coding", post("HTTP/1.1", "\r\n", "Content-Length: 4\r\nTransfer-Encoding: x-smuggle\r\n", chunks) + smuggled, []int{501}, nil, true, nil},
		{"TE name with a space before the colon", post("HTTP/1.1", "\r\n", "Content-Length: 5\r\nTransfer-Encoding : chunked\r\n", chunks) + smuggled, []int{400}, nil, true, nil},

		// obs-fold: a folded line continues the field before it.
		{"TE value folded", post("HTTP/1.1", "\r\n", "Content-Length: 4\r\nTransfer-Encoding:\r\n chunked\r\n", chunks) + smuggled, []int{400}, nil, false, nil},
		{"CL folded into another field", post("HTTP/1.1", "\r\n", "Transfer-Encoding: chunked\r\nX-Note: a\r\n Content-Length: 4\r\n", chunks) + smuggled, []int{200, 200}, []string{up, rep}, false, nil},
		{"CL folded, bare LF", post("HTTP/1.1", "\n", "Transfer-Encoding: chunked\nX-Note: a\n\tContent-Length: 4\n", chunks) + smuggled, []int{200, 200}, []string{up, rep}, false, nil},
		{"CL+TE with a folded line between", post("HTTP/1.1", "\r\n", "Content-Length: 4\r\nX-Note: a\r\n b\r\nTransfer-Encoding: chunked\r\n", chunks) + smuggled, []int{400}, nil, false, nil},

		// A chunked request that announces trailers cannot be proven
		// unambiguous (see inspectBlock).
		{"TE with a Trailer", post("HTTP/1.1", "\r\n", "Transfer-Encoding: chunked\r\nTrailer: X-Sum\r\n", "4\r\nabcd\r\n0\r\nX-Sum: 1\r\n\r\n") + smuggled, []int{400}, nil, false, nil},

		// Content-Length twice.
		// fasthttp refuses any second Content-Length (RFC 9112 §6.3 lets
		// a recipient refuse it or take one).
		{"CL twice, same value", post("HTTP/1.1", "\r\n", "Content-Length: 4\r\nContent-Length: 4\r\n", "abcd") + smuggled, []int{200, 200}, []string{up, rep}, false,
			&fastFraming{[]int{400}, nil}},
		{"CL twice, values differ", post("HTTP/1.1", "\r\n", "Content-Length: 4\r\nContent-Length: 9\r\n", "abcd") + smuggled, []int{400}, nil, true, nil},
		{"CL twice and TE", post("HTTP/1.1", "\r\n", "Content-Length: 4\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n", chunks) + smuggled, []int{400}, nil, false, nil},

		// HTTP/1.0 with Transfer-Encoding: faulty framing (RFC 9112 §6.1).
		{"HTTP/1.0 TE and CL", post("HTTP/1.0", "\r\n", "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 15\r\n", chunks) + smuggled, []int{400}, nil, false, nil},
		{"HTTP/1.0 TE alone", post("HTTP/1.0", "\r\n", "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n", chunks) + smuggled, []int{400}, nil, false, nil},
		{"HTTP/1.0 TE, bare LF", post("HTTP/1.0", "\n", "Connection: keep-alive\nTransfer-Encoding: chunked\nContent-Length: 15\n", chunks) + smuggled, []int{400}, nil, false, nil},
		{"HTTP/1.0 CL", post("HTTP/1.0", "\r\n", "Connection: keep-alive\r\nContent-Length: 4\r\n", "abcd") + smuggled, []int{200, 200}, []string{up, rep}, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, gwYAML)
			fast := testPlane(t) == FastHTTP
			if fast && tt.fast != nil {
				tt.statuses, tt.upstream = tt.fast.statuses, tt.fast.upstream
			}
			statuses, closed := rawExchange(t, e.url, tt.payload)
			if !slices.Equal(statuses, tt.statuses) || !closed {
				t.Errorf("client got %v (closed: %v), want %v and the connection closed", statuses, closed, tt.statuses)
			}
			if got := e.upstreamSaw(); !slices.Equal(got, tt.upstream) {
				t.Errorf("upstream received %q, want %q", got, tt.upstream)
			}
			// One event per answer the gateway gave; net/http's own
			// refusals never reach it.
			want := tt.statuses
			if tt.byGo && !fast {
				want = nil
			}
			if got := e.eventStatuses(); !slices.Equal(got, want) {
				t.Errorf("events %v, want %v", got, want)
			}
		})
	}
}

// fastFraming is a framing case's outcome on the fasthttp plane.
type fastFraming struct {
	statuses []int
	upstream []string
}

// TestRejectionClosesTheConnection is request smuggling through a shared
// connection (a front proxy that reuses its upstream connections for
// different clients): after the 400, what an attacker sends behind the
// ambiguous request must not join the next client's request on the same
// connection, where it would be admitted with that client's key and
// billed to it.
func TestRejectionClosesTheConnection(t *testing.T) {
	e := newEnv(t, gwYAML)
	c, br := e.dial(t, 5*time.Second)
	// The attacker: an ambiguous request, and the start of another
	// without a key.
	io.WriteString(c, "POST /prod/items HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"+
		"GET /prod/reports HTTP/1.1\r\nHost: x\r\nX-Ignore: ")
	r, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 400 || !r.Close {
		t.Errorf("ambiguous request: %d, Connection: close %v; want 400 and close", r.StatusCode, r.Close)
	}
	// The next client, on the same connection.
	io.WriteString(c, "x\r\nx-api-key: "+widget+"\r\n\r\n")
	if statuses, closed := readResponses(br); len(statuses) != 0 || !closed {
		t.Errorf("after the 400 the client got %v (closed: %v), want nothing and the connection closed", statuses, closed)
	}
	if got := e.upstreamSaw(); len(got) != 0 {
		t.Errorf("upstream received %q", got)
	}
	e.gw.FlushRejections() // a 400 before a key is known is counted per minute
	e.mu.Lock()
	defer e.mu.Unlock()
	var n int64
	for _, ev := range e.events {
		if ev.KeyID != "" || ev.Decision != schemas.DecisionBadRequest {
			t.Errorf("event %+v: billed to a key", ev)
		}
		n += ev.Requests()
	}
	if n != 1 {
		t.Errorf("%d requests metered, want 1", n)
	}
}

// A rejection of a request with a body closes the connection: what
// follows the refused request on it is never read. A rejection of a
// request without a body leaves nothing unread, and keeps the connection
// for the client's next request, as an admitted request does.
func TestRejectionsCloseTheConnection(t *testing.T) {
	e := newEnvServer(t, strings.Replace(gwYAML, "gateway:\n", "gateway:\n  unknownRouteStatus: 404\n", 1), ServerConfig{MaxBodyBytes: 10})
	const healthClose = "GET /prod/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	tests := []struct {
		name    string
		request string
		status  int
		keep    bool // no body: the connection serves the next request
	}{
		{"400 two keys", "GET /prod/items HTTP/1.1\r\nHost: x\r\nx-api-key: " + widget + "\r\nX-API-Key: " + widget + "\r\n\r\n", 400, true},
		{"400 two keys, with a body", "POST /prod/items HTTP/1.1\r\nHost: x\r\nx-api-key: " + widget + "\r\nX-API-Key: " + widget + "\r\nContent-Length: 4\r\n\r\nabcd", 400, false},
		{"400 dot segment", "GET /prod/items/../items HTTP/1.1\r\nHost: x\r\nx-api-key: " + widget + "\r\n\r\n", 400, true},
		{"403 no key", "GET /prod/items HTTP/1.1\r\nHost: x\r\n\r\n", 403, true},
		{"403 no key, empty body", "POST /prod/items HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 403, true},
		{"403 no key, with a body", "POST /prod/items HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd", 403, false},
		{"403 no key, chunked", "POST /prod/items HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks, 403, false},
		{"404 undeclared", "GET /prod/nothing HTTP/1.1\r\nHost: x\r\n\r\n", 404, true},
		{"404 undeclared, with a body", "POST /prod/nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd", 404, false},
		{"413 body too large", "POST /prod/items HTTP/1.1\r\nHost: x\r\nx-api-key: " + widget + "\r\nContent-Length: 11\r\n\r\n", 413, false},
		{"429 throttled, with a body", "POST /prod/items HTTP/1.1\r\nHost: x\r\nx-api-key: " + widget + "\r\nContent-Length: 1\r\n\r\na", 429, false},
	}
	// The POST method's bucket holds one token: take it.
	if r := e.do("POST", "/prod/items", "x-api-key", widget); r.status != 200 {
		t.Fatalf("first POST: %d", r.status)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.nSeen()
			want, wantSeen := []int{tt.status}, 0
			payload := tt.request + health
			if tt.keep {
				want, wantSeen = []int{tt.status, 200}, 1
				payload = tt.request + healthClose
			}
			statuses, closed := rawExchange(t, e.url, payload)
			if !slices.Equal(statuses, want) || !closed {
				t.Errorf("client got %v (closed: %v), want %v and the connection closed after the last", statuses, closed, want)
			}
			if n := e.nSeen() - before; n != wantSeen {
				t.Errorf("upstream received %d requests, want %d", n, wantSeen)
			}
			e.gw.FlushRejections() // rejections before a key is known are counted per minute
			var ev schemas.UsageEvent
			e.mu.Lock()
			for _, x := range e.events {
				if x.Status != 200 {
					ev = x // the last rejection's
				}
			}
			e.mu.Unlock()
			if int(ev.Status) != tt.status || ev.Requests() != 1 {
				t.Errorf("event status %d for %d requests, want %d for 1", ev.Status, ev.Requests(), tt.status)
			}
		})
	}
}

// A block recorded from the middle of a request's headers (net/http had
// buffered the start of a pipelined request when the connection went
// idle, and a read split the rest at an attacker's choosing) must not
// pass for the request, least of all without its Content-Length.
func TestInspectBlockRefusesPartialBlocks(t *testing.T) {
	tests := []struct {
		name string
		req  string
		from string // the recorded block starts at its first occurrence after the request line
	}{
		{"split in a header value", "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nX-A: aPOST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "POST"},
		{"split in a Trailer line", "POST /p HTTP/1.1\r\nContent-Length: 4\r\nTrailer: xPOST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: xPOST /p HTTP/1.1\r\n\r\n", "POST"},
		{"split in an obs-fold line", "POST /p HTTP/1.1\r\nContent-Length: 4\r\nX-A: 1\r\n POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", "POST"},
		{"split in the Host line", "POST /p HTTP/1.1\nContent-Length: 4\nHost:POST /p HTTP/1.1\nTransfer-Encoding: chunked\n\n", "POST"},
		{"from the next line", "POST /p HTTP/1.1\r\nContent-Length: 4\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", "Host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(tt.req)))
			if err != nil {
				t.Fatal(err)
			}
			if own, ok := recordAll([]byte(tt.req)); ok {
				if f, ok := inspectBlock(own, r); ok && f.contentLength == 0 {
					t.Fatalf("the request's own block passes without its Content-Length")
				}
			}
			i := strings.Index(tt.req[1:], tt.from) + 1
			block, complete := recordAll([]byte(tt.req[i:]))
			if !complete {
				t.Fatalf("block from %d incomplete", i)
			}
			if f, ok := inspectBlock(block, r); ok {
				t.Errorf("block %q passes for the request (framing %+v)", block, f)
			}
		})
	}
}

// NewServer's server on a listener WrapListener did not wrap refuses
// every request, where it used to serve them without the framing checks
// and body limits.
func TestUnwrappedListenerFailsClosed(t *testing.T) {
	gw := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "proxied") })
	for _, wrap := range []bool{false, true} {
		srv := httptest.NewUnstartedServer(nil)
		srv.Config = NewServer(gw, ServerConfig{})
		if wrap {
			srv.Listener = WrapListener(srv.Listener)
		}
		srv.Start()
		res, err := http.Get(srv.URL + "/items")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		srv.Close()
		if want := map[bool]int{false: 500, true: 200}[wrap]; res.StatusCode != want {
			t.Errorf("wrapped %v: %d %s, want %d", wrap, res.StatusCode, body, want)
		}
	}
}
