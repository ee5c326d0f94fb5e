// Package backoff spaces out retries against the control plane: exponential growth so an outage is not
// hammered, and jitter so a fleet of satellites that lost the control plane together does not return in
// lockstep.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Default bounds of a Policy.
const (
	// DefaultMin retries a brief blip almost at once.
	DefaultMin = 500 * time.Millisecond
	// DefaultMax bounds how long a recovered control plane waits to hear from the satellite again.
	DefaultMax = 30 * time.Second
)

// Policy describes a backoff. The zero value is usable: WithDefaults fills it in.
type Policy struct {
	// Min is the first retry's delay before jitter. Default DefaultMin (500 ms).
	Min time.Duration
	// Max caps the delay before jitter. Default DefaultMax (30 s).
	Max time.Duration
	// Rand returns a number in [0, 1) for jitter. Default math/rand/v2.Float64; tests pin it to make
	// delays exact.
	Rand func() float64
}

// WithDefaults returns p with every zero field set to its default.
func (p Policy) WithDefaults() Policy {
	if p.Min <= 0 {
		p.Min = DefaultMin
	}
	if p.Max <= 0 {
		p.Max = DefaultMax
	}
	if p.Max < p.Min {
		p.Max = p.Min
	}
	if p.Rand == nil {
		p.Rand = rand.Float64
	}
	return p
}

// Delay returns the wait before retry number attempt, counting from 0: Min doubled attempt times, capped
// at Max, then reduced by up to half at random. Keeping at least half of the delay means a retry loop
// never spins, whatever the random source returns.
func (p Policy) Delay(attempt int) time.Duration {
	p = p.WithDefaults()
	d := p.Min
	for i := 0; i < attempt && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, p.Max)
	half := d / 2
	r := min(max(p.Rand(), 0), 1)
	return half + time.Duration(float64(d-half)*r)
}

// Backoff counts consecutive failures of one retry loop. It is not safe for concurrent use; each loop
// owns one.
type Backoff struct {
	policy  Policy
	attempt int
}

// New returns a Backoff following p.
func New(p Policy) *Backoff {
	return &Backoff{policy: p.WithDefaults()}
}

// Next returns the delay before the next retry and counts the failure.
func (b *Backoff) Next() time.Duration {
	d := b.policy.Delay(b.attempt)
	b.attempt++
	return d
}

// Reset starts over after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// Failures reports how many failures were counted since the last Reset.
func (b *Backoff) Failures() int { return b.attempt }

// Sleep waits for d or until ctx is done, whichever comes first, and returns ctx's error in the latter case.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
