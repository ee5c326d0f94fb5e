package server_test

import (
	"testing"

	"connectrpc.com/connect"

	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	"github.com/orrery/orrery/gen/orrery/admin/v1/adminv1connect"
	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

func teamClient(b *testBundle, c caller) apiv1connect.TeamServiceClient {
	return apiv1connect.NewTeamServiceClient(testClient, b.replicas[0].url, connect.WithInterceptors(withBearer(c.token)))
}

// TestMembership invites a member who accepts, promotes and removes them; joining and removal reach the
// team's satellites, and the owner cannot be removed or demoted.
func TestMembership(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	x := seedTenants(t, b)
	f := seedTeam(t, b, "files") // an installation, so members get instances
	st := b.store()
	if err := st.AddMember(t.Context(), f.team.ID, x.adminA.user.ID, store.RoleTeamAdmin); err != nil {
		t.Fatal(err)
	}
	sat := b.activeSatellite(t, f.team.ID.String())
	admin := teamClient(b, x.adminA)
	teamID := f.team.ID.String()
	outsiderID := x.outsider.user.ID.String()

	invited, err := admin.InviteMember(t.Context(), connect.NewRequest(&apiv1.InviteMemberRequest{
		TeamId: teamID, Email: "outsider@orrery.test", Role: apiv1.TeamRole_TEAM_ROLE_USER,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := teamClient(b, x.outsider).AcceptInvitation(t.Context(), connect.NewRequest(&apiv1.AcceptInvitationRequest{
		InvitationId: invited.Msg.Invitation.Id,
	})); err != nil {
		t.Fatal(err)
	}
	if cmds := sat.poll(t, 0); len(cmds) != 1 || cmds[0].Priority.String() != "COMMAND_PRIORITY_IMMEDIATE" {
		t.Fatalf("after a member joined the satellite got %v, want one immediate configure", cmds)
	}
	instances := func() int {
		var n int
		if err := b.pool(t).QueryRow(t.Context(), "select count(*) from instances where team_id = $1 and user_id = $2",
			f.team.ID, outsiderID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if instances() != 1 {
		t.Fatalf("new member has %d instances, want 1", instances())
	}
	_, err = admin.InviteMember(t.Context(), connect.NewRequest(&apiv1.InviteMemberRequest{
		TeamId: teamID, Email: "Outsider@orrery.test", Role: apiv1.TeamRole_TEAM_ROLE_USER,
	}))
	wantCode(t, "inviting a member", err, connect.CodeAlreadyExists, "")

	if _, err := admin.SetMemberRole(t.Context(), connect.NewRequest(&apiv1.SetMemberRoleRequest{
		TeamId: teamID, UserId: outsiderID, Role: apiv1.TeamRole_TEAM_ROLE_ADMIN,
	})); err != nil {
		t.Fatal(err)
	}
	// A member of another team is not found here, whatever their id.
	_, err = admin.RemoveMember(t.Context(), connect.NewRequest(&apiv1.RemoveMemberRequest{TeamId: teamID, UserId: x.userB.user.ID.String()}))
	wantCode(t, "call", err, connect.CodeNotFound, "")

	if _, err := admin.RemoveMember(t.Context(), connect.NewRequest(&apiv1.RemoveMemberRequest{TeamId: teamID, UserId: outsiderID})); err != nil {
		t.Fatal(err)
	}
	if instances() != 0 {
		t.Errorf("removed member still has %d instances", instances())
	}
	cmds := sat.poll(t, 0)
	if len(cmds) != 1 || cmds[0].Priority.String() != "COMMAND_PRIORITY_HIGH" ||
		cmds[0].GetConfigure().GetEvent() != satellitev1.ConfigureEvent_CONFIGURE_EVENT_MEMBER_REMOVED ||
		cmds[0].GetConfigure().GetUserId() != outsiderID {
		t.Errorf("after removing a member the satellite got %v, want one high-priority configure naming the member", cmds)
	}

	// The fixture's team has no owner; team A's owner is protected.
	ownerTeam := x.teamA.ID.String()
	_, err = admin.RemoveMember(t.Context(), connect.NewRequest(&apiv1.RemoveMemberRequest{TeamId: ownerTeam, UserId: x.adminA.user.ID.String()}))
	wantCode(t, "call", err, connect.CodeFailedPrecondition, "")
	_, err = admin.SetMemberRole(t.Context(), connect.NewRequest(&apiv1.SetMemberRoleRequest{
		TeamId: ownerTeam, UserId: x.adminA.user.ID.String(), Role: apiv1.TeamRole_TEAM_ROLE_USER,
	}))
	wantCode(t, "call", err, connect.CodeFailedPrecondition, "")
}

// TestTransferOwnership hands a team to another member; only the owner may, and the new owner is an admin.
func TestTransferOwnership(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	x := seedTenants(t, b)
	teamID := x.teamA.ID.String()
	// userA becomes an admin but not the owner: still not allowed to transfer.
	if err := b.store().SetMemberRole(t.Context(), x.teamA.ID, x.userA.user.ID, store.RoleTeamAdmin); err != nil {
		t.Fatal(err)
	}
	_, err := teamClient(b, x.userA).TransferOwnership(t.Context(), connect.NewRequest(&apiv1.TransferOwnershipRequest{
		TeamId: teamID, UserId: x.userA.user.ID.String(),
	}))
	wantCode(t, "call", err, connect.CodePermissionDenied, "")
	_, err = teamClient(b, x.adminA).TransferOwnership(t.Context(), connect.NewRequest(&apiv1.TransferOwnershipRequest{
		TeamId: teamID, UserId: x.userB.user.ID.String(),
	}))
	wantCode(t, "call", err, connect.CodeNotFound, "")
	if _, err := teamClient(b, x.adminA).TransferOwnership(t.Context(), connect.NewRequest(&apiv1.TransferOwnershipRequest{
		TeamId: teamID, UserId: x.userA.user.ID.String(),
	})); err != nil {
		t.Fatal(err)
	}
	team, err := teamClient(b, x.userA).GetTeam(t.Context(), connect.NewRequest(&apiv1.GetTeamRequest{TeamId: teamID}))
	if err != nil {
		t.Fatal(err)
	}
	if team.Msg.Team.OwnerId != x.userA.user.ID.String() {
		t.Errorf("owner = %s, want %s", team.Msg.Team.OwnerId, x.userA.user.ID)
	}
}

// TestTeamSatelliteAdmin lets a team's admins manage their own registration tokens and satellites, and
// nobody else's.
func TestTeamSatelliteAdmin(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	x := seedTenants(t, b)
	adminFor := func(c caller) adminv1connect.AdminServiceClient {
		return adminv1connect.NewAdminServiceClient(testClient, b.replicas[0].url, connect.WithInterceptors(withBearer(c.token)))
	}
	a, bAdmin := adminFor(x.adminA), adminFor(x.adminB)
	created, err := a.CreateRegistrationToken(t.Context(), connect.NewRequest(&adminv1.CreateRegistrationTokenRequest{
		Name: "edge", Scope: adminv1.TokenScope_TOKEN_SCOPE_TEAM, TeamId: x.teamA.ID.String(),
	}))
	if err != nil {
		t.Fatal(err)
	}
	sat, err := b.register(t, 0, created.Msg.Token, "team-a-edge")
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.CreateRegistrationToken(t.Context(), connect.NewRequest(&adminv1.CreateRegistrationTokenRequest{
		Name: "global", Scope: adminv1.TokenScope_TOKEN_SCOPE_GLOBAL,
	}))
	wantCode(t, "call", err, connect.CodePermissionDenied, "")

	// Team B's admin names their own team and team A's satellite: not found, and not revoked.
	_, err = bAdmin.RevokeSatellite(t.Context(), connect.NewRequest(&adminv1.RevokeSatelliteRequest{Id: sat.id, TeamId: x.teamB.ID.String()}))
	wantCode(t, "call", err, connect.CodeNotFound, "")
	_, err = bAdmin.RevokeRegistrationToken(t.Context(), connect.NewRequest(&adminv1.RevokeRegistrationTokenRequest{
		Id: created.Msg.RegistrationToken.Id, TeamId: x.teamB.ID.String(),
	}))
	wantCode(t, "call", err, connect.CodeNotFound, "")
	list, err := bAdmin.ListSatellites(t.Context(), connect.NewRequest(&adminv1.ListSatellitesRequest{TeamId: x.teamB.ID.String()}))
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Msg.Satellites) != 0 {
		t.Errorf("team B's admin lists %v", list.Msg.Satellites)
	}
	list, err = a.ListSatellites(t.Context(), connect.NewRequest(&adminv1.ListSatellitesRequest{TeamId: x.teamA.ID.String()}))
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Msg.Satellites) != 1 || list.Msg.Satellites[0].Id != sat.id {
		t.Errorf("team A's admin lists %v, want their satellite", list.Msg.Satellites)
	}
	if _, err := a.RevokeSatellite(t.Context(), connect.NewRequest(&adminv1.RevokeSatelliteRequest{Id: sat.id, TeamId: x.teamA.ID.String()})); err != nil {
		t.Fatal(err)
	}

	// The audit log shows team A's admins their team's events, with the satellite's registration, and team
	// B's admin none of them.
	audit := func(c caller, teamID string) []*apiv1.AuditEvent {
		resp, err := apiv1connect.NewAuditServiceClient(testClient, b.replicas[0].url, connect.WithInterceptors(withBearer(c.token))).
			ListAuditEvents(t.Context(), connect.NewRequest(&apiv1.ListAuditEventsRequest{TeamId: teamID}))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Msg.Events
	}
	actions := map[string]bool{}
	for _, e := range audit(x.adminA, x.teamA.ID.String()) {
		actions[e.Action] = true
		if e.TeamId != x.teamA.ID.String() {
			t.Errorf("team A's audit log holds %v", e)
		}
	}
	for _, want := range []string{"registration_token.created", "satellite.registered", "satellite.revoked"} {
		if !actions[want] {
			t.Errorf("team A's audit log lacks %s: %v", want, actions)
		}
	}
	for _, e := range audit(x.adminB, x.teamB.ID.String()) {
		if e.TeamId != x.teamB.ID.String() {
			t.Errorf("team B's audit log holds %v", e)
		}
	}
}

// TestTeamEndpoint locates a team's MCP endpoint on a satellite that serves it: none before a satellite
// announces its URL, the team's own satellite before a global one, and nothing for another team's members.
func TestTeamEndpoint(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	x := seedTenants(t, b)
	teamA := x.teamA.ID.String()
	endpoint := func(c caller) (*apiv1.GetTeamEndpointResponse, error) {
		resp, err := teamClient(b, c).GetTeamEndpoint(t.Context(), connect.NewRequest(&apiv1.GetTeamEndpointRequest{TeamId: teamA}))
		if err != nil {
			return nil, err
		}
		return resp.Msg, nil
	}
	if got, err := endpoint(x.userA); err != nil || got.Url != "" {
		t.Fatalf("without satellites: %v, %v; want an empty URL", got, err)
	}
	b.activeSatellite(t, "").heartbeat(t, "https://pool.example.test/")
	got, err := endpoint(x.userA)
	if err != nil || got.Url != "https://pool.example.test/teams/team-a/mcp" || got.SseUrl != "https://pool.example.test/teams/team-a/sse" {
		t.Fatalf("with a global satellite: %v, %v", got, err)
	}
	b.activeSatellite(t, teamA).heartbeat(t, "https://a.example.test")
	b.activeSatellite(t, x.teamB.ID.String()).heartbeat(t, "https://b.example.test")
	if got, err := endpoint(x.userA); err != nil || got.Url != "https://a.example.test/teams/team-a/mcp" {
		t.Fatalf("with the team's own satellite: %v, %v", got, err)
	}
	_, err = endpoint(x.userB)
	wantCode(t, "another team's endpoint", err, connect.CodePermissionDenied, "")
}
