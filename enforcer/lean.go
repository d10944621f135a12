package enforcer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/schemas"
)

// The fasthttp data plane (DataPlane FastHTTP).
//
// Why fasthttp: under load, net/http's server and Transport spend most of
// a proxied request's CPU outside the gateway's own work: a goroutine
// hand-off per request between the Transport's readLoop and writeLoop and
// the caller, a fresh http.Request, Header maps and a context per request
// on both sides. fasthttp parses into pooled, reused request objects and
// its HostClient writes a request and reads its answer on the caller's
// goroutine, so a proxied request costs one pass over the bytes and
// (almost) no allocation. It is widely used and fuzzed, and it exposes
// each request's raw header block, which the framing checks need (on
// net/http they rebuild it by recording the connection's bytes:
// framing.go).
//
// What this file keeps exactly as the net/http plane does, on the same
// decision code, events and headers (the gateway's tests run on both
// planes):
//
//   - Framing: a chunked request that also names Content-Length, or
//     announces trailers, gets 400 and its connection closes; HTTP/1.0
//     with Transfer-Encoding gets 400 (fasthttp refuses it while parsing:
//     refuse); a Transfer-Encoding other than chunked gets 501, as on
//     net/http (fasthttp accepts "identity" and drops it). The raw
//     header block is the request's own here, so a pipelined chunked
//     request is judged on its own lines, not refused for want of proof.
//   - Paths: the path is taken from the raw request target, decoded
//     once, never cleaned: dot segments and encoded slashes get 400 as on
//     net/http (unsafePathOf), and the upstream receives the matched
//     path less the stage prefix, escaped as net/http escapes it.
//   - Limits: headers over ServerConfig.MaxHeaderBytes (plus net/http's
//     4 KiB of slack) get 431; ReadHeaderTimeout and IdleTimeout bound
//     the header read and idle connections; a Content-Length over
//     MaxBodyBytes gets 413 before the body is read; a chunked body is cut
//     where it passes it (413); BodyTimeout bounds the body's arrival
//     (408) and ExchangeTimeout the whole exchange (504, or a cut
//     response), on socket deadlines alone (leanConn).
//   - Hop-by-hop headers (and those the client's Connection names),
//     X-Forwarded-For/-Host/-Proto from the connection, X-Tollgate-Key-Id
//     and -Plan-Id from the decision, x-api-key removed, no upgrades.
//   - Streaming: request bodies are streamed from the connection's reader
//     (reqBody) and response bodies through HostClient.StreamResponseBody;
//     only an answer of up to maxBuffered (16 KiB) is read whole.
//     Memory stays flat whatever the size.
//   - Refusals of requests with a body close the connection after a
//     bounded linger, as net/http does (leanConn.Close).
//
// Where fasthttp itself refuses a request (unparsable, headers too large,
// an unsupported Transfer-Encoding), refuse answers in AWS's shape and
// meters it as a bad request, where net/http answers plain text and
// meters nothing. fasthttp is stricter than net/http on two points: a
// request with two identical Content-Length fields gets 400 (net/http
// takes one), and so does a request target with bytes net/http lets
// through. Each is safe to refuse. Where it is more lenient, this plane
// refuses as net/http does: "Transfer-Encoding: identity" (501), a field
// name with a space inside (400), a chunked trailer line that is no field
// (the body fails: 400).

// maxHeaderSlack is what net/http reads beyond MaxHeaderBytes before it
// answers 431; the fasthttp plane allows the same.
const maxHeaderSlack = 4 << 10

// maxDrain is how much of an admitted request's body the upstream left
// unread the plane discards to keep the connection; more, and it closes
// (net/http's own bound, maxPostHandlerReadBytes).
const maxDrain = 256 << 10

