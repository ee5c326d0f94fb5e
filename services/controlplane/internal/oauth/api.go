package oauth

import (
	"context"
	"errors"
	"net/http"

	"github.com/ory/fosite"

	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// CLIClientID is orreryctl's client id, a public client seeded by migration so the binary needs no
// registration. It is the only client that may ask for the API resource: a token for it acts as the user in
// every one of their teams, which no third-party client should be able to ask for.
const CLIClientID = "orreryctl"

// ScopeAPI grants the control plane's API as the user, with the user's own rights.
const ScopeAPI = "api"

// APIResource is the RFC 8707 resource, and so the audience, of tokens for the control plane's own API: the
// issuer's URL. Team endpoints live on satellites under /teams/, so the two never meet.
func (s *Server) APIResource() string { return s.cfg.Issuer }

// grantKeeper is the team an API grant is stored under. Every token row belongs to a team; an API grant
// acts in all of the user's teams, so it is kept under the one team every user has and cannot leave, their
// personal team. Its audience, not this team, confines what the token reaches.
func (s *Server) grantKeeper(ctx context.Context, user store.User) (store.Team, error) {
	memberships, err := s.store.Memberships(ctx, user.ID)
	if err != nil {
		return store.Team{}, err
	}
	for _, m := range memberships {
		if m.Personal {
			return m.Team, nil
		}
	}
	return store.Team{}, errors.New("the user has no personal team")
}

// authorizeAPI continues an authorization request for the API resource once the user is known: with a
// remembered consent it answers at once, otherwise it shows the consent page, or records the consent the
// page's form gave.
func (s *Server) authorizeAPI(ctx context.Context, w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, user store.User, p *pageData) {
	if ar.GetClient().GetID() != CLIClientID {
		s.provider.WriteAuthorizeError(ctx, w, ar, errInvalidTarget("Only orreryctl may ask for the control plane's API."))
		return
	}
	team, err := s.grantKeeper(ctx, user)
	if err != nil {
		s.serverError(ctx, w, ar, "find personal team", err)
		return
	}
	approved := r.Method == http.MethodPost && r.PostForm.Get("action") == "approve"
	if approved {
		if err := s.store.SaveOAuthConsent(ctx, store.OAuthConsent{
			UserID: user.ID, ClientID: CLIClientID, TeamID: team.ID, Scopes: ar.GetRequestedScopes(),
		}); err != nil {
			s.serverError(ctx, w, ar, "save consent", err)
			return
		}
		s.audit(ctx, store.AuditEvent{ActorID: &user.ID, Actor: user.Email, Action: "oauth.consent", Target: CLIClientID})
	} else {
		c, err := s.store.OAuthConsent(ctx, user.ID, CLIClientID, team.ID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.serverError(ctx, w, ar, "get consent", err)
			return
		}
		approved = err == nil && isSubset(ar.GetRequestedScopes(), c.Scopes)
	}
	if !approved {
		p.User = user.Email
		s.render(w, http.StatusOK, apiConsentPage, p)
		return
	}
	s.issueCode(ctx, w, ar, team, s.APIResource(), user)
}
