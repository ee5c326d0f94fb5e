// Package ratelimit limits how fast each client address may do something expensive or abusable: register
// OAuth clients, try passwords. Each address gets a token bucket of its own, held in this process only, so
// with several replicas behind a load balancer a client gets at most the limit once per replica.
//
// Addresses are what the HTTP server reports as the peer, which the control plane takes from
// X-Forwarded-For only for requests from its trusted proxies.
package ratelimit

import (
	"math"
	"net"
	"net/netip"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// rememberedAddresses bounds the addresses a Limiter remembers; the least recently seen are forgotten, so
// a flood of addresses costs bounded memory and at worst resets the buckets of idle ones.
const rememberedAddresses = 10_000

// Limiter gives each client address a token bucket of its own.
type Limiter struct {
	mu      sync.Mutex
	limit   rate.Limit
	burst   int
	buckets *lru.Cache[string, *rate.Limiter]
}

// New returns a Limiter that lets each address act perMinute times a minute, with bursts of up to burst.
func New(perMinute float64, burst int) *Limiter {
	buckets, _ := lru.New[string, *rate.Limiter](rememberedAddresses) // the size is positive
	return &Limiter{limit: rate.Limit(perMinute / 60), burst: burst, buckets: buckets}
}

// Allow takes a token from the bucket of the host in remoteAddr (host:port, or a bare host). When the
// bucket is empty it reports false and how long until the next token, which is what a Retry-After says.
// IPv6 hosts share the bucket of their /64, the block one subscriber usually holds.
func (l *Limiter) Allow(remoteAddr string) (ok bool, retryAfter time.Duration) {
	key := addressKey(remoteAddr)
	l.mu.Lock()
	b, found := l.buckets.Get(key)
	if !found {
		b = rate.NewLimiter(l.limit, l.burst)
		l.buckets.Add(key, b)
	}
	l.mu.Unlock()
	r := b.Reserve()
	if !r.OK() {
		return false, time.Duration(math.MaxInt64)
	}
	if d := r.Delay(); d > 0 {
		r.Cancel() // a refused attempt does not use up a later token
		return false, d
	}
	return true, 0
}

func addressKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() && !a.Is4In6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return host
}
