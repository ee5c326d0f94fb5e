package mcpruntime

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/sandbox"
)

// Processes describes every instance for a heartbeat: status, health, and for running stdio servers the
// pid, the resident memory of the server's whole process group, its uptime and its request count.
func (r *Runtime) Processes() []*satellitev1.ProcessReport {
	usage, _ := sandbox.GroupUsage() // without /proc, memory is reported as zero
	var reports []*satellitev1.ProcessReport
	for _, in := range r.all() {
		info := in.info()
		p := &satellitev1.ProcessReport{
			InstanceId:     info.ID,
			TeamId:         info.TeamID,
			InstallationId: info.InstallationID,
			Status:         info.Status,
			Health:         health(info.Status),
			Pid:            int32(info.Pid),
			RequestCount:   info.Requests,
		}
		if p.Status == satellitev1.InstanceStatus_INSTANCE_STATUS_UNSPECIFIED {
			p.Status = satellitev1.InstanceStatus_INSTANCE_STATUS_PROVISIONING
		}
		if !info.StartedAt.IsZero() {
			p.Uptime = durationpb.New(time.Since(info.StartedAt))
		}
		if info.Pid > 0 {
			p.MemoryBytes = usage[info.Pid].RSSBytes
			if n, ok := in.memory(); ok {
				p.MemoryBytes = n
			}
		}
		reports = append(reports, p)
	}
	return reports
}

func health(s satellitev1.InstanceStatus) satellitev1.ProcessHealth {
	switch s {
	case satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE:
		return satellitev1.ProcessHealth_PROCESS_HEALTH_HEALTHY
	case satellitev1.InstanceStatus_INSTANCE_STATUS_CRASHED, satellitev1.InstanceStatus_INSTANCE_STATUS_ERROR,
		satellitev1.InstanceStatus_INSTANCE_STATUS_REQUIRES_REAUTH, satellitev1.InstanceStatus_INSTANCE_STATUS_PERMANENTLY_FAILED:
		return satellitev1.ProcessHealth_PROCESS_HEALTH_UNHEALTHY
	default:
		return satellitev1.ProcessHealth_PROCESS_HEALTH_UNSPECIFIED
	}
}

// memory returns the memory the driver charges the running server with, where it knows.
func (in *instance) memory() (uint64, bool) {
	in.mu.Lock()
	c := in.current
	in.mu.Unlock()
	if c == nil || c.proc == nil {
		return 0, false
	}
	return c.proc.MemoryBytes()
}
