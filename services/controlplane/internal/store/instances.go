package store

import (
	"context"
	"time"

	"github.com/google/uuid"
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
}

// Instance returns one instance of a team.
func (s *Store) Instance(ctx context.Context, teamID uuid.UUID, id string) (Instance, error) {
	r, err := s.q.GetInstance(ctx, id, teamID)
	if err != nil {
		return Instance{}, translate(err, "get instance")
	}
	return Instance{
		ID: r.ID, InstallationID: r.InstallationID, TeamID: r.TeamID, UserID: r.UserID, Status: r.Status,
		StatusMessage: r.StatusMessage, StatusUpdatedAt: r.StatusUpdatedAt,
	}, nil
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

// LogLine is a stored server-log line.
type LogLine struct {
	ID         int64
	InstanceID string
	Level      string
	Message    string
	OccurredAt time.Time
}

// ServerLogs returns up to limit of an installation's newest server-log lines, newest first.
func (s *Store) ServerLogs(ctx context.Context, teamID, installationID uuid.UUID, limit int) ([]LogLine, error) {
	rows, err := s.q.ListServerLogs(ctx, installationID, teamID, int32(limit))
	if err != nil {
		return nil, translate(err, "list server logs")
	}
	lines := make([]LogLine, len(rows))
	for i, r := range rows {
		lines[i] = LogLine{ID: r.ID, InstanceID: r.InstanceID, Level: r.Level, Message: r.Message, OccurredAt: r.OccurredAt}
	}
	return lines, nil
}
