package oauth

import (
	"context"
	"crypto/rand"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/orrery/orrery/services/controlplane/internal/bearer"
	"github.com/orrery/orrery/services/controlplane/internal/sso"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// The device authorization grant (RFC 8628) lets orreryctl sign in on a machine without a browser: it asks
// /oauth/device_authorization for a device code and a short user code, the user types the user code on
// /oauth/device in a browser anywhere and approves, and meanwhile the client polls the token endpoint with
// the device code. fosite v0.49 has no device grant, so this file adds it: the endpoint, the verification
// page, and a token endpoint handler composed into fosite beside its own.

// grantDeviceCode is the device grant's grant_type.
const grantDeviceCode = "urn:ietf:params:oauth:grant-type:device_code"

// devicePrefix marks device codes, which are bearer secrets like every other token here.
const devicePrefix = "ordc_"

// userCodeAlphabet has no vowels, so no word can be spelled, and no letters easily confused (RFC 8628,
// section 6.1). Eight of them carry about 34.6 bits; with the guessing limits below and codes that live ten
// minutes, an attacker guessing any live code needs billions of tries.
const (
	userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"
	userCodeLength   = 8
)

// Guessing limits: device authorization requests and user-code lookups per address, and lookups per
// signed-in user.
const (
	deviceRequestsPerMinute = 10
	deviceRequestBurst      = 10
	userCodeTriesPerMinute  = 5
	userCodeTryBurst        = 10
)

// newUserCode returns a user code as the user sees it, XXXX-XXXX.
func newUserCode() string {
	b := make([]byte, userCodeLength)
	_, _ = rand.Read(b) // never fails on Linux
	var sb strings.Builder
	for i, x := range b {
		if i == userCodeLength/2 {
			sb.WriteByte('-')
		}
		// 256 is not a multiple of 20; the bias (a few letters 1/12 more likely) costs under 0.1 bit.
		sb.WriteByte(userCodeAlphabet[int(x)%len(userCodeAlphabet)])
	}
	return sb.String()
}

// normalizeUserCode reduces what a user typed to the code's letters, upper case, ignoring dashes and
// spaces; anything that cannot be a code is empty.
func normalizeUserCode(typed string) string {
	if len(typed) > 32 {
		return ""
	}
	var sb strings.Builder
	for _, r := range strings.ToUpper(typed) {
		switch {
		case strings.ContainsRune(userCodeAlphabet, r):
			sb.WriteRune(r)
		case r == '-' || r == ' ':
		default:
			return ""
		}
	}
	if sb.Len() != userCodeLength {
		return ""
	}
	return sb.String()
}

func userCodeHash(normalized string) []byte { return bearer.Hash("user-code:" + normalized) }

// deviceAuthorizationResponse is RFC 8628, section 3.2.
type deviceAuthorizationResponse struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int64  `json:"expires_in"`
	Interval                int64  `json:"interval"`
}

