package oauth

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"slices"
	"time"

	"connectrpc.com/connect"
	"github.com/ory/fosite"

	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/bearer"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// csrfCookie carries the token the login and consent forms must echo. Paired with SameSite=Strict it
// keeps other sites from submitting the forms for a signed-in user.
const csrfCookie = "orrery_oauth_csrf"

// placeholderState stands in for a missing state while fosite validates a request.
const placeholderState = "orrery-no-state"

// authorize serves the authorization endpoint. GET validates the request and shows the login or consent
// page, or answers at once when the user already consented; POST receives those pages' forms. The OAuth
// parameters always travel in the URL's query, so both pages post back to the same URL.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	// Fosite sees only the query: the page's fields (a password, among others) are not OAuth parameters
	// and must never be stored with a grant.
	query := r.URL.Query()
	query.Del("audience")
	// PKCE is what protects the flow against CSRF (OAuth 2.1, section 7.5.1), and MCP clients such as the
	// TypeScript SDK send no state, but fosite refuses a state shorter than 8 characters, missing included.
	// A request without one is validated with a placeholder, which is dropped again at once.
	noState := query.Get("state") == ""
	if noState {
		query.Set("state", placeholderState)
	}
	oauthReq, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.Issuer+"/oauth/authorize?"+query.Encode(), nil)
	if err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	ar, err := s.provider.NewAuthorizeRequest(ctx, oauthReq)
	if a, ok := ar.(*fosite.AuthorizeRequest); ok && noState {
		a.State = ""
	}
	if err != nil {
		s.writeAuthorizeError(ctx, w, ar, err)
		return
	}
	if query.Get("code_challenge") == "" || query.Get("code_challenge_method") != "S256" {
		s.provider.WriteAuthorizeError(ctx, w, ar, fosite.ErrInvalidRequest.WithHint("PKCE with code_challenge_method S256 is required."))
		return
	}
	resources := query["resource"]
	if len(resources) != 1 {
		s.provider.WriteAuthorizeError(ctx, w, ar, errInvalidTarget("Name exactly one team endpoint as the resource."))
		return
	}
	// The control plane's own API is the one resource that is not a team endpoint (see authorizeAPI).
	apiRequest := resources[0] == s.APIResource()
	var res resource
	if !apiRequest {
		res, err = s.resolveResource(ctx, resources[0])
		if errors.Is(err, errUnknownResource) {
			s.provider.WriteAuthorizeError(ctx, w, ar, errInvalidTarget("The resource is not a team endpoint this server issues tokens for."))
			return
		}
		if err != nil {
			s.serverError(ctx, w, ar, "resolve resource", err)
			return
		}
	} else if ar.GetClient().GetID() != CLIClientID {
		s.provider.WriteAuthorizeError(ctx, w, ar, errInvalidTarget("Only orreryctl may ask for the control plane's API."))
		return
	}
	cl, _ := ar.GetClient().(*client)

	csrf := s.csrfToken(w, r)
	p := &pageData{
		Action: r.URL.RequestURI(), CSRF: csrf, ClientName: clientName(ar.GetClient()), ClientID: ar.GetClient().GetID(),
		RedirectHost: ar.GetRedirectURI().Host, Scopes: describeScopes(ar.GetRequestedScopes()), Resource: resources[0],
		IdleDays: days(s.cfg.RefreshTokenTTL), MaxDays: days(s.cfg.GrantMaxAge),
	}
	if cl != nil && cl.metadataDocument {
		p.ClientNote = "This client is described by a document at " + cl.id + "."
	}

	user, hasUser := s.sessionUser(ctx, r)
	if !hasUser {
		p.SignInLinks = s.signInLinks(ctx, r.URL.RequestURI())
	}
	if r.Method == http.MethodPost {
		if !readPageForm(w, r, csrf) {
			return
		}
		switch r.PostForm.Get("action") {
		case "login":
			u, status, problem, err := s.signIn(ctx, w, r)
			if err != nil {
				s.serverError(ctx, w, ar, "start session", err)
				return
			}
			if problem != "" {
				p.Error = problem
				s.render(w, status, loginPage, p)
				return
			}
			user, hasUser = u, true
		case "deny":
			if !hasUser {
				s.render(w, http.StatusUnauthorized, loginPage, p)
				return
			}
			s.provider.WriteAuthorizeError(ctx, w, ar, fosite.ErrAccessDenied.WithHint("The user denied the request."))
			return
		case "approve":
			if !hasUser {
				s.render(w, http.StatusUnauthorized, loginPage, p)
				return
			}
			if apiRequest {
				s.authorizeAPI(ctx, w, r, ar, user, p)
				return
			}
			s.approve(ctx, w, r, ar, res, user, p)
			return
		default:
			http.Error(w, "unknown action", http.StatusBadRequest)
			return
		}
	}
	if !hasUser {
		s.render(w, http.StatusOK, loginPage, p)
		return
	}
	if apiRequest {
		s.authorizeAPI(ctx, w, r, ar, user, p)
		return
	}
	s.consent(ctx, w, ar, res, user, p)
}

