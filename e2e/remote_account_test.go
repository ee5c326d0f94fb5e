package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/oauth2"

	"github.com/orrery/orrery/e2e"
	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/gen/orrery/satellite/v1/satellitev1connect"
	"github.com/orrery/orrery/internal/mcptest"
	"github.com/orrery/orrery/internal/oauthtest"
	"github.com/orrery/orrery/internal/pgtest"
)

// TestUnconnectedMemberGetsTheConnectLink installs a remote server that authorizes each person for a team
// whose only member has not connected their account, on a real control plane and satellite. The satellite
// does not dial the server; the member lists none of its tools (no member connected, so none are known), a
// call by name answers with the control plane's link to connect, and the instance's stored status says the
// member must connect.
func TestUnconnectedMemberGetsTheConnectLink(t *testing.T) {
	t.Parallel()
	cp := startControlPlane(t)
	sat := e2e.StartSatellite(t, cp, e2e.SatelliteConfig{RegistrationToken: cp.RegistrationToken(t)})
	registered := waitActive(t, cp, sat.URL)
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, cp.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.WithoutCancel(ctx)) })
	var catalogID string
	// Nothing listens at the server's address: a satellite that dialed it would show an error, not the link.
	if err := conn.QueryRow(ctx, `insert into catalog_entries (slug, name, transport, url, per_user_authorization)
		values ('upstream', 'Upstream', 'http', 'https://mcp.upstream.invalid/mcp', true) returning id`).Scan(&catalogID); err != nil {
		t.Fatal(err)
	}
	te := seedTeam(t, conn, catalogID, "accounts", sat.URL)
	if _, err := cp.Admin().EnqueueCommand(ctx, connect.NewRequest(&adminv1.EnqueueCommandRequest{
		Target:   &adminv1.EnqueueCommandRequest_SatelliteId{SatelliteId: registered.GetId()},
		Action:   configure.Action,
		Priority: satellitev1.CommandPriority_COMMAND_PRIORITY_IMMEDIATE,
	})); err != nil {
		t.Fatal(err)
	}

	session, err := connectMCP(ctx, te.endpoint, te.token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { session.Close() })
	wantLink := "connect your account at Upstream: " + cp.URL + "/oauth/remote/connect?"
	var answer string
	e2e.WaitFor(t, onlineTimeout, "a call to answer with the link to connect", func() error {
		res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "upstream__search", Arguments: map[string]any{}})
		if err != nil {
			return err
		}
		if len(res.Content) == 1 {
			if text, ok := res.Content[0].(*mcp.TextContent); ok {
				answer = text.Text
			}
		}
		if !res.IsError || !strings.Contains(answer, wantLink) || !strings.Contains(answer, "installation_id="+te.installationID) {
			return fmt.Errorf("answered %v %q", res.IsError, answer)
		}
		return nil
	})
	tools, err := session.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range tools.Tools {
		if strings.HasPrefix(tool.Name, "upstream__") {
			t.Fatalf("listed %s with no member connected", tool.Name)
		}
	}
	e2e.WaitFor(t, onlineTimeout, "the instance's status to say the member must connect", func() error {
		var status, message string
		if err := conn.QueryRow(ctx, `select status, status_message from instances where installation_id = $1`,
			te.installationID).Scan(&status, &message); err != nil {
			return err
		}
		if status != "requires_reauth" || !strings.HasPrefix(message, "accounts-dev must connect their account at Upstream: ") ||
			!strings.Contains(message, "no tools are listed") {
			return fmt.Errorf("status %s: %q", status, message)
		}
		return nil
	})
	if out := sat.Output(); strings.Contains(out, "mcp.upstream.invalid") {
		t.Fatalf("the satellite dialed the server of a member without an account:\n%s", out)
	}
}

