package reportapi

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/poll"
)

// bodyProbe counts, across requests, the body bytes the authenticator has
// read and the requests whose body it has started to read: the tests
// wait on these instead of sleeping.
type bodyProbe struct {
	read    atomic.Int64
	started atomic.Int64
}

type probedBody struct {
	io.ReadCloser
	p    *bodyProbe
	once sync.Once
}

func (b *probedBody) Read(p []byte) (int, error) {
	b.once.Do(func() { b.p.started.Add(1) })
	n, err := b.ReadCloser.Read(p)
	b.p.read.Add(int64(n))
	return n, err
}

// newProbedServer serves a's middleware in front of a handler that
// answers the length of the body it was handed.
func newProbedServer(t *testing.T, a *authenticator) (*httptest.Server, *bodyProbe) {
	t.Helper()
	p := &bodyProbe{}
	mw := a.middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	}))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = &probedBody{ReadCloser: r.Body, p: p}
		mw.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, p
}

// rawPost opens a connection to srv and sends the head of a POST to path
// declaring a body of declared bytes, signed with a wrong secret by
// someone who knows the access key id; then the first sent bytes of it.
func rawPost(t *testing.T, srv *httptest.Server, path string, declared, sent int) net.Conn {
	t.Helper()
	req, _ := http.NewRequest("POST", srv.URL+path, nil)
	bogus := testCreds
	bogus.SecretAccessKey = "wrongwrongwrongwrongwrongwrongwrongwrong"
	sign(t, req, nil, bogus, "us-east-1", time.Now())
	return dialHead(t, srv, req, declared, sent)
}

// dialHead opens a connection to srv and sends req's head, declaring a
// body of declared bytes, then the first sent bytes of that body.
func dialHead(t *testing.T, srv *httptest.Server, req *http.Request, declared, sent int) net.Conn {
	t.Helper()
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", req.Method, req.URL.RequestURI(), req.Host, declared)
	req.Header.Write(&b)
	b.WriteString("\r\n")
	b.Write(bytes.Repeat([]byte("a"), sent))
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	return c
}

// answer reads the response on c, waiting at most wait.
func answer(c net.Conn, wait time.Duration) (result, error) {
	c.SetReadDeadline(time.Now().Add(wait))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{resp.StatusCode, resp.Header.Get("x-amzn-ErrorType"), string(b)}, nil
}

// signedPost sends a correctly signed POST of size bytes.
func signedPost(t *testing.T, srv *httptest.Server, path string, size int) result {
	t.Helper()
	body := bytes.Repeat([]byte("a"), size)
	r, _ := http.NewRequest("POST", srv.URL+path, bytes.NewReader(body))
	sign(t, r, body, testCreds, "us-east-1", time.Now())
	return send(t, r)
}

// Callers who know the access key id start bodies and stall, or trickle
// them a byte at a time: a correctly signed large body still gets in,
// and each stalled one is cut at the body deadline with 408.
func TestStalledBodiesDoNotLockOut(t *testing.T) {
	a := newAuthenticator(testCreds, time.Now)
	a.bodyTimeout = 300 * time.Millisecond
	srv, probe := newProbedServer(t, a)
	const stalled, sent = 8, 64<<10 + 1
	var conns []net.Conn
	for range stalled {
		conns = append(conns, rawPost(t, srv, "/apikeys?mode=import&format=csv", 1<<20, sent))
	}
	trickle := rawPost(t, srv, "/apikeys", 1<<10, 1)
	go func() {
		for {
			time.Sleep(10 * time.Millisecond)
			if _, err := trickle.Write([]byte("a")); err != nil {
				return
			}
		}
	}()
	conns = append(conns, trickle)
	poll.Until(t, 10*time.Second, time.Millisecond, "the stalled bodies are read", func() bool { return probe.read.Load() >= stalled*sent })

	start := time.Now()
	if got := signedPost(t, srv, "/apikeys?mode=import&format=csv", sent); got.status != 200 || got.message != "" && got.errType != "" {
		t.Errorf("signed import of %d bytes: got %+v, want 200", sent, got)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("signed import answered after %v, want promptly", el)
	}
	for i, c := range conns {
		got, err := answer(c, 5*time.Second)
		if err != nil {
			t.Errorf("stalled sender %d: %v, want 408", i, err)
			continue
		}
		if got.status != 408 || got.errType != "RequestTimeoutException" {
			t.Errorf("stalled sender %d: got %d %s %s, want 408 RequestTimeoutException", i, got.status, got.errType, got.message)
		}
	}
	if el := time.Since(start); el < a.bodyTimeout/2 {
		t.Errorf("stalled senders answered after %v, want after the body deadline (%v)", el, a.bodyTimeout)
	}
	if held := a.budget.held(); held != 0 {
		t.Errorf("budget still holds %d bytes, want 0", held)
	}
}

// Connections that declare a large body and send none of it cost the
// server little memory each: nothing is allocated for bytes that have
// not arrived.
func TestSilentBodiesCostLittle(t *testing.T) {
	a := newAuthenticator(testCreds, time.Now)
	srv, probe := newProbedServer(t, a)
	const conns = 200
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range conns {
		rawPost(t, srv, "/apikeys", 1<<20, 0)
	}
	poll.Until(t, 10*time.Second, time.Millisecond, "every body is being read", func() bool { return probe.started.Load() == conns })
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / conns
	t.Logf("heap per silent connection (both ends): %d bytes", per)
	// net/http's own state for a connection, both ends here, is about
	// 13 KiB; a buffer made from the declared length would add 64 KiB.
	if want := int64(24 << 10); per > want {
		t.Errorf("heap per silent connection: got %d bytes, want at most %d", per, want)
	}
}

