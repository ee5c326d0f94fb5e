package satelliteapi

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// enumName turns an enum value into the lower-case word stored in the database: INSTANCE_STATUS_ONLINE → online.
func enumName(value interface{ String() string }, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(value.String(), prefix))
}

// CommandStateName is the stored name of a command state.
func CommandStateName(s satellitev1.CommandState) string { return enumName(s, "COMMAND_STATE_") }

// enumValue is the number of the enum value a stored name stands for: online → INSTANCE_STATUS_ONLINE; 0 for
// an unknown name.
func enumValue(values map[string]int32, prefix, name string) int32 {
	return values[prefix+strings.ToUpper(name)]
}

// CommandStateFromName is the enum of a stored command state.
func CommandStateFromName(name string) satellitev1.CommandState {
	return satellitev1.CommandState(enumValue(satellitev1.CommandState_value, "COMMAND_STATE_", name))
}

// InstanceStatusFromName is the enum of a stored instance status.
func InstanceStatusFromName(name string) satellitev1.InstanceStatus {
	return satellitev1.InstanceStatus(enumValue(satellitev1.InstanceStatus_value, "INSTANCE_STATUS_", name))
}

// ProcessHealthFromName is the enum of a stored process health.
func ProcessHealthFromName(name string) satellitev1.ProcessHealth {
	return satellitev1.ProcessHealth(enumValue(satellitev1.ProcessHealth_value, "PROCESS_HEALTH_", name))
}

// LifecycleKindFromName is the enum of a stored lifecycle event kind.
func LifecycleKindFromName(name string) satellitev1.LifecycleKind {
	return satellitev1.LifecycleKind(enumValue(satellitev1.LifecycleKind_value, "LIFECYCLE_KIND_", name))
}

// LogLevelFromName is the enum of a stored log level.
func LogLevelFromName(name string) satellitev1.LogLevel {
	return satellitev1.LogLevel(enumValue(satellitev1.LogLevel_value, "LOG_LEVEL_", name))
}

// CommandToProto converts a stored command to what satellites receive. Priorities are stored as the enum's
// numbers, which order them.
func CommandToProto(c store.Command) *satellitev1.Command {
	pc := &satellitev1.Command{}
	if c.Action != nil {
		pc = proto.CloneOf(c.Action)
	}
	pc.Id = c.ID.String()
	pc.Priority = satellitev1.CommandPriority(c.Priority)
	pc.CreatedAt = timestamppb.New(c.CreatedAt)
	pc.ExpiresAt = timestamppb.New(c.ExpiresAt)
	pc.Attempt = c.Attempts
	if c.TeamID != nil {
		pc.TeamId = c.TeamID.String()
	}
	if c.LeaseExpiresAt != nil {
		pc.LeaseExpiresAt = timestamppb.New(*c.LeaseExpiresAt)
	}
	return pc
}

// StructFromJSON decodes a stored JSON object, or returns nil for an empty one.
func StructFromJSON(raw []byte) *structpb.Struct { return MessageFromJSON(raw, &structpb.Struct{}) }

// MessageFromJSON decodes stored JSON into m and returns it, or returns nil for empty or unfitting JSON.
func MessageFromJSON[M proto.Message](raw []byte, m M) M {
	var none M
	if len(raw) == 0 {
		return none
	}
	if err := protojson.Unmarshal(raw, m); err != nil {
		return none
	}
	return m
}

// JSONFromMessage encodes m for a jsonb column; nil becomes SQL NULL.
func JSONFromMessage(m proto.Message) []byte {
	if m == nil || !m.ProtoReflect().IsValid() {
		return nil
	}
	raw, err := protojson.Marshal(m)
	if err != nil {
		return nil
	}
	return raw
}

func heartbeatFromProto(req *satellitev1.HeartbeatRequest, sat store.Satellite) (hb store.Heartbeat, foreign int) {
	type teamCount struct {
		TeamID  string `json:"team_id"`
		Running uint32 `json:"running"`
		Total   uint32 `json:"total"`
	}
	counts := []teamCount{}
	for _, c := range req.ProcessCounts {
		counts = append(counts, teamCount{TeamID: c.TeamId, Running: c.Running, Total: c.Total})
	}
	countsJSON, _ := json.Marshal(counts)
	hb = store.Heartbeat{
		URL: req.Url, Version: req.Version, SystemMetrics: JSONFromMessage(req.System), ProcessCounts: countsJSON,
		Capacity: int(req.Capacity), InternalURL: req.InternalUrl, OpenSessions: int(req.OpenSessions),
	}
	reported := make(map[string]int, len(req.Processes)) // instance id → index in hb.Processes
	for _, p := range req.Processes {
		teamID, err := uuid.Parse(p.TeamId)
		installationID, err2 := uuid.Parse(p.InstallationId)
		if err != nil || err2 != nil || !sat.Serves(teamID) {
			foreign++
			continue
		}
		proc := store.Process{
			InstanceID: p.InstanceId, TeamID: teamID, InstallationID: installationID,
			Status: enumName(p.Status, "INSTANCE_STATUS_"), Health: enumName(p.Health, "PROCESS_HEALTH_"), PID: p.Pid,
			MemoryBytes: int64(p.MemoryBytes), UptimeSeconds: p.Uptime.AsDuration().Seconds(),
			RequestCount: int64(p.RequestCount),
		}
		// An instance reported twice is stored once, as last reported: the store's upsert takes one row each.
		if i, ok := reported[p.InstanceId]; ok {
			hb.Processes[i] = proc
			continue
		}
		reported[p.InstanceId] = len(hb.Processes)
		hb.Processes = append(hb.Processes, proc)
	}
	return hb, foreign
}

