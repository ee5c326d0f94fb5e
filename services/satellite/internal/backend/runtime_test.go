package backend_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

// fakeRuntime stands in for the MCP runtime: it records the commands it is given and reports fixed processes.
type fakeRuntime struct {
	mu       sync.Mutex
	commands []*satellitev1.Command
	procs    []*satellitev1.ProcessReport
}

func (f *fakeRuntime) Execute(_ context.Context, cmd *satellitev1.Command) (map[string]any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commands = append(f.commands, cmd)
	switch cmd.GetType() {
	case satellitev1.CommandType_COMMAND_TYPE_KILL:
		return nil, errors.New("no such MCP server instance")
	case satellitev1.CommandType_COMMAND_TYPE_CONFIGURE:
		// "etag" is the communicator's own key and must not be overwritten.
		return map[string]any{"started": 1, "etag": "runtime"}, nil
	}
	return map[string]any{"outcomes": []any{map[string]any{"instance_id": "a", "status": "online"}}}, nil
}

func (f *fakeRuntime) Processes() []*satellitev1.ProcessReport {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.procs
}

func TestCommandsGoToTheRuntime(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rt := &fakeRuntime{}
	b.cfg.Executor, b.cfg.Processes = rt, rt
	start(t, b.cfg)
	restart, kill, configure := command(satellitev1.CommandType_COMMAND_TYPE_RESTART),
		command(satellitev1.CommandType_COMMAND_TYPE_KILL), command(satellitev1.CommandType_COMMAND_TYPE_CONFIGURE)
	b.srv.Enqueue(restart, kill, configure)
	b.srv.Wait(t.Context(), "three results", waitLimit, func() bool { return len(b.srv.Reports()) == 3 })

	byID := map[string]*satellitev1.ReportCommandResultRequest{}
	for _, r := range b.srv.Reports() {
		byID[r.GetCommandId()] = r
	}
	if r := byID[restart.GetId()]; r.GetResult() != satellitev1.CommandResult_COMMAND_RESULT_COMPLETED ||
		len(r.GetOutput().GetFields()["outcomes"].GetListValue().GetValues()) != 1 {
		t.Errorf("restart reported %v", r)
	}
	if r := byID[kill.GetId()]; r.GetResult() != satellitev1.CommandResult_COMMAND_RESULT_FAILED ||
		!strings.Contains(r.GetError(), "kill: no such MCP server instance") {
		t.Errorf("kill reported %v", r)
	}
	out := byID[configure.GetId()].GetOutput().AsMap()
	if out["started"] != 1.0 || out["etag"] != "v0" || out["instances"] != 0.0 {
		t.Errorf("configure output %v, want the sync's keys and the runtime's", out)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if len(rt.commands) != 3 {
		t.Errorf("the runtime got %d commands, want 3", len(rt.commands))
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
