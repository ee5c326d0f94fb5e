package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/oauth2"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	"github.com/orrery/orrery/internal/oauthtest"
	"github.com/orrery/orrery/services/controlplane/internal/oauth"
)

// deviceStart is the answer of the device authorization endpoint.
type deviceStart struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
	Error                   string `json:"error"`
}

func postForm(t *testing.T, u string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := testClient.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("POST %s: %d %s: %v", u, resp.StatusCode, raw, err)
	}
	return resp.StatusCode, out
}

func (f *oauthFixture) startDevice(t *testing.T, form url.Values) (int, deviceStart) {
	t.Helper()
	if form == nil {
		form = url.Values{"client_id": {oauth.CLIClientID}, "scope": {"api offline_access"}}
	}
	status, out := postForm(t, f.b.oauthURL("/oauth/device_authorization"), form)
	raw, _ := json.Marshal(out)
	var d deviceStart
	_ = json.Unmarshal(raw, &d)
	return status, d
}

func (f *oauthFixture) pollDevice(t *testing.T, clientID, deviceCode string) (int, map[string]any) {
	t.Helper()
	return postForm(t, f.b.oauthURL("/oauth/token"), url.Values{
		"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "client_id": {clientID}, "device_code": {deviceCode},
	})
}

func (f *oauthFixture) teamsAs(token string) apiv1connect.TeamServiceClient {
	return apiv1connect.NewTeamServiceClient(testClient, f.b.issuer(), connect.WithInterceptors(withBearer(token)))
}

// TestOAuthDeviceGrant signs orreryctl in with the device grant: pending until the user approves on the
// verification page, slow_down when polling too fast, then an access token for the API that acts as the
// user there, is refused as an MCP token, and refreshes; the device code buys tokens once.
func TestOAuthDeviceGrant(t *testing.T) {
	t.Parallel()
	f := setupOAuth(t, setupOpts{oauth: oauth.Config{DevicePollInterval: time.Second}})
	ctx := t.Context()

	status, d := f.startDevice(t, nil)
	if status != http.StatusOK || !strings.HasPrefix(d.DeviceCode, "ordc_") || len(d.UserCode) != 9 ||
		d.VerificationURI != f.b.issuer()+"/oauth/device" || d.Interval != 1 || d.ExpiresIn != 600 ||
		!strings.HasPrefix(d.VerificationURIComplete, d.VerificationURI+"?user_code=") {
		t.Fatalf("device authorization: %d %+v", status, d)
	}
	if status, out := f.pollDevice(t, oauth.CLIClientID, d.DeviceCode); status != http.StatusBadRequest || out["error"] != "authorization_pending" {
		t.Fatalf("poll before approval: %d %v", status, out)
	}
	if status, out := f.pollDevice(t, oauth.CLIClientID, d.DeviceCode); status != http.StatusBadRequest || out["error"] != "slow_down" {
		t.Fatalf("second poll at once: %d %v, want slow_down", status, out)
	}

	page, err := oauthtest.NewBrowser().DeviceDecision(ctx, d.VerificationURIComplete, f.user.user.Email, testPassword, true)
	if err != nil || !strings.Contains(page.Body, "Signed in") {
		t.Fatalf("approve: %v %s", err, page.Body)
	}
	// The client heeds slow_down as RFC 8628 says: five seconds more between polls from then on.
	time.Sleep(6 * time.Second)
	status, tok := f.pollDevice(t, oauth.CLIClientID, d.DeviceCode)
	if status != http.StatusOK {
		t.Fatalf("poll after approval: %d %v", status, tok)
	}
	access, _ := tok["access_token"].(string)
	refresh, _ := tok["refresh_token"].(string)
	if !strings.HasPrefix(access, "orat_") || refresh == "" || tok["scope"] != "api offline_access" {
		t.Fatalf("token response: %v", tok)
	}

	// The token acts as the user on the API: it lists the user's own teams.
	teams, err := f.teamsAs(access).ListTeams(ctx, connect.NewRequest(&apiv1.ListTeamsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	var slugs []string
	for _, tm := range teams.Msg.GetTeams() {
		slugs = append(slugs, tm.GetSlug())
	}
	if !strings.Contains(strings.Join(slugs, " "), "red") || strings.Contains(strings.Join(slugs, " "), "blue") {
		t.Fatalf("teams as the device token: %v", slugs)
	}
	// It reads the team's endpoint, which orreryctl connect writes into client configurations.
	red, err := f.teamsAs(access).GetTeamEndpoint(ctx, connect.NewRequest(&apiv1.GetTeamEndpointRequest{TeamId: f.red.ID.String()}))
	if err != nil || red.Msg.GetUrl() != endpointOf("red") {
		t.Fatalf("red's endpoints: %v (%v), want %s", red, err, endpointOf("red"))
	}
	// It is no MCP token: the satellite sees an audience that is no team endpoint.
	if got := introspect(t, f.sat, access); got.Active && strings.Contains(got.Audience, "/teams/") {
		t.Fatalf("API token at the satellite: %v", got)
	}

	if status, out := f.pollDevice(t, oauth.CLIClientID, d.DeviceCode); status != http.StatusBadRequest || out["error"] != "invalid_grant" {
		t.Fatalf("device code used twice: %d %v", status, out)
	}

	cfg := &oauth2.Config{ClientID: oauth.CLIClientID, Endpoint: oauth2.Endpoint{TokenURL: f.b.oauthURL("/oauth/token"), AuthStyle: oauth2.AuthStyleInParams}}
	refreshed, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: refresh}).Token()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.teamsAs(refreshed.AccessToken).ListTeams(ctx, connect.NewRequest(&apiv1.ListTeamsRequest{})); err != nil {
		t.Fatalf("refreshed token on the API: %v", err)
	}
}

