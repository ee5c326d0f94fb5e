package cli

import (
	"fmt"
	"strconv"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
)

// toolsCommand shows an installation's tools and chooses which of them the team endpoint offers.
func (a *App) toolsCommand() *cobra.Command {
	c := &cobra.Command{Use: "tools", Short: "List an installation's tools and choose which the team endpoint offers"}

	var listTeam string
	list := &cobra.Command{
		Use:   "list INSTALLATION --team TEAM",
		Short: "List an installation's tools with their names at the endpoint and token counts",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			s, t, i, err := a.installationScope(c.Context(), listTeam, argv[0])
			if err != nil {
				return err
			}
			resp, err := s.tools().ListTools(c.Context(), connect.NewRequest(&apiv1.ListToolsRequest{TeamId: t.GetId(), InstallationId: i.GetId()}))
			if err != nil {
				return err
			}
			var rows [][]string
			for _, tool := range resp.Msg.GetTools() {
				rows = append(rows, []string{tool.GetExposedName(), offered(tool), strconv.Itoa(int(tool.GetTokenCount())), firstLine(tool.GetDescription(), 60)})
			}
			if err := a.show(resp.Msg, []string{"TOOL", "OFFERED", "TOKENS", "DESCRIPTION"}, rows); err != nil {
				return err
			}
			if a.output == "table" {
				fmt.Fprintf(a.Err, "%d tokens offered to you in tools/list (cl100k_base).\n", resp.Msg.GetTotalTokens())
			}
			return nil
		},
	}
	a.teamFlag(list, &listTeam, true)

	var selTeam string
	var allow, deny, describe []string
	sel := &cobra.Command{
		Use:   "select INSTALLATION --team TEAM [--allow PATTERN]... [--deny PATTERN]... [--describe TOOL=TEXT]...",
		Short: "Replace the team's choice of an installation's tools (team admins); no flags offer every tool",
		Example: `  orreryctl tools select github --team platform --deny 'delete_*' --describe create_issue='Open an issue in acme/app'
  orreryctl tools select github --team platform --allow 'get_*' --allow search_code`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			s, t, i, err := a.installationScope(c.Context(), selTeam, argv[0])
			if err != nil {
				return err
			}
			descriptions := map[string]string{}
			for _, d := range describe {
				name, text, ok := strings.Cut(d, "=")
				if !ok || name == "" || text == "" {
					return usageError{fmt.Errorf("--describe %q: want TOOL=TEXT", d)}
				}
				descriptions[name] = text
			}
			resp, err := s.tools().SetToolSelection(c.Context(), connect.NewRequest(&apiv1.SetToolSelectionRequest{
				TeamId: t.GetId(), InstallationId: i.GetId(),
				Selection: &apiv1.ToolSelection{Allow: allow, Deny: deny, Descriptions: descriptions},
			}))
			if err != nil {
				return err
			}
			got := resp.Msg.GetSelection()
			return a.show(resp.Msg, []string{"ALLOW", "DENY", "DESCRIPTIONS"}, [][]string{{
				strings.Join(got.GetAllow(), " "), strings.Join(got.GetDeny(), " "), strconv.Itoa(len(got.GetDescriptions())),
			}})
		},
	}
	a.teamFlag(sel, &selTeam, true)
	sel.Flags().StringArrayVar(&allow, "allow", nil, "offer only tools matching PATTERN (path.Match syntax: *, ?, [a-z]); repeatable")
	sel.Flags().StringArrayVar(&deny, "deny", nil, "leave out tools matching PATTERN; repeatable")
	sel.Flags().StringArrayVar(&describe, "describe", nil, "replace a tool's description, TOOL=TEXT; repeatable")

	var hideTeam string
	hide := &cobra.Command{
		Use:     "hide INSTALLATION --team TEAM [PATTERN]...",
		Short:   "Replace the tools you hide from your own endpoint; no patterns show every tool again",
		Example: "  orreryctl tools hide github --team platform 'list_*' get_me",
		Args:    args(cobra.MinimumNArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			s, t, i, err := a.installationScope(c.Context(), hideTeam, argv[0])
			if err != nil {
				return err
			}
			resp, err := s.tools().SetHiddenTools(c.Context(), connect.NewRequest(&apiv1.SetHiddenToolsRequest{
				TeamId: t.GetId(), InstallationId: i.GetId(), Hidden: argv[1:],
			}))
			if err != nil {
				return err
			}
			return a.show(resp.Msg, []string{"HIDDEN"}, [][]string{{strings.Join(resp.Msg.GetHidden(), " ")}})
		},
	}
	a.teamFlag(hide, &hideTeam, true)

	c.AddCommand(list, sel, hide)
	return c
}

// offered says whether the caller is offered a tool, or why not.
func offered(t *apiv1.Tool) string {
	switch {
	case !t.GetSelected():
		return "no (team)"
	case t.GetHidden():
		return "no (hidden)"
	}
	return "yes"
}

// firstLine returns the first line of s, cut to n runes.
func firstLine(s string, n int) string {
	s, _, _ = strings.Cut(s, "\n")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
