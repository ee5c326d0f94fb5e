package backend_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/action"
	"github.com/orrery/orrery/services/satellite/internal/backend"
)

// fakeRuntime stands in for the MCP runtime and the gateway: it records the calls that commands turn into,
// and reports fixed processes.
type fakeRuntime struct {
	mu    sync.Mutex
	calls []string
	procs []*satellitev1.ProcessReport
}

func (f *fakeRuntime) record(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeRuntime) outcome(id string) []*satellitev1.InstanceOutcome {
	return []*satellitev1.InstanceOutcome{{InstanceId: id, Status: satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE}}
}

func (f *fakeRuntime) ApplyConfiguration(context.Context) error {
	f.record("apply")
	return nil
}

func (f *fakeRuntime) ForgetMember(teamID, userID string) (bool, error) {
	f.record("forget %s %s", teamID, userID)
	return true, nil
}

func (f *fakeRuntime) Spawn(_ context.Context, teamID string, sel *satellitev1.InstanceSelector) ([]*satellitev1.InstanceOutcome, error) {
	f.record("spawn %s %s", teamID, sel.GetInstallationId())
	return f.outcome("spawned"), nil
}

func (f *fakeRuntime) Kill(_ context.Context, teamID string, sel *satellitev1.InstanceSelector) ([]*satellitev1.InstanceOutcome, error) {
	f.record("kill %s %s", teamID, sel.GetInstallationId())
	return nil, errors.New("no such MCP server instance")
}

func (f *fakeRuntime) Restart(_ context.Context, teamID string, sel *satellitev1.InstanceSelector, reason satellitev1.RestartReason) ([]*satellitev1.InstanceOutcome, error) {
	f.record("restart %s %s %s", teamID, sel.GetInstallationId(), reason)
	return f.outcome("restarted"), nil
}

func (f *fakeRuntime) Recover(_ context.Context, teamID, installationID string) ([]*satellitev1.InstanceOutcome, error) {
	f.record("recover %s %s", teamID, installationID)
	return f.outcome("recovered"), nil
}

func (f *fakeRuntime) CheckCredentials(_ context.Context, teamID, installationID string) ([]*satellitev1.InstanceOutcome, error) {
	f.record("check %s %s", teamID, installationID)
	return f.outcome("checked"), nil
}

func (f *fakeRuntime) RevokeTokens(hashes []string) (int, error) {
	f.record("revoke %v", hashes)
	return len(hashes), nil
}

func (f *fakeRuntime) Processes() []*satellitev1.ProcessReport {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.procs
}

