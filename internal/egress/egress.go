// Package egress decides which addresses the MCP servers a satellite runs may connect to. One Policy serves
// both places that connect on a tenant's behalf: the network namespace of a sandboxed stdio server (the
// sandbox turns the policy into firewall rules inside the namespace) and the satellite's own dialer for
// remote HTTP and SSE servers (Policy.Control checks each address after DNS resolution, when it is dialed).
//
// The check is always on the address actually connected to, never on a name: a DNS answer that points at
// 127.0.0.1 or 169.254.169.254 is refused like the address itself.
//
//	p := egress.Policy{}                  // the default: the public internet only
//	d := &net.Dialer{Control: p.Control}  // refuses loopback, link-local, private, ... at connect time
package egress

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Mode is what a server may reach.
type Mode string

const (
	// ModeNone cuts a server off from every network but its own loopback.
	ModeNone Mode = "none"
	// ModePublic lets a server reach the internet, and nothing of the satellite's surroundings: see Denied.
	ModePublic Mode = "public"
)

// Denied are the networks a server with public egress may not reach, unless a satellite's Policy.Allow
// names them: this host (0/8, loopback), link-local (cloud metadata services at 169.254.169.254 and
// fd00:ec2::254 among them), private networks (RFC 1918, ULA), shared address space (CGNAT, 100.64/10),
// IETF protocol assignments (192.0.0.0/24), the reserved and broadcast space, multicast, IPv4-mapped
// and NAT64 local-use IPv6 (ways to spell an IPv4 address), and discard-only IPv6.
var Denied = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"), // includes 255.255.255.255
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("::ffff:0:0/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("100::/64"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("ff00::/8"),
}

// Policy is a satellite's egress rule for public egress: Denied, narrowed or widened by the operator.
// The zero Policy is the default.
type Policy struct {
	// Allow are networks reachable even though Denied (or Deny) covers them, such as a private network a
	// team satellite's team owns. Allow wins over Deny and Denied alike, and over the satellite's own
	// addresses.
	Allow []netip.Prefix
	// Deny are further networks no server may reach, on top of Denied.
	Deny []netip.Prefix
	// Own are the satellite's own addresses, refused like Denied. Nil means the addresses of this host's
	// interfaces, read at each check (see OwnAddresses).
	Own []netip.Addr
}

// ErrForbidden is the error of a connection the policy refuses.
var ErrForbidden = errors.New("egress policy forbids this address")

// Permits reports whether a server with public egress may connect to addr.
func (p Policy) Permits(addr netip.Addr) bool {
	addr = addr.Unmap()
	if !addr.IsValid() {
		return false
	}
	for _, n := range p.Allow {
		if n.Contains(addr) {
			return true
		}
	}
	for _, n := range slices.Concat(Denied, p.Deny) {
		if n.Contains(addr) {
			return false
		}
	}
	own := p.Own
	if own == nil {
		own = OwnAddresses()
	}
	return !slices.Contains(own, addr)
}

// Control is a net.Dialer Control function that refuses, with ErrForbidden, a connection to an address the
// policy does not permit. It runs after name resolution, for every address tried.
func (p Policy) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("egress: %s address %q: %w", network, address, err)
	}
	if !p.Permits(ap.Addr()) {
		return fmt.Errorf("egress: %s: %w", ap.Addr(), ErrForbidden)
	}
	return nil
}

// Transport returns an http.Transport like http.DefaultTransport that connects only to addresses p permits,
// checked after DNS resolution, for every connection, redirects included. It uses no proxy: a proxy would
// connect on the client's behalf to where the policy cannot see.
func (p Policy) Transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: p.Control}).DialContext
	return t
}

// OwnAddresses returns the addresses of this host's network interfaces, without their zones.
func OwnAddresses() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var own []netip.Addr
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				own = append(own, ip.Unmap())
			}
		}
	}
	return own
}

// ParsePrefixes parses a comma- or space-separated list of networks (10.1.0.0/16) and addresses (a single
// address is a network of one).
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for f := range strings.FieldsFuncSeq(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a network (10.1.0.0/16) nor an address", f)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