// leanServer is the fasthttp data plane behind Server: a connection loop
// of its own around fasthttp's request header parser, response writer
// and HostClient. fasthttp's own Server reads up to 8 KiB of a request's
// body before its handler runs; a client that declares a body and stalls
// would hold the gateway until a timeout, where the gateway refuses it at
// once (an unknown key, an undeclared route) without reading a byte of
// it. Owning the loop keeps that, and 100-continue as net/http has it:
// "100 Continue" goes out only when an admitted request's body is read.
type leanServer struct {
	g   *Gateway
	sc  ServerConfig
	lim limits

	mu      sync.Mutex
	lns     []net.Listener
	conns   map[*leanConn]struct{}
	closing atomic.Bool
	wg      sync.WaitGroup
}

func newLeanServer(g *Gateway, sc ServerConfig) *leanServer {
	sc = sc.withDefaults()
	return &leanServer{g: g, sc: sc, lim: sc.limits(), conns: map[*leanConn]struct{}{}}
}

// Serve accepts connections until Shutdown or Close.
func (s *leanServer) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.lns = append(s.lns, ln)
	s.mu.Unlock()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors, or the like: wait and go on,
			// as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.g.cfg.Logger.Warn("gateway accept failed; retrying", "err", err, "in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		lc := &leanConn{conn: c}
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			c.Close()
			return nil
		}
		s.conns[lc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(lc)
	}
}

// Shutdown stops accepting, closes idle connections and waits for those
// serving a request: each closes once its response is out.
func (s *leanServer) Shutdown(ctx context.Context) error {
	s.stop()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		s.closeIdle()
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			s.closeAll()
			<-done
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Close cuts every connection at once.
func (s *leanServer) Close() error {
	s.stop()
	s.closeAll()
	s.wg.Wait()
	return nil
}

func (s *leanServer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing.Store(true)
	for _, ln := range s.lns {
		ln.Close()
	}
	s.lns = nil
}

// closeIdle closes the connections waiting for a request.
func (s *leanServer) closeIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for lc := range s.conns {
		if lc.state.CompareAndSwap(connIdle, connClaimed) {
			lc.conn.Close()
		}
	}
}

func (s *leanServer) closeAll() {
	s.mu.Lock()
	for lc := range s.conns {
		lc.state.Store(connClaimed)
		lc.conn.Close()
	}
	s.mu.Unlock()
	// A connection's goroutine may be in the upstream exchange, which
	// closing the client's connection does not reach: cut those too.
	s.g.cutUpstreams()
}

// Connection states, for Shutdown: a connection waiting for a request is
// idle, and Shutdown may claim and close it; one reading or serving a
// request is active, and closes itself once its response is out.
const (
	connActive int32 = iota
	connIdle
	connClaimed
)

// exchange is one connection's request and response, reused for each
// request on it.
type exchange struct {
	uri   []byte                 // the upstream request's target, built here
	small *[maxBuffered + 1]byte // a small response body, read whole (maxBuffered); nil between requests
	req   fasthttp.Request
	resp  fasthttp.Response
	lc    *leanConn
	bw    *bufio.Writer
	body  reqBody
	// drop: the client went away; the connection closes without an answer.
	drop bool
}

var exchangePool = sync.Pool{New: func() any { return new(exchange) }}