// Bodies read before their senders are known share one budget: past it,
// a caller gets 429 at once (SDKs retry), and what a refused or cut
// request held is given back.
func TestUnauthenticatedBodiesShareABudget(t *testing.T) {
	// Each holder sends 60 KiB: its buffers, 512 bytes doubling to
	// 64 KiB, take 128 KiB - 512 of the budget, and four fill it.
	const sent, takes = 60 << 10, 128<<10 - 512
	a := newAuthenticator(testCreds, time.Now)
	a.budget = newBodyBudget(4 * takes)
	a.bodyTimeout = time.Hour // the holders leave by hanging up
	srv, probe := newProbedServer(t, a)
	var holders []net.Conn
	for i := range 4 {
		holders = append(holders, rawPost(t, srv, "/apikeys", 120<<10, sent))
		poll.Until(t, 10*time.Second, time.Millisecond, fmt.Sprintf("holder %d's bytes are read", i), func() bool { return probe.read.Load() == int64(i+1)*sent })
	}
	if got, want := a.budget.held(), int64(4*takes); got != want {
		t.Errorf("holders take %d bytes of the budget, want %d", got, want)
	}
	for i := range 3 {
		c := rawPost(t, srv, "/apikeys", 120<<10, sent)
		got, err := answer(c, 5*time.Second)
		if err != nil {
			t.Fatalf("sender %d past the budget: %v, want 429", i, err)
		}
		if got.status != 429 || got.errType != "TooManyRequestsException" || !strings.Contains(got.message, "retry") {
			t.Errorf("sender %d past the budget: got %+v, want 429 TooManyRequestsException", i, got)
		}
	}
	for _, c := range holders {
		c.Close()
	}
	poll.Until(t, 10*time.Second, time.Millisecond, "the holders' budget is given back", func() bool { return a.budget.held() == 0 })
	if got := signedPost(t, srv, "/apikeys", 200<<10); got.status != 200 {
		t.Errorf("signed body after the holders left: got %+v, want 200", got)
	}
}

// The body deadline is the sender's, not the handler's: a handler that
// runs past it, once the body is in, keeps its request's context.
func TestBodyDeadlineEndsWithTheBody(t *testing.T) {
	a := newAuthenticator(testCreds, time.Now)
	a.bodyTimeout = 50 * time.Millisecond
	srv := httptest.NewServer(a.middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			fmt.Fprint(w, "cancelled: ", context.Cause(r.Context()))
		case <-time.After(6 * a.bodyTimeout):
			fmt.Fprint(w, "done")
		}
	})))
	t.Cleanup(srv.Close)
	for _, chunked := range []bool{false, true} {
		body := []byte(`{"name":"x"}`)
		r, _ := http.NewRequest("POST", srv.URL+"/apikeys", bytes.NewReader(body))
		if chunked {
			r.ContentLength = -1
		}
		sign(t, r, body, testCreds, "us-east-1", time.Now())
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(got) != "done" {
			t.Errorf("chunked %v: got %d %q, want 200 \"done\"", chunked, resp.StatusCode, got)
		}
	}
}

// A request refused before its body is read is answered at once, and its
// connection closed: the server does not wait for the rest of the body
// to keep the connection.
func TestRefusalDoesNotWaitForTheBody(t *testing.T) {
	a := newAuthenticator(testCreds, time.Now)
	a.bodyTimeout = time.Hour
	srv, _ := newProbedServer(t, a)
	unknown := testCreds
	unknown.AccessKeyID = "TGAKUNKNOWNUNKNOWN00"
	tests := []struct {
		name     string
		auth     string // "unknown", "bogus" (a wrong secret): signed so
		declared int
		want     string
	}{
		{"unknown access key id", "unknown", 100 << 10, "UnrecognizedClientException"},
		{"no credentials", "none", 100 << 10, "MissingAuthenticationTokenException"},
		{"wrong bearer token", "Bearer wrong", 100 << 10, "UnrecognizedClientException"},
		{"declared length over the bound", "bogus", maxJSONBody + 1, "PayloadTooLargeException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", srv.URL+"/apikeys", nil)
			switch tt.auth {
			case "unknown":
				sign(t, req, nil, unknown, "us-east-1", time.Now())
			case "bogus":
				bogus := testCreds
				bogus.SecretAccessKey = "wrongwrongwrongwrongwrongwrongwrongwrong"
				sign(t, req, nil, bogus, "us-east-1", time.Now())
			case "none":
			default:
				req.Header.Set("Authorization", tt.auth)
			}
			c := dialHead(t, srv, req, tt.declared, 0)
			got, err := answer(c, 5*time.Second)
			if err != nil {
				t.Fatalf("got %v, want %s at once", err, tt.want)
			}
			if got.errType != tt.want {
				t.Errorf("got %+v, want %s", got, tt.want)
			}
		})
	}
}
