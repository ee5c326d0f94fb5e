package mcpruntime

import (
	"context"
	"log/slog"
	"maps"
	"slices"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
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
	// Stops are known before any instance is removed, so a call that its removal cuts short can say why.
	stopped := make(map[string]*satellitev1.Instance)
	for _, spec := range snap.Instances {
		if spec.GetEmergencyStop() != "" {
			stopped[spec.GetId()] = spec
		}
	}
	r.mu.Lock()
	changedStops := !maps.EqualFunc(r.stopped, stopped, func(a, b *satellitev1.Instance) bool {
		return a.GetEmergencyStop() == b.GetEmergencyStop()
	})
	prevStopped := r.stopped
	r.stopped = stopped
	r.mu.Unlock()
	for _, spec := range snap.Instances {
		id := spec.GetId()
		if stopped[id] != nil {
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
	if changedStops {
		// The stopped instances' tools leave the endpoints now, not once their processes have exited.
		for _, spec := range stopped {
			r.notify(spec.GetTeamId(), spec.GetUserId())
		}
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
	// A stopped instance reports why once, after its removal, so its status in the control plane says so
	// rather than what it was when it last ran.
	for id, spec := range stopped {
		if _, was := prevStopped[id]; !was {
			r.cfg.Events.Emit(&satellitev1.Event{
				TeamId: spec.GetTeamId(), InstallationId: spec.GetInstallationId(), InstanceId: id,
				Payload: &satellitev1.Event_StatusChanged{StatusChanged: &satellitev1.StatusChanged{
					Status: satellitev1.InstanceStatus_INSTANCE_STATUS_OFFLINE, Message: cut(spec.GetEmergencyStop(), 4096),
				}},
			})
		}
	}
	r.reconciled.Store(snap.Version)
	slices.Sort(res.Stopped)
	if len(res.Started)+len(res.Restarted)+len(res.Stopped) > 0 {
		r.logger.InfoContext(ctx, "reconciled MCP server instances", slog.Int("started", len(res.Started)),
			slog.Int("restarted", len(res.Restarted)), slog.Int("stopped", len(res.Stopped)),
			slog.Int("unchanged", len(res.Unchanged)))
	}
	return res, nil
}
