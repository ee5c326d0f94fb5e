package cli

import (
	"fmt"
	"strconv"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
)

func (s *session) history() apiv1connect.ConfigHistoryServiceClient {
	return apiv1connect.NewConfigHistoryServiceClient(s.http, s.url, s.opts...)
}
func (s *session) stops() apiv1connect.EmergencyStopServiceClient {
	return apiv1connect.NewEmergencyStopServiceClient(s.http, s.url, s.opts...)
}

// stopText says why something is out of service, or "" when it is not.
func stopText(s *apiv1.EmergencyStop) string {
	if s == nil {
		return ""
	}
	what := "installation"
	if s.GetScope() == apiv1.EmergencyStopScope_EMERGENCY_STOP_SCOPE_TEMPLATE {
		what = "template"
	}
	return fmt.Sprintf("%s stopped %s: %s", what, when(s.GetStoppedAt()), s.GetReason())
}

func changeRows(changes []*apiv1.ConfigChange) [][]string {
	var rows [][]string
	for _, c := range changes {
		if c.GetSecret() {
			rows = append(rows, []string{c.GetField(), "(secret)", "(secret, changed)"})
			continue
		}
		rows = append(rows, []string{c.GetField(), c.GetOldValue(), c.GetNewValue()})
	}
	return rows
}

// historyCommand lists, compares and rolls back versions of an installation's configuration.
func (a *App) historyCommand() *cobra.Command {
	c := &cobra.Command{Use: "history", Short: "Versions of an installation's configuration: list, compare, roll back"}
	var team string
	var limit uint32
	list := &cobra.Command{
		Use:     "list INSTALLATION --team TEAM",
		Short:   "List an installation's versions, newest first, with what each changed (secrets only as changed)",
		Example: "  orreryctl history list github --team platform",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			s, t, i, err := a.installationScope(c.Context(), team, argv[0])
			if err != nil {
				return err
			}
			resp, err := s.history().ListConfigVersions(c.Context(), connect.NewRequest(&apiv1.ListConfigVersionsRequest{
				TeamId: t.GetId(), PageSize: limit,
				Subject: &apiv1.ConfigSubject{Kind: apiv1.ConfigKind_CONFIG_KIND_INSTALLATION, Id: i.GetId()},
			}))
			if err != nil {
				return err
			}
			var rows [][]string
			for _, v := range resp.Msg.GetVersions() {
				action := v.GetAction()
				if v.GetRolledBackTo() > 0 {
					action += " to " + strconv.Itoa(int(v.GetRolledBackTo()))
				}
				fields := ""
				for n, ch := range v.GetChanges() {
					if n > 0 {
						fields += ", "
					}
					fields += ch.GetField()
				}
				rows = append(rows, []string{strconv.Itoa(int(v.GetVersion())), when(v.GetCreatedAt()), v.GetActor(), action, fields})
			}
			return a.show(resp.Msg, []string{"VERSION", "WHEN", "BY", "ACTION", "CHANGED"}, rows)
		},
	}
	a.teamFlag(list, &team, true)
	list.Flags().Uint32Var(&limit, "limit", 50, "the most versions to show (at most 500)")

	var diffTeam string
	diff := &cobra.Command{
		Use:     "diff INSTALLATION FROM TO --team TEAM",
		Short:   "Show what changed between two versions of an installation",
		Example: "  orreryctl history diff github 3 5 --team platform",
		Args:    args(cobra.ExactArgs(3)),
		RunE: func(c *cobra.Command, argv []string) error {
			from, err1 := strconv.ParseUint(argv[1], 10, 32)
			to, err2 := strconv.ParseUint(argv[2], 10, 32)
			if err1 != nil || err2 != nil {
				return usageError{fmt.Errorf("versions are numbers: %q, %q", argv[1], argv[2])}
			}
			s, t, i, err := a.installationScope(c.Context(), diffTeam, argv[0])
			if err != nil {
				return err
			}
			resp, err := s.history().CompareConfigVersions(c.Context(), connect.NewRequest(&apiv1.CompareConfigVersionsRequest{
				TeamId: t.GetId(), FromVersion: uint32(from), ToVersion: uint32(to),
				Subject: &apiv1.ConfigSubject{Kind: apiv1.ConfigKind_CONFIG_KIND_INSTALLATION, Id: i.GetId()},
			}))
			if err != nil {
				return err
			}
			return a.show(resp.Msg, []string{"FIELD", "FROM", "TO"}, changeRows(resp.Msg.GetChanges()))
		},
	}
	a.teamFlag(diff, &diffTeam, true)

	var rbTeam string
	rollback := &cobra.Command{
		Use:     "rollback INSTALLATION VERSION --team TEAM",
		Short:   "Make an installation what it was at a version, secrets included (team admins)",
		Example: "  orreryctl history rollback github 3 --team platform",
		Args:    args(cobra.ExactArgs(2)),
		RunE: func(c *cobra.Command, argv []string) error {
			version, err := strconv.ParseUint(argv[1], 10, 32)
			if err != nil {
				return usageError{fmt.Errorf("the version is a number: %q", argv[1])}
			}
			s, t, i, err := a.installationScope(c.Context(), rbTeam, argv[0])
			if err != nil {
				return err
			}
			resp, err := s.history().RollbackInstallation(c.Context(), connect.NewRequest(&apiv1.RollbackInstallationRequest{
				TeamId: t.GetId(), InstallationId: i.GetId(), Version: uint32(version),
			}))
			if err != nil {
				return err
			}
			fmt.Fprintf(a.Err, "Rolled %s back to version %d as version %d.\n", i.GetServerSlug(), version, resp.Msg.GetVersion())
			return a.show(resp.Msg, installationHeaders, [][]string{installationRow(resp.Msg.GetInstallation())})
		},
	}
	a.teamFlag(rollback, &rbTeam, true)
	c.AddCommand(list, diff, rollback)
	return c
}