var (
	connReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	connWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

// serveConn reads and answers the requests of one connection, in order,
// until it closes.
func (s *leanServer) serveConn(lc *leanConn) {
	br := connReaders.Get().(*bufio.Reader)
	br.Reset(lc)
	bw := connWriters.Get().(*bufio.Writer)
	bw.Reset(lc)
	x := exchangePool.Get().(*exchange)
	x.lc, x.bw = lc, bw
	pooled := br
	big := false // x holds a large header block's buffers
	defer func() {
		bw.Flush()
		lc.Close()
		s.mu.Lock()
		delete(s.conns, lc)
		s.mu.Unlock()
		x.req.Reset()
		x.resp.Reset()
		x.lc, x.bw, x.body = nil, nil, reqBody{}
		if !big {
			exchangePool.Put(x)
		}
		pooled.Reset(nil)
		connReaders.Put(pooled)
		bw.Reset(nil)
		connWriters.Put(bw)
		s.wg.Done()
	}()
	wait := s.sc.ReadHeaderTimeout // a new connection's first request
	first := true
	for {
		if br.Buffered() == 0 && bw.Buffered() > 0 {
			// Nothing pipelined behind: the answers go out before the
			// wait for the next request.
			if bw.Flush() != nil {
				return
			}
		}
		now := time.Now()
		lc.readBound(now.Add(wait), wait)
		lc.state.Store(connIdle)
		if s.closing.Load() && lc.state.CompareAndSwap(connIdle, connClaimed) {
			return
		}
		_, err := br.Peek(1)
		if !lc.state.CompareAndSwap(connIdle, connActive) || err != nil {
			return // claimed by Shutdown, gone, or idle too long: no answer
		}
		if !first && !headerBuffered(br) {
			// The rest of the header block is still to come: it has
			// ReadHeaderTimeout from the first byte. (The first request's
			// deadline runs from the accept, as on net/http: a late
			// first byte does not start it over. A block that came whole
			// with its first byte needs no deadline of its own: nothing
			// more is read before the next wait or the body's deadline.)
			now = time.Now()
			lc.readBound(now.Add(s.sc.ReadHeaderTimeout), 0)
		}
		first = false
		// Every answer is written within the exchange's bound (and the
		// linger that lets a 504 out after it), refusals included: a
		// client that sends requests and never reads the answers holds
		// its connection no longer (net/http's plane bounds writes only
		// once an admitted exchange's deadline passed).
		lc.writeBound(now, s.lim.exchangeTimeout)
		x.req.Reset()
		x.resp.Reset()
		x.resp.Header.SetNoDefaultContentType(true)
		err = x.req.Header.Read(br)
		if err != nil && br.Size() < s.sc.MaxHeaderBytes+maxHeaderSlack && isSmallBuffer(err) {
			// A large header block: read it again, from what is
			// buffered, through a buffer that holds the limit.
			br = bufio.NewReaderSize(br, s.sc.MaxHeaderBytes+maxHeaderSlack)
			err = x.req.Header.Read(br)
			big = true
		}
		if err != nil {
			var ne net.Error
			if !errors.Is(err, io.EOF) && !(errors.As(err, &ne) && ne.Timeout()) {
				s.refuse(x, err)
				x.resp.Write(bw)
			}
			return
		}
		if !s.exchange(x, br) {
			return
		}
		if big && br.Buffered() == 0 && pooled.Buffered() == 0 {
			// Nothing pipelined behind the large header block: the
			// connection waits with the pooled reader and an exchange
			// of the usual size. The large ones (the reader, and the
			// header's copies of the block) go to the collector, not the
			// pools: an idle connection that once sent 20 KiB of headers
			// would otherwise hold some 80 KiB.
			br, big = pooled, false
			x = exchangePool.Get().(*exchange)
			x.lc, x.bw = lc, bw
		}
		wait = s.sc.IdleTimeout
	}
}

// headerBuffered reports whether br holds a whole header block: its
// blank line (CRLF or bare LF) is buffered.
func headerBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.Contains(b, []byte("\r\n\r\n")) || bytes.Contains(b, []byte("\n\n"))
}

func isSmallBuffer(err error) bool {
	var small *fasthttp.ErrSmallBuffer
	return errors.As(err, &small)
}

