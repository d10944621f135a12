package enforcer

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate/catalog"
)

// NewTransport returns the transport the gateway uses for upstreams:
// pooled keep-alive connections sized for many concurrent requests to few
// hosts, HTTP/1.1, a bound on the wait for response headers and one on
// their size (MaxResponseHeaderBytes; larger ones get 502).
func NewTransport(responseHeaderTimeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy:                  nil, // never route upstream traffic through an environment proxy
		DialContext:            (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    1024,
		IdleConnTimeout:        90 * time.Second,
		ResponseHeaderTimeout:  responseHeaderTimeout,
		MaxResponseHeaderBytes: MaxResponseHeaderBytes,
		ExpectContinueTimeout:  time.Second,
		ForceAttemptHTTP2:      false,
	}
}

// MaxResponseHeaderBytes bounds an upstream's response headers (net/http's
// default is 10 MiB). 64 KiB is four times what the gateway accepts from
// clients.
const MaxResponseHeaderBytes = 64 << 10

// bufferPool lends the reverse proxy its copy buffers, which it would
// otherwise allocate (32 KiB) for every response.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

var copyBuffers = &bufferPool{}

// newStageProxy builds the reverse proxy of one stage. Rewrite (not
// Director) starts from a request whose hop-by-hop and X-Forwarded-*
// headers the proxy already removed; it strips the stage prefix, removes
// the API key, and sets X-Forwarded-* from the connection, never from what
// the client sent.
func newStageProxy(s catalog.Stage, transport http.RoundTripper, onError func(http.ResponseWriter, *http.Request, error)) (*httputil.ReverseProxy, error) {
	target, err := url.Parse(s.Upstream)
	if err != nil {
		return nil, err
	}
	prefix := s.Prefix()
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			in := pr.In.URL
			pr.Out.URL.Path = stripPrefix(in.Path, prefix)
			pr.Out.URL.RawPath = ""
			if in.RawPath != "" && strings.HasPrefix(in.RawPath, prefix) {
				pr.Out.URL.RawPath = stripPrefix(in.RawPath, prefix)
			}
			pr.SetURL(target)
			pr.SetXForwarded()
			delete(pr.Out.Header, hAPIKey)
			setFrom(pr.Out.Header, pr.In.Header, hTollgateKeyID)
			setFrom(pr.Out.Header, pr.In.Header, hTollgatePlanID)
			// No protocol upgrades (WebSocket): like AWS's REST APIs,
			// the gateway meters requests, and a tunnel would outlive
			// its request, its quota and the shutdown's final flush.
			delete(pr.Out.Header, "Upgrade")
			delete(pr.Out.Header, "Connection")
		},
		Transport:    transport,
		BufferPool:   copyBuffers,
		ErrorHandler: onError,
	}, nil
}

func setFrom(dst, src http.Header, name string) {
	if v, ok := src[name]; ok {
		dst[name] = v
	} else {
		delete(dst, name)
	}
}

func stripPrefix(p, prefix string) string {
	p = p[len(prefix):]
	if p == "" {
		return "/"
	}
	return p
}

// proxyError answers a failed upstream exchange: 504 when the upstream
// took too long or the exchange deadline passed, 502 when it could not be
// reached or answered garbage (or headers over MaxResponseHeaderBytes),
// 413 for a chunked body over the limit, 408 for a body that did not
// arrive within the body deadline. A client that went away gets nothing
// (there is no one to answer).
func proxyError(w http.ResponseWriter, r *http.Request, err error) {
	m, _ := w.(*meteredWriter)
	var fc *framingConn
	if m != nil {
		fc = m.fc
	}
	var exchangeTimeout, bodyTimeout bool
	if fc != nil {
		exchangeTimeout, bodyTimeout = fc.timedOut()
	}
	var ne net.Error
	var rj *rejection
	switch {
	// The deadlines first: they fail the client's connection, which
	// cancels the request's context.
	case exchangeTimeout:
		rj = rejTimeout
	case bodyTimeout:
		rj = rejBodyTimeout
	case errors.Is(err, errBodyTooLarge):
		rj = rejTooLarge
	case r.Context().Err() != nil:
		if m != nil {
			m.status = 499 // client closed request, as nginx records it
			m.failure = upstreamClientGone
		}
		return
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		rj = rejTimeout
	default:
		rj = rejBadGateway
	}
	if m != nil {
		m.failure = failureOf(rj.status)
	}
	rj.write(w, true)
	if r.ContentLength != 0 && rj != rejBodyTimeout {
		linger(w, fc)
	}
}
