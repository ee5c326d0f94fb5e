package e2e_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orrery/orrery/e2e"
	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

// TestRemoteServerRecoversAfterHealthCheck takes a remote MCP server that is down when its installation
// reaches the satellite, so the instance is unreachable; once the server is back, the credential check the
// control plane sends finds it healthy, the control plane answers with a recovery command, the satellite
// carries it out, and the team's endpoint serves the server's tools.
func TestRemoteServerRecoversAfterHealthCheck(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	// A loopback address with nothing listening, for now.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	cp := startControlPlane(t)
	sat := e2e.StartSatellite(t, cp, e2e.SatelliteConfig{
		RegistrationToken: cp.RegistrationToken(t),
		Env:               []string{"ORRERY_SANDBOX_EGRESS_ALLOW=127.0.0.1/32"}, // the test's server is on loopback
	})
	registered := waitActive(t, cp, sat.URL)
	conn, err := pgx.Connect(ctx, cp.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var catalogID string
	if err := conn.QueryRow(ctx, `insert into catalog_entries (slug, name, transport, url)
		values ('pinger', 'Pinger', 'http', $1) returning id`, "http://"+addr+"/mcp").Scan(&catalogID); err != nil {
		t.Fatal(err)
	}
	tm := seedTeam(t, conn, catalogID, "recovering", sat.URL)
	var instanceID string
	if err := conn.QueryRow(ctx, `select id from instances where installation_id = $1`, tm.installationID).Scan(&instanceID); err != nil {
		t.Fatal(err)
	}
	status := func() (string, *time.Time) {
		t.Helper()
		var s string
		var checked *time.Time
		if err := conn.QueryRow(ctx, `select status, last_health_check_at from instances where id = $1`, instanceID).Scan(&s, &checked); err != nil {
			t.Fatal(err)
		}
		return s, checked
	}
	runCommand(t, cp, registered.GetId(), configure, completed, commandTimeout)
	e2e.WaitFor(t, onlineTimeout, "the instance of the unreachable server to be in error", func() error {
		if s, _ := status(); s != "error" {
			return fmt.Errorf("status %s", s)
		}
		return nil
	})

	// The server comes up.
	server := mcp.NewServer(&mcp.Implementation{Name: "pinger", Version: "1"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "ping", Description: "answers pong"},
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "pong"}}}, nil, nil
		})
	mux := http.NewServeMux()
	mux.Handle("/mcp", mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil))
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with ErrServerClosed at cleanup
	t.Cleanup(func() { srv.Close() })

	// The credential check, for the team's satellites, as the control plane's job sends it.
	if _, err := cp.Admin().EnqueueCommand(ctx, connect.NewRequest(&adminv1.EnqueueCommandRequest{
		Target: &adminv1.EnqueueCommandRequest_TeamId{TeamId: tm.id},
		Action: &adminv1.EnqueueCommandRequest_HealthCheck{HealthCheck: &satellitev1.HealthCheckAction{
			InstallationId: tm.installationID, Check: satellitev1.HealthCheckType_HEALTH_CHECK_TYPE_CREDENTIAL_VALIDATION,
		}},
	})); err != nil {
		t.Fatal(err)
	}
	recovery := waitCommand(t, cp, registered.GetId(), commandTimeout, func(c *adminv1.AdminCommand) bool {
		return c.GetCommand().GetRecovery() != nil
	})
	if recovery.GetState() != completed || recovery.GetCommand().GetRecovery().GetInstallationId() != tm.installationID {
		t.Fatalf("recovery %v", recovery)
	}
	if o := recovery.GetOutcomes(); len(o) != 1 || o[0].GetInstanceId() != instanceID ||
		o[0].GetStatus() != satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE {
		t.Errorf("recovery outcomes %v, want the instance online", o)
	}
	e2e.WaitFor(t, commandTimeout, "the instance online with its check recorded", func() error {
		if s, checked := status(); s != "online" || checked == nil {
			return fmt.Errorf("status %s, last checked %v", s, checked)
		}
		return nil
	})

	session, err := connectMCP(ctx, tm.endpoint, tm.token)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	tools, err := session.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(tools.Tools, func(tool *mcp.Tool) bool { return strings.HasSuffix(tool.Name, "ping") }) {
		t.Errorf("tools after recovery: %v", toolNames(tools.Tools))
	}
}

func toolNames(tools []*mcp.Tool) []string {
	names := make([]string, len(tools))
	for i, tool := range tools {
		names[i] = tool.Name
	}
	return names
}