// exchange serves one request whose headers x holds, the body (if any)
// still in br; it reports whether the connection serves another.
func (s *leanServer) exchange(x *exchange, br *bufio.Reader) (keep bool) {
	h := &x.req.Header
	x.body = reqBody{x: x, br: br, expect: h.IsHTTP11() && bytes.EqualFold(h.Peek("Expect"), []byte("100-continue"))}
	switch cl := h.ContentLength(); {
	case cl > 0:
		x.body.fixed = io.LimitedReader{R: br, N: int64(cl)}
		x.body.r = &x.body.fixed
	case cl == -1:
		x.body.r = httputil.NewChunkedReader(br)
		x.body.chunked = true
	default:
		x.body.eof = true
	}
	s.serve(x)
	if x.drop {
		x.drop = false
		x.resp.Reset()
		return false
	}
	if h.IsHead() {
		x.resp.SkipBody = true
	}
	// HTTP/1.0 reads no chunks: a body of unknown length ends with the
	// connection.
	untilClose := !h.IsHTTP11() && x.resp.IsBodyStream() && x.resp.Header.ContentLength() < 0
	keep = !untilClose && !h.ConnectionClose() && !x.resp.ConnectionClose() && !s.closing.Load()
	if !keep {
		x.resp.SetConnectionClose()
	} else if !h.IsHTTP11() {
		x.resp.Header.Set(hConnection, "keep-alive")
	}
	var err error
	if untilClose {
		err = writeUntilClose(&x.resp, x.bw)
	} else {
		err = x.resp.Write(x.bw)
	}
	x.resp.Reset()
	if x.small != nil {
		smallBodies.Put(x.small)
		x.small = nil
	}
	if err != nil {
		return false
	}
	if keep && !x.body.eof {
		// What the upstream left of the body is read and dropped, up to
		// maxDrain; more, or a body that does not come, closes.
		if n, err := io.CopyN(io.Discard, &x.body, maxDrain+1); n > maxDrain || err != io.EOF {
			keep = false
		}
	}
	if !keep || br.Buffered() == 0 {
		if x.bw.Flush() != nil {
			return false
		}
	}
	return keep
}

// writeUntilClose writes a response whose length is unknown to an
// HTTP/1.0 client: no Content-Length, no chunks, the body until the
// connection closes.
func writeUntilClose(r *fasthttp.Response, bw *bufio.Writer) error {
	stream := r.BodyStream()
	r.Header.Del("Transfer-Encoding")
	r.Header.SetContentLength(-2) // no length, and Connection: close
	err := r.Header.Write(bw)
	if err == nil && !r.SkipBody {
		_, err = io.Copy(bw, stream)
	}
	if st, ok := stream.(*leanStream); ok && err != nil {
		st.werr = err
	}
	r.CloseBodyStream() // meters it (leanStream)
	return err
}

// reqBody is a request's body as the connection delivers it: a fixed
// length, or chunks and their trailer section. It sends "100 Continue"
// before its first read when the client asked for it.
type reqBody struct {
	x       *exchange
	br      *bufio.Reader
	r       io.Reader
	fixed   io.LimitedReader
	chunked bool
	expect  bool
	eof     bool
}

func (b *reqBody) Read(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	if b.expect {
		b.expect = false
		b.x.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		if err := b.x.bw.Flush(); err != nil {
			return 0, err
		}
	}
	n, err := b.r.Read(p)
	if err == io.EOF {
		if b.fixed.R != nil && b.fixed.N > 0 {
			err = io.ErrUnexpectedEOF // the connection ended first
		} else if b.chunked {
			err = skipTrailer(b.br)
		}
		if err == nil || err == io.EOF {
			b.eof, err = true, io.EOF
		}
	}
	return n, err
}

// skipTrailer reads a chunked body's trailer section, up to its blank
// line; 4 KiB at most. Every line must be a field (a token, then a
// colon), as net/http reads them: anything else, such as the next request
// of a client (or a front end) that ended the body at "0\r\n", fails the
// body rather than being swallowed as trailer fields.
func skipTrailer(br *bufio.Reader) error {
	total := 0
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if total += len(line); total > 4<<10 {
			return errors.New("chunked body: trailer section over 4 KiB")
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			return nil
		}
		if name, _, ok := bytes.Cut(line, []byte(":")); !ok || !isToken(name) {
			return errMalformedTrailer
		}
	}
}

var errMalformedTrailer = errors.New("chunked body: malformed trailer field")

// isToken reports whether b is a non-empty token (RFC 9110 §5.6.2), what
// a field name is.
func isToken(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return len(b) > 0
}

// b2s views b as a string without copying; the string must not outlive
// the request that owns b.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// s2b views s as bytes without copying, for fasthttp's setters, which
// copy them; the bytes must not be written.
func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// methodString returns the catalog's constant for a known method, so that
// events never hold a request's buffer; other methods are copied.
func methodString(m []byte) string {
	switch string(m) {
	case "GET":
		return "GET"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "PATCH":
		return "PATCH"
	case "DELETE":
		return "DELETE"
	case "HEAD":
		return "HEAD"
	case "OPTIONS":
		return "OPTIONS"
	}
	return string(m)
}

