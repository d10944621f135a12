package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/tollgate/tollgate/enforcer"
)

// edgeLimits are the flags that bound the gateway listener: what a client
// may make the gateway read and wait for (enforcer.ServerConfig).
type edgeLimits struct {
	bodyTimeout     time.Duration
	maxBodyBytes    int64
	exchangeTimeout time.Duration
	plane           enforcer.DataPlane
}

func (l *edgeLimits) addFlags(f *pflag.FlagSet) {
	l.bodyTimeout, l.maxBodyBytes, l.exchangeTimeout = enforcer.DefaultBodyTimeout, enforcer.DefaultMaxBodyBytes, enforcer.DefaultExchangeTimeout
	f.Var((*positiveDuration)(&l.bodyTimeout), "body-timeout", "bound on reading a request body; past it the upstream request is aborted and the client gets 408")
	f.Var((*positiveInt64)(&l.maxBodyBytes), "max-body-bytes", "largest request body; a larger Content-Length gets 413 before it is read, a chunked body is cut where it passes it")
	l.plane = defaultPlane
	f.Var((*dataPlane)(&l.plane), "data-plane", `HTTP machinery of the gateway listener: "fasthttp" (the lean one) or "net/http" (for what only it has, such as HTTP/2 behind a TLS terminator); README, "Behaviour at the edge"`)
	f.Var((*positiveDuration)(&l.exchangeTimeout), "exchange-timeout", "bound on an admitted request as a whole (body, upstream answer and its streaming); past it 504, or the response is cut")
}

// serverConfig is the gateway listener's configuration; zero fields (tests
// that set no flags) take enforcer's defaults.
func (l edgeLimits) serverConfig() enforcer.ServerConfig {
	return enforcer.ServerConfig{BodyTimeout: l.bodyTimeout, MaxBodyBytes: l.maxBodyBytes, ExchangeTimeout: l.exchangeTimeout}
}

// defaultPlane is --data-plane's default; the tests set it to run the
// gateway's end-to-end tests on both planes (TestMain).
var defaultPlane = enforcer.DefaultDataPlane

// dataPlane is the --data-plane flag.
type dataPlane enforcer.DataPlane

func (p *dataPlane) String() string { return string(*p) }
func (p *dataPlane) Type() string   { return "plane" }
func (p *dataPlane) Set(s string) error {
	v, err := enforcer.ParseDataPlane(s)
	if err != nil {
		return err
	}
	*p = dataPlane(v)
	return nil
}

// positiveDuration is a duration flag that refuses zero and negative
// values: a zero would silently mean the default, not "no limit".
type positiveDuration time.Duration

func (d *positiveDuration) String() string { return time.Duration(*d).String() }
func (d *positiveDuration) Type() string   { return "duration" }
func (d *positiveDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if v <= 0 {
		return fmt.Errorf("must be positive, got %s", s)
	}
	*d = positiveDuration(v)
	return nil
}

// positiveInt64 is an int64 flag that refuses zero and negative values.
type positiveInt64 int64

func (n *positiveInt64) String() string { return strconv.FormatInt(int64(*n), 10) }
func (n *positiveInt64) Type() string   { return "int" }
func (n *positiveInt64) Set(s string) error {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return err
	}
	if v <= 0 {
		return fmt.Errorf("must be positive, got %s", s)
	}
	*n = positiveInt64(v)
	return nil
}
