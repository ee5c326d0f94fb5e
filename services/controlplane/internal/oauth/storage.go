package oauth

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/google/uuid"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/pkce"

	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// storage adapts the store to fosite's storage interfaces. Every code and token is a row of oauth_tokens
// under its signature, with the grant serialized beside it; access tokens are also written to
// access_tokens, where satellites look them up.
type storage struct {
	store   *store.Store
	clients *clientManager
}

var (
	_ fosite.Storage                = (*storage)(nil)
	_ oauth2.CoreStorage            = (*storage)(nil)
	_ oauth2.TokenRevocationStorage = (*storage)(nil)
	_ pkce.PKCERequestStorage       = (*storage)(nil)
)

// storedRequest is a grant as serialized in oauth_tokens.request.
type storedRequest struct {
	ID                string          `json:"id"`
	RequestedAt       time.Time       `json:"requested_at"`
	ClientID          string          `json:"client_id"`
	RequestedScope    []string        `json:"requested_scope"`
	GrantedScope      []string        `json:"granted_scope"`
	RequestedAudience []string        `json:"requested_audience"`
	GrantedAudience   []string        `json:"granted_audience"`
	Form              url.Values      `json:"form"`
	Session           json.RawMessage `json:"session"`
}

// secretParameters are never stored with a grant.
var secretParameters = []string{"client_secret", "code_verifier", "code", "refresh_token", "password", "token", "csrf"}

func (s *storage) create(ctx context.Context, kind, sig string, r fosite.Requester) error {
	key, err := hex.DecodeString(sig)
	if err != nil {
		return fmt.Errorf("token signature: %w", err)
	}
	sess, ok := r.GetSession().(*Session)
	if !ok {
		return errors.New("grant without an orrery session")
	}
	teamID, err := uuid.Parse(sess.TeamID)
	if err != nil {
		return fmt.Errorf("grant without a team: %w", err)
	}
	userID, err := uuid.Parse(sess.UserID)
	if err != nil {
		return fmt.Errorf("grant without a user: %w", err)
	}
	rawSession, err := json.Marshal(sess)
	if err != nil {
		return err
	}
	form := url.Values{}
	for k, v := range r.GetRequestForm() {
		form[k] = v
	}
	for _, k := range secretParameters {
		form.Del(k)
	}
	raw, err := json.Marshal(storedRequest{
		ID: r.GetID(), RequestedAt: r.GetRequestedAt(), ClientID: r.GetClient().GetID(),
		RequestedScope: r.GetRequestedScopes(), GrantedScope: r.GetGrantedScopes(),
		RequestedAudience: r.GetRequestedAudience(), GrantedAudience: r.GetGrantedAudience(),
		Form: form, Session: rawSession,
	})
	if err != nil {
		return err
	}
	expiresAt := sess.GetExpiresAt(expiryOf(kind))
	if expiresAt.IsZero() {
		// A PKCE challenge lives as long as its code.
		expiresAt = sess.GetExpiresAt(fosite.AuthorizeCode)
	}
	t := store.OAuthToken{
		Signature: key, Kind: kind, RequestID: r.GetID(), ClientID: r.GetClient().GetID(), TeamID: teamID,
		UserID: userID, Request: raw, ExpiresAt: expiresAt,
	}
	if kind == store.OAuthAccessToken {
		audience := ""
		if aud := r.GetGrantedAudience(); len(aud) > 0 {
			audience = aud[0]
		}
		return s.store.CreateOAuthAccessToken(ctx, t, audience, r.GetGrantedScopes())
	}
	return s.store.CreateOAuthToken(ctx, t)
}

func expiryOf(kind string) fosite.TokenType {
	switch kind {
	case store.OAuthAccessToken:
		return fosite.AccessToken
	case store.OAuthRefreshToken:
		return fosite.RefreshToken
	default:
		return fosite.AuthorizeCode
	}
}

