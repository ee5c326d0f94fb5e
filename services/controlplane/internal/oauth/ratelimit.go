package oauth

import (
	"net"
	"net/netip"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// Registration is open to anyone, so each network address may register only so fast. Real clients register
// once per installation: even many people behind one proxy stay far below the limit.
const (
	registrationsPerMinute = 30
	registrationBurst      = 30
	// limitedAddresses bounds the addresses remembered; the least recently seen are forgotten.
	limitedAddresses = 10_000
)

// addressLimiter gives each remote address a token bucket of its own.
type addressLimiter struct {
	mu      sync.Mutex
	limit   rate.Limit
	burst   int
	buckets *lru.Cache[string, *rate.Limiter]
}

func newAddressLimiter(perMinute float64, burst int) *addressLimiter {
	buckets, _ := lru.New[string, *rate.Limiter](limitedAddresses) // the size is positive
	return &addressLimiter{limit: rate.Limit(perMinute / 60), burst: burst, buckets: buckets}
}

// allow takes a token from the bucket of the host in remoteAddr (host:port), reporting whether there was one.
// IPv6 hosts share the bucket of their /64, the block one subscriber usually holds.
func (l *addressLimiter) allow(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() && !a.Is4In6() {
		p, _ := a.Prefix(64)
		host = p.String()
	}
	l.mu.Lock()
	b, ok := l.buckets.Get(host)
	if !ok {
		b = rate.NewLimiter(l.limit, l.burst)
		l.buckets.Add(host, b)
	}
	l.mu.Unlock()
	return b.Allow()
}
