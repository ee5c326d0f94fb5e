package password

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestHashVerify(t *testing.T) {
	t.Parallel()
	hash, err := Hash(t.Context(), "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		secret, hash string
		want         bool
	}{
		{"correct horse battery staple", hash, true},
		{"correct horse battery stapler", hash, false},
		{"correct horse battery staple", "", false},
		{"correct horse battery staple", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$", false},
		// Costlier than this package ever hashes: refused rather than run.
		{"x", strings.Replace(hash, "m=19456", "m=4194304", 1), false},
		{"x", strings.Replace(hash, "t=2", "t=1000", 1), false},
		{"x", strings.Replace(hash, "t=2", "t=0", 1), false},
	} {
		got, err := Verify(t.Context(), tc.secret, tc.hash)
		if err != nil || got != tc.want {
			t.Errorf("Verify(%q, %q) = %v, %v, want %v", tc.secret, tc.hash, got, err, tc.want)
		}
	}
}

// TestLimiterQueues lets n runs hold slots, makes the next wait for one, and gives up after maxWait or when
// the caller's context ends.
func TestLimiterQueues(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(2, 5*time.Second)
		release1, err := l.acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.acquire(t.Context()); err != nil {
			t.Fatal(err)
		}

		// A waiter gets the first slot given back.
		got := make(chan error, 1)
		go func() {
			release, err := l.acquire(t.Context())
			if err == nil {
				release()
			}
			got <- err
		}()
		time.Sleep(time.Second)
		synctest.Wait()
		select {
		case err := <-got:
			t.Fatalf("a third run started with two slots taken: %v", err)
		default:
		}
		release1()
		if err := <-got; err != nil {
			t.Fatalf("waiter: %v", err)
		}

		// With both slots taken again, a waiter gives up after maxWait.
		if _, err := l.acquire(t.Context()); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := l.acquire(t.Context()); !errors.Is(err, ErrBusy) || time.Since(start) != 5*time.Second {
			t.Errorf("acquire = %v after %v, want ErrBusy after 5s", err, time.Since(start))
		}

		// And a caller who stops waiting is let go at once.
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start = time.Now()
		if _, err := l.acquire(ctx); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != time.Second {
			t.Errorf("acquire = %v after %v, want the context's deadline after 1s", err, time.Since(start))
		}
	})
}

func TestSlotsFollowCPUs(t *testing.T) {
	t.Parallel()
	if Slots() != runtime.GOMAXPROCS(0) {
		t.Fatalf("Slots() = %d, want one per usable CPU (%d)", Slots(), runtime.GOMAXPROCS(0))
	}
}
