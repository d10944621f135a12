package enforcer

import (
	"errors"
	"io"
	"net/http"
	"sync"
)

// meteredWriter records the status and body bytes of a proxied response.
// It is pooled: one per request in flight, not one per request.
type meteredWriter struct {
	http.ResponseWriter
	status int
	n      int64
	fc     *framingConn // the client's connection, for proxyError; may be nil
	// failure is what failed the exchange, set by proxyError (metrics).
	failure upstreamFailure
}

var writerPool = sync.Pool{New: func() any { return new(meteredWriter) }}

func (m *meteredWriter) WriteHeader(code int) {
	if m.status == 0 && code >= 200 {
		m.status = code
	}
	m.ResponseWriter.WriteHeader(code)
}

func (m *meteredWriter) Write(b []byte) (int, error) {
	if m.status == 0 {
		m.status = http.StatusOK
	}
	n, err := m.ResponseWriter.Write(b)
	m.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and Hijack, which the
// reverse proxy uses for streaming and protocol upgrades.
func (m *meteredWriter) Unwrap() http.ResponseWriter { return m.ResponseWriter }

// countingBody counts request body bytes when the length is not known in
// advance (chunked uploads), and cuts the body past max bytes.
type countingBody struct {
	io.ReadCloser
	n, max int64
}

// errBodyTooLarge ends a chunked body that grew past the limit; the
// transport aborts the upstream request with it.
var errBodyTooLarge = errors.New("request body over the size limit")

func (c *countingBody) Read(p []byte) (int, error) {
	// One byte past the limit tells a body of exactly max bytes from a
	// larger one.
	if rem := c.max - c.n + 1; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		return 0, errBodyTooLarge
	}
	return n, err
}
