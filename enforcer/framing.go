package enforcer

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/tollgate/tollgate/internal/logs"
)

// net/http accepts a request that carries both Content-Length and
// Transfer-Encoding: chunked, drops the Content-Length and reads the body
// chunked (RFC 9112 §6.3). Such a request is the classic vector of request
// smuggling, and AWS API Gateway refuses it; so does tollgate, with 400.
// So is an HTTP/1.0 request with Transfer-Encoding, which net/http reads by
// its Content-Length while RFC 9112 §6.1 calls its framing faulty.
//
// Since net/http removes the evidence before the handler runs, each gateway
// connection records the raw bytes of the header block it is reading: from
// the moment the connection is new or idle (between requests) until the
// blank line that ends the headers (CRLF or bare LF line endings, as
// net/http reads both). The handler looks at that block when — and only
// when — a request arrives chunked or as HTTP/1.0. Bodies are never
// copied, and idle connections hold no buffer: a connection borrows one
// from a pool while it reads headers and returns it when it goes idle or
// closes.
//
// The check fails closed. net/http reads ahead: a request pipelined behind
// another may already sit in its buffer when the connection goes idle, so
// that the recorded block is missing, or starts in the middle of the
// request. The block counts as this request's only if it is complete, its
// request line is this request's, and its lines account for every header
// line net/http parsed (see inspectBlock); a chunked or HTTP/1.0 request
// whose block cannot be proven its own is refused with 400, like an
// ambiguous one. Every
// rejection closes the connection, so nothing after a refused request is
// ever read as a request.

// maxHeaderBlock bounds what a connection records; net/http refuses larger
// headers with 431 anyway (MaxHeaderBytes plus its 4 KiB of slack).
const maxHeaderBlock = 64 << 10

var headerBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// WrapListener makes the connections of ln record their header blocks for
// the framing check and carry the deadlines of ServerConfig. Serve the
// gateway on the wrapped listener with a server from NewServer: on any
// other, chunked and HTTP/1.0 requests are refused (the framing check
// cannot run) and only MaxBodyBytes applies.
func WrapListener(ln net.Listener) net.Listener { return framingListener{ln} }

type framingListener struct{ net.Listener }

func (l framingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &framingConn{Conn: c, recording: true}, nil
}

type framingConn struct {
	net.Conn
	lim *limits // set by the server's ConnContext; nil means the defaults

	mu        sync.Mutex
	buf       *[]byte // the header block read so far; nil when not borrowed
	recording bool    // until the block's blank line
	// net/http's background read takes one byte of the next request
	// while the connection is not yet idle; it starts the next block.
	stray    [1]byte
	hasStray bool

	// The exchange deadline of the request in flight (see arm).
	timer    *time.Timer
	deadline time.Time
	armed    bool // a request is in flight under the deadline
	expired  bool // the deadline passed while it was
	// A read failed on its deadline since arm: the body deadline, unless
	// expired says the exchange deadline set it.
	readTimedOut bool
}

func (c *framingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		switch {
		case c.recording:
			c.record(p[:n])
		case len(p) == 1: // net/http's background read
			c.stray[0], c.hasStray = p[0], true
		default:
			// Only the last byte read before the connection goes idle
			// may start the next block; anything else read since
			// means it does not (and the check then fails closed).
			c.hasStray = false
		}
		c.mu.Unlock()
	}
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			c.mu.Lock()
			c.readTimedOut = true
			c.mu.Unlock()
		}
	}
	return n, err
}

func (c *framingConn) record(p []byte) {
	if c.buf == nil {
		c.buf = headerBufs.Get().(*[]byte)
		*c.buf = (*c.buf)[:0]
	}
	b := *c.buf
	from := len(b)
	if len(b)+len(p) > maxHeaderBlock {
		p = p[:max(maxHeaderBlock-len(b), 0)]
		c.recording = false // incomplete: the check fails closed
	}
	b = append(b, p...)
	if end := blockEnd(b, from); end >= 0 {
		b = b[:end]
		c.recording = false
	}
	*c.buf = b
}

// blockEnd returns the length of the header block in b, or -1 if its end
// (an empty line: "\n\n" or "\n\r\n") is not in b. Only line feeds at or
// after from are considered.
func blockEnd(b []byte, from int) int {
	for i := from; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		if i >= 1 && b[i-1] == '\n' || i >= 2 && b[i-1] == '\r' && b[i-2] == '\n' {
			return i + 1
		}
	}
	return -1
}

// idle starts recording the next request's header block.
func (c *framingConn) idle() {
	c.mu.Lock()
	c.releaseLocked()
	c.recording = true
	if c.hasStray {
		c.hasStray = false
		c.record(c.stray[:])
	}
	c.mu.Unlock()
}

