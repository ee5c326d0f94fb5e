package sso

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/orrery/orrery/services/controlplane/internal/bearer"
	"github.com/orrery/orrery/services/controlplane/internal/htmlpage"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// stateCookie binds a sign-in to the browser that started it, so that nobody can finish their own sign-in
// in someone else's browser by sending them the callback link. SameSite=Lax: the provider's redirect back
// is a cross-site top-level GET.
const stateCookie = "orrery_sso_state"

// maxCodeLength bounds the authorization code a provider sends back; real ones are far shorter.
const maxCodeLength = 4096

// maxReturnLength bounds the path a sign-in returns to, an OAuth authorization request included.
const maxReturnLength = 4096

// Register mounts the sign-in endpoints on mux.
func (s *Service) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /sso/{provider}/start", s.start)
	mux.HandleFunc("GET /sso/callback", s.callback)
}

// SignInLink is a "Sign in with" button of a sign-in page.
type SignInLink struct {
	DisplayName string
	URL         string
}

// SignInLinks lists the providers' buttons for a page that wants the person back at returnTo, a path of
// the control plane. A failure is logged and offers no buttons: password sign-in still works.
func (s *Service) SignInLinks(ctx context.Context, returnTo string) []SignInLink {
	providers, err := s.store.ListSSOProviders(ctx)
	if err != nil {
		s.logger.ErrorContext(ctx, "list identity providers", "error", err)
		return nil
	}
	out := make([]SignInLink, 0, len(providers))
	for _, p := range providers {
		out = append(out, SignInLink{DisplayName: p.DisplayName, URL: StartPath(p.Slug, returnTo)})
	}
	return out
}

// StartPath is where a sign-in through the provider slug starts; returnTo may be empty.
func StartPath(slug, returnTo string) string {
	p := "/sso/" + url.PathEscape(slug) + "/start"
	if returnTo != "" {
		p += "?" + url.Values{"return": {returnTo}}.Encode()
	}
	return p
}

// safeReturn accepts only a path of this host: anything else would make the sign-in an open redirect.
func safeReturn(r string) (string, bool) {
	if r == "" {
		return "/", true
	}
	if len(r) > maxReturnLength || !strings.HasPrefix(r, "/") || strings.HasPrefix(r, "//") || strings.ContainsAny(r, "\\\r\n") {
		return "", false
	}
	u, err := url.Parse(r)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "", false
	}
	return r, true
}

// start sends the browser to the provider with a fresh state, nonce and PKCE challenge.
func (s *Service) start(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	returnTo, ok := safeReturn(r.URL.Query().Get("return"))
	if !ok {
		s.page(w, http.StatusBadRequest, "The return address must be a path of this site.")
		return
	}
	ok, _, err := s.starts.Allow(ctx, r.RemoteAddr)
	if err != nil {
		s.fail(ctx, w, "rate limit", err)
		return
	}
	if !ok {
		w.Header().Set("Retry-After", "60")
		s.page(w, http.StatusTooManyRequests, "Too many sign-ins from your address right now. Wait a minute and try again.")
		return
	}
	p, err := s.store.SSOProviderBySlug(ctx, r.PathValue("provider"))
	if errors.Is(err, store.ErrNotFound) {
		s.page(w, http.StatusNotFound, "There is no such sign-in provider.")
		return
	}
	if err != nil {
		s.fail(ctx, w, "get provider", err)
		return
	}
	op, err := s.discover(s.httpContext(ctx), p.Issuer)
	if err != nil {
		s.logger.WarnContext(ctx, "sign-in provider unreachable", "provider", p.Slug, "error", err)
		s.page(w, http.StatusBadGateway, "The sign-in provider cannot be reached right now. Try again later, or sign in another way.")
		return
	}
	state, err1 := bearer.New("")
	nonce, err2 := bearer.New("")
	if err := errors.Join(err1, err2); err != nil {
		s.fail(ctx, w, "make state", err)
		return
	}
	verifier := oauth2.GenerateVerifier()
	if err := s.store.SaveSSOLoginState(ctx, store.SSOLoginState{
		StateHash: bearer.Hash(state), ProviderID: p.ID, Nonce: nonce, CodeVerifier: verifier, ReturnTo: returnTo,
		ExpiresAt: s.cfg.Now().Add(s.cfg.StateTTL),
	}); err != nil {
		s.fail(ctx, w, "save state", err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: stateCookie, Value: state, Path: "/sso/", MaxAge: int(s.cfg.StateTTL.Seconds()),
		HttpOnly: true, Secure: strings.HasPrefix(s.cfg.BaseURL, "https://"), SameSite: http.SameSiteLaxMode})
	target := s.oauthConfig(p, op).AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier))
	http.Redirect(w, r, target, http.StatusFound)
}

