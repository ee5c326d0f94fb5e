package server_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"

	"github.com/orrery/orrery/internal/oauthtest"
	"github.com/orrery/orrery/services/controlplane/internal/oauth"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

const satelliteURL = "https://sat.example.test"

// clock is a settable clock for the authorization server.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time                { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration)       { c.offset.Add(int64(d)) }
func endpointOf(slug string) string            { return satelliteURL + "/teams/" + slug + "/mcp" }
func (b *testBundle) issuer() string           { return b.replicas[0].url }
func (b *testBundle) oauthURL(p string) string { return b.replicas[0].url + p }

// oauthFixture is a bundle whose global satellite publishes satelliteURL, a user who belongs to team "red"
// and not to team "blue", and a public client registered dynamically.
type oauthFixture struct {
	b        *testBundle
	clock    *clock
	user     caller
	red      store.Team
	blue     store.Team
	sat      *satellite
	clientID string
	redirect string
}

func setupOAuth(t *testing.T, opts setupOpts) *oauthFixture {
	t.Helper()
	f := &oauthFixture{clock: &clock{}, redirect: "http://127.0.0.1:43117/callback"}
	opts.oauth.Now = f.clock.now
	if opts.logger == nil {
		opts.logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError}))
	}
	f.b = setup(t, opts)
	st := f.b.store()
	f.user = newCaller(t, st, "ada@red.test", store.RoleGlobalUser)
	other := newCaller(t, st, "bo@blue.test", store.RoleGlobalUser)
	var err error
	if f.red, err = st.CreateOwnedTeam(t.Context(), "red", "Red", f.user.user.ID); err != nil {
		t.Fatal(err)
	}
	if f.blue, err = st.CreateOwnedTeam(t.Context(), "blue", "Blue", other.user.ID); err != nil {
		t.Fatal(err)
	}
	f.sat = f.b.activeSatellite(t, "")
	f.sat.heartbeat(t, satelliteURL)
	f.clientID = registerClient(t, f.b, map[string]any{"client_name": "Test client", "redirect_uris": []string{f.redirect}})
	return f
}