// target is a request target split as net/http splits it: the decoded
// path, the raw path (escaped as received), and the raw query.
type target struct {
	path, rawPath, query string
	absHost              string // the authority of an absolute-form target
}

// parseTarget splits a raw request target. The strings view raw, except
// for a path that needed decoding. It fails where net/http's parser fails
// (a bad escape).
func parseTarget(raw []byte) (target, bool) {
	var t target
	s := b2s(raw)
	if i := strings.IndexByte(s, '?'); i >= 0 {
		s, t.query = s[:i], s[i+1:]
	}
	if len(s) > 0 && s[0] != '/' {
		// Absolute form (http://host/path), as a client talking to a
		// proxy sends it; net/http takes the host from it.
		scheme, rest, ok := strings.Cut(s, "://")
		if !ok || !strings.EqualFold(scheme, "http") && !strings.EqualFold(scheme, "https") {
			t.path, t.rawPath = s, s // "*", or a target no route matches
			return t, true
		}
		host, p, _ := strings.Cut(rest, "/")
		t.absHost, s = host, "/"+p
	}
	t.rawPath, t.path = s, s
	if strings.IndexByte(s, '%') >= 0 {
		p, err := url.PathUnescape(s)
		if err != nil {
			return t, false
		}
		t.path = p
	}
	return t, true
}

// rawFields is what the framing checks need of a request's raw header
// block, which fasthttp parses more leniently than net/http on these
// points.
type rawFields struct {
	// The block names Content-Length, Transfer-Encoding, Trailer.
	contentLength, transferEncoding, trailer bool
	// A field name has a space inside ("Transfer Encoding"), which
	// fasthttp accepts and net/http refuses.
	spacedName bool
}

// scanFields reads a raw header block, one pass over its lines.
func scanFields(block []byte) (f rawFields) {
	for len(block) > 0 {
		var line []byte
		line, block = nextLine(block)
		if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
			continue // a folded line continues the field before it
		}
		i := bytes.IndexByte(line, ':')
		if i < 0 {
			continue
		}
		name := line[:i]
		if bytes.IndexByte(name, ' ') >= 0 {
			f.spacedName = true
		}
		switch name[0] | 0x20 {
		case 'c':
			f.contentLength = f.contentLength || fieldIs(name, "content-length")
		case 't':
			f.transferEncoding = f.transferEncoding || fieldIs(name, "transfer-encoding")
			f.trailer = f.trailer || fieldIs(name, "trailer")
		}
	}
	return f
}

// serve decides one request and answers it, or proxies it (x.resp holds
// the answer when it returns).
func (s *leanServer) serve(x *exchange) {
	g, lc := s.g, x.lc
	start := g.cfg.Now()
	// The header deadline stays until the next request's wait: nothing
	// reads the connection before then but an admitted body, whose
	// deadline arm sets.
	t := g.table.Load()
	h := &x.req.Header
	method := methodString(h.Method())
	cl := int64(h.ContentLength())
	chunked := cl == -1
	if cl < -1 {
		cl = 0
	}
	var d decision
	var rj *rejection
	ambiguous := false
	tg, parsed := parseTarget(h.RequestURI())
	raw := scanFields(h.RawHeaders())
	switch {
	case chunked && (raw.contentLength || raw.trailer):
		// Framed two ways, or announcing trailers: 400, as on the
		// net/http plane (see inspectBlock). fasthttp has already refused
		// HTTP/1.0 with Transfer-Encoding, two Transfer-Encoding fields
		// and codings other than chunked and identity.
		d.outcome, ambiguous = schemas.DecisionBadRequest, true
	case raw.spacedName:
		// Passed on, it would reach an upstream that may read the name
		// otherwise; net/http answers 400.
		d.outcome, ambiguous = schemas.DecisionBadRequest, true
	case !chunked && raw.transferEncoding:
		// "Transfer-Encoding: identity", which fasthttp accepts and drops:
		// the request would be read by its Content-Length, or as one
		// without a body, where a front end that honours the field reads
		// it otherwise. net/http answers 501.
		d.outcome, rj, ambiguous = schemas.DecisionBadRequest, rejNotImplemented, true
	case !parsed || unsafePathOf(tg.path, tg.rawPath):
		d.outcome = schemas.DecisionBadRequest
	case cl > s.lim.maxBodyBytes:
		d.outcome, rj = schemas.DecisionBadRequest, rejTooLarge
	default:
		var kb [2]string
		keys := kb[:0]
		for _, v := range h.PeekAll(hAPIKey) {
			if len(keys) == len(kb) {
				keys = append(keys, "") // a third: decide only counts them
				break
			}
			keys = append(keys, b2s(v))
		}
		host := tg.absHost
		if host == "" {
			host = b2s(h.Host())
		}
		t.decide(&d, host, tg.path, method, keys, start)
	}
	resp := &x.resp
	if t.headers {
		setRateLimitHeadersFast(&resp.Header, &d)
	}
	if d.outcome == schemas.DecisionAllowed {
		s.proxy(x, &d, &tg, method, cl, start)
		return
	}
	if rj == nil {
		rj = rejectionFor(d.outcome, t.notFound)
	}
	hasBody := cl != 0 || chunked || ambiguous
	out := rj.writeFast(resp, hasBody)
	if hasBody {
		lc.lingerOnClose()
	}
	g.emit(&d, method, start, g.cfg.Now(), int32(rj.status), 0, out)
}

