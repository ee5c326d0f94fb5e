package server

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// trustProxies takes, for a request that comes from one of the trusted networks (a load balancer or
// reverse proxy in front of the replicas), the client's address from X-Forwarded-For: the rightmost entry
// that is not itself trusted. Logins, their audit entries and the registration limit then see the client
// rather than the proxy. Other requests keep their own address, so a client cannot claim another by
// sending the header.
func trustProxies(trusted []netip.Prefix, next http.Handler) http.Handler {
	if len(trusted) == 0 {
		return next
	}
	isTrusted := func(a netip.Addr) bool {
		for _, p := range trusted {
			if p.Contains(a.Unmap()) {
				return true
			}
		}
		return false
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil || !isTrusted(peer.Addr()) {
			next.ServeHTTP(w, r)
			return
		}
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break // a malformed entry ends what can be believed
			}
			if !isTrusted(hop) {
				r = r.Clone(r.Context())
				r.RemoteAddr = net.JoinHostPort(hop.Unmap().String(), "0")
				break
			}
		}
		next.ServeHTTP(w, r)
	})
}
