package mcpruntime

import (
	"context"
	"log/slog"
	"slices"

	"google.golang.org/protobuf/proto"
)

// ReconcileResult is what one Reconcile did, as sorted instance ids.
type ReconcileResult struct {
	// Started are instances that were not running before and are starting now.
	Started []string
	// Restarted are instances whose content hash changed; they restart with the new configuration.
	Restarted []string
	// Stopped are instances no longer desired; they have stopped.
	Stopped []string
	// Unchanged are instances left running as they were.
	Unchanged []string
	// Reselected are instances, among Unchanged, whose tool selection changed.
	Reselected []string
}

// Reconcile moves the instances towards the desired view by content hash: it starts new instances,
// restarts those whose hash changed and stops those no longer desired, leaving the rest alone. It returns
// once removed instances have stopped; starts go on in the background, each instance on its own, so one
// failing server never holds up the others. Run calls it on every change of the view; calling it again
// without a change does nothing. Called before Run, it waits for Run to start.
func (r *Runtime) Reconcile(ctx context.Context) (ReconcileResult, error) {
	// Nothing starts before Run swept up what an earlier, crashed run left behind: the sweep would kill it.
	select {
	case <-r.swept:
	case <-r.ctx.Done():
		return ReconcileResult{}, ErrNotRunning
	case <-ctx.Done():
		return ReconcileResult{}, ctx.Err()
	}
	r.reconcileMu.Lock()
	defer r.reconcileMu.Unlock()
	if !r.running() {
		return ReconcileResult{}, ErrNotRunning
	}
	var res ReconcileResult
	snap := r.cfg.Desired.Snapshot()
	want := make(map[string]bool, len(snap.Instances))
	// Held instances are known before any instance is removed, so a call that its removal cuts short can
	// say why.
	r.mu.Lock()
	prevHeld := r.held
	r.mu.Unlock()
	heldNow := make(map[string]*heldInstance)
	for _, spec := range snap.Instances {
		if !held(spec) {
			continue
		}
		h := &heldInstance{spec: spec}
		if prev := prevHeld[spec.GetId()]; prev != nil {
			r.mu.Lock()
			h.ownTools, h.message = prev.ownTools, prev.message
			r.mu.Unlock()
		} else if h.awaitsAccount() {
			// What the instance offered while it had a credential, until another member's shows more.
			if in, ok := r.lookup(spec.GetId()); ok {
				h.ownTools = in.tools()
			} else {
				h.ownTools = r.keptTools(spec.GetId())
			}
		}
		heldNow[spec.GetId()] = h
	}
	r.mu.Lock()
	r.held = heldNow
	r.mu.Unlock()
	for _, spec := range snap.Instances {
		id := spec.GetId()
		if heldNow[id] != nil {
			continue
		}
		want[id] = true
		hash, known := r.applied[id]
		switch {
		case !known:
			in := r.newInstance(spec)
			r.mu.Lock()
			r.instances[id] = in
			r.mu.Unlock()
			r.wg.Add(1)
			go in.run()
			in.send(command{kind: cmdConfigure, spec: spec, done: make(chan struct{})})
			r.notify(spec.GetTeamId(), spec.GetUserId())
			res.Started = append(res.Started, id)
		case hash != spec.GetContentHash():
			in, _ := r.lookup(id)
			in.setSelection(spec.GetToolSelection())
			in.sendUrgent(command{kind: cmdConfigure, spec: spec, done: make(chan struct{})})
			res.Restarted = append(res.Restarted, id)
		default:
			// A new tool selection changes what the gateway offers, not the server: no restart.
			if in, _ := r.lookup(id); in.setSelection(spec.GetToolSelection()) {
				r.notify(spec.GetTeamId(), spec.GetUserId())
				res.Reselected = append(res.Reselected, id)
			}
			res.Unchanged = append(res.Unchanged, id)
		}
		r.applied[id] = spec.GetContentHash()
	}

	var removed []*instance
	for id := range r.applied {
		if want[id] {
			continue
		}
		delete(r.applied, id)
		r.mu.Lock()
		in := r.instances[id]
		delete(r.instances, id)
		r.mu.Unlock()
		in.sendUrgent(command{kind: cmdRemove, done: make(chan struct{})})
		removed = append(removed, in)
		res.Stopped = append(res.Stopped, id)
	}
	// The users of held instances that came, changed or went see their tools change now, not once the
	// processes of the instances held in their place exited.
	changedHeld := false
	for id, h := range heldNow {
		if p := prevHeld[id]; p == nil || !proto.Equal(p.spec, h.spec) {
			changedHeld = true
			r.notify(h.spec.GetTeamId(), h.spec.GetUserId())
		}
	}
	for id, p := range prevHeld {
		if heldNow[id] == nil {
			changedHeld = true
			r.notify(p.spec.GetTeamId(), p.spec.GetUserId())
		}
	}
	if changedHeld {
		for _, in := range removed {
			spec := in.currentSpec()
			r.notify(spec.GetTeamId(), spec.GetUserId())
		}
	}
	for _, in := range removed {
		select {
		case <-in.exited:
		case <-ctx.Done():
			return res, ctx.Err()
		}
		spec := in.currentSpec()
		r.notify(spec.GetTeamId(), spec.GetUserId())
	}
	// A held instance reports why when that changes, after its removal, so its status in the control plane
	// says so rather than what it was when it last ran.
	r.reportHeld(func(*heldInstance) bool { return true })
	r.reconciled.Store(snap.Version)
	slices.Sort(res.Stopped)
	if len(res.Started)+len(res.Restarted)+len(res.Stopped) > 0 {
		r.logger.InfoContext(ctx, "reconciled MCP server instances", slog.Int("started", len(res.Started)),
			slog.Int("restarted", len(res.Restarted)), slog.Int("stopped", len(res.Stopped)),
			slog.Int("unchanged", len(res.Unchanged)))
	}
	return res, nil
}
