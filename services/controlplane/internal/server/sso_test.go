package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"html"
	"io"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"golang.org/x/oauth2"

	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	"github.com/orrery/orrery/gen/orrery/admin/v1/adminv1connect"
	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	"github.com/orrery/orrery/internal/oauthtest"
	"github.com/orrery/orrery/internal/oidctest"
	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// ssoFixture is the OAuth fixture with a real OpenID provider that a global admin configured as "corp",
// for people of corp.test, and rules that make its group "eng" users and "eng-leads" admins of team red.
type ssoFixture struct {
	*oauthFixture
	op *oidctest.Provider
	// substitute swaps the ID token of the provider's token responses, when told to.
	substitute *idTokenSubstitute
	ssoClock   *clock
	admin      adminv1connect.SingleSignOnServiceClient
	provider   *adminv1.IdentityProvider
}

const providerSecret = "provider-client-secret-0123456789"

// otherClient is another relying party of the same provider.
var otherClient = oidctest.Client{ID: "other", Secret: "other-client-secret-0123456789", RedirectURI: "http://127.0.0.1:9/other/callback"}

func setupSSO(t *testing.T) *ssoFixture {
	t.Helper()
	ssoClock := &clock{}
	substitute := &idTokenSubstitute{}
	opts := setupOpts{}
	opts.sso.Now = ssoClock.now
	opts.sso.HTTPClient = &http.Client{Transport: substitute, Timeout: 10 * time.Second}
	f := &ssoFixture{oauthFixture: setupOAuth(t, opts), ssoClock: ssoClock, substitute: substitute}
	f.op = oidctest.New(t, oidctest.Client{ID: "orrery", Secret: providerSecret, RedirectURI: f.b.issuer() + "/sso/callback"}, otherClient)
	f.admin = adminv1connect.NewSingleSignOnServiceClient(testClient, f.b.issuer(), connect.WithInterceptors(withBearer(adminToken)))
	resp, err := f.admin.CreateIdentityProvider(t.Context(), connect.NewRequest(&adminv1.CreateIdentityProviderRequest{
		Slug: "corp", DisplayName: "Corp SSO", Issuer: f.op.Issuer, ClientId: "orrery", ClientSecret: providerSecret,
		Scopes: []string{"offline_access"}, AllowedDomains: []string{"corp.test"},
	}))
	if err != nil {
		t.Fatal(err)
	}
	f.provider = resp.Msg.Provider
	for group, role := range map[string]adminv1.SSOTeamRole{
		"eng": adminv1.SSOTeamRole_SSO_TEAM_ROLE_USER, "eng-leads": adminv1.SSOTeamRole_SSO_TEAM_ROLE_ADMIN,
	} {
		if _, err := f.admin.CreateGroupRule(t.Context(), connect.NewRequest(&adminv1.CreateGroupRuleRequest{
			ProviderId: f.provider.Id, Group: group, TeamId: f.red.ID.String(), Role: role,
		})); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

var (
	ssoLink     = regexp.MustCompile(`<a class="sso" href="([^"]+)">Sign in with Corp SSO</a>`)
	metaRefresh = regexp.MustCompile(`<a id="continue" href="([^"]+)">`)
)

// ssoSignIn follows a sign-in from start, a URL of the control plane, through the provider and back, as a
// browser does, and returns the control plane's last answer and the callback URL it came back to.
func ssoSignIn(t *testing.T, br *oauthtest.Browser, start string) (oauthtest.Page, string) {
	t.Helper()
	at, err := url.Parse(start)
	if err != nil {
		t.Fatal(err)
	}
	var callback string
	for range 10 {
		p := get(t, br, at.String())
		if strings.HasSuffix(at.Path, "/sso/callback") {
			callback = at.String()
		}
		if p.Status != http.StatusFound && p.Status != http.StatusSeeOther {
			return p, callback
		}
		next, err := at.Parse(p.Location)
		if err != nil {
			t.Fatal(err)
		}
		at = next
	}
	t.Fatalf("sign-in from %s: too many redirects", start)
	return oauthtest.Page{}, ""
}

// continueURL is where the page the sign-in ends on moves the browser on to.
func continueURL(t *testing.T, base string, p oauthtest.Page) string {
	t.Helper()
	m := metaRefresh.FindStringSubmatch(p.Body)
	if p.Status != http.StatusOK || m == nil {
		t.Fatalf("end of sign-in: want the page that moves on, got %d %s", p.Status, p.Body)
	}
	return base + html.UnescapeString(m[1])
}

func (f *ssoFixture) startURL(returnTo string) string {
	return f.b.issuer() + "/sso/corp/start?" + url.Values{"return": {returnTo}}.Encode()
}

// TestSSOSignInThroughTheAuthorizationFlow runs what an editor's user does: the MCP authorization page
// offers the provider, the person signs in there for the first time, gets an account and, from the group
// rules, a membership in team red, consents, and the client gets a token. Their groups then change at the
// provider, and each next sign-in brings the membership and role in line; leaving the group ends the
// membership and the client's token with it.
func TestSSOSignInThroughTheAuthorizationFlow(t *testing.T) {
	t.Parallel()
	f := setupSSO(t)
	ctx := t.Context()
	st := f.b.store()
	f.op.SetUser(oidctest.User{ID: "grace-id", Email: "grace@corp.test", EmailVerified: true, Name: "Grace", Groups: []string{"eng"}})
	f.op.SignInAs("grace-id")

	// Anyone sees which providers the sign-in page offers, and nothing else about them.
	anon := adminv1connect.NewSingleSignOnServiceClient(testClient, f.b.issuer())
	opts, err := anon.ListSignInOptions(ctx, connect.NewRequest(&adminv1.ListSignInOptionsRequest{}))
	if err != nil || len(opts.Msg.Options) != 1 || opts.Msg.Options[0].DisplayName != "Corp SSO" || opts.Msg.Options[0].StartPath != "/sso/corp/start" {
		t.Fatalf("sign-in options: %v %v", opts, err)
	}

	// orreryctl's device page offers the provider too, and the sign-in comes back to the code typed.
	device := get(t, oauthtest.NewBrowser(), f.b.issuer()+"/oauth/device?user_code=WXYZ-ABCD")
	wantStart := "/sso/corp/start?" + url.Values{"return": {"/oauth/device?user_code=WXYZ-ABCD"}}.Encode()
	if m := ssoLink.FindStringSubmatch(device.Body); m == nil || html.UnescapeString(m[1]) != wantStart {
		t.Fatalf("device login page: %d %s", device.Status, device.Body)
	}

	cfg := f.config(f.clientID, f.redirect)
	verifier := oauth2.GenerateVerifier()
	resource := endpointOf("red")
	authURL := authorizeURL(cfg, verifier, resource)
	br := oauthtest.NewBrowser()
	login := get(t, br, authURL)
	m := ssoLink.FindStringSubmatch(login.Body)
	if login.Status != http.StatusOK || m == nil {
		t.Fatalf("login page: want a Corp SSO button, got %d %s", login.Status, login.Body)
	}
	end, _ := ssoSignIn(t, br, f.b.issuer()+html.UnescapeString(m[1]))
	back := continueURL(t, f.b.issuer(), end)
	if back != authURL {
		t.Fatalf("the sign-in returns to %s, want the authorization request %s", back, authURL)
	}
	consent := get(t, br, back)
	if !oauthtest.IsConsent(consent) {
		t.Fatalf("after signing in: want the consent page, got %d %s", consent.Status, consent.Body)
	}
	q, err := br.Approve(ctx, authURL, consent)
	if err != nil || q.Get("code") == "" {
		t.Fatalf("approve: %v %v", q, err)
	}
	tok, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", resource))
	if err != nil {
		t.Fatal(err)
	}

	// The account was made just in time, without a password, and the rule made it a user of red.
	login2, err := st.LoginByEmail(ctx, "grace@corp.test")
	if err != nil || login2.PasswordHash != "" || login2.User.Name != "Grace" {
		t.Fatalf("just-in-time account: %+v %v", login2, err)
	}
	grace := login2.User
	if got := introspect(t, f.sat, tok.AccessToken); !got.Active || got.UserId != grace.ID.String() || got.TeamSlug != "red" {
		t.Fatalf("the client's token: %v", got)
	}
	if role := teamRole(t, st, f.red, grace); role != store.RoleTeamUser {
		t.Fatalf("role in red after the first sign-in: %q, want %s", role, store.RoleTeamUser)
	}

	// Joining eng-leads at the provider makes Grace an admin of red at her next sign-in, on the same account.
	f.op.SetGroups("grace-id", "eng", "eng-leads")
	end, _ = ssoSignIn(t, oauthtest.NewBrowser(), f.startURL("/"))
	if continueURL(t, f.b.issuer(), end) != f.b.issuer()+"/" {
		t.Fatalf("the sign-in does not return to the console")
	}
	if role := teamRole(t, st, f.red, grace); role != store.RoleTeamAdmin {
		t.Fatalf("role in red after joining eng-leads: %q, want %s", role, store.RoleTeamAdmin)
	}
	if again, err := st.LoginByEmail(ctx, "grace@corp.test"); err != nil || again.User.ID != grace.ID {
		t.Fatalf("second sign-in made another account: %v %v", again.User.ID, err)
	}

	// The session the sign-in started is a real one.
	sessionBrowser := oauthtest.NewBrowser()
	end, _ = ssoSignIn(t, sessionBrowser, f.startURL("/"))
	continueURL(t, f.b.issuer(), end)
	if got := currentUserThroughSession(t, f.b.issuer(), sessionBrowser); got != "grace@corp.test" {
		t.Fatalf("the session belongs to %q", got)
	}

	// Leaving every group at the provider ends the membership at the next sign-in, with the client's tokens.
	f.op.SetGroups("grace-id")
	end, _ = ssoSignIn(t, oauthtest.NewBrowser(), f.startURL("/"))
	continueURL(t, f.b.issuer(), end)
	if role := teamRole(t, st, f.red, grace); role != "" {
		t.Fatalf("still a member of red after leaving the group: %q", role)
	}
	if got := introspect(t, f.sat, tok.AccessToken); got.Active {
		t.Fatalf("the former member's token is still active: %v", got)
	}
	if _, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); oauthErrorCode(err) != "invalid_grant" {
		t.Fatalf("the former member's refresh: %v, want invalid_grant", err)
	}
	events, err := st.ListAuditEvents(ctx, &f.red.ID, math.MaxInt64, 100)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range events {
		if strings.HasPrefix(e.Action, "member.sso_") {
			actions = append(actions, e.Action)
		}
	}
	if strings.Join(actions, " ") != "member.sso_removed member.sso_role_changed member.sso_added" {
		t.Fatalf("audit of red: %v", actions)
	}
}

// currentUserThroughSession asks the API who the browser's session cookie belongs to.
func currentUserThroughSession(t *testing.T, base string, br *oauthtest.Browser) string {
	t.Helper()
	cookie := access.SessionCookie + "=" + br.Cookie(access.SessionCookie)
	client := apiv1connect.NewAccountServiceClient(testClient, base, connect.WithInterceptors(
		connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
			return func(ctx2 context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
				req.Header().Set("Cookie", cookie)
				return next(ctx2, req)
			}
		})))
	resp, err := client.GetCurrentUser(t.Context(), connect.NewRequest(&apiv1.GetCurrentUserRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Msg.User.Email
}

// idTokenSubstitute swaps the ID token of token responses, as a party between the control plane and the
// provider could.
type idTokenSubstitute struct{ idToken atomic.Value }

func (s *idTokenSubstitute) set(token string) { s.idToken.Store(token) }

func (s *idTokenSubstitute) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := testClient.Transport.RoundTrip(req)
	swap, _ := s.idToken.Load().(string)
	if err != nil || swap == "" || req.URL.Path != "/oauth/token" {
		return resp, err
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	body["id_token"] = swap
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(raw))
	resp.ContentLength = int64(len(raw))
	resp.Header.Del("Content-Length")
	return resp, nil
}

// otherClientIDToken signs in at the provider as otherClient with nonce and returns the ID token it gets.
func otherClientIDToken(t *testing.T, op *oidctest.Provider, nonce string) string {
	t.Helper()
	cfg := oauth2.Config{ClientID: otherClient.ID, ClientSecret: otherClient.Secret, RedirectURL: otherClient.RedirectURI,
		Scopes: []string{"openid", "email"}, Endpoint: oauth2.Endpoint{AuthURL: op.Issuer + "/authorize", TokenURL: op.Issuer + "/oauth/token"}}
	verifier := oauth2.GenerateVerifier()
	at, err := url.Parse(cfg.AuthCodeURL("other-state-0123456789", oauth2.SetAuthURLParam("nonce", nonce), oauth2.S256ChallengeOption(verifier)))
	if err != nil {
		t.Fatal(err)
	}
	br := oauthtest.NewBrowser()
	for range 10 {
		p := get(t, br, at.String())
		if p.Status != http.StatusFound && p.Status != http.StatusSeeOther {
			t.Fatalf("other client's sign-in: %d %s", p.Status, p.Body)
		}
		if next, err := at.Parse(p.Location); err != nil {
			t.Fatal(err)
		} else {
			at = next
		}
		if strings.HasPrefix(at.String(), otherClient.RedirectURI) {
			tok, err := cfg.Exchange(t.Context(), at.Query().Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatal(err)
			}
			idToken, _ := tok.Extra("id_token").(string)
			if idToken == "" {
				t.Fatal("the other client got no ID token")
			}
			return idToken
		}
	}
	t.Fatal("other client's sign-in: too many redirects")
	return ""
}

type rawAnswer struct {
	status int
	body   string
}

// rawGet sends a GET with exactly the cookie header given.
func rawGet(t *testing.T, u, cookie string) rawAnswer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Cookie", cookie)
	resp, err := testClient.Transport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return rawAnswer{status: resp.StatusCode, body: string(body)}
}

func teamRole(t *testing.T, st *store.Store, team store.Team, user store.User) string {
	t.Helper()
	role, err := st.TeamRole(t.Context(), team.ID, user.ID)
	if errors.Is(err, store.ErrNotFound) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return role
}

// TestSSOLinksOnlyVerifiedEmails: an existing account is reached through the provider only when the provider
// vouches for its email and the domain is one the provider may speak for; otherwise nobody is signed in,
// linked or created.
func TestSSOLinksOnlyVerifiedEmails(t *testing.T) {
	t.Parallel()
	f := setupSSO(t)
	ctx := t.Context()
	st := f.b.store()
	lin := newCaller(t, st, "lin@corp.test", store.RoleGlobalUser)
	una := newCaller(t, st, "una@corp.test", store.RoleGlobalUser)
	f.op.SetUser(oidctest.User{ID: "lin-id", Email: "lin@corp.test", EmailVerified: true})
	f.op.SetUser(oidctest.User{ID: "una-id", Email: "una@corp.test", EmailVerified: false, Groups: []string{"eng"}})
	f.op.SetUser(oidctest.User{ID: "mallory-id", Email: "ada@red.test", EmailVerified: true, Groups: []string{"eng"}})
	f.op.SetUser(oidctest.User{ID: "nova-id", Email: "nova@corp.test", EmailVerified: false})

	// Lin is in red by an admin's hand, not by a rule: signing in outside every group leaves that alone.
	if err := st.AddMember(ctx, f.red.ID, lin.user.ID, store.RoleTeamUser); err != nil {
		t.Fatal(err)
	}
	f.op.SignInAs("lin-id")
	end, _ := ssoSignIn(t, oauthtest.NewBrowser(), f.startURL("/"))
	continueURL(t, f.b.issuer(), end)
	if id, err := st.SSOIdentity(ctx, uuid.MustParse(f.provider.Id), "lin-id"); err != nil || id.UserID != lin.user.ID {
		t.Fatalf("a verified email of an allowed domain links the existing account: %+v %v", id, err)
	}
	if role := teamRole(t, st, f.red, lin.user); role != store.RoleTeamUser {
		t.Fatalf("a membership no rule granted was changed: %q", role)
	}

	for _, c := range []struct {
		name, subject, email, want string
	}{
		{"an unverified email of an existing account", "una-id", "una@corp.test", "did not confirm your email"},
		{"an unverified email of no account", "nova-id", "nova@corp.test", "did not confirm your email"},
		{"a verified email of a domain the provider may not speak for", "mallory-id", "ada@red.test", "domain may not sign in"},
	} {
		f.op.SignInAs(c.subject)
		br := oauthtest.NewBrowser()
		end, _ := ssoSignIn(t, br, f.startURL("/"))
		if end.Status != http.StatusForbidden || !strings.Contains(end.Body, c.want) {
			t.Fatalf("%s: got %d %s, want 403 saying %q", c.name, end.Status, end.Body, c.want)
		}
		if br.Cookie(access.SessionCookie) != "" {
			t.Fatalf("%s: a session was started", c.name)
		}
		if _, err := st.SSOIdentity(ctx, uuid.MustParse(f.provider.Id), c.subject); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("%s: the identity was linked (%v)", c.name, err)
		}
	}
	if _, err := st.LoginByEmail(ctx, "nova@corp.test"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an unverified email got an account: %v", err)
	}
	if role := teamRole(t, st, f.red, una.user); role != "" {
		t.Fatalf("an unverified sign-in granted a membership: %q", role)
	}
}

// TestSSORefusesForgedAnswers: a token signed by a key the provider does not publish, a token addressed to
// another client, a replayed state and a callback that another browser started are all refused, and none
// signs anyone in.
func TestSSORefusesForgedAnswers(t *testing.T) {
	t.Parallel()
	f := setupSSO(t)
	ctx := t.Context()
	st := f.b.store()
	f.op.SetUser(oidctest.User{ID: "kim-id", Email: "kim@corp.test", EmailVerified: true, Groups: []string{"eng"}})
	f.op.SignInAs("kim-id")

	refused := func(what string, br *oauthtest.Browser, end oauthtest.Page) {
		t.Helper()
		if end.Status != http.StatusForbidden || !strings.Contains(end.Body, "could not be verified") {
			t.Fatalf("%s: got %d %s, want 403", what, end.Status, end.Body)
		}
		if br.Cookie(access.SessionCookie) != "" {
			t.Fatalf("%s: a session was started", what)
		}
		if _, err := st.LoginByEmail(ctx, "kim@corp.test"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("%s: an account was made (%v)", what, err)
		}
	}

	// The provider signs with a key it does not publish.
	f.op.SignWithUnpublishedKey(true)
	br := oauthtest.NewBrowser()
	end, _ := ssoSignIn(t, br, f.startURL("/"))
	f.op.SignWithUnpublishedKey(false)
	refused("a token signed by an unpublished key", br, end)

	// A genuine ID token of the provider, for the same person and with the sign-in's nonce, but issued to
	// another client, is swapped into the token response.
	br = oauthtest.NewBrowser()
	start := get(t, br, f.startURL("/"))
	authz, err := url.Parse(start.Location)
	if err != nil || authz.Query().Get("nonce") == "" {
		t.Fatalf("start: %d %s", start.Status, start.Location)
	}
	f.substitute.set(otherClientIDToken(t, f.op, authz.Query().Get("nonce")))
	end, _ = ssoSignIn(t, br, start.Location)
	f.substitute.set("")
	refused("a token for another audience", br, end)

	// A sign-in that went through: replaying its callback, with the state cookie put back, finds the state
	// used up.
	end, callback := ssoSignIn(t, oauthtest.NewBrowser(), f.startURL("/"))
	continueURL(t, f.b.issuer(), end)
	cb, err := url.Parse(callback)
	if err != nil || cb.Query().Get("state") == "" || cb.Query().Get("code") == "" {
		t.Fatalf("callback %q: %v", callback, err)
	}
	replay := rawGet(t, callback, "orrery_sso_state="+cb.Query().Get("state"))
	if replay.status != http.StatusBadRequest || !strings.Contains(replay.body, "already used") {
		t.Fatalf("replayed callback: %d %s", replay.status, replay.body)
	}
	// A callback arriving in a browser that did not start the sign-in (login CSRF) is refused.
	foreign := rawGet(t, f.b.issuer()+"/sso/callback?code=x&state=its-state", "orrery_sso_state=another-state")
	if foreign.status != http.StatusBadRequest || !strings.Contains(foreign.body, "not started in this browser") {
		t.Fatalf("callback without the browser's state: %d %s", foreign.status, foreign.body)
	}

	// The start refuses to send anyone anywhere but a path of this site afterwards.
	for _, target := range []string{"https://evil.test/", "//evil.test/", "/\\evil.test", "javascript:alert(1)"} {
		p := get(t, oauthtest.NewBrowser(), f.startURL(target))
		if p.Status != http.StatusBadRequest {
			t.Fatalf("start with return %q: %d %s", target, p.Status, p.Location)
		}
	}
	if p := get(t, oauthtest.NewBrowser(), f.b.issuer()+"/sso/nope/start"); p.Status != http.StatusNotFound {
		t.Fatalf("unknown provider: %d", p.Status)
	}
}