// TestRemoteAccountConnectsThroughTheSatellite connects a member's own account at a remote MCP server that
// authorizes each person with OAuth, with real binaries throughout. The remote server is team up's endpoint
// on the same satellite, so the control plane's own authorization server is its authorization server; the
// control plane may reach it on loopback only because ORRERY_REMOTE_ACCOUNTS_ALLOW_PRIVATE says so. Ada, a
// member of team accounts (and of up), follows the connect link in a browser: the control plane discovers
// the server's authorization server, registers, and runs the code flow with PKCE and the resource. Her
// calls then reach the server through the satellite with her token; Cy, another member of accounts, still
// gets the link; and her token appears in no log of either service nor in any request log.
func TestRemoteAccountConnectsThroughTheSatellite(t *testing.T) {
	t.Parallel()
	command, args := mcptest.Everything(t)
	cp := e2e.StartControlPlane(t, pgtest.NewDatabase(t), "ORRERY_REMOTE_ACCOUNTS_ALLOW_PRIVATE=true")
	// The satellite dials the remote server, itself, on loopback.
	up := serveTeamEndpoint(t, cp, []string{"ORRERY_SANDBOX_EGRESS_ALLOW=127.0.0.0/8"},
		"up", "everything", command, args, false, "everything__echo")
	ctx := t.Context()
	conn := up.conn

	var catalogID string
	if err := conn.QueryRow(ctx, `insert into catalog_entries (slug, name, transport, url, per_user_authorization)
		values ('upstream', 'Upstream', 'http', $1, true) returning id`, up.endpoint).Scan(&catalogID); err != nil {
		t.Fatal(err)
	}
	ada := &teamEndpoint{team: seedTeam(t, conn, catalogID, "accounts", up.sat.URL), cp: cp, sat: up.sat, conn: conn}
	var cyID string
	if err := conn.QueryRow(ctx, `with cy as (insert into users (slug, email) values ('accounts-cy', 'accounts-cy@e2e.test') returning id),
		m as (insert into team_memberships (team_id, user_id, role) select $1, id, 'team_user' from cy)
		insert into instances (id, installation_id, team_id, user_id) select 'upstream-accounts-cy-' || $2, $2::uuid, $1, id from cy
		returning user_id`, ada.id, ada.installationID).Scan(&cyID); err != nil {
		t.Fatal(err)
	}
	giveMemberPassword(t, ada)
	// Ada's token at the remote server is one for team up's endpoint: she must be a member there too, with
	// her own instance of up's server.
	if _, err := conn.Exec(ctx, `with ada as (select id from users where email = $3),
		m as (insert into team_memberships (team_id, user_id, role) select $1, id, 'team_user' from ada)
		insert into instances (id, installation_id, team_id, user_id) select 'everything-up-accounts-dev-' || $2, $2::uuid, $1, id from ada`,
		up.id, up.installationID, memberEmail(ada)); err != nil {
		t.Fatal(err)
	}
	configureSatellite(t, cp, up.sat.URL)

	adaSession, err := connectMCP(ctx, ada.endpoint, ada.token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { adaSession.Close() })
	link := waitConnectLink(t, adaSession, cp.URL)

	// Not signed in, the link only says to sign in.
	br := oauthtest.NewBrowser()
	if p, err := br.Do(ctx, http.MethodGet, link, nil); err != nil || p.Status != http.StatusUnauthorized {
		t.Fatalf("connect link before signing in: %d %v", p.Status, err)
	}
	signInURL := (&oauth2.Config{
		ClientID: registerPublicClient(t, cp.URL, "http://127.0.0.1:43121/callback"), RedirectURL: "http://127.0.0.1:43121/callback",
		Endpoint: oauth2.Endpoint{AuthURL: cp.URL + "/oauth/authorize"},
	}).AuthCodeURL("state-0123456789", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("resource", up.endpoint))
	if _, err := br.SignIn(ctx, signInURL, memberEmail(ada), memberPassword); err != nil {
		t.Fatal(err)
	}
	p, err := br.Do(ctx, http.MethodGet, link, nil)
	if err != nil || p.Status != http.StatusFound || !strings.HasPrefix(p.Location, cp.URL+"/oauth/authorize?") ||
		!strings.Contains(p.Location, "code_challenge_method=S256") || !strings.Contains(p.Location, "resource=") {
		t.Fatalf("connect link signed in: %d %s %v, want the redirect to the authorization server with PKCE and a resource", p.Status, p.Location, err)
	}
	authorize := p.Location
	consent, err := br.Do(ctx, http.MethodGet, authorize, nil)
	if err != nil || !oauthtest.IsConsent(consent) {
		t.Fatalf("authorize the control plane as Ada's client: %d %v, want the consent page", consent.Status, err)
	}
	q, err := br.Approve(ctx, authorize, consent)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := br.Do(ctx, http.MethodGet, cp.URL+"/oauth/remote/callback?"+q.Encode(), nil); err != nil ||
		p.Status != http.StatusOK || !strings.Contains(p.Body, "connected") {
		t.Fatalf("callback: %d %s %v", p.Status, p.Body, err)
	}

	// Ada's calls now reach the server through the satellite, as her.
	e2e.WaitFor(t, onlineTimeout, "Ada's call to reach the remote server", func() error {
		res, err := adaSession.CallTool(ctx, &mcp.CallToolParams{Name: "upstream__everything__echo",
			Arguments: map[string]any{"message": "through my own account"}})
		if err != nil {
			return err
		}
		if text := textOf(res); res.IsError || !strings.Contains(text, "through my own account") {
			return fmt.Errorf("answered %v %q", res.IsError, text)
		}
		return nil
	})
	e2e.WaitFor(t, onlineTimeout, "the remote server's request log to name Ada as the caller", func() error {
		var callers []string
		if err := conn.QueryRow(ctx, `select coalesce(array_agg(distinct u.email), '{}') from request_logs r join users u on u.id = r.user_id
			where r.installation_id = $1 and r.tool_name = 'echo'`, up.installationID).Scan(&callers); err != nil {
			return err
		}
		if len(callers) != 1 || callers[0] != memberEmail(ada) {
			return fmt.Errorf("callers %v, want Ada alone", callers)
		}
		return nil
	})

	// Cy, of the same team, has not connected: the same tool answers with the link.
	cySession := connectAsMember(t, conn, ada.endpoint, ada.id, cyID)
	if got := waitConnectLink(t, cySession, cp.URL); got != link {
		t.Fatalf("Cy's link %q, want %q", got, link)
	}

	// The token delivered for Ada's instance appears in no log and no request log.
	token := deliveredToken(t, conn, cp.URL, up.sat, ada.installationID, memberEmail(ada))
	for _, p := range []*e2e.Process{cp.Process(), up.sat.Process} {
		if strings.Contains(p.Output(), token) {
			t.Errorf("%s logged Ada's access token", p.Name())
		}
	}
	var leaks int
	if err := conn.QueryRow(ctx, `select count(*) from request_logs where strpos(row_to_json(request_logs)::text, $1) > 0`,
		token).Scan(&leaks); err != nil || leaks != 0 {
		t.Fatalf("%d request logs carry Ada's access token (%v)", leaks, err)
	}
}

