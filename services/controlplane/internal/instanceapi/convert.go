package instanceapi

import (
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/services/controlplane/internal/satelliteapi"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// statusChanged is the stored kind of a status change; every other kind is a lifecycle event.
const statusChanged = "status_changed"

func instanceToProto(i store.Instance) *apiv1.Instance {
	p := &apiv1.Instance{
		Id: i.ID, InstallationId: i.InstallationID.String(), UserId: i.UserID.String(),
		Status: satelliteapi.InstanceStatusFromName(i.Status), StatusMessage: i.StatusMessage,
		StatusUpdatedAt: timestamppb.New(i.StatusUpdatedAt),
	}
	if i.LastHealthCheckAt != nil {
		p.LastHealthCheckAt = timestamppb.New(*i.LastHealthCheckAt)
	}
	return p
}

func instancesToProto(instances []store.Instance) []*apiv1.Instance {
	out := make([]*apiv1.Instance, len(instances))
	for i, inst := range instances {
		out[i] = instanceToProto(inst)
	}
	return out
}

func eventsToProto(events []store.InstanceEvent) []*apiv1.InstanceEvent {
	out := make([]*apiv1.InstanceEvent, len(events))
	for i, e := range events {
		pe := &apiv1.InstanceEvent{
			Id: e.Seq, InstanceId: e.InstanceID, Message: e.Message, ExitCode: e.ExitCode,
			OccurredAt: timestamppb.New(e.OccurredAt),
		}
		if e.Kind == statusChanged {
			pe.Status = satelliteapi.InstanceStatusFromName(e.Status)
		} else {
			pe.Lifecycle = satelliteapi.LifecycleKindFromName(e.Kind)
		}
		out[i] = pe
	}
	return out
}

func linesToProto(lines []store.LogLine) []*apiv1.ServerLogLine {
	out := make([]*apiv1.ServerLogLine, len(lines))
	for i, l := range lines {
		out[i] = &apiv1.ServerLogLine{
			Id: l.ID, InstanceId: l.InstanceID, Level: satelliteapi.LogLevelFromName(l.Level), Message: l.Message,
			OccurredAt: timestamppb.New(l.OccurredAt),
		}
	}
	return out
}

func requestLogsToProto(logs []store.StoredRequestLog) []*apiv1.RequestLog {
	out := make([]*apiv1.RequestLog, len(logs))
	for i, rl := range logs {
		out[i] = requestLogToProto(rl)
	}
	return out
}

func requestLogToProto(rl store.StoredRequestLog) *apiv1.RequestLog {
	p := &apiv1.RequestLog{
		Id: rl.ID, InstanceId: rl.InstanceID, ToolName: rl.ToolName, Duration: durationpb.New(rl.Duration),
		Success: rl.Success, Error: rl.Error, OccurredAt: timestamppb.New(rl.OccurredAt), TraceId: rl.TraceID,
		Request:  satelliteapi.MessageFromJSON(rl.Request, &structpb.Value{}),
		Response: satelliteapi.MessageFromJSON(rl.Response, &structpb.Value{}),
	}
	if rl.UserID != nil {
		p.UserId = rl.UserID.String()
	}
	return p
}
