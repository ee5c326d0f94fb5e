package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orrery/orrery/e2e"
	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
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
