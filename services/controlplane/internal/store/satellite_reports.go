package store

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// What satellites report about themselves, read back for administrators. Each read names the satellite
// and, for a team admin, the team: a satellite of another team is ErrNotFound, the same as one that does
// not exist.

// StoredHeartbeat is one heartbeat of a satellite's history.
type StoredHeartbeat struct {
	ID         int64
	ReceivedAt time.Time
	// SystemMetrics and ProcessCounts are as the heartbeat stored them (JSON).
	SystemMetrics, ProcessCounts []byte
}

// ReportedProcess is a process from a satellite's latest heartbeat.
type ReportedProcess struct {
	Process
	ReportedAt time.Time
}

// DroppedEventReport is a satellite's report of events it dropped.
type DroppedEventReport struct {
	ID         uuid.UUID
	Count      int64
	Reason     string
	OccurredAt time.Time
}

// satelliteInScope checks that the satellite exists and, when teamID is set, belongs to that team.
func (s *Store) satelliteInScope(ctx context.Context, satelliteID uuid.UUID, teamID *uuid.UUID) error {
	_, err := s.q.SatelliteInScope(ctx, satelliteID, teamID)
	return translate(err, "satellite")
}

// SatelliteHeartbeats lists up to limit of a satellite's stored heartbeats with ids below beforeID (all when
// nil), newest first.
func (s *Store) SatelliteHeartbeats(ctx context.Context, satelliteID uuid.UUID, teamID *uuid.UUID, beforeID *int64, limit int) ([]StoredHeartbeat, error) {
	if err := s.satelliteInScope(ctx, satelliteID, teamID); err != nil {
		return nil, err
	}
	rows, err := s.q.ListSatelliteHeartbeats(ctx, satelliteID, beforeID, int32(limit))
	if err != nil {
		return nil, translate(err, "list heartbeats")
	}
	out := make([]StoredHeartbeat, len(rows))
	for i, r := range rows {
		out[i] = StoredHeartbeat{ID: r.ID, ReceivedAt: r.ReceivedAt, SystemMetrics: r.SystemMetrics, ProcessCounts: r.ProcessCounts}
	}
	return out, nil
}

// SatelliteProcesses lists up to limit of the processes of a satellite's latest heartbeat whose instance ids
// sort after afterInstanceID, by instance id.
func (s *Store) SatelliteProcesses(ctx context.Context, satelliteID uuid.UUID, teamID *uuid.UUID, afterInstanceID string, limit int) ([]ReportedProcess, error) {
	if err := s.satelliteInScope(ctx, satelliteID, teamID); err != nil {
		return nil, err
	}
	rows, err := s.q.ListSatelliteProcesses(ctx, satelliteID, afterInstanceID, int32(limit))
	if err != nil {
		return nil, translate(err, "list processes")
	}
	out := make([]ReportedProcess, len(rows))
	for i, r := range rows {
		out[i] = ReportedProcess{ReportedAt: r.ReportedAt, Process: Process{
			InstanceID: r.InstanceID, TeamID: r.TeamID, InstallationID: r.InstallationID, Status: r.Status,
			Health: r.Health, PID: r.Pid, MemoryBytes: r.MemoryBytes, UptimeSeconds: r.UptimeSeconds,
			RequestCount: r.RequestCount,
		}}
	}
	return out, nil
}

// DroppedEventReports lists up to limit of a satellite's dropped-event reports before cursor (all when nil),
// newest first, and the number of events all its stored reports count.
func (s *Store) DroppedEventReports(ctx context.Context, satelliteID uuid.UUID, teamID *uuid.UUID, before *Cursor, limit int) ([]DroppedEventReport, int64, error) {
	if err := s.satelliteInScope(ctx, satelliteID, teamID); err != nil {
		return nil, 0, err
	}
	at, id := cursorArgs(before)
	rows, err := s.q.ListDroppedEventReports(ctx, satelliteID, at, id, int32(limit))
	if err != nil {
		return nil, 0, translate(err, "list dropped-event reports")
	}
	total, err := s.q.CountDroppedEvents(ctx, satelliteID)
	if err != nil {
		return nil, 0, translate(err, "count dropped events")
	}
	out := make([]DroppedEventReport, len(rows))
	for i, r := range rows {
		out[i] = DroppedEventReport{ID: r.ID, Count: r.Count, Reason: r.Reason, OccurredAt: r.OccurredAt}
	}
	return out, total, nil
}
