package store

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestLatencyBuckets(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		d    time.Duration
		want int16
	}{
		{0, 0},
		{400 * time.Microsecond, 0},
		{500 * time.Microsecond, 0}, // buckets include their upper bound
		{time.Millisecond, 2},
		{2 * time.Millisecond, 4},
		{3 * time.Millisecond, 6},
		{time.Second, 22},
		{24 * time.Hour, LatencyBuckets - 1},
		{-time.Second, 0},
	} {
		if got := LatencyBucket(tc.d); got != tc.want {
			t.Errorf("LatencyBucket(%s) = %d, want %d", tc.d, got, tc.want)
		}
		if tc.d > 0 && tc.want < LatencyBuckets-1 {
			lo, hi := latencyBucketBounds(int(tc.want))
			if ms := float64(tc.d) / float64(time.Millisecond); ms <= lo && tc.want > 0 || ms > hi {
				t.Errorf("%s is counted in bucket %d, which covers (%g, %g] ms", tc.d, tc.want, lo, hi)
			}
		}
	}
}

// TestLatencyQuantileStaysWithinABucket compares estimated quantiles of spread-out latencies with the
// exact ones: each estimate is within the √2 width of a bucket.
func TestLatencyQuantileStaysWithinABucket(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	var u Usage
	var exact []float64
	for range 10000 {
		ms := math.Exp(r.NormFloat64()*1.5 + 3) // log-normal around 20 ms
		d := time.Duration(ms * float64(time.Millisecond))
		u.add(LatencyBucket(d), 1, 0, 0, 0)
		exact = append(exact, float64(d)/float64(time.Millisecond))
	}
	slices.Sort(exact)
	for _, q := range []float64{0.5, 0.95, 0.99} {
		want := exact[int(q*float64(len(exact)))-1]
		got := u.LatencyQuantile(q)
		if got < want/math.Sqrt2 || got > want*math.Sqrt2 {
			t.Errorf("quantile %g = %.2f ms, exact %.2f ms", q, got, want)
		}
	}
	if (&Usage{}).LatencyQuantile(0.5) != 0 {
		t.Error("the quantile of no calls is not 0")
	}
}
