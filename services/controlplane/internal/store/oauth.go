package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// OAuthClient is a client of the authorization server that is stored: registered dynamically, or a team's
// confidential client for headless agents.
type OAuthClient struct {
	ID string
	// TeamID is set for a team's confidential client, whose tokens act for that team alone.
	TeamID *uuid.UUID
	// ServiceUserID is the user a team's confidential client acts as: a member of the team without a
	// password, made for the client.
	ServiceUserID           *uuid.UUID
	Name                    string
	RedirectURIs            []string
	GrantTypes              []string
	Scopes                  []string
	TokenEndpointAuthMethod string
	// SecretHash is the Argon2id hash of a confidential client's secret; empty for public clients.
	SecretHash string
	CreatedBy  *uuid.UUID
	CreatedAt  time.Time
}

// Kinds of OAuthToken.
const (
	OAuthAuthorizeCode = "authorize_code"
	OAuthPKCE          = "pkce"
	OAuthAccessToken   = "access_token"
	OAuthRefreshToken  = "refresh_token"
)

// OAuthToken is an authorization code, PKCE challenge, access or refresh token, stored under the SHA-256 of
// its value.
type OAuthToken struct {
	Signature []byte
	Kind      string
	// RequestID names the grant the token belongs to; refreshing keeps it.
	RequestID string
	ClientID  string
	TeamID    uuid.UUID
	// UserID is, for client-credentials grants, the client's service user.
	UserID uuid.UUID
	// Request is the authorization server's serialized grant.
	Request   []byte
	Active    bool
	ExpiresAt time.Time
}

// OAuthGrant is a live authorization: the newest active token of one grant.
type OAuthGrant struct {
	RequestID string
	ClientID  string
	TeamID    uuid.UUID
	TeamSlug  string
	UserID    uuid.UUID
	Request   []byte
	ExpiresAt time.Time
	CreatedAt time.Time
}

// OAuthConsent is a user's remembered consent that a client may act for them in a team.
type OAuthConsent struct {
	UserID    uuid.UUID
	ClientID  string
	TeamID    uuid.UUID
	TeamSlug  string
	Scopes    []string
	UpdatedAt time.Time
}

func oauthClientFromRow(r dbsqlc.OauthClient) OAuthClient {
	c := OAuthClient{
		ID: r.ID, TeamID: r.TeamID, ServiceUserID: r.ServiceUserID, Name: r.Name, RedirectURIs: r.RedirectUris, GrantTypes: r.GrantTypes,
		Scopes: r.Scopes, TokenEndpointAuthMethod: r.TokenEndpointAuthMethod, CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt,
	}
	if r.SecretHash != nil {
		c.SecretHash = *r.SecretHash
	}
	return c
}

// CreateOAuthClient stores a client. A client with a TeamID gets a service user, a member of the team,
// to act as, with an instance of each of the team's installations.
func (s *Store) CreateOAuthClient(ctx context.Context, c OAuthClient) (OAuthClient, error) {
	var secret *string
	if c.SecretHash != "" {
		secret = &c.SecretHash
	}
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		var serviceUser *uuid.UUID
		if c.TeamID != nil {
			id, err := createServiceUser(ctx, q, c.ID, c.Name)
			if err != nil {
				return err
			}
			if err := q.AddMembership(ctx, *c.TeamID, id, RoleTeamUser); err != nil {
				return translate(err, "add service user to team")
			}
			// The client acts as a member like any other, so it needs its instances of the team's
			// installations as much as a person who joins later.
			if err := ensureInstances(ctx, q, *c.TeamID); err != nil {
				return err
			}
			serviceUser = &id
		}
		row, err := q.CreateOAuthClient(ctx, dbsqlc.CreateOAuthClientParams{
			ID: c.ID, TeamID: c.TeamID, ServiceUserID: serviceUser, Name: c.Name, RedirectUris: nonNil(c.RedirectURIs),
			GrantTypes: nonNil(c.GrantTypes), Scopes: nonNil(c.Scopes), TokenEndpointAuthMethod: c.TokenEndpointAuthMethod,
			SecretHash: secret, CreatedBy: c.CreatedBy,
		})
		if err != nil {
			return translate(err, "create oauth client")
		}
		c = oauthClientFromRow(row)
		return nil
	})
	return c, err
}

