package sso

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// The bounds the store's lists are read with.
const (
	maxProviders        = 100
	maxRulesPerProvider = 1000
)

// CreateIdentityProvider adds a provider once its discovery document has been read.
func (s *Service) CreateIdentityProvider(ctx context.Context, req *connect.Request[adminv1.CreateIdentityProviderRequest]) (*connect.Response[adminv1.CreateIdentityProviderResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	m := req.Msg
	issuer := strings.TrimRight(m.Issuer, "/")
	if u, err := url.Parse(issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("issuer: must be an http or https URL without query or fragment"))
	}
	if n, err := s.store.CountSSOProviders(ctx); err != nil {
		return nil, rpcerr.From(ctx, s.logger, "create identity provider", err)
	} else if n >= maxProviders {
		return nil, connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("at most %d identity providers", maxProviders))
	}
	if _, err := s.discover(s.httpContext(ctx), issuer); err != nil {
		// The admin named this URL; telling them why it failed is what they need to fix it.
		return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("issuer: its discovery document could not be read: "+truncate(err.Error(), 300)))
	}
	groupsClaim := m.GroupsClaim
	if groupsClaim == "" {
		groupsClaim = "groups"
	}
	domains := make([]string, len(m.AllowedDomains))
	for i, d := range m.AllowedDomains {
		domains[i] = strings.ToLower(d)
	}
	created, err := s.store.CreateSSOProvider(ctx, store.SSOProvider{
		Slug: m.Slug, DisplayName: m.DisplayName, Issuer: issuer, ClientID: m.ClientId, ClientSecret: m.ClientSecret,
		Scopes: m.Scopes, GroupsClaim: groupsClaim, AllowedDomains: domains,
	})
	if err != nil {
		return nil, rpcerr.From(ctx, s.logger, "create identity provider", err)
	}
	s.audit(ctx, store.AuditEvent{ActorID: &p.User.ID, Actor: p.User.Email, Action: "sso.provider_created", Target: created.Slug,
		Details: map[string]string{"issuer": issuer}})
	return connect.NewResponse(&adminv1.CreateIdentityProviderResponse{Provider: s.providerToProto(created)}), nil
}

// ListIdentityProviders lists the providers without their secrets.
func (s *Service) ListIdentityProviders(ctx context.Context, _ *connect.Request[adminv1.ListIdentityProvidersRequest]) (*connect.Response[adminv1.ListIdentityProvidersResponse], error) {
	providers, err := s.store.ListSSOProviders(ctx)
	if err != nil {
		return nil, rpcerr.From(ctx, s.logger, "list identity providers", err)
	}
	resp := &adminv1.ListIdentityProvidersResponse{}
	for _, p := range providers {
		resp.Providers = append(resp.Providers, s.providerToProto(p))
	}
	return connect.NewResponse(resp), nil
}

// DeleteIdentityProvider removes a provider.
func (s *Service) DeleteIdentityProvider(ctx context.Context, req *connect.Request[adminv1.DeleteIdentityProviderRequest]) (*connect.Response[adminv1.DeleteIdentityProviderResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	id := uuid.MustParse(req.Msg.Id) // validated as a UUID
	if err := s.store.DeleteSSOProvider(ctx, id); err != nil {
		return nil, rpcerr.From(ctx, s.logger, "delete identity provider", err)
	}
	s.audit(ctx, store.AuditEvent{ActorID: &p.User.ID, Actor: p.User.Email, Action: "sso.provider_deleted", Target: id.String()})
	return connect.NewResponse(&adminv1.DeleteIdentityProviderResponse{}), nil
}

// CreateGroupRule adds a rule.
func (s *Service) CreateGroupRule(ctx context.Context, req *connect.Request[adminv1.CreateGroupRuleRequest]) (*connect.Response[adminv1.CreateGroupRuleResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	providerID, teamID := uuid.MustParse(req.Msg.ProviderId), uuid.MustParse(req.Msg.TeamId) // validated as UUIDs
	if _, err := s.store.SSOProvider(ctx, providerID); errors.Is(err, store.ErrNotFound) {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("provider_id: no such identity provider"))
	} else if err != nil {
		return nil, rpcerr.From(ctx, s.logger, "create group rule", err)
	}
	if _, err := s.store.GetTeam(ctx, teamID); errors.Is(err, store.ErrNotFound) {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("team_id: no such team"))
	} else if err != nil {
		return nil, rpcerr.From(ctx, s.logger, "create group rule", err)
	}
	if n, err := s.store.CountSSOGroupRules(ctx, providerID); err != nil {
		return nil, rpcerr.From(ctx, s.logger, "create group rule", err)
	} else if n >= maxRulesPerProvider {
		return nil, connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("at most %d group rules per provider", maxRulesPerProvider))
	}
	role := store.RoleTeamUser
	if req.Msg.Role == adminv1.SSOTeamRole_SSO_TEAM_ROLE_ADMIN {
		role = store.RoleTeamAdmin
	}
	rule, err := s.store.CreateSSOGroupRule(ctx, store.SSOGroupRule{ProviderID: providerID, Group: req.Msg.Group, TeamID: teamID, Role: role})
	if err != nil {
		return nil, rpcerr.From(ctx, s.logger, "create group rule", err)
	}
	s.audit(ctx, store.AuditEvent{ActorID: &p.User.ID, Actor: p.User.Email, TeamID: &teamID, Action: "sso.rule_created",
		Target: rule.ID.String(), Details: map[string]string{"group": rule.Group, "role": role}})
	return connect.NewResponse(&adminv1.CreateGroupRuleResponse{Rule: ruleToProto(rule)}), nil
}

