package oauth

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"

	"github.com/orrery/orrery/services/controlplane/internal/bearer"
)

// Prefixes of the authorization server's codes and refresh tokens; access tokens use bearer.AccessToken,
// so satellites see one kind of access token whatever issued it.
const (
	codePrefix    = "orac_"
	refreshPrefix = "orrt_"
)

// strategy makes codes and tokens as random bearer strings whose signature, the key they are stored
// under, is the hex SHA-256 of the whole value: the same hash satellites look access tokens up by. It
// replaces fosite's HMAC strategy, whose signature covers only part of the token.
type strategy struct {
	now func() time.Time
}

var _ oauth2.CoreStrategy = strategy{}

func signature(token string) string { return hex.EncodeToString(bearer.Hash(token)) }

func (s strategy) generate(kind string) (string, string, error) {
	token, err := bearer.New(kind)
	if err != nil {
		return "", "", fmt.Errorf("generate token: %w", err)
	}
	return token, signature(token), nil
}

// validate checks a token's kind and that its grant has not expired for it.
func (s strategy) validate(r fosite.Requester, tokenType fosite.TokenType, token, kind string, expired *fosite.RFC6749Error) error {
	if !strings.HasPrefix(token, kind) {
		return fosite.ErrInvalidTokenFormat
	}
	exp := r.GetSession().GetExpiresAt(tokenType)
	if !exp.IsZero() && !s.now().Before(exp) {
		return expired
	}
	return nil
}

func (s strategy) AccessTokenSignature(_ context.Context, token string) string {
	return signature(token)
}

func (s strategy) GenerateAccessToken(context.Context, fosite.Requester) (string, string, error) {
	return s.generate(bearer.AccessToken)
}

func (s strategy) ValidateAccessToken(_ context.Context, r fosite.Requester, token string) error {
	return s.validate(r, fosite.AccessToken, token, bearer.AccessToken,
		fosite.ErrTokenExpired.WithHint("The access token expired."))
}

func (s strategy) RefreshTokenSignature(_ context.Context, token string) string {
	return signature(token)
}

func (s strategy) GenerateRefreshToken(context.Context, fosite.Requester) (string, string, error) {
	return s.generate(refreshPrefix)
}

func (s strategy) ValidateRefreshToken(_ context.Context, r fosite.Requester, token string) error {
	return s.validate(r, fosite.RefreshToken, token, refreshPrefix,
		fosite.ErrTokenExpired.WithHint("The refresh token expired."))
}

func (s strategy) AuthorizeCodeSignature(_ context.Context, token string) string {
	return signature(token)
}

func (s strategy) GenerateAuthorizeCode(context.Context, fosite.Requester) (string, string, error) {
	return s.generate(codePrefix)
}

func (s strategy) ValidateAuthorizeCode(_ context.Context, r fosite.Requester, token string) error {
	return s.validate(r, fosite.AuthorizeCode, token, codePrefix,
		fosite.ErrTokenExpired.WithHint("The authorization code expired."))
}
