package store

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// Member is a user in a team.
type Member struct {
	User
	Role     string
	JoinedAt time.Time
}

// ErrOwner reports a change that would leave a team without its owner as an admin.
var ErrOwner = fmt.Errorf("%w: the team's owner must stay an admin member; transfer ownership first", ErrConflict)

func teamFromRow(r dbsqlc.Team) Team {
	return Team{ID: r.ID, Slug: r.Slug, Name: r.Name, OwnerID: r.OwnerID, Personal: r.Personal, CreatedAt: r.CreatedAt,
		ToolsMode: r.ToolsMode, GlobalFallback: r.GlobalFallback}
}

// Tool modes of a team endpoint: every tool, or the meta-tools that search them and call one.
const (
	ToolsModeAll    = "all"
	ToolsModeSearch = "search"
)

// SetTeamToolsMode sets the tool mode of the team's endpoint for members without a mode of their own, and
// returns the team.
func (s *Store) SetTeamToolsMode(ctx context.Context, teamID uuid.UUID, mode string) (Team, error) {
	var team Team
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		n, err := q.SetTeamToolsMode(ctx, mode, teamID)
		if err := rowsAffected(n, err, "set team tools mode"); err != nil {
			return err
		}
		r, err := q.GetTeam(ctx, teamID)
		if err != nil {
			return translate(err, "get team")
		}
		team = teamFromRow(r)
		return nil
	})
	return team, err
}

// SetMemberToolsMode sets a member's own tool mode in a team, "" to follow the team's, and returns it
// with the mode in effect for the member. ErrNotFound means the user is not a member.
func (s *Store) SetMemberToolsMode(ctx context.Context, teamID, userID uuid.UUID, mode string) (own, effective string, err error) {
	var set *string
	if mode != "" {
		set = &mode
	}
	err = s.inTx(ctx, func(q *dbsqlc.Queries) error {
		n, err := q.SetMemberToolsMode(ctx, set, teamID, userID)
		if err := rowsAffected(n, err, "set member tools mode"); err != nil {
			return err
		}
		own, effective, err = memberToolsMode(ctx, q, teamID, userID)
		return err
	})
	return own, effective, err
}

// MemberToolsMode returns a member's own tool mode ("" when it follows the team's) and the mode in effect
// for them. It is ErrNotFound for a user who is not a member.
func (s *Store) MemberToolsMode(ctx context.Context, teamID, userID uuid.UUID) (own, effective string, err error) {
	return memberToolsMode(ctx, s.q, teamID, userID)
}

func memberToolsMode(ctx context.Context, q *dbsqlc.Queries, teamID, userID uuid.UUID) (own, effective string, err error) {
	r, err := q.GetMemberToolsMode(ctx, teamID, userID)
	if err != nil {
		return "", "", translate(err, "get member tools mode")
	}
	if r.MemberMode != nil {
		own = *r.MemberMode
	}
	return own, cmp.Or(own, r.TeamMode), nil
}

// CreateOwnedTeam creates a team with ownerID as its owner and admin.
func (s *Store) CreateOwnedTeam(ctx context.Context, slug, name string, ownerID uuid.UUID) (Team, error) {
	var team Team
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		r, err := q.CreateOwnedTeam(ctx, slug, name, &ownerID)
		if err != nil {
			return translate(err, "create team")
		}
		team = teamFromRow(r)
		if err := s.placeNewTeam(ctx, q, r.ID); err != nil {
			return err
		}
		return translate(q.AddMembership(ctx, r.ID, ownerID, RoleTeamAdmin), "add owner")
	})
	return team, err
}

// GetTeam returns a team.
func (s *Store) GetTeam(ctx context.Context, id uuid.UUID) (Team, error) {
	r, err := s.q.GetTeam(ctx, id)
	if err != nil {
		return Team{}, translate(err, "get team")
	}
	return teamFromRow(r), nil
}

// ListTeams lists a user's teams by slug, or every team when userID is nil.
func (s *Store) ListTeams(ctx context.Context, userID *uuid.UUID) ([]Team, error) {
	var rows []dbsqlc.Team
	var err error
	if userID == nil {
		rows, err = s.q.ListAllTeams(ctx)
	} else {
		rows, err = s.q.ListUserTeams(ctx, *userID)
	}
	if err != nil {
		return nil, translate(err, "list teams")
	}
	out := make([]Team, len(rows))
	for i, r := range rows {
		out[i] = teamFromRow(r)
	}
	return out, nil
}

// ListMembers lists a team's members by email.
func (s *Store) ListMembers(ctx context.Context, teamID uuid.UUID) ([]Member, error) {
	rows, err := s.q.ListMembers(ctx, teamID)
	if err != nil {
		return nil, translate(err, "list members")
	}
	out := make([]Member, len(rows))
	for i, r := range rows {
		out[i] = memberFromRow(dbsqlc.GetMemberRow(r))
	}
	return out, nil
}

// GetMember returns one member of a team, or ErrNotFound.
func (s *Store) GetMember(ctx context.Context, teamID, userID uuid.UUID) (Member, error) {
	r, err := s.q.GetMember(ctx, teamID, userID)
	if err != nil {
		return Member{}, translate(err, "get member")
	}
	return memberFromRow(r), nil
}

func memberFromRow(r dbsqlc.GetMemberRow) Member {
	return Member{
		User: User{ID: r.ID, Slug: r.Slug, Email: r.Email, Name: r.Name, GlobalRole: r.GlobalRole, CreatedAt: r.CreatedAt},
		Role: r.Role, JoinedAt: r.JoinedAt,
	}
}

