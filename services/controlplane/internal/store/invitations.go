package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// ErrLimit reports that a bounded collection is full, such as a team's pending invitations.
var ErrLimit = errors.New("limit reached")

// ErrAlreadyMember reports an invitation to an address that already belongs to a member of the team.
var ErrAlreadyMember = fmt.Errorf("%w: already a member of this team", ErrAlreadyExists)

// Invitation is an offer to join a team, addressed to an email rather than to an account.
type Invitation struct {
	ID       uuid.UUID
	TeamID   uuid.UUID
	TeamSlug string
	TeamName string
	// Email is the address as the inviting admin wrote it.
	Email string
	Role  string
	// InvitedBy is the inviting admin's email; empty once that account is gone.
	InvitedBy string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// NewInvitation describes an invitation to make.
type NewInvitation struct {
	TeamID    uuid.UUID
	Email     string
	Role      string
	InvitedBy uuid.UUID
	// TTL is how long the invitation may be accepted.
	TTL time.Duration
	// MaxPending is how many pending invitations the team may have, this one included.
	MaxPending int
}

func invitationFromRow(r dbsqlc.GetTeamInvitationRow) Invitation {
	return Invitation{
		ID: r.ID, TeamID: r.TeamID, TeamSlug: r.TeamSlug, TeamName: r.TeamName, Email: r.Email, Role: r.Role,
		InvitedBy: r.InvitedByEmail, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt,
	}
}

// Invite invites an email address to a team, or renews the address's pending invitation with the new
// role and expiry. It never looks at accounts beyond the team's own members, so what it does and how long
// it takes are the same whether or not the address has an account. An address of a current member is
// ErrAlreadyMember; a team with MaxPending other pending invitations is ErrLimit.
func (s *Store) Invite(ctx context.Context, n NewInvitation) (Invitation, error) {
	var inv Invitation
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		if err := q.LockTeam(ctx, n.TeamID); err != nil {
			return translate(err, "lock team")
		}
		member, err := q.IsMemberEmail(ctx, n.TeamID, n.Email)
		if err != nil {
			return translate(err, "check membership")
		}
		if member {
			return fmt.Errorf("invite: %w", ErrAlreadyMember)
		}
		pending, err := q.CountOtherPendingInvitations(ctx, n.TeamID, n.Email)
		if err != nil {
			return translate(err, "count invitations")
		}
		if pending >= int64(n.MaxPending) {
			return fmt.Errorf("invite: %w: the team has %d pending invitations", ErrLimit, pending)
		}
		id, err := q.UpsertInvitation(ctx, dbsqlc.UpsertInvitationParams{
			TeamID: n.TeamID, Email: n.Email, Role: n.Role, InvitedBy: &n.InvitedBy, TtlSeconds: n.TTL.Seconds(),
		})
		if err != nil {
			return translate(err, "invite")
		}
		r, err := q.GetTeamInvitation(ctx, n.TeamID, id)
		if err != nil {
			return translate(err, "read invitation")
		}
		inv = invitationFromRow(r)
		return nil
	})
	return inv, err
}

// ListTeamInvitations returns up to limit of a team's pending invitations before cursor, newest first.
// Declined invitations are among them until they expire: the team is not told of a refusal.
func (s *Store) ListTeamInvitations(ctx context.Context, teamID uuid.UUID, before *Cursor, limit int) ([]Invitation, error) {
	at, id := cursorArgs(before)
	rows, err := s.q.ListTeamInvitations(ctx, teamID, at, id, int32(limit))
	if err != nil {
		return nil, translate(err, "list invitations")
	}
	out := make([]Invitation, len(rows))
	for i, r := range rows {
		out[i] = invitationFromRow(dbsqlc.GetTeamInvitationRow(r))
	}
	return out, nil
}

// RevokeInvitation deletes one of a team's invitations; another team's is ErrNotFound.
func (s *Store) RevokeInvitation(ctx context.Context, teamID, id uuid.UUID) error {
	_, err := s.q.DeleteTeamInvitation(ctx, teamID, id)
	return translate(err, "revoke invitation")
}

// InvitationsFor returns up to limit pending invitations addressed to email before cursor, newest first,
// leaving out those the addressee declined.
func (s *Store) InvitationsFor(ctx context.Context, email string, before *Cursor, limit int) ([]Invitation, error) {
	at, id := cursorArgs(before)
	rows, err := s.q.ListInvitationsFor(ctx, email, at, id, int32(limit))
	if err != nil {
		return nil, translate(err, "list invitations")
	}
	out := make([]Invitation, len(rows))
	for i, r := range rows {
		out[i] = invitationFromRow(dbsqlc.GetTeamInvitationRow(r))
	}
	return out, nil
}

// AcceptInvitation makes user a member of the inviting team with the invited role, provided the invitation
// is pending and addressed to the user's email; any other is ErrNotFound. Like AddMember it gives the new
// member an instance of each of the team's installations and tells the team's satellites. A user who is
// already a member keeps their role. It returns the user's membership.
func (s *Store) AcceptInvitation(ctx context.Context, user User, id uuid.UUID) (Membership, error) {
	var m Membership
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		inv, err := q.TakeInvitationFor(ctx, id, user.Email)
		if err != nil {
			return translate(err, "take invitation")
		}
		if err := q.AddMembershipIfAbsent(ctx, inv.TeamID, user.ID, inv.Role); err != nil {
			return translate(err, "add membership")
		}
		if err := ensureInstances(ctx, q, inv.TeamID); err != nil {
			return err
		}
		team, err := q.GetTeam(ctx, inv.TeamID)
		if err != nil {
			return translate(err, "get team")
		}
		role, err := q.GetTeamRole(ctx, inv.TeamID, user.ID)
		if err != nil {
			return translate(err, "get team role")
		}
		m = Membership{Team: teamFromRow(team), Role: role}
		return nil
	})
	return m, err
}

// DeclineInvitation hides a pending invitation addressed to user's email from them; any other is
// ErrNotFound. It returns the invitation's team.
func (s *Store) DeclineInvitation(ctx context.Context, user User, id uuid.UUID) (uuid.UUID, error) {
	inv, err := s.q.DeclineInvitationFor(ctx, id, user.Email)
	if err != nil {
		return uuid.Nil, translate(err, "decline invitation")
	}
	return inv.TeamID, nil
}
