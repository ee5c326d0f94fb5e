package ratelimit_test

import (
	"testing"
	"time"

	"github.com/orrery/orrery/services/controlplane/internal/ratelimit"
)

func TestLimiter(t *testing.T) {
	t.Parallel()
	l := ratelimit.New(1, 2)
	for i, tc := range []struct {
		addr string
		want bool
	}{
		{"203.0.113.7:1000", true},
		{"203.0.113.7:1001", true}, // another port of the same host shares its bucket
		{"203.0.113.7:1002", false},
		{"203.0.113.7", false}, // a bare host is the same host
		{"203.0.113.8:1000", true},
		{"[2001:db8:1:2::1]:1000", true},
		{"[2001:db8:1:2::ffff]:1000", true}, // the same /64
		{"[2001:db8:1:2:ffff::1]:1000", false},
		{"[2001:db8:1:3::1]:1000", true},
	} {
		if got, _ := l.Allow(tc.addr); got != tc.want {
			t.Errorf("%d: Allow(%s) = %v, want %v", i, tc.addr, got, tc.want)
		}
	}
}

// TestRetryAfter says when the next token comes, and refused attempts do not push it further away.
func TestRetryAfter(t *testing.T) {
	t.Parallel()
	l := ratelimit.New(1, 1)
	if ok, wait := l.Allow("198.51.100.1:1"); !ok || wait != 0 {
		t.Fatalf("first attempt: %v, %v", ok, wait)
	}
	for range 3 {
		ok, wait := l.Allow("198.51.100.1:1")
		if ok || wait <= 58*time.Second || wait > time.Minute {
			t.Fatalf("attempt on an empty bucket: %v, retry after %v, want refused for about a minute", ok, wait)
		}
	}
}