// createServiceUser makes the user a team's confidential client acts as. It has no password, so no one
// signs in as it; its address is in the reserved .invalid domain.
func createServiceUser(ctx context.Context, q *dbsqlc.Queries, clientID, name string) (uuid.UUID, error) {
	base := "client-" + strings.ToLower(strings.TrimPrefix(clientID, "orcc_"))[:8]
	slug := base
	for n := 2; ; n++ {
		taken, err := q.SlugTaken(ctx, slug)
		if err != nil {
			return uuid.Nil, translate(err, "check slug")
		}
		if !taken {
			break
		}
		slug = fmt.Sprintf("%s-%d", base, n)
	}
	id, err := q.CreateServiceUser(ctx, slug, clientID+"@clients.orrery.invalid", "OAuth client "+name)
	return id, translate(err, "create service user")
}

// OAuthClient returns a live stored client, or ErrNotFound.
func (s *Store) OAuthClient(ctx context.Context, id string) (OAuthClient, error) {
	row, err := s.q.GetOAuthClient(ctx, id)
	if err != nil {
		return OAuthClient{}, translate(err, "get oauth client")
	}
	return oauthClientFromRow(row), nil
}

// ListTeamOAuthClients lists a team's confidential clients and the stored clients with live grants in it.
func (s *Store) ListTeamOAuthClients(ctx context.Context, teamID uuid.UUID) ([]OAuthClient, error) {
	rows, err := s.q.ListTeamOAuthClients(ctx, teamID)
	if err != nil {
		return nil, translate(err, "list oauth clients")
	}
	out := make([]OAuthClient, 0, len(rows))
	for _, r := range rows {
		out = append(out, oauthClientFromRow(r))
	}
	return out, nil
}

// RevokeTeamOAuthClient ends every grant a client holds in a team and, when the client is the team's own,
// deletes it with its service user. It returns ErrNotFound when the client neither belongs to the team nor
// holds a grant there.
func (s *Store) RevokeTeamOAuthClient(ctx context.Context, teamID uuid.UUID, clientID string) error {
	return s.inTx(ctx, func(q *dbsqlc.Queries) error {
		retired, err := q.DeleteTeamOAuthClientUser(ctx, clientID, teamID)
		if err != nil {
			return translate(err, "revoke oauth client")
		}
		grants, err := revokeClientGrants(ctx, q, clientID, teamID, nil)
		if err != nil {
			return err
		}
		if retired == 0 && grants == 0 {
			return translate(ErrNotFound, "revoke oauth client")
		}
		return nil
	})
}