// readPageForm reads a form posted from one of the pages and checks its CSRF token, answering the request
// itself when either fails.
func readPageForm(w http.ResponseWriter, r *http.Request, csrf string) bool {
	if tooLarge, err := parseForm(w, r); tooLarge {
		http.Error(w, "the form is too large", http.StatusRequestEntityTooLarge)
		return false
	} else if err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return false
	}
	if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(csrf)) != 1 || csrf == "" {
		http.Error(w, "the form expired; go back and reload the page", http.StatusForbidden)
		return false
	}
	return true
}

// signIn checks the email and password of a posted login form and starts a browser session. A refusal
// is the status and the message for the login page; err is a failure of the server's own.
func (s *Server) signIn(ctx context.Context, w http.ResponseWriter, r *http.Request) (store.User, int, string, error) {
	u, err := s.accounts.CheckPassword(ctx, r.PostForm.Get("email"), r.PostForm.Get("password"), r.RemoteAddr)
	if ce := new(connect.Error); errors.As(err, &ce) &&
		(ce.Code() == connect.CodeResourceExhausted || ce.Code() == connect.CodeUnavailable) {
		if after := ce.Meta().Get("Retry-After"); after != "" {
			w.Header().Set("Retry-After", after)
		}
		if ce.Code() == connect.CodeResourceExhausted {
			return store.User{}, http.StatusTooManyRequests, "Too many sign-in attempts right now. Wait a little and try again.", nil
		}
		return store.User{}, http.StatusServiceUnavailable, "Signing in is not possible right now. Wait a little and try again.", nil
	}
	if ce := new(connect.Error); errors.As(err, &ce) && ce.Code() == connect.CodeFailedPrecondition {
		return store.User{}, http.StatusForbidden, "Password sign-in is turned off for your email domain. Sign in through your organisation below.", nil
	}
	if err != nil {
		return store.User{}, http.StatusUnauthorized, "Wrong email or password, or the account is locked.", nil
	}
	cookie, err := s.accounts.StartSession(ctx, u.ID)
	if err != nil {
		return store.User{}, 0, "", err
	}
	http.SetCookie(w, cookie)
	return u, 0, "", nil
}