func eventFromProto(e *satellitev1.Event) store.Event {
	se := store.Event{
		OccurredAt: e.OccurredAt.AsTime(),
		InstanceID: e.InstanceId,
	}
	// protovalidate checked these ids; an empty one (allowed for events_dropped) stays the zero UUID.
	se.ID, _ = uuid.Parse(e.Id)
	se.TeamID, _ = uuid.Parse(e.TeamId)
	se.InstallationID, _ = uuid.Parse(e.InstallationId)
	switch p := e.Payload.(type) {
	case *satellitev1.Event_StatusChanged:
		se.StatusChanged = &store.StatusChange{
			Status: enumName(p.StatusChanged.Status, "INSTANCE_STATUS_"), Message: p.StatusChanged.Message,
		}
	case *satellitev1.Event_ServerLog:
		level := p.ServerLog.Level
		if level == satellitev1.LogLevel_LOG_LEVEL_UNSPECIFIED {
			level = satellitev1.LogLevel_LOG_LEVEL_INFO
		}
		se.ServerLog = &store.ServerLog{Level: enumName(level, "LOG_LEVEL_"), Message: p.ServerLog.Message}
	case *satellitev1.Event_RequestLog:
		r := p.RequestLog
		rl := &store.RequestLog{
			ToolName: r.ToolName, Duration: r.Duration.AsDuration(), Success: r.Success, Error: r.Error,
			Request: JSONFromMessage(r.Request), Response: JSONFromMessage(r.Response), TraceID: r.TraceId,
			RequestBytes: int64(r.RequestBytes), ResponseBytes: int64(r.ResponseBytes),
		}
		if id, err := uuid.Parse(r.UserId); err == nil {
			rl.UserID = &id
		}
		se.RequestLog = rl
	case *satellitev1.Event_ToolsDiscovered:
		td := &store.ToolsDiscovered{}
		for _, t := range p.ToolsDiscovered.Tools {
			td.Tools = append(td.Tools, store.Tool{
				Name: t.Name, Title: t.Title, Description: t.Description, InputSchema: JSONFromMessage(t.InputSchema),
				OutputSchema: JSONFromMessage(t.OutputSchema), Annotations: JSONFromMessage(t.Annotations),
				TokenCount: int32(t.TokenCount),
			})
		}
		se.ToolsDiscovered = td
	case *satellitev1.Event_Lifecycle:
		lc := &store.Lifecycle{Kind: enumName(p.Lifecycle.Kind, "LIFECYCLE_KIND_"), Reason: p.Lifecycle.Reason}
		if p.Lifecycle.Kind == satellitev1.LifecycleKind_LIFECYCLE_KIND_CRASHED {
			code := p.Lifecycle.ExitCode
			lc.ExitCode = &code
		}
		se.Lifecycle = lc
	case *satellitev1.Event_EventsDropped:
		se.Dropped = &store.DroppedEvents{Count: int64(p.EventsDropped.Count), Reason: p.EventsDropped.Reason}
	}
	return se
}

func instanceToProto(d store.DesiredInstance) (*satellitev1.Instance, error) {
	inst := &satellitev1.Instance{
		Id:                    d.ID,
		InstallationId:        d.InstallationID.String(),
		TeamId:                d.TeamID.String(),
		TeamSlug:              d.TeamSlug,
		UserId:                d.UserID.String(),
		UserSlug:              d.UserSlug,
		ServerSlug:            d.ServerSlug,
		ServerName:            d.ServerName,
		Transport:             satellitev1.Transport(satellitev1.Transport_value["TRANSPORT_"+strings.ToUpper(d.Transport)]),
		Command:               d.Command,
		Args:                  d.Args,
		Env:                   d.Env,
		Url:                   d.URL,
		Headers:               d.Headers,
		QueryParams:           d.QueryParams,
		RequestLoggingEnabled: d.RequestLoggingEnabled,
		ToolPrefix:            d.ToolPrefix,
		ToolSelection: &satellitev1.ToolSelection{
			Allow: d.Tools.Allow, Deny: d.Tools.Deny, Hidden: d.HiddenTools, Descriptions: d.Tools.Descriptions,
		},
		EmergencyStop: d.EmergencyStop,
	}
	if len(d.Source) > 0 && d.EmergencyStop == "" {
		inst.Source = new(satellitev1.Source)
		if err := protojson.Unmarshal(d.Source, inst.Source); err != nil {
			return nil, fmt.Errorf("instance %s source: %w", d.ID, err)
		}
	}
	if len(d.Sandbox) > 0 && string(d.Sandbox) != "{}" {
		inst.Sandbox = new(satellitev1.Sandbox)
		if err := protojson.Unmarshal(d.Sandbox, inst.Sandbox); err != nil {
			return nil, fmt.Errorf("instance %s sandbox settings: %w", d.ID, err)
		}
	}
	return inst, nil
}