func (c *framingConn) release() {
	c.mu.Lock()
	c.releaseLocked()
	c.recording, c.hasStray, c.armed = false, false, false
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
}

func (c *framingConn) releaseLocked() {
	if c.buf != nil {
		if cap(*c.buf) <= maxHeaderBlock {
			headerBufs.Put(c.buf)
		}
		c.buf = nil
	}
}

// connState follows each connection's requests: idle means the next bytes
// start a new request.
func connState(c net.Conn, s http.ConnState) {
	fc, ok := c.(*framingConn)
	if !ok {
		return
	}
	switch s {
	case http.StateIdle:
		fc.idle()
	case http.StateClosed, http.StateHijacked:
		fc.release()
	}
}

type framingKey struct{}

// connOf returns the request's gateway connection, nil if it was not
// accepted through WrapListener.
func connOf(r *http.Request) *framingConn {
	fc, _ := r.Context().Value(framingKey{}).(*framingConn)
	return fc
}

// badFraming reports a request whose framing the gateway refuses: chunked
// with a Content-Length, HTTP/1.0 with a Transfer-Encoding, or either kind
// whose header block cannot be proven its own.
func badFraming(r *http.Request, fc *framingConn) bool {
	chunked := len(r.TransferEncoding) > 0
	http10 := r.ProtoMajor == 1 && r.ProtoMinor == 0
	if !chunked && !http10 {
		return false
	}
	if fc == nil {
		return true
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.buf == nil || fc.recording {
		return true // nothing recorded, or not up to the blank line
	}
	f, ok := inspectBlock(*fc.buf, r)
	if !ok {
		return true
	}
	if chunked {
		return f.contentLength > 0
	}
	return f.transferEncoding > 0
}

// framing counts the fields of a header block that net/http removes or
// rewrites before the handler sees the request.
type framing struct {
	host, transferEncoding, contentLength, trailer int
}

// inspectBlock counts the framing fields of block, a complete header
// block, and reports whether it is r's own. It is if it has r's request
// line and every line of r's header accounts for one: one line per value
// net/http parsed, exactly one Host line (HTTP/1.1) and, when chunked,
// exactly one Transfer-Encoding line and no Trailer (a chunked request
// announcing trailers fails the check). A block recorded from the middle
// of r's headers (a pipelined request already partly buffered) lacks at
// least the line it starts in, even where its first line happens to read
// like r's request line: that line would have to be one whose absence
// cannot be seen, and the only such lines are Content-Length's, which
// net/http refuses with anything after the number.
func inspectBlock(block []byte, r *http.Request) (f framing, ok bool) {
	line, rest := nextLine(block)
	if !isRequestLine(line, r) {
		return f, false
	}
	other := 0
	for len(rest) > 0 {
		line, rest = nextLine(rest)
		if len(line) == 0 {
			break // the blank line
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue // obs-fold: part of the previous field's value
		}
		name, _, found := bytes.Cut(line, []byte(":"))
		switch {
		case !found:
			return f, false // net/http would have refused it
		case fieldIs(name, "host"):
			f.host++
		case fieldIs(name, "transfer-encoding"):
			f.transferEncoding++
		case fieldIs(name, "content-length"):
			f.contentLength++
		case fieldIs(name, "trailer"):
			f.trailer++
		default:
			other++
		}
	}
	chunked := len(r.TransferEncoding) > 0
	for k, vs := range r.Header {
		switch k {
		case "Host", "Transfer-Encoding", "Content-Length":
			// Removed, or deduplicated, by net/http: counted below.
		case "Trailer":
			f.trailer -= len(vs) // kept unless chunked
		default:
			other -= len(vs)
		}
	}
	switch {
	case other != 0:
		return f, false
	case r.ProtoAtLeast(1, 1) && f.host != 1 || f.host > 1:
		return f, false
	case chunked && (f.transferEncoding != 1 || f.trailer != 0 || len(r.Trailer) != 0):
		return f, false
	case !chunked && (f.trailer != 0 || (f.contentLength > 0) != (len(r.Header["Content-Length"]) > 0)):
		return f, false
	}
	return f, true
}

func isRequestLine(line []byte, r *http.Request) bool {
	for _, part := range [...]string{r.Method, " ", r.RequestURI, " ", r.Proto} {
		if len(line) < len(part) || string(line[:len(part)]) != part {
			return false
		}
		line = line[len(part):]
	}
	return len(line) == 0
}

// nextLine splits b after its first line feed; line has no line ending
// (bare LF or CRLF, as net/http reads them).
func nextLine(b []byte) (line, rest []byte) {
	line, rest, _ = bytes.Cut(b, []byte("\n"))
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

// fieldIs reports whether a field name is name (lower case), in any case.
func fieldIs(field []byte, name string) bool {
	return len(field) == len(name) && bytes.EqualFold(field, []byte(name))
}

// arm starts the deadlines of an admitted request: lim.BodyTimeout to read
// its body (if it has one), lim.ExchangeTimeout for the whole exchange.
//
// Both work on the connection's read deadline, which allocates nothing:
// net/http clears it when the body has been read (to watch for the
// client going away), and a read that fails on it ends the body, or
// cancels the request's context, which ends the upstream exchange. The
// exchange timer is the connection's, reset for each request.
func (c *framingConn) arm(body bool, lim *limits) {
	now := time.Now()
	if body {
		c.Conn.SetReadDeadline(now.Add(lim.bodyTimeout))
	}
	c.mu.Lock()
	c.armed, c.expired, c.readTimedOut = true, false, false
	c.deadline = now.Add(lim.exchangeTimeout)
	if c.timer == nil {
		c.timer = time.AfterFunc(lim.exchangeTimeout, c.expire)
	} else {
		c.timer.Reset(lim.exchangeTimeout)
	}
	c.mu.Unlock()
}

// aLongTimeAgo is a read deadline that fails pending reads at once.
var aLongTimeAgo = time.Unix(1, 0)

func (c *framingConn) expire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.armed || time.Now().Before(c.deadline) {
		// The request finished first; or this is the timer of the
		// connection's previous request, which fired as it finished
		// and took the lock only after the next one was armed.
		return
	}
	c.armed, c.expired = false, true
	c.Conn.SetReadDeadline(aLongTimeAgo)
	// Writes too: a client that stopped reading holds the proxy in a
	// write to it, which only a write deadline ends. Not at once, so that
	// the 504 of an exchange that had not begun its response still goes
	// out; the connection closes after it either way.
	c.Conn.SetWriteDeadline(time.Now().Add(lingerTimeout))
}

// disarm ends the request's exchange deadline; it reports whether the
// deadline had passed.
func (c *framingConn) disarm() (expired bool) {
	c.mu.Lock()
	c.armed = false
	c.timer.Stop()
	expired = c.expired
	c.mu.Unlock()
	return expired
}

// timedOut reports which deadline, if any, cut the request in flight:
// the exchange's, or the body's.
func (c *framingConn) timedOut() (exchange, body bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.expired, c.readTimedOut && !c.expired
}

// linger bounds what net/http reads of a refused request's body after the
// response: it discards what the client already sent, so that closing
// the connection does not reset it before the client read the answer,
// but for lingerTimeout at most.
func linger(w http.ResponseWriter, fc *framingConn) {
	t := time.Now().Add(lingerTimeout)
	if fc != nil {
		fc.Conn.SetReadDeadline(t)
		return
	}
	http.NewResponseController(w).SetReadDeadline(t)
}

// lingerTimeout is net/http's own delay before closing a connection with
// unread request data (rstAvoidanceDelay).
const lingerTimeout = 500 * time.Millisecond

// connContext lets handlers find their connection.
func connContext(lim *limits) func(context.Context, net.Conn) context.Context {
	return func(ctx context.Context, c net.Conn) context.Context {
		if fc, ok := c.(*framingConn); ok {
			fc.lim = lim
			return context.WithValue(ctx, framingKey{}, fc)
		}
		return context.WithValue(ctx, framingKey{}, unwrapped{})
	}
}

// unwrapped marks a connection NewServer's server accepted from a
// listener WrapListener did not wrap.
type unwrapped struct{}

// serverLogger is where NewServer's server logs: the gateway's logger
// when h is one, else slog's default logger.
func serverLogger(h http.Handler) *slog.Logger {
	if g, ok := h.(*Gateway); ok {
		return g.cfg.Logger
	}
	return logs.For(slog.Default(), "enforcer")
}

// requireWrapped answers 500 to requests of unwrapped connections, and
// logs the mistake once to log.
func requireWrapped(h http.Handler, log *slog.Logger) http.Handler {
	var once sync.Once
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, bad := r.Context().Value(framingKey{}).(unwrapped); bad {
			once.Do(func() {
				log.Error("the gateway's server is served on a listener WrapListener did not wrap: every request is refused")
			})
			w.Header().Set("Connection", "close")
			http.Error(w, `{"message":"Internal server error"}`, http.StatusInternalServerError)
			return
		}
		h.ServeHTTP(w, r)
	})
}
