package e2e_test

import (
	"context"
	"crypto/sha256"
	"errors"
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
	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/mcptest"
)

// team is a team seeded straight into the database with one member and one installation of
// server-everything, plus an access token for that member bound to the satellite's endpoint of the team.
type team struct {
	id, slug, endpoint, token, installationID string
}

// seedTeam writes what the product API will manage (its own issue) with plain SQL.
func seedTeam(t *testing.T, conn *pgx.Conn, catalogID, slug, satelliteURL string) team {
	t.Helper()
	ctx := t.Context()
	tm := team{slug: slug, endpoint: satelliteURL + "/teams/" + slug + "/mcp", token: "orat_e2e_" + slug + "_" + fmt.Sprint(time.Now().UnixNano())}
	var userID string
	err := conn.QueryRow(ctx, `insert into teams (slug, name) values ($1, $1) returning id`, slug).Scan(&tm.id)
	if err == nil {
		err = conn.QueryRow(ctx, `insert into users (slug, email) values ($1, $1 || '@e2e.test') returning id`, slug+"-dev").Scan(&userID)
	}
	if err == nil {
		_, err = conn.Exec(ctx, `insert into team_memberships (team_id, user_id, role) values ($1, $2, 'team_user')`, tm.id, userID)
	}
	if err == nil {
		err = conn.QueryRow(ctx, `insert into installations (team_id, catalog_entry_id, name) values ($1, $2, 'everything') returning id`,
			tm.id, catalogID).Scan(&tm.installationID)
	}
	if err == nil {
		_, err = conn.Exec(ctx, `insert into instances (id, installation_id, team_id, user_id)
			values ('everything-' || $1 || '-' || $1 || '-dev-' || $2::text, $2::uuid, $3, $4)`, slug, tm.installationID, tm.id, userID)
	}
	if err == nil {
		// A team inserted here, not created through the API, is placed on the active global satellites the
		// way creation would place it (R = 2 of them); a recomputation running meanwhile may have placed it.
		_, err = conn.Exec(ctx, `insert into team_placements (team_id, satellite_id, rank)
			select $1, id, (row_number() over (order by id) - 1)::int from satellites
			where type = 'global' and revoked_at is null and activated_at is not null order by id limit 2
			on conflict (team_id, satellite_id) do nothing`, tm.id)
	}
	if err == nil {
		hash := sha256.Sum256([]byte(tm.token))
		_, err = conn.Exec(ctx, `insert into access_tokens (token_hash, team_id, user_id, client_id, audience, scopes, expires_at)
			values ($1, $2, $3, 'e2e', $4, '{mcp:read,mcp:tools:execute}', now() + interval '1 hour')`,
			hash[:], tm.id, userID, tm.endpoint)
	}
	if err != nil {
		t.Fatalf("seed team %s: %v", slug, err)
	}
	return tm
}

type bearerTransport struct{ token string }

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

func connectMCP(ctx context.Context, endpoint, token string) (*mcp.ClientSession, error) {
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "test"}, nil)
	return client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint: endpoint, HTTPClient: &http.Client{Transport: bearerTransport{token}},
	}, nil)
}

// TestMCPEndpointServesTeamTools drives the whole path a developer's MCP client takes: an installation
// configured in the control plane becomes a running server-everything on the satellite, and the team's
// endpoint lists and calls its tools with the member's token, while another team's token gets nothing.
func TestMCPEndpointServesTeamTools(t *testing.T) {
	t.Parallel()
	command, args := mcptest.Everything(t)
	cp := startControlPlane(t)
	sat := e2e.StartSatellite(t, cp, e2e.SatelliteConfig{RegistrationToken: cp.RegistrationToken(t)})
	registered := waitActive(t, cp, sat.URL)

	ctx := t.Context()
	conn, err := pgx.Connect(ctx, cp.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var catalogID string
	if err := conn.QueryRow(ctx, `insert into catalog_entries (slug, name, transport, command, args)
		values ('everything', 'Everything', 'stdio', $1, $2) returning id`, command, args).Scan(&catalogID); err != nil {
		t.Fatal(err)
	}
	red := seedTeam(t, conn, catalogID, "red", sat.URL)
	blue := seedTeam(t, conn, catalogID, "blue", sat.URL)
	if _, err := cp.Admin().EnqueueCommand(ctx, connect.NewRequest(&adminv1.EnqueueCommandRequest{
		Target:   &adminv1.EnqueueCommandRequest_SatelliteId{SatelliteId: registered.GetId()},
		Action:   configure.Action,
		Priority: satellitev1.CommandPriority_COMMAND_PRIORITY_IMMEDIATE,
	})); err != nil {
		t.Fatal(err)
	}

	session, err := connectMCP(ctx, red.endpoint, red.token)
	if err != nil {
		t.Fatalf("connect to red's endpoint: %v", err)
	}
	defer session.Close()
	e2e.WaitFor(t, 60*time.Second, "red's instance online with its tools listed", func() error {
		tools, err := session.ListTools(ctx, nil)
		if err != nil {
			return err
		}
		for _, tool := range tools.Tools {
			if tool.Name == "everything__echo" {
				return nil
			}
		}
		return fmt.Errorf("%d tools, no everything__echo yet", len(tools.Tools))
	})
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "everything__echo", Arguments: map[string]any{"message": "hello orrery"}})
	if err != nil {
		t.Fatal(err)
	}
	if text := res.Content[0].(*mcp.TextContent).Text; res.IsError || !strings.Contains(text, "hello orrery") {
		t.Fatalf("echo through the satellite returned %q (error %v)", text, res.IsError)
	}

	// Blue's token opens nothing at red's endpoint, and red's calls never reach blue's instance.
	if _, err := connectMCP(ctx, red.endpoint, blue.token); err == nil {
		t.Fatal("blue's token connected to red's endpoint")
	}
	e2e.WaitFor(t, 15*time.Second, "red's call recorded as a request log", func() error {
		var calls int
		if err := conn.QueryRow(ctx, `select count(*) from request_logs where installation_id = $1 and tool_name = 'echo' and success`,
			red.installationID).Scan(&calls); err != nil {
			return err
		}
		var leaked int
		if err := conn.QueryRow(ctx, `select count(*) from request_logs where installation_id = $1`, blue.installationID).Scan(&leaked); err != nil {
			return err
		}
		if leaked != 0 {
			t.Fatalf("blue's installation logged %d calls made by red", leaked)
		}
		if calls == 0 {
			return errors.New("no request log yet")
		}
		return nil
	})
	statuses := []string{}
	rows, err := conn.Query(ctx, `select status from instances order by id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		statuses = append(statuses, s)
	}
	if !slices.Contains(statuses, "online") {
		t.Errorf("instance statuses %v: the control plane never heard an instance came online", statuses)
	}
}
