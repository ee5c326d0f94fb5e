package backoff_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/orrery/orrery/services/satellite/internal/backoff"
)

func TestDelay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		rand    float64
		attempt int
		want    time.Duration
	}{
		{"first retry without jitter", 0.999999999999, 0, 500 * time.Millisecond},
		{"first retry with full jitter keeps half", 0, 0, 250 * time.Millisecond},
		{"doubles", 0.999999999999, 3, 4 * time.Second},
		{"caps at max", 0.999999999999, 12, 30 * time.Second},
		{"caps at max with jitter", 0, 1000, 15 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := backoff.Policy{Rand: func() float64 { return tt.rand }}
			got := p.Delay(tt.attempt)
			if diff := got - tt.want; diff < -time.Millisecond || diff > time.Millisecond {
				t.Errorf("Delay(%d) = %v, want %v", tt.attempt, got, tt.want)
			}
		})
	}
}

func TestBackoffResets(t *testing.T) {
	t.Parallel()
	b := backoff.New(backoff.Policy{Min: time.Second, Max: time.Minute, Rand: func() float64 { return 0 }})
	for _, want := range []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second} {
		if got := b.Next(); got != want {
			t.Fatalf("Next() = %v, want %v", got, want)
		}
	}
	b.Reset()
	if got := b.Next(); got != 500*time.Millisecond {
		t.Fatalf("Next() after Reset = %v, want 500ms", got)
	}
}

func TestSleep(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if err := backoff.Sleep(t.Context(), 3*time.Second); err != nil {
			t.Fatalf("Sleep: %v", err)
		}
		if got := time.Since(start); got != 3*time.Second {
			t.Errorf("slept %v, want 3s", got)
		}
	})
}
