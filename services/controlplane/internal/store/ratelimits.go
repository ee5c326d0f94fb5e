package store

import (
	"context"
	"time"
)

// TakeRateToken takes a token from the bucket under key, shared by every replica: the bucket gains a token
// every interval and holds window/interval of them. When it is empty, TakeRateToken reports false and how
// long until the next token.
func (s *Store) TakeRateToken(ctx context.Context, key string, interval, window time.Duration) (bool, time.Duration, error) {
	row, err := s.q.TakeRateToken(ctx, key, interval.Seconds(), window.Seconds())
	if err != nil {
		return false, 0, translate(err, "take rate token")
	}
	if row.Allowed {
		return true, 0, nil
	}
	return false, max(time.Duration(row.RetryAfterSeconds*float64(time.Second)), 0), nil
}

// PruneRateLimits drops the buckets that are full again, and says how many.
func (s *Store) PruneRateLimits(ctx context.Context) (int64, error) {
	n, err := s.q.PruneRateLimits(ctx)
	return n, translate(err, "prune rate limits")
}