// stopCommand makes and lifts emergency stops.
func (a *App) stopCommand() *cobra.Command {
	var team, reason string
	var template, resume bool
	c := &cobra.Command{
		Use:   "stop INSTALLATION --team TEAM --reason WHY | stop TEMPLATE --template --reason WHY",
		Short: "Emergency stop: take an installation (team admins) or a template everywhere (global admins) out of service",
		Example: `  orreryctl stop github --team platform --reason "leaks tokens, INC-42"
  orreryctl stop github --template --reason "CVE-2026-0001"
  orreryctl stop github --team platform --resume`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			ctx := c.Context()
			if !template && team == "" {
				return usageError{fmt.Errorf("name the installation's team with --team, or stop a template with --template")}
			}
			if !resume && reason == "" {
				return usageError{fmt.Errorf("say why with --reason; callers of the tools are shown it")}
			}
			if template {
				s, err := a.session(ctx)
				if err != nil {
					return err
				}
				e, err := s.catalogEntry(ctx, "", argv[0])
				if err != nil {
					return err
				}
				var entry *apiv1.CatalogEntry
				if resume {
					resp, err := s.stops().ResumeTemplate(ctx, connect.NewRequest(&apiv1.ResumeTemplateRequest{Id: e.GetId()}))
					if err != nil {
						return err
					}
					entry = resp.Msg.GetEntry()
				} else {
					resp, err := s.stops().StopTemplate(ctx, connect.NewRequest(&apiv1.StopTemplateRequest{Id: e.GetId(), Reason: reason}))
					if err != nil {
						return err
					}
					entry = resp.Msg.GetEntry()
				}
				return a.show(entry, []string{"TEMPLATE", "STOP"}, [][]string{{entry.GetSlug(), stopText(entry.GetStop())}})
			}
			s, t, i, err := a.installationScope(ctx, team, argv[0])
			if err != nil {
				return err
			}
			var out *apiv1.Installation
			if resume {
				resp, err := s.stops().ResumeInstallation(ctx, connect.NewRequest(&apiv1.ResumeInstallationRequest{TeamId: t.GetId(), InstallationId: i.GetId()}))
				if err != nil {
					return err
				}
				out = resp.Msg.GetInstallation()
			} else {
				resp, err := s.stops().StopInstallation(ctx, connect.NewRequest(&apiv1.StopInstallationRequest{
					TeamId: t.GetId(), InstallationId: i.GetId(), Reason: reason,
				}))
				if err != nil {
					return err
				}
				out = resp.Msg.GetInstallation()
			}
			return a.show(out, []string{"SERVER", "NAME", "STOP"}, [][]string{{out.GetServerSlug(), out.GetSpec().GetName(), stopText(out.GetStop())}})
		},
	}
	a.teamFlag(c, &team, false)
	c.Flags().StringVar(&reason, "reason", "", "why; shown to everyone whose calls are refused (at most 500 characters)")
	c.Flags().BoolVar(&template, "template", false, "stop the template in every team (global admins)")
	c.Flags().BoolVar(&resume, "resume", false, "lift the stop instead")
	return c
}
