package server_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/orrery/orrery/internal/oauthtest"
	"github.com/orrery/orrery/services/controlplane/internal/oauth"
)

// TestOAuthStaysConnected: a client of the authorization code grant gets a rotating refresh token without
// asking for offline_access, even when it registered for authorization_code alone; a grant refreshed often
// enough lives until its maximum age and no longer, and one left unused ends after the idle time.
func TestOAuthStaysConnected(t *testing.T) {
	t.Parallel()
	const day = 24 * time.Hour
	f := setupOAuth(t, setupOpts{oauth: oauth.Config{RefreshTokenTTL: 30 * day, GrantMaxAge: 90 * day}})
	ctx := t.Context()

	status, body := postJSON(t, f.b.oauthURL("/oauth/register"), map[string]any{
		"client_name": "Editor", "redirect_uris": []string{f.redirect}, "grant_types": []string{"authorization_code"},
	})
	var registered struct {
		ClientID   string   `json:"client_id"`
		GrantTypes []string `json:"grant_types"`
	}
	if err := json.Unmarshal(body, &registered); err != nil || status != http.StatusCreated ||
		!slices.Equal(registered.GrantTypes, []string{"authorization_code", "refresh_token"}) {
		t.Fatalf("register for authorization_code alone: %d %s, want refresh_token added to its grant types", status, body)
	}

	// The scopes the protected-resource metadata lists, as MCP clients ask for them: no offline_access.
	cfg := f.config(registered.ClientID, f.redirect, oauth.ScopeRead, oauth.ScopeExecute)
	resource := endpointOf("red")
	issue := func() *oauth2.Token {
		t.Helper()
		verifier := oauth2.GenerateVerifier()
		tok, err := cfg.Exchange(ctx, f.authorize(t, cfg, verifier, resource), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		if tok.RefreshToken == "" {
			t.Fatalf("token response %+v: want a refresh token without offline_access", tok)
		}
		return tok
	}
	refresh := func(tok *oauth2.Token) (*oauth2.Token, error) {
		return cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	}
	busy, idle := issue(), issue()
	if got := introspect(t, f.sat, busy.AccessToken); !got.Active || strings.Join(got.Scopes, " ") != "mcp:read mcp:tools:execute" {
		t.Fatalf("introspection: %v", got)
	}

	var err error
	f.clock.advance(29 * day)
	if busy, err = refresh(busy); err != nil {
		t.Fatalf("refresh after 29 days: %v", err)
	}
	f.clock.advance(2 * day)
	if _, err := refresh(idle); oauthErrorCode(err) != "invalid_grant" {
		t.Fatalf("refresh after 31 idle days: %v, want invalid_grant", err)
	}
	for _, d := range []time.Duration{27 * day, 29 * day} { // days 58 and 87
		f.clock.advance(d)
		if busy, err = refresh(busy); err != nil {
			t.Fatalf("refresh of a grant in use: %v", err)
		}
	}
	// Day 90 ends the grant although its last refresh token is three days old.
	f.clock.advance(3 * day)
	if _, err := refresh(busy); oauthErrorCode(err) != "invalid_grant" {
		t.Fatalf("refresh at the maximum age: %v, want invalid_grant", err)
	}
	// Authorizing again starts a new grant with a new clock; consent is remembered, so no page is shown.
	q, err := oauthtest.NewBrowser().Authorize(ctx, authorizeURL(cfg, oauth2.GenerateVerifier(), resource), f.user.user.Email, testPassword)
	if err != nil || q.Get("code") == "" {
		t.Fatalf("authorize again: %v %v", q, err)
	}
}

// TestOAuthConsentPageSaysHowLongClientsStay: the consent page states the idle and maximum lifetimes, since
// every client gets a refresh token.
func TestOAuthConsentPageSaysHowLongClientsStay(t *testing.T) {
	t.Parallel()
	f := setupOAuth(t, setupOpts{oauth: oauth.Config{RefreshTokenTTL: 14 * 24 * time.Hour, GrantMaxAge: 60 * 24 * time.Hour}})
	cfg := f.config(f.clientID, f.redirect, oauth.ScopeRead)
	p := consentPage(t, oauthtest.NewBrowser(), authorizeURL(cfg, oauth2.GenerateVerifier(), endpointOf("red")), f.user.user.Email)
	if !strings.Contains(string(p.Body), "used at least every 14 days, for 60 days at most") {
		t.Fatalf("consent page:\n%s", p.Body)
	}
}