// refuse answers a request whose headers could not be read: in AWS's
// shape, the connection closed after it, metered as a bad request (the
// rejections table counts it; nothing of it identifies a key).
func (s *leanServer) refuse(x *exchange, err error) {
	g := s.g
	start := g.cfg.Now()
	rj := rejBadRequest
	switch {
	case isSmallBuffer(err):
		rj = rejHeadersTooLarge
	case errors.Is(err, fasthttp.ErrUnsupportedTransferEncoding):
		// HTTP/1.0 with Transfer-Encoding: faulty framing, 400.
	case strings.Contains(err.Error(), "transfer-encoding"):
		rj = rejNotImplemented // a coding other than chunked, or two fields
	}
	x.lc.lingerOnClose()
	x.resp.Reset()
	out := rj.writeFast(&x.resp, true)
	d := decision{outcome: schemas.DecisionBadRequest}
	g.emit(&d, methodString(x.req.Header.Method()), start, g.cfg.Now(), int32(rj.status), 0, out)
}

// writeFast is write for the fasthttp plane.
func (rj *rejection) writeFast(r *fasthttp.Response, close bool) int64 {
	r.SetStatusCode(rj.status)
	r.Header.SetContentTypeBytes(bJSON)
	if close {
		r.SetConnectionClose()
	}
	if rj.errType != nil {
		r.Header.SetCanonical(bErrorType, s2b(rj.errType[0]))
	}
	r.SetBodyRaw(rj.body)
	return int64(len(rj.body))
}

var (
	bJSON       = []byte("application/json")
	bErrorType  = []byte(hErrorType)
	bRateLimit  = []byte(hRateLimit)
	bPolicy     = []byte(hRateLimitPol)
	bRetryAfter = []byte(hRetryAfter)
)

// setRateLimitHeadersFast is setRateLimitHeaders for the fasthttp plane.
func setRateLimitHeadersFast(h *fasthttp.ResponseHeader, d *decision) {
	if d.plan != nil && (d.throttled || d.quotaed) {
		h.SetCanonical(bPolicy, s2b(d.plan.policy[0]))
		var buf [96]byte
		h.SetCanonical(bRateLimit, appendRateLimit(buf[:0], d))
	}
	if d.outcome == schemas.DecisionThrottled || d.outcome == schemas.DecisionQuotaExceeded {
		var buf [20]byte
		h.SetCanonical(bRetryAfter, appendRetryAfter(buf[:0], d))
	}
}

// leanListener wraps the connections of the fasthttp plane's listener.
type leanListener struct{ net.Listener }

func (l leanListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &leanConn{conn: c}, nil
}

