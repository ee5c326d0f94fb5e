package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/ory/fosite"

	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// maxFormBytes bounds the form bodies of the token, revocation, introspection and authorization endpoints.
const maxFormBytes = 64 << 10

// parseForm parses r's form, reading at most maxFormBytes of its body; tooLarge reports a larger body, which
// the caller answers with 413 (writeFormTooLarge).
func parseForm(w http.ResponseWriter, r *http.Request) (tooLarge bool, err error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	err = r.ParseForm()
	var maxBytesErr *http.MaxBytesError
	return errors.As(err, &maxBytesErr), err
}

// writeFormTooLarge answers a form larger than maxFormBytes with the JSON error of RFC 6749, section 5.2.
func writeFormTooLarge(w http.ResponseWriter) {
	writeJSON(w, http.StatusRequestEntityTooLarge, &registrationError{Code: "invalid_request",
		Description: fmt.Sprintf("the form is larger than %d bytes", maxFormBytes)})
}

// token serves the token endpoint: authorization codes, refresh tokens and client credentials.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if tooLarge, err := parseForm(w, r); tooLarge {
		writeFormTooLarge(w)
		return
	} else if err != nil {
		s.provider.WriteAccessError(ctx, w, fosite.NewAccessRequest(&Session{}), fosite.ErrInvalidRequest.WithHint("The body is not a form."))
		return
	}
	// Audiences come only from the resource parameter (see New).
	r.PostForm.Del("audience")
	r.Form.Del("audience")
	session := &Session{}
	ar, err := s.provider.NewAccessRequest(ctx, r, session)
	if err != nil {
		s.writeAccessError(ctx, w, ar, "token", err)
		return
	}
	resources := r.PostForm["resource"]
	if len(resources) > 1 {
		s.provider.WriteAccessError(ctx, w, ar, errInvalidTarget("Name at most one team endpoint as the resource."))
		return
	}
	if ar.GetGrantTypes().ExactOne(grantClientCredentials) {
		if err := s.clientCredentials(ctx, ar, resources); err != nil {
			s.writeAccessError(ctx, w, ar, "token", err)
			return
		}
	} else if len(resources) == 1 && !ar.GetRequestedAudience().Has(resources[0]) {
		// The code or refresh token was bound to one endpoint at authorization; it buys nothing else.
		s.provider.WriteAccessError(ctx, w, ar, errInvalidTarget("The resource differs from the one the grant was authorized for."))
		return
	}
	// A grant acts for a member of its team; one who has left gets nothing more, whatever they hold.
	if err := s.checkMembership(ctx, ar.GetSession().(*Session)); err != nil {
		s.writeAccessError(ctx, w, ar, "token", err)
		return
	}
	if err := s.boundLifetime(ar); err != nil {
		s.writeAccessError(ctx, w, ar, "token", err)
		return
	}
	resp, err := s.provider.NewAccessResponse(ctx, ar)
	if err != nil {
		s.writeAccessError(ctx, w, ar, "token", err)
		return
	}
	s.provider.WriteAccessResponse(ctx, w, ar, resp)
}

// clientCredentials binds a client-credentials grant to the client's team: the resource must be that
// team's endpoint, and the token acts as the client's service user.
func (s *Server) clientCredentials(ctx context.Context, ar fosite.AccessRequester, resources []string) error {
	cl, ok := ar.GetClient().(*client)
	if !ok || cl.teamID == nil || cl.serviceUserID == nil {
		return fosite.ErrUnauthorizedClient.WithHint("Only a team's confidential clients may use client credentials.")
	}
	if len(resources) != 1 {
		return errInvalidTarget("Name the team endpoint as the resource.")
	}
	res, err := s.resolveResource(ctx, resources[0])
	if errors.Is(err, errUnknownResource) || (err == nil && res.team.ID != *cl.teamID) {
		return errInvalidTarget("The resource is not an endpoint of the client's team.")
	}
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	session := ar.GetSession().(*Session)
	session.TeamID, session.TeamSlug = res.team.ID.String(), res.team.Slug
	session.UserID = cl.serviceUserID.String()
	scopes := ar.GetRequestedScopes()
	if len(scopes) == 0 {
		scopes = cl.scopes
	}
	for _, scope := range scopes {
		if scope != ScopeOfflineAccess {
			ar.GrantScope(scope)
		}
	}
	ar.GrantAudience(res.endpoint(res.team.Slug))
	return nil
}

// boundLifetime stamps the expiries of the tokens about to be issued and keeps a grant within
// Config.GrantMaxAge of the user's consent: a refresh after it is refused, and no token outlives it. Each
// refresh token otherwise lives Config.RefreshTokenTTL from its issue, so an idle client is signed out
// sooner, and one in use stays connected until the maximum age.
func (s *Server) boundLifetime(ar fosite.AccessRequester) error {
	session := ar.GetSession().(*Session)
	// fosite stamps expiries with the wall clock; the server's own clock decides.
	now := s.cfg.Now().UTC()
	session.SetExpiresAt(fosite.AccessToken, now.Add(s.cfg.AccessTokenTTL).Round(time.Second))
	if ar.GetGrantTypes().ExactOne(grantClientCredentials) {
		return nil // no refresh token, and each token is a new grant
	}
	if session.AuthTime.IsZero() {
		session.AuthTime = now
	}
	end := session.AuthTime.Add(s.cfg.GrantMaxAge)
	if !now.Before(end) {
		return fosite.ErrInvalidGrant.WithHint("The grant reached its maximum age; authorize again.")
	}
	session.SetExpiresAt(fosite.RefreshToken, now.Add(s.cfg.RefreshTokenTTL).Round(time.Second))
	for _, kind := range []fosite.TokenType{fosite.AccessToken, fosite.RefreshToken} {
		if session.GetExpiresAt(kind).After(end) {
			session.SetExpiresAt(kind, end)
		}
	}
	return nil
}