// registerClient registers a client dynamically and returns its id.
func registerClient(t *testing.T, b *testBundle, md map[string]any) string {
	t.Helper()
	status, body := postJSON(t, b.oauthURL("/oauth/register"), md)
	if status != http.StatusCreated {
		t.Fatalf("register: %d %s", status, body)
	}
	var out struct {
		ClientID   string `json:"client_id"`
		AuthMethod string `json:"token_endpoint_auth_method"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.ClientID == "" || out.AuthMethod != "none" {
		t.Fatalf("register: %s (%v)", body, err)
	}
	return out.ClientID
}

func postJSON(t *testing.T, u string, v any) (int, []byte) {
	t.Helper()
	raw, _ := json.Marshal(v)
	resp, err := testClient.Post(u, "application/json", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func (f *oauthFixture) config(clientID, redirect string, scopes ...string) *oauth2.Config {
	if len(scopes) == 0 {
		scopes = []string{oauth.ScopeRead, oauth.ScopeExecute, oauth.ScopeOfflineAccess}
	}
	return &oauth2.Config{
		ClientID: clientID, RedirectURL: redirect, Scopes: scopes,
		Endpoint: oauth2.Endpoint{
			AuthURL: f.b.oauthURL("/oauth/authorize"), TokenURL: f.b.oauthURL("/oauth/token"),
			AuthStyle: oauth2.AuthStyleInParams,
		},
	}
}

// authorizeURL is the authorization request of cfg for resource with PKCE.
func authorizeURL(cfg *oauth2.Config, verifier, resource string, extra ...oauth2.AuthCodeOption) string {
	opts := append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", resource)}, extra...)
	return cfg.AuthCodeURL("state-0123456789", opts...)
}

const testPassword = "correct horse battery staple"

// signIn signs in at authURL with a fresh browser unless one is given, and returns the answer.
func signIn(t *testing.T, br *oauthtest.Browser, authURL, email string) oauthtest.Page {
	t.Helper()
	p, err := br.SignIn(t.Context(), authURL, email, testPassword)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// consentPage signs in and returns the consent page.
func consentPage(t *testing.T, br *oauthtest.Browser, authURL, email string) oauthtest.Page {
	t.Helper()
	p := signIn(t, br, authURL, email)
	if !oauthtest.IsConsent(p) {
		t.Fatalf("sign in: want the consent page, got %d %s", p.Status, p.Body)
	}
	return p
}

func get(t *testing.T, br *oauthtest.Browser, u string) oauthtest.Page {
	t.Helper()
	p, err := br.Do(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func redirectQuery(t *testing.T, p oauthtest.Page) url.Values {
	t.Helper()
	q, err := oauthtest.RedirectQuery(p)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// authorize runs the browser part of the flow for the fixture's user and returns the code.
func (f *oauthFixture) authorize(t *testing.T, cfg *oauth2.Config, verifier, resource string) string {
	t.Helper()
	q, err := oauthtest.NewBrowser().Authorize(t.Context(), authorizeURL(cfg, verifier, resource), f.user.user.Email, testPassword)
	if err != nil {
		t.Fatal(err)
	}
	if q.Get("code") == "" || q.Get("state") != "state-0123456789" || q.Get("iss") != f.b.issuer() {
		t.Fatalf("authorization response %v: want code, state and iss %s", q, f.b.issuer())
	}
	return q.Get("code")
}

func oauthErrorCode(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}

func TestOAuthMetadata(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	for _, path := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
		resp, err := testClient.Get(b.oauthURL(path))
		if err != nil {
			t.Fatal(err)
		}
		var md map[string]any
		err = json.NewDecoder(resp.Body).Decode(&md)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if md["issuer"] != b.issuer() || md["token_endpoint"] != b.issuer()+"/oauth/token" ||
			md["registration_endpoint"] != b.issuer()+"/oauth/register" ||
			md["client_id_metadata_document_supported"] != true ||
			md["authorization_response_iss_parameter_supported"] != true ||
			jsonList(md["code_challenge_methods_supported"]) != "S256" ||
			md["device_authorization_endpoint"] != b.issuer()+"/oauth/device_authorization" ||
			jsonList(md["scopes_supported"]) != "mcp:read mcp:tools:execute offline_access api" ||
			jsonList(md["grant_types_supported"]) != "authorization_code refresh_token client_credentials urn:ietf:params:oauth:grant-type:device_code" {
			t.Errorf("%s: %v", path, md)
		}
	}
}

func jsonList(v any) string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return strings.Join(out, " ")
}

// TestOAuthAuthorizationCodeFlow runs the whole browser-free flow: registration, authorization with PKCE
// through the login and consent pages, token, the token at the satellite, refresh, revocation.
func TestOAuthAuthorizationCodeFlow(t *testing.T) {
	t.Parallel()
	f := setupOAuth(t, setupOpts{})
	ctx := t.Context()
	cfg := f.config(f.clientID, f.redirect)
	verifier := oauth2.GenerateVerifier()
	resource := endpointOf("red")
	code := f.authorize(t, cfg, verifier, resource)

	tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", resource))
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" || tok.Expiry.IsZero() {
		t.Fatalf("token response %+v: want access and refresh tokens with an expiry", tok)
	}
	got := introspect(t, f.sat, tok.AccessToken)
	if !got.Active || got.Audience != resource || got.TeamSlug != "red" || got.UserId != f.user.user.ID.String() ||
		got.ClientId != f.clientID || strings.Join(got.Scopes, " ") != "mcp:read mcp:tools:execute offline_access" {
		t.Fatalf("satellite introspection of the new token: %v", got)
	}

	// Consent is remembered: the next authorization for the same client, team and scopes skips the page.
	if q := redirectQuery(t, signIn(t, oauthtest.NewBrowser(), authorizeURL(cfg, verifier, resource), f.user.user.Email)); q.Get("code") == "" {
		t.Fatalf("remembered consent: %v", q)
	}

	// A client may send no state, as the TypeScript SDK does: PKCE protects the flow, and the answer then
	// carries no state either.
	q, err := oauthtest.NewBrowser().Authorize(ctx,
		cfg.AuthCodeURL("", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", resource)),
		f.user.user.Email, testPassword)
	if err != nil || q.Get("code") == "" || q.Has("state") || q.Get("iss") != f.b.issuer() {
		t.Fatalf("authorization without state: %v %v", q, err)
	}

	// Refreshing rotates the refresh token.
	refreshed, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil {
		t.Fatal(err)
	}
	if refreshed.AccessToken == tok.AccessToken || refreshed.RefreshToken == "" || refreshed.RefreshToken == tok.RefreshToken {
		t.Fatalf("refresh: %+v, want new access and refresh tokens", refreshed)
	}
	if got := introspect(t, f.sat, refreshed.AccessToken); !got.Active || got.Audience != resource {
		t.Fatalf("refreshed token at the satellite: %v", got)
	}

	// Revoking the refresh token ends the grant: its access tokens stop working at the satellite.
	resp, err := testClient.PostForm(f.b.oauthURL("/oauth/revoke"), url.Values{"token": {refreshed.RefreshToken}, "client_id": {f.clientID}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	if got := introspect(t, f.sat, refreshed.AccessToken); got.Active {
		t.Fatalf("access token after its refresh token was revoked: %v", got)
	}
	if _, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshed.RefreshToken}).Token(); oauthErrorCode(err) != "invalid_grant" {
		t.Fatalf("refresh with a revoked token: %v, want invalid_grant", err)
	}
}

func TestOAuthTokenErrors(t *testing.T) {
	t.Parallel()
	f := setupOAuth(t, setupOpts{})
	ctx := t.Context()
	cfg := f.config(f.clientID, f.redirect)
	resource := endpointOf("red")

	t.Run("wrong PKCE verifier", func(t *testing.T) {
		code := f.authorize(t, cfg, oauth2.GenerateVerifier(), resource)
		_, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(oauth2.GenerateVerifier()))
		if oauthErrorCode(err) != "invalid_grant" {
			t.Fatalf("got %v, want invalid_grant", err)
		}
	})
	t.Run("reused code", func(t *testing.T) {
		verifier := oauth2.GenerateVerifier()
		code := f.authorize(t, cfg, verifier, resource)
		first, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		_, err = cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
		if oauthErrorCode(err) != "invalid_grant" {
			t.Fatalf("got %v, want invalid_grant", err)
		}
		if got := introspect(t, f.sat, first.AccessToken); got.Active {
			t.Fatalf("the token bought with a reused code is still active: %v", got)
		}
	})
	t.Run("mismatched redirect URI", func(t *testing.T) {
		verifier := oauth2.GenerateVerifier()
		code := f.authorize(t, cfg, verifier, resource)
		other := *cfg
		other.RedirectURL = "http://127.0.0.1:43117/elsewhere"
		_, err := other.Exchange(ctx, code, oauth2.VerifierOption(verifier))
		if oauthErrorCode(err) != "invalid_grant" {
			t.Fatalf("got %v, want invalid_grant", err)
		}
	})
	t.Run("foreign audience at the token endpoint", func(t *testing.T) {
		verifier := oauth2.GenerateVerifier()
		code := f.authorize(t, cfg, verifier, resource)
		_, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", endpointOf("blue")))
		if oauthErrorCode(err) != "invalid_target" {
			t.Fatalf("got %v, want invalid_target", err)
		}
	})
	t.Run("foreign audience at authorization", func(t *testing.T) {
		p := signIn(t, oauthtest.NewBrowser(), authorizeURL(cfg, oauth2.GenerateVerifier(), endpointOf("blue")), f.user.user.Email)
		if q := redirectQuery(t, p); q.Get("error") != "invalid_target" || q.Get("code") != "" {
			t.Fatalf("got %v, want invalid_target", q)
		}
	})
	t.Run("reused refresh token", func(t *testing.T) {
		verifier := oauth2.GenerateVerifier()
		code := f.authorize(t, cfg, verifier, resource)
		tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		next, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
		if err != nil {
			t.Fatal(err)
		}
		_, err = cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
		if oauthErrorCode(err) != "invalid_grant" {
			t.Fatalf("got %v, want invalid_grant", err)
		}
		// Reuse revokes the family: the refresh token and access token issued by the first refresh too.
		if got := introspect(t, f.sat, next.AccessToken); got.Active {
			t.Fatalf("access token of a family with a reused refresh token: %v", got)
		}
		if _, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: next.RefreshToken}).Token(); oauthErrorCode(err) != "invalid_grant" {
			t.Fatalf("newest refresh token after reuse: %v, want invalid_grant", err)
		}
	})
	t.Run("expired code", func(t *testing.T) {
		// Last: it moves the shared clock past every code issued so far.
		verifier := oauth2.GenerateVerifier()
		code := f.authorize(t, cfg, verifier, resource)
		f.clock.advance(10 * time.Minute)
		_, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
		if oauthErrorCode(err) != "invalid_grant" {
			t.Fatalf("got %v, want invalid_grant", err)
		}
	})
}

func TestOAuthAuthorizeRefusals(t *testing.T) {
	t.Parallel()
	f := setupOAuth(t, setupOpts{})
	cfg := f.config(f.clientID, f.redirect)
	br := oauthtest.NewBrowser()

	for name, tc := range map[string]struct {
		url  string
		want string
	}{
		"no PKCE":          {cfg.AuthCodeURL("state-0123456789", oauth2.SetAuthURLParam("resource", endpointOf("red"))), "invalid_request"},
		"plain PKCE":       {cfg.AuthCodeURL("state-0123456789", oauth2.SetAuthURLParam("resource", endpointOf("red")), oauth2.SetAuthURLParam("code_challenge", strings.Repeat("a", 43)), oauth2.SetAuthURLParam("code_challenge_method", "plain")), "invalid_request"},
		"no resource":      {cfg.AuthCodeURL("state-0123456789", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "invalid_target"},
		"unknown resource": {authorizeURL(cfg, oauth2.GenerateVerifier(), "https://elsewhere.example/teams/red/mcp"), "invalid_target"},
		"unknown scope":    {authorizeURL(f.config(f.clientID, f.redirect, "admin"), oauth2.GenerateVerifier(), endpointOf("red")), "invalid_scope"},
	} {
		if q := redirectQuery(t, get(t, br, tc.url)); q.Get("error") != tc.want {
			t.Errorf("%s: got %v, want %s", name, q, tc.want)
		}
	}
	// An unregistered redirect URI is never redirected to.
	if p := get(t, br, authorizeURL(f.config(f.clientID, "https://evil.example/cb"), oauth2.GenerateVerifier(), endpointOf("red"))); p.Status < 400 || p.Location != "" {
		t.Fatalf("unregistered redirect URI: %d %s", p.Status, p.Body)
	}
	// A form posted without the CSRF token is refused.
	authURL := authorizeURL(f.config(registerClient(t, f.b, map[string]any{"redirect_uris": []string{f.redirect}}), f.redirect),
		oauth2.GenerateVerifier(), endpointOf("red"))
	consentPage(t, br, authURL, f.user.user.Email)
	p, err := br.Do(t.Context(), http.MethodPost, authURL, url.Values{"action": {"approve"}, "team": {f.red.ID.String()}})
	if err != nil || p.Status != http.StatusForbidden {
		t.Fatalf("approve without CSRF token: %d %v, want 403", p.Status, err)
	}
}

func TestOAuthRegistration(t *testing.T) {
	t.Parallel()
	f := setupOAuth(t, setupOpts{})
	for name, md := range map[string]map[string]any{
		"plain http":         {"redirect_uris": []string{"http://example.com/cb"}},
		"no redirect URI":    {"client_name": "x"},
		"fragment":           {"redirect_uris": []string{"https://example.com/cb#x"}},
		"client credentials": {"redirect_uris": []string{"https://example.com/cb"}, "grant_types": []string{"client_credentials"}},
		"implicit":           {"redirect_uris": []string{"https://example.com/cb"}, "response_types": []string{"token"}},
	} {
		status, body := postJSON(t, f.b.oauthURL("/oauth/register"), md)
		if status != http.StatusBadRequest || !bytes.Contains(body, []byte(`"error":"invalid_`)) {
			t.Errorf("%s: %d %s, want an RFC 7591 error", name, status, body)
		}
	}
	// localhost and https redirect URIs register; a loopback IP literal's port may change (RFC 8252).
	registerClient(t, f.b, map[string]any{"redirect_uris": []string{"http://localhost:3000/cb", "https://app.example/cb"}})
	cfg := f.config(f.clientID, "http://127.0.0.1:50999/callback")
	verifier := oauth2.GenerateVerifier()
	code := f.authorize(t, cfg, verifier, endpointOf("red"))
	if _, err := cfg.Exchange(t.Context(), code, oauth2.VerifierOption(verifier)); err != nil {
		t.Fatal(err)
	}

	// Registration is open to anyone, so one address registers only so fast.
	var status int
	var body []byte
	for range 40 {
		status, body = postJSON(t, f.b.oauthURL("/oauth/register"), map[string]any{"redirect_uris": []string{"https://app.example/cb"}})
		if status != http.StatusCreated {
			break
		}
	}
	if status != http.StatusTooManyRequests || !bytes.Contains(body, []byte(`"error":"temporarily_unavailable"`)) {
		t.Errorf("40 registrations in a row: the last answered %d %s, want 429 temporarily_unavailable", status, body)
	}
}

// TestOAuthClientMetadataDocument authorizes a client whose id is the https URL of its metadata document,
// served by a local TLS server.
func TestOAuthClientMetadataDocument(t *testing.T) {
	t.Parallel()
	var docURL string
	redirect := "http://127.0.0.1:43118/callback"
	mux := http.NewServeMux()
	mux.HandleFunc("GET /client.json", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"client_id": docURL, "client_name": "Document client", "redirect_uris": []string{redirect},
			"token_endpoint_auth_method": "none",
		})
	})
	mux.HandleFunc("GET /liar.json", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"client_id": "https://someone.else/client.json", "redirect_uris": []string{redirect}})
	})
	docs := httptest.NewTLSServer(mux)
	t.Cleanup(docs.Close)
	docURL = docs.URL + "/client.json"
	f := setupOAuth(t, setupOpts{oauth: oauth.Config{MetadataClient: docs.Client()}})

	cfg := f.config(docURL, redirect)
	verifier := oauth2.GenerateVerifier()
	br := oauthtest.NewBrowser()
	authURL := authorizeURL(cfg, verifier, endpointOf("red"))
	consent := consentPage(t, br, authURL, f.user.user.Email)
	if !strings.Contains(consent.Body, "Document client") {
		t.Fatalf("consent page does not name the client:\n%s", consent.Body)
	}
	q, err := br.Approve(t.Context(), authURL, consent)
	if err != nil {
		t.Fatal(err)
	}
	code := q.Get("code")
	tok, err := cfg.Exchange(t.Context(), code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if got := introspect(t, f.sat, tok.AccessToken); !got.Active || got.ClientId != docURL {
		t.Fatalf("token of a metadata-document client: %v", got)
	}

	// A document that names another client id is refused.
	if p := get(t, br, authorizeURL(f.config(docs.URL+"/liar.json", redirect), verifier, endpointOf("red"))); p.Status < 400 || p.Location != "" {
		t.Fatalf("lying metadata document: %d %s", p.Status, p.Body)
	}
}