// TestOAuthDeviceGrantAttacks is what a hostile user or client tries against the device grant.
func TestOAuthDeviceGrantAttacks(t *testing.T) {
	t.Parallel()
	f := setupOAuth(t, setupOpts{oauth: oauth.Config{DevicePollInterval: time.Second}})
	ctx := t.Context()
	st := f.b.store()
	mallory := newCaller(t, st, "mallory@evil.test", "global_user")

	t.Run("a team endpoint token is no API token", func(t *testing.T) {
		cfg := f.config(f.clientID, f.redirect)
		verifier := oauth2.GenerateVerifier()
		code := f.authorize(t, cfg, verifier, endpointOf("red"))
		tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.teamsAs(tok.AccessToken).ListTeams(ctx, connect.NewRequest(&apiv1.ListTeamsRequest{}))
		if connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("MCP token on the API: %v, want unauthenticated", err)
		}
	})

	t.Run("other clients may not ask for the API", func(t *testing.T) {
		if status, out := f.startDevice(t, url.Values{"client_id": {f.clientID}}); status != http.StatusBadRequest || out.Error != "unauthorized_client" {
			t.Fatalf("device grant for a registered client: %d %+v", status, out)
		}
		cfg := f.config(f.clientID, f.redirect, oauth.ScopeRead)
		p := get(t, oauthtest.NewBrowser(), authorizeURL(cfg, oauth2.GenerateVerifier(), f.b.issuer()))
		if q := redirectQuery(t, p); q.Get("error") != "invalid_target" {
			t.Fatalf("authorization for the API by a registered client: %v", q)
		}
		if status, out := f.startDevice(t, url.Values{"client_id": {oauth.CLIClientID}, "resource": {endpointOf("red")}}); status != http.StatusBadRequest || out.Error != "invalid_target" {
			t.Fatalf("device grant for a team endpoint: %d %+v", status, out)
		}
		if status, out := f.startDevice(t, url.Values{"client_id": {oauth.CLIClientID}, "scope": {"mcp:read"}}); status != http.StatusBadRequest || out.Error != "invalid_scope" {
			t.Fatalf("device grant for MCP scopes: %d %+v", status, out)
		}
	})

	t.Run("another client cannot redeem the device code", func(t *testing.T) {
		_, d := f.startDevice(t, nil)
		if _, err := oauthtest.NewBrowser().DeviceDecision(ctx, d.VerificationURIComplete, f.user.user.Email, testPassword, true); err != nil {
			t.Fatal(err)
		}
		if status, out := f.pollDevice(t, f.clientID, d.DeviceCode); status < 400 || out["access_token"] != nil {
			t.Fatalf("device code redeemed by another client: %d %v", status, out)
		}
		if status, out := f.pollDevice(t, oauth.CLIClientID, "ordc_"+strings.Repeat("A", 43)); status != http.StatusBadRequest || out["error"] != "invalid_grant" {
			t.Fatalf("made-up device code: %d %v", status, out)
		}
	})

	t.Run("a decided code cannot be decided again by someone else", func(t *testing.T) {
		_, d := f.startDevice(t, nil)
		if _, err := oauthtest.NewBrowser().DeviceDecision(ctx, d.VerificationURIComplete, f.user.user.Email, testPassword, true); err != nil {
			t.Fatal(err)
		}
		// Mallory learns the code (over a shoulder) and tries to deny it or to have the token be hers.
		p, err := oauthtest.NewBrowser().DeviceDecision(ctx, d.VerificationURIComplete, mallory.user.Email, testPassword, false)
		if err == nil || p.Status != http.StatusNotFound || !strings.Contains(p.Body, "unknown or has expired") {
			t.Fatalf("second decision: %v %d %s", err, p.Status, p.Body)
		}
		time.Sleep(time.Second)
		status, out := f.pollDevice(t, oauth.CLIClientID, d.DeviceCode)
		if status != http.StatusOK {
			t.Fatalf("poll: %d %v", status, out)
		}
		me, err := apiv1connect.NewAccountServiceClient(testClient, f.b.issuer(),
			connect.WithInterceptors(withBearer(out["access_token"].(string)))).GetCurrentUser(ctx, connect.NewRequest(&apiv1.GetCurrentUserRequest{}))
		if err != nil || me.Msg.GetUser().GetEmail() != f.user.user.Email {
			t.Fatalf("the token acts for %v (%v), want the user who approved first", me, err)
		}
	})

	t.Run("a denied request gets no token", func(t *testing.T) {
		_, d := f.startDevice(t, nil)
		if _, err := oauthtest.NewBrowser().DeviceDecision(ctx, d.VerificationURIComplete, f.user.user.Email, testPassword, false); err != nil {
			t.Fatal(err)
		}
		if status, out := f.pollDevice(t, oauth.CLIClientID, d.DeviceCode); status != http.StatusForbidden && out["error"] != "access_denied" {
			t.Fatalf("poll after denial: %d %v", status, out)
		}
	})

	t.Run("guessing user codes is cut off", func(t *testing.T) {
		br := oauthtest.NewBrowser()
		p := get(t, br, f.b.oauthURL("/oauth/device"))
		csrf, err := oauthtest.CSRF(p.Body)
		if err != nil {
			t.Fatal(err)
		}
		p, err = br.Do(ctx, http.MethodPost, f.b.oauthURL("/oauth/device"), url.Values{"csrf": {csrf}, "action": {"login"},
			"email": {mallory.user.Email}, "password": {testPassword}})
		if err != nil || p.Status != http.StatusOK {
			t.Fatalf("sign in: %v %d", err, p.Status)
		}
		refused := 0
		for i := range 30 {
			p, err := br.Do(ctx, http.MethodPost, f.b.oauthURL("/oauth/device"), url.Values{"csrf": {csrf}, "action": {"lookup"},
				"user_code": {"BCDF-GH" + string("JKLMNPQRSTVWXZBCDFGHJKLMNPQRST"[i]) + "K"}})
			if err != nil {
				t.Fatal(err)
			}
			switch p.Status {
			case http.StatusNotFound:
			case http.StatusTooManyRequests:
				refused++
			default:
				t.Fatalf("guess %d: %d %s", i, p.Status, p.Body)
			}
		}
		if refused < 15 {
			t.Fatalf("%d of 30 guesses in a row refused, want most", refused)
		}
	})

	t.Run("an expired code is refused everywhere", func(t *testing.T) {
		g := setupOAuth(t, setupOpts{oauth: oauth.Config{DevicePollInterval: time.Second}})
		_, d := g.startDevice(t, nil)
		g.clock.advance(11 * time.Minute)
		if status, out := g.pollDevice(t, oauth.CLIClientID, d.DeviceCode); status != http.StatusBadRequest || out["error"] != "expired_token" {
			t.Fatalf("poll after expiry: %d %v", status, out)
		}
		p, err := oauthtest.NewBrowser().DeviceDecision(ctx, d.VerificationURIComplete, g.user.user.Email, testPassword, true)
		if err == nil || p.Status != http.StatusNotFound {
			t.Fatalf("approving an expired code: %v %d %s", err, p.Status, p.Body)
		}
	})
}