// ListGroupRules lists rules.
func (s *Service) ListGroupRules(ctx context.Context, req *connect.Request[adminv1.ListGroupRulesRequest]) (*connect.Response[adminv1.ListGroupRulesResponse], error) {
	var providerID *uuid.UUID
	if req.Msg.ProviderId != "" {
		id := uuid.MustParse(req.Msg.ProviderId) // validated as a UUID
		providerID = &id
	}
	rules, err := s.store.ListSSOGroupRules(ctx, providerID)
	if err != nil {
		return nil, rpcerr.From(ctx, s.logger, "list group rules", err)
	}
	resp := &adminv1.ListGroupRulesResponse{}
	for _, r := range rules {
		resp.Rules = append(resp.Rules, ruleToProto(r))
	}
	return connect.NewResponse(resp), nil
}

// DeleteGroupRule removes a rule.
func (s *Service) DeleteGroupRule(ctx context.Context, req *connect.Request[adminv1.DeleteGroupRuleRequest]) (*connect.Response[adminv1.DeleteGroupRuleResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	id := uuid.MustParse(req.Msg.Id) // validated as a UUID
	if err := s.store.DeleteSSOGroupRule(ctx, id); err != nil {
		return nil, rpcerr.From(ctx, s.logger, "delete group rule", err)
	}
	s.audit(ctx, store.AuditEvent{ActorID: &p.User.ID, Actor: p.User.Email, Action: "sso.rule_deleted", Target: id.String()})
	return connect.NewResponse(&adminv1.DeleteGroupRuleResponse{}), nil
}

// SetPasswordSignIn turns password sign-in on or off for a domain.
func (s *Service) SetPasswordSignIn(ctx context.Context, req *connect.Request[adminv1.SetPasswordSignInRequest]) (*connect.Response[adminv1.SetPasswordSignInResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	domain := strings.ToLower(req.Msg.Domain)
	if err := s.store.SetPasswordSignIn(ctx, domain, req.Msg.Enabled); err != nil {
		return nil, rpcerr.From(ctx, s.logger, "set password sign-in", err)
	}
	action := "sso.password_sign_in_disabled"
	if req.Msg.Enabled {
		action = "sso.password_sign_in_enabled"
	}
	s.audit(ctx, store.AuditEvent{ActorID: &p.User.ID, Actor: p.User.Email, Action: action, Target: domain})
	return connect.NewResponse(&adminv1.SetPasswordSignInResponse{}), nil
}

// ListPasswordSignInDisabledDomains lists the domains whose password sign-in is off.
func (s *Service) ListPasswordSignInDisabledDomains(ctx context.Context, _ *connect.Request[adminv1.ListPasswordSignInDisabledDomainsRequest]) (*connect.Response[adminv1.ListPasswordSignInDisabledDomainsResponse], error) {
	domains, err := s.store.ListPasswordSignInDisabledDomains(ctx)
	if err != nil {
		return nil, rpcerr.From(ctx, s.logger, "list domains", err)
	}
	return connect.NewResponse(&adminv1.ListPasswordSignInDisabledDomainsResponse{Domains: domains}), nil
}

// ListSignInOptions lists the sign-in page's providers.
func (s *Service) ListSignInOptions(ctx context.Context, _ *connect.Request[adminv1.ListSignInOptionsRequest]) (*connect.Response[adminv1.ListSignInOptionsResponse], error) {
	providers, err := s.store.ListSSOProviders(ctx)
	if err != nil {
		return nil, rpcerr.From(ctx, s.logger, "list sign-in options", err)
	}
	resp := &adminv1.ListSignInOptionsResponse{}
	for _, p := range providers {
		resp.Options = append(resp.Options, &adminv1.SignInOption{DisplayName: p.DisplayName, StartPath: StartPath(p.Slug, "")})
	}
	return connect.NewResponse(resp), nil
}

func (s *Service) providerToProto(p store.SSOProvider) *adminv1.IdentityProvider {
	return &adminv1.IdentityProvider{Id: p.ID.String(), Slug: p.Slug, DisplayName: p.DisplayName, Issuer: p.Issuer,
		ClientId: p.ClientID, HasClientSecret: p.HasClientSecret, Scopes: p.Scopes, GroupsClaim: p.GroupsClaim,
		AllowedDomains: p.AllowedDomains, RedirectUri: s.RedirectURI(), CreatedAt: timestamppb.New(p.CreatedAt)}
}

func ruleToProto(r store.SSOGroupRule) *adminv1.GroupRule {
	role := adminv1.SSOTeamRole_SSO_TEAM_ROLE_USER
	if r.Role == store.RoleTeamAdmin {
		role = adminv1.SSOTeamRole_SSO_TEAM_ROLE_ADMIN
	}
	return &adminv1.GroupRule{Id: r.ID.String(), ProviderId: r.ProviderID.String(), Group: r.Group, TeamId: r.TeamID.String(),
		Role: role, CreatedAt: timestamppb.New(r.CreatedAt)}
}
