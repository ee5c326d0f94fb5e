package accountapi

import (
	"context"
	"errors"
	"strings"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// CreateTeam creates a team owned by the caller.
func (h *Handler) CreateTeam(ctx context.Context, req *connect.Request[apiv1.CreateTeamRequest]) (*connect.Response[apiv1.CreateTeamResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	team, err := h.store.CreateOwnedTeam(ctx, req.Msg.Slug, req.Msg.Name, p.User.ID)
	if errors.Is(err, store.ErrAlreadyExists) {
		return nil, connect.NewError(connect.CodeAlreadyExists, errors.New("slug: taken; choose another"))
	}
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "create team", err)
	}
	h.audit(ctx, &p.User, &team.ID, "team.created", team.ID.String(), map[string]string{"slug": team.Slug})
	return connect.NewResponse(&apiv1.CreateTeamResponse{Team: teamToProto(team)}), nil
}

// ListTeams lists the caller's teams, or every team for a global admin.
func (h *Handler) ListTeams(ctx context.Context, _ *connect.Request[apiv1.ListTeamsRequest]) (*connect.Response[apiv1.ListTeamsResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	var of *uuid.UUID
	if !p.IsGlobalAdmin() {
		of = &p.User.ID
	}
	teams, err := h.store.ListTeams(ctx, of)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "list teams", err)
	}
	resp := &apiv1.ListTeamsResponse{}
	for _, t := range teams {
		resp.Teams = append(resp.Teams, teamToProto(t))
	}
	return connect.NewResponse(resp), nil
}

// GetTeam describes the request's team.
func (h *Handler) GetTeam(ctx context.Context, _ *connect.Request[apiv1.GetTeamRequest]) (*connect.Response[apiv1.GetTeamResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	team, err := h.store.GetTeam(ctx, p.TeamID)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "get team", err)
	}
	// A global admin may read a team they are not a member of, and has no mode of their own in it.
	own, effective, err := h.store.MemberToolsMode(ctx, p.TeamID, p.User.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, rpcerr.From(ctx, h.logger, "get member tools mode", err)
	}
	return connect.NewResponse(&apiv1.GetTeamResponse{Team: teamToProto(team),
		MyToolsMode: toolsModeToProto(own), MyEffectiveToolsMode: toolsModeToProto(effective)}), nil
}

// GetTeamEndpoint locates the team's MCP endpoint.
func (h *Handler) GetTeamEndpoint(ctx context.Context, _ *connect.Request[apiv1.GetTeamEndpointRequest]) (*connect.Response[apiv1.GetTeamEndpointResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	team, err := h.store.GetTeam(ctx, p.TeamID)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "get team", err)
	}
	base, err := h.endpointBase(ctx, p.TeamID)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "get team endpoint", err)
	}
	resp := &apiv1.GetTeamEndpointResponse{}
	if base != "" {
		resp.Url = base + "/teams/" + team.Slug + "/mcp"
		resp.SseUrl = base + "/teams/" + team.Slug + "/sse"
	}
	return connect.NewResponse(resp), nil
}

// endpointBase is where the team's endpoint is: its own satellite, else the pool URL when global
// satellites serve it, else the first live one of them that publishes a URL.
func (h *Handler) endpointBase(ctx context.Context, teamID uuid.UUID) (string, error) {
	own, global, err := h.store.TeamEndpointBases(ctx, teamID)
	switch {
	case err != nil:
		return "", err
	case own != "":
		return own, nil
	case !global:
		return "", nil
	case h.cfg.PoolURL != "":
		return h.cfg.PoolURL, nil
	}
	placed, err := h.store.TeamPlacement(ctx, teamID, h.store.PlacementGrace())
	if err != nil {
		return "", err
	}
	// Live satellites first, and a draining one only when no other publishes a URL.
	for _, draining := range []bool{false, true} {
		for _, live := range []bool{true, false} {
			for _, s := range placed {
				if s.Draining == draining && s.Live == live && s.URL != "" {
					return strings.TrimRight(s.URL, "/"), nil
				}
			}
		}
	}
	return "", nil
}