// get loads a grant into session. An inactive token yields the grant together with inactive, so fosite
// can tell reuse from an unknown token.
func (s *storage) get(ctx context.Context, kind, sig string, session fosite.Session, inactive error) (fosite.Requester, error) {
	key, err := hex.DecodeString(sig)
	if err != nil {
		return nil, fosite.ErrNotFound
	}
	t, err := s.store.OAuthToken(ctx, kind, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fosite.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	var sr storedRequest
	if err := json.Unmarshal(t.Request, &sr); err != nil {
		return nil, fmt.Errorf("decode stored grant: %w", err)
	}
	if session == nil {
		session = &Session{}
	}
	if err := json.Unmarshal(sr.Session, session); err != nil {
		return nil, fmt.Errorf("decode stored session: %w", err)
	}
	client, err := s.clients.GetClient(ctx, sr.ClientID)
	if err != nil {
		return nil, err
	}
	req := &fosite.Request{
		ID: sr.ID, RequestedAt: sr.RequestedAt, Client: client, RequestedScope: sr.RequestedScope,
		GrantedScope: sr.GrantedScope, RequestedAudience: sr.RequestedAudience, GrantedAudience: sr.GrantedAudience,
		Form: sr.Form, Session: session,
	}
	if req.Form == nil {
		req.Form = url.Values{}
	}
	if !t.Active {
		return req, inactive
	}
	return req, nil
}

func (s *storage) deactivate(ctx context.Context, kind, sig string) error {
	key, err := hex.DecodeString(sig)
	if err != nil {
		return fosite.ErrNotFound
	}
	if err := s.store.DeactivateOAuthToken(ctx, kind, key); errors.Is(err, store.ErrNotFound) {
		return fosite.ErrNotFound
	} else if err != nil {
		return err
	}
	return nil
}

func (s *storage) delete(ctx context.Context, kind, sig string) error {
	key, err := hex.DecodeString(sig)
	if err != nil {
		return fosite.ErrNotFound
	}
	return s.store.DeleteOAuthToken(ctx, kind, key)
}

// GetClient implements fosite.ClientManager.
func (s *storage) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	return s.clients.GetClient(ctx, id)
}

// ClientAssertionJWTValid implements fosite.ClientManager; JWT client assertions are not offered, so no
// assertion is ever valid.
func (s *storage) ClientAssertionJWTValid(context.Context, string) error {
	return fosite.ErrJTIKnown
}

// SetClientAssertionJWT implements fosite.ClientManager; see ClientAssertionJWTValid.
func (s *storage) SetClientAssertionJWT(context.Context, string, time.Time) error {
	return fosite.ErrJTIKnown
}

// CreateAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage.
func (s *storage) CreateAuthorizeCodeSession(ctx context.Context, sig string, r fosite.Requester) error {
	return s.create(ctx, store.OAuthAuthorizeCode, sig, r)
}

// GetAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage.
func (s *storage) GetAuthorizeCodeSession(ctx context.Context, sig string, session fosite.Session) (fosite.Requester, error) {
	return s.get(ctx, store.OAuthAuthorizeCode, sig, session, fosite.ErrInvalidatedAuthorizeCode)
}

// InvalidateAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage: a used code stays, inactive, so
// its reuse is detected and revokes the tokens it bought.
func (s *storage) InvalidateAuthorizeCodeSession(ctx context.Context, sig string) error {
	return s.deactivate(ctx, store.OAuthAuthorizeCode, sig)
}

// CreatePKCERequestSession implements pkce.PKCERequestStorage.
func (s *storage) CreatePKCERequestSession(ctx context.Context, sig string, r fosite.Requester) error {
	return s.create(ctx, store.OAuthPKCE, sig, r)
}

// GetPKCERequestSession implements pkce.PKCERequestStorage.
func (s *storage) GetPKCERequestSession(ctx context.Context, sig string, session fosite.Session) (fosite.Requester, error) {
	return s.get(ctx, store.OAuthPKCE, sig, session, fosite.ErrNotFound)
}

