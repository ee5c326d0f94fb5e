package e2e_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"

	"github.com/orrery/orrery/e2e"
	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

// onlineTimeout covers a configure command, the server's start and its tool discovery.
const onlineTimeout = 60 * time.Second

// teamEndpoint is one team's MCP endpoint on a real satellite, serving one stdio server installed from the
// catalog, with a member's access token.
type teamEndpoint struct {
	team
	cp   *e2e.ControlPlane
	sat  *e2e.Satellite
	conn *pgx.Conn
}

// startTeamEndpoint starts a control plane and a satellite, seeds a team slug with one installation of a
// catalog entry (catalogSlug, running command with args over stdio), configures the satellite and waits
// until the endpoint lists wantTool. With noPrefix the installation lists its tools under their own names.
func startTeamEndpoint(t *testing.T, slug, catalogSlug, command string, args []string, noPrefix bool, wantTool string) *teamEndpoint {
	t.Helper()
	return startTeamEndpointWith(t, nil, slug, catalogSlug, command, args, noPrefix, wantTool)
}

// startTeamEndpointWith is startTeamEndpoint with satelliteEnv added to the satellite's environment.
func startTeamEndpointWith(t *testing.T, satelliteEnv []string, slug, catalogSlug, command string, args []string, noPrefix bool, wantTool string) *teamEndpoint {
	t.Helper()
	return serveTeamEndpoint(t, startControlPlane(t), satelliteEnv, slug, catalogSlug, command, args, noPrefix, wantTool)
}

// serveTeamEndpoint is startTeamEndpointWith on a control plane that runs already.
func serveTeamEndpoint(t *testing.T, cp *e2e.ControlPlane, satelliteEnv []string, slug, catalogSlug, command string, args []string, noPrefix bool, wantTool string) *teamEndpoint {
	t.Helper()
	return serveTeamEndpointFrom(t, cp, satelliteEnv, slug, catalogSlug, command, args, noPrefix, wantTool, "{}", nil)
}

// serveTeamEndpointFrom is serveTeamEndpoint for a catalog entry with a source (orrery.satellite.v1.Source
// in protobuf JSON); seeded, when set, runs once the team exists, before the satellite is configured.
func serveTeamEndpointFrom(t *testing.T, cp *e2e.ControlPlane, satelliteEnv []string, slug, catalogSlug, command string, args []string, noPrefix bool, wantTool, source string, seeded func(*teamEndpoint)) *teamEndpoint {
	t.Helper()
	sat := e2e.StartSatellite(t, cp, e2e.SatelliteConfig{RegistrationToken: cp.RegistrationToken(t), Env: satelliteEnv})
	registered := waitActive(t, cp, sat.URL)

	ctx := t.Context()
	conn, err := pgx.Connect(ctx, cp.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.WithoutCancel(ctx)) })
	if args == nil {
		args = []string{} // a SQL array, never NULL
	}
	var catalogID string
	if err := conn.QueryRow(ctx, `insert into catalog_entries (slug, name, transport, command, args, source)
		values ($1, $1, 'stdio', $2, $3, $4) returning id`, catalogSlug, command, args, source).Scan(&catalogID); err != nil {
		t.Fatal(err)
	}
	te := &teamEndpoint{team: seedTeam(t, conn, catalogID, slug, sat.URL), cp: cp, sat: sat, conn: conn}
	if seeded != nil {
		seeded(te)
	}
	if noPrefix {
		if _, err := conn.Exec(ctx, `update installations set tool_prefix = '' where id = $1`, te.installationID); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cp.Admin().EnqueueCommand(ctx, connect.NewRequest(&adminv1.EnqueueCommandRequest{
		Target:   &adminv1.EnqueueCommandRequest_SatelliteId{SatelliteId: registered.GetId()},
		Action:   configure.Action,
		Priority: satellitev1.CommandPriority_COMMAND_PRIORITY_IMMEDIATE,
	})); err != nil {
		t.Fatal(err)
	}

	session, err := connectMCP(ctx, te.endpoint, te.token)
	if err != nil {
		t.Fatalf("connect to %s's endpoint: %v", slug, err)
	}
	defer session.Close()
	e2e.WaitFor(t, onlineTimeout, slug+"'s instance online with "+wantTool+" listed", func() error {
		tools, err := session.ListTools(ctx, nil)
		if err != nil {
			return err
		}
		var names []string
		for _, tool := range tools.Tools {
			names = append(names, tool.Name)
		}
		if !slices.Contains(names, wantTool) {
			return fmt.Errorf("tools %v, no %s yet", names, wantTool)
		}
		return nil
	})
	return te
}

// addInstallation installs a second stdio server (catalogSlug, running command with args) for the team's
// member beside the first, under its tools' own names, configures the satellite again and waits until the
// endpoint lists wantTool.
func (te *teamEndpoint) addInstallation(t *testing.T, catalogSlug, command string, args []string, wantTool string) {
	t.Helper()
	ctx := t.Context()
	if args == nil {
		args = []string{}
	}
	var catalogID, installationID, userID string
	err := te.conn.QueryRow(ctx, `insert into catalog_entries (slug, name, transport, command, args)
		values ($1, $1, 'stdio', $2, $3) returning id`, catalogSlug, command, args).Scan(&catalogID)
	if err == nil {
		err = te.conn.QueryRow(ctx, `select user_id from team_memberships where team_id = $1`, te.id).Scan(&userID)
	}
	if err == nil {
		err = te.conn.QueryRow(ctx, `insert into installations (team_id, catalog_entry_id, name, tool_prefix)
			values ($1, $2, $3, '') returning id`, te.id, catalogID, catalogSlug).Scan(&installationID)
	}
	if err == nil {
		_, err = te.conn.Exec(ctx, `insert into instances (id, installation_id, team_id, user_id)
			values ($1 || '-' || $2 || '-' || $2 || '-dev-' || $3::text, $3::uuid, $4, $5)`,
			catalogSlug, te.slug, installationID, te.id, userID)
	}
	if err != nil {
		t.Fatalf("install %s: %v", catalogSlug, err)
	}
	registered := waitActive(t, te.cp, te.sat.URL)
	if _, err := te.cp.Admin().EnqueueCommand(ctx, connect.NewRequest(&adminv1.EnqueueCommandRequest{
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
	defer session.Close()
	e2e.WaitFor(t, onlineTimeout, catalogSlug+" online with "+wantTool+" listed", func() error {
		tools, err := session.ListTools(ctx, nil)
		if err != nil {
			return err
		}
		for _, tool := range tools.Tools {
			if tool.Name == wantTool {
				return nil
			}
		}
		return fmt.Errorf("no %s yet", wantTool)
	})
}
