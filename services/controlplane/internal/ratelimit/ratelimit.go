// Package ratelimit limits how fast each client address may do something expensive or abusable: register
// OAuth clients, try passwords. Each address gets a token bucket kept in PostgreSQL, so replicas behind a
// load balancer together allow an address what one replica would.
//
// Addresses are what the HTTP server reports as the peer, which the control plane takes from
// X-Forwarded-For only for requests from its trusted proxies.
package ratelimit

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Buckets keeps token buckets where every replica sees them. *store.Store implements it.
type Buckets interface {
	// TakeRateToken takes a token from the bucket under key, which gains one every interval and holds
	// window/interval of them; when it is empty it reports false and how long until the next token.
	TakeRateToken(ctx context.Context, key string, interval, window time.Duration) (bool, time.Duration, error)
}

// Limiter gives each client address a token bucket of its own for one action.
type Limiter struct {
	buckets  Buckets
	action   string
	interval time.Duration
	window   time.Duration
}

// New returns a Limiter for action that lets each address act perMinute times a minute, with bursts of up
// to burst. action names the limit in the shared store; limiters with the same name share buckets.
func New(buckets Buckets, action string, perMinute float64, burst int) *Limiter {
	interval := time.Duration(float64(time.Minute) / perMinute)
	return &Limiter{buckets: buckets, action: action, interval: interval, window: time.Duration(burst) * interval}
}

// Allow takes a token from the bucket of the host in remoteAddr (host:port, or a bare host). When the
// bucket is empty it reports false and how long until the next token, which is what a Retry-After says.
// IPv6 hosts share the bucket of their /64, the block one subscriber usually holds. An error means the
// buckets could not be reached; nothing was decided.
func (l *Limiter) Allow(ctx context.Context, remoteAddr string) (ok bool, retryAfter time.Duration, err error) {
	return l.AllowKey(ctx, addressKey(remoteAddr))
}

// AllowKey is Allow for a bucket named by the caller rather than by an address, such as a user's; key must
// be bounded by the caller.
func (l *Limiter) AllowKey(ctx context.Context, key string) (ok bool, retryAfter time.Duration, err error) {
	ok, retryAfter, err = l.buckets.TakeRateToken(ctx, l.action+" "+key, l.interval, l.window)
	if err != nil {
		return false, 0, fmt.Errorf("%s rate limit: %w", l.action, err)
	}
	return ok, retryAfter, nil
}

// maxKeyHost bounds a key's host part; a peer that is not an address (it is always one from net/http)
// cannot make keys of any length.
const maxKeyHost = 64

func addressKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	a, err := netip.ParseAddr(host)
	switch {
	case err != nil:
		return strings.ToValidUTF8(host[:min(len(host), maxKeyHost)], "")
	case a.Is6() && !a.Is4In6():
		p, _ := a.Prefix(64)
		return p.String()
	default:
		return a.Unmap().String()
	}
}
