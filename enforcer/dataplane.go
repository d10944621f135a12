package enforcer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
)

// DataPlane names the HTTP machinery that serves the gateway listener and
// carries admitted requests to upstreams. Both planes run the same
// decision, events, headers and limits; they differ in what parses and
// writes the bytes.
type DataPlane string

const (
	// FastHTTP is the default: fasthttp's server and HostClient
	// (lean.go). A proxied request costs about a third of the net/http
	// plane's CPU in make loadtest (42 against 119 µs; nginx 29:
	// BENCHMARKS.md, "The edge at nginx's cost").
	FastHTTP DataPlane = "fasthttp"
	// NetHTTP is net/http's server and httputil.ReverseProxy
	// (gateway.go, proxy.go, framing.go), for what only it has: HTTP/2
	// to clients behind a TLS terminator that speaks it, and the
	// behaviour of the standard library where a deployment was tested
	// against it.
	NetHTTP DataPlane = "net/http"
)

// DefaultDataPlane is the data plane of tollgate serve and enforcer
// unless --data-plane says otherwise.
const DefaultDataPlane = FastHTTP

// ParseDataPlane reads a --data-plane value.
func ParseDataPlane(s string) (DataPlane, error) {
	switch DataPlane(s) {
	case FastHTTP, NetHTTP:
		return DataPlane(s), nil
	case "":
		return DefaultDataPlane, nil
	}
	return "", fmt.Errorf("data plane %q: want %q or %q", s, FastHTTP, NetHTTP)
}

// Server serves a gateway on a listener, on one data plane. Serve
// returns nil once Shutdown or Close ended it.
type Server interface {
	// Serve accepts connections on ln until Shutdown or Close; ln need
	// not be wrapped (Serve wraps it).
	Serve(ln net.Listener) error
	// Shutdown stops accepting, closes idle connections and waits for
	// the requests in flight, whose events are emitted before it returns,
	// until ctx ends.
	Shutdown(ctx context.Context) error
	// Close cuts every connection at once.
	Close() error
}

// NewGatewayServer returns the server of g's listener on plane, bounded
// by sc. This is the one seam between the gateway and its HTTP
// machinery.
func NewGatewayServer(g *Gateway, plane DataPlane, sc ServerConfig) (Server, error) {
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	switch plane {
	case FastHTTP, "":
		return newLeanServer(g, sc), nil
	case NetHTTP:
		srv := NewServer(g, sc)
		srv.ErrorLog = nil
		return netServer{srv}, nil
	}
	return nil, fmt.Errorf("data plane %q: want %q or %q", plane, FastHTTP, NetHTTP)
}

// netServer is the net/http data plane behind Server.
type netServer struct{ srv *http.Server }

func (s netServer) Serve(ln net.Listener) error {
	err := s.srv.Serve(WrapListener(ln))
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (s netServer) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
func (s netServer) Close() error                       { return s.srv.Close() }

// HTTPServer returns the *http.Server of a net/http data plane, nil for
// another, so that a caller can set what only net/http has (ErrorLog,
// TLS).
func HTTPServer(s Server) *http.Server {
	if ns, ok := s.(netServer); ok {
		return ns.srv
	}
	return nil
}