// TestDispatchHandsEachActionToItsOwner sends one command of every action and checks the call each became,
// with the command's team, and what was reported.
func TestDispatchHandsEachActionToItsOwner(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rt := &fakeRuntime{}
	b.cfg.Commands, b.cfg.Processes = &backend.Handlers{Reconciler: rt, Instances: rt, Tokens: rt}, rt
	start(t, b.cfg)
	member := uuid.NewString()
	removal := &satellitev1.Command{Action: &satellitev1.Command_Configure{Configure: &satellitev1.ConfigureAction{
		Event: satellitev1.ConfigureEvent_CONFIGURE_EVENT_MEMBER_REMOVED, UserId: member,
	}}}
	hash := revokeAction.GetRevokeTokens().GetTokenHashes()[0]
	cases := []struct {
		action   *satellitev1.Command
		calls    []string
		outcome  string // the one instance outcome reported, if any
		failure  string // part of the error of a failed command
		outputOK func(map[string]any) bool
	}{
		{action: configureAction, calls: []string{"apply"},
			outputOK: func(out map[string]any) bool { return out["etag"] == "v0" && out["instances"] == 0.0 }},
		{action: removal, calls: []string{"apply", "forget " + teamA + " " + member},
			outputOK: func(out map[string]any) bool { return out["member_home_removed"] == true }},
		{action: spawnAction, calls: []string{"spawn " + teamA + " " + installation}, outcome: "spawned"},
		{action: killAction, calls: []string{"kill " + teamA + " " + installation}, failure: "kill: no such MCP server instance"},
		{action: restartAction, calls: []string{"restart " + teamA + " " + installation + " RESTART_REASON_MANUAL_RESTART"}, outcome: "restarted"},
		{action: healthCheckAction, calls: []string{"check " + teamA + " " + installation}, outcome: "checked"},
		{action: recoveryAction, calls: []string{"recover " + teamA + " " + installation}, outcome: "recovered"},
		{action: redeployAction, calls: []string{"apply", "restart " + teamA + " " + installation + " RESTART_REASON_CONFIG_RELOAD"}, outcome: "restarted"},
		{action: revokeAction, calls: []string{"revoke [" + hash + "]"},
			outputOK: func(out map[string]any) bool { return out["revoked"] == 1.0 }},
		{action: updateAction, failure: "self-update is off"},
	}
	for _, tc := range cases {
		rt.mu.Lock()
		rt.calls = nil
		rt.mu.Unlock()
		cmd := command(tc.action)
		cmd.TeamId = teamA
		n := len(b.srv.Reports())
		b.srv.Enqueue(cmd)
		b.srv.Wait(t.Context(), "the result", waitLimit, func() bool { return len(b.srv.Reports()) == n+1 })
		r := b.srv.Reports()[n]
		name := action.Name(cmd)
		rt.mu.Lock()
		calls := slices.Clone(rt.calls)
		rt.mu.Unlock()
		if !slices.Equal(calls, tc.calls) {
			t.Errorf("%s became calls %q, want %q", name, calls, tc.calls)
		}
		if tc.failure != "" {
			if r.GetResult() != satellitev1.CommandResult_COMMAND_RESULT_FAILED || !strings.Contains(r.GetError(), tc.failure) {
				t.Errorf("%s reported %v %q, want failed saying %q", name, r.GetResult(), r.GetError(), tc.failure)
			}
			continue
		}
		if r.GetResult() != satellitev1.CommandResult_COMMAND_RESULT_COMPLETED {
			t.Errorf("%s reported %v %q, want completed", name, r.GetResult(), r.GetError())
		}
		if tc.outcome != "" && (len(r.GetOutcomes()) != 1 || r.GetOutcomes()[0].GetInstanceId() != tc.outcome) {
			t.Errorf("%s reported outcomes %v, want %s's", name, r.GetOutcomes(), tc.outcome)
		}
		if tc.outputOK != nil && !tc.outputOK(r.GetOutput().AsMap()) {
			t.Errorf("%s reported output %v", name, r.GetOutput().AsMap())
		}
	}
}

func TestHeartbeatReportsProcesses(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.SetNextHeartbeat(10 * time.Millisecond)
	b.srv.SetConfiguration("v1", instance("a", teamA, "1"), instance("b", teamA, "1"), instance("c", teamB, "1"))
	inst := uuid.NewString()
	rt := &fakeRuntime{procs: []*satellitev1.ProcessReport{
		{InstanceId: "a", TeamId: teamA, InstallationId: inst, Status: satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE, Pid: 42, MemoryBytes: 1 << 20},
		{InstanceId: "b", TeamId: teamA, InstallationId: inst, Status: satellitev1.InstanceStatus_INSTANCE_STATUS_DORMANT},
		{InstanceId: "c", TeamId: teamB, InstallationId: inst, Status: satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE}, // remote: no pid
	}}
	b.cfg.Processes = rt
	start(t, b.cfg)
	b.srv.Wait(t.Context(), "a heartbeat with counts", waitLimit, func() bool {
		hbs := b.srv.Heartbeats()
		return len(hbs) > 0 && len(hbs[len(hbs)-1].GetProcessCounts()) == 2
	})
	hbs := b.srv.Heartbeats()
	last := hbs[len(hbs)-1]
	if len(last.GetProcesses()) != 3 || last.GetProcesses()[0].GetPid() != 42 {
		t.Errorf("processes %v", last.GetProcesses())
	}
	counts := map[string][2]uint32{}
	for _, pc := range last.GetProcessCounts() {
		counts[pc.GetTeamId()] = [2]uint32{pc.GetRunning(), pc.GetTotal()}
	}
	if counts[teamA] != [2]uint32{1, 2} || counts[teamB] != [2]uint32{1, 1} {
		t.Errorf("process counts %v, want team A 1 of 2 running, team B 1 of 1", counts)
	}
}