// TestSSOPeriodicCheckRemovesMembers: leaving the group at the provider ends the membership within the
// configured interval without a sign-in, through the refresh token the provider gave.
func TestSSOPeriodicCheckRemovesMembers(t *testing.T) {
	t.Parallel()
	f := setupSSO(t)
	ctx := t.Context()
	st := f.b.store()
	f.op.SetUser(oidctest.User{ID: "ola-id", Email: "ola@corp.test", EmailVerified: true, Groups: []string{"eng"}})
	f.op.SignInAs("ola-id")
	end, _ := ssoSignIn(t, oauthtest.NewBrowser(), f.startURL("/"))
	continueURL(t, f.b.issuer(), end)
	login, err := st.LoginByEmail(ctx, "ola@corp.test")
	if err != nil {
		t.Fatal(err)
	}
	if role := teamRole(t, st, f.red, login.User); role != store.RoleTeamUser {
		t.Fatalf("role after sign-in: %q", role)
	}
	svc := f.b.replicas[0].srv.SSO()

	// Within the interval nobody is read again.
	f.op.SetGroups("ola-id")
	if err := svc.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	if f.op.Refreshes() != 0 || teamRole(t, st, f.red, login.User) == "" {
		t.Fatalf("re-read before the interval passed: %d refreshes", f.op.Refreshes())
	}

	f.ssoClock.advance(svc.ResyncInterval() + time.Minute)
	if err := svc.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	if f.op.Refreshes() != 1 {
		t.Fatalf("refreshes at the provider: %d, want 1", f.op.Refreshes())
	}
	if role := teamRole(t, st, f.red, login.User); role != "" {
		t.Fatalf("still a member after leaving the group: %q", role)
	}
}

