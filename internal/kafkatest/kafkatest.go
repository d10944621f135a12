// Package kafkatest starts an in-process Kafka-protocol broker (franz-go's
// kfake) for tests; clients reach it over TCP on loopback exactly as they
// would reach a cluster.
package kafkatest

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Start runs a one-broker cluster for the test on a free loopback port and
// returns it with its addresses; it stops when the test ends.
func Start(t testing.TB, opts ...kfake.Opt) (*kfake.Cluster, []string) {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c, c.ListenAddrs()
}

// Proxy stands between clients and a broker (toxiproxy, in-process) so
// that a test can make the network fail.
type Proxy struct {
	p *toxiproxy.Proxy
}

// StartBehindProxy runs a one-broker cluster whose clients reach it only
// through a proxy: the broker advertises the proxy's address, so
// connections made after a metadata refresh go through it too.
func StartBehindProxy(t testing.TB, opts ...kfake.Opt) (*kfake.Cluster, *Proxy, []string) {
	t.Helper()
	logger := zerolog.Nop()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), logger)
	px := &Proxy{}
	listen := func(network, address string) (net.Listener, error) {
		ln, err := net.Listen(network, address)
		if err != nil {
			return nil, err
		}
		px.p = toxiproxy.NewProxy(srv, "kafka", "127.0.0.1:0", ln.Addr().String())
		px.p.Logger = &logger
		if err := px.p.Start(); err != nil {
			ln.Close()
			return nil, err
		}
		return advertised{ln, px.p}, nil
	}
	c, brokers := Start(t, append([]kfake.Opt{kfake.ListenFn(listen)}, opts...)...)
	t.Cleanup(px.p.Stop)
	return c, px, brokers
}

// advertised is the broker's listener, reporting the proxy's address.
type advertised struct {
	net.Listener
	p *toxiproxy.Proxy
}

func (a advertised) Addr() net.Addr {
	addr, err := net.ResolveTCPAddr("tcp", a.p.Listen)
	if err != nil {
		return a.Listener.Addr()
	}
	return addr
}

// Blackhole makes the network drop every byte both ways, on open
// connections and new ones, without closing them: the broker looks hung,
// the harshest outage for a client (every request waits for its
// timeout).
func (p *Proxy) Blackhole(t testing.TB) {
	t.Helper()
	p.bothWays(t, "blackhole", "timeout")
}

// bothWays adds a toxic of type typ, with a timeout of 0, to both
// streams of the proxy, named name-upstream and name-downstream.
func (p *Proxy) bothWays(t testing.TB, name, typ string) {
	t.Helper()
	for _, stream := range []string{"upstream", "downstream"} {
		body := `{"name":"` + name + `-` + stream + `","type":"` + typ + `","stream":"` + stream + `","attributes":{"timeout":0}}`
		if _, err := p.p.Toxics.AddToxicJson(strings.NewReader(body)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

// Restore lets bytes flow again. Connections that lost bytes meanwhile
// are broken for the protocol; clients must notice and reconnect.
func (p *Proxy) Restore(t testing.TB) {
	t.Helper()
	p.p.Toxics.ResetToxics(context.Background())
}

// NewProxy runs a proxy on a free loopback port to upstream (any TCP
// service: the tests put one in front of ClickHouse) until the test ends.
func NewProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	logger := zerolog.Nop()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), logger)
	p := toxiproxy.NewProxy(srv, "proxy", "127.0.0.1:0", upstream)
	p.Logger = &logger
	if err := p.Start(); err != nil {
		t.Fatalf("start proxy to %s: %v", upstream, err)
	}
	t.Cleanup(p.Stop)
	return &Proxy{p: p}
}

// Addr is where clients connect to reach the upstream.
func (p *Proxy) Addr() string { return p.p.Listen }

// CutConnections resets every connection through the proxy, open or
// opened until Restore (a TCP RST, as when a peer or a middlebox dies).
func (p *Proxy) CutConnections(t testing.TB) {
	t.Helper()
	p.bothWays(t, "cut", "reset_peer")
}
