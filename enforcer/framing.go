package enforcer

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"sync"
)

// net/http accepts a request that carries both Content-Length and
// Transfer-Encoding: chunked, drops the Content-Length and reads the body
// chunked (RFC 9112 §6.3). Such a request is the classic vector of request
// smuggling, and AWS API Gateway refuses it; so does tollgate, with 400.
//
// Since net/http removes the evidence before the handler runs, each gateway
// connection records the raw bytes of the header block it is reading: from
// the moment the connection is new or idle (between requests) until the
// blank line that ends the headers. The handler looks at that block when —
// and only when — a request arrives chunked. Bodies are never copied, and
// idle connections hold no buffer: a connection borrows one from a pool
// while it reads headers and returns it when it goes idle or closes.

// maxHeaderBlock bounds what a connection records; net/http refuses larger
// headers with 431 anyway (MaxHeaderBytes plus its 4 KiB of slack).
const maxHeaderBlock = 64 << 10

var headerBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// WrapListener makes the connections of ln record their header blocks for
// the framing check. Serve the gateway on the wrapped listener with a
// server from NewServer.
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
	mu        sync.Mutex
	buf       *[]byte // the header block read so far; nil when not borrowed
	recording bool    // until the block's blank line
}

var crlfcrlf = []byte("\r\n\r\n")

func (c *framingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		if c.recording {
			c.record(p[:n])
		}
		c.mu.Unlock()
	}
	return n, err
}

func (c *framingConn) record(p []byte) {
	if c.buf == nil {
		c.buf = headerBufs.Get().(*[]byte)
		*c.buf = (*c.buf)[:0]
	}
	b := *c.buf
	from := max(len(b)-3, 0) // the blank line may straddle two reads
	if len(b)+len(p) > maxHeaderBlock {
		p = p[:max(maxHeaderBlock-len(b), 0)]
		c.recording = false
	}
	b = append(b, p...)
	if i := bytes.Index(b[from:], crlfcrlf); i >= 0 {
		b = b[:from+i+4]
		c.recording = false
	}
	*c.buf = b
}

// idle starts recording the next request's header block.
func (c *framingConn) idle() {
	c.mu.Lock()
	c.releaseLocked()
	c.recording = true
	c.mu.Unlock()
}

func (c *framingConn) release() {
	c.mu.Lock()
	c.releaseLocked()
	c.recording = false
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

// connContext lets handlers find their connection.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if fc, ok := c.(*framingConn); ok {
		return context.WithValue(ctx, framingKey{}, fc)
	}
	return ctx
}

// ambiguousLength reports whether a chunked request also carried a
// Content-Length header.
func ambiguousLength(r *http.Request) bool {
	if len(r.TransferEncoding) == 0 {
		return false
	}
	fc, ok := r.Context().Value(framingKey{}).(*framingConn)
	if !ok {
		return false
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.buf == nil {
		return false
	}
	// The block must be this request's. Its first byte may be missing:
	// net/http's background read can take one byte of the next request
	// before the connection is marked idle. So match the request line by
	// its target and protocol, not by its start.
	block := *fc.buf
	line, _, _ := bytes.Cut(block, []byte("\r\n"))
	if !bytes.HasSuffix(block, crlfcrlf) || !bytes.HasSuffix(line, []byte(" "+r.RequestURI+" "+r.Proto)) {
		return false // not this request's block (e.g. a pipelined request)
	}
	return hasHeader(block, "content-length")
}

// hasHeader reports whether a raw header block has a field named name
// (lower case), in any case.
func hasHeader(block []byte, name string) bool {
	for len(block) > 0 {
		i := bytes.Index(block, []byte("\r\n"))
		if i < 0 {
			break
		}
		block = block[i+2:]
		if len(block) > len(name) && block[len(name)] == ':' && bytes.EqualFold(block[:len(name)], []byte(name)) {
			return true
		}
	}
	return false
}