// leanConn carries one client connection's exchange deadline (arm), the
// cause of a failed body read, and whether closing it lingers. Its
// fields but state are the connection goroutine's alone.
//
// The exchange deadline needs no timer here (net/http's plane has one per
// connection, framingConn): every wait of an admitted exchange is on a
// socket with a deadline no later than the exchange's, the client's body
// (arm), the upstream's write and its answer (leanServer.proxy), and the
// writes to the client (serveConn's write bound); whether the deadline
// cut the exchange is told by the clock (disarm).
type leanConn struct {
	conn  net.Conn
	state atomic.Int32 // connActive, connIdle or connClaimed (Shutdown)
	xff   []byte       // the client's address, for X-Forwarded-For (remoteIP)

	deadline     time.Time // the exchange's, while armed
	armed        bool      // a request is in flight under the deadline
	linger       bool      // Close drains what the client sent first
	readTimedOut bool      // a read failed on its deadline since arm
	writeBy      time.Time // the write deadline last set (writeBound)
	readBy       time.Time // the read deadline last set (readBound, arm)
}

func (c *leanConn) Read(p []byte) (int, error) {
	n, err := c.conn.Read(p)
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			c.readTimedOut = true
		}
	}
	return n, err
}

func (c *leanConn) Write(p []byte) (int, error)        { return c.conn.Write(p) }
func (c *leanConn) LocalAddr() net.Addr                { return c.conn.LocalAddr() }
func (c *leanConn) RemoteAddr() net.Addr               { return c.conn.RemoteAddr() }
func (c *leanConn) SetDeadline(t time.Time) error      { return c.conn.SetDeadline(t) }
func (c *leanConn) SetReadDeadline(t time.Time) error  { return c.conn.SetReadDeadline(t) }
func (c *leanConn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }

// readBound sets the connection's read deadline to want, unless the one
// in force is no later than want and at most d/64 earlier: a kept-alive
// connection's wait for its next request is not moved at every request
// (each move reads the clock and resets a runtime timer).
func (c *leanConn) readBound(want time.Time, d time.Duration) {
	if early := want.Sub(c.readBy); early < 0 || early > d/64 {
		c.conn.SetReadDeadline(want)
		c.readBy = want
	}
}

// writeBound makes the connection's writes fail by now+d at the earliest
// and now+d+lingerTimeout at the latest: the deadline is moved only when
// it is more than lingerTimeout older than wanted, not at every request.
func (c *leanConn) writeBound(now time.Time, d time.Duration) {
	if want := now.Add(d); want.Sub(c.writeBy) > lingerTimeout {
		c.conn.SetWriteDeadline(want.Add(lingerTimeout))
		c.writeBy = want.Add(lingerTimeout)
	}
}

// lingerOnClose makes Close read and discard what the client already sent
// (for lingerTimeout at most) after the last response, so that closing
// does not reset the connection before the client read the answer.
func (c *leanConn) lingerOnClose() { c.linger = true }

func (c *leanConn) Close() error {
	if c.linger {
		if tc, ok := c.conn.(interface{ CloseWrite() error }); ok && tc.CloseWrite() == nil {
			c.conn.SetReadDeadline(time.Now().Add(lingerTimeout))
			io.CopyN(io.Discard, c.conn, 1<<20)
		}
	}
	return c.conn.Close()
}

// arm starts the deadlines of an admitted request: the exchange's, and
// the body's (BodyTimeout, or the exchange's if that comes first).
func (c *leanConn) arm(body bool, lim *limits) {
	now := time.Now()
	c.deadline, c.armed, c.readTimedOut = now.Add(lim.exchangeTimeout), true, false
	if body {
		c.readBy = now.Add(min(lim.bodyTimeout, lim.exchangeTimeout))
		c.conn.SetReadDeadline(c.readBy)
	}
}

// disarm ends the exchange. For one that failed it reports whether its
// deadline had passed (a deadline cut it); a success reads no clock.
func (c *leanConn) disarm(failed bool) (expired bool) {
	expired = failed && c.armed && !time.Now().Before(c.deadline)
	c.armed = false
	return expired
}
