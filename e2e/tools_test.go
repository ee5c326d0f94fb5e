package e2e_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orrery/orrery/e2e"
	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	"github.com/orrery/orrery/internal/mcptest"
)

// selectionTimeout covers a configure command, the configuration fetch and the gateway's resync.
const selectionTimeout = 30 * time.Second

// TestToolSelectionAtTheTeamEndpoint has a team admin deny a tool and rewrite a description through the
// ToolService, and a member hide a tool for herself, then checks with real MCP clients on every transport
// of a real satellite running server-everything that the denied tool is neither listed nor callable by
// its name, the hidden one only for that member, the new description is what clients see, and connected
// clients are told the list changed, all without restarting the server.
func TestToolSelectionAtTheTeamEndpoint(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cp := startControlPlane(t)
	sat := e2e.StartSatellite(t, cp, e2e.SatelliteConfig{RegistrationToken: cp.RegistrationToken(t)})
	waitActive(t, cp, sat.URL)

	admin := withToken(cp.AdminToken)
	users := apiv1connect.NewUserServiceClient(http.DefaultClient, cp.URL, admin)
	accounts := apiv1connect.NewAccountServiceClient(http.DefaultClient, cp.URL)
	login := func(name string) *apiv1.LoginResponse {
		t.Helper()
		email := name + "@example.test"
		if _, err := users.CreateUser(ctx, connect.NewRequest(&apiv1.CreateUserRequest{Email: email, Name: name, Password: "a long enough password"})); err != nil {
			t.Fatal(err)
		}
		resp, err := accounts.Login(ctx, connect.NewRequest(&apiv1.LoginRequest{Email: email, Password: "a long enough password", ApiTokenName: "e2e"}))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Msg
	}
	dana, erin := login("dana"), login("erin")
	command, args := mcptest.Everything(t)
	entry, err := apiv1connect.NewCatalogServiceClient(http.DefaultClient, cp.URL, admin).CreateCatalogEntry(ctx, connect.NewRequest(&apiv1.CreateCatalogEntryRequest{
		Slug: "everything",
		Spec: &apiv1.CatalogEntrySpec{Name: "Everything", Transport: apiv1.Transport_TRANSPORT_STDIO, Command: command, Args: args},
	}))
	if err != nil {
		t.Fatal(err)
	}
	team, err := apiv1connect.NewTeamServiceClient(http.DefaultClient, cp.URL, withToken(dana.ApiToken)).CreateTeam(ctx, connect.NewRequest(&apiv1.CreateTeamRequest{Slug: "tools", Name: "Tools"}))
	if err != nil {
		t.Fatal(err)
	}
	teamID := team.Msg.Team.Id
	conn, err := pgx.Connect(ctx, cp.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// Erin joins before the installation, so that it gives her an instance too.
	if _, err := conn.Exec(ctx, `insert into team_memberships (team_id, user_id, role) values ($1, $2, 'team_user')`, teamID, erin.User.Id); err != nil {
		t.Fatal(err)
	}
	installation, err := apiv1connect.NewInstallationServiceClient(http.DefaultClient, cp.URL, withToken(dana.ApiToken)).CreateInstallation(ctx, connect.NewRequest(&apiv1.CreateInstallationRequest{
		TeamId: teamID, CatalogEntryId: entry.Msg.Entry.Id, Spec: &apiv1.InstallationSpec{Name: "everything"},
	}))
	if err != nil {
		t.Fatal(err)
	}
	installationID := installation.Msg.Installation.Id

	endpoint := sat.URL + "/teams/tools/mcp"
	changed := make(chan struct{}, 16)
	sessionEra := connectAsMemberWith(t, conn, endpoint, teamID, dana.User.Id, &mcp.StreamableClientTransport{Endpoint: endpoint},
		&mcp.ClientOptions{ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
			select {
			case changed <- struct{}{}:
			default:
			}
		}}, nil)
	sse := connectAsMemberWith(t, conn, endpoint, teamID, dana.User.Id, &mcp.SSEClientTransport{Endpoint: sat.URL + "/teams/tools/sse"}, nil, nil)
	stateless := connectAsMemberWith(t, conn, endpoint, teamID, dana.User.Id, &mcp.StreamableClientTransport{Endpoint: endpoint}, nil,
		&mcp.ClientSessionOptions{ProtocolVersion: "2026-07-28"})
	erinSession := connectAsMemberWith(t, conn, endpoint, teamID, erin.User.Id, &mcp.StreamableClientTransport{Endpoint: endpoint}, nil, nil)
	danaSessions := map[string]*mcp.ClientSession{"session era": sessionEra, "legacy SSE": sse, "stateless era": stateless}

	listed := func(cs *mcp.ClientSession) (map[string]*mcp.Tool, error) {
		res, err := cs.ListTools(ctx, nil)
		if err != nil {
			return nil, err
		}
		tools := map[string]*mcp.Tool{}
		for _, tool := range res.Tools {
			tools[tool.Name] = tool
		}
		return tools, nil
	}
	waitListed := func(who string, cs *mcp.ClientSession, want func(map[string]*mcp.Tool) error) {
		t.Helper()
		e2e.WaitFor(t, onlineTimeout, who+"'s tools", func() error {
			tools, err := listed(cs)
			if err != nil {
				return err
			}
			return want(tools)
		})
	}
	has := func(names ...string) func(map[string]*mcp.Tool) error {
		return func(tools map[string]*mcp.Tool) error {
			for _, n := range names {
				if tools[n] == nil {
					return fmt.Errorf("no %s among %d tools", n, len(tools))
				}
			}
			return nil
		}
	}
	for name, cs := range danaSessions {
		waitListed("dana's "+name, cs, has("everything__echo", "everything__get-sum", "everything__get-env"))
	}
	waitListed("erin", erinSession, has("everything__echo", "everything__get-sum", "everything__get-env"))
	drain(changed)

	// The API shows the same tools with their token counts.
	danaTools := apiv1connect.NewToolServiceClient(http.DefaultClient, cp.URL, withToken(dana.ApiToken))
	var catalog *apiv1.ListToolsResponse
	e2e.WaitFor(t, selectionTimeout, "the discovered tools in the API", func() error {
		resp, err := danaTools.ListTools(ctx, connect.NewRequest(&apiv1.ListToolsRequest{TeamId: teamID, InstallationId: installationID}))
		if err != nil {
			return err
		}
		if len(resp.Msg.Tools) == 0 {
			return fmt.Errorf("no tools yet")
		}
		catalog = resp.Msg
		return nil
	})
	endpointTools, err := listed(sessionEra)
	if err != nil {
		t.Fatal(err)
	}
	var exposed []string
	for _, tool := range catalog.Tools {
		exposed = append(exposed, tool.ExposedName)
		if tool.TokenCount == 0 {
			t.Errorf("tool %s has no token count", tool.Name)
		}
	}
	for name := range endpointTools {
		if !slices.Contains(exposed, name) {
			t.Errorf("the endpoint lists %s, the API's exposed names %v do not", name, exposed)
		}
	}

	unknownErr := func(cs *mcp.ClientSession, name string) string {
		t.Helper()
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: map[string]any{}})
		if err == nil {
			t.Fatalf("calling %s succeeded: %v", name, res)
		}
		return strings.ReplaceAll(err.Error(), name, "NAME")
	}
	want := unknownErr(sessionEra, "everything__no-such-tool")

	// Dana denies get-env and rewrites echo's description; Erin hides get-sum for herself.
	if _, err := danaTools.SetToolSelection(ctx, connect.NewRequest(&apiv1.SetToolSelectionRequest{
		TeamId: teamID, InstallationId: installationID,
		Selection: &apiv1.ToolSelection{Deny: []string{"get-e*"}, Descriptions: map[string]string{"echo": "Repeat a message back."}},
	})); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(selectionTimeout):
		t.Fatal("no notifications/tools/list_changed after the selection changed")
	}
	for name, cs := range danaSessions {
		waitListed("dana's "+name, cs, func(tools map[string]*mcp.Tool) error {
			if tools["everything__get-env"] != nil {
				return fmt.Errorf("denied get-env still listed")
			}
			if d := tools["everything__echo"].Description; d != "Repeat a message back." {
				return fmt.Errorf("echo described as %q", d)
			}
			return has("everything__get-sum")(tools)
		})
		if got := unknownErr(cs, "everything__get-env"); got != unknownErr(cs, "everything__no-such-tool") || (name == "session era" && got != want) {
			t.Errorf("%s: calling the denied tool answered %q, unlike an unknown tool", name, got)
		}
	}

	if _, err := apiv1connect.NewToolServiceClient(http.DefaultClient, cp.URL, withToken(erin.ApiToken)).SetHiddenTools(ctx, connect.NewRequest(&apiv1.SetHiddenToolsRequest{
		TeamId: teamID, InstallationId: installationID, Hidden: []string{"get-sum"},
	})); err != nil {
		t.Fatal(err)
	}
	waitListed("erin", erinSession, func(tools map[string]*mcp.Tool) error {
		if tools["everything__get-sum"] != nil || tools["everything__get-env"] != nil {
			return fmt.Errorf("hidden get-sum or denied get-env still listed for erin")
		}
		return has("everything__echo")(tools)
	})
	if got := unknownErr(erinSession, "everything__get-sum"); got != want {
		t.Errorf("erin calling her hidden tool answered %q, want %q", got, want)
	}
	// Hidden for Erin only: Dana still lists and calls get-sum.
	tools, err := listed(sessionEra)
	if err != nil || tools["everything__get-sum"] == nil {
		t.Fatalf("dana lost get-sum that only erin hid: %v", err)
	}
	res, err := sessionEra.CallTool(ctx, &mcp.CallToolParams{Name: "everything__get-sum", Arguments: map[string]any{"a": 2, "b": 3}})
	if err != nil || res.IsError {
		t.Fatalf("dana calling get-sum: %v %v", res, err)
	}

	// None of it restarted a server.
	var restarts int
	if err := conn.QueryRow(ctx, `select count(*) from instance_events where installation_id = $1 and status = 'restarting'`,
		installationID).Scan(&restarts); err != nil {
		t.Fatal(err)
	}
	if restarts != 0 {
		t.Errorf("%d instance restarts for selection changes, want none", restarts)
	}
}

