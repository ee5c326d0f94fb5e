package ratelimit_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orrery/orrery/internal/pgtest"
	"github.com/orrery/orrery/services/controlplane/internal/ratelimit"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// replicas returns n stores on one fresh database, each with a pool of its own, as n replicas have.
func replicas(t *testing.T, n int) []*store.Store {
	t.Helper()
	url := pgtest.NewDatabase(t)
	var stores []*store.Store
	for range n {
		pool, err := pgxpool.New(t.Context(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		stores = append(stores, store.New(pool, nil))
	}
	return stores
}

func allow(t *testing.T, l *ratelimit.Limiter, addr string) (bool, time.Duration) {
	t.Helper()
	ok, wait, err := l.Allow(t.Context(), addr)
	if err != nil {
		t.Fatalf("Allow(%s): %v", addr, err)
	}
	return ok, wait
}

func TestLimiter(t *testing.T) {
	t.Parallel()
	l := ratelimit.New(replicas(t, 1)[0], "test", 1, 2)
	for i, tc := range []struct {
		addr string
		want bool
	}{
		{"203.0.113.7:1000", true},
		{"203.0.113.7:1001", true}, // another port of the same host shares its bucket
		{"203.0.113.7:1002", false},
		{"203.0.113.7", false},               // a bare host is the same host
		{"[::ffff:203.0.113.7]:1003", false}, // and so is its IPv4-mapped form
		{"203.0.113.8:1000", true},
		{"[2001:db8:1:2::1]:1000", true},
		{"[2001:db8:1:2::ffff]:1000", true}, // the same /64
		{"[2001:db8:1:2:ffff::1]:1000", false},
		{"[2001:db8:1:3::1]:1000", true},
	} {
		if got, _ := allow(t, l, tc.addr); got != tc.want {
			t.Errorf("%d: Allow(%s) = %v, want %v", i, tc.addr, got, tc.want)
		}
	}
}

// TestRetryAfter says when the next token comes, and refused attempts do not push it further away.
func TestRetryAfter(t *testing.T) {
	t.Parallel()
	l := ratelimit.New(replicas(t, 1)[0], "test", 1, 1)
	if ok, wait := allow(t, l, "198.51.100.1:1"); !ok || wait != 0 {
		t.Fatalf("first attempt: %v, %v", ok, wait)
	}
	for range 3 {
		ok, wait := allow(t, l, "198.51.100.1:1")
		if ok || wait <= 58*time.Second || wait > time.Minute {
			t.Fatalf("attempt on an empty bucket: %v, retry after %v, want refused for about a minute", ok, wait)
		}
	}
}

// TestReplicasShareTheLimit: attempts spread over three replicas, all at once, get what one replica would
// allow, not three times as much; another action's limit is counted apart.
func TestReplicasShareTheLimit(t *testing.T) {
	t.Parallel()
	const burst = 30
	stores := replicas(t, 3)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for i := range 3 * burst {
		l := ratelimit.New(stores[i%len(stores)], "registration", 30, burst)
		wg.Go(func() {
			ok, _, err := l.Allow(context.Background(), "192.0.2.1:4000")
			if err != nil {
				t.Error(err)
			}
			if ok {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != burst {
		t.Errorf("%d of %d attempts over %d replicas allowed, want %d", got, 3*burst, len(stores), burst)
	}
	if ok, _ := allow(t, ratelimit.New(stores[0], "sign-in", 30, burst), "192.0.2.1:4000"); !ok {
		t.Error("another action's limit was used up by registrations")
	}
}

// TestFullBucketsArePruned: cleanup drops the buckets that have refilled and keeps the others, so the table
// holds only addresses seen lately.
func TestFullBucketsArePruned(t *testing.T) {
	t.Parallel()
	st := replicas(t, 1)[0]
	// Refilled within 10 ns, below the database clock's microsecond: full by the next statement.
	fast := ratelimit.New(st, "fast", 6e9, 1)
	slow := ratelimit.New(st, "slow", 1, 1)
	allow(t, fast, "192.0.2.1:1")
	allow(t, slow, "192.0.2.1:1")
	n, err := st.PruneRateLimits(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("pruned %d buckets, want the refilled one", n)
	}
	if ok, _ := allow(t, slow, "192.0.2.1:1"); ok {
		t.Error("the bucket still empty was pruned: its address got a fresh burst")
	}
}

func TestUnreachableBucketsAreAnError(t *testing.T) {
	t.Parallel()
	st := replicas(t, 1)[0]
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := ratelimit.New(st, "test", 1, 1).Allow(ctx, "192.0.2.1:1"); err == nil {
		t.Error("Allow without a database reported no error")
	}
}
