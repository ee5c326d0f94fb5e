package cli

import (
	"fmt"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
)

func (s *session) remoteAccounts() apiv1connect.RemoteAccountServiceClient {
	return apiv1connect.NewRemoteAccountServiceClient(s.http, s.url, s.opts...)
}

// accountCommand connects the caller's own account at remote MCP servers that authorize each person.
func (a *App) accountCommand() *cobra.Command {
	c := &cobra.Command{Use: "account", Short: "Connect your own account at a remote MCP server that authorizes each person"}

	var connectTeam string
	connectCmd := &cobra.Command{
		Use:     "connect INSTALLATION --team TEAM",
		Short:   "Print the link that connects your account at an installation's remote server",
		Long:    "Open the link in a browser signed in to Orrery as you; after you authorize, your MCP clients use your account there.",
		Example: "  orreryctl account connect linear --team platform",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			s, t, i, err := a.installationScope(c.Context(), connectTeam, argv[0])
			if err != nil {
				return err
			}
			resp, err := s.remoteAccounts().ConnectRemoteAccount(c.Context(), connect.NewRequest(&apiv1.ConnectRemoteAccountRequest{
				TeamId: t.GetId(), InstallationId: i.GetId(),
			}))
			if err != nil {
				return err
			}
			if a.output != "table" {
				return writeStructured(a.Out, a.output, resp.Msg)
			}
			fmt.Fprintf(a.Err, "Open this link in a browser signed in to Orrery as you, before %s:\n",
				resp.Msg.GetExpiresAt().AsTime().Local().Format("15:04"))
			fmt.Fprintln(a.Out, resp.Msg.GetAuthorizationUrl())
			return nil
		},
	}
	a.teamFlag(connectCmd, &connectTeam, true)

	var statusTeam string
	status := &cobra.Command{
		Use:   "status INSTALLATION --team TEAM",
		Short: "Show whether your account at an installation's remote server is connected",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			s, t, i, err := a.installationScope(c.Context(), statusTeam, argv[0])
			if err != nil {
				return err
			}
			resp, err := s.remoteAccounts().GetRemoteAccount(c.Context(), connect.NewRequest(&apiv1.GetRemoteAccountRequest{
				TeamId: t.GetId(), InstallationId: i.GetId(),
			}))
			if err != nil {
				return err
			}
			state := "not connected"
			switch {
			case resp.Msg.GetConnected():
				state = "connected"
			case resp.Msg.GetNeedsReconnect():
				state = "connect again"
			}
			return a.show(resp.Msg, []string{"STATE", "AUTHORIZATION SERVER", "SCOPE"},
				[][]string{{state, resp.Msg.GetAuthorizationServer(), resp.Msg.GetScope()}})
		},
	}
	a.teamFlag(status, &statusTeam, true)

	var listTeam string
	list := &cobra.Command{
		Use:   "list INSTALLATION --team TEAM",
		Short: "List which members have connected their account at an installation's remote server (team admins)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			s, t, i, err := a.installationScope(c.Context(), listTeam, argv[0])
			if err != nil {
				return err
			}
			resp, err := s.remoteAccounts().ListRemoteAccounts(c.Context(), connect.NewRequest(&apiv1.ListRemoteAccountsRequest{
				TeamId: t.GetId(), InstallationId: i.GetId(),
			}))
			if err != nil {
				return err
			}
			rows := make([][]string, 0, len(resp.Msg.GetAccounts()))
			for _, acct := range resp.Msg.GetAccounts() {
				state := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(acct.GetState().String(), "REMOTE_ACCOUNT_STATE_"), "_", " "))
				rows = append(rows, []string{acct.GetEmail(), state})
			}
			return a.show(resp.Msg, []string{"MEMBER", "STATE"}, rows)
		},
	}
	a.teamFlag(list, &listTeam, true)

	var disconnectTeam string
	disconnect := &cobra.Command{
		Use:   "disconnect INSTALLATION --team TEAM",
		Short: "Forget your tokens for an installation's remote server and revoke them there",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			s, t, i, err := a.installationScope(c.Context(), disconnectTeam, argv[0])
			if err != nil {
				return err
			}
			if _, err := s.remoteAccounts().DisconnectRemoteAccount(c.Context(), connect.NewRequest(&apiv1.DisconnectRemoteAccountRequest{
				TeamId: t.GetId(), InstallationId: i.GetId(),
			})); err != nil {
				return err
			}
			fmt.Fprintf(a.Err, "Disconnected your account from %s in %s.\n", i.GetServerSlug(), t.GetSlug())
			return nil
		},
	}
	a.teamFlag(disconnect, &disconnectTeam, true)
	c.AddCommand(connectCmd, status, list, disconnect)
	return c
}
