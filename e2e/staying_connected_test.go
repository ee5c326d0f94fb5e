package e2e_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/orrery/orrery/e2e"
	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	"github.com/orrery/orrery/internal/mcptest"
	"github.com/orrery/orrery/internal/oauthtest"
	"github.com/orrery/orrery/internal/pgtest"
)

// TestTypeScriptClientStaysConnected keeps the official TypeScript SDK's OAuth client running across an
// access token's expiry (a few seconds here): its next call refreshes silently and succeeds, although it
// never asked for offline_access. Once an admin revokes the grant, the next call fails and the client is
// sent to authorize again.
func TestTypeScriptClientStaysConnected(t *testing.T) {
	t.Parallel()
	command, args := mcptest.Everything(t)
	cp := e2e.StartControlPlane(t, pgtest.NewDatabase(t), "ORRERY_OAUTH_ACCESS_TOKEN_TTL=4s")
	red := serveTeamEndpoint(t, cp, nil, "red", "everything", command, args, false, "everything__echo")
	giveMemberPassword(t, red)
	ctx := t.Context()

	client := startNodeClient(t, "testdata/oauth-refresh-client.mjs", red.endpoint, "http://127.0.0.1:43121/callback")

	// refused waits until the satellite turns token away, as it must once the token expired or was revoked.
	refused := func(what, token string) {
		t.Helper()
		e2e.WaitFor(t, 30*time.Second, "the satellite to refuse "+what, func() error {
			s, err := connectMCP(ctx, red.endpoint, token)
			if err == nil {
				_ = s.Close()
				return errors.New("still accepted")
			}
			if !strings.Contains(err.Error(), "Unauthorized") {
				return err
			}
			return nil
		})
	}

	var redirect struct {
		Authorize string `json:"authorize"`
	}
	client.next(t, &redirect)
	if strings.Contains(redirect.Authorize, "offline_access") {
		t.Fatalf("the client asked for offline_access (%s); the test is about clients that do not", redirect.Authorize)
	}
	q, err := oauthtest.NewBrowser().Authorize(ctx, redirect.Authorize, memberEmail(red), memberPassword)
	if err != nil {
		t.Fatalf("authorize at %s: %v", redirect.Authorize, err)
	}
	client.say(t, q.Get("code"))

	var first struct {
		Echo    string `json:"echo"`
		Access  string `json:"access"`
		Refresh bool   `json:"refresh"`
	}
	client.next(t, &first)
	if !strings.Contains(first.Echo, "first call") || !first.Refresh {
		t.Fatalf("first call: %+v, want the echo and a refresh token", first)
	}

	refused("the expired access token", first.Access)
	client.say(t, "call")
	var second struct {
		Echo      string `json:"echo"`
		Access    string `json:"access"`
		Refreshed bool   `json:"refreshed"`
	}
	client.next(t, &second)
	if !strings.Contains(second.Echo, "after the access token expired") || !second.Refreshed {
		t.Fatalf("call after expiry: %+v, want the echo through rotated tokens", second)
	}

	// An admin revokes the grant.
	grants := apiv1connect.NewOAuthServiceClient(http.DefaultClient, cp.URL, withToken(cp.AdminToken))
	list, err := grants.ListOAuthGrants(ctx, connect.NewRequest(&apiv1.ListOAuthGrantsRequest{TeamId: red.id}))
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Msg.Grants) != 1 {
		t.Fatalf("grants of the team: %v, want the client's one", list.Msg.Grants)
	}
	if _, err := grants.RevokeOAuthGrant(ctx, connect.NewRequest(&apiv1.RevokeOAuthGrantRequest{
		TeamId: red.id, GrantId: list.Msg.Grants[0].GrantId,
	})); err != nil {
		t.Fatal(err)
	}
	refused("the revoked grant's access token", second.Access)
	client.say(t, "call")
	var third struct {
		Error        string `json:"error"`
		Unauthorized bool   `json:"unauthorized"`
		Authorize    string `json:"authorize"`
	}
	client.next(t, &third)
	if !third.Unauthorized || !strings.HasPrefix(third.Authorize, cp.URL+"/oauth/authorize?") {
		t.Fatalf("call after revocation: %+v, want an authorization error and a new authorization URL", third)
	}
}