// consent answers at once when the user already consented to this client using these scopes in the
// resource's team, and otherwise shows the consent page, where the user may pick another of their teams
// the same satellite serves; the token's audience follows the team picked.
func (s *Server) consent(ctx context.Context, w http.ResponseWriter, ar fosite.AuthorizeRequester, res resource, user store.User, p *pageData) {
	teams, err := s.eligibleTeams(ctx, user, res)
	if err != nil {
		s.serverError(ctx, w, ar, "list teams", err)
		return
	}
	p.User = user.Email
	if !slices.ContainsFunc(teams, func(t store.Team) bool { return t.ID == res.team.ID }) {
		// The same refusal whether the team exists or not: the user learns nothing about other teams.
		s.provider.WriteAuthorizeError(ctx, w, ar, errInvalidTarget("The resource is not an endpoint of a team you belong to."))
		return
	}
	c, err := s.store.OAuthConsent(ctx, user.ID, ar.GetClient().GetID(), res.team.ID)
	if err == nil && isSubset(ar.GetRequestedScopes(), c.Scopes) {
		s.issueCode(ctx, w, ar, res.team, res.endpoint(res.team.Slug), user)
		return
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.serverError(ctx, w, ar, "get consent", err)
		return
	}
	for _, t := range teams {
		p.Teams = append(p.Teams, teamOption{ID: t.ID.String(), Label: teamLabel(t), Selected: t.ID == res.team.ID})
	}
	s.render(w, http.StatusOK, consentPage, p)
}

// approve records the user's consent for the team they picked and issues a code bound to that team's
// endpoint on the satellite the resource named.
func (s *Server) approve(ctx context.Context, w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, res resource, user store.User, p *pageData) {
	teams, err := s.eligibleTeams(ctx, user, res)
	if err != nil {
		s.serverError(ctx, w, ar, "list teams", err)
		return
	}
	if !slices.ContainsFunc(teams, func(t store.Team) bool { return t.ID == res.team.ID }) {
		s.provider.WriteAuthorizeError(ctx, w, ar, errInvalidTarget("The resource is not an endpoint of a team you belong to."))
		return
	}
	i := slices.IndexFunc(teams, func(t store.Team) bool { return t.ID.String() == r.PostForm.Get("team") })
	if i < 0 {
		p.Error = "Pick one of your teams."
		s.consent(ctx, w, ar, res, user, p)
		return
	}
	team := teams[i]
	if err := s.store.SaveOAuthConsent(ctx, store.OAuthConsent{
		UserID: user.ID, ClientID: ar.GetClient().GetID(), TeamID: team.ID, Scopes: ar.GetRequestedScopes(),
	}); err != nil {
		s.serverError(ctx, w, ar, "save consent", err)
		return
	}
	s.audit(ctx, store.AuditEvent{
		ActorID: &user.ID, Actor: user.Email, TeamID: &team.ID, Action: "oauth.consent", Target: ar.GetClient().GetID(),
	})
	s.issueCode(ctx, w, ar, team, res.endpoint(team.Slug), user)
}

// issueCode grants the requested scopes for audience and redirects to the client with a code and, per
// RFC 9207, the issuer.
func (s *Server) issueCode(ctx context.Context, w http.ResponseWriter, ar fosite.AuthorizeRequester, team store.Team, audience string, user store.User) {
	for _, scope := range ar.GetRequestedScopes() {
		ar.GrantScope(scope)
	}
	// Requested as well as granted: fosite carries the requested audience into the token request, where
	// the resource parameter is checked against it.
	ar.SetRequestedAudience(fosite.Arguments{audience})
	ar.GrantAudience(audience)
	session := &Session{UserID: user.ID.String(), UserSlug: user.Slug, TeamID: team.ID.String(), TeamSlug: team.Slug,
		AuthTime: s.cfg.Now().UTC()}
	resp, err := s.provider.NewAuthorizeResponse(ctx, ar, session)
	if err != nil {
		s.writeAuthorizeError(ctx, w, ar, err)
		return
	}
	if ar.GetState() == "" {
		resp.GetParameters().Del("state")
	}
	resp.AddParameter("iss", s.cfg.Issuer)
	s.provider.WriteAuthorizeResponse(ctx, w, ar, resp)
}

