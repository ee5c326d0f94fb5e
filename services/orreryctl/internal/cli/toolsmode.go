package cli

import (
	"fmt"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
)

// Tool modes as orreryctl spells them; modeFollowTeam is a member's way back to the team's mode.
const (
	modeAll        = "all"
	modeSearch     = "search"
	modeFollowTeam = "team"
)

var toolsModes = map[string]apiv1.ToolsMode{
	modeAll:        apiv1.ToolsMode_TOOLS_MODE_ALL,
	modeSearch:     apiv1.ToolsMode_TOOLS_MODE_SEARCH,
	modeFollowTeam: apiv1.ToolsMode_TOOLS_MODE_UNSPECIFIED,
}

// toolsModeName spells a tool mode as orreryctl takes it; unspecified is "team" (follows the team's) for
// a member's own mode and "-" where there is none.
func toolsModeName(m apiv1.ToolsMode, unspecified string) string {
	if m == apiv1.ToolsMode_TOOLS_MODE_UNSPECIFIED {
		return unspecified
	}
	return enumName(m.String(), "TOOLS_MODE_")
}

func (a *App) toolsModeCommand() *cobra.Command {
	var mine bool
	c := &cobra.Command{
		Use:   "tools-mode TEAM [all|search]",
		Short: "Show or set how the team's MCP endpoint offers tools: all of them, or search_tools and call_tool",
		Long: `Without a mode, shows the team's tool mode, your own and the one in effect for you.

With a mode, sets the team's (team admins), or with --me your own, which wins over the team's until you
set it back to "team". A client can also choose per connection by adding ?tools=search or ?tools=all to
the endpoint URL.`,
		Example: "  orreryctl teams tools-mode platform\n  orreryctl teams tools-mode platform search\n  orreryctl teams tools-mode platform all --me\n  orreryctl teams tools-mode platform team --me",
		Args:    args(cobra.RangeArgs(1, 2)),
		ValidArgsFunction: func(c *cobra.Command, argv []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(argv) == 0 {
				return a.completeTeams(c.Context()), cobra.ShellCompDirectiveNoFileComp
			}
			return []string{modeAll, modeSearch, modeFollowTeam}, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, argv []string) error {
			var mode apiv1.ToolsMode
			if len(argv) == 2 {
				m, ok := toolsModes[argv[1]]
				if !ok || (m == apiv1.ToolsMode_TOOLS_MODE_UNSPECIFIED && !mine) {
					valid := "all or search"
					if mine {
						valid = "all, search or team (follow the team's)"
					}
					return usageError{fmt.Errorf("mode %q: use %s", argv[1], valid)}
				}
				mode = m
			} else if mine {
				return usageError{fmt.Errorf("--me sets your own mode: name it (all, search or team)")}
			}
			s, t, err := a.teamScope(c.Context(), argv[0])
			if err != nil {
				return err
			}
			switch {
			case len(argv) == 2 && mine:
				if _, err := s.teams().SetMyToolsMode(c.Context(), connect.NewRequest(&apiv1.SetMyToolsModeRequest{TeamId: t.GetId(), ToolsMode: mode})); err != nil {
					return err
				}
			case len(argv) == 2:
				if _, err := s.teams().SetTeamToolsMode(c.Context(), connect.NewRequest(&apiv1.SetTeamToolsModeRequest{TeamId: t.GetId(), ToolsMode: mode})); err != nil {
					return err
				}
			}
			// Read back what is in effect now, whichever was set.
			resp, err := s.teams().GetTeam(c.Context(), connect.NewRequest(&apiv1.GetTeamRequest{TeamId: t.GetId()}))
			if err != nil {
				return err
			}
			m := resp.Msg
			return a.show(m, []string{"TEAM", "TEAM MODE", "YOUR MODE", "IN EFFECT"}, [][]string{{
				m.GetTeam().GetSlug(), toolsModeName(m.GetTeam().GetToolsMode(), "-"),
				toolsModeName(m.GetMyToolsMode(), modeFollowTeam), toolsModeName(m.GetMyEffectiveToolsMode(), "-"),
			}})
		},
	}
	c.Flags().BoolVar(&mine, "me", false, "set your own mode rather than the team's")
	return c
}
