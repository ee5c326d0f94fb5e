package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// RemoteOAuthClient is the control plane's registration with an upstream authorization server.
type RemoteOAuthClient struct {
	Issuer   string
	ClientID string
	// ClientSecret is empty for a public client.
	ClientSecret string
}

// RemoteOAuthFlow is an authorization a member started against a remote server's authorization server.
type RemoteOAuthFlow struct {
	TeamID, InstallationID, UserID  uuid.UUID
	Issuer, TokenEndpoint, Resource string
	Verifier                        string // the PKCE code verifier
	ExpiresAt                       time.Time
}

// RemoteOAuthConnection is a member's tokens for one installation of a remote server, opened.
type RemoteOAuthConnection struct {
	TeamID, InstallationID, UserID  uuid.UUID
	Issuer, TokenEndpoint, Resource string
	AccessToken, RefreshToken       string
	Scope                           string
	// ExpiresAt is when the access token expires; nil when the server did not say.
	ExpiresAt *time.Time
	// Failed reports that a refresh was refused: the member must connect again.
	Failed    bool
	UpdatedAt time.Time
}

// RemoteTarget is the server an installation runs, as far as connecting accounts goes.
type RemoteTarget struct {
	// Transport is "http" or "sse" for a remote server, "stdio" otherwise.
	Transport string
	URL       string
	// PerUserAuthorization is the template's CatalogEntry.PerUserAuthorization.
	PerUserAuthorization bool
}

// RemoteInstallationTarget is the server of an installation of teamID, or ErrNotFound.
func (s *Store) RemoteInstallationTarget(ctx context.Context, teamID, installationID uuid.UUID) (RemoteTarget, error) {
	r, err := s.q.GetRemoteInstallationTarget(ctx, installationID, teamID)
	if err != nil {
		return RemoteTarget{}, translate(err, "installation")
	}
	return RemoteTarget{Transport: r.Transport, URL: r.Url, PerUserAuthorization: r.PerUserAuthorization}, nil
}

// InstallationRemoteOAuthConnections lists the connections of every member to an installation of teamID,
// failed ones included.
func (s *Store) InstallationRemoteOAuthConnections(ctx context.Context, teamID, installationID uuid.UUID) ([]RemoteOAuthConnection, error) {
	rows, err := s.q.ListInstallationRemoteOAuthConnections(ctx, teamID, installationID)
	if err != nil {
		return nil, translate(err, "list remote oauth connections")
	}
	return s.openConnections(rows)
}

// RemoteOAuthClient returns the registration with issuer, or ErrNotFound.
func (s *Store) RemoteOAuthClient(ctx context.Context, issuer string) (RemoteOAuthClient, error) {
	r, err := s.q.GetRemoteOAuthClient(ctx, issuer)
	if err != nil {
		return RemoteOAuthClient{}, translate(err, "remote oauth client")
	}
	return s.openRemoteClient(r)
}

// SaveRemoteOAuthClient keeps a registration and returns the one kept: the first, when two replicas
// registered at once.
func (s *Store) SaveRemoteOAuthClient(ctx context.Context, c RemoteOAuthClient) (RemoteOAuthClient, error) {
	secret, err := s.sealOptional(c.ClientSecret)
	if err != nil {
		return RemoteOAuthClient{}, err
	}
	r, err := s.q.CreateRemoteOAuthClient(ctx, c.Issuer, c.ClientID, secret)
	if err != nil {
		return RemoteOAuthClient{}, translate(err, "save remote oauth client")
	}
	return s.openRemoteClient(r)
}

func (s *Store) openRemoteClient(r dbsqlc.RemoteOauthClient) (RemoteOAuthClient, error) {
	secret, err := s.openOptional(r.ClientSecret)
	if err != nil {
		return RemoteOAuthClient{}, fmt.Errorf("open remote oauth client secret: %w", err)
	}
	return RemoteOAuthClient{Issuer: r.Issuer, ClientID: r.ClientID, ClientSecret: secret}, nil
}

