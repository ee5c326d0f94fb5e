package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
)

// optionalTeam resolves --team when given; empty means no team.
func (s *session) optionalTeam(ctx context.Context, ref string) (*apiv1.Team, string, error) {
	if ref == "" {
		return nil, "", nil
	}
	t, err := s.team(ctx, ref)
	if err != nil {
		return nil, "", err
	}
	return t, t.GetId(), nil
}

func (a *App) oauthCommand() *cobra.Command {
	c := &cobra.Command{Use: "oauth", Short: "A team's OAuth clients and the grants its members gave"}
	clients := &cobra.Command{Use: "clients", Short: "A team's OAuth clients"}
	var team string
	list := &cobra.Command{
		Use:   "list --team TEAM",
		Short: "List the team's clients and the clients holding grants in it (team admins)",
		Args:  args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			s, t, err := a.teamScope(c.Context(), team)
			if err != nil {
				return err
			}
			resp, err := s.oauth().ListOAuthClients(c.Context(), connect.NewRequest(&apiv1.ListOAuthClientsRequest{TeamId: t.GetId()}))
			if err != nil {
				return err
			}
			var rows [][]string
			for _, cl := range resp.Msg.GetClients() {
				rows = append(rows, []string{cl.GetClientId(), cl.GetName(), cl.GetTokenEndpointAuthMethod(), strings.Join(cl.GetScopes(), " "), when(cl.GetCreatedAt())})
			}
			return a.show(resp.Msg, []string{"CLIENT ID", "NAME", "AUTH", "SCOPES", "CREATED"}, rows)
		},
	}
	a.teamFlag(list, &team, true)

	var createTeam string
	var scopes []string
	create := &cobra.Command{
		Use:     "create NAME --team TEAM",
		Short:   "Create a confidential client for a headless agent; its secret is shown once",
		Example: "  orreryctl oauth clients create ci-agent --team platform -o json",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			s, t, err := a.teamScope(c.Context(), createTeam)
			if err != nil {
				return err
			}
			resp, err := s.oauth().CreateOAuthClient(c.Context(), connect.NewRequest(&apiv1.CreateOAuthClientRequest{TeamId: t.GetId(), Name: argv[0], Scopes: scopes}))
			if err != nil {
				return err
			}
			fmt.Fprintln(a.Err, "Keep the secret now: it is not shown again.")
			cl := resp.Msg.GetClient()
			return a.show(resp.Msg, []string{"CLIENT ID", "CLIENT SECRET", "SCOPES"}, [][]string{{cl.GetClientId(), resp.Msg.GetClientSecret(), strings.Join(cl.GetScopes(), " ")}})
		},
	}
	a.teamFlag(create, &createTeam, true)
	create.Flags().StringSliceVar(&scopes, "scope", nil, "scopes the client may ask for; default all the endpoint offers")
	clients.AddCommand(list, create)

	grants := &cobra.Command{Use: "grants", Short: "The grants a team's members gave to clients"}
	var grantTeam string
	glist := &cobra.Command{
		Use:   "list --team TEAM",
		Short: "List live grants in a team (team admins)",
		Args:  args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			s, t, err := a.teamScope(c.Context(), grantTeam)
			if err != nil {
				return err
			}
			resp, err := s.oauth().ListOAuthGrants(c.Context(), connect.NewRequest(&apiv1.ListOAuthGrantsRequest{TeamId: t.GetId()}))
			if err != nil {
				return err
			}
			var rows [][]string
			for _, g := range resp.Msg.GetGrants() {
				rows = append(rows, []string{g.GetGrantId(), g.GetClientId(), g.GetUserId(), strings.Join(g.GetScopes(), " "), when(g.GetExpiresAt())})
			}
			return a.show(resp.Msg, []string{"GRANT", "CLIENT", "USER", "SCOPES", "EXPIRES"}, rows)
		},
	}
	a.teamFlag(glist, &grantTeam, true)
	var revokeTeam string
	grevoke := &cobra.Command{
		Use:   "revoke GRANT --team TEAM",
		Short: "Revoke a grant: its tokens stop working at once",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			s, t, err := a.teamScope(c.Context(), revokeTeam)
			if err != nil {
				return err
			}
			if _, err := s.oauth().RevokeOAuthGrant(c.Context(), connect.NewRequest(&apiv1.RevokeOAuthGrantRequest{TeamId: t.GetId(), GrantId: argv[0]})); err != nil {
				return err
			}
			fmt.Fprintf(a.Err, "Revoked grant %s.\n", argv[0])
			return nil
		},
	}
	a.teamFlag(grevoke, &revokeTeam, true)
	grants.AddCommand(glist, grevoke)
	c.AddCommand(clients, grants)
	return c
}