// eligibleTeams are the user's teams whose endpoint the resource's satellite serves.
func (s *Server) eligibleTeams(ctx context.Context, user store.User, res resource) ([]store.Team, error) {
	memberships, err := s.store.Memberships(ctx, user.ID)
	if err != nil {
		return nil, err
	}
	var out []store.Team
	for _, m := range memberships {
		served, err := s.endpointServed(ctx, res.base, m.Team.ID)
		if err != nil {
			return nil, err
		}
		if served {
			out = append(out, m.Team)
		}
	}
	return out, nil
}

// sessionUser is the user signed in with the browser's session cookie.
func (s *Server) sessionUser(ctx context.Context, r *http.Request) (store.User, bool) {
	c, err := r.Cookie(access.SessionCookie)
	if err != nil || c.Value == "" {
		return store.User{}, false
	}
	user, _, err := s.store.SessionUser(ctx, bearer.Hash(c.Value))
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.logger.ErrorContext(ctx, "look up session", "error", err)
		}
		return store.User{}, false
	}
	return user, true
}

// csrfToken returns the browser's CSRF token, giving it one when it has none.
func (s *Server) csrfToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) >= 32 {
		return c.Value
	}
	if r.Method == http.MethodPost {
		return "" // a form posted without its cookie is refused
	}
	token, err := bearer.New("")
	if err != nil {
		return ""
	}
	http.SetCookie(w, &http.Cookie{
		Name: csrfCookie, Value: token, Path: "/oauth/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: s.secureCookies(),
	})
	return token
}

func (s *Server) secureCookies() bool { return len(s.cfg.Issuer) > 8 && s.cfg.Issuer[:8] == "https://" }

// serverError logs err and answers server_error without its detail, or temporarily_unavailable when the
// failure is passing.
func (s *Server) serverError(ctx context.Context, w http.ResponseWriter, ar fosite.AuthorizeRequester, what string, err error) {
	if t, ok := s.temporary(ctx, w, "authorize: "+what, err); ok {
		s.provider.WriteAuthorizeError(ctx, w, ar, t)
		return
	}
	s.logger.ErrorContext(ctx, "authorize: "+what, "error", err)
	s.provider.WriteAuthorizeError(ctx, w, ar, fosite.ErrServerError)
}

// writeAuthorizeError answers a failed authorization request, a passing failure as temporarily_unavailable:
// fosite reports a client it could not look up as invalid_client.
func (s *Server) writeAuthorizeError(ctx context.Context, w http.ResponseWriter, ar fosite.AuthorizeRequester, err error) {
	if t, ok := s.temporary(ctx, w, "authorize", err); ok {
		err = t
	} else {
		s.logFailure(ctx, "authorize", err)
	}
	s.provider.WriteAuthorizeError(ctx, w, ar, err)
}

// logFailure logs an error of the authorization server's own, with the detail fosite keeps from clients.
func (s *Server) logFailure(ctx context.Context, endpoint string, err error) {
	rfc := fosite.ErrorToRFC6749Error(err)
	if rfc.CodeField >= http.StatusInternalServerError {
		s.logger.ErrorContext(ctx, endpoint+" failed", "error", rfc.ErrorField, "debug", rfc.DebugField, "cause", rfc.Unwrap())
	}
}

// audit appends to the audit log; a failure is logged, since the action it records has already happened.
func (s *Server) audit(ctx context.Context, e store.AuditEvent) {
	if err := s.store.Audit(ctx, e); err != nil {
		s.logger.ErrorContext(ctx, "write audit log", "action", e.Action, "error", err)
	}
}

func isSubset(sub, of []string) bool {
	for _, x := range sub {
		if !slices.Contains(of, x) {
			return false
		}
	}
	return true
}

func teamLabel(t store.Team) string {
	if t.Name != "" && t.Name != t.Slug {
		return t.Name + " (" + t.Slug + ")"
	}
	return t.Slug
}

// days is d in whole days, rounded up, for the pages.
func days(d time.Duration) int { return int((d + 24*time.Hour - 1) / (24 * time.Hour)) }
