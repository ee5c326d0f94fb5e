package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// LogRetention is how many server-log lines and request logs are kept per installation.
const LogRetention = 100

// ErrForeignInstance reports an event about an instance the emitting satellite does not serve.
var ErrForeignInstance = errors.New("event concerns an instance this satellite does not serve")

// Event is something a satellite reports. Exactly one of the payload fields is set.
type Event struct {
	ID             uuid.UUID
	OccurredAt     time.Time
	TeamID         uuid.UUID
	InstallationID uuid.UUID
	InstanceID     string

	StatusChanged   *StatusChange
	ServerLog       *ServerLog
	RequestLog      *RequestLog
	ToolsDiscovered *ToolsDiscovered
	Lifecycle       *Lifecycle
	Dropped         *DroppedEvents
}

// StatusChange is a new instance status.
type StatusChange struct {
	Status  string
	Message string
}

// ServerLog is one line of an instance's stderr or a connection error.
type ServerLog struct {
	Level   string
	Message string
}

// RequestLog is one tool call.
type RequestLog struct {
	UserID   *uuid.UUID
	ToolName string
	Duration time.Duration
	Success  bool
	Error    string
	Request  json.RawMessage
	Response json.RawMessage
	// TraceID is the call's W3C trace id, or empty.
	TraceID string
	// RequestBytes and ResponseBytes are the sizes of the call's arguments and result as JSON, counted
	// whether or not the bodies are logged.
	RequestBytes, ResponseBytes int64
}

// ToolsDiscovered is an instance's complete tool list.
type ToolsDiscovered struct {
	Tools []Tool
}

// Tool is one tool of an MCP server.
type Tool struct {
	Name        string
	Title       string
	Description string
	InputSchema json.RawMessage
	// OutputSchema and Annotations are JSON objects, or nil when the server gave none.
	OutputSchema json.RawMessage
	Annotations  json.RawMessage
	TokenCount   int32
	// DiscoveredAt is when the tool was last reported; set on reads.
	DiscoveredAt time.Time
}

// Lifecycle is a process lifecycle event: started, crashed, restarted or permanently_failed.
type Lifecycle struct {
	Kind     string
	ExitCode *int32
	Reason   string
}

// DroppedEvents counts events a satellite could not keep.
type DroppedEvents struct {
	Count  int64
	Reason string
}

// RecordEvents stores a batch of a satellite's events. Events seen before are skipped, so a retried batch
// stores nothing twice. The streams of the installations concerned are notified on EventChannel when the
// batch commits. Every instance event must name an instance of a team the satellite serves, with its
// true team and installation; otherwise the whole batch is refused with ErrForeignInstance. Events about
// instances that no longer exist are accepted and dropped. Tool calls are counted into the usage rollups in
// the same transaction as their ids are recorded, so each is counted once however often it is delivered.
func (s *Store) RecordEvents(ctx context.Context, sat Satellite, events []Event) (stored, duplicates int, err error) {
	err = s.inTx(ctx, func(q *dbsqlc.Queries) error {
		ids := make([]uuid.UUID, len(events))
		var instanceIDs []string
		for i, e := range events {
			ids[i] = e.ID
			if e.InstanceID != "" {
				instanceIDs = append(instanceIDs, e.InstanceID)
			}
		}
		owners, err := q.ListInstanceOwners(ctx, instanceIDs)
		if err != nil {
			return translate(err, "list instance owners")
		}
		known := make(map[string]dbsqlc.ListInstanceOwnersRow, len(owners))
		for _, o := range owners {
			known[o.ID] = o
		}
		for _, e := range events {
			if e.Dropped != nil {
				continue
			}
			o, ok := known[e.InstanceID]
			if ok && (o.TeamID != e.TeamID || o.InstallationID != e.InstallationID || !sat.Serves(o.TeamID)) {
				return fmt.Errorf("event %s: %w", e.ID, ErrForeignInstance)
			}
		}
		fresh, err := q.RecordReceivedEvents(ctx, ids, sat.ID)
		if err != nil {
			return translate(err, "record received events")
		}
		isFresh := make(map[uuid.UUID]bool, len(fresh))
		for _, id := range fresh {
			isFresh[id] = true
		}
		var apply []Event
		stored, duplicates = 0, 0
		for _, e := range events {
			if !isFresh[e.ID] {
				duplicates++
				continue
			}
			isFresh[e.ID] = false // a batch may repeat an id
			stored++
			if _, ok := known[e.InstanceID]; ok || e.Dropped != nil {
				apply = append(apply, e)
			}
		}
		streams := touchedStreams(apply)
		if len(streams) > 0 {
			if err := q.LockInstallationEvents(ctx, eventLockClass, slices.Collect(maps.Keys(streams))); err != nil {
				return translate(err, "lock installation events")
			}
		}
		for _, e := range apply {
			if err := applyEvent(ctx, q, sat.ID, e); err != nil {
				return err
			}
		}
		if err := addUsage(ctx, q, apply, time.Now()); err != nil {
			return err
		}
		var keys []string
		for installationID, kinds := range streams {
			if kinds[StreamServerLogs] {
				if err := q.TrimServerLogs(ctx, installationID, LogRetention); err != nil {
					return translate(err, "trim server logs")
				}
			}
			if kinds[StreamRequestLogs] {
				if err := q.TrimRequestLogs(ctx, installationID, LogRetention); err != nil {
					return translate(err, "trim request logs")
				}
			}
			for stream := range kinds {
				keys = append(keys, StreamKey(installationID, stream))
			}
		}
		if len(keys) == 0 {
			return nil
		}
		return translate(q.NotifyStreams(ctx, EventChannel, keys), "notify streams")
	})
	return stored, duplicates, err
}

