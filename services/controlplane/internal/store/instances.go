package store

import (
	"context"
	"math"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// Instance is one member's instance of an installation, with the status its satellite last reported.
type Instance struct {
	ID              string
	InstallationID  uuid.UUID
	TeamID          uuid.UUID
	UserID          uuid.UUID
	Status          string
	StatusMessage   string
	StatusUpdatedAt time.Time
	// LastHealthCheckAt is when the instance's credentials were last validated; nil if never.
	LastHealthCheckAt *time.Time
}

func instanceFromRow(r dbsqlc.Instance) Instance {
	return Instance{
		ID: r.ID, InstallationID: r.InstallationID, TeamID: r.TeamID, UserID: r.UserID, Status: r.Status,
		StatusMessage: r.StatusMessage, StatusUpdatedAt: r.StatusUpdatedAt, LastHealthCheckAt: r.LastHealthCheckAt,
	}
}

// Viewer is what a caller may see of one team: every instance, or, with UserID set, only that user's own
// instances and their logs.
type Viewer struct {
	TeamID uuid.UUID
	UserID *uuid.UUID
}

// Stream names a kind of entry that clients follow live.
type Stream string

// Streams of an installation.
const (
	StreamStatus      Stream = "status"
	StreamServerLogs  Stream = "logs"
	StreamRequestLogs Stream = "requests"
)

// StreamKey is the EventChannel payload that announces new entries of one installation's stream.
func StreamKey(installationID uuid.UUID, stream Stream) string {
	return installationID.String() + "/" + string(stream)
}

// Instance returns one instance of a team.
func (s *Store) Instance(ctx context.Context, teamID uuid.UUID, id string) (Instance, error) {
	r, err := s.q.GetInstance(ctx, id, teamID)
	if err != nil {
		return Instance{}, translate(err, "get instance")
	}
	return instanceFromRow(r), nil
}

// InstanceStatus is an instance with the number of tools it last reported.
type InstanceStatus struct {
	Instance
	ToolCount int
}

// VisibleInstance returns one instance the viewer may see; any other is ErrNotFound.
func (s *Store) VisibleInstance(ctx context.Context, v Viewer, id string) (InstanceStatus, error) {
	r, err := s.q.GetVisibleInstance(ctx, id, v.TeamID, v.UserID)
	if err != nil {
		return InstanceStatus{}, translate(err, "get instance")
	}
	return InstanceStatus{Instance: instanceFromRow(r.Instance), ToolCount: int(r.ToolCount)}, nil
}

// ListInstances returns up to limit instances the viewer may see, by id after afterID; installationID, when
// set, narrows them to one installation.
func (s *Store) ListInstances(ctx context.Context, v Viewer, installationID *uuid.UUID, afterID string, limit int) ([]Instance, error) {
	return listInstances(ctx, s.q, v, installationID, afterID, limit)
}

func listInstances(ctx context.Context, q *dbsqlc.Queries, v Viewer, installationID *uuid.UUID, afterID string, limit int) ([]Instance, error) {
	rows, err := q.ListVisibleInstances(ctx, dbsqlc.ListVisibleInstancesParams{
		TeamID: v.TeamID, InstallationID: installationID, UserID: v.UserID, AfterID: afterID, MaxRows: int32(limit),
	})
	if err != nil {
		return nil, translate(err, "list instances")
	}
	instances := make([]Instance, len(rows))
	for i, r := range rows {
		instances[i] = instanceFromRow(r)
	}
	return instances, nil
}

// CheckInstallation returns ErrNotFound unless the installation belongs to the team.
func (s *Store) CheckInstallation(ctx context.Context, teamID, installationID uuid.UUID) error {
	ok, err := s.q.InstallationInTeam(ctx, installationID, teamID)
	if err == nil && !ok {
		err = pgx.ErrNoRows
	}
	return translate(err, "get installation")
}

// DiscoveredTools returns the tools an instance last reported, by name.
func (s *Store) DiscoveredTools(ctx context.Context, teamID uuid.UUID, instanceID string) ([]Tool, error) {
	rows, err := s.q.ListDiscoveredTools(ctx, instanceID, teamID)
	if err != nil {
		return nil, translate(err, "list discovered tools")
	}
	tools := make([]Tool, len(rows))
	for i, r := range rows {
		tools[i] = Tool{Name: r.Name, Description: r.Description, InputSchema: r.InputSchema, TokenCount: r.TokenCount}
	}
	return tools, nil
}

// InstanceEvent is a stored status change (Kind "status_changed") or lifecycle event (started, crashed,
// restarted, permanently_failed). Seq orders the events of an installation.
type InstanceEvent struct {
	Seq        int64
	InstanceID string
	Kind       string
	Status     string
	Message    string
	ExitCode   *int32
	OccurredAt time.Time
}

func instanceEventsFromRows(rows []dbsqlc.InstanceEvent) []InstanceEvent {
	events := make([]InstanceEvent, len(rows))
	for i, r := range rows {
		events[i] = InstanceEvent{
			Seq: r.Seq, InstanceID: r.InstanceID, Kind: r.Kind, Status: r.Status, Message: r.Message,
			ExitCode: r.ExitCode, OccurredAt: r.OccurredAt,
		}
	}
	return events
}

// RecentInstanceEvents returns up to limit of an instance's newest events, newest first.
func (s *Store) RecentInstanceEvents(ctx context.Context, teamID uuid.UUID, instanceID string, limit int) ([]InstanceEvent, error) {
	rows, err := s.q.RecentInstanceEvents(ctx, instanceID, teamID, int32(limit))
	if err != nil {
		return nil, translate(err, "list instance events")
	}
	return instanceEventsFromRows(rows), nil
}

// InstanceEventsAfter returns up to limit events of an installation's instances that the viewer may see,
// with Seq after afterSeq, oldest first.
func (s *Store) InstanceEventsAfter(ctx context.Context, v Viewer, installationID uuid.UUID, afterSeq int64, limit int) ([]InstanceEvent, error) {
	rows, err := s.q.InstanceEventsAfter(ctx, dbsqlc.InstanceEventsAfterParams{
		TeamID: v.TeamID, InstallationID: installationID, AfterSeq: afterSeq, UserID: v.UserID, MaxRows: int32(limit),
	})
	if err != nil {
		return nil, translate(err, "list instance events")
	}
	return instanceEventsFromRows(rows), nil
}

// StatusSnapshot returns up to limit instances of an installation that the viewer may see, and the Seq of
// the installation's newest event, read together: the statuses reflect exactly the events up to that Seq.
func (s *Store) StatusSnapshot(ctx context.Context, v Viewer, installationID uuid.UUID, limit int) ([]Instance, int64, error) {
	var (
		instances []Instance
		seq       int64
	)
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(tx pgx.Tx) error {
			q := s.q.WithTx(tx)
			var err error
			if seq, err = q.LatestInstanceEventSeq(ctx, installationID, v.TeamID); err != nil {
				return translate(err, "latest instance event")
			}
			instances, err = listInstances(ctx, q, v, &installationID, "", limit)
			return err
		})
	return instances, seq, err
}