// deviceAuthorization serves the device authorization endpoint.
func (s *Server) deviceAuthorization(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if tooLarge, err := parseForm(w, r); tooLarge {
		writeFormTooLarge(w)
		return
	} else if err != nil {
		writeJSON(w, http.StatusBadRequest, &registrationError{Code: "invalid_request", Description: "the body is not a form"})
		return
	}
	ok, _, err := s.deviceRequests.Allow(ctx, r.RemoteAddr)
	if err != nil {
		if _, temporary := s.temporary(ctx, w, "device authorization", err); !temporary {
			s.logger.ErrorContext(ctx, "device authorization: rate limit", "error", err)
		}
		writeJSON(w, http.StatusServiceUnavailable, &registrationError{Code: "temporarily_unavailable",
			Description: "device sign-in is unavailable for a moment; try again shortly"})
		return
	}
	if !ok {
		w.Header().Set("Retry-After", "60")
		writeJSON(w, http.StatusTooManyRequests, &registrationError{Code: "slow_down",
			Description: "too many device authorization requests from this address; try again in a minute"})
		return
	}
	cl, err := s.clients.GetClient(ctx, r.PostForm.Get("client_id"))
	if errors.Is(err, fosite.ErrNotFound) {
		writeJSON(w, http.StatusUnauthorized, &registrationError{Code: "invalid_client", Description: "unknown client"})
		return
	}
	if err != nil {
		s.writeAccessError(ctx, w, nil, "device authorization", fosite.ErrServerError.WithWrap(err))
		return
	}
	if !cl.IsPublic() || !slices.Contains(cl.GetGrantTypes(), grantDeviceCode) {
		writeJSON(w, http.StatusBadRequest, &registrationError{Code: "unauthorized_client",
			Description: "the client may not use the device authorization grant"})
		return
	}
	scopes := fosite.RemoveEmpty(strings.Split(r.PostForm.Get("scope"), " "))
	for _, sc := range scopes {
		if !slices.Contains(cl.GetScopes(), sc) {
			writeJSON(w, http.StatusBadRequest, &registrationError{Code: "invalid_scope", Description: "the client may not ask for " + sc})
			return
		}
	}
	// The API is the one resource a device grant is for; it is also the default.
	if res := r.PostForm["resource"]; len(res) > 1 || (len(res) == 1 && res[0] != s.APIResource()) {
		writeJSON(w, http.StatusBadRequest, &registrationError{Code: "invalid_target",
			Description: "the device authorization grant issues tokens for the control plane's API only: name " + s.APIResource() + " or no resource"})
		return
	}
	deviceCode, err := bearer.New(devicePrefix)
	if err != nil {
		s.writeAccessError(ctx, w, nil, "device authorization", fosite.ErrServerError.WithWrap(err))
		return
	}
	userCode := newUserCode()
	now := s.cfg.Now()
	if err := s.store.CreateDeviceCode(ctx, store.DeviceCode{
		DeviceCodeHash: bearer.Hash(deviceCode), UserCodeHash: userCodeHash(normalizeUserCode(userCode)), ClientID: cl.GetID(),
		Scopes: scopes, Resource: s.APIResource(), Interval: s.cfg.DevicePollInterval, ExpiresAt: now.Add(s.cfg.DeviceCodeTTL),
	}, now.Add(-time.Hour)); err != nil {
		// A user code is unique; a collision among live codes is a one-in-billions event the client retries.
		s.writeAccessError(ctx, w, nil, "device authorization", fosite.ErrServerError.WithWrap(err))
		return
	}
	verify := s.cfg.Issuer + "/oauth/device"
	writeJSON(w, http.StatusOK, deviceAuthorizationResponse{
		DeviceCode: deviceCode, UserCode: userCode, VerificationURI: verify,
		VerificationURIComplete: verify + "?user_code=" + url.QueryEscape(userCode),
		ExpiresIn:               int64(s.cfg.DeviceCodeTTL / time.Second), Interval: int64(s.cfg.DevicePollInterval / time.Second),
	})
}

// devicePageData fills the verification pages.
type devicePageData struct {
	CSRF       string
	UserCode   string
	User       string
	ClientName string
	Scopes     []scopeDescription
	Error      string
	Done       string
	// SignInLinks are the login page's "Sign in with" buttons.
	SignInLinks []sso.SignInLink
}