// eventLockClass is the first key of the advisory locks that LockInstallationEvents takes.
const eventLockClass = 0x6f727279

// touchedStreams returns, per installation, the streams that events add entries to.
func touchedStreams(events []Event) map[uuid.UUID]map[Stream]bool {
	streams := map[uuid.UUID]map[Stream]bool{}
	for _, e := range events {
		var stream Stream
		switch {
		case e.StatusChanged != nil, e.Lifecycle != nil:
			stream = StreamStatus
		case e.ServerLog != nil:
			stream = StreamServerLogs
		case e.RequestLog != nil:
			stream = StreamRequestLogs
		default:
			continue
		}
		if streams[e.InstallationID] == nil {
			streams[e.InstallationID] = map[Stream]bool{}
		}
		streams[e.InstallationID][stream] = true
	}
	return streams
}

func applyEvent(ctx context.Context, q *dbsqlc.Queries, satelliteID uuid.UUID, e Event) error {
	switch {
	case e.StatusChanged != nil:
		if err := q.InsertInstanceEvent(ctx, dbsqlc.InsertInstanceEventParams{
			ID: e.ID, TeamID: e.TeamID, InstallationID: e.InstallationID, InstanceID: e.InstanceID,
			Kind: "status_changed", Status: e.StatusChanged.Status, Message: e.StatusChanged.Message,
			OccurredAt: e.OccurredAt,
		}); err != nil {
			return translate(err, "insert status event")
		}
		return translate(q.SetInstanceStatus(ctx, dbsqlc.SetInstanceStatusParams{
			ID: e.InstanceID, TeamID: e.TeamID, Status: e.StatusChanged.Status, Message: e.StatusChanged.Message,
			OccurredAt: e.OccurredAt,
		}), "set instance status")
	case e.Lifecycle != nil:
		return translate(q.InsertInstanceEvent(ctx, dbsqlc.InsertInstanceEventParams{
			ID: e.ID, TeamID: e.TeamID, InstallationID: e.InstallationID, InstanceID: e.InstanceID,
			Kind: e.Lifecycle.Kind, Message: e.Lifecycle.Reason, ExitCode: e.Lifecycle.ExitCode, OccurredAt: e.OccurredAt,
		}), "insert lifecycle event")
	case e.ServerLog != nil:
		return translate(q.InsertServerLog(ctx, dbsqlc.InsertServerLogParams{
			TeamID: e.TeamID, InstallationID: e.InstallationID, InstanceID: e.InstanceID, Level: e.ServerLog.Level,
			Message: e.ServerLog.Message, OccurredAt: e.OccurredAt,
		}), "insert server log")
	case e.RequestLog != nil:
		r := e.RequestLog
		return translate(q.InsertRequestLog(ctx, dbsqlc.InsertRequestLogParams{
			TeamID: e.TeamID, InstallationID: e.InstallationID, InstanceID: e.InstanceID, UserID: r.UserID,
			ToolName: r.ToolName, DurationMs: float64(r.Duration) / float64(time.Millisecond), Success: r.Success,
			Error: r.Error, Request: r.Request, Response: r.Response, OccurredAt: e.OccurredAt, TraceID: r.TraceID,
		}), "insert request log")
	case e.ToolsDiscovered != nil:
		if err := q.DeleteDiscoveredTools(ctx, e.InstanceID, e.TeamID); err != nil {
			return translate(err, "delete discovered tools")
		}
		p := dbsqlc.InsertDiscoveredToolsParams{
			InstanceID: e.InstanceID, TeamID: e.TeamID, InstallationID: e.InstallationID, DiscoveredAt: e.OccurredAt,
		}
		for _, t := range e.ToolsDiscovered.Tools {
			schema := t.InputSchema
			if len(schema) == 0 {
				schema = json.RawMessage("{}")
			}
			p.Names = append(p.Names, t.Name)
			p.Descriptions = append(p.Descriptions, t.Description)
			p.InputSchemas = append(p.InputSchemas, schema)
			p.TokenCounts = append(p.TokenCounts, t.TokenCount)
			p.Titles = append(p.Titles, t.Title)
			p.OutputSchemas = append(p.OutputSchemas, t.OutputSchema)
			p.Annotations = append(p.Annotations, t.Annotations)
		}
		if len(p.Names) == 0 {
			return nil
		}
		return translate(q.InsertDiscoveredTools(ctx, p), "insert discovered tools")
	case e.Dropped != nil:
		return translate(q.InsertDroppedEventReport(ctx, dbsqlc.InsertDroppedEventReportParams{
			ID: e.ID, SatelliteID: satelliteID, Count: e.Dropped.Count, Reason: e.Dropped.Reason, OccurredAt: e.OccurredAt,
		}), "insert dropped event report")
	}
	return fmt.Errorf("event %s has no payload", e.ID)
}
