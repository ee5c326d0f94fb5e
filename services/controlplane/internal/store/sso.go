package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// SSOProvider is an OpenID Connect provider people sign in through.
type SSOProvider struct {
	ID          uuid.UUID
	Slug        string
	DisplayName string
	Issuer      string
	ClientID    string
	// ClientSecret is the opened secret; empty for a public client, and in lists, which never open it.
	ClientSecret    string
	HasClientSecret bool
	Scopes          []string
	GroupsClaim     string
	AllowedDomains  []string
	CreatedAt       time.Time
}

// SSOGroupRule makes the members of a provider's group members of a team with a role.
type SSOGroupRule struct {
	ID         uuid.UUID
	ProviderID uuid.UUID
	Group      string
	TeamID     uuid.UUID
	Role       string
	CreatedAt  time.Time
}

// SSOLoginState is a sign-in under way at a provider.
type SSOLoginState struct {
	StateHash    []byte
	ProviderID   uuid.UUID
	Nonce        string
	CodeVerifier string
	ReturnTo     string
	ExpiresAt    time.Time
}

// SSOIdentity links a person at a provider to an account.
type SSOIdentity struct {
	ProviderID uuid.UUID
	Subject    string
	UserID     uuid.UUID
	// RefreshToken is the opened refresh token; empty when the provider gave none.
	RefreshToken string
	Groups       []string
	SyncedAt     time.Time
}

// MembershipChange is what reconciling a person's memberships did in one team.
type MembershipChange struct {
	TeamID uuid.UUID
	// Action is "added", "role_changed" or "removed".
	Action string
	Role   string
}

func (s *Store) ssoProviderFromRow(r dbsqlc.SsoProvider, open bool) (SSOProvider, error) {
	p := SSOProvider{ID: r.ID, Slug: r.Slug, DisplayName: r.DisplayName, Issuer: r.Issuer, ClientID: r.ClientID,
		HasClientSecret: r.ClientSecretSealed != "", Scopes: r.Scopes, GroupsClaim: r.GroupsClaim,
		AllowedDomains: r.AllowedDomains, CreatedAt: r.CreatedAt}
	if open && r.ClientSecretSealed != "" {
		secret, err := s.keyring.Open(r.ClientSecretSealed)
		if err != nil {
			return SSOProvider{}, fmt.Errorf("open client secret of provider %s: %w", r.Slug, err)
		}
		p.ClientSecret = secret
	}
	return p, nil
}

// sealSecret seals a secret with the keyring; the empty string stays empty.
func (s *Store) sealSecret(secret string) (string, error) {
	if secret == "" {
		return "", nil
	}
	return s.keyring.Seal(secret)
}

func (s *Store) openSecret(sealed string) (string, error) {
	if sealed == "" {
		return "", nil
	}
	return s.keyring.Open(sealed)
}

// CreateSSOProvider adds a provider, sealing its client secret. A taken slug is ErrAlreadyExists.
func (s *Store) CreateSSOProvider(ctx context.Context, p SSOProvider) (SSOProvider, error) {
	sealed, err := s.sealSecret(p.ClientSecret)
	if err != nil {
		return SSOProvider{}, fmt.Errorf("seal client secret: %w", err)
	}
	r, err := s.q.CreateSSOProvider(ctx, dbsqlc.CreateSSOProviderParams{
		Slug: p.Slug, DisplayName: p.DisplayName, Issuer: p.Issuer, ClientID: p.ClientID, ClientSecretSealed: sealed,
		Scopes: nonNil(p.Scopes), GroupsClaim: p.GroupsClaim, AllowedDomains: nonNil(p.AllowedDomains),
	})
	if err != nil {
		return SSOProvider{}, translate(err, "create provider")
	}
	return s.ssoProviderFromRow(r, false)
}

// SSOProvider returns a provider with its client secret opened.
func (s *Store) SSOProvider(ctx context.Context, id uuid.UUID) (SSOProvider, error) {
	r, err := s.q.GetSSOProvider(ctx, id)
	if err != nil {
		return SSOProvider{}, translate(err, "get provider")
	}
	return s.ssoProviderFromRow(r, true)
}

