package mcpruntime

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

// selector names the instances a command acts on. Empty fields match everything; a selector must set
// InstanceID or InstallationID.
type selector struct {
	InstanceID     string
	InstallationID string
	TeamID         string
	UserID         string
}

func (s selector) String() string {
	var parts []string
	for _, f := range [][2]string{{"instance", s.InstanceID}, {"installation", s.InstallationID},
		{"team", s.TeamID}, {"user", s.UserID}} {
		if f[1] != "" {
			parts = append(parts, f[0]+" "+f[1])
		}
	}
	return strings.Join(parts, ", ")
}

func (s selector) matches(spec *satellitev1.Instance) bool {
	return (s.InstanceID == "" || spec.GetId() == s.InstanceID) &&
		(s.InstallationID == "" || spec.GetInstallationId() == s.InstallationID) &&
		(s.TeamID == "" || spec.GetTeamId() == s.TeamID) &&
		(s.UserID == "" || spec.GetUserId() == s.UserID)
}

// ErrNoSelection means a command named no instance (neither instance_id nor installation_id).
var ErrNoSelection = errors.New("the command names no instance: set instance_id or installation_id")

// selectorOf is what sel selects within teamID; an empty teamID spans every team.
func selectorOf(teamID string, sel *satellitev1.InstanceSelector) selector {
	return selector{InstanceID: sel.GetInstanceId(), InstallationID: sel.GetInstallationId(), TeamID: teamID,
		UserID: sel.GetUserId()}
}

// selectInstances returns the instances sel matches; none is an error.
func (r *Runtime) selectInstances(sel selector) ([]*instance, error) {
	if !r.running() {
		return nil, ErrNotRunning
	}
	if sel.InstanceID == "" && sel.InstallationID == "" {
		return nil, ErrNoSelection
	}
	var matched []*instance
	for _, in := range r.all() {
		if sel.matches(in.currentSpec()) {
			matched = append(matched, in)
		}
	}
	if len(matched) == 0 {
		return nil, fmt.Errorf("%w on this satellite matches %s", ErrUnknownInstance, sel)
	}
	return matched, nil
}

// each runs f for every selected instance at once and collects the outcomes in id order.
func (r *Runtime) each(ctx context.Context, sel selector, f func(*instance) (skipped string)) ([]*satellitev1.InstanceOutcome, error) {
	ins, err := r.selectInstances(sel)
	if err != nil {
		return nil, err
	}
	outcomes := make([]*satellitev1.InstanceOutcome, len(ins))
	var wg sync.WaitGroup
	for i, in := range ins {
		wg.Go(func() {
			before := in.info().Status
			skipped := f(in)
			info := in.info()
			outcomes[i] = &satellitev1.InstanceOutcome{InstanceId: in.id, Status: info.Status, PreviousStatus: before,
				Message: cut(info.Message, 4096), Skipped: skipped}
		})
	}
	wg.Wait()
	return outcomes, ctx.Err()
}

// do sends a command of kind to in and waits until it was carried out.
func (in *instance) do(ctx context.Context, kind cmdKind, reason string, preempt bool) {
	cmd := command{kind: kind, reason: reason, done: make(chan struct{})}
	if preempt {
		in.sendUrgent(cmd)
	} else {
		in.send(cmd)
	}
	_ = in.await(ctx, cmd)
}

// Spawn starts the instances of teamID that sel selects and that are not running: dormant, stopped by Kill,
// or never started. It returns once their start attempts are over. A permanently failed instance needs
// Restart instead.
func (r *Runtime) Spawn(ctx context.Context, teamID string, sel *satellitev1.InstanceSelector) ([]*satellitev1.InstanceOutcome, error) {
	return r.each(ctx, selectorOf(teamID, sel), func(in *instance) string {
		if in.currentHold() == holdFailed {
			return "permanently failed: send a restart command"
		}
		in.do(ctx, cmdSpawn, "", false)
		return ""
	})
}

