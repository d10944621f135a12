package enforcer

import (
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
// advance (chunked uploads).
type countingBody struct {
	io.ReadCloser
	n int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	return n, err
}