func (f *oauthFixture) oauthService(token string) apiv1connect.OAuthServiceClient {
	return apiv1connect.NewOAuthServiceClient(testClient, f.b.replicas[0].url, connect.WithInterceptors(withBearer(token)))
}

// TestOAuthClientCredentials has a team admin create a confidential client whose tokens act as its service
// user in the team, introspect them as that client, and revoke it.
func TestOAuthClientCredentials(t *testing.T) {
	t.Parallel()
	f := setupOAuth(t, setupOpts{})
	ctx := t.Context()
	api := f.oauthService(f.user.token)
	created, err := api.CreateOAuthClient(ctx, connect.NewRequest(&apiv1.CreateOAuthClientRequest{
		TeamId: f.red.ID.String(), Name: "nightly agent", Scopes: []string{oauth.ScopeRead},
	}))
	if err != nil {
		t.Fatal(err)
	}
	client, secret := created.Msg.Client, created.Msg.ClientSecret
	if secret == "" || client.ServiceUserId == "" || client.TokenEndpointAuthMethod != "client_secret_basic" {
		t.Fatalf("created client %v", created.Msg)
	}
	cc := func(secret, resource string) *clientcredentials.Config {
		return &clientcredentials.Config{
			ClientID: client.ClientId, ClientSecret: secret, TokenURL: f.b.oauthURL("/oauth/token"),
			EndpointParams: url.Values{"resource": {resource}},
		}
	}
	tok, err := cc(secret, endpointOf("red")).Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken != "" {
		t.Errorf("client credentials issued a refresh token")
	}
	got := introspect(t, f.sat, tok.AccessToken)
	if !got.Active || got.TeamSlug != "red" || got.UserId != client.ServiceUserId || got.Audience != endpointOf("red") ||
		strings.Join(got.Scopes, " ") != oauth.ScopeRead {
		t.Fatalf("client-credentials token at the satellite: %v", got)
	}

	if _, err := cc("orcs_wrong", endpointOf("red")).Token(ctx); oauthErrorCode(err) != "invalid_client" {
		t.Errorf("wrong client secret: %v, want invalid_client", err)
	}
	if _, err := cc(secret, endpointOf("blue")).Token(ctx); oauthErrorCode(err) != "invalid_target" {
		t.Errorf("another team's endpoint: %v, want invalid_target", err)
	}

	// RFC 7662: only an authenticated confidential client, and only about its own tokens.
	introspectAs := func(user, pass, token string) (int, map[string]any) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.b.oauthURL("/oauth/introspect"),
			strings.NewReader(url.Values{"token": {token}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if user != "" {
			req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
		}
		resp, err := testClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	if status, out := introspectAs(client.ClientId, secret, tok.AccessToken); status != http.StatusOK || out["active"] != true ||
		out["aud"] == nil || out["client_id"] != client.ClientId || out["scope"] != oauth.ScopeRead {
		t.Errorf("introspection by the client: %d %v", status, out)
	}
	if status, _ := introspectAs("", "", tok.AccessToken); status != http.StatusUnauthorized {
		t.Errorf("anonymous introspection: %d, want 401", status)
	}
	if status, _ := introspectAs(client.ClientId, "orcs_wrong", tok.AccessToken); status != http.StatusUnauthorized {
		t.Errorf("introspection with a wrong secret: %d, want 401", status)
	}
	cfg := f.config(f.clientID, f.redirect)
	verifier := oauth2.GenerateVerifier()
	other, err := cfg.Exchange(ctx, f.authorize(t, cfg, verifier, endpointOf("red")), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if _, out := introspectAs(client.ClientId, secret, other.AccessToken); out["active"] != false {
		t.Errorf("introspection of another client's token: %v, want inactive", out)
	}

	list, err := api.ListOAuthClients(ctx, connect.NewRequest(&apiv1.ListOAuthClientsRequest{TeamId: f.red.ID.String()}))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range list.Msg.Clients {
		ids = append(ids, c.ClientId)
	}
	if !slices.Contains(ids, client.ClientId) || !slices.Contains(ids, f.clientID) {
		t.Fatalf("team clients %v: want the confidential client and the public one with a grant", ids)
	}
	if _, err := api.RevokeOAuthClient(ctx, connect.NewRequest(&apiv1.RevokeOAuthClientRequest{
		TeamId: f.red.ID.String(), ClientId: client.ClientId,
	})); err != nil {
		t.Fatal(err)
	}
	if got := introspect(t, f.sat, tok.AccessToken); got.Active {
		t.Fatalf("token of a revoked client: %v", got)
	}
	if _, err := cc(secret, endpointOf("red")).Token(ctx); oauthErrorCode(err) != "invalid_client" {
		t.Errorf("revoked client: %v, want invalid_client", err)
	}
}

// TestOAuthGrantManagement has a team admin revoke a grant and a user withdraw their consent.
func TestOAuthGrantManagement(t *testing.T) {
	t.Parallel()
	f := setupOAuth(t, setupOpts{})
	ctx := t.Context()
	api := f.oauthService(f.user.token)
	cfg := f.config(f.clientID, f.redirect)
	resource := endpointOf("red")
	issue := func() *oauth2.Token {
		verifier := oauth2.GenerateVerifier()
		tok, err := cfg.Exchange(ctx, f.authorize(t, cfg, verifier, resource), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	tok := issue()
	grants, err := api.ListOAuthGrants(ctx, connect.NewRequest(&apiv1.ListOAuthGrantsRequest{TeamId: f.red.ID.String()}))
	if err != nil {
		t.Fatal(err)
	}
	if len(grants.Msg.Grants) != 1 || grants.Msg.Grants[0].Audience != resource || grants.Msg.Grants[0].ClientId != f.clientID {
		t.Fatalf("team grants: %v", grants.Msg.Grants)
	}
	if _, err := api.RevokeOAuthGrant(ctx, connect.NewRequest(&apiv1.RevokeOAuthGrantRequest{
		TeamId: f.blue.ID.String(), GrantId: grants.Msg.Grants[0].GrantId,
	})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("revoke through another team: %v, want PermissionDenied", err)
	}
	if _, err := api.RevokeOAuthGrant(ctx, connect.NewRequest(&apiv1.RevokeOAuthGrantRequest{
		TeamId: f.red.ID.String(), GrantId: grants.Msg.Grants[0].GrantId,
	})); err != nil {
		t.Fatal(err)
	}
	if got := introspect(t, f.sat, tok.AccessToken); got.Active {
		t.Fatalf("token of a revoked grant: %v", got)
	}

	tok = issue()
	mine, err := api.ListMyOAuthConsents(ctx, connect.NewRequest(&apiv1.ListMyOAuthConsentsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if len(mine.Msg.Consents) != 1 || mine.Msg.Consents[0].ClientId != f.clientID || len(mine.Msg.Grants) != 1 {
		t.Fatalf("my consents: %v", mine.Msg)
	}
	if _, err := api.WithdrawOAuthConsent(ctx, connect.NewRequest(&apiv1.WithdrawOAuthConsentRequest{
		ClientId: f.clientID, ConsentTeamId: f.red.ID.String(),
	})); err != nil {
		t.Fatal(err)
	}
	if got := introspect(t, f.sat, tok.AccessToken); got.Active {
		t.Fatalf("token after consent was withdrawn: %v", got)
	}
	// The client must ask again.
	consentPage(t, oauthtest.NewBrowser(), authorizeURL(cfg, oauth2.GenerateVerifier(), resource), f.user.user.Email)
}

// TestOAuthEndsWithMembership removes a member from the team: their tokens stop working at the satellite
// and their refresh token buys nothing more.
func TestOAuthEndsWithMembership(t *testing.T) {
	t.Parallel()
	f := setupOAuth(t, setupOpts{})
	ctx := t.Context()
	st := f.b.store()
	member := newCaller(t, st, "member@red.test", store.RoleGlobalUser)
	if err := st.AddMember(ctx, f.red.ID, member.user.ID, store.RoleTeamUser); err != nil {
		t.Fatal(err)
	}
	cfg := f.config(f.clientID, f.redirect)
	verifier := oauth2.GenerateVerifier()
	q, err := oauthtest.NewBrowser().Authorize(ctx, authorizeURL(cfg, verifier, endpointOf("red")), member.user.Email, testPassword)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if got := introspect(t, f.sat, tok.AccessToken); !got.Active {
		t.Fatalf("member's token: %v", got)
	}
	if err := st.RemoveMember(ctx, f.red.ID, member.user.ID); err != nil {
		t.Fatal(err)
	}
	if got := introspect(t, f.sat, tok.AccessToken); got.Active {
		t.Fatalf("former member's token at the satellite: %v", got)
	}
	if _, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); oauthErrorCode(err) != "invalid_grant" {
		t.Fatalf("former member's refresh: %v, want invalid_grant", err)
	}
}

// TestRegistrationLimitIsSharedByReplicas registers clients from one address through two replicas in
// turn: together they allow the limit of one (30 and a refill at most), not one limit each.
func TestRegistrationLimitIsSharedByReplicas(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{replicas: 2})
	created := 0
	for i := range 60 {
		status, body := postJSON(t, b.replicas[i%2].url+"/oauth/register",
			map[string]any{"redirect_uris": []string{"https://app.example/cb"}})
		switch status {
		case http.StatusCreated:
			created++
		case http.StatusTooManyRequests:
		default:
			t.Fatalf("registration %d: %d %s", i, status, body)
		}
	}
	if created < 30 || created > 31 {
		t.Errorf("%d of 60 registrations through two replicas created, want the one limit of 30", created)
	}
}
