package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"

	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// EventEmergencyStop is the event of the configure command that carries an emergency stop (or its end) to
// satellites at once; the configuration they then fetch says which instances are stopped and why.
const EventEmergencyStop = satellitev1.ConfigureEvent_CONFIGURE_EVENT_EMERGENCY_STOP

// ErrStoppedByGlobalAdmin reports a team admin lifting an emergency stop that a global admin made.
var ErrStoppedByGlobalAdmin = errors.New("a global admin stopped this installation; only a global admin may restart it")

// Stop scopes: what an emergency stop was made on.
const (
	StopScopeTemplate     = "template"
	StopScopeInstallation = "installation"
)

// Stop is an emergency stop in force.
type Stop struct {
	// Scope is StopScopeTemplate when the template is stopped (every installation of it, every team), or
	// StopScopeInstallation.
	Scope  string
	Reason string
	At     time.Time
}

func stopOf(scope, reason string, at *time.Time) *Stop {
	if reason == "" {
		return nil
	}
	s := &Stop{Scope: scope, Reason: reason}
	if at != nil {
		s.At = *at
	}
	return s
}

// installationStop is the stop in force on an installation: its template's first, which is wider.
func installationStop(templateReason string, templateAt *time.Time, r dbsqlc.Installation) *Stop {
	if s := stopOf(StopScopeTemplate, templateReason, templateAt); s != nil {
		return s
	}
	return stopOf(StopScopeInstallation, r.StopReason, r.StoppedAt)
}

// stopMessage is what a satellite tells callers of a stopped instance's tools.
func stopMessage(serverSlug, templateReason, installationReason string) string {
	switch {
	case templateReason != "":
		return fmt.Sprintf("the MCP server %q is stopped everywhere by an emergency stop: %s", serverSlug, templateReason)
	case installationReason != "":
		return fmt.Sprintf("this installation of %q is stopped by an emergency stop: %s", serverSlug, installationReason)
	}
	return ""
}

// StopInstallation puts one of a team's installations out of service with reason: every satellite serving
// the team is told at once, and the configuration carries the stop for those that miss the command. A stop
// by a global admin can be lifted only by one. The audit log records it in the same transaction.
func (s *Store) StopInstallation(ctx context.Context, teamID, id uuid.UUID, reason string, byGlobalAdmin bool, by Author) (Installation, error) {
	return s.setInstallationStop(ctx, teamID, id, by, func(q *dbsqlc.Queries, prior dbsqlc.Installation) (dbsqlc.Installation, error) {
		if prior.StopByGlobalAdmin && !byGlobalAdmin {
			return dbsqlc.Installation{}, ErrStoppedByGlobalAdmin
		}
		row, err := q.StopInstallation(ctx, reason, byGlobalAdmin, id, teamID)
		return row, translate(err, "stop installation")
	}, "installation.stopped", EventEmergencyStop, map[string]string{"reason": reason})
}

// ResumeInstallation lifts an installation's emergency stop; its instances start again on every satellite
// serving the team, unless its template is stopped too.
func (s *Store) ResumeInstallation(ctx context.Context, teamID, id uuid.UUID, byGlobalAdmin bool, by Author) (Installation, error) {
	return s.setInstallationStop(ctx, teamID, id, by, func(q *dbsqlc.Queries, prior dbsqlc.Installation) (dbsqlc.Installation, error) {
		if prior.StopByGlobalAdmin && !byGlobalAdmin {
			return dbsqlc.Installation{}, ErrStoppedByGlobalAdmin
		}
		row, err := q.ResumeInstallation(ctx, id, teamID)
		return row, translate(err, "resume installation")
	}, "installation.resumed", EventInstallationUpdated, nil)
}

func (s *Store) setInstallationStop(ctx context.Context, teamID, id uuid.UUID, by Author,
	change func(*dbsqlc.Queries, dbsqlc.Installation) (dbsqlc.Installation, error),
	action string, event satellitev1.ConfigureEvent, details map[string]string) (Installation, error) {
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		prior, err := q.LockInstallation(ctx, id, teamID)
		if err != nil {
			return translate(err, "installation")
		}
		if _, err := change(q, prior); err != nil {
			return err
		}
		if err := configure(ctx, q, teamID, event, id); err != nil {
			return err
		}
		return audit(ctx, q, AuditEvent{ActorID: by.ID, Actor: by.Name, TeamID: &teamID, Action: action,
			Target: id.String(), Details: details})
	})
	if err != nil {
		return Installation{}, err
	}
	return s.GetInstallation(ctx, teamID, id)
}

// StopTemplate puts a template out of service in every team that installed it: each team's satellites are
// told at once, and the configuration carries the stop for those that miss the command.
func (s *Store) StopTemplate(ctx context.Context, id uuid.UUID, reason string, by Author) (CatalogEntry, error) {
	return s.setTemplateStop(ctx, id, by, "catalog.stopped", EventEmergencyStop, map[string]string{"reason": reason},
		func(q *dbsqlc.Queries) (dbsqlc.CatalogEntry, error) { return q.StopCatalogEntry(ctx, reason, id) })
}

// ResumeTemplate lifts a template's emergency stop; installations that are not stopped themselves start
// again.
func (s *Store) ResumeTemplate(ctx context.Context, id uuid.UUID, by Author) (CatalogEntry, error) {
	return s.setTemplateStop(ctx, id, by, "catalog.resumed", EventInstallationUpdated, nil,
		func(q *dbsqlc.Queries) (dbsqlc.CatalogEntry, error) { return q.ResumeCatalogEntry(ctx, id) })
}

func (s *Store) setTemplateStop(ctx context.Context, id uuid.UUID, by Author, action string, event satellitev1.ConfigureEvent,
	details map[string]string, change func(*dbsqlc.Queries) (dbsqlc.CatalogEntry, error)) (CatalogEntry, error) {
	var row dbsqlc.CatalogEntry
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		if _, err := q.LockCatalogEntry(ctx, id); err != nil {
			return translate(err, "catalog entry")
		}
		var err error
		if row, err = change(q); err != nil {
			return translate(err, "catalog entry")
		}
		teams, err := q.ListTeamsInstallingEntry(ctx, id)
		if err != nil {
			return translate(err, "list teams installing the template")
		}
		for _, teamID := range teams {
			if err := configure(ctx, q, teamID, event, uuid.Nil); err != nil {
				return err
			}
		}
		return audit(ctx, q, AuditEvent{ActorID: by.ID, Actor: by.Name, TeamID: row.TeamID, Action: action,
			Target: id.String(), Details: details})
	})
	if err != nil {
		return CatalogEntry{}, err
	}
	return s.catalogEntryFromRow(row)
}
