package loadgen

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config describes one load run. The zero value of every field except Addr
// means its default.
type Config struct {
	// Addr is the host:port to dial over TCP. Required.
	Addr string

	// Method is the request method. Default "GET". A HEAD request's
	// responses are read without a body.
	Method string

	// Path is the request target, origin form ("/items?x=1"). Default "/".
	Path string

	// Host is the Host header. Default Addr.
	Host string

	// Header holds extra request headers such as x-api-key, written in
	// sorted order. Host, Content-Length and Transfer-Encoding may not be
	// set here: the generator writes them itself. Default none.
	Header http.Header

	// Body is sent with every request, with a Content-Length. Default none.
	Body []byte

	// Conns is the number of connections, each with one request in
	// flight. Default 64.
	Conns int

	// Warmup is run before the measured period; its responses count
	// neither in Status nor in Latency. Default 0 (no warm-up).
	Warmup time.Duration

	// Duration is the measured period. Default 10s.
	Duration time.Duration

	// Timeout bounds a dial and a whole request (write plus reading the
	// response); one that takes longer counts in Errors.Timeout and its
	// connection is dialled again. Default 5s. Deadlines never reach past
	// the end of the run.
	Timeout time.Duration

	// Rate, when positive, paces the run at Rate requests per second in
	// all: each connection sends on a fixed schedule of its own, one
	// request every Conns/Rate seconds, the connections' slots staggered
	// evenly, and waits for its next slot once a response is in. A
	// request whose slot passed before its connection's previous response
	// was in is sent at once and counted in Result.Late, so the schedule
	// catches up and the rate holds. Latency is still measured from the
	// write, not from the slot: the generator's own timer wake-ups (the Go
	// runtime sleeps in whole milliseconds when idle) would otherwise be
	// counted against the server, and a Late of 0 shows that measuring
	// from the write hid no waiting. Default 0: closed loop, each
	// connection sending again as soon as a response is in.
	Rate float64

	// OnMeasureStart and OnMeasureEnd, when not nil, are called when the
	// measured period begins and when it ends, each once, from a
	// goroutine of Run's: e.g. to read a server's CPU time over exactly
	// that period. Run returns after both have returned. Neither is
	// called once ctx has ended. nil: nothing is called.
	OnMeasureStart, OnMeasureEnd func()
}

// Defaults.
const (
	DefaultConns    = 64
	DefaultDuration = 10 * time.Second
	DefaultTimeout  = 5 * time.Second
)

func (c Config) withDefaults() Config {
	if c.Method == "" {
		c.Method = http.MethodGet
	}
	if c.Path == "" {
		c.Path = "/"
	}
	if c.Host == "" {
		c.Host = c.Addr
	}
	if c.Conns == 0 {
		c.Conns = DefaultConns
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

// Validate reports every problem with c (after defaults), joined.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("addr is required"))
	}
	if !isToken(c.Method) {
		errs = append(errs, fmt.Errorf("method %q is not a valid token", c.Method))
	}
	if !strings.HasPrefix(c.Path, "/") || !isFieldText(c.Path) || strings.ContainsAny(c.Path, " \t") {
		errs = append(errs, fmt.Errorf("path %q must start with / and hold no spaces or control bytes", c.Path))
	}
	if !isFieldText(c.Host) || strings.ContainsAny(c.Host, " \t") {
		errs = append(errs, fmt.Errorf("host %q holds spaces or control bytes", c.Host))
	}
	for name, values := range c.Header {
		switch {
		case !isToken(name):
			errs = append(errs, fmt.Errorf("header name %q is not a valid token", name))
		case strings.EqualFold(name, "Host"):
			errs = append(errs, errors.New("set Host through Config.Host, not Header"))
		case strings.EqualFold(name, "Content-Length"), strings.EqualFold(name, "Transfer-Encoding"):
			errs = append(errs, fmt.Errorf("header %s is written by the generator", name))
		}
		for _, v := range values {
			if !isFieldText(v) {
				errs = append(errs, fmt.Errorf("header %s: value %q holds control bytes", name, v))
			}
		}
	}
	if c.Conns < 0 {
		errs = append(errs, fmt.Errorf("conns %d must be positive", c.Conns))
	}
	if c.Warmup < 0 {
		errs = append(errs, fmt.Errorf("warmup %v must not be negative", c.Warmup))
	}
	if c.Duration < 0 {
		errs = append(errs, fmt.Errorf("duration %v must be positive", c.Duration))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %v must be positive", c.Timeout))
	}
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		errs = append(errs, fmt.Errorf("rate %v must be a positive number of requests per second, or 0", c.Rate))
	}
	return errors.Join(errs...)
}

// buildRequest returns the bytes written for every request.
func (c Config) buildRequest() []byte {
	var b strings.Builder
	b.WriteString(c.Method)
	b.WriteByte(' ')
	b.WriteString(c.Path)
	b.WriteString(" HTTP/1.1\r\nHost: ")
	b.WriteString(c.Host)
	b.WriteString("\r\n")
	names := make([]string, 0, len(c.Header))
	for name := range c.Header {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		for _, v := range c.Header[name] {
			b.WriteString(name)
			b.WriteString(": ")
			b.WriteString(v)
			b.WriteString("\r\n")
		}
	}
	if len(c.Body) > 0 {
		b.WriteString("Content-Length: ")
		b.WriteString(strconv.Itoa(len(c.Body)))
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	b.Write(c.Body)
	return []byte(b.String())
}

// isToken reports whether s is a non-empty RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// isFieldText reports whether s holds no control bytes (tab allowed).
func isFieldText(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