// CreateRemoteOAuthFlow keeps a started authorization under the SHA-256 of its state.
func (s *Store) CreateRemoteOAuthFlow(ctx context.Context, stateHash []byte, f RemoteOAuthFlow) error {
	verifier, err := s.keyring.Seal(f.Verifier)
	if err != nil {
		return err
	}
	return translate(s.q.CreateRemoteOAuthFlow(ctx, dbsqlc.CreateRemoteOAuthFlowParams{
		StateHash: stateHash, TeamID: f.TeamID, InstallationID: f.InstallationID, UserID: f.UserID, Issuer: f.Issuer,
		TokenEndpoint: f.TokenEndpoint, Resource: f.Resource, Verifier: verifier, ExpiresAt: f.ExpiresAt,
	}), "create remote oauth flow")
}

// TakeRemoteOAuthFlow consumes the flow with the state whose hash is given; an unknown, used or expired
// state is ErrNotFound.
func (s *Store) TakeRemoteOAuthFlow(ctx context.Context, stateHash []byte, now time.Time) (RemoteOAuthFlow, error) {
	r, err := s.q.TakeRemoteOAuthFlow(ctx, stateHash)
	if err != nil {
		return RemoteOAuthFlow{}, translate(err, "remote oauth flow")
	}
	if !now.Before(r.ExpiresAt) {
		return RemoteOAuthFlow{}, fmt.Errorf("remote oauth flow expired: %w", ErrNotFound)
	}
	verifier, err := s.keyring.Open(r.Verifier)
	if err != nil {
		return RemoteOAuthFlow{}, fmt.Errorf("open code verifier: %w", err)
	}
	return RemoteOAuthFlow{TeamID: r.TeamID, InstallationID: r.InstallationID, UserID: r.UserID, Issuer: r.Issuer,
		TokenEndpoint: r.TokenEndpoint, Resource: r.Resource, Verifier: verifier, ExpiresAt: r.ExpiresAt}, nil
}

// DeleteExpiredRemoteOAuthFlows forgets the authorizations members started and never finished in time.
func (s *Store) DeleteExpiredRemoteOAuthFlows(ctx context.Context) (int64, error) {
	n, err := s.q.DeleteExpiredRemoteOAuthFlows(ctx)
	return n, translate(err, "delete expired remote oauth flows")
}

// SaveRemoteOAuthConnection keeps a member's new tokens, sealed, and tells the team's satellites, whose
// configuration of the member's instance carries them.
func (s *Store) SaveRemoteOAuthConnection(ctx context.Context, c RemoteOAuthConnection) error {
	access, err := s.keyring.Seal(c.AccessToken)
	if err != nil {
		return err
	}
	refresh, err := s.sealOptional(c.RefreshToken)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(q *dbsqlc.Queries) error {
		if err := q.SaveRemoteOAuthConnection(ctx, dbsqlc.SaveRemoteOAuthConnectionParams{
			TeamID: c.TeamID, InstallationID: c.InstallationID, UserID: c.UserID, Issuer: c.Issuer,
			TokenEndpoint: c.TokenEndpoint, Resource: c.Resource, AccessToken: access, RefreshToken: refresh,
			Scope: c.Scope, ExpiresAt: c.ExpiresAt,
		}); err != nil {
			return translate(err, "save remote oauth connection")
		}
		return configure(ctx, q, c.TeamID, EventInstallationUpdated, c.InstallationID)
	})
}

// RemoteOAuthConnection returns a member's connection to an installation of their team, or ErrNotFound.
func (s *Store) RemoteOAuthConnection(ctx context.Context, teamID, installationID, userID uuid.UUID) (RemoteOAuthConnection, error) {
	r, err := s.q.GetRemoteOAuthConnection(ctx, teamID, installationID, userID)
	if err != nil {
		return RemoteOAuthConnection{}, translate(err, "remote oauth connection")
	}
	return s.openConnection(r)
}

// LiveRemoteOAuthConnections lists the connections whose tokens are delivered: of one team, or of every
// team when teamID is nil.
func (s *Store) LiveRemoteOAuthConnections(ctx context.Context, teamID *uuid.UUID) ([]RemoteOAuthConnection, error) {
	rows, err := s.q.ListLiveRemoteOAuthConnections(ctx, teamID)
	if err != nil {
		return nil, translate(err, "list remote oauth connections")
	}
	return s.openConnections(rows)
}