// verifyDevice serves the verification page: sign in, type the user code (or arrive with it in the link),
// see which client asks for what, and approve or deny.
func (s *Server) verifyDevice(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	csrf := s.csrfToken(w, r)
	p := &devicePageData{CSRF: csrf, UserCode: r.URL.Query().Get("user_code")}
	if len(p.UserCode) > 32 {
		p.UserCode = ""
	}
	user, hasUser := s.sessionUser(ctx, r)
	if !hasUser {
		returnTo := "/oauth/device"
		if p.UserCode != "" {
			returnTo += "?" + url.Values{"user_code": {p.UserCode}}.Encode()
		}
		p.SignInLinks = s.signInLinks(ctx, returnTo)
	}
	action := ""
	if r.Method == http.MethodPost {
		if !readPageForm(w, r, csrf) {
			return
		}
		if typed := r.PostForm.Get("user_code"); typed != "" && len(typed) <= 32 {
			p.UserCode = typed
		}
		action = r.PostForm.Get("action")
		if action == "login" {
			u, status, problem, err := s.signIn(ctx, w, r)
			if err != nil {
				s.logger.ErrorContext(ctx, "device verification: start session", "error", err)
				http.Error(w, "internal error", http.StatusInternalServerError)
				return
			}
			if problem != "" {
				p.Error = problem
				s.renderDevice(w, status, deviceLoginPage, p)
				return
			}
			user, hasUser = u, true
			action = ""
		}
	}
	if !hasUser {
		s.renderDevice(w, http.StatusOK, deviceLoginPage, p)
		return
	}
	p.User = user.Email
	if p.UserCode == "" {
		s.renderDevice(w, http.StatusOK, deviceCodePage, p)
		return
	}
	// Every lookup of a code is a guess as far as the limits know, counted by address and by user.
	okAddr, _, errAddr := s.userCodeTries.Allow(ctx, r.RemoteAddr)
	okUser, _, errUser := s.userCodeTries.AllowKey(ctx, "user "+user.ID.String())
	if err := errors.Join(errAddr, errUser); err != nil {
		s.logger.WarnContext(ctx, "device verification: rate limit", "error", err)
		p.Error = "Sign-in is unavailable for a moment. Try again shortly."
		s.renderDevice(w, http.StatusServiceUnavailable, deviceCodePage, p)
		return
	}
	if !okAddr || !okUser {
		w.Header().Set("Retry-After", "60")
		p.Error = "Too many codes tried. Wait a minute and try again."
		s.renderDevice(w, http.StatusTooManyRequests, deviceCodePage, p)
		return
	}
	normalized := normalizeUserCode(p.UserCode)
	var req store.DeviceCode
	err := errors.New("malformed user code")
	if normalized != "" {
		req, err = s.store.PendingDeviceCode(ctx, userCodeHash(normalized), s.cfg.Now())
	}
	if err != nil && normalized != "" && !errors.Is(err, store.ErrNotFound) {
		s.logger.ErrorContext(ctx, "device verification: look up code", "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if err != nil {
		// The same answer for a code never issued, one expired, and one already used, by anyone.
		p.Error = "That code is unknown or has expired. Check it, or start again on the device."
		s.renderDevice(w, http.StatusNotFound, deviceCodePage, p)
		return
	}
	cl, err := s.clients.GetClient(ctx, req.ClientID)
	if err != nil {
		s.logger.ErrorContext(ctx, "device verification: get client", "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	p.ClientName, p.Scopes = clientName(cl), describeScopes(req.Scopes)
	switch action {
	case "approve", "deny":
		status, done := store.DeviceApproved, "Signed in. You can close this page and return to your device."
		if action == "deny" {
			status, done = store.DeviceDenied, "Denied. The device was not signed in."
		}
		if err := s.store.DecideDeviceCode(ctx, userCodeHash(normalized), status, user.ID, s.cfg.Now()); errors.Is(err, store.ErrNotFound) {
			p.Error = "That code is unknown or has expired. Check it, or start again on the device."
			s.renderDevice(w, http.StatusNotFound, deviceCodePage, p)
			return
		} else if err != nil {
			s.logger.ErrorContext(ctx, "device verification: decide", "error", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		s.audit(ctx, store.AuditEvent{ActorID: &user.ID, Actor: user.Email, Action: "oauth.device_" + action, Target: req.ClientID})
		p.Done = done
		s.renderDevice(w, http.StatusOK, deviceDonePage, p)
	default:
		s.renderDevice(w, http.StatusOK, deviceConfirmPage, p)
	}
}

func (s *Server) renderDevice(w http.ResponseWriter, status int, t *template.Template, p *devicePageData) {
	s.renderPage(w, status, t, p)
}

var deviceLoginPage = template.Must(template.New("device-login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>Sign in a device · Orrery</title>` + pageStyle + `</head>
<body>
<h1>Sign in to connect a device</h1>
{{with .Error}}<p class="error">{{.}}</p>{{end}}
<form method="post" action="/oauth/device">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<input type="hidden" name="action" value="login">
<input type="hidden" name="user_code" value="{{.UserCode}}">
<label for="email">Email</label><input id="email" name="email" type="email" autocomplete="username" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
{{with .SignInLinks}}<p class="muted">Or sign in through your organisation:</p>
{{range .}}<p><a class="sso" href="{{.URL}}">Sign in with {{.DisplayName}}</a></p>{{end}}{{end}}
</body></html>`))

var deviceCodePage = template.Must(template.New("device-code").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>Connect a device · Orrery</title>` + pageStyle + `</head>
<body>
<h1>Enter the code shown on your device</h1>
<p class="muted">Signed in as {{.User}}.</p>
{{with .Error}}<p class="error">{{.}}</p>{{end}}
<form method="post" action="/oauth/device">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<label for="user_code">Code</label><input id="user_code" name="user_code" value="{{.UserCode}}" autocomplete="off" required autofocus>
<button type="submit" name="action" value="lookup">Continue</button>
</form>
</body></html>`))

var deviceConfirmPage = template.Must(template.New("device-confirm").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>Connect a device · Orrery</title>` + pageStyle + `</head>
<body>
<h1>Allow {{.ClientName}} on your device to use Orrery as you?</h1>
<p class="muted">Signed in as {{.User}}. Code <code>{{.UserCode}}</code>: only continue if your device shows this code and you started the sign-in yourself.</p>
<p>It will be able to:</p>
<ul>{{range .Scopes}}<li><code>{{.Name}}</code>{{with .Text}}: {{.}}{{end}}</li>{{end}}</ul>
<form method="post" action="/oauth/device">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<input type="hidden" name="user_code" value="{{.UserCode}}">
<button type="submit" name="action" value="approve">Allow</button>
<button type="submit" name="action" value="deny">Deny</button>
</form>
</body></html>`))

var deviceDonePage = template.Must(template.New("device-done").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>Connect a device · Orrery</title>` + pageStyle + `</head>
<body><h1>{{.Done}}</h1></body></html>`))

// deviceGrant is the token endpoint's handler of the device code grant, composed into fosite.
type deviceGrant struct {
	srv *Server
}

var _ fosite.TokenEndpointHandler = deviceGrant{}

func deviceError(code, description string) *fosite.RFC6749Error {
	return &fosite.RFC6749Error{ErrorField: code, DescriptionField: description, CodeField: http.StatusBadRequest}
}

func (deviceGrant) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool { return false }

func (deviceGrant) CanHandleTokenEndpointRequest(_ context.Context, r fosite.AccessRequester) bool {
	return r.GetGrantTypes().ExactOne(grantDeviceCode)
}

// HandleTokenEndpointRequest answers a poll: pending, too fast, denied or expired, or, once approved, sets
// up the grant the response's tokens are issued under.
func (g deviceGrant) HandleTokenEndpointRequest(ctx context.Context, r fosite.AccessRequester) error {
	s := g.srv
	if !r.GetClient().GetGrantTypes().Has(grantDeviceCode) {
		return fosite.ErrUnauthorizedClient.WithHint("The client may not use the device authorization grant.")
	}
	code := r.GetRequestForm().Get("device_code")
	if code == "" || !strings.HasPrefix(code, devicePrefix) || len(code) > 128 {
		return fosite.ErrInvalidGrant.WithHint("The device_code is missing or malformed.")
	}
	d, err := s.store.PollDeviceCode(ctx, bearer.Hash(code))
	if errors.Is(err, store.ErrNotFound) || (err == nil && d.ClientID != r.GetClient().GetID()) {
		return fosite.ErrInvalidGrant.WithHint("The device_code is unknown.")
	}
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	if !s.cfg.Now().Before(d.ExpiresAt) {
		return deviceError("expired_token", "The device_code has expired; start the sign-in again.")
	}
	if d.Status == store.DeviceUsed {
		return fosite.ErrInvalidGrant.WithHint("The device_code has already been used.")
	}
	if d.PreviousPollAt != nil && d.LastPolledAt != nil && d.LastPolledAt.Sub(*d.PreviousPollAt) < d.Interval {
		if err := s.store.SlowDeviceCode(ctx, d.DeviceCodeHash); err != nil {
			return fosite.ErrServerError.WithWrap(err)
		}
		return deviceError("slow_down", "Polling too fast; wait 5 seconds more between polls.")
	}
	switch d.Status {
	case store.DevicePending:
		return deviceError("authorization_pending", "The user has not yet approved the request.")
	case store.DeviceDenied:
		return fosite.ErrAccessDenied.WithHint("The user denied the request.")
	}
	if d.UserID == nil {
		return fosite.ErrServerError.WithHint("An approved request without its user.")
	}
	if err := s.store.UseDeviceCode(ctx, d.DeviceCodeHash); errors.Is(err, store.ErrNotFound) {
		return fosite.ErrInvalidGrant.WithHint("The device_code has already been used.")
	} else if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	login, err := s.store.LoginByID(ctx, *d.UserID)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	user := login.User
	team, err := s.grantKeeper(ctx, user)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	session := r.GetSession().(*Session)
	session.UserID, session.UserSlug, session.TeamID, session.TeamSlug = user.ID.String(), user.Slug, team.ID.String(), team.Slug
	session.AuthTime = s.cfg.Now().UTC()
	r.SetRequestedScopes(d.Scopes)
	r.SetRequestedAudience(fosite.Arguments{d.Resource})
	for _, sc := range d.Scopes {
		r.GrantScope(sc)
	}
	r.GrantAudience(d.Resource)
	now := s.cfg.Now().UTC()
	session.SetExpiresAt(fosite.AccessToken, now.Add(s.cfg.AccessTokenTTL).Round(time.Second))
	session.SetExpiresAt(fosite.RefreshToken, now.Add(s.cfg.RefreshTokenTTL).Round(time.Second))
	return nil
}

// PopulateTokenEndpointResponse issues the access token and, with offline_access, a refresh token that the
// refresh grant rotates like any other.
func (g deviceGrant) PopulateTokenEndpointResponse(ctx context.Context, r fosite.AccessRequester, resp fosite.AccessResponder) error {
	if !g.CanHandleTokenEndpointRequest(ctx, r) {
		return fosite.ErrUnknownRequest
	}
	s := g.srv
	st := strategy{now: s.cfg.Now}
	access, accessSig, err := st.GenerateAccessToken(ctx, r)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	if err := s.storage.CreateAccessTokenSession(ctx, accessSig, r.Sanitize(nil)); err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	if r.GetGrantedScopes().Has(ScopeOfflineAccess) && r.GetClient().GetGrantTypes().Has(grantRefreshToken) {
		refresh, refreshSig, err := st.GenerateRefreshToken(ctx, r)
		if err != nil {
			return fosite.ErrServerError.WithWrap(err)
		}
		if err := s.storage.CreateRefreshTokenSession(ctx, refreshSig, accessSig, r.Sanitize(nil)); err != nil {
			return fosite.ErrServerError.WithWrap(err)
		}
		resp.SetExtra("refresh_token", refresh)
	}
	resp.SetAccessToken(access)
	resp.SetTokenType("bearer")
	resp.SetExpiresIn(r.GetSession().GetExpiresAt(fosite.AccessToken).Sub(s.cfg.Now()))
	resp.SetScopes(r.GetGrantedScopes())
	return nil
}