// DeletePKCERequestSession implements pkce.PKCERequestStorage.
func (s *storage) DeletePKCERequestSession(ctx context.Context, sig string) error {
	return s.delete(ctx, store.OAuthPKCE, sig)
}

// CreateAccessTokenSession implements oauth2.AccessTokenStorage.
func (s *storage) CreateAccessTokenSession(ctx context.Context, sig string, r fosite.Requester) error {
	return s.create(ctx, store.OAuthAccessToken, sig, r)
}

// GetAccessTokenSession implements oauth2.AccessTokenStorage.
func (s *storage) GetAccessTokenSession(ctx context.Context, sig string, session fosite.Session) (fosite.Requester, error) {
	return s.get(ctx, store.OAuthAccessToken, sig, session, fosite.ErrInactiveToken)
}

// DeleteAccessTokenSession implements oauth2.AccessTokenStorage. The token is revoked rather than
// forgotten, so satellites stop accepting it too.
func (s *storage) DeleteAccessTokenSession(ctx context.Context, sig string) error {
	key, err := hex.DecodeString(sig)
	if err != nil {
		return fosite.ErrNotFound
	}
	t, err := s.store.OAuthToken(ctx, store.OAuthAccessToken, key)
	if errors.Is(err, store.ErrNotFound) {
		return fosite.ErrNotFound
	} else if err != nil {
		return err
	}
	return s.store.RevokeOAuthGrant(ctx, t.RequestID, store.OAuthAccessToken)
}

// CreateRefreshTokenSession implements oauth2.RefreshTokenStorage.
func (s *storage) CreateRefreshTokenSession(ctx context.Context, sig string, _ string, r fosite.Requester) error {
	return s.create(ctx, store.OAuthRefreshToken, sig, r)
}

// GetRefreshTokenSession implements oauth2.RefreshTokenStorage. A used or revoked refresh token comes back
// with fosite.ErrInactiveToken, which fosite treats as reuse and answers by revoking the whole grant.
func (s *storage) GetRefreshTokenSession(ctx context.Context, sig string, session fosite.Session) (fosite.Requester, error) {
	return s.get(ctx, store.OAuthRefreshToken, sig, session, fosite.ErrInactiveToken)
}

// DeleteRefreshTokenSession implements oauth2.RefreshTokenStorage; the token is kept inactive so a later
// use still counts as reuse.
func (s *storage) DeleteRefreshTokenSession(ctx context.Context, sig string) error {
	if err := s.deactivate(ctx, store.OAuthRefreshToken, sig); err != nil && !errors.Is(err, fosite.ErrNotFound) {
		return err
	}
	return nil
}

// RotateRefreshToken implements oauth2.RefreshTokenStorage: the used refresh token becomes inactive. Access
// tokens already issued stay valid until they expire, since clients may still be using them.
func (s *storage) RotateRefreshToken(ctx context.Context, _ string, sig string) error {
	return s.deactivate(ctx, store.OAuthRefreshToken, sig)
}

// RevokeRefreshToken implements oauth2.TokenRevocationStorage: every refresh token of the grant.
func (s *storage) RevokeRefreshToken(ctx context.Context, requestID string) error {
	return s.store.RevokeOAuthGrant(ctx, requestID, store.OAuthRefreshToken)
}

// RevokeAccessToken implements oauth2.TokenRevocationStorage: every access token of the grant.
func (s *storage) RevokeAccessToken(ctx context.Context, requestID string) error {
	return s.store.RevokeOAuthGrant(ctx, requestID, store.OAuthAccessToken)
}

// GrantDetails reads the scopes and audience of a stored grant.
func GrantDetails(raw []byte) (scopes []string, audience string) {
	var sr storedRequest
	if json.Unmarshal(raw, &sr) != nil {
		return nil, ""
	}
	if len(sr.GrantedAudience) > 0 {
		audience = sr.GrantedAudience[0]
	}
	return sr.GrantedScope, audience
}
