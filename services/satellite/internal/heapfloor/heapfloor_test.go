package heapfloor

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestPercentFor(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		live, floor uint64
		base, want  int
	}{
		{live: 4 << 20, floor: 64 << 20, base: 100, want: 1500},
		{live: 32 << 20, floor: 64 << 20, base: 100, want: 100},
		{live: 100 << 20, floor: 64 << 20, base: 100, want: 100},
		{live: 16 << 20, floor: 64 << 20, base: 400, want: 400},
		{live: 1 << 10, floor: 64 << 20, base: 100, want: maxPercent},
		{live: 0, floor: 64 << 20, base: 100, want: 100},
	} {
		if got := percentFor(c.live, c.floor, c.base); got != c.want {
			t.Errorf("percentFor(%d, %d, %d) = %d, want %d", c.live, c.floor, c.base, got, c.want)
		}
	}
}

// TestStartRaisesThePercentAndStopRestoresIt runs real collections: the GC percent is the process's, so
// this test is not parallel.
func TestStartRaisesThePercentAndStopRestoresIt(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	stop := Start(1 << 40) // far above any live heap here
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		// The finalizer runs on its own goroutine after the collection.
		p := debug.SetGCPercent(-1)
		debug.SetGCPercent(p)
		if p == maxPercent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GC percent is %d after collections, want %d", p, maxPercent)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if p := debug.SetGCPercent(100); p != 100 {
		t.Errorf("GC percent after stop is %d, want the 100 found at start", p)
	}
}
