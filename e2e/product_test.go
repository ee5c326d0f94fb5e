package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orrery/orrery/e2e"
	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/mcptest"
)

// bearerAuth sends a bearer token with every call, unary and streaming.
type bearerAuth string

func (b bearerAuth) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", "Bearer "+string(b))
		return next(ctx, req)
	}
}

func (b bearerAuth) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(b))
		return conn
	}
}

func (b bearerAuth) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// withToken sends a bearer token with every call.
func withToken(token string) connect.ClientOption { return connect.WithInterceptors(bearerAuth(token)) }

// TestProductAPIDrivesTheWholePath sets everything up the way an operator and a developer would, through
// the user-facing API only: the bootstrap admin creates a user and a global template, the user signs in,
// creates a team and installs the template, watches their instance come online on a real satellite, calls a
// tool through the team endpoint and reads the call back from the request log.
func TestProductAPIDrivesTheWholePath(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cp := startControlPlane(t)
	sat := e2e.StartSatellite(t, cp, e2e.SatelliteConfig{RegistrationToken: cp.RegistrationToken(t)})
	waitActive(t, cp, sat.URL)

	admin := withToken(cp.AdminToken)
	if _, err := apiv1connect.NewUserServiceClient(http.DefaultClient, cp.URL, admin).CreateUser(ctx, connect.NewRequest(&apiv1.CreateUserRequest{
		Email: "dana@example.test", Name: "Dana", Password: "a long enough password",
	})); err != nil {
		t.Fatal(err)
	}
	command, args := mcptest.Everything(t)
	entry, err := apiv1connect.NewCatalogServiceClient(http.DefaultClient, cp.URL, admin).CreateCatalogEntry(ctx, connect.NewRequest(&apiv1.CreateCatalogEntryRequest{
		Slug: "everything",
		Spec: &apiv1.CatalogEntrySpec{Name: "Everything", Transport: apiv1.Transport_TRANSPORT_STDIO, Command: command, Args: args},
	}))
	if err != nil {
		t.Fatal(err)
	}

	login, err := apiv1connect.NewAccountServiceClient(http.DefaultClient, cp.URL).Login(ctx, connect.NewRequest(&apiv1.LoginRequest{
		Email: "dana@example.test", Password: "a long enough password", ApiTokenName: "e2e",
	}))
	if err != nil {
		t.Fatal(err)
	}
	dana := withToken(login.Msg.ApiToken)
	team, err := apiv1connect.NewTeamServiceClient(http.DefaultClient, cp.URL, dana).CreateTeam(ctx, connect.NewRequest(&apiv1.CreateTeamRequest{
		Slug: "acme", Name: "Acme",
	}))
	if err != nil {
		t.Fatal(err)
	}
	teamID := team.Msg.Team.Id
	installation, err := apiv1connect.NewInstallationServiceClient(http.DefaultClient, cp.URL, dana).CreateInstallation(ctx, connect.NewRequest(&apiv1.CreateInstallationRequest{
		TeamId: teamID, CatalogEntryId: entry.Msg.Entry.Id, Spec: &apiv1.InstallationSpec{Name: "everything"},
	}))
	if err != nil {
		t.Fatal(err)
	}
	installationID := installation.Msg.Installation.Id

	// The configure command reaches the satellite at once; the status stream reports the instance online.
	instances := apiv1connect.NewInstanceServiceClient(http.DefaultClient, cp.URL, dana)
	watchCtx, stopWatching := context.WithTimeout(ctx, onlineTimeout)
	defer stopWatching()
	watch, err := instances.WatchInstanceStatus(watchCtx, connect.NewRequest(&apiv1.WatchInstanceStatusRequest{
		TeamId: teamID, InstallationId: installationID, Snapshot: true,
	}))
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for online := false; !online; {
		if !watch.Receive() {
			t.Fatalf("status stream ended before the instance was online (saw %v): %v", seen, watch.Err())
		}
		for _, in := range watch.Msg().Instances {
			online = online || in.Status == satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE
		}
		for _, ev := range watch.Msg().Events {
			seen = append(seen, ev.Status.String())
			online = online || ev.Status == satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE
		}
	}
	stopWatching()

	// Until the authorization server issues tokens, the developer's MCP access token is minted in the database.
	conn, err := pgx.Connect(ctx, cp.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	session := connectAsMember(t, conn, sat.URL+"/teams/acme/mcp", teamID, login.Msg.User.Id)
	result, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "everything__echo", Arguments: map[string]any{"message": "through the product API"}})
	if err != nil || result.IsError {
		t.Fatalf("call echo: %v %v", result, err)
	}

	e2e.WaitFor(t, onlineTimeout, "the call in the request log", func() error {
		logs, err := instances.ListRequestLogs(ctx, connect.NewRequest(&apiv1.ListRequestLogsRequest{TeamId: teamID, InstallationId: installationID}))
		if err != nil {
			return err
		}
		for _, l := range logs.Msg.RequestLogs {
			if l.ToolName == "echo" && l.Success {
				return nil
			}
		}
		return fmt.Errorf("request logs %v", logs.Msg.RequestLogs)
	})
}

// connectAsMember connects a real MCP client to a team endpoint as a member, with an access token minted in
// the database rather than through the authorization server's sign-in.
func connectAsMember(t *testing.T, conn *pgx.Conn, endpoint, teamID, userID string) *mcp.ClientSession {
	t.Helper()
	session, err := connectMCP(t.Context(), endpoint, mintAccessToken(t, conn, endpoint, teamID, userID))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = session.Close() })
	return session
}