func (a *App) satellitesCommand() *cobra.Command {
	c := &cobra.Command{
		Use:     "satellites",
		Aliases: []string{"satellite", "sat"},
		Short:   "Satellites and the tokens that register them (global admins; team admins for their team's)",
	}
	var team string
	list := &cobra.Command{
		Use:   "list",
		Short: "List satellites: global ones, or with --team the team's own",
		Args:  args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			s, err := a.session(c.Context())
			if err != nil {
				return err
			}
			_, teamID, err := s.optionalTeam(c.Context(), team)
			if err != nil {
				return err
			}
			all := &adminv1.ListSatellitesResponse{}
			req := &adminv1.ListSatellitesRequest{TeamId: teamID, PageSize: 500}
			for {
				resp, err := s.admin().ListSatellites(c.Context(), connect.NewRequest(req))
				if err != nil {
					return err
				}
				all.Satellites = append(all.Satellites, resp.Msg.GetSatellites()...)
				if req.PageToken = resp.Msg.GetNextPageToken(); req.PageToken == "" {
					break
				}
			}
			var rows [][]string
			for _, st := range all.GetSatellites() {
				rows = append(rows, []string{st.GetName(), enumName(st.GetType().String(), "SATELLITE_TYPE_"),
					satelliteStatus(st), st.GetUrl(), ago(st.GetLastHeartbeatAt()), st.GetId()})
			}
			return a.show(all, []string{"NAME", "TYPE", "STATUS", "URL", "HEARTBEAT", "ID"}, rows)
		},
	}
	a.teamFlag(list, &team, false)

	tokens := &cobra.Command{Use: "tokens", Short: "Registration tokens, each good for registering one satellite"}
	var tokTeam string
	var ttl time.Duration
	tcreate := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a registration token; it is shown once",
		Example: `  orreryctl satellites tokens create edge-1 --ttl 1h
  ORRERY_REGISTRATION_TOKEN=$(orreryctl satellites tokens create edge-2 --team platform -o json | jq -r .token)`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			s, err := a.session(c.Context())
			if err != nil {
				return err
			}
			_, teamID, err := s.optionalTeam(c.Context(), tokTeam)
			if err != nil {
				return err
			}
			scope := adminv1.TokenScope_TOKEN_SCOPE_GLOBAL
			if teamID != "" {
				scope = adminv1.TokenScope_TOKEN_SCOPE_TEAM
			}
			resp, err := s.admin().CreateRegistrationToken(c.Context(), connect.NewRequest(&adminv1.CreateRegistrationTokenRequest{
				Name: argv[0], Scope: scope, TeamId: teamID, Ttl: durationpb.New(ttl),
			}))
			if err != nil {
				return err
			}
			fmt.Fprintln(a.Err, "Keep the token now: it is not shown again.")
			return a.show(resp.Msg, []string{"NAME", "EXPIRES", "TOKEN"}, [][]string{{argv[0], when(resp.Msg.GetRegistrationToken().GetExpiresAt()), resp.Msg.GetToken()}})
		},
	}
	a.teamFlag(tcreate, &tokTeam, false)
	tcreate.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token stays valid")

	var listTokTeam string
	tlist := &cobra.Command{
		Use:   "list",
		Short: "List registration tokens",
		Args:  args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			s, err := a.session(c.Context())
			if err != nil {
				return err
			}
			_, teamID, err := s.optionalTeam(c.Context(), listTokTeam)
			if err != nil {
				return err
			}
			resp, err := s.admin().ListRegistrationTokens(c.Context(), connect.NewRequest(&adminv1.ListRegistrationTokensRequest{TeamId: teamID}))
			if err != nil {
				return err
			}
			var rows [][]string
			for _, t := range resp.Msg.GetRegistrationTokens() {
				state := "unused"
				switch {
				case t.GetRevokedAt() != nil:
					state = "revoked"
				case t.GetConsumedAt() != nil:
					state = "used by " + t.GetSatelliteId()
				case t.GetExpiresAt() != nil && t.GetExpiresAt().AsTime().Before(time.Now()):
					state = "expired"
				}
				rows = append(rows, []string{t.GetName(), enumName(t.GetScope().String(), "TOKEN_SCOPE_"), state, when(t.GetExpiresAt()), t.GetId()})
			}
			return a.show(resp.Msg, []string{"NAME", "SCOPE", "STATE", "EXPIRES", "ID"}, rows)
		},
	}
	a.teamFlag(tlist, &listTokTeam, false)
	tokens.AddCommand(tcreate, tlist)
	c.AddCommand(list, tokens, a.releasesCommand(), a.updateCommand(), a.rolloutsCommand())
	c.AddCommand(a.drainCommands()...)
	return c
}

func (a *App) auditCommand() *cobra.Command {
	var team string
	var limit int32
	c := &cobra.Command{
		Use:     "audit",
		Short:   "Read the audit log: a team's (team admins) or everything (global admins)",
		Example: "  orreryctl audit --team platform --limit 20",
		Args:    args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			if limit < 1 || limit > 500 {
				return usageError{errors.New("--limit must be between 1 and 500")}
			}
			s, err := a.session(c.Context())
			if err != nil {
				return err
			}
			_, teamID, err := s.optionalTeam(c.Context(), team)
			if err != nil {
				return err
			}
			resp, err := s.audit().ListAuditEvents(c.Context(), connect.NewRequest(&apiv1.ListAuditEventsRequest{TeamId: teamID, PageSize: limit}))
			if err != nil {
				return err
			}
			var rows [][]string
			for _, e := range resp.Msg.GetEvents() {
				rows = append(rows, []string{when(e.GetOccurredAt()), e.GetActor(), e.GetAction(), e.GetTarget()})
			}
			return a.show(resp.Msg, []string{"WHEN", "ACTOR", "ACTION", "TARGET"}, rows)
		},
	}
	a.teamFlag(c, &team, false)
	c.Flags().Int32Var(&limit, "limit", 50, "the most events to show, newest first")
	return c
}
