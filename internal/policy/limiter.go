package policy

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxBuckets bounds the rates a Limiter keeps for one team.
const DefaultMaxBuckets = 100_000

// Limiter keeps the rates of rate_limit policies: a token bucket per policy, user and (for
// RatePerUserAndTool) tool, holding a minute's calls and refilled evenly over the minute. Buckets are kept
// by policy id, so they survive a new configuration that keeps the policy. It is safe for concurrent use.
// The rates are the satellite's own: a team served by two satellites may make a policy's calls on each.
// Each team's buckets are kept and bounded apart, so one team's users never make another's forgotten.
type Limiter struct {
	now        func() time.Time
	maxBuckets int

	mu      sync.Mutex
	buckets map[string]map[bucketKey]*bucket // by team
}

type bucketKey struct{ policyID, userID, tool string }

type bucket struct {
	limiter *rate.Limiter
	// perMinute is the rate the bucket was made for; a policy whose rate changed gets a new bucket.
	perMinute int
}

// NewLimiter returns a Limiter. A nil now means time.Now; maxBuckets <= 0 means DefaultMaxBuckets.
func NewLimiter(now func() time.Time, maxBuckets int) *Limiter {
	if now == nil {
		now = time.Now
	}
	if maxBuckets <= 0 {
		maxBuckets = DefaultMaxBuckets
	}
	return &Limiter{now: now, maxBuckets: maxBuckets, buckets: make(map[string]map[bucketKey]*bucket)}
}

// take spends one call of every policy in limited, or none if any of them has no call left; it returns the
// denial of the first policy without one.
func (l *Limiter) take(call *Call, limited []*Policy) *Denial {
	if l == nil || len(limited) == 0 {
		return nil
	}
	t := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	reservations := make([]*rate.Reservation, 0, len(limited))
	for _, p := range limited {
		r := l.bucket(call, p, t).ReserveN(t, 1)
		if !r.OK() || r.DelayFrom(t) > 0 {
			r.CancelAt(t)
			for _, taken := range reservations {
				taken.CancelAt(t)
			}
			return &Denial{Policy: p.Name, Global: p.TeamID == "", Reason: ReasonRateLimited}
		}
		reservations = append(reservations, r)
	}
	return nil
}

// bucket returns the bucket of call under p, making it when needed. Called with l.mu held.
func (l *Limiter) bucket(call *Call, p *Policy, t time.Time) *rate.Limiter {
	key := bucketKey{policyID: p.ID + "\x00" + p.Name, userID: call.UserID}
	if p.RateKey == RatePerUserAndTool {
		key.tool = call.InstallationID + "\x00" + call.ToolName
	}
	team := l.buckets[call.TeamID]
	if team == nil {
		team = make(map[bucketKey]*bucket)
		l.buckets[call.TeamID] = team
	}
	if b := team[key]; b != nil && b.perMinute == p.CallsPerMinute {
		return b.limiter
	}
	if len(team) >= l.maxBuckets {
		l.sweep(team, t)
	}
	b := &bucket{limiter: rate.NewLimiter(rate.Every(time.Minute/time.Duration(p.CallsPerMinute)), p.CallsPerMinute),
		perMinute: p.CallsPerMinute}
	team[key] = b
	return b.limiter
}

// sweep forgets a team's full buckets, which behave as new ones would. If more than half are in use, it
// forgets them all: a burst of new users must not grow the map without bound, forgetting grants at most one
// more minute's calls to each, and the next sweep is then at least half the bound of new buckets away.
// Called with l.mu held.
func (l *Limiter) sweep(team map[bucketKey]*bucket, t time.Time) {
	for k, b := range team {
		if b.limiter.TokensAt(t) >= float64(b.perMinute) {
			delete(team, k)
		}
	}
	if len(team) > l.maxBuckets/2 {
		clear(team)
	}
}

// Len is how many buckets the limiter keeps.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, team := range l.buckets {
		n += len(team)
	}
	return n
}