// SSOProviderBySlug returns a provider with its client secret opened.
func (s *Store) SSOProviderBySlug(ctx context.Context, slug string) (SSOProvider, error) {
	r, err := s.q.GetSSOProviderBySlug(ctx, slug)
	if err != nil {
		return SSOProvider{}, translate(err, "get provider")
	}
	return s.ssoProviderFromRow(r, true)
}

// ListSSOProviders lists the providers by slug, without opening their secrets.
func (s *Store) ListSSOProviders(ctx context.Context) ([]SSOProvider, error) {
	rows, err := s.q.ListSSOProviders(ctx)
	if err != nil {
		return nil, translate(err, "list providers")
	}
	out := make([]SSOProvider, 0, len(rows))
	for _, r := range rows {
		p, err := s.ssoProviderFromRow(r, false)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// CountSSOProviders counts the providers.
func (s *Store) CountSSOProviders(ctx context.Context) (int64, error) {
	n, err := s.q.CountSSOProviders(ctx)
	return n, translate(err, "count providers")
}

// CountSSOGroupRules counts a provider's rules.
func (s *Store) CountSSOGroupRules(ctx context.Context, providerID uuid.UUID) (int64, error) {
	n, err := s.q.CountSSOGroupRules(ctx, providerID)
	return n, translate(err, "count group rules")
}

// DeleteSSOProvider removes a provider with its rules, identities and the marks on the memberships it granted;
// the memberships themselves stay.
func (s *Store) DeleteSSOProvider(ctx context.Context, id uuid.UUID) error {
	n, err := s.q.DeleteSSOProvider(ctx, id)
	return rowsAffected(n, err, "delete provider")
}

// CreateSSOGroupRule adds a rule. An unknown provider or team is ErrConflict; the same rule twice is
// ErrAlreadyExists.
func (s *Store) CreateSSOGroupRule(ctx context.Context, r SSOGroupRule) (SSOGroupRule, error) {
	row, err := s.q.CreateSSOGroupRule(ctx, r.ProviderID, r.Group, r.TeamID, r.Role)
	if err != nil {
		return SSOGroupRule{}, translate(err, "create group rule")
	}
	return ssoGroupRuleFromRow(row), nil
}

func ssoGroupRuleFromRow(r dbsqlc.SsoGroupRule) SSOGroupRule {
	return SSOGroupRule{ID: r.ID, ProviderID: r.ProviderID, Group: r.GroupName, TeamID: r.TeamID, Role: r.Role, CreatedAt: r.CreatedAt}
}

// ListSSOGroupRules lists the rules, of one provider when providerID is set.
func (s *Store) ListSSOGroupRules(ctx context.Context, providerID *uuid.UUID) ([]SSOGroupRule, error) {
	rows, err := s.q.ListSSOGroupRules(ctx, providerID)
	if err != nil {
		return nil, translate(err, "list group rules")
	}
	out := make([]SSOGroupRule, len(rows))
	for i, r := range rows {
		out[i] = ssoGroupRuleFromRow(r)
	}
	return out, nil
}

// DeleteSSOGroupRule removes a rule.
func (s *Store) DeleteSSOGroupRule(ctx context.Context, id uuid.UUID) error {
	n, err := s.q.DeleteSSOGroupRule(ctx, id)
	return rowsAffected(n, err, "delete group rule")
}

// SaveSSOLoginState records a sign-in under way, its PKCE verifier sealed.
func (s *Store) SaveSSOLoginState(ctx context.Context, st SSOLoginState) error {
	verifier, err := s.sealSecret(st.CodeVerifier)
	if err != nil {
		return fmt.Errorf("seal code verifier: %w", err)
	}
	return translate(s.q.CreateSSOLoginState(ctx, dbsqlc.CreateSSOLoginStateParams{
		StateHash: st.StateHash, ProviderID: st.ProviderID, Nonce: st.Nonce, CodeVerifier: verifier,
		ReturnTo: st.ReturnTo, ExpiresAt: st.ExpiresAt,
	}), "save login state")
}

// ConsumeSSOLoginState takes the live sign-in whose state has stateHash, once: an unknown, expired or
// already used state is ErrNotFound.
func (s *Store) ConsumeSSOLoginState(ctx context.Context, stateHash []byte) (SSOLoginState, error) {
	r, err := s.q.ConsumeSSOLoginState(ctx, stateHash)
	if err != nil {
		return SSOLoginState{}, translate(err, "consume login state")
	}
	verifier, err := s.openSecret(r.CodeVerifier)
	if err != nil {
		return SSOLoginState{}, fmt.Errorf("open code verifier: %w", err)
	}
	return SSOLoginState{StateHash: r.StateHash, ProviderID: r.ProviderID, Nonce: r.Nonce, CodeVerifier: verifier,
		ReturnTo: r.ReturnTo, ExpiresAt: r.ExpiresAt}, nil
}

// DeleteExpiredSSOLoginStates forgets sign-ins that were never finished.
func (s *Store) DeleteExpiredSSOLoginStates(ctx context.Context) (int64, error) {
	n, err := s.q.DeleteExpiredSSOLoginStates(ctx)
	return n, translate(err, "delete expired login states")
}

func (s *Store) ssoIdentityFromRow(r dbsqlc.SsoIdentity) (SSOIdentity, error) {
	token, err := s.openSecret(r.RefreshTokenSealed)
	if err != nil {
		return SSOIdentity{}, fmt.Errorf("open refresh token: %w", err)
	}
	return SSOIdentity{ProviderID: r.ProviderID, Subject: r.Subject, UserID: r.UserID, RefreshToken: token,
		Groups: r.Groups, SyncedAt: r.SyncedAt}, nil
}

// SSOIdentity returns the identity of subject at a provider.
func (s *Store) SSOIdentity(ctx context.Context, providerID uuid.UUID, subject string) (SSOIdentity, error) {
	r, err := s.q.GetSSOIdentity(ctx, providerID, subject)
	if err != nil {
		return SSOIdentity{}, translate(err, "get identity")
	}
	return s.ssoIdentityFromRow(r)
}

// SaveSSOIdentity links an identity to its account, or records its groups again; an empty refresh token
// keeps the one stored.
func (s *Store) SaveSSOIdentity(ctx context.Context, id SSOIdentity) error {
	sealed, err := s.sealSecret(id.RefreshToken)
	if err != nil {
		return fmt.Errorf("seal refresh token: %w", err)
	}
	return translate(s.q.UpsertSSOIdentity(ctx, dbsqlc.UpsertSSOIdentityParams{
		ProviderID: id.ProviderID, Subject: id.Subject, UserID: id.UserID, RefreshTokenSealed: sealed, Groups: nonNil(id.Groups),
	}), "save identity")
}

// ForgetSSORefreshToken drops an identity's refresh token, which the provider no longer honours.
func (s *Store) ForgetSSORefreshToken(ctx context.Context, providerID uuid.UUID, subject string) error {
	return translate(s.q.ForgetSSORefreshToken(ctx, providerID, subject), "forget refresh token")
}

// DueSSOIdentities lists up to limit identities with a refresh token whose groups were read before before,
// the longest waiting first.
func (s *Store) DueSSOIdentities(ctx context.Context, before time.Time, limit int) ([]SSOIdentity, error) {
	rows, err := s.q.DueSSOIdentities(ctx, before, int32(min(limit, 10000)))
	if err != nil {
		return nil, translate(err, "list due identities")
	}
	out := make([]SSOIdentity, 0, len(rows))
	for _, r := range rows {
		id, err := s.ssoIdentityFromRow(r)
		if err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, nil
}

// ReconcileSSOMemberships makes the memberships a provider's rules grant a user match desired (team → role),
// in one transaction: it adds the user to teams they are missing from, changes the role of memberships the
// provider granted, and takes away the provider's memberships no longer desired, through the same path as
// any member removal (instances stopped, tokens, grants and consents revoked). Memberships given any other
// way are never changed, and a membership two providers granted ends only when neither wants it. actor names
// who the audit log says acted.
func (s *Store) ReconcileSSOMemberships(ctx context.Context, providerID, userID uuid.UUID, desired map[uuid.UUID]string, actor string) ([]MembershipChange, error) {
	var changes []MembershipChange
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		changes = nil
		rows, err := q.ListMemberships(ctx, userID)
		if err != nil {
			return translate(err, "list memberships")
		}
		current := make(map[uuid.UUID]string, len(rows))
		for _, r := range rows {
			current[r.ID] = r.Role
		}
		managedRows, err := q.ListSSOMemberships(ctx, userID, providerID)
		if err != nil {
			return translate(err, "list granted memberships")
		}
		managed := make(map[uuid.UUID]bool, len(managedRows))
		for _, t := range managedRows {
			managed[t] = true
		}
		for teamID, role := range desired {
			have, member := current[teamID]
			switch {
			case !member:
				if err := q.AddMembership(ctx, teamID, userID, role); err != nil {
					return translate(err, "add membership")
				}
				if err := ensureInstances(ctx, q, teamID); err != nil {
					return err
				}
				if err := q.AddSSOMembership(ctx, teamID, userID, providerID); err != nil {
					return translate(err, "mark granted membership")
				}
				changes = append(changes, MembershipChange{TeamID: teamID, Action: "added", Role: role})
			case managed[teamID] && have != role:
				team, err := q.GetTeam(ctx, teamID)
				if err != nil {
					return translate(err, "get team")
				}
				if team.OwnerID != nil && *team.OwnerID == userID {
					continue // the owner stays an admin
				}
				n, err := q.SetMemberRole(ctx, role, teamID, userID)
				if err := rowsAffected(n, err, "set member role"); err != nil {
					return err
				}
				changes = append(changes, MembershipChange{TeamID: teamID, Action: "role_changed", Role: role})
			}
		}
		for teamID := range managed {
			if _, keep := desired[teamID]; keep {
				continue
			}
			if _, err := q.DeleteSSOMembership(ctx, teamID, userID, providerID); err != nil {
				return translate(err, "unmark granted membership")
			}
			others, err := q.CountSSOMembershipGrants(ctx, teamID, userID)
			if err != nil {
				return translate(err, "count granted memberships")
			}
			if others > 0 {
				continue
			}
			if err := removeMember(ctx, q, teamID, userID); errors.Is(err, ErrOwner) {
				continue
			} else if err != nil {
				return err
			}
			changes = append(changes, MembershipChange{TeamID: teamID, Action: "removed"})
		}
		for _, c := range changes {
			details := map[string]string{"provider_id": providerID.String()}
			if c.Role != "" {
				details["role"] = c.Role
			}
			if err := audit(ctx, q, AuditEvent{Actor: actor, TeamID: &c.TeamID, Action: "member.sso_" + c.Action,
				Target: userID.String(), Details: details}); err != nil {
				return err
			}
		}
		return nil
	})
	return changes, err
}

// PasswordSignInDisabled reports whether people of email's domain must sign in through a provider.
func (s *Store) PasswordSignInDisabled(ctx context.Context, email string) (bool, error) {
	_, domain, ok := strings.Cut(email, "@")
	if !ok || domain == "" {
		return false, nil
	}
	disabled, err := s.q.PasswordSignInDisabled(ctx, domain)
	return disabled, translate(err, "check password sign-in")
}

// SetPasswordSignIn turns password sign-in on or off for a domain.
func (s *Store) SetPasswordSignIn(ctx context.Context, domain string, enabled bool) error {
	domain = strings.ToLower(domain)
	if enabled {
		_, err := s.q.EnablePasswordSignIn(ctx, domain)
		return translate(err, "enable password sign-in")
	}
	return translate(s.q.DisablePasswordSignIn(ctx, domain), "disable password sign-in")
}

// ListPasswordSignInDisabledDomains lists the domains whose password sign-in is off.
func (s *Store) ListPasswordSignInDisabledDomains(ctx context.Context) ([]string, error) {
	d, err := s.q.ListPasswordSignInDisabledDomains(ctx)
	return d, translate(err, "list domains")
}
