package store

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// AccessToken is a bearer token an MCP client presents to a team's endpoint. Only its hash is stored.
type AccessToken struct {
	ID        uuid.UUID
	TokenHash []byte
	TeamID    uuid.UUID
	TeamSlug  string
	UserID    uuid.UUID
	UserSlug  string
	ClientID  string
	Audience  string
	Scopes    []string
	ExpiresAt time.Time
	// ToolsMode is the tool mode of the user's endpoint, the user's own or else the team's; read only.
	ToolsMode string
	// UserEmail and TeamRole are read with an active token, for the policies satellites apply; TeamRole is
	// empty once the user has left the team.
	UserEmail string
	TeamRole  string
}

// CreateAccessToken stores a token by its hash.
func (s *Store) CreateAccessToken(ctx context.Context, t AccessToken) (AccessToken, error) {
	row, err := s.q.CreateAccessToken(ctx, dbsqlc.CreateAccessTokenParams{
		TokenHash: t.TokenHash, TeamID: t.TeamID, UserID: t.UserID, ClientID: t.ClientID, Audience: t.Audience,
		Scopes: nonNil(t.Scopes), ExpiresAt: t.ExpiresAt,
	})
	if err != nil {
		return AccessToken{}, translate(err, "create access token")
	}
	t.ID = row.ID
	return t, nil
}

// ActiveAccessToken returns the live token with hash tokenHash, or ErrNotFound when it is unknown, expired or
// revoked.
func (s *Store) ActiveAccessToken(ctx context.Context, tokenHash []byte) (AccessToken, error) {
	r, err := s.q.GetActiveAccessToken(ctx, tokenHash)
	if err != nil {
		return AccessToken{}, translate(err, "get access token")
	}
	return AccessToken{
		ID: r.ID, TokenHash: r.TokenHash, TeamID: r.TeamID, TeamSlug: r.TeamSlug, UserID: r.UserID,
		UserSlug: r.UserSlug, ClientID: r.ClientID, Audience: r.Audience, Scopes: r.Scopes, ExpiresAt: r.ExpiresAt,
		ToolsMode: r.ToolsMode, UserEmail: r.UserEmail, TeamRole: r.TeamRole,
	}, nil
}

// RevokeAccessToken makes a token inactive at once, for satellites too.
func (s *Store) RevokeAccessToken(ctx context.Context, id uuid.UUID) error {
	return s.inTx(ctx, func(q *dbsqlc.Queries) error {
		revoked, err := q.RevokeAccessToken(ctx, id)
		if err != nil {
			return translate(err, "revoke access token")
		}
		return announceRevoked(ctx, q, revoked)
	})
}
