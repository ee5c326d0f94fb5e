package mcpruntime

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

// Selector names the instances a command acts on. Empty fields match everything; a Selector must set
// InstanceID or InstallationID.
type Selector struct {
	InstanceID     string
	InstallationID string
	TeamID         string
	UserID         string
}

func (s Selector) String() string {
	var parts []string
	for _, f := range [][2]string{{"instance", s.InstanceID}, {"installation", s.InstallationID},
		{"team", s.TeamID}, {"user", s.UserID}} {
		if f[1] != "" {
			parts = append(parts, f[0]+" "+f[1])
		}
	}
	return strings.Join(parts, ", ")
}

func (s Selector) matches(spec *satellitev1.Instance) bool {
	return (s.InstanceID == "" || spec.GetId() == s.InstanceID) &&
		(s.InstallationID == "" || spec.GetInstallationId() == s.InstallationID) &&
		(s.TeamID == "" || spec.GetTeamId() == s.TeamID) &&
		(s.UserID == "" || spec.GetUserId() == s.UserID)
}

// ErrNoSelection means a command named no instance (neither instance_id nor installation_id).
var ErrNoSelection = errors.New("the command names no instance: set instance_id or installation_id")

// selectInstances returns the instances sel matches; none is an error.
func (r *Runtime) selectInstances(sel Selector) ([]*instance, error) {
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

// Outcome is what a command left an instance in.
type Outcome struct {
	InstanceID string
	Status     satellitev1.InstanceStatus
	Message    string
	// Skipped says why the command did not apply to the instance, such as a health check of a stdio server.
	Skipped string
}

func (o Outcome) asMap() map[string]any {
	m := map[string]any{"instance_id": o.InstanceID, "status": StatusName(o.Status)}
	if o.Message != "" {
		m["message"] = o.Message
	}
	if o.Skipped != "" {
		m["skipped"] = o.Skipped
	}
	return m
}

// each runs f for every selected instance at once and collects the outcomes in id order.
func (r *Runtime) each(ctx context.Context, sel Selector, f func(*instance) (skipped string)) ([]Outcome, error) {
	ins, err := r.selectInstances(sel)
	if err != nil {
		return nil, err
	}
	outcomes := make([]Outcome, len(ins))
	var wg sync.WaitGroup
	for i, in := range ins {
		wg.Go(func() {
			skipped := f(in)
			info := in.info()
			outcomes[i] = Outcome{InstanceID: in.id, Status: info.Status, Message: info.Message, Skipped: skipped}
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

// Spawn starts the selected instances that are not running: dormant, stopped by Kill, or never started. It
// returns once their start attempts are over. A permanently failed instance needs Restart instead.
func (r *Runtime) Spawn(ctx context.Context, sel Selector) ([]Outcome, error) {
	return r.each(ctx, sel, func(in *instance) string {
		if in.currentHold() == holdFailed {
			return "permanently failed: send a restart command"
		}
		in.do(ctx, cmdSpawn, "", false)
		return ""
	})
}

// Kill stops the selected instances and keeps them stopped, calls included, until Spawn or Restart.
func (r *Runtime) Kill(ctx context.Context, sel Selector) ([]Outcome, error) {
	return r.each(ctx, sel, func(in *instance) string {
		in.do(ctx, cmdKill, "", true)
		return ""
	})
}

// Restart stops the selected instances if they run, forgets their crashes and any hold (kill, permanent
// failure), and starts them again. It returns once their start attempts are over.
func (r *Runtime) Restart(ctx context.Context, sel Selector, reason string) ([]Outcome, error) {
	return r.each(ctx, sel, func(in *instance) string {
		in.do(ctx, cmdRestart, reason, true)
		return ""
	})
}

// Recover connects the selected remote instances afresh and discovers their tools again: connecting →
// discovering_tools → online. stdio instances are skipped: their process lifecycle recovers them.
func (r *Runtime) Recover(ctx context.Context, sel Selector) ([]Outcome, error) {
	return r.each(ctx, sel, func(in *instance) string {
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

// CheckCredentials validates the credentials of the selected remote instances (see checkCredentials) and
// sets their status to the verdict: online, requires_reauth or error. stdio instances are skipped.
func (r *Runtime) CheckCredentials(ctx context.Context, sel Selector) ([]Outcome, error) {
	return r.each(ctx, sel, func(in *instance) string {
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

// forgetMember deletes what the driver keeps of a former member of a team, unless the member has instances
// here again (added back before this satellite heard of the removal). It reports whether it deleted.
func (r *Runtime) forgetMember(teamID, userID string) (bool, error) {
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

// Execute carries out a command from the control plane that acts on instances, after the communicator
// has done its own part (a configure command's configuration sync). See the payload keys above. It returns
// the command's output, or an error saying why the command failed.
func (r *Runtime) Execute(ctx context.Context, cmd *satellitev1.Command) (map[string]any, error) {
	fields := cmd.GetPayload().GetFields()
	str := func(key string) string { return fields[key].GetStringValue() }
	sel := Selector{InstanceID: str("instance_id"), InstallationID: str("installation_id"), TeamID: str("team_id"),
		UserID: str("user_id")}
	if team := cmd.GetTeamId(); team != "" {
		if sel.TeamID != "" && sel.TeamID != team {
			return nil, fmt.Errorf("payload team_id %q contradicts the command's team %q", sel.TeamID, team)
		}
		sel.TeamID = team
	}

	var outcomes []Outcome
	var err error
	out := map[string]any{}
	switch cmd.GetType() {
	case satellitev1.CommandType_COMMAND_TYPE_CONFIGURE:
		// Run reconciles on its own when the sync changed the view; this call returns once that is done, so
		// the event below finds the instances as configured. What changed is in the sync's own output.
		if _, err := r.Reconcile(ctx); err != nil {
			return nil, fmt.Errorf("reconcile: %w", err)
		}
		switch event := str("event"); event {
		case "mcp_member_removed":
			if sel.TeamID == "" || sel.UserID == "" {
				return nil, fmt.Errorf("%s needs the command's team and user_id", event)
			}
			removed, err := r.forgetMember(sel.TeamID, sel.UserID)
			if err != nil {
				return nil, err
			}
			out["member_home_removed"] = removed
		case "mcp_recovery", "mcp_redeploy":
			if sel.InstallationID == "" {
				return nil, fmt.Errorf("%s needs installation_id", event)
			}
			if event == "mcp_recovery" {
				outcomes, err = r.Recover(ctx, sel)
			} else {
				outcomes, err = r.Restart(ctx, sel, "redeploy")
			}
			if err != nil {
				return nil, err
			}
		}
	case satellitev1.CommandType_COMMAND_TYPE_SPAWN:
		outcomes, err = r.Spawn(ctx, sel)
	case satellitev1.CommandType_COMMAND_TYPE_KILL:
		outcomes, err = r.Kill(ctx, sel)
	case satellitev1.CommandType_COMMAND_TYPE_RESTART:
		outcomes, err = r.Restart(ctx, sel, str("reason"))
	case satellitev1.CommandType_COMMAND_TYPE_HEALTH_CHECK:
		switch check := str("check_type"); check {
		case "", "credential_validation":
			outcomes, err = r.CheckCredentials(ctx, sel)
		default:
			return nil, fmt.Errorf("unknown check_type %q; this satellite knows credential_validation", check)
		}
	default:
		return nil, fmt.Errorf("the MCP runtime does not carry out %v commands", cmd.GetType())
	}
	if err != nil {
		return nil, err
	}
	if outcomes != nil {
		list := make([]any, len(outcomes))
		for i, o := range outcomes {
			list[i] = o.asMap()
		}
		out["outcomes"] = list
	}
	return out, nil
}