// callback finishes a sign-in: it takes the state once, exchanges the code, verifies the ID token, finds or
// creates the account, reconciles its memberships and starts a session.
func (s *Service) callback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	state := q.Get("state")
	if len(q.Get("code")) > maxCodeLength {
		s.page(w, http.StatusBadRequest, "The sign-in provider's answer is too large.")
		return
	}
	cookie, _ := r.Cookie(stateCookie)
	http.SetCookie(w, &http.Cookie{Name: stateCookie, Path: "/sso/", MaxAge: -1, HttpOnly: true,
		Secure: strings.HasPrefix(s.cfg.BaseURL, "https://"), SameSite: http.SameSiteLaxMode})
	if state == "" || len(state) > 200 || cookie == nil || subtle.ConstantTimeCompare([]byte(cookie.Value), []byte(state)) != 1 {
		s.logger.WarnContext(ctx, "sso sign-in refused", "security_event", "sso_state_mismatch")
		s.page(w, http.StatusBadRequest, "This sign-in was not started in this browser. Start again from the sign-in page.")
		return
	}
	ls, err := s.store.ConsumeSSOLoginState(ctx, bearer.Hash(state))
	if errors.Is(err, store.ErrNotFound) {
		s.logger.WarnContext(ctx, "sso sign-in refused", "security_event", "sso_state_reused_or_expired")
		s.page(w, http.StatusBadRequest, "This sign-in link has expired or was already used. Start again from the sign-in page.")
		return
	}
	if err != nil {
		s.fail(ctx, w, "consume state", err)
		return
	}
	if e := q.Get("error"); e != "" {
		s.page(w, http.StatusForbidden, "The sign-in provider did not sign you in ("+truncate(e, 100)+").")
		return
	}
	p, err := s.store.SSOProvider(ctx, ls.ProviderID)
	if err != nil {
		s.fail(ctx, w, "get provider", err)
		return
	}
	hctx := s.httpContext(ctx)
	op, err := s.discover(hctx, p.Issuer)
	if err != nil {
		s.logger.WarnContext(ctx, "sign-in provider unreachable", "provider", p.Slug, "error", err)
		s.page(w, http.StatusBadGateway, "The sign-in provider cannot be reached right now. Try again later.")
		return
	}
	token, err := s.oauthConfig(p, op).Exchange(hctx, q.Get("code"), oauth2.VerifierOption(ls.CodeVerifier))
	if err != nil {
		s.logger.WarnContext(ctx, "sso code exchange failed", "provider", p.Slug, "error", err)
		s.page(w, http.StatusForbidden, "The sign-in provider did not accept the sign-in. Start again from the sign-in page.")
		return
	}
	rawID, _ := token.Extra("id_token").(string)
	idToken, err := s.verifier(p, op).Verify(hctx, rawID)
	if err != nil {
		// A key the provider does not publish, another audience, another issuer or an expired token.
		s.logger.WarnContext(ctx, "sso sign-in refused", "security_event", "sso_id_token_invalid", "provider", p.Slug, "error", err)
		s.page(w, http.StatusForbidden, "The sign-in provider's answer could not be verified.")
		return
	}
	if subtle.ConstantTimeCompare([]byte(idToken.Nonce), []byte(ls.Nonce)) != 1 {
		s.logger.WarnContext(ctx, "sso sign-in refused", "security_event", "sso_nonce_mismatch", "provider", p.Slug)
		s.page(w, http.StatusForbidden, "The sign-in provider's answer could not be verified.")
		return
	}
	c, err := s.claims(hctx, p, op, idToken, token)
	if err != nil {
		s.fail(ctx, w, "read claims", err)
		return
	}
	user, err := s.signIn(ctx, p, c, token.RefreshToken)
	if reason, ok := isRefused(err); ok {
		s.logger.WarnContext(ctx, "sso sign-in refused", "security_event", "sso_refused", "provider", p.Slug, "reason", reason)
		s.audit(ctx, store.AuditEvent{Actor: "anonymous", Action: "login.sso_refused", Target: p.Slug,
			Details: map[string]string{"reason": reason}})
		s.page(w, http.StatusForbidden, reason)
		return
	}
	if err != nil {
		s.fail(ctx, w, "sign in", err)
		return
	}
	session, err := s.sessions.StartSession(ctx, user.ID)
	if err != nil {
		s.fail(ctx, w, "start session", err)
		return
	}
	http.SetCookie(w, session)
	// The session cookie is SameSite=Strict, and a browser leaves it off every request of a redirect chain
	// that began at the provider's site: a page of our own site moves on instead.
	s.render(w, http.StatusOK, continuePage, ls.ReturnTo)
}

