package sso

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// signIn finds the account of the person the provider vouched for, creating it on a first sign-in, records
// the identity with its refresh token and groups, and reconciles the memberships the provider's rules grant.
//
// The provider must vouch for the email (email_verified) and the email's domain must be one it may speak
// for: otherwise a provider that lets people type any address would hand over the account of whoever owns
// it here. That holds for a linked identity too, so an address the provider stops vouching for locks the
// person out rather than keeping them in.
func (s *Service) signIn(ctx context.Context, p store.SSOProvider, c claims, refreshToken string) (store.User, error) {
	if c.Subject == "" {
		return store.User{}, refused("The sign-in provider did not say who you are.")
	}
	if c.Email == "" || !c.EmailVerified {
		return store.User{}, refused("The sign-in provider did not confirm your email address, so it cannot sign you in here.")
	}
	if !domainAllowed(p, c.Email) {
		return store.User{}, refused("Your email address's domain may not sign in through this provider.")
	}
	user, err := s.account(ctx, p, c)
	if err != nil {
		return store.User{}, err
	}
	if err := s.store.SaveSSOIdentity(ctx, store.SSOIdentity{
		ProviderID: p.ID, Subject: c.Subject, UserID: user.ID, RefreshToken: refreshToken, Groups: c.Groups,
	}); err != nil {
		return store.User{}, fmt.Errorf("save identity: %w", err)
	}
	// A provider may leave the claim out for a person in no group at all: no claim is no groups.
	if err := s.reconcile(ctx, p, user.ID, c.Groups); err != nil {
		return store.User{}, err
	}
	s.audit(ctx, store.AuditEvent{ActorID: &user.ID, Actor: user.Email, Action: "login.succeeded", Target: user.ID.String(),
		Details: map[string]string{"provider": p.Slug}})
	return user, nil
}

// account is the account linked to the identity, else the account with the (verified) email, else a new one.
func (s *Service) account(ctx context.Context, p store.SSOProvider, c claims) (store.User, error) {
	id, err := s.store.SSOIdentity(ctx, p.ID, c.Subject)
	if err == nil {
		login, err := s.store.LoginByID(ctx, id.UserID)
		if err != nil {
			return store.User{}, fmt.Errorf("get linked account: %w", err)
		}
		return login.User, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return store.User{}, fmt.Errorf("get identity: %w", err)
	}
	login, err := s.store.LoginByEmail(ctx, c.Email)
	if err == nil {
		s.audit(ctx, store.AuditEvent{ActorID: &login.User.ID, Actor: login.User.Email, Action: "user.sso_linked",
			Target: login.User.ID.String(), Details: map[string]string{"provider": p.Slug}})
		return login.User, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return store.User{}, fmt.Errorf("get account by email: %w", err)
	}
	user, _, err := s.store.CreateAccount(ctx, store.NewAccount{Email: c.Email, Name: c.Name, GlobalRole: store.RoleGlobalUser})
	if errors.Is(err, store.ErrAlreadyExists) {
		// Another replica created it a moment ago, from the same person's second tab.
		login, err := s.store.LoginByEmail(ctx, c.Email)
		return login.User, err
	}
	if err != nil {
		return store.User{}, fmt.Errorf("create account: %w", err)
	}
	s.audit(ctx, store.AuditEvent{ActorID: &user.ID, Actor: user.Email, Action: "user.sso_created", Target: user.ID.String(),
		Details: map[string]string{"provider": p.Slug}})
	return user, nil
}

func domainAllowed(p store.SSOProvider, email string) bool {
	if len(p.AllowedDomains) == 0 {
		return true
	}
	_, domain, _ := strings.Cut(email, "@")
	for _, d := range p.AllowedDomains {
		if strings.EqualFold(d, domain) {
			return true
		}
	}
	return false
}

// reconcile gives the user exactly the memberships the provider's rules grant for groups.
func (s *Service) reconcile(ctx context.Context, p store.SSOProvider, userID uuid.UUID, groups []string) error {
	rules, err := s.store.ListSSOGroupRules(ctx, &p.ID)
	if err != nil {
		return fmt.Errorf("list group rules: %w", err)
	}
	desired := map[uuid.UUID]string{}
	for _, r := range rules {
		if !contains(groups, r.Group) {
			continue
		}
		if desired[r.TeamID] != store.RoleTeamAdmin {
			desired[r.TeamID] = r.Role
		}
	}
	changes, err := s.store.ReconcileSSOMemberships(ctx, p.ID, userID, desired, "sso:"+p.Slug)
	if err != nil {
		return fmt.Errorf("reconcile memberships: %w", err)
	}
	for _, c := range changes {
		s.logger.InfoContext(ctx, "membership reconciled from provider groups", "provider", p.Slug, "user_id", userID,
			"team_id", c.TeamID, "action", c.Action, "role", c.Role)
	}
	return nil
}