// revokeClientGrants ends the grants of a client in a team, only userID's when set, with their access
// tokens, and returns how many grants it ended.
func revokeClientGrants(ctx context.Context, q *dbsqlc.Queries, clientID string, teamID uuid.UUID, userID *uuid.UUID) (int, error) {
	ids, err := q.RevokeClientTeamGrants(ctx, clientID, teamID, userID)
	if err != nil {
		return 0, translate(err, "revoke oauth grants")
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	for _, id := range ids {
		if err := revokeGrantAccessTokens(ctx, q, id); err != nil {
			return 0, err
		}
	}
	return len(ids), nil
}

// CreateOAuthToken stores a code, PKCE challenge or refresh token. Access tokens go through
// CreateOAuthAccessToken.
func (s *Store) CreateOAuthToken(ctx context.Context, t OAuthToken) error {
	return translate(s.q.CreateOAuthToken(ctx, oauthTokenParams(t)), "create oauth token")
}

func oauthTokenParams(t OAuthToken) dbsqlc.CreateOAuthTokenParams {
	return dbsqlc.CreateOAuthTokenParams{
		Signature: t.Signature, Kind: t.Kind, RequestID: t.RequestID, ClientID: t.ClientID, TeamID: t.TeamID,
		UserID: t.UserID, Request: t.Request, ExpiresAt: t.ExpiresAt,
	}
}

// CreateOAuthAccessToken stores an access token both as the authorization server's record and as an
// access token satellites find by introspection, bound to audience with scopes.
func (s *Store) CreateOAuthAccessToken(ctx context.Context, t OAuthToken, audience string, scopes []string) error {
	return s.inTx(ctx, func(q *dbsqlc.Queries) error {
		if err := q.CreateOAuthToken(ctx, oauthTokenParams(t)); err != nil {
			return translate(err, "create oauth token")
		}
		return translate(q.CreateGrantAccessToken(ctx, dbsqlc.CreateGrantAccessTokenParams{
			TokenHash: t.Signature, TeamID: t.TeamID, UserID: t.UserID, ClientID: t.ClientID,
			Audience: audience, Scopes: nonNil(scopes), ExpiresAt: t.ExpiresAt, RequestID: t.RequestID,
		}), "create access token")
	})
}

// OAuthToken returns a stored token of a kind by its signature, active or not, or ErrNotFound.
func (s *Store) OAuthToken(ctx context.Context, kind string, signature []byte) (OAuthToken, error) {
	r, err := s.q.GetOAuthToken(ctx, signature, kind)
	if err != nil {
		return OAuthToken{}, translate(err, "get oauth token")
	}
	return OAuthToken{
		Signature: r.Signature, Kind: r.Kind, RequestID: r.RequestID, ClientID: r.ClientID, TeamID: r.TeamID,
		UserID: r.UserID, Request: r.Request, Active: r.Active, ExpiresAt: r.ExpiresAt,
	}, nil
}

// DeactivateOAuthToken marks a token used or revoked, keeping it so a later use is recognised as reuse.
func (s *Store) DeactivateOAuthToken(ctx context.Context, kind string, signature []byte) error {
	n, err := s.q.DeactivateOAuthToken(ctx, signature, kind)
	if err == nil && n == 0 {
		err = ErrNotFound
	}
	return translate(err, "deactivate oauth token")
}

// DeleteOAuthToken forgets a token.
func (s *Store) DeleteOAuthToken(ctx context.Context, kind string, signature []byte) error {
	return translate(s.q.DeleteOAuthToken(ctx, signature, kind), "delete oauth token")
}

// RevokeOAuthGrant deactivates every token of the given kind under a grant; revoking access tokens also
// revokes them for satellites.
func (s *Store) RevokeOAuthGrant(ctx context.Context, requestID, kind string) error {
	return s.inTx(ctx, func(q *dbsqlc.Queries) error {
		if err := q.DeactivateOAuthGrant(ctx, requestID, kind); err != nil {
			return translate(err, "revoke oauth grant")
		}
		if kind != OAuthAccessToken {
			return nil
		}
		return revokeGrantAccessTokens(ctx, q, requestID)
	})
}

// RevokeWholeOAuthGrant deactivates every token of a grant. teamID and userID, when set, must own it;
// otherwise it is ErrNotFound, so a caller learns nothing of other teams' grants.
func (s *Store) RevokeWholeOAuthGrant(ctx context.Context, requestID string, teamID, userID *uuid.UUID) error {
	return s.inTx(ctx, func(q *dbsqlc.Queries) error {
		owner, err := q.GetOAuthGrantOwner(ctx, requestID)
		if err != nil {
			return translate(err, "revoke oauth grant")
		}
		if (teamID != nil && owner.TeamID != *teamID) || (userID != nil && owner.UserID != *userID) {
			return translate(ErrNotFound, "revoke oauth grant")
		}
		for _, kind := range []string{OAuthAuthorizeCode, OAuthAccessToken, OAuthRefreshToken} {
			if err := q.DeactivateOAuthGrant(ctx, requestID, kind); err != nil {
				return translate(err, "revoke oauth grant")
			}
		}
		return revokeGrantAccessTokens(ctx, q, requestID)
	})
}

// ListOAuthGrants lists live grants in a team, of a user, or both when both are set.
func (s *Store) ListOAuthGrants(ctx context.Context, teamID, userID *uuid.UUID) ([]OAuthGrant, error) {
	rows, err := s.q.ListOAuthGrants(ctx, teamID, userID)
	if err != nil {
		return nil, translate(err, "list oauth grants")
	}
	out := make([]OAuthGrant, 0, len(rows))
	for _, r := range rows {
		out = append(out, OAuthGrant{
			RequestID: r.RequestID, ClientID: r.ClientID, TeamID: r.TeamID, TeamSlug: r.TeamSlug,
			UserID: r.UserID, Request: r.Request, ExpiresAt: r.ExpiresAt, CreatedAt: r.CreatedAt,
		})
	}
	return out, nil
}

// SaveOAuthConsent remembers a consent, replacing the scopes of an earlier one.
func (s *Store) SaveOAuthConsent(ctx context.Context, c OAuthConsent) error {
	return translate(s.q.UpsertOAuthConsent(ctx, c.UserID, c.ClientID, c.TeamID, nonNil(c.Scopes)), "save oauth consent")
}

// OAuthConsent returns a remembered consent, or ErrNotFound.
func (s *Store) OAuthConsent(ctx context.Context, userID uuid.UUID, clientID string, teamID uuid.UUID) (OAuthConsent, error) {
	r, err := s.q.GetOAuthConsent(ctx, userID, clientID, teamID)
	if err != nil {
		return OAuthConsent{}, translate(err, "get oauth consent")
	}
	return OAuthConsent{UserID: r.UserID, ClientID: r.ClientID, TeamID: r.TeamID, Scopes: r.Scopes, UpdatedAt: r.UpdatedAt}, nil
}

// ListOAuthConsents lists a user's remembered consents, newest first.
func (s *Store) ListOAuthConsents(ctx context.Context, userID uuid.UUID) ([]OAuthConsent, error) {
	rows, err := s.q.ListOAuthConsents(ctx, userID)
	if err != nil {
		return nil, translate(err, "list oauth consents")
	}
	out := make([]OAuthConsent, 0, len(rows))
	for _, r := range rows {
		out = append(out, OAuthConsent{
			UserID: r.UserID, ClientID: r.ClientID, TeamID: r.TeamID, TeamSlug: r.TeamSlug, Scopes: r.Scopes, UpdatedAt: r.UpdatedAt,
		})
	}
	return out, nil
}

// WithdrawOAuthConsent forgets a user's consent for a client in a team and ends the grants the client holds
// for the user there. It returns ErrNotFound when there was neither.
func (s *Store) WithdrawOAuthConsent(ctx context.Context, userID uuid.UUID, clientID string, teamID uuid.UUID) error {
	return s.inTx(ctx, func(q *dbsqlc.Queries) error {
		deleted, err := q.DeleteOAuthConsent(ctx, userID, clientID, teamID)
		if err != nil {
			return translate(err, "withdraw oauth consent")
		}
		grants, err := revokeClientGrants(ctx, q, clientID, teamID, &userID)
		if err != nil {
			return err
		}
		if deleted == 0 && grants == 0 {
			return translate(ErrNotFound, "withdraw oauth consent")
		}
		return nil
	})
}

// TeamBySlug returns a team, or ErrNotFound.
func (s *Store) TeamBySlug(ctx context.Context, slug string) (Team, error) {
	r, err := s.q.GetTeamBySlug(ctx, slug)
	if err != nil {
		return Team{}, translate(err, "get team")
	}
	return teamFromRow(r), nil
}

// TeamEndpointServed reports whether a live satellite that serves the team publishes url as its own.
func (s *Store) TeamEndpointServed(ctx context.Context, url string, teamID uuid.UUID) (bool, error) {
	ok, err := s.q.TeamEndpointServed(ctx, url, teamID)
	return ok, translate(err, "check team endpoint")
}

// TeamEndpointBase returns the public URL of the live satellite that serves the team, its own before global
// ones, or "" when none does.
func (s *Store) TeamEndpointBase(ctx context.Context, teamID uuid.UUID) (string, error) {
	url, err := s.q.TeamEndpointBase(ctx, teamID)
	if err = translate(err, "find team endpoint"); errors.Is(err, ErrNotFound) {
		return "", nil
	}
	return url, err
}

// revokeMemberAccess ends what a former member held for a team: access tokens, OAuth grants, consents.
func revokeMemberAccess(ctx context.Context, q *dbsqlc.Queries, teamID, userID uuid.UUID) error {
	revoked, err := q.RevokeMemberAccessTokens(ctx, teamID, userID)
	if err != nil {
		return translate(err, "revoke access tokens")
	}
	if err := announceRevoked(ctx, q, revoked); err != nil {
		return err
	}
	if err := q.DeactivateMemberOAuthTokens(ctx, teamID, userID); err != nil {
		return translate(err, "revoke oauth grants")
	}
	if err := q.DeleteMemberOAuthConsents(ctx, teamID, userID); err != nil {
		return translate(err, "delete oauth consents")
	}
	// The member's tokens for the team's remote servers go too.
	return translate(q.DeleteMemberRemoteOAuthConnections(ctx, teamID, userID), "delete remote oauth connections")
}
