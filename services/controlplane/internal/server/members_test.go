package server_test

import (
	"fmt"
	"slices"
	"testing"

	"connectrpc.com/connect"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// TestEveryMemberHasEveryInstance joins a person by invitation, creates a confidential OAuth client (whose
// service user is a member too) and installs a server, in every order: whatever the order, each member ends
// with exactly one instance of the installation, so a headless agent created after the installations
// sees the team's tools like everyone else.
func TestEveryMemberHasEveryInstance(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	p := seedProduct(t, b)
	ctx := t.Context()
	entry := of(p.root.catalog.CreateCatalogEntry(ctx, connect.NewRequest(&apiv1.CreateCatalogEntryRequest{
		Slug: "weather", Spec: &apiv1.CatalogEntrySpec{
			Name: "Weather", Transport: apiv1.Transport_TRANSPORT_HTTP, Url: "https://weather.example.com/mcp",
		},
	}))).must(t, "create template").Msg.Entry

	type step struct {
		name string
		do   func(t *testing.T, team store.Team, n int) (memberID string)
	}
	steps := []step{
		{"invitation accepted", func(t *testing.T, team store.Team, n int) string {
			joiner := b.caller(t, fmt.Sprintf("joiner%d@example.test", n), store.RoleGlobalUser)
			id := invite(t, b, *p.admin, team, joiner.user.Email).Msg.Invitation.Id
			of(teamClient(b, *joiner).AcceptInvitation(ctx, connect.NewRequest(&apiv1.AcceptInvitationRequest{InvitationId: id}))).
				must(t, "accept invitation")
			return joiner.user.ID.String()
		}},
		{"OAuth client created", func(t *testing.T, team store.Team, _ int) string {
			api := apiv1connect.NewOAuthServiceClient(testClient, b.replicas[0].url, connect.WithInterceptors(withBearer(p.admin.token)))
			created := of(api.CreateOAuthClient(ctx, connect.NewRequest(&apiv1.CreateOAuthClientRequest{
				TeamId: team.ID.String(), Name: "agent", Scopes: []string{"mcp:read"},
			}))).must(t, "create OAuth client")
			return created.Msg.Client.ServiceUserId
		}},
		{"installation created", func(t *testing.T, team store.Team, _ int) string {
			of(p.admin.installs.CreateInstallation(ctx, connect.NewRequest(&apiv1.CreateInstallationRequest{
				TeamId: team.ID.String(), CatalogEntryId: entry.Id, Spec: &apiv1.InstallationSpec{Name: "weather"},
			}))).must(t, "create installation")
			return ""
		}},
	}
	orders := [][]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}
	for n, order := range orders {
		var names []string
		for _, i := range order {
			names = append(names, steps[i].name)
		}
		t.Run(fmt.Sprint(names), func(t *testing.T) {
			team, err := b.store().CreateOwnedTeam(ctx, fmt.Sprintf("order-%d", n), "Order", p.admin.user.ID)
			if err != nil {
				t.Fatal(err)
			}
			members := []string{p.admin.user.ID.String()}
			for _, i := range order {
				if id := steps[i].do(t, team, n); id != "" {
					members = append(members, id)
				}
			}
			instances, err := b.store().DesiredInstances(ctx, &team.ID, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, inst := range instances {
				got = append(got, inst.UserID.String())
			}
			slices.Sort(got)
			slices.Sort(members)
			if !slices.Equal(got, members) {
				t.Errorf("instances belong to %v, want one for each member %v", got, members)
			}
		})
	}
}
