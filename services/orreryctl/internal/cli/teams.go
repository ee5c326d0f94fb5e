package cli

import (
	"fmt"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
)

// teamFlag adds --team with completion of the caller's teams.
func (a *App) teamFlag(c *cobra.Command, team *string, required bool) {
	usage := "the team, by slug or id"
	if !required {
		usage += "; without it, what is shared with everyone"
	}
	c.Flags().StringVarP(team, "team", "t", "", usage)
	if required {
		_ = c.MarkFlagRequired("team")
	}
	_ = c.RegisterFlagCompletionFunc("team", func(c *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
		return a.completeTeams(c.Context()), cobra.ShellCompDirectiveNoFileComp
	})
}

func (a *App) teamsCommand() *cobra.Command {
	c := &cobra.Command{Use: "teams", Aliases: []string{"team"}, Short: "List teams, their members and endpoints; invite people"}
	c.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List your teams (every team, for global admins)",
		Args:  args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			s, err := a.session(c.Context())
			if err != nil {
				return err
			}
			resp, err := s.teams().ListTeams(c.Context(), connect.NewRequest(&apiv1.ListTeamsRequest{}))
			if err != nil {
				return err
			}
			var rows [][]string
			for _, t := range resp.Msg.GetTeams() {
				personal := ""
				if t.GetPersonal() {
					personal = "personal"
				}
				rows = append(rows, []string{t.GetSlug(), t.GetName(), personal, t.GetId()})
			}
			return a.show(resp.Msg, []string{"SLUG", "NAME", "KIND", "ID"}, rows)
		},
	})

	c.AddCommand(&cobra.Command{
		Use:     "show TEAM",
		Short:   "Show a team and its MCP endpoints",
		Example: "  orreryctl teams show platform",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			s, t, err := a.teamScope(c.Context(), argv[0])
			if err != nil {
				return err
			}
			resp, err := s.teams().GetTeamEndpoint(c.Context(), connect.NewRequest(&apiv1.GetTeamEndpointRequest{TeamId: t.GetId()}))
			if err != nil {
				return err
			}
			// Scripts read the endpoint from `connect json`; structured output is the team.
			return a.show(t, []string{"SLUG", "NAME", "ENDPOINT"},
				[][]string{{t.GetSlug(), t.GetName(), resp.Msg.GetUrl()}})
		},
	})

	var name string
	create := &cobra.Command{
		Use:     "create SLUG",
		Short:   "Create a team you own",
		Example: "  orreryctl teams create platform --name 'Platform team'",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			s, err := a.session(c.Context())
			if err != nil {
				return err
			}
			if name == "" {
				name = argv[0]
			}
			resp, err := s.teams().CreateTeam(c.Context(), connect.NewRequest(&apiv1.CreateTeamRequest{Slug: argv[0], Name: name}))
			if err != nil {
				return err
			}
			t := resp.Msg.GetTeam()
			return a.show(resp.Msg, []string{"SLUG", "NAME", "ID"}, [][]string{{t.GetSlug(), t.GetName(), t.GetId()}})
		},
	}
	create.Flags().StringVar(&name, "name", "", "the team's display name; default the slug")
	c.AddCommand(create)

	c.AddCommand(&cobra.Command{
		Use:   "members TEAM",
		Short: "List a team's members",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			s, t, err := a.teamScope(c.Context(), argv[0])
			if err != nil {
				return err
			}
			resp, err := s.teams().ListMembers(c.Context(), connect.NewRequest(&apiv1.ListMembersRequest{TeamId: t.GetId()}))
			if err != nil {
				return err
			}
			var rows [][]string
			for _, m := range resp.Msg.GetMembers() {
				owner := ""
				if m.GetOwner() {
					owner = "owner"
				}
				rows = append(rows, []string{m.GetUser().GetEmail(), m.GetUser().GetName(), enumName(m.GetRole().String(), "TEAM_ROLE_"), owner, when(m.GetJoinedAt())})
			}
			return a.show(resp.Msg, []string{"EMAIL", "NAME", "ROLE", "OWNER", "JOINED"}, rows)
		},
	})

	var role string
	invite := &cobra.Command{
		Use:     "invite TEAM EMAIL",
		Short:   "Invite someone to a team (team admins)",
		Example: "  orreryctl teams invite platform ada@example.com --role admin",
		Args:    args(cobra.ExactArgs(2)),
		RunE: func(c *cobra.Command, argv []string) error {
			r, ok := map[string]apiv1.TeamRole{"user": apiv1.TeamRole_TEAM_ROLE_USER, "admin": apiv1.TeamRole_TEAM_ROLE_ADMIN}[role]
			if !ok {
				return usageError{fmt.Errorf("--role %q: use user or admin", role)}
			}
			s, t, err := a.teamScope(c.Context(), argv[0])
			if err != nil {
				return err
			}
			resp, err := s.teams().InviteMember(c.Context(), connect.NewRequest(&apiv1.InviteMemberRequest{TeamId: t.GetId(), Email: argv[1], Role: r}))
			if err != nil {
				return err
			}
			inv := resp.Msg.GetInvitation()
			return a.show(resp.Msg, []string{"TEAM", "EMAIL", "EXPIRES"}, [][]string{{t.GetSlug(), inv.GetEmail(), when(inv.GetExpiresAt())}})
		},
	}
	invite.Flags().StringVar(&role, "role", "user", "the role the invitee gets: user or admin")
	_ = invite.RegisterFlagCompletionFunc("role", cobra.FixedCompletions([]string{"user", "admin"}, cobra.ShellCompDirectiveNoFileComp))
	c.AddCommand(invite)
	c.AddCommand(a.toolsModeCommand())
	return c
}