// SetTeamGlobalFallback sets whether global satellites serve the team while none of its own is live.
func (h *Handler) SetTeamGlobalFallback(ctx context.Context, req *connect.Request[apiv1.SetTeamGlobalFallbackRequest]) (*connect.Response[apiv1.SetTeamGlobalFallbackResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	team, err := h.store.SetTeamGlobalFallback(ctx, p.TeamID, req.Msg.Enabled,
		store.AuditEvent{ActorID: &p.User.ID, Actor: p.User.Email})
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "set team global fallback", err)
	}
	if h.cfg.Placer != nil {
		if _, err := h.cfg.Placer.Recompute(ctx); err != nil {
			h.logger.ErrorContext(ctx, "recompute placement", "error", err)
		}
	}
	return connect.NewResponse(&apiv1.SetTeamGlobalFallbackResponse{Team: teamToProto(team)}), nil
}

// ListMembers lists the team's members.
func (h *Handler) ListMembers(ctx context.Context, _ *connect.Request[apiv1.ListMembersRequest]) (*connect.Response[apiv1.ListMembersResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	team, err := h.store.GetTeam(ctx, p.TeamID)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "get team", err)
	}
	members, err := h.store.ListMembers(ctx, p.TeamID)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "list members", err)
	}
	resp := &apiv1.ListMembersResponse{}
	for _, m := range members {
		resp.Members = append(resp.Members, memberToProto(m, team.OwnerID))
	}
	return connect.NewResponse(resp), nil
}

// RemoveMember removes a member and their instances.
func (h *Handler) RemoveMember(ctx context.Context, req *connect.Request[apiv1.RemoveMemberRequest]) (*connect.Response[apiv1.RemoveMemberResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	userID := uuid.MustParse(req.Msg.UserId) // validated as a UUID
	if err := h.store.RemoveMember(ctx, p.TeamID, userID); err != nil {
		return nil, h.memberError(ctx, "remove member", err)
	}
	h.audit(ctx, &p.User, &p.TeamID, "member.removed", userID.String(), nil)
	return connect.NewResponse(&apiv1.RemoveMemberResponse{}), nil
}

// SetTeamToolsMode sets how the team's endpoint offers tools to members without a mode of their own.
func (h *Handler) SetTeamToolsMode(ctx context.Context, req *connect.Request[apiv1.SetTeamToolsModeRequest]) (*connect.Response[apiv1.SetTeamToolsModeResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	mode := toolsModeFromProto(req.Msg.ToolsMode)
	team, err := h.store.SetTeamToolsMode(ctx, p.TeamID, mode)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "set team tools mode", err)
	}
	h.audit(ctx, &p.User, &p.TeamID, "team.tools_mode_changed", p.TeamID.String(), map[string]string{"tools_mode": mode})
	return connect.NewResponse(&apiv1.SetTeamToolsModeResponse{Team: teamToProto(team)}), nil
}

// SetMyToolsMode sets the caller's own tool mode in the team, or makes it follow the team's.
func (h *Handler) SetMyToolsMode(ctx context.Context, req *connect.Request[apiv1.SetMyToolsModeRequest]) (*connect.Response[apiv1.SetMyToolsModeResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	own, effective, err := h.store.SetMemberToolsMode(ctx, p.TeamID, p.User.ID, toolsModeFromProto(req.Msg.ToolsMode))
	if errors.Is(err, store.ErrNotFound) {
		// A global admin passes the policy for any team, but has no endpoint of their own in it.
		return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("team_id: you are not a member of this team"))
	}
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "set my tools mode", err)
	}
	return connect.NewResponse(&apiv1.SetMyToolsModeResponse{
		ToolsMode: toolsModeToProto(own), EffectiveToolsMode: toolsModeToProto(effective),
	}), nil
}

// toolsModeFromProto maps a tool mode to the store's; unspecified is "".
func toolsModeFromProto(m apiv1.ToolsMode) string {
	switch m {
	case apiv1.ToolsMode_TOOLS_MODE_ALL:
		return store.ToolsModeAll
	case apiv1.ToolsMode_TOOLS_MODE_SEARCH:
		return store.ToolsModeSearch
	}
	return ""
}

// toolsModeToProto maps a tool mode of the store's; "" is unspecified.
func toolsModeToProto(m string) apiv1.ToolsMode {
	switch m {
	case store.ToolsModeAll:
		return apiv1.ToolsMode_TOOLS_MODE_ALL
	case store.ToolsModeSearch:
		return apiv1.ToolsMode_TOOLS_MODE_SEARCH
	}
	return apiv1.ToolsMode_TOOLS_MODE_UNSPECIFIED
}

// SetMemberRole changes a member's role.
func (h *Handler) SetMemberRole(ctx context.Context, req *connect.Request[apiv1.SetMemberRoleRequest]) (*connect.Response[apiv1.SetMemberRoleResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	userID := uuid.MustParse(req.Msg.UserId) // validated as a UUID
	role := teamRoleFromProto(req.Msg.Role)
	if err := h.store.SetMemberRole(ctx, p.TeamID, userID, role); err != nil {
		return nil, h.memberError(ctx, "set member role", err)
	}
	h.audit(ctx, &p.User, &p.TeamID, "member.role_changed", userID.String(), map[string]string{"role": role})
	return connect.NewResponse(&apiv1.SetMemberRoleResponse{}), nil
}

// TransferOwnership makes another member the owner; only the owner or a global admin may.
func (h *Handler) TransferOwnership(ctx context.Context, req *connect.Request[apiv1.TransferOwnershipRequest]) (*connect.Response[apiv1.TransferOwnershipResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	team, err := h.store.GetTeam(ctx, p.TeamID)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "get team", err)
	}
	if !p.IsGlobalAdmin() && (team.OwnerID == nil || *team.OwnerID != p.User.ID) {
		return nil, connect.NewError(connect.CodePermissionDenied, errors.New("only the team's owner may transfer ownership"))
	}
	userID := uuid.MustParse(req.Msg.UserId) // validated as a UUID
	if err := h.store.TransferOwnership(ctx, p.TeamID, userID); err != nil {
		return nil, h.memberError(ctx, "transfer ownership", err)
	}
	h.audit(ctx, &p.User, &p.TeamID, "team.ownership_transferred", userID.String(), nil)
	return connect.NewResponse(&apiv1.TransferOwnershipResponse{}), nil
}

// memberError answers store errors about a member: an unknown member of this team is NotFound, and a change
// that would strip the owner is FailedPrecondition with the reason.
func (h *Handler) memberError(ctx context.Context, what string, err error) error {
	switch {
	case errors.Is(err, store.ErrOwner):
		return connect.NewError(connect.CodeFailedPrecondition, errors.New("user_id: the team's owner must stay an admin member; transfer ownership first"))
	case errors.Is(err, store.ErrNotFound):
		return connect.NewError(connect.CodeNotFound, errors.New("user_id: not a member of this team"))
	}
	return rpcerr.From(ctx, h.logger, what, err)
}

func teamRoleFromProto(r apiv1.TeamRole) string {
	if r == apiv1.TeamRole_TEAM_ROLE_ADMIN {
		return store.RoleTeamAdmin
	}
	return store.RoleTeamUser
}

func teamToProto(t store.Team) *apiv1.Team {
	out := &apiv1.Team{Id: t.ID.String(), Slug: t.Slug, Name: t.Name, Personal: t.Personal, CreatedAt: timestamppb.New(t.CreatedAt),
		ToolsMode: toolsModeToProto(t.ToolsMode), GlobalFallback: t.GlobalFallback}
	if t.OwnerID != nil {
		out.OwnerId = t.OwnerID.String()
	}
	return out
}

func memberToProto(m store.Member, ownerID *uuid.UUID) *apiv1.Member {
	return &apiv1.Member{
		User: userToProto(m.User), Role: teamRoleToProto(m.Role), JoinedAt: timestamppb.New(m.JoinedAt),
		Owner: ownerID != nil && *ownerID == m.User.ID,
	}
}