// TestPasswordSignInOffPerDomain: a global admin turns password sign-in off for corp.test; its people are
// refused on the API and on the OAuth login page, other domains are not, and turning it on again restores it.
func TestPasswordSignInOffPerDomain(t *testing.T) {
	t.Parallel()
	f := setupSSO(t)
	ctx := t.Context()
	st := f.b.store()
	newCaller(t, st, "pat@corp.test", store.RoleGlobalUser)
	accounts := apiv1connect.NewAccountServiceClient(testClient, f.b.issuer())
	loginAs := func(email string) error {
		_, err := accounts.Login(ctx, connect.NewRequest(&apiv1.LoginRequest{Email: email, Password: testPassword, ApiTokenName: "t"}))
		return err
	}

	// Only a global admin may change it.
	user := adminv1connect.NewSingleSignOnServiceClient(testClient, f.b.issuer(), connect.WithInterceptors(withBearer(f.user.token)))
	if _, err := user.SetPasswordSignIn(ctx, connect.NewRequest(&adminv1.SetPasswordSignInRequest{Domain: "red.test"})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("a user turning password sign-in off: %v", err)
	}
	if _, err := user.CreateIdentityProvider(ctx, connect.NewRequest(&adminv1.CreateIdentityProviderRequest{
		Slug: "mine", DisplayName: "Mine", Issuer: f.op.Issuer, ClientId: "x",
	})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("a user adding a provider: %v", err)
	}

	if _, err := f.admin.SetPasswordSignIn(ctx, connect.NewRequest(&adminv1.SetPasswordSignInRequest{Domain: "Corp.Test"})); err != nil {
		t.Fatal(err)
	}
	if err := loginAs("pat@corp.test"); connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "identity provider") {
		t.Fatalf("password sign-in of a disabled domain: %v", err)
	}
	// The answer depends on the domain alone: an address without an account gets the same.
	if err := loginAs("nobody@corp.test"); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("password sign-in of an unknown address of a disabled domain: %v", err)
	}
	if err := loginAs(f.user.user.Email); err != nil {
		t.Fatalf("another domain: %v", err)
	}
	p, err := oauthtest.NewBrowser().SignIn(ctx, authorizeURL(f.config(f.clientID, f.redirect), oauth2.GenerateVerifier(), endpointOf("red")), "pat@corp.test", testPassword)
	if err != nil || p.Status != http.StatusForbidden || !strings.Contains(p.Body, "Password sign-in is turned off") || !strings.Contains(p.Body, "Sign in with Corp SSO") {
		t.Fatalf("OAuth login page for a disabled domain: %d %s %v", p.Status, p.Body, err)
	}
	domains, err := f.admin.ListPasswordSignInDisabledDomains(ctx, connect.NewRequest(&adminv1.ListPasswordSignInDisabledDomainsRequest{}))
	if err != nil || strings.Join(domains.Msg.Domains, ",") != "corp.test" {
		t.Fatalf("disabled domains: %v %v", domains, err)
	}

	if _, err := f.admin.SetPasswordSignIn(ctx, connect.NewRequest(&adminv1.SetPasswordSignInRequest{Domain: "corp.test", Enabled: true})); err != nil {
		t.Fatal(err)
	}
	if err := loginAs("pat@corp.test"); err != nil {
		t.Fatalf("after turning password sign-in on again: %v", err)
	}

	// The provider's secret never comes back.
	list, err := f.admin.ListIdentityProviders(ctx, connect.NewRequest(&adminv1.ListIdentityProvidersRequest{}))
	if err != nil || len(list.Msg.Providers) != 1 || !list.Msg.Providers[0].HasClientSecret ||
		list.Msg.Providers[0].RedirectUri != f.b.issuer()+"/sso/callback" || strings.Contains(list.Msg.String(), providerSecret) {
		t.Fatalf("providers: %v %v", list, err)
	}
}