// Kill stops the instances of teamID that sel selects and keeps them stopped, calls included, until Spawn or
// Restart.
func (r *Runtime) Kill(ctx context.Context, teamID string, sel *satellitev1.InstanceSelector) ([]*satellitev1.InstanceOutcome, error) {
	return r.each(ctx, selectorOf(teamID, sel), func(in *instance) string {
		in.do(ctx, cmdKill, "", true)
		return ""
	})
}

// Restart stops the instances of teamID that sel selects if they run, forgets their crashes and any hold
// (kill, permanent failure), and starts them again. It returns once their start attempts are over. The
// reason goes with their lifecycle events, spelled as the protocol does: manual_restart.
func (r *Runtime) Restart(ctx context.Context, teamID string, sel *satellitev1.InstanceSelector, reason satellitev1.RestartReason) ([]*satellitev1.InstanceOutcome, error) {
	why := strings.ToLower(strings.TrimPrefix(reason.String(), "RESTART_REASON_"))
	return r.each(ctx, selectorOf(teamID, sel), func(in *instance) string {
		in.do(ctx, cmdRestart, why, true)
		return ""
	})
}

// Recover connects the remote instances of teamID's installation afresh and discovers their tools again:
// connecting → discovering_tools → online. stdio instances are skipped: their process lifecycle recovers
// them.
func (r *Runtime) Recover(ctx context.Context, teamID, installationID string) ([]*satellitev1.InstanceOutcome, error) {
	return r.each(ctx, selector{InstallationID: installationID, TeamID: teamID}, func(in *instance) string {
		if isStdio(in.currentSpec()) {
			return "stdio servers recover through their process lifecycle"
		}
		if in.currentHold() != holdNone {
			return "stopped by a kill command"
		}
		in.do(ctx, cmdReconnect, "", true)
		return ""
	})
}

// CheckCredentials validates the credentials of the remote instances of teamID's installation (see
// checkCredentials) and sets their status to the verdict: online, requires_reauth or error. stdio instances
// are skipped.
func (r *Runtime) CheckCredentials(ctx context.Context, teamID, installationID string) ([]*satellitev1.InstanceOutcome, error) {
	return r.each(ctx, selector{InstallationID: installationID, TeamID: teamID}, func(in *instance) string {
		if isStdio(in.currentSpec()) {
			return "stdio servers have no credentials to validate"
		}
		status, msg, err := in.checkCredentials(ctx)
		if err != nil {
			return "check interrupted: " + err.Error()
		}
		cmd := command{kind: cmdCheckResult, status: status, message: msg, done: make(chan struct{})}
		in.send(cmd)
		_ = in.await(ctx, cmd)
		return ""
	})
}

// homeRemover is a driver that keeps homes for a team's members (sandbox.Bwrap).
type homeRemover interface {
	RemoveUserHome(teamID, userID string) error
}

// ApplyConfiguration returns once the instances match the configuration last fetched, so that what a
// command does next finds them configured.
func (r *Runtime) ApplyConfiguration(ctx context.Context) error {
	if _, err := r.Reconcile(ctx); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	return nil
}

// ForgetMember deletes what the driver keeps of a former member of a team, unless the member has instances
// here again (added back before this satellite heard of the removal). It reports whether it deleted.
func (r *Runtime) ForgetMember(teamID, userID string) (bool, error) {
	hr, ok := r.cfg.Driver.(homeRemover)
	if !ok {
		return false, nil
	}
	// Held so that no reconcile starts one of the member's instances meanwhile.
	r.reconcileMu.Lock()
	defer r.reconcileMu.Unlock()
	for _, in := range r.all() {
		if spec := in.currentSpec(); spec.GetTeamId() == teamID && spec.GetUserId() == userID {
			return false, nil
		}
	}
	return true, hr.RemoveUserHome(teamID, userID)
}
