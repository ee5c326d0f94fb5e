package accountapi

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/page"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// Joining a team takes the invitee's consent: a team admin invites an address, and whoever signs in with
// that address accepts or declines. Any signed-in user administers a personal team, so the team side must
// learn nothing about accounts: inviting answers the same for every address, and a refusal is not reported.

// InviteMember invites an email address to the request's team.
func (h *Handler) InviteMember(ctx context.Context, req *connect.Request[apiv1.InviteMemberRequest]) (*connect.Response[apiv1.InviteMemberResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	role := teamRoleFromProto(req.Msg.Role)
	inv, err := h.store.Invite(ctx, store.NewInvitation{
		TeamID: p.TeamID, Email: req.Msg.Email, Role: role, InvitedBy: p.User.ID,
		TTL: h.cfg.InvitationTTL, MaxPending: h.cfg.MaxPendingInvitations,
	})
	switch {
	case errors.Is(err, store.ErrAlreadyMember):
		return nil, connect.NewError(connect.CodeAlreadyExists, errors.New("email: already a member of this team"))
	case errors.Is(err, store.ErrLimit):
		return nil, connect.NewError(connect.CodeResourceExhausted,
			errors.New("the team has too many pending invitations; revoke some or wait for them to expire"))
	case err != nil:
		return nil, rpcerr.From(ctx, h.logger, "invite member", err)
	}
	h.audit(ctx, &p.User, &p.TeamID, "invitation.created", inv.ID.String(), map[string]string{"email": inv.Email, "role": role})
	return connect.NewResponse(&apiv1.InviteMemberResponse{Invitation: invitationToProto(inv)}), nil
}

// ListInvitations lists the request's team's pending invitations.
func (h *Handler) ListInvitations(ctx context.Context, req *connect.Request[apiv1.ListInvitationsRequest]) (*connect.Response[apiv1.ListInvitationsResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	invs, next, err := h.invitationPage(ctx, req.Msg.PageToken, req.Msg.PageSize,
		func(cursor *store.Cursor, size int) ([]store.Invitation, error) {
			return h.store.ListTeamInvitations(ctx, p.TeamID, cursor, size)
		})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.ListInvitationsResponse{Invitations: invs, NextPageToken: next}), nil
}

// invitationPage reads one page of invitations with list, for a request's page token and size.
func (h *Handler) invitationPage(ctx context.Context, pageToken string, pageSize int32,
	list func(cursor *store.Cursor, size int) ([]store.Invitation, error)) ([]*apiv1.Invitation, string, error) {
	cursor, err := page.DecodeToken(pageToken)
	if err != nil {
		return nil, "", err
	}
	size := page.Size(pageSize)
	invs, err := list(cursor, size)
	if err != nil {
		return nil, "", rpcerr.From(ctx, h.logger, "list invitations", err)
	}
	out := make([]*apiv1.Invitation, len(invs))
	for i, inv := range invs {
		out[i] = invitationToProto(inv)
	}
	return out, page.NextToken(invs, size, invitationKey), nil
}

// RevokeInvitation deletes one of the request's team's invitations.
func (h *Handler) RevokeInvitation(ctx context.Context, req *connect.Request[apiv1.RevokeInvitationRequest]) (*connect.Response[apiv1.RevokeInvitationResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	id := uuid.MustParse(req.Msg.InvitationId) // validated as a UUID
	if err := h.store.RevokeInvitation(ctx, p.TeamID, id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, errNoInvitation()
		}
		return nil, rpcerr.From(ctx, h.logger, "revoke invitation", err)
	}
	h.audit(ctx, &p.User, &p.TeamID, "invitation.revoked", id.String(), nil)
	return connect.NewResponse(&apiv1.RevokeInvitationResponse{}), nil
}

// ListMyInvitations lists the pending invitations addressed to the caller's email.
func (h *Handler) ListMyInvitations(ctx context.Context, req *connect.Request[apiv1.ListMyInvitationsRequest]) (*connect.Response[apiv1.ListMyInvitationsResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	invs, next, err := h.invitationPage(ctx, req.Msg.PageToken, req.Msg.PageSize,
		func(cursor *store.Cursor, size int) ([]store.Invitation, error) {
			return h.store.InvitationsFor(ctx, p.User.Email, cursor, size)
		})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.ListMyInvitationsResponse{Invitations: invs, NextPageToken: next}), nil
}

// AcceptInvitation makes the caller a member of the team that invited their email.
func (h *Handler) AcceptInvitation(ctx context.Context, req *connect.Request[apiv1.AcceptInvitationRequest]) (*connect.Response[apiv1.AcceptInvitationResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	id := uuid.MustParse(req.Msg.InvitationId) // validated as a UUID
	m, err := h.store.AcceptInvitation(ctx, p.User, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, errNoInvitation()
		}
		return nil, rpcerr.From(ctx, h.logger, "accept invitation", err)
	}
	h.audit(ctx, &p.User, &m.ID, "invitation.accepted", id.String(), map[string]string{"role": m.Role})
	return connect.NewResponse(&apiv1.AcceptInvitationResponse{Membership: &apiv1.Membership{
		TeamId: m.ID.String(), TeamSlug: m.Slug, TeamName: m.Name, Role: teamRoleToProto(m.Role), Personal: m.Personal,
	}}), nil
}

// DeclineInvitation turns down an invitation addressed to the caller's email.
func (h *Handler) DeclineInvitation(ctx context.Context, req *connect.Request[apiv1.DeclineInvitationRequest]) (*connect.Response[apiv1.DeclineInvitationResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	id := uuid.MustParse(req.Msg.InvitationId) // validated as a UUID
	teamID, err := h.store.DeclineInvitation(ctx, p.User, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, errNoInvitation()
		}
		return nil, rpcerr.From(ctx, h.logger, "decline invitation", err)
	}
	// Not in the team's audit log, whose readers are the team's admins: they would learn that the address
	// has an account. Global admins see it, with the team in the details.
	h.audit(ctx, &p.User, nil, "invitation.declined", id.String(), map[string]string{"team_id": teamID.String()})
	return connect.NewResponse(&apiv1.DeclineInvitationResponse{}), nil
}

// errNoInvitation answers for an invitation that does not exist, has expired, or is not the caller's (or
// their team's): one answer for all, so ids cannot be probed.
func errNoInvitation() error {
	return connect.NewError(connect.CodeNotFound, errors.New("invitation_id: no such pending invitation"))
}

func invitationKey(inv store.Invitation) (time.Time, uuid.UUID) { return inv.CreatedAt, inv.ID }

func invitationToProto(inv store.Invitation) *apiv1.Invitation {
	return &apiv1.Invitation{
		Id: inv.ID.String(), TeamId: inv.TeamID.String(), TeamSlug: inv.TeamSlug, TeamName: inv.TeamName,
		Email: inv.Email, Role: teamRoleToProto(inv.Role), InvitedBy: inv.InvitedBy,
		CreatedAt: timestamppb.New(inv.CreatedAt), ExpiresAt: timestamppb.New(inv.ExpiresAt),
	}
}
