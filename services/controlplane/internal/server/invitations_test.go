package server_test

import (
	"net/http"
	"slices"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/services/controlplane/internal/accountapi"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

func invite(t *testing.T, b *testBundle, admin caller, team store.Team, email string) *connect.Response[apiv1.InviteMemberResponse] {
	t.Helper()
	resp, err := teamClient(b, admin).InviteMember(t.Context(), connect.NewRequest(&apiv1.InviteMemberRequest{
		TeamId: team.ID.String(), Email: email, Role: apiv1.TeamRole_TEAM_ROLE_USER,
	}))
	if err != nil {
		t.Fatalf("invite %s: %v", email, err)
	}
	return resp
}

func myInvitations(t *testing.T, b *testBundle, c caller) []*apiv1.Invitation {
	t.Helper()
	resp, err := teamClient(b, c).ListMyInvitations(t.Context(), connect.NewRequest(&apiv1.ListMyInvitationsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Msg.Invitations
}

func teamInvitations(t *testing.T, b *testBundle, admin caller, team store.Team) []*apiv1.Invitation {
	t.Helper()
	resp, err := teamClient(b, admin).ListInvitations(t.Context(), connect.NewRequest(&apiv1.ListInvitationsRequest{TeamId: team.ID.String()}))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Msg.Invitations
}

func isMember(t *testing.T, b *testBundle, team store.Team, c caller) bool {
	t.Helper()
	_, err := b.store().TeamRole(t.Context(), team.ID, c.user.ID)
	return err == nil
}

// TestInvitationEnumeration is a team admin probing for accounts: inviting an address that has an account
// and one that has none gives the same answer, apart from the generated id and times, and the account's
// owner joins only by accepting. Nobody else can accept, see or revoke the invitation.
func TestInvitationEnumeration(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	x := seedTenants(t, b)

	// Addresses of the same length, so not even the size of the answer differs.
	existing := invite(t, b, x.adminA, x.teamA, "user@b.test")
	missing := invite(t, b, x.adminA, x.teamA, "nope@b.test")
	for _, r := range []*connect.Response[apiv1.InviteMemberResponse]{existing, missing} {
		inv := r.Msg.Invitation
		if inv.Id == "" || inv.CreatedAt == nil || !inv.ExpiresAt.AsTime().After(inv.CreatedAt.AsTime()) {
			t.Errorf("invitation %v lacks its id or times", inv)
		}
	}
	blank := func(r *connect.Response[apiv1.InviteMemberResponse]) *apiv1.Invitation {
		inv := proto.CloneOf(r.Msg.Invitation)
		inv.Id, inv.CreatedAt, inv.ExpiresAt, inv.Email = "", nil, nil, ""
		return inv
	}
	if !proto.Equal(blank(existing), blank(missing)) {
		t.Errorf("answers differ:\n%v\n%v", existing.Msg.Invitation, missing.Msg.Invitation)
	}
	if existing.Msg.Invitation.Email != "user@b.test" || missing.Msg.Invitation.Email != "nope@b.test" {
		t.Errorf("emails not as given: %q, %q", existing.Msg.Invitation.Email, missing.Msg.Invitation.Email)
	}
	headers := func(r *connect.Response[apiv1.InviteMemberResponse]) http.Header {
		h := r.Header().Clone()
		h.Del("Date")
		// The length follows the random id and times (their gzip and varint sizes), not the account.
		h.Del("Content-Length")
		return h
	}
	if a, b := headers(existing), headers(missing); !equalHeaders(a, b) {
		t.Errorf("headers differ:\n%v\n%v", a, b)
	}

	// Not a member until they accept.
	if isMember(t, b, x.teamA, x.userB) {
		t.Fatal("the invitee became a member without accepting")
	}
	_, err := teamClient(b, x.userB).GetTeam(t.Context(), connect.NewRequest(&apiv1.GetTeamRequest{TeamId: x.teamA.ID.String()}))
	wantCode(t, "invitee reading the team", err, connect.CodePermissionDenied, "")
	mine := myInvitations(t, b, x.userB)
	if len(mine) != 1 || mine[0].Id != existing.Msg.Invitation.Id || mine[0].TeamName != "Team A" || mine[0].InvitedBy != "admin@a.test" {
		t.Fatalf("invitee sees %v, want the one invitation from Team A's admin", mine)
	}

	// Someone else cannot see, accept or decline it.
	id := existing.Msg.Invitation.Id
	if others := myInvitations(t, b, x.outsider); len(others) != 0 {
		t.Errorf("another user sees %v", others)
	}
	_, err = teamClient(b, x.outsider).AcceptInvitation(t.Context(), connect.NewRequest(&apiv1.AcceptInvitationRequest{InvitationId: id}))
	wantCode(t, "accepting another's invitation", err, connect.CodeNotFound, "")
	_, err = teamClient(b, x.outsider).DeclineInvitation(t.Context(), connect.NewRequest(&apiv1.DeclineInvitationRequest{InvitationId: id}))
	wantCode(t, "declining another's invitation", err, connect.CodeNotFound, "")
	if isMember(t, b, x.teamA, x.outsider) {
		t.Fatal("another user joined through someone else's invitation")
	}

	// Team B's admin neither lists nor revokes team A's invitations, naming either team.
	_, err = teamClient(b, x.adminB).ListInvitations(t.Context(), connect.NewRequest(&apiv1.ListInvitationsRequest{TeamId: x.teamA.ID.String()}))
	wantCode(t, "listing another team's invitations", err, connect.CodePermissionDenied, "")
	_, err = teamClient(b, x.adminB).RevokeInvitation(t.Context(), connect.NewRequest(&apiv1.RevokeInvitationRequest{
		TeamId: x.teamA.ID.String(), InvitationId: id,
	}))
	wantCode(t, "revoking in another team", err, connect.CodePermissionDenied, "")
	_, err = teamClient(b, x.adminB).RevokeInvitation(t.Context(), connect.NewRequest(&apiv1.RevokeInvitationRequest{
		TeamId: x.teamB.ID.String(), InvitationId: id,
	}))
	wantCode(t, "revoking another team's invitation through one's own", err, connect.CodeNotFound, "")
	if bList := teamInvitations(t, b, x.adminB, x.teamB); len(bList) != 0 {
		t.Errorf("team B lists %v", bList)
	}
	if aList := teamInvitations(t, b, x.adminA, x.teamA); len(aList) != 2 {
		t.Fatalf("team A lists %d invitations, want both still pending", len(aList))
	}

	// The invitee accepts: a member with the invited role, once.
	accepted, err := teamClient(b, x.userB).AcceptInvitation(t.Context(), connect.NewRequest(&apiv1.AcceptInvitationRequest{InvitationId: id}))
	if err != nil {
		t.Fatal(err)
	}
	if m := accepted.Msg.Membership; m.TeamId != x.teamA.ID.String() || m.Role != apiv1.TeamRole_TEAM_ROLE_USER {
		t.Errorf("membership = %v", m)
	}
	if !isMember(t, b, x.teamA, x.userB) {
		t.Fatal("accepting did not make a member")
	}
	_, err = teamClient(b, x.userB).AcceptInvitation(t.Context(), connect.NewRequest(&apiv1.AcceptInvitationRequest{InvitationId: id}))
	wantCode(t, "accepting twice", err, connect.CodeNotFound, "")

	events, err := b.store().ListAuditEvents(t.Context(), &x.teamA.ID, 1<<62, 100)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range events {
		actions = append(actions, e.Action)
	}
	if !slices.Contains(actions, "invitation.created") || !slices.Contains(actions, "invitation.accepted") {
		t.Errorf("team A's audit log has %v", actions)
	}
}

// TestInvitationDecline keeps a refusal from the team: the invitee no longer sees the invitation, the team
// still sees it pending and finds nothing in its audit log, and inviting again offers it again.
func TestInvitationDecline(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	x := seedTenants(t, b)
	id := invite(t, b, x.adminA, x.teamA, "USER@b.test").Msg.Invitation.Id // addresses match regardless of case
	if _, err := teamClient(b, x.userB).DeclineInvitation(t.Context(), connect.NewRequest(&apiv1.DeclineInvitationRequest{InvitationId: id})); err != nil {
		t.Fatal(err)
	}
	if mine := myInvitations(t, b, x.userB); len(mine) != 0 {
		t.Errorf("declined invitation still offered: %v", mine)
	}
	_, err := teamClient(b, x.userB).AcceptInvitation(t.Context(), connect.NewRequest(&apiv1.AcceptInvitationRequest{InvitationId: id}))
	wantCode(t, "accepting a declined invitation", err, connect.CodeNotFound, "")
	if list := teamInvitations(t, b, x.adminA, x.teamA); len(list) != 1 || list[0].Id != id {
		t.Errorf("team lists %v, want the declined invitation as pending", list)
	}
	events, err := b.store().ListAuditEvents(t.Context(), &x.teamA.ID, 1<<62, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if e.Action == "invitation.declined" {
			t.Errorf("the team's audit log tells of the refusal: %+v", e)
		}
	}
	invite(t, b, x.adminA, x.teamA, "user@b.test")
	if mine := myInvitations(t, b, x.userB); len(mine) != 1 {
		t.Errorf("a renewed invitation is not offered again: %v", mine)
	}
}

// TestInvitationForLaterAccount invites an address before anyone has an account with it; the account
// created later sees the invitation and joins by accepting.
func TestInvitationForLaterAccount(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	x := seedTenants(t, b)
	f := seedTeam(t, b, "files") // an installation, so the new member gets an instance
	if err := b.store().AddMember(t.Context(), f.team.ID, x.adminA.user.ID, store.RoleTeamAdmin); err != nil {
		t.Fatal(err)
	}
	resp, err := teamClient(b, x.adminA).InviteMember(t.Context(), connect.NewRequest(&apiv1.InviteMemberRequest{
		TeamId: f.team.ID.String(), Email: "newcomer@example.test", Role: apiv1.TeamRole_TEAM_ROLE_ADMIN,
	}))
	if err != nil {
		t.Fatal(err)
	}
	newcomer := newCaller(t, b.store(), "Newcomer@Example.test", store.RoleGlobalUser)
	mine := myInvitations(t, b, newcomer)
	if len(mine) != 1 || mine[0].Id != resp.Msg.Invitation.Id {
		t.Fatalf("newcomer sees %v", mine)
	}
	accepted, err := teamClient(b, newcomer).AcceptInvitation(t.Context(), connect.NewRequest(&apiv1.AcceptInvitationRequest{InvitationId: mine[0].Id}))
	if err != nil {
		t.Fatal(err)
	}
	if accepted.Msg.Membership.Role != apiv1.TeamRole_TEAM_ROLE_ADMIN {
		t.Errorf("role = %v, want the invited admin role", accepted.Msg.Membership.Role)
	}
	var instances int
	if err := b.pool(t).QueryRow(t.Context(), "select count(*) from instances where team_id = $1 and user_id = $2",
		f.team.ID, newcomer.user.ID).Scan(&instances); err != nil {
		t.Fatal(err)
	}
	if instances != 1 {
		t.Errorf("new member has %d instances, want 1", instances)
	}
}

// TestInvitationLimits bounds a team's pending invitations, lets revocation and expiry free places, and
// makes revoked and expired invitations unacceptable.
func TestInvitationLimits(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{accounts: accountapi.Config{MaxPendingInvitations: 2}})
	x := seedTenants(t, b)
	first := invite(t, b, x.adminA, x.teamA, "user@b.test").Msg.Invitation
	invite(t, b, x.adminA, x.teamA, "two@example.test")
	_, err := teamClient(b, x.adminA).InviteMember(t.Context(), connect.NewRequest(&apiv1.InviteMemberRequest{
		TeamId: x.teamA.ID.String(), Email: "three@example.test", Role: apiv1.TeamRole_TEAM_ROLE_USER,
	}))
	wantCode(t, "inviting past the limit", err, connect.CodeResourceExhausted, "")
	renewed := invite(t, b, x.adminA, x.teamA, "user@b.test").Msg.Invitation // renewing takes no new place
	if renewed.Id != first.Id {
		t.Errorf("renewal made a new invitation %s, want %s", renewed.Id, first.Id)
	}

	if _, err := teamClient(b, x.adminA).RevokeInvitation(t.Context(), connect.NewRequest(&apiv1.RevokeInvitationRequest{
		TeamId: x.teamA.ID.String(), InvitationId: first.Id,
	})); err != nil {
		t.Fatal(err)
	}
	_, err = teamClient(b, x.userB).AcceptInvitation(t.Context(), connect.NewRequest(&apiv1.AcceptInvitationRequest{InvitationId: first.Id}))
	wantCode(t, "accepting a revoked invitation", err, connect.CodeNotFound, "")
	expiring := invite(t, b, x.adminA, x.teamA, "user@b.test").Msg.Invitation

	if _, err := b.pool(t).Exec(t.Context(), "update team_invitations set expires_at = now() - interval '1 second' where id = $1",
		expiring.Id); err != nil {
		t.Fatal(err)
	}
	if mine := myInvitations(t, b, x.userB); len(mine) != 0 {
		t.Errorf("an expired invitation is offered: %v", mine)
	}
	_, err = teamClient(b, x.userB).AcceptInvitation(t.Context(), connect.NewRequest(&apiv1.AcceptInvitationRequest{InvitationId: expiring.Id}))
	wantCode(t, "accepting an expired invitation", err, connect.CodeNotFound, "")
	invite(t, b, x.adminA, x.teamA, "four@example.test") // the expired one no longer counts
}