// configureSatellite has the satellite at url fetch its configuration now.
func configureSatellite(t *testing.T, cp *e2e.ControlPlane, url string) {
	t.Helper()
	if _, err := cp.Admin().EnqueueCommand(t.Context(), connect.NewRequest(&adminv1.EnqueueCommandRequest{
		Target:   &adminv1.EnqueueCommandRequest_SatelliteId{SatelliteId: waitActive(t, cp, url).GetId()},
		Action:   configure.Action,
		Priority: satellitev1.CommandPriority_COMMAND_PRIORITY_IMMEDIATE,
	})); err != nil {
		t.Fatal(err)
	}
}

// connectLink matches the control plane's link to connect an account in a call's answer.
var connectLink = regexp.MustCompile(`https?://\S+/oauth/remote/connect\?\S+`)

// waitConnectLink calls a tool of the remote server until it answers with the link to connect an account
// at cpURL, and returns the link.
func waitConnectLink(t *testing.T, session *mcp.ClientSession, cpURL string) string {
	t.Helper()
	var link string
	e2e.WaitFor(t, onlineTimeout, "a call to answer with the link to connect", func() error {
		res, err := session.CallTool(t.Context(), &mcp.CallToolParams{Name: "upstream__everything__echo",
			Arguments: map[string]any{"message": "x"}})
		if err != nil {
			return err
		}
		text := textOf(res)
		link = connectLink.FindString(text)
		if !res.IsError || !strings.HasPrefix(link, cpURL+"/") {
			return fmt.Errorf("answered %v %q", res.IsError, text)
		}
		return nil
	})
	return link
}

// deliveredToken is the access token the control plane's configuration gives the satellite for the
// instance of installationID that belongs to the user with email, read as the satellite reads it.
func deliveredToken(t *testing.T, conn *pgx.Conn, cpURL string, sat *e2e.Satellite, installationID, email string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(sat.StateDir, "identity.json"))
	if err != nil {
		t.Fatal(err)
	}
	var id struct {
		APIKey string `json:"api_key"`
	}
	if err := json.Unmarshal(raw, &id); err != nil || id.APIKey == "" {
		t.Fatalf("the satellite's identity: %v", err)
	}
	var userID string
	if err := conn.QueryRow(t.Context(), `select id from users where email = $1`, email).Scan(&userID); err != nil {
		t.Fatal(err)
	}
	client := satellitev1connect.NewSatelliteServiceClient(&http.Client{Transport: bearerTransport{id.APIKey}}, cpURL)
	resp, err := client.GetConfiguration(t.Context(), connect.NewRequest(&satellitev1.GetConfigurationRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, inst := range resp.Msg.GetInstances() {
		if inst.GetInstallationId() == installationID && inst.GetUserId() == userID {
			if token, ok := strings.CutPrefix(inst.GetHeaders()["Authorization"], "Bearer "); ok && token != "" {
				return token
			}
			t.Fatalf("the instance of %s carries no bearer token: %v", email, inst.GetHeaders())
		}
	}
	t.Fatalf("no instance of %s in the satellite's configuration", email)
	return ""
}
