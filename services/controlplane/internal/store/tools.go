package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// ToolSelection is a team's choice of an installation's tools: allow and deny lists of name patterns and
// descriptions that replace the server's, by tool name.
type ToolSelection struct {
	Allow        []string
	Deny         []string
	Descriptions map[string]string
}

// InstallationTools returns each tool an installation's instances last reported, once by name, as the
// latest report describes it. A viewer with a user sees only that user's instance's tools. An
// installation of another team has none.
func (s *Store) InstallationTools(ctx context.Context, v Viewer, installationID uuid.UUID) ([]Tool, error) {
	rows, err := s.q.ListInstallationTools(ctx, v.TeamID, installationID, v.UserID)
	if err != nil {
		return nil, translate(err, "list installation tools")
	}
	tools := make([]Tool, len(rows))
	for i, r := range rows {
		tools[i] = Tool{Name: r.Name, Title: r.Title, Description: r.Description, InputSchema: r.InputSchema,
			OutputSchema: r.OutputSchema, Annotations: r.Annotations, TokenCount: r.TokenCount, DiscoveredAt: r.DiscoveredAt}
	}
	return tools, nil
}

// ToolSelectionOf returns the selection of one of a team's installations; an installation nobody chose
// tools of has an empty one. Another team's installation is ErrNotFound.
func (s *Store) ToolSelectionOf(ctx context.Context, teamID, installationID uuid.UUID) (ToolSelection, error) {
	row, err := s.q.GetToolSelection(ctx, installationID, teamID)
	if errors.Is(err, pgx.ErrNoRows) {
		return ToolSelection{Descriptions: map[string]string{}}, s.CheckInstallation(ctx, teamID, installationID)
	}
	if err != nil {
		return ToolSelection{}, translate(err, "get tool selection")
	}
	sel := ToolSelection{Allow: row.Allow, Deny: row.Deny}
	if err := json.Unmarshal(row.Descriptions, &sel.Descriptions); err != nil {
		return ToolSelection{}, fmt.Errorf("decode tool descriptions: %w", err)
	}
	return sel, nil
}

// SetToolSelection replaces the selection of one of a team's installations and tells the team's
// satellites. Another team's installation is ErrNotFound.
func (s *Store) SetToolSelection(ctx context.Context, teamID, installationID uuid.UUID, sel ToolSelection) error {
	descriptions, err := json.Marshal(nonNilMap(sel.Descriptions))
	if err != nil {
		return fmt.Errorf("encode tool descriptions: %w", err)
	}
	return s.inTx(ctx, func(q *dbsqlc.Queries) error {
		if err := checkInstallation(ctx, q, teamID, installationID); err != nil {
			return err
		}
		err := q.UpsertToolSelection(ctx, dbsqlc.UpsertToolSelectionParams{InstallationID: installationID, TeamID: teamID,
			Allow: nonNil(sel.Allow), Deny: nonNil(sel.Deny), Descriptions: descriptions})
		if err != nil {
			return translate(err, "store tool selection")
		}
		return configure(ctx, q, teamID, EventInstallationUpdated, installationID)
	})
}

// HiddenTools returns the patterns of the tools of an installation a member hides.
func (s *Store) HiddenTools(ctx context.Context, teamID, installationID, userID uuid.UUID) ([]string, error) {
	patterns, err := s.q.GetHiddenTools(ctx, installationID, teamID, userID)
	if errors.Is(err, pgx.ErrNoRows) {
		return []string{}, s.CheckInstallation(ctx, teamID, installationID)
	}
	return patterns, translate(err, "get hidden tools")
}

// SetHiddenTools replaces the patterns of the tools of an installation a member hides and tells the
// team's satellites.
func (s *Store) SetHiddenTools(ctx context.Context, teamID, installationID, userID uuid.UUID, patterns []string) error {
	return s.inTx(ctx, func(q *dbsqlc.Queries) error {
		if err := checkInstallation(ctx, q, teamID, installationID); err != nil {
			return err
		}
		if err := q.UpsertHiddenTools(ctx, installationID, teamID, userID, nonNil(patterns)); err != nil {
			return translate(err, "store hidden tools")
		}
		return configure(ctx, q, teamID, EventInstallationUpdated, installationID)
	})
}

// checkInstallation is CheckInstallation inside a transaction.
func checkInstallation(ctx context.Context, q *dbsqlc.Queries, teamID, installationID uuid.UUID) error {
	ok, err := q.InstallationInTeam(ctx, installationID, teamID)
	if err == nil && !ok {
		err = pgx.ErrNoRows
	}
	return translate(err, "get installation")
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