// checkMembership refuses a grant whose user is no longer a member of its team.
func (s *Server) checkMembership(ctx context.Context, session *Session) error {
	teamID, err1 := uuid.Parse(session.TeamID)
	userID, err2 := uuid.Parse(session.UserID)
	if err1 != nil || err2 != nil {
		return fosite.ErrInvalidGrant.WithHint("The grant names no team member.")
	}
	_, err := s.store.TeamRole(ctx, teamID, userID)
	if errors.Is(err, store.ErrNotFound) {
		return fosite.ErrInvalidGrant.WithHint("The user is no longer a member of the team.")
	}
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	return nil
}

// revoke serves RFC 7009 revocation. Revoking a refresh token ends its whole grant.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	// Parsed here, as fosite would, to tell a body too large from one that is not a form.
	if tooLarge, _ := parseForm(w, r); tooLarge {
		writeFormTooLarge(w)
		return
	}
	err := s.provider.NewRevocationRequest(ctx, r)
	// fosite answers any error but invalid_request and invalid_client with 200, as if the token were revoked.
	if t, ok := s.temporary(ctx, w, "revoke", err); ok {
		s.provider.WriteAccessError(ctx, w, fosite.NewAccessRequest(&Session{}), t)
		return
	}
	s.provider.WriteRevocationResponse(ctx, w, err)
}

// introspectionResponse is an RFC 7662 answer.
type introspectionResponse struct {
	Active    bool     `json:"active"`
	Scope     string   `json:"scope,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	Username  string   `json:"username,omitempty"`
	TokenType string   `json:"token_type,omitempty"`
	Exp       int64    `json:"exp,omitempty"`
	Iat       int64    `json:"iat,omitempty"`
	Sub       string   `json:"sub,omitempty"`
	Aud       []string `json:"aud,omitempty"`
	Iss       string   `json:"iss,omitempty"`
	TeamID    string   `json:"team_id,omitempty"`
	TeamSlug  string   `json:"team_slug,omitempty"`
}

// introspect serves RFC 7662 introspection to confidential clients, about their own tokens: anything else
// is reported inactive, so the endpoint cannot be used to probe tokens. Satellites introspect through
// SatelliteService.IntrospectToken with their API key.
func (s *Server) introspect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if tooLarge, err := parseForm(w, r); tooLarge {
		writeFormTooLarge(w)
		return
	} else if err != nil {
		s.provider.WriteIntrospectionError(ctx, w, fosite.ErrInvalidRequest.WithHint("The body is not a form."))
		return
	}
	caller, err := s.fosite.AuthenticateClient(ctx, r, r.PostForm)
	if err != nil {
		// fosite would answer temporarily_unavailable with {"active": false}, which reads as a dead token.
		if t, ok := s.temporary(ctx, w, "introspect", err); ok {
			s.provider.WriteAccessError(ctx, w, fosite.NewAccessRequest(&Session{}), t)
			return
		}
	}
	if err != nil || caller.IsPublic() {
		w.Header().Set("WWW-Authenticate", `Basic realm="orrery"`)
		s.provider.WriteIntrospectionError(ctx, w, fosite.ErrRequestUnauthorized.WithHint("Authenticate as a confidential client."))
		return
	}
	token := r.PostForm.Get("token")
	if token == "" {
		s.provider.WriteIntrospectionError(ctx, w, fosite.ErrInvalidRequest.WithHint("The token parameter is missing."))
		return
	}
	out := introspectionResponse{}
	use, ar, err := s.provider.IntrospectToken(ctx, token, fosite.TokenUse(r.PostForm.Get("token_type_hint")), &Session{})
	if t, ok := s.temporary(ctx, w, "introspect", err); ok {
		s.provider.WriteAccessError(ctx, w, fosite.NewAccessRequest(&Session{}), t)
		return
	}
	if err == nil && ar.GetClient().GetID() == caller.GetID() {
		session := ar.GetSession().(*Session)
		exp := session.GetExpiresAt(use)
		out = introspectionResponse{
			Active: true, Scope: strings.Join(ar.GetGrantedScopes(), " "), ClientID: ar.GetClient().GetID(),
			Username: session.UserSlug, TokenType: string(use), Sub: session.UserID, Aud: ar.GetGrantedAudience(),
			Iss: s.cfg.Issuer, Iat: ar.GetRequestedAt().Unix(), TeamID: session.TeamID, TeamSlug: session.TeamSlug,
		}
		if !exp.IsZero() {
			out.Exp = exp.Unix()
		}
		if use == fosite.AccessToken {
			out.TokenType = "Bearer"
		}
	} else if err != nil && !errors.Is(err, fosite.ErrInactiveToken) && !errors.Is(err, fosite.ErrTokenExpired) &&
		!errors.Is(err, fosite.ErrNotFound) && !errors.Is(err, fosite.ErrRequestUnauthorized) &&
		!errors.Is(err, fosite.ErrUnknownRequest) && !errors.Is(err, fosite.ErrInvalidTokenFormat) {
		s.logger.WarnContext(ctx, "introspect token", "error", err)
	}
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	if w.Header().Get("Cache-Control") == "" {
		w.Header().Set("Cache-Control", "no-store")
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
