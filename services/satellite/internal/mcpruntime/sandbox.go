package mcpruntime

import (
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/sandbox"
)

// sandboxSpec is what the driver needs to start spec's server as instance id in the working directory dir.
func sandboxSpec(spec *satellitev1.Instance, id, dir string) sandbox.Spec {
	box := spec.GetSandbox()
	s := sandbox.Spec{
		Command:     spec.GetCommand(),
		Args:        spec.GetArgs(),
		Env:         spec.GetEnv(),
		Dir:         dir,
		TeamID:      spec.GetTeamId(),
		InstanceID:  id,
		Network:     !box.GetNetworkDisabled(),
		EgressAllow: box.GetEgressAllow(),
	}
	if box.GetHome() == satellitev1.HomeScope_HOME_SCOPE_USER {
		s.UserID = spec.GetUserId()
	}
	if l := box.GetLimits(); l != nil {
		// Zero fields keep the driver's defaults, in the message as in sandbox.Limits.
		s.Limits = &sandbox.Limits{
			MemoryBytes:   int64(min(l.GetMemoryBytes(), 1<<62)),
			Processes:     int(l.GetProcesses()),
			CPU:           float64(l.GetCpuMillis()) / 1000,
			CPUTime:       max(l.GetCpuTime().AsDuration(), 0),
			OpenFiles:     int(l.GetOpenFiles()),
			FileSizeBytes: int64(min(l.GetFileSizeBytes(), 1<<62)),
		}
	}
	return s
}

// exitDetail describes how a server process ended, "exit status 3" or "signal: killed", led by the limit
// that killed it when the driver knows of one, so that a crash report says what to raise.
func exitDetail(p *sandbox.Process) string {
	if r := p.Reason(); r != "" {
		return r + "; " + p.ExitStatus()
	}
	return p.ExitStatus()
}
