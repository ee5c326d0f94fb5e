// Package heapfloor keeps the Go garbage collector from running while the heap is small.
//
// The collector starts a cycle when the heap has grown by GOGC percent over what the last one left
// live. A satellite's live heap is small (a few MB with a handful of instances), while every MCP
// message it relays allocates scratch buffers: go-sdk v1.8.0 decodes each JSON value through a
// decoder that allocates 32 KiB (its internal/json.Unmarshal), about ten per tool call through the
// endpoint. With a 4 MiB live heap a collection then runs every dozen calls, and collecting becomes
// the largest share of the satellite's CPU time. A floor lets the heap grow to at least floor bytes
// before a collection, whatever the live heap; above floor/2 of live heap GOGC alone decides, so a
// busy satellite with a large live heap keeps its usual headroom. GOMEMLIMIT still bounds the heap.
//
//	stop := heapfloor.Start(64 << 20)
//	defer stop()
package heapfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// maxPercent bounds the GC percent set: with a live heap of 64 KiB a 64 MiB floor would ask for 100,000.
const maxPercent = 10_000

// Start keeps the heap goal at floor bytes or more from the next collection on, by adjusting the GC
// percent after each collection, until stop is called, which restores the percent it found. It does
// nothing when floor is not positive or the collector is off (GOGC=off). The GC percent is the
// process's: only one floor may be active at a time.
func Start(floor int64) (stop func()) {
	base := debug.SetGCPercent(100)
	debug.SetGCPercent(base)
	if floor <= 0 || base < 0 {
		return func() {}
	}
	t := &tuner{floor: uint64(floor), base: base, current: base}
	t.samples = []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	t.arm()
	return func() {
		if t.stopped.CompareAndSwap(false, true) {
			debug.SetGCPercent(base)
		}
	}
}

type tuner struct {
	floor   uint64
	base    int
	stopped atomic.Bool
	// Used by the finalizer goroutine only, which runs one finalizer at a time.
	current int
	samples []metrics.Sample
}

// sentinel is garbage as soon as it is made; its finalizer runs after the collection that finds it,
// adjusts the percent and makes the next one.
type sentinel struct{ _ [16]byte }

func (t *tuner) arm() {
	s := new(sentinel)
	runtime.SetFinalizer(s, func(*sentinel) {
		if t.stopped.Load() {
			return
		}
		t.adjust()
		t.arm()
	})
}

func (t *tuner) adjust() {
	metrics.Read(t.samples)
	if t.samples[0].Value.Kind() != metrics.KindUint64 {
		return
	}
	p := percentFor(t.samples[0].Value.Uint64(), t.floor, t.base)
	// Setting the percent stops the world briefly; a change of less than a tenth is not worth it.
	if d := p - t.current; d == 0 || (d < t.current/10 && -d < t.current/10) {
		return
	}
	t.current = p
	debug.SetGCPercent(p)
}

// percentFor is the GC percent that puts the heap goal, live × (1 + percent/100), at floor or more,
// and never below base.
func percentFor(live, floor uint64, base int) int {
	if live == 0 || live >= floor {
		return base
	}
	p := int(min((floor-live)*100/live, maxPercent))
	return max(p, base)
}