// TestOAuthAPIByBrowser runs orreryctl's browser sign-in: the authorization code flow with PKCE for the API
// resource, a consent page that names no team, a token that acts on the API, and the consent remembered.
func TestOAuthAPIByBrowser(t *testing.T) {
	t.Parallel()
	f := setupOAuth(t, setupOpts{})
	ctx := t.Context()
	redirect := "http://127.0.0.1:51234/callback" // the seeded loopback URI, on another port
	cfg := f.config(oauth.CLIClientID, redirect, oauth.ScopeAPI, oauth.ScopeOfflineAccess)
	verifier := oauth2.GenerateVerifier()
	authURL := authorizeURL(cfg, verifier, f.b.issuer())

	br := oauthtest.NewBrowser()
	consent := consentPage(t, br, authURL, f.user.user.Email)
	if strings.Contains(consent.Body, `name="team"`) || !strings.Contains(consent.Body, "use Orrery as you") {
		t.Fatalf("API consent page: %s", consent.Body)
	}
	q, err := br.Approve(ctx, authURL, consent)
	if err != nil || q.Get("code") == "" {
		t.Fatalf("approve: %v %v", q, err)
	}
	tok, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", f.b.issuer()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.teamsAs(tok.AccessToken).ListTeams(ctx, connect.NewRequest(&apiv1.ListTeamsRequest{})); err != nil {
		t.Fatalf("browser sign-in token on the API: %v", err)
	}
	// The consent is remembered: signing in again goes straight back to orreryctl.
	if q := redirectQuery(t, signIn(t, oauthtest.NewBrowser(), authorizeURL(cfg, oauth2.GenerateVerifier(), f.b.issuer()), f.user.user.Email)); q.Get("code") == "" {
		t.Fatalf("remembered consent: %v", q)
	}
	// A redirect elsewhere than the loopback is not orreryctl's.
	evil := f.config(oauth.CLIClientID, "https://evil.example/callback", oauth.ScopeAPI)
	if p := get(t, oauthtest.NewBrowser(), authorizeURL(evil, oauth2.GenerateVerifier(), f.b.issuer())); p.Status != http.StatusBadRequest || p.Location != "" {
		t.Fatalf("orreryctl with a foreign redirect: %d %s", p.Status, p.Location)
	}
}
