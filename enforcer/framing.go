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
// Since net/http removes the evidence before the handler runs, the gateway
// listener keeps a short window of the raw bytes each connection read, and
// the handler looks there for the request's header block when — and only
// when — a request arrives chunked. Requests with a known length (nearly
// all) pay only the copy into the window.

// framingWindow is the raw bytes kept per connection: two of net/http's
// 4 KiB reads, enough for the header block of any request under 8 KiB. A
// chunked request whose Content-Length hides behind more header bytes than
// that is handled as net/http handles it (the length is ignored); the
// window is kept small because every open connection holds one.
const framingWindow = 8 << 10

// WrapListener makes the connections of ln keep the window the framing
// check needs. Serve the gateway on the wrapped listener with a server
// from NewServer.
func WrapListener(ln net.Listener) net.Listener { return framingListener{ln} }

type framingListener struct{ net.Listener }

func (l framingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &framingConn{Conn: c}, nil
}

type framingConn struct {
	net.Conn
	mu   sync.Mutex
	buf  []byte
	scan int // bytes before this were already matched to a request
}

func (c *framingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		if c.buf == nil {
			c.buf = make([]byte, 0, framingWindow)
		}
		if len(c.buf)+n > framingWindow {
			// Keep the newest bytes only.
			keep := max(framingWindow-n, 0)
			drop := len(c.buf) - keep
			c.buf = c.buf[:copy(c.buf, c.buf[drop:])]
			c.scan = max(c.scan-drop, 0)
		}
		c.buf = append(c.buf, p[max(n-framingWindow, 0):n]...)
		c.mu.Unlock()
	}
	return n, err
}

type framingKey struct{}

// connContext lets handlers find their connection's window.
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
	line := []byte(r.Method + " " + r.RequestURI + " HTTP/1.")
	for from := fc.scan; from < len(fc.buf); {
		i := bytes.Index(fc.buf[from:], line)
		if i < 0 {
			return false
		}
		start := from + i
		end := bytes.Index(fc.buf[start:], []byte("\r\n\r\n"))
		if end < 0 {
			return false
		}
		end += start
		block := fc.buf[start:end]
		from = end
		if hasHeader(block, "transfer-encoding") {
			fc.scan = end
			return hasHeader(block, "content-length")
		}
	}
	return false
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