// DueRemoteOAuthConnections lists at most limit refreshable connections whose access token expires before
// before, soonest first.
func (s *Store) DueRemoteOAuthConnections(ctx context.Context, before time.Time, limit int32) ([]RemoteOAuthConnection, error) {
	rows, err := s.q.ListDueRemoteOAuthConnections(ctx, &before, limit)
	if err != nil {
		return nil, translate(err, "list due remote oauth connections")
	}
	return s.openConnections(rows)
}

// UpdateRemoteOAuthTokens stores refreshed tokens for c, unless c changed since it was read (c.UpdatedAt):
// then it reports false and stores nothing.
func (s *Store) UpdateRemoteOAuthTokens(ctx context.Context, c RemoteOAuthConnection, access, refresh string, expiresAt *time.Time) (bool, error) {
	sealedAccess, err := s.keyring.Seal(access)
	if err != nil {
		return false, err
	}
	sealedRefresh, err := s.sealOptional(refresh)
	if err != nil {
		return false, err
	}
	updated := false
	err = s.inTx(ctx, func(q *dbsqlc.Queries) error {
		n, err := q.UpdateRemoteOAuthTokens(ctx, dbsqlc.UpdateRemoteOAuthTokensParams{
			AccessToken: sealedAccess, RefreshToken: sealedRefresh, ExpiresAt: expiresAt,
			InstallationID: c.InstallationID, UserID: c.UserID, SeenUpdatedAt: c.UpdatedAt,
		})
		if err != nil {
			return translate(err, "update remote oauth tokens")
		}
		if updated = n == 1; !updated {
			return nil
		}
		return configure(ctx, q, c.TeamID, EventInstallationUpdated, c.InstallationID)
	})
	return updated, err
}

// FailRemoteOAuthConnection marks c refused by its authorization server: its tokens are no longer
// delivered, and the member must connect again.
func (s *Store) FailRemoteOAuthConnection(ctx context.Context, c RemoteOAuthConnection) error {
	return s.inTx(ctx, func(q *dbsqlc.Queries) error {
		if err := q.FailRemoteOAuthConnection(ctx, c.InstallationID, c.UserID); err != nil {
			return translate(err, "fail remote oauth connection")
		}
		return configure(ctx, q, c.TeamID, EventInstallationUpdated, c.InstallationID)
	})
}

// DeleteRemoteOAuthConnection removes a member's connection to an installation of their team and returns
// it, so its tokens can be revoked upstream; the team's satellites stop sending them.
func (s *Store) DeleteRemoteOAuthConnection(ctx context.Context, teamID, installationID, userID uuid.UUID) (RemoteOAuthConnection, error) {
	var out RemoteOAuthConnection
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		r, err := q.DeleteRemoteOAuthConnection(ctx, teamID, installationID, userID)
		if err != nil {
			return translate(err, "delete remote oauth connection")
		}
		if out, err = s.openConnection(r); err != nil {
			return err
		}
		return configure(ctx, q, teamID, EventInstallationUpdated, installationID)
	})
	return out, err
}

func (s *Store) openConnections(rows []dbsqlc.RemoteOauthConnection) ([]RemoteOAuthConnection, error) {
	out := make([]RemoteOAuthConnection, 0, len(rows))
	for _, r := range rows {
		c, err := s.openConnection(r)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func (s *Store) openConnection(r dbsqlc.RemoteOauthConnection) (RemoteOAuthConnection, error) {
	access, err := s.keyring.Open(r.AccessToken)
	if err != nil {
		return RemoteOAuthConnection{}, fmt.Errorf("open remote access token: %w", err)
	}
	refresh, err := s.openOptional(r.RefreshToken)
	if err != nil {
		return RemoteOAuthConnection{}, fmt.Errorf("open remote refresh token: %w", err)
	}
	return RemoteOAuthConnection{
		TeamID: r.TeamID, InstallationID: r.InstallationID, UserID: r.UserID, Issuer: r.Issuer,
		TokenEndpoint: r.TokenEndpoint, Resource: r.Resource, AccessToken: access, RefreshToken: refresh,
		Scope: r.Scope, ExpiresAt: r.ExpiresAt, Failed: r.FailedAt != nil, UpdatedAt: r.UpdatedAt,
	}, nil
}

// sealOptional seals v, keeping an empty value empty.
func (s *Store) sealOptional(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	return s.keyring.Seal(v)
}

// openOptional opens v, keeping an empty value empty.
func (s *Store) openOptional(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	return s.keyring.Open(v)
}
