package notify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/catalog"
)

// Guard is the policy on where notifications may go, against server-side
// request forgery: a webhook is created by an admin, but the admin API
// must not become a way to make the node reach what only it can reach.
//
// Refused always: link-local addresses (169.254.0.0/16, fe80::/10: the
// cloud metadata services at 169.254.169.254 and fd00:ec2::254 among
// them), unspecified, multicast and broadcast addresses. Refused unless
// AllowPrivate: loopback, private (10/8, 172.16/12, 192.168/16, fc00::/7)
// and shared (100.64/10) addresses. The check is made on the address
// dialled, after name resolution, so a name that resolves to an internal
// address (DNS rebinding included) is refused too. Redirects are not
// followed.
type Guard struct {
	// AllowPrivate allows loopback and private addresses (a receiver in
	// the same network; tests). Off by default.
	AllowPrivate bool
}

// ErrRefusedAddress: the URL's host is an address the Guard refuses.
var ErrRefusedAddress = errors.New("address refused")

var (
	metadataV6 = netip.MustParsePrefix("fd00:ec2::254/128")
	sharedV4   = netip.MustParsePrefix("100.64.0.0/10")
	// IPv6 addresses that reach an IPv4 one through a translator or a
	// tunnel: judged by the IPv4 address they carry.
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// Allowed reports why an address is refused, nil if it is not.
func (g Guard) Allowed(a netip.Addr) error {
	a = a.Unmap()
	if a.Is6() {
		b := a.As16()
		var v4 netip.Addr
		switch {
		case nat64.Contains(a):
			v4 = netip.AddrFrom4([4]byte(b[12:16]))
		case sixToFour.Contains(a):
			v4 = netip.AddrFrom4([4]byte(b[2:6]))
		}
		if v4.IsValid() {
			if err := g.Allowed(v4); err != nil {
				return fmt.Errorf("%w (carried by %s)", err, a)
			}
		}
	}
	switch {
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast(), metadataV6.Contains(a):
		return fmt.Errorf("%w: %s is link-local (cloud metadata services live there)", ErrRefusedAddress, a)
	case a.IsUnspecified(), a.IsMulticast(), a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("%w: %s is not a unicast address", ErrRefusedAddress, a)
	case g.AllowPrivate:
		return nil
	case a.IsLoopback(), a.IsPrivate(), sharedV4.Contains(a):
		return fmt.Errorf("%w: %s is a loopback or private address (allowed only with --webhook-allow-private)", ErrRefusedAddress, a)
	}
	return nil
}

// control refuses connections to addresses the guard refuses.
func (g Guard) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrRefusedAddress, address)
	}
	return g.Allowed(ap.Addr())
}

// Client returns the HTTP client notifications are sent with: every
// connection checked by the guard, each attempt bounded by timeout
// (connection, request, response headers and the bounded read of the
// body), no redirects followed, no proxy from the environment.
func (g Guard) Client(timeout time.Duration) *http.Client {
	d := &net.Dialer{Timeout: min(timeout, 5*time.Second), Control: g.control}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:            d.DialContext,
			TLSHandshakeTimeout:    min(timeout, 5*time.Second),
			ResponseHeaderTimeout:  timeout,
			MaxResponseHeaderBytes: 16 << 10,
			MaxIdleConnsPerHost:    2,
			IdleConnTimeout:        30 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// CheckURL checks a webhook URL as the admin API does when a webhook is
// created or its URL changed: its form (catalog.CheckWebhookURL), then
// that its host resolves, within the context's deadline, and to no
// address the guard refuses. It returns a message for the url field, ""
// if the URL is acceptable.
func (g Guard) CheckURL(ctx context.Context, raw string) string {
	if msg := catalog.CheckWebhookURL(raw); msg != "" {
		return msg
	}
	u, _ := url.Parse(raw)
	host := u.Hostname()
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if addrs, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host); err != nil || len(addrs) == 0 {
			return fmt.Sprintf("is unreachable: host %q does not resolve", host)
		}
	}
	for _, a := range addrs {
		if err := g.Allowed(a); err != nil {
			return "is refused: " + err.Error()
		}
	}
	return ""
}
