package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"time"

	"github.com/valyala/fasthttp"
)

// fastProxy is the leanest Go proxy baseline: a fasthttp Server handing
// each request to a fasthttp HostClient, with no enforcement. It does
// what the bare ReverseProxy (newBareProxy) does, no more: serve only
// paths under the stage and strip it, send the target's Host, drop
// hop-by-hop headers both ways, and set X-Forwarded-For, -Host and -Proto
// from the connection. The request and response are fasthttp's own,
// reused from one request to the next, so proxying allocates nothing.
type fastProxy struct {
	client *fasthttp.HostClient
	host   string // the target's host:port, sent as Host
	stage  string
}

// newFastProxy returns the proxy to target (an http URL with a host),
// serving the paths under stage.
func newFastProxy(target *url.URL, stage string) (*fastProxy, error) {
	if target.Scheme != "http" || target.Host == "" || (target.Path != "" && target.Path != "/") {
		return nil, fmt.Errorf("--target %q must be an http URL with a host and no path", target)
	}
	return &fastProxy{
		client: &fasthttp.HostClient{
			Addr: target.Host,
			// As the bare ReverseProxy's transport: as many idle
			// connections as the load needs, kept 90 s.
			MaxConns:            1024,
			MaxIdleConnDuration: 90 * time.Second,
			ReadTimeout:         30 * time.Second,
			WriteTimeout:        30 * time.Second,
			// The path goes upstream as the client wrote it, less the
			// stage, as ReverseProxy sends RawPath.
			DisablePathNormalizing: true,
			// No User-Agent of the proxy's own where the client sent
			// none, as ReverseProxy.
			NoDefaultUserAgentHeader: true,
		},
		host:  target.Host,
		stage: stage,
	}, nil
}

// hopHeaders are the hop-by-hop headers, which the proxy does not
// forward (RFC 9110, section 7.6.1), as ReverseProxy does.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

var (
	notFoundBody   = []byte(`{"message":"Not Found"}`)
	badGatewayBody = []byte(`{"message":"Bad Gateway"}`)
)

// serve proxies one request.
func (p *fastProxy) serve(ctx *fasthttp.RequestCtx) {
	req, resp := &ctx.Request, &ctx.Response
	uri := req.URI()
	rest, ok := cutStage(uri.PathOriginal(), p.stage)
	if !ok {
		resp.SetStatusCode(fasthttp.StatusNotFound)
		resp.Header.SetContentType("application/json")
		resp.SetBodyRaw(notFoundBody)
		return
	}
	// X-Forwarded-Host is the Host the client sent, read before the
	// target's replaces it.
	req.Header.SetBytesV("X-Forwarded-Host", uri.Host())
	uri.SetPathBytes(rest)
	uri.SetHost(p.host)
	for _, h := range hopHeaders {
		req.Header.Del(h)
	}
	var ipBuf [64]byte
	ip, _ := netip.AddrFromSlice(ctx.RemoteIP())
	req.Header.SetBytesV("X-Forwarded-For", ip.Unmap().AppendTo(ipBuf[:0]))
	req.Header.Set("X-Forwarded-Proto", "http")

	if err := p.client.Do(req, resp); err != nil {
		resp.Reset()
		resp.SetStatusCode(fasthttp.StatusBadGateway)
		resp.Header.SetContentType("application/json")
		resp.SetBodyRaw(badGatewayBody)
		return
	}
	for _, h := range hopHeaders {
		resp.Header.Del(h)
	}
}

// cutStage returns path without the stage prefix ("/prod/items" gives
// "/items", "/prod" gives "/") and whether path was under the stage, as
// stripStage does for the bare ReverseProxy.
func cutStage(path []byte, stage string) ([]byte, bool) {
	if len(path) < len(stage) || string(path[:len(stage)]) != stage {
		return nil, false
	}
	rest := path[len(stage):]
	switch {
	case len(rest) == 0:
		return slash, true
	case rest[0] == '/':
		return rest, true
	default:
		return nil, false
	}
}

var slash = []byte("/")

// fastProxyCmd is `loadtest fastproxy --listen ADDR --target URL`: it
// listens, prints "listening on ADDR" to stdout and proxies until ctx
// ends.
func fastProxyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loadtest fastproxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	target := fs.String("target", "", "upstream base URL, e.g. http://127.0.0.1:8081 (required)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "loadtest fastproxy: unexpected arguments %q\n", fs.Args())
		return 2
	}
	u, err := url.Parse(*target)
	if err == nil {
		var p *fastProxy
		if p, err = newFastProxy(u, stagePrefix); err == nil {
			err = serveFast(ctx, *listen, p.serve, stdout)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "loadtest fastproxy: %v\n", err)
		return 1
	}
	return 0
}

// newFastServer returns the fasthttp Server the baseline runs, with the
// same timeouts as newServer's.
func newFastServer(h fasthttp.RequestHandler) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:     h,
		ReadTimeout: 10 * time.Second,
		IdleTimeout: 120 * time.Second,
		// The upstream's headers pass as they are: no Server header or
		// default Content-Type of the proxy's own.
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
	}
}

// serveFast is serve for a fasthttp handler.
func serveFast(ctx context.Context, addr string, h fasthttp.RequestHandler, stdout io.Writer) error {
	return serveWith(ctx, addr, fastServer{newFastServer(h)}, stdout)
}

// fastServer is a fasthttp server as serveWith runs one.
type fastServer struct{ *fasthttp.Server }

func (s fastServer) Shutdown(ctx context.Context) error { return s.Server.ShutdownWithContext(ctx) }
func (s fastServer) Close() error                       { return s.Server.Shutdown() }