// LogWindow selects stored log entries by id.
type LogWindow struct {
	// AfterID and BeforeID bound the ids, exclusively; a zero BeforeID is no upper bound.
	AfterID, BeforeID int64
	// NewestFirst orders by descending id; otherwise ascending.
	NewestFirst bool
	// Limit caps the entries.
	Limit int
}

func (w LogWindow) beforeID() int64 {
	if w.BeforeID == 0 {
		return math.MaxInt64
	}
	return w.BeforeID
}

// LogLine is a stored server-log line.
type LogLine struct {
	ID         int64
	InstanceID string
	Level      string
	Message    string
	OccurredAt time.Time
}

// ServerLogs returns an installation's server-log lines in w that the viewer may see.
func (s *Store) ServerLogs(ctx context.Context, v Viewer, installationID uuid.UUID, w LogWindow) ([]LogLine, error) {
	rows, err := s.q.ListServerLogs(ctx, dbsqlc.ListServerLogsParams{
		TeamID: v.TeamID, InstallationID: installationID, AfterID: w.AfterID, BeforeID: w.beforeID(), UserID: v.UserID,
		NewestFirst: w.NewestFirst, MaxRows: int32(w.Limit),
	})
	if err != nil {
		return nil, translate(err, "list server logs")
	}
	lines := make([]LogLine, len(rows))
	for i, r := range rows {
		lines[i] = LogLine{ID: r.ID, InstanceID: r.InstanceID, Level: r.Level, Message: r.Message, OccurredAt: r.OccurredAt}
	}
	return lines, nil
}

// StoredRequestLog is a stored tool call.
type StoredRequestLog struct {
	ID         int64
	InstanceID string
	OccurredAt time.Time
	RequestLog
}

// RequestLogs returns an installation's request logs in w that the viewer may see, without their bodies.
func (s *Store) RequestLogs(ctx context.Context, v Viewer, installationID uuid.UUID, w LogWindow) ([]StoredRequestLog, error) {
	rows, err := s.q.ListRequestLogs(ctx, dbsqlc.ListRequestLogsParams{
		TeamID: v.TeamID, InstallationID: installationID, AfterID: w.AfterID, BeforeID: w.beforeID(), UserID: v.UserID,
		NewestFirst: w.NewestFirst, MaxRows: int32(w.Limit),
	})
	if err != nil {
		return nil, translate(err, "list request logs")
	}
	logs := make([]StoredRequestLog, len(rows))
	for i, r := range rows {
		logs[i] = StoredRequestLog{ID: r.ID, InstanceID: r.InstanceID, OccurredAt: r.OccurredAt, RequestLog: RequestLog{
			UserID: r.UserID, ToolName: r.ToolName, Duration: millis(r.DurationMs), Success: r.Success, Error: r.Error,
			TraceID: r.TraceID,
		}}
	}
	return logs, nil
}

// RequestLog returns one request log of an installation, with its bodies, if the viewer may see it.
func (s *Store) RequestLog(ctx context.Context, v Viewer, installationID uuid.UUID, id int64) (StoredRequestLog, error) {
	r, err := s.q.GetRequestLog(ctx, id, v.TeamID, installationID, v.UserID)
	if err != nil {
		return StoredRequestLog{}, translate(err, "get request log")
	}
	return StoredRequestLog{ID: r.ID, InstanceID: r.InstanceID, OccurredAt: r.OccurredAt, RequestLog: RequestLog{
		UserID: r.UserID, ToolName: r.ToolName, Duration: millis(r.DurationMs), Success: r.Success, Error: r.Error,
		Request: r.Request, Response: r.Response, TraceID: r.TraceID,
	}}, nil
}

func millis(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }
