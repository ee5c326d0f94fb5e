// Package oauthapi serves OAuthService: team admins' confidential clients and the clients and grants of
// their team, and every user's own consents and grants.
package oauthapi

import (
	"context"
	"log/slog"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/oauth"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// Handler serves OAuthService. The access policy has checked the caller's role in the request's team before
// a handler runs; every query is filtered by that team or by the caller.
type Handler struct {
	logger *slog.Logger
	store  *store.Store
	auth   *oauth.Server
}

// New returns a Handler.
func New(logger *slog.Logger, st *store.Store, auth *oauth.Server) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{logger: logger, store: st, auth: auth}
}

// CreateOAuthClient creates a team's confidential client.
func (h *Handler) CreateOAuthClient(ctx context.Context, req *connect.Request[apiv1.CreateOAuthClientRequest]) (*connect.Response[apiv1.CreateOAuthClientResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	c, secret, err := h.auth.CreateTeamClient(ctx, p.TeamID, p.User.ID, req.Msg.Name, req.Msg.Scopes)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "create OAuth client", err)
	}
	h.audit(ctx, p, &p.TeamID, "oauth_client.created", c.ID)
	return connect.NewResponse(&apiv1.CreateOAuthClientResponse{Client: clientToProto(c), ClientSecret: secret}), nil
}

// ListOAuthClients lists a team's clients.
func (h *Handler) ListOAuthClients(ctx context.Context, _ *connect.Request[apiv1.ListOAuthClientsRequest]) (*connect.Response[apiv1.ListOAuthClientsResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	clients, err := h.store.ListTeamOAuthClients(ctx, p.TeamID)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "list OAuth clients", err)
	}
	resp := &apiv1.ListOAuthClientsResponse{}
	for _, c := range clients {
		resp.Clients = append(resp.Clients, clientToProto(c))
	}
	return connect.NewResponse(resp), nil
}

// RevokeOAuthClient ends a client's grants in a team, deleting the team's own clients.
func (h *Handler) RevokeOAuthClient(ctx context.Context, req *connect.Request[apiv1.RevokeOAuthClientRequest]) (*connect.Response[apiv1.RevokeOAuthClientResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	if err := h.store.RevokeTeamOAuthClient(ctx, p.TeamID, req.Msg.ClientId); err != nil {
		return nil, rpcerr.From(ctx, h.logger, "revoke OAuth client", err)
	}
	h.audit(ctx, p, &p.TeamID, "oauth_client.revoked", req.Msg.ClientId)
	return connect.NewResponse(&apiv1.RevokeOAuthClientResponse{}), nil
}

// ListOAuthGrants lists a team's live grants.
func (h *Handler) ListOAuthGrants(ctx context.Context, _ *connect.Request[apiv1.ListOAuthGrantsRequest]) (*connect.Response[apiv1.ListOAuthGrantsResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	grants, err := h.store.ListOAuthGrants(ctx, &p.TeamID, nil)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "list OAuth grants", err)
	}
	return connect.NewResponse(&apiv1.ListOAuthGrantsResponse{Grants: grantsToProto(grants)}), nil
}

// RevokeOAuthGrant ends one of a team's grants.
func (h *Handler) RevokeOAuthGrant(ctx context.Context, req *connect.Request[apiv1.RevokeOAuthGrantRequest]) (*connect.Response[apiv1.RevokeOAuthGrantResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	if err := h.store.RevokeWholeOAuthGrant(ctx, req.Msg.GrantId, &p.TeamID, nil); err != nil {
		return nil, rpcerr.From(ctx, h.logger, "revoke OAuth grant", err)
	}
	h.audit(ctx, p, &p.TeamID, "oauth_grant.revoked", req.Msg.GrantId)
	return connect.NewResponse(&apiv1.RevokeOAuthGrantResponse{}), nil
}

// ListMyOAuthConsents lists the caller's consents and grants.
func (h *Handler) ListMyOAuthConsents(ctx context.Context, _ *connect.Request[apiv1.ListMyOAuthConsentsRequest]) (*connect.Response[apiv1.ListMyOAuthConsentsResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	consents, err := h.store.ListOAuthConsents(ctx, p.User.ID)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "list OAuth consents", err)
	}
	grants, err := h.store.ListOAuthGrants(ctx, nil, &p.User.ID)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "list OAuth grants", err)
	}
	resp := &apiv1.ListMyOAuthConsentsResponse{Grants: grantsToProto(grants)}
	for _, c := range consents {
		resp.Consents = append(resp.Consents, &apiv1.OAuthConsent{
			ClientId: c.ClientID, TeamId: c.TeamID.String(), TeamSlug: c.TeamSlug, Scopes: c.Scopes,
			UpdatedAt: timestamppb.New(c.UpdatedAt),
		})
	}
	return connect.NewResponse(resp), nil
}

// WithdrawOAuthConsent withdraws one of the caller's consents.
func (h *Handler) WithdrawOAuthConsent(ctx context.Context, req *connect.Request[apiv1.WithdrawOAuthConsentRequest]) (*connect.Response[apiv1.WithdrawOAuthConsentResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	teamID := uuid.MustParse(req.Msg.ConsentTeamId) // validated as a UUID
	if err := h.store.WithdrawOAuthConsent(ctx, p.User.ID, req.Msg.ClientId, teamID); err != nil {
		return nil, rpcerr.From(ctx, h.logger, "withdraw OAuth consent", err)
	}
	h.audit(ctx, p, &teamID, "oauth_consent.withdrawn", req.Msg.ClientId)
	return connect.NewResponse(&apiv1.WithdrawOAuthConsentResponse{}), nil
}

// RevokeMyOAuthGrant ends one of the caller's grants.
func (h *Handler) RevokeMyOAuthGrant(ctx context.Context, req *connect.Request[apiv1.RevokeMyOAuthGrantRequest]) (*connect.Response[apiv1.RevokeMyOAuthGrantResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	if err := h.store.RevokeWholeOAuthGrant(ctx, req.Msg.GrantId, nil, &p.User.ID); err != nil {
		return nil, rpcerr.From(ctx, h.logger, "revoke OAuth grant", err)
	}
	h.audit(ctx, p, nil, "oauth_grant.revoked", req.Msg.GrantId)
	return connect.NewResponse(&apiv1.RevokeMyOAuthGrantResponse{}), nil
}

// audit appends to the audit log; a failure is logged, since the action it records has already happened.
func (h *Handler) audit(ctx context.Context, p *access.Principal, teamID *uuid.UUID, action, target string) {
	if err := h.store.Audit(ctx, store.AuditEvent{
		ActorID: &p.User.ID, Actor: p.User.Email, TeamID: teamID, Action: action, Target: target,
	}); err != nil {
		h.logger.ErrorContext(ctx, "write audit log", "action", action, "error", err)
	}
}

func clientToProto(c store.OAuthClient) *apiv1.OAuthClient {
	out := &apiv1.OAuthClient{
		ClientId: c.ID, Name: c.Name, RedirectUris: c.RedirectURIs, GrantTypes: c.GrantTypes, Scopes: c.Scopes,
		TokenEndpointAuthMethod: c.TokenEndpointAuthMethod, CreatedAt: timestamppb.New(c.CreatedAt),
	}
	if c.TeamID != nil {
		out.TeamId = c.TeamID.String()
	}
	if c.ServiceUserID != nil {
		out.ServiceUserId = c.ServiceUserID.String()
	}
	return out
}

func grantsToProto(grants []store.OAuthGrant) []*apiv1.OAuthGrant {
	out := make([]*apiv1.OAuthGrant, 0, len(grants))
	for _, g := range grants {
		scopes, audience := oauth.GrantDetails(g.Request)
		out = append(out, &apiv1.OAuthGrant{
			GrantId: g.RequestID, ClientId: g.ClientID, TeamId: g.TeamID.String(), TeamSlug: g.TeamSlug,
			UserId: g.UserID.String(), Scopes: scopes, Audience: audience,
			CreatedAt: timestamppb.New(g.CreatedAt), ExpiresAt: timestamppb.New(g.ExpiresAt),
		})
	}
	return out
}
