package mcpruntime

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// coldStartSlot waits for the instance's turn at its first start: a random wait of up to
// Config.StartJitter, then one of Config.MaxConcurrentStarts slots, so that a satellite coming back with
// many instances does not start them all in the same second. A call that needs the instance (a wake) ends
// the wait and the start goes ahead outside the bound; so does an urgent command, which then cuts the start
// short. The returned function gives the slot back.
func (in *instance) coldStartSlot(ctx context.Context) (release func()) {
	waitCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer in.cancelOnUrgent(cancel)()
	none := func() {}
	if j := in.rt.cfg.StartJitter; j > 0 {
		t := time.NewTimer(rand.N(j))
		defer t.Stop()
		select {
		case <-t.C:
		case <-in.wake:
			return none
		case <-waitCtx.Done():
			return none
		}
	}
	select {
	case in.rt.startSlots <- struct{}{}:
		return func() { <-in.rt.startSlots }
	case <-in.wake:
	case <-waitCtx.Done():
	}
	return none
}

// Ready reports why the team endpoints cannot yet list what the satellite will serve, or nil. The runtime
// is ready once it has reconciled the desired view and every instance of it has a catalogue to list
// (discovered, or kept from before a restart) or has finished its first start attempt, whatever the
// outcome. From then on it stays ready: instances added later start while the others serve.
func (r *Runtime) Ready() error {
	if r.warm.Load() {
		return nil
	}
	version := r.cfg.Desired.Version()
	if version == 0 || r.reconciled.Load() < version {
		return fmt.Errorf("MCP server instances not set up from the configuration yet")
	}
	insts := r.all()
	waiting := 0
	for _, in := range insts {
		in.mu.Lock()
		listable := in.revision > 0 || in.startSeq > 0 || in.hold != holdNone
		in.mu.Unlock()
		if !listable {
			waiting++
		}
	}
	if waiting > 0 {
		return fmt.Errorf("%d of %d MCP server instances are starting with no tools known yet", waiting, len(insts))
	}
	r.warm.Store(true)
	return nil
}