// claims are what a sign-in reads from the ID token, completed from the userinfo endpoint when the
// provider keeps email or groups there.
type claims struct {
	Subject       string
	Email         string
	EmailVerified bool
	Name          string
	Groups        []string
	HasGroups     bool
}

func (s *Service) claims(ctx context.Context, p store.SSOProvider, op *oidc.Provider, idToken *oidc.IDToken, token *oauth2.Token) (claims, error) {
	var raw map[string]json.RawMessage
	if err := idToken.Claims(&raw); err != nil {
		return claims{}, err
	}
	c := claims{Subject: idToken.Subject}
	readClaims(&c, raw, p.GroupsClaim)
	if (c.Email == "" || !c.HasGroups) && op.UserInfoEndpoint() != "" && token.AccessToken != "" {
		info, err := op.UserInfo(ctx, oauth2.StaticTokenSource(token))
		if err != nil {
			s.logger.WarnContext(ctx, "read userinfo", "provider", p.Slug, "error", err)
			return c, nil
		}
		if info.Subject != c.Subject {
			return c, nil // another person's answer (OpenID Connect Core 5.3.2): ignore it
		}
		var more map[string]json.RawMessage
		if err := info.Claims(&more); err != nil {
			return c, nil
		}
		if c.Email == "" {
			readEmail(&c, more)
		}
		if c.Name == "" {
			readName(&c, more)
		}
		if !c.HasGroups {
			readGroups(&c, more, p.GroupsClaim)
		}
	}
	return c, nil
}

func readClaims(c *claims, raw map[string]json.RawMessage, groupsClaim string) {
	readEmail(c, raw)
	readName(c, raw)
	readGroups(c, raw, groupsClaim)
}

func readName(c *claims, raw map[string]json.RawMessage) {
	var name string
	if json.Unmarshal(raw["name"], &name) == nil {
		c.Name = strings.TrimSpace(truncate(name, 200))
	}
}

func readEmail(c *claims, raw map[string]json.RawMessage) {
	var email string
	if json.Unmarshal(raw["email"], &email) != nil {
		return
	}
	c.Email = strings.TrimSpace(email)
	// Some providers send the flag as a string.
	var verified any
	_ = json.Unmarshal(raw["email_verified"], &verified)
	c.EmailVerified = verified == true || verified == "true"
}

// maxGroups bounds how many groups of a person are kept.
const maxGroups = 1000

func readGroups(c *claims, raw map[string]json.RawMessage, groupsClaim string) {
	v, ok := raw[groupsClaim]
	if !ok {
		return
	}
	var list []string
	if json.Unmarshal(v, &list) != nil {
		var one string
		if json.Unmarshal(v, &one) != nil {
			return
		}
		list = []string{one}
	}
	c.HasGroups = true
	c.Groups = list[:min(len(list), maxGroups)]
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// fail logs a failure of the server's own and answers without its detail.
func (s *Service) fail(ctx context.Context, w http.ResponseWriter, what string, err error) {
	s.logger.ErrorContext(ctx, "sso: "+what, "error", err)
	status := http.StatusInternalServerError
	if errors.Is(err, store.ErrUnavailable) {
		status = http.StatusServiceUnavailable
	}
	s.page(w, status, "Signing in failed on our side. Try again in a little while.")
}

func (s *Service) audit(ctx context.Context, e store.AuditEvent) {
	if err := s.store.Audit(ctx, e); err != nil {
		s.logger.ErrorContext(ctx, "write audit log", "action", e.Action, "error", err)
	}
}

const pageHead = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">`

const pageStyle = `<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}.error{color:#b00020}</style>`

var messagePage = template.Must(template.New("sso-message").Parse(pageHead + `<title>Sign in · Orrery</title>` + pageStyle + `</head>
<body><h1>Sign in</h1><p class="error">{{.}}</p><p><a href="/">Back to Orrery</a></p></body></html>`))

var continuePage = template.Must(template.New("sso-continue").Parse(pageHead +
	`<meta http-equiv="refresh" content="0;url={{.}}"><title>Signed in · Orrery</title>` + pageStyle + `</head>
<body><h1>Signed in</h1><p><a id="continue" href="{{.}}">Continue</a></p></body></html>`))

func (s *Service) page(w http.ResponseWriter, status int, message string) {
	s.render(w, status, messagePage, message)
}

func (s *Service) render(w http.ResponseWriter, status int, t *template.Template, data any) {
	if err := htmlpage.Write(w, status, t, data); err != nil {
		s.logger.Error("render page", "page", t.Name(), "error", err)
	}
}
