package enforcer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// leanUpstream is one upstream of the fasthttp plane: a HostClient (its
// pool of keep-alive connections) shared by every stage that proxies to
// the same scheme and host, for as long as the gateway lives, so that a
// catalog change keeps the pool.
type leanUpstream struct {
	hc   *fasthttp.HostClient
	host []byte // the Host header upstream requests carry

	// conns finds a pooled connection by its local address, to move its
	// read deadline from the wait for headers to the exchange's once the
	// headers are in (see proxy).
	mu    sync.Mutex
	conns map[netip.AddrPort]*upConn

	// headerTimeout is the catalog's upstreamTimeout (ns): the wait for
	// the response's headers once the request is written (upConn).
	headerTimeout atomic.Int64
}

// upstreamKey names the HostClient of an upstream URL.
func upstreamKey(u *url.URL) string {
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host)
}

// newLeanUpstream builds the client of an upstream URL (http or https).
func newLeanUpstream(u *url.URL) (*leanUpstream, error) {
	tls := strings.EqualFold(u.Scheme, "https")
	if !tls && !strings.EqualFold(u.Scheme, "http") {
		return nil, fmt.Errorf("upstream %s: scheme must be http or https", u.Redacted())
	}
	addr := u.Host
	if u.Port() == "" {
		port := "80"
		if tls {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	up := &leanUpstream{host: []byte(u.Host), conns: map[netip.AddrPort]*upConn{}}
	up.hc = &fasthttp.HostClient{
		Addr:  addr,
		IsTLS: tls,
		Dial:  up.dial,
		// As NewTransport: a large pool of keep-alive connections to few
		// hosts, closed after 90 s idle; a request waits up to 5 s for a
		// connection when every one is busy rather than failing at once.
		MaxConns:            4096,
		MaxConnWaitTimeout:  5 * time.Second,
		MaxIdleConnDuration: 90 * time.Second,
		// The response's headers must fit in the read buffer: this is
		// MaxResponseHeaderBytes (larger ones get 502).
		ReadBufferSize:     MaxResponseHeaderBytes,
		StreamResponseBody: true,
		// Bytes as the client sent them: no path cleaning (the gateway
		// refused what it would have changed), no added User-Agent.
		DisablePathNormalizing:   true,
		NoDefaultUserAgentHeader: true,
		// A request is retried once, and only one without a body (the
		// HostClient never retries those) whose method net/http's
		// Transport replays, when its connection failed before any of the
		// answer came: closed while idle in the pool, or reset under the
		// write. Never after a timeout or an unreadable answer, which
		// fasthttp's own rule retried (the upstream saw the request twice,
		// and the 504 came at twice the upstream timeout).
		MaxIdemponentCallAttempts: 2,
		RetryIfErr:                retryIfErr,
	}
	return up, nil
}

func retryIfErr(req *fasthttp.Request, _ int, err error) (resetTimeout, retry bool) {
	switch string(req.Header.Method()) {
	case "GET", "HEAD", "OPTIONS", "TRACE":
	default:
		return false, false
	}
	// The HostClient reports any failure to read an answer's first byte
	// as io.EOF, a timeout as ErrTimeout.
	return false, errors.Is(err, io.EOF) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}

func (up *leanUpstream) dial(addr string) (net.Conn, error) {
	c, err := fasthttp.DialTimeout(addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	uc := &upConn{Conn: c, up: up}
	if la, ok := c.LocalAddr().(*net.TCPAddr); ok {
		uc.key = la.AddrPort()
		up.mu.Lock()
		up.conns[uc.key] = uc
		up.mu.Unlock()
	}
	return uc, nil
}

// extend sets the read deadline of the connection resp was read from.
func (up *leanUpstream) extend(resp *fasthttp.Response, deadline time.Time) {
	la, ok := resp.LocalAddr().(*net.TCPAddr)
	if !ok {
		return
	}
	up.mu.Lock()
	c := up.conns[la.AddrPort()]
	up.mu.Unlock()
	if c != nil {
		c.Conn.SetReadDeadline(deadline)
	}
}

// cutUpstreams closes every connection of the gateway's upstream
// clients, idle or in an exchange: a server's Close, or a Shutdown whose
// time ran out, must not wait for upstreams.
func (g *Gateway) cutUpstreams() {
	g.mu.Lock()
	ups := make([]*leanUpstream, 0, len(g.upstreams))
	for _, up := range g.upstreams {
		ups = append(ups, up)
	}
	g.mu.Unlock()
	for _, up := range ups {
		up.mu.Lock()
		conns := make([]*upConn, 0, len(up.conns))
		for _, c := range up.conns {
			conns = append(conns, c)
		}
		up.mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}
}

// upConn is a connection to an upstream, known to its leanUpstream while
// it is open.
type upConn struct {
	net.Conn
	up   *leanUpstream
	key  netip.AddrPort
	once sync.Once
}

// SetReadDeadline is called by the HostClient once the request is
// written, before it reads the response, with the exchange's deadline:
// the wait for the headers is cut at the upstream timeout from now, as
// net/http's ResponseHeaderTimeout counts it. Once the headers are in,
// proxy moves the deadline to the exchange's (extend).
func (c *upConn) SetReadDeadline(t time.Time) error {
	if d := c.up.headerTimeout.Load(); d > 0 {
		if h := time.Now().Add(time.Duration(d)); t.IsZero() || h.Before(t) {
			t = h
		}
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *upConn) Close() error {
	c.once.Do(func() {
		c.up.mu.Lock()
		if c.up.conns[c.key] == c {
			delete(c.up.conns, c.key)
		}
		c.up.mu.Unlock()
	})
	return c.Conn.Close()
}

// leanRoute is how a stage proxies on the fasthttp plane.
type leanRoute struct {
	up     *leanUpstream
	base   string // the upstream URL's path, without a trailing slash
	prefix string // the stage's path prefix, stripped
}

// upstreamFor returns the shared client of an upstream URL, creating it
// the first time (g.mu held).
func (g *Gateway) upstreamFor(raw, prefix string, headerTimeout time.Duration) (*leanRoute, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	k := upstreamKey(u)
	up := g.upstreams[k]
	if up == nil {
		if up, err = newLeanUpstream(u); err != nil {
			return nil, err
		}
		if g.upstreams == nil {
			g.upstreams = map[string]*leanUpstream{}
		}
		g.upstreams[k] = up
	}
	up.headerTimeout.Store(int64(headerTimeout))
	return &leanRoute{up: up, base: strings.TrimSuffix(u.Path, "/"), prefix: prefix}, nil
}

// Hop-by-hop and forwarding headers, in fasthttp's canonical form: never
// passed on as the client sent them (httputil.ReverseProxy's list, and
// the X-Forwarded-* and Forwarded headers that Rewrite starts without).
func hopByHop(k []byte) bool {
	switch string(k) {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length", "Host":
		return true
	}
	return false
}

func forwarding(k []byte) bool {
	switch string(k) {
	case "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded",
		hAPIKey, hTollgateKeyID, hTollgatePlanID:
		return true
	}
	return false
}

// connNames are the header names a client's Connection header lists
// (beyond close and keep-alive), compared in any case.
type connNames struct {
	list [][]byte
	// set holds the names in lower case once there are more than a few:
	// a header block of 16 KiB can list thousands of names and carry
	// a thousand fields, and comparing each field with each name cost a
	// request 50 times what parsing it did.
	set map[string]struct{}
}

// maxConnList is how many names connNames compares one by one.
const maxConnList = 8

// connectionTokens returns the names h's Connection header lists.
func connectionTokens(h *fasthttp.RequestHeader) connNames {
	var c connNames
	for _, v := range h.PeekAll("Connection") {
		for tok := range bytes.SplitSeq(v, []byte(",")) {
			tok = bytes.TrimSpace(tok)
			if len(tok) == 0 || bytes.EqualFold(tok, []byte("close")) || bytes.EqualFold(tok, []byte("keep-alive")) {
				continue
			}
			if c.set != nil {
				c.set[string(bytes.ToLower(tok))] = struct{}{}
				continue
			}
			c.list = append(c.list, bytes.Clone(tok))
			if len(c.list) > maxConnList {
				c.set = make(map[string]struct{}, 2*len(c.list))
				for _, n := range c.list {
					c.set[string(bytes.ToLower(n))] = struct{}{}
				}
				c.list = nil
			}
		}
	}
	return c
}

// has reports whether the Connection header listed k.
func (c *connNames) has(k []byte) bool {
	if c.set != nil {
		_, ok := c.set[strings.ToLower(b2s(k))]
		return ok
	}
	return c.list != nil && containsName(c.list, k)
}

var (
	bXFF     = []byte("X-Forwarded-For")
	bXFH     = []byte("X-Forwarded-Host")
	bXFP     = []byte("X-Forwarded-Proto")
	bHTTP    = []byte("http")
	bKeyID   = []byte(hTollgateKeyID)
	bPlanID  = []byte(hTollgatePlanID)
	bTE      = []byte("Te")
	bTrailer = []byte("trailers")
)

// proxy forwards an admitted request on the fasthttp plane and meters it:
// at once when it fails, or when its response body has been written
// (leanStream.CloseWithError).
func (s *leanServer) proxy(x *exchange, d *decision, tg *target, method string, cl int64, start int64) {
	g, lc := s.g, x.lc
	lr := d.stage.lean
	in := &x.req.Header
	req := fasthttp.AcquireRequest()
	up := fasthttp.AcquireResponse()

	// The upstream request: the client's headers less the hop-by-hop and
	// forwarding ones, then the gateway's.
	oh := &req.Header
	oh.DisableNormalizing()
	conn := connectionTokens(in)
	te := false
	for k, v := range in.All() {
		if hopByHop(k) || forwarding(k) {
			if bytes.Equal(k, bTE) && bytes.Contains(bytes.ToLower(v), bTrailer) {
				te = true
			}
			continue
		}
		if conn.has(k) {
			continue
		}
		oh.AddBytesKV(k, v)
	}
	if te {
		oh.SetCanonical(bTE, bTrailer)
	}
	oh.SetMethodBytes(in.Method())
	p := x.uri[:0]
	p = append(p, lr.base...)
	if strings.HasPrefix(tg.rawPath, lr.prefix) {
		p = append(p, stripPrefix(tg.rawPath, lr.prefix)...)
	} else {
		// The stage prefix came escaped (/pr%6fd/items): the raw path
		// cannot be cut at it. As net/http: the decoded rest, escaped.
		p = append(p, (&url.URL{Path: stripPrefix(tg.path, lr.prefix)}).EscapedPath()...)
	}
	if tg.query != "" || bytes.IndexByte(in.RequestURI(), '?') >= 0 {
		p = append(p, '?')
		p = append(p, tg.query...)
	}
	if bytes.IndexByte(p, '#') >= 0 {
		// No fragment in a request target: a '#' the client sent is a
		// character of the path or query, which the HostClient would take
		// for a fragment's start and cut. Escaped, it reaches the upstream
		// meaning what the gateway matched (as net/http escapes it).
		p = escapeHash(p)
	}
	req.SetRequestURIBytes(p)
	x.uri = p
	oh.SetHostBytes(lr.up.host)
	if lc.xff == nil {
		lc.xff = []byte(remoteIP(lc)) // once per connection
	}
	if len(lc.xff) > 0 {
		oh.SetCanonical(bXFF, lc.xff)
	}
	host := tg.absHost
	if host == "" {
		oh.SetCanonical(bXFH, in.Host())
	} else {
		oh.SetCanonical(bXFH, s2b(host))
	}
	oh.SetCanonical(bXFP, bHTTP)
	if d.key != nil {
		oh.SetCanonical(bKeyID, s2b(d.key.id[0]))
	}
	if d.plan != nil {
		oh.SetCanonical(bPlanID, s2b(d.plan.id))
	}

	hasBody := cl != 0
	var body *leanBody
	if hasBody {
		body = bodyPool.Get().(*leanBody)
		*body = leanBody{r: &x.body, max: s.lim.maxBodyBytes}
		req.SetBodyStream(body, int(cl))
	}
	lc.arm(hasBody, &s.lim)
	from := g.cfg.Now()
	exchange := lc.deadline
	err := lr.up.hc.DoDeadline(req, up, exchange) // the wait for headers: upConn.SetReadDeadline
	bodyIn := cl
	if cl < 0 {
		bodyIn = body.n // chunked: as counted
	}
	if err != nil {
		// No response from the upstream: answer for it.
		expired := lc.disarm(true)
		failure := upstreamOK
		var rj *rejection
		var ne net.Error
		switch {
		case expired:
			rj = rejTimeout
		case body != nil && body.tooLarge:
			rj = rejTooLarge
		case body != nil && body.failed && lc.readTimedOut:
			rj = rejBodyTimeout
		case body != nil && body.failed && !connFailure(body.err):
			rj = rejBadRequest // a body that does not parse (chunks, trailer)
		case body != nil && body.failed:
			failure = upstreamClientGone // the client went away mid-body
		case errors.Is(err, fasthttp.ErrTimeout) || errors.As(err, &ne) && ne.Timeout():
			rj = rejTimeout
		default:
			rj = rejBadGateway
		}
		status := int32(499)
		var out int64
		if rj != nil {
			failure = failureOf(rj.status)
			status = int32(rj.status)
			out = rj.writeFast(&x.resp, true)
			if hasBody && rj != rejBodyTimeout {
				lc.lingerOnClose()
			}
		} else {
			x.drop = true // no one to answer; never an empty 200
		}
		s.meter(d, method, start, from, status, failure, bodyIn, out)
		releaseBody(body)
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(up)
		return
	}
	fasthttp.ReleaseRequest(req) // written: its body, if any, was read
	r := &x.resp
	if n := up.Header.ContentLength(); n >= 0 && n <= maxBuffered && up.BodyStream() != nil {
		s.answerBuffered(x, d, method, start, from, bodyIn, up, n)
		releaseBody(body)
		return
	}
	lr.up.extend(up, exchange)

	// The response: the upstream's status and headers, less hop-by-hop
	// ones, and its body streamed.
	r.SetStatusCode(up.StatusCode())
	copyResponseHeaders(&r.Header, &up.Header)
	st := streamPool.Get().(*leanStream)
	*st = leanStream{s: s, lc: lc, dec: *d, method: method, start: start, from: from, status: int32(up.StatusCode()), in: bodyIn, up: up, body: up.BodyStream()}
	releaseBody(body)
	if st.body == nil {
		// No body to stream (HEAD, 204, 304): copy what there is, and
		// the length a HEAD's answer declares.
		r.SetBody(up.Body())
		st.n = int64(len(up.Body()))
		if cl := up.Header.ContentLength(); in.IsHead() && cl >= 0 {
			// A HEAD answer's length is the GET's, as the upstream says.
			r.Header.SetContentLength(cl)
		}
		st.finish(nil)
		return
	}
	r.SetBodyStream(st, up.Header.ContentLength())
}

// meter records an admitted request once its answer is settled: the
// upstream exchange's latency and failure (metrics) and its event.
func (s *leanServer) meter(d *decision, method string, start, from int64, status int32, f upstreamFailure, in, out int64) {
	end := s.g.cfg.Now()
	s.g.metrics.recordUpstream(start, from, end, f)
	s.g.emit(d, method, start, end, status, in, out)
}

// maxBuffered is the largest response body (by its Content-Length) the
// fasthttp plane reads whole before it answers, in the connection's own
// buffer, rather than streams: most API answers are small, and a
// buffered one is written with its headers in one piece, meters at once
// and frees its upstream connection before the client has it. Such a body
// is read under the wait for the headers (the catalog's upstreamTimeout),
// not the exchange's deadline.
const maxBuffered = 16 << 10

// answerBuffered reads a small response body whole (see maxBuffered) and
// answers with it, or with 502 (504 past a deadline) if the upstream
// failed to send it: no byte of the answer had gone out yet.
func (s *leanServer) answerBuffered(x *exchange, d *decision, method string, start, from, in int64, up *fasthttp.Response, n int) {
	x.small = smallBodies.Get().(*[maxBuffered + 1]byte) // back once written (leanServer.exchange)
	buf := x.small[:n+1]
	got, err := 0, error(nil)
	for err == nil {
		var m int
		m, err = up.BodyStream().Read(buf[got:])
		got += m
		if got > n {
			err = errBodyStreamTooLong
		}
	}
	failed := err != io.EOF || got != n // EOF read: the upstream connection is reused
	r := &x.resp
	status, failure, out := int32(up.StatusCode()), upstreamOK, int64(n)
	if expired := x.lc.disarm(failed); failed {
		up.SetConnectionClose()
		rj := rejBadGateway
		if expired {
			rj = rejTimeout
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			rj = rejTimeout // the upstream timeout, reading the body
		}
		status, failure = int32(rj.status), failureOf(rj.status)
		out = rj.writeFast(r, true)
	} else {
		r.SetStatusCode(up.StatusCode())
		copyResponseHeaders(&r.Header, &up.Header)
		r.SetBodyRaw(buf[:n])
	}
	s.meter(d, method, start, from, status, failure, in, out)
	fasthttp.ReleaseResponse(up) // the body read to its end: the connection goes back to the pool
}

var smallBodies = sync.Pool{New: func() any { return new([maxBuffered + 1]byte) }}

var errBodyStreamTooLong = errors.New("upstream body longer than its Content-Length")

// escapeHash returns p with each '#' escaped as %23.
func escapeHash(p []byte) []byte {
	out := make([]byte, 0, len(p)+8)
	for _, c := range p {
		if c == '#' {
			out = append(out, "%23"...)
		} else {
			out = append(out, c)
		}
	}
	return out
}

func containsName(names [][]byte, k []byte) bool {
	for _, n := range names {
		if bytes.EqualFold(n, k) {
			return true
		}
	}
	return false
}

// remoteIP is the client's address without its port.
func remoteIP(lc *leanConn) string {
	if a, ok := lc.conn.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap().String()
	}
	host, _, err := net.SplitHostPort(lc.conn.RemoteAddr().String())
	if err != nil {
		return ""
	}
	return host
}

// copyResponseHeaders copies an upstream response's headers to the
// client's response, less hop-by-hop ones and those its Connection
// header names.
func copyResponseHeaders(dst, src *fasthttp.ResponseHeader) {
	var conn [][]byte
	for _, v := range src.PeekAll("Connection") {
		for tok := range bytes.SplitSeq(v, []byte(",")) {
			if tok = bytes.TrimSpace(tok); len(tok) > 0 {
				conn = append(conn, tok)
			}
		}
	}
	for k, v := range src.All() {
		if hopByHop(k) || conn != nil && containsName(conn, k) {
			continue
		}
		dst.AddBytesKV(k, v)
	}
}

// leanBody is an admitted request's body on its way upstream: counted,
// cut one byte past the limit (errBodyTooLarge), its failure recorded.
type leanBody struct {
	r                io.Reader
	n, max           int64
	tooLarge, failed bool
	err              error // what failed it
}

// connFailure reports a body error of the connection (closed, reset, cut
// short) rather than of the body's bytes.
func connFailure(err error) bool {
	var ne net.Error
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		errors.As(err, &ne) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

var bodyPool = sync.Pool{New: func() any { return new(leanBody) }}

func releaseBody(b *leanBody) {
	if b != nil {
		b.r = nil
		bodyPool.Put(b)
	}
}

func (b *leanBody) Read(p []byte) (int, error) {
	if rem := b.max - b.n + 1; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	if b.n > b.max {
		b.tooLarge = true
		return 0, errBodyTooLarge
	}
	if err != nil && err != io.EOF {
		b.failed, b.err = true, err
	}
	return n, err
}

// leanStream streams an upstream's response body to the client and
// meters the request when fasthttp has written it (or failed to).
type leanStream struct {
	s           *leanServer
	lc          *leanConn
	dec         decision // a copy: the handler's returns before the body is written
	method      string
	start, from int64
	status      int32
	in, n       int64
	up          *fasthttp.Response
	body        io.Reader
	readErr     error
	werr        error // the write's failure, where fasthttp does not pass it
	done        bool
}

var streamPool = sync.Pool{New: func() any { return new(leanStream) }}

func (st *leanStream) Read(p []byte) (int, error) {
	n, err := st.body.Read(p)
	st.n += int64(n)
	if err != nil && err != io.EOF {
		st.readErr = err
	}
	return n, err
}

// CloseWithError is called by fasthttp once the body is written, with
// the write's error if it failed.
func (st *leanStream) CloseWithError(werr error) error {
	st.finish(werr)
	return nil
}

// finish meters the request: the upstream's status if the body went
// through whole; 504 if the exchange deadline cut it, 502 if the upstream
// failed, 499 if the client did.
func (st *leanStream) finish(werr error) {
	if st.done {
		return
	}
	st.done = true
	if werr == nil {
		werr = st.werr
	}
	expired := st.lc.disarm(st.readErr != nil || werr != nil)
	status, failure := st.status, upstreamOK
	switch {
	case expired:
		status, failure = 504, upstreamTimeout
	case st.readErr != nil:
		status, failure = 502, upstreamError
	case werr != nil:
		status, failure = 499, upstreamClientGone
	}
	if expired || st.readErr != nil || werr != nil {
		st.up.SetConnectionClose() // the upstream connection is not reused
	}
	st.s.meter(&st.dec, st.method, st.start, st.from, status, failure, st.in, st.n)
	fasthttp.ReleaseResponse(st.up) // closes the upstream body: back to the pool, or closed
	*st = leanStream{}
	streamPool.Put(st)
}