// connectAsMemberWith connects a real MCP client over transport to a team endpoint as a member, with an
// access token minted in the database for that member and endpoint.
func connectAsMemberWith(t *testing.T, conn *pgx.Conn, endpoint, teamID, userID string, transport mcp.Transport,
	opts *mcp.ClientOptions, sessionOpts *mcp.ClientSessionOptions) *mcp.ClientSession {
	t.Helper()
	token := mintAccessToken(t, conn, endpoint, teamID, userID)
	client := &http.Client{Transport: bearerTransport{token}}
	switch tr := transport.(type) {
	case *mcp.StreamableClientTransport:
		tr.HTTPClient = client
	case *mcp.SSEClientTransport:
		tr.HTTPClient = client
	}
	session, err := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "test"}, opts).Connect(t.Context(), transport, sessionOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = session.Close() })
	return session
}

func drain(ch chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// mintAccessToken stores a new MCP access token of a member for an endpoint and returns it.
func mintAccessToken(t *testing.T, conn *pgx.Conn, endpoint, teamID, userID string) string {
	t.Helper()
	token := "orat_e2e_" + rand.Text()
	hash := sha256.Sum256([]byte(token))
	if _, err := conn.Exec(t.Context(), `insert into access_tokens (token_hash, team_id, user_id, client_id, audience, scopes, expires_at)
		values ($1, $2, $3, 'e2e', $4, '{mcp:read,mcp:tools:execute}', now() + interval '1 hour')`,
		hash[:], teamID, userID, endpoint); err != nil {
		t.Fatal(err)
	}
	return token
}
