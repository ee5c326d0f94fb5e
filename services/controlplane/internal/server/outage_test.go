package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"golang.org/x/oauth2"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/services/controlplane/internal/oauth"
)

// TestDatabaseOutage cuts the control plane off its database the way an outage does (every connection
// terminated, new ones refused) and checks that nobody is told their credentials are bad: a valid client
// at /oauth/token hears 503 temporarily_unavailable with Retry-After, a Connect call hears Unavailable, the
// cause is logged as a warning, and both work again once the database is back.
func TestDatabaseOutage(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	f := setupOAuth(t, setupOpts{logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	ctx := t.Context()
	api := f.oauthService(f.user.token)
	created, err := api.CreateOAuthClient(ctx, connect.NewRequest(&apiv1.CreateOAuthClientRequest{
		TeamId: f.red.ID.String(), Name: "nightly agent", Scopes: []string{oauth.ScopeRead},
	}))
	if err != nil {
		t.Fatal(err)
	}
	clientID, secret := created.Msg.Client.ClientId, created.Msg.ClientSecret
	tokenRequest := func() (status int, retryAfter, code string) {
		form := url.Values{"grant_type": {"client_credentials"}, "resource": {endpointOf("red")}}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.b.oauthURL("/oauth/token"), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
		resp, err := testClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, resp.Header.Get("Retry-After"), out.Error
	}
	listClients := func() error {
		_, err := api.ListOAuthClients(ctx, connect.NewRequest(&apiv1.ListOAuthClientsRequest{TeamId: f.red.ID.String()}))
		return err
	}
	if status, _, code := tokenRequest(); status != http.StatusOK {
		t.Fatalf("before the outage: %d %s", status, code)
	}

	// The outage is staged from the server's maintenance database, which a database cannot do to itself.
	cfg, err := pgx.ParseConfig(f.b.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	database := cfg.Database
	cfg.Database = "postgres"
	admin, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run after t.Context is canceled.
	t.Cleanup(func() { _ = admin.Close(context.Background()) })
	setConnections := func(allow bool) {
		t.Helper()
		sql := "alter database " + pgx.Identifier{database}.Sanitize() + " allow_connections "
		if _, err := admin.Exec(context.Background(), sql+map[bool]string{true: "true", false: "false"}[allow]); err != nil {
			t.Fatal(err)
		}
	}
	setConnections(false)
	t.Cleanup(func() { setConnections(true) })
	if _, err := admin.Exec(ctx, `select pg_terminate_backend(pid) from pg_stat_activity where datname = $1`,
		database); err != nil {
		t.Fatal(err)
	}

	// Twice: the first request may meet a pooled connection that was terminated, the second has to connect.
	for range 2 {
		if status, retryAfter, code := tokenRequest(); status != http.StatusServiceUnavailable ||
			code != "temporarily_unavailable" || retryAfter == "" {
			t.Errorf("token during the outage: %d %q, Retry-After %q; want 503 temporarily_unavailable with Retry-After",
				status, code, retryAfter)
		}
		if err := listClients(); connect.CodeOf(err) != connect.CodeUnavailable {
			t.Errorf("Connect call during the outage: %v, want unavailable", err)
		}
	}
	// Registration, whose rate limit lives in the database, asks the client to come back too.
	if status, body := postJSON(t, f.b.oauthURL("/oauth/register"),
		map[string]any{"redirect_uris": []string{"https://app.example/cb"}}); status != http.StatusServiceUnavailable ||
		!bytes.Contains(body, []byte(`"error":"temporarily_unavailable"`)) {
		t.Errorf("registration during the outage: %d %s, want 503 temporarily_unavailable", status, body)
	}
	// A browser sent to sign in hears the same, not that the client is unknown.
	authorize, err := http.NewRequestWithContext(ctx, http.MethodGet,
		authorizeURL(f.config(f.clientID, f.redirect), oauth2.GenerateVerifier(), endpointOf("red")), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := testClient.Transport.RoundTrip(authorize); err != nil {
		t.Fatal(err)
	} else {
		var out struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || out.Error != "temporarily_unavailable" {
			t.Errorf("authorization during the outage: %d %q, want 503 temporarily_unavailable", resp.StatusCode, out.Error)
		}
	}
	if out := logs.String(); !strings.Contains(out, "level=WARN msg=\"token: temporarily unavailable\"") ||
		!strings.Contains(out, "database unavailable") {
		t.Errorf("the outage was not logged as a warning with its cause:\n%s", out)
	}

	setConnections(true)
	waitFor(t, 10*time.Second, "token endpoint back", func() bool {
		status, _, _ := tokenRequest()
		return status == http.StatusOK
	})
	if err := listClients(); err != nil {
		t.Errorf("Connect call after the outage: %v", err)
	}
}