// AddMember adds a user to a team, gives them an instance of each of the team's installations and tells the
// team's satellites.
func (s *Store) AddMember(ctx context.Context, teamID, userID uuid.UUID, role string) error {
	return s.inTx(ctx, func(q *dbsqlc.Queries) error {
		if err := q.AddMembership(ctx, teamID, userID, role); err != nil {
			return translate(err, "add membership")
		}
		return ensureInstances(ctx, q, teamID)
	})
}

// ensureInstances, inside the caller's transaction, gives every member of the team an instance of each of
// its installations and tells the team's satellites.
func ensureInstances(ctx context.Context, q *dbsqlc.Queries, teamID uuid.UUID) error {
	if err := q.EnsureTeamInstances(ctx, teamID); err != nil {
		return translate(err, "create instances")
	}
	return configure(ctx, q, teamID, EventInstallationUpdated, uuid.Nil)
}

// RemoveMember removes a member and their instances, and tells the team's satellites to stop them. The
// member's access tokens, OAuth grants and consents for the team end with the membership. The owner cannot
// be removed.
func (s *Store) RemoveMember(ctx context.Context, teamID, userID uuid.UUID) error {
	return s.inTx(ctx, func(q *dbsqlc.Queries) error {
		return removeMember(ctx, q, teamID, userID)
	})
}

// removeMember is RemoveMember inside the caller's transaction: every way a member leaves goes through it.
func removeMember(ctx context.Context, q *dbsqlc.Queries, teamID, userID uuid.UUID) error {
	team, err := q.GetTeam(ctx, teamID)
	if err != nil {
		return translate(err, "get team")
	}
	if team.OwnerID != nil && *team.OwnerID == userID {
		return ErrOwner
	}
	if err := q.DeleteMemberInstances(ctx, teamID, userID); err != nil {
		return translate(err, "delete instances")
	}
	n, err := q.RemoveMembership(ctx, teamID, userID)
	if err := rowsAffected(n, err, "remove membership"); err != nil {
		return err
	}
	if err := revokeMemberAccess(ctx, q, teamID, userID); err != nil {
		return err
	}
	return memberRemoved(ctx, q, teamID, userID)
}

// SetMemberRole changes a member's role; the owner stays an admin.
func (s *Store) SetMemberRole(ctx context.Context, teamID, userID uuid.UUID, role string) error {
	return s.inTx(ctx, func(q *dbsqlc.Queries) error {
		team, err := q.GetTeam(ctx, teamID)
		if err != nil {
			return translate(err, "get team")
		}
		if team.OwnerID != nil && *team.OwnerID == userID && role != RoleTeamAdmin {
			return ErrOwner
		}
		n, err := q.SetMemberRole(ctx, role, teamID, userID)
		return rowsAffected(n, err, "set member role")
	})
}

// TransferOwnership makes a member the owner and an admin.
func (s *Store) TransferOwnership(ctx context.Context, teamID, userID uuid.UUID) error {
	return s.inTx(ctx, func(q *dbsqlc.Queries) error {
		n, err := q.SetMemberRole(ctx, RoleTeamAdmin, teamID, userID)
		if err := rowsAffected(n, err, "make owner an admin"); err != nil {
			return err
		}
		n, err = q.SetTeamOwner(ctx, &userID, teamID)
		return rowsAffected(n, err, "set owner")
	})
}

// AuditEvent is one entry of the append-only audit log.
type AuditEvent struct {
	ID         int64
	OccurredAt time.Time
	ActorID    *uuid.UUID
	Actor      string // the actor's email, or "satellite:<id>", or "system"
	TeamID     *uuid.UUID
	Action     string
	Target     string
	Details    map[string]string
}

// Audit appends an event to the audit log.
func (s *Store) Audit(ctx context.Context, e AuditEvent) error {
	return audit(ctx, s.q, e)
}

// audit appends an event to the audit log, inside the caller's transaction when q is one's, so that an
// action and its record commit together.
func audit(ctx context.Context, q *dbsqlc.Queries, e AuditEvent) error {
	details, err := json.Marshal(e.Details)
	if err != nil {
		return fmt.Errorf("encode audit details: %w", err)
	}
	if e.Details == nil {
		details = []byte("{}")
	}
	return translate(q.InsertAuditEvent(ctx, dbsqlc.InsertAuditEventParams{
		ActorID: e.ActorID, Actor: e.Actor, TeamID: e.TeamID, Action: e.Action, Target: e.Target, Details: details,
	}), "append audit event")
}

// ListAuditEvents returns up to limit events before beforeID, newest first: one team's, or every team's when
// teamID is nil.
func (s *Store) ListAuditEvents(ctx context.Context, teamID *uuid.UUID, beforeID int64, limit int) ([]AuditEvent, error) {
	rows, err := s.q.ListAuditEvents(ctx, teamID, beforeID, int32(limit))
	if err != nil {
		return nil, translate(err, "list audit events")
	}
	out := make([]AuditEvent, len(rows))
	for i, r := range rows {
		out[i] = AuditEvent{ID: r.ID, OccurredAt: r.OccurredAt, ActorID: r.ActorID, Actor: r.Actor, TeamID: r.TeamID,
			Action: r.Action, Target: r.Target}
		if err := json.Unmarshal(r.Details, &out[i].Details); err != nil {
			return nil, fmt.Errorf("decode audit details: %w", err)
		}
	}
	return out, nil
}
