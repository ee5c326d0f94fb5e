package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

func addValueFlags(c *cobra.Command, vf *valueFlags) {
	c.Flags().StringArrayVar(&vf.set, "set", nil, "a value, NAME=VALUE or env.NAME=VALUE (headers., query_params., args.); repeatable")
	c.Flags().StringArrayVar(&vf.secrets, "secret", nil, "a secret value's NAME: read from a prompt, or one line from stdin per --secret; repeatable")
	c.Flags().StringVar(&vf.file, "values", "", "a JSON file (InstallationSpec) with the values, or - for stdin; flags add to it")
}

// readSpec reads --values, or starts from an empty spec.
func (a *App) readSpec(vf valueFlags) (*apiv1.InstallationSpec, error) {
	spec := &apiv1.InstallationSpec{}
	if vf.file == "" {
		return spec, nil
	}
	if vf.file == "-" && len(vf.secrets) > 0 {
		return nil, usageError{errors.New("--values - and --secret both read stdin: put the values in a file")}
	}
	raw, err := a.readInput(vf.file)
	if err != nil {
		return nil, err
	}
	if err := protojson.Unmarshal(raw, spec); err != nil {
		return nil, usageError{fmt.Errorf("%s is not an installation spec: %w", vf.file, err)}
	}
	return spec, nil
}

func installationRow(i *apiv1.Installation) []string {
	return []string{i.GetServerSlug(), i.GetSpec().GetName(), i.GetEffectiveToolPrefix(), when(i.GetUpdatedAt()), i.GetId(), stopText(i.GetStop())}
}

var installationHeaders = []string{"SERVER", "NAME", "TOOL PREFIX", "UPDATED", "ID", "STOP"}

func (a *App) installCommand() *cobra.Command {
	var team string
	var vf valueFlags
	var wait bool
	var timeout time.Duration
	var name string
	c := &cobra.Command{
		Use:   "install TEMPLATE --team TEAM",
		Short: "Install a catalog template for a team (team admins)",
		Long: `Install a catalog template for a team. Its values come from --values FILE, then --set and --secret;
required values still missing are asked for when you are at a terminal. Secret values are never taken from
the command line: --secret NAME reads them from a prompt, or from stdin one line each.

With --wait, orreryctl waits until your own instance of the server is online.`,
		Example: `  orreryctl install everything --team platform --wait
  orreryctl install github --team platform --set GITHUB_ORG=acme --secret GITHUB_TOKEN
  printf '%s\n' "$TOKEN" | orreryctl install github --team platform --secret GITHUB_TOKEN --no-input`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			ctx := c.Context()
			spec, err := a.readSpec(vf)
			if err != nil {
				return err
			}
			s, t, err := a.teamScope(ctx, team)
			if err != nil {
				return err
			}
			entry, err := s.catalogEntry(ctx, t.GetId(), argv[0])
			if err != nil {
				return err
			}
			values, err := a.collect(vf, schemaFields(entry.GetSpec().GetConfigSchema()), apiv1.ConfigScope_CONFIG_SCOPE_TEAM, settingsOf(spec))
			if err != nil {
				return err
			}
			values.applyTo(spec)
			if name != "" {
				spec.Name = name
			}
			if spec.GetName() == "" {
				spec.Name = entry.GetSpec().GetName()
			}
			resp, err := s.installations().CreateInstallation(ctx, connect.NewRequest(&apiv1.CreateInstallationRequest{
				TeamId: t.GetId(), CatalogEntryId: entry.GetId(), Spec: spec,
			}))
			if err != nil {
				return err
			}
			inst := resp.Msg.GetInstallation()
			if wait {
				if err := a.waitOnline(ctx, s, t, inst, timeout); err != nil {
					return err
				}
			}
			return a.show(resp.Msg, installationHeaders, [][]string{installationRow(inst)})
		},
	}
	a.teamFlag(c, &team, true)
	addValueFlags(c, &vf)
	c.Flags().StringVar(&name, "name", "", "the installation's display name; default the template's name")
	c.Flags().BoolVar(&wait, "wait", false, "wait until your instance of the server is online")
	c.Flags().DurationVar(&timeout, "timeout", 3*time.Minute, "how long --wait waits")
	return c
}

// waitOnline waits until the caller's instance of inst is online, showing its status meanwhile.
func (a *App) waitOnline(ctx context.Context, s *session, t *apiv1.Team, inst *apiv1.Installation, timeout time.Duration) error {
	me, err := s.accounts().GetCurrentUser(ctx, connect.NewRequest(&apiv1.GetCurrentUserRequest{}))
	if err != nil {
		return err
	}
	sp := a.newSpinner("waiting for a satellite to start " + inst.GetServerSlug())
	defer sp.stop()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		resp, err := s.instances().ListInstances(ctx, connect.NewRequest(&apiv1.ListInstancesRequest{TeamId: t.GetId(), InstallationId: inst.GetId()}))
		if err != nil {
			return err
		}
		for _, in := range resp.Msg.GetInstances() {
			if in.GetUserId() != me.Msg.GetUser().GetId() {
				continue
			}
			status := enumName(in.GetStatus().String(), "INSTANCE_STATUS_")
			switch in.GetStatus() {
			case satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE:
				sp.stop()
				fmt.Fprintf(a.Err, "%s is online in %s (instance %s).\n", inst.GetServerSlug(), t.GetSlug(), in.GetId())
				return nil
			case satellitev1.InstanceStatus_INSTANCE_STATUS_PERMANENTLY_FAILED:
				return fmt.Errorf("%s failed permanently: %s; see 'orreryctl logs %s --team %s', then 'orreryctl instances restart %s --team %s'",
					inst.GetServerSlug(), in.GetStatusMessage(), inst.GetServerSlug(), t.GetSlug(), in.GetId(), t.GetSlug())
			}
			msg := status
			if m := in.GetStatusMessage(); m != "" {
				msg += ": " + m
			}
			sp.set(inst.GetServerSlug() + " is " + msg)
		}
		if time.Now().After(deadline) {
			return codedError{ExitTimeout, fmt.Errorf("%s was not online after %v; 'orreryctl instances list --team %s' shows its status",
				inst.GetServerSlug(), timeout, t.GetSlug())}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// installation finds a team's installation by server slug or id.
func (s *session) installation(ctx context.Context, teamID, ref string) (*apiv1.Installation, error) {
	req := &apiv1.ListInstallationsRequest{TeamId: teamID, PageSize: 500}
	for {
		resp, err := s.installations().ListInstallations(ctx, connect.NewRequest(req))
		if err != nil {
			return nil, err
		}
		for _, i := range resp.Msg.GetInstallations() {
			if i.GetId() == ref || i.GetServerSlug() == ref {
				return i, nil
			}
		}
		if resp.Msg.GetNextPageToken() == "" {
			return nil, notFound(fmt.Errorf("no installation %q in this team; 'orreryctl installations list --team TEAM' shows them", ref))
		}
		req.PageToken = resp.Msg.GetNextPageToken()
	}
}

func (a *App) installationsCommand() *cobra.Command {
	c := &cobra.Command{Use: "installations", Aliases: []string{"installation", "inst"}, Short: "List, show and update a team's installations"}
	var team string
	list := &cobra.Command{
		Use:   "list --team TEAM",
		Short: "List a team's installations",
		Args:  args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			s, t, err := a.teamScope(c.Context(), team)
			if err != nil {
				return err
			}
			all := &apiv1.ListInstallationsResponse{}
			req := &apiv1.ListInstallationsRequest{TeamId: t.GetId(), PageSize: 500}
			for {
				resp, err := s.installations().ListInstallations(c.Context(), connect.NewRequest(req))
				if err != nil {
					return err
				}
				all.Installations = append(all.Installations, resp.Msg.GetInstallations()...)
				if req.PageToken = resp.Msg.GetNextPageToken(); req.PageToken == "" {
					break
				}
			}
			var rows [][]string
			for _, i := range all.GetInstallations() {
				rows = append(rows, installationRow(i))
			}
			return a.show(all, installationHeaders, rows)
		},
	}
	a.teamFlag(list, &team, true)

	var showTeam string
	show := &cobra.Command{
		Use:   "show INSTALLATION --team TEAM",
		Short: "Show an installation's values (secrets only as set or not)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			_, _, i, err := a.installationScope(c.Context(), showTeam, argv[0])
			if err != nil {
				return err
			}
			if a.output != "table" {
				return writeStructured(a.Out, a.output, i)
			}
			return writeTable(a.Out, []string{"VALUE", "SETTING"}, settingRows(settingsOf(i.GetSpec())))
		},
	}
	a.teamFlag(show, &showTeam, true)

	var updTeam string
	var vf valueFlags
	update := &cobra.Command{
		Use:   "update INSTALLATION --team TEAM",
		Short: "Change an installation's values; the others stay as they are",
		Example: `  orreryctl installations update github --team platform --set GITHUB_ORG=acme-labs
  orreryctl installations update github --team platform --secret GITHUB_TOKEN`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			ctx := c.Context()
			s, t, i, err := a.installationScope(ctx, updTeam, argv[0])
			if err != nil {
				return err
			}
			entry, err := s.catalogEntry(ctx, t.GetId(), i.GetCatalogEntryId())
			if err != nil {
				return err
			}
			spec := i.GetSpec()
			if vf.file != "" {
				if spec, err = a.readSpec(vf); err != nil {
					return err
				}
			}
			// A stored secret comes back empty, and sending it empty keeps it.
			values, err := a.collect(vf, schemaFields(entry.GetSpec().GetConfigSchema()), apiv1.ConfigScope_CONFIG_SCOPE_TEAM, settingsOf(spec))
			if err != nil {
				return err
			}
			values.applyTo(spec)
			resp, err := s.installations().UpdateInstallation(ctx, connect.NewRequest(&apiv1.UpdateInstallationRequest{TeamId: t.GetId(), Id: i.GetId(), Spec: spec}))
			if err != nil {
				return err
			}
			return a.show(resp.Msg, installationHeaders, [][]string{installationRow(resp.Msg.GetInstallation())})
		},
	}
	a.teamFlag(update, &updTeam, true)
	addValueFlags(update, &vf)

	c.AddCommand(list, show, update)
	return c
}

func settingRows(s settings) [][]string {
	var rows [][]string
	for _, kind := range kinds {
		for name, v := range s[kind] {
			shown := v.GetValue()
			if v.GetSecret() {
				shown = "(secret, not set)"
				if v.GetSet() {
					shown = "(secret, set)"
				}
			}
			rows = append(rows, []string{kind + "." + name, shown})
		}
	}
	return rows
}

func (a *App) uninstallCommand() *cobra.Command {
	var team string
	var yes bool
	c := &cobra.Command{
		Use:     "uninstall INSTALLATION --team TEAM",
		Short:   "Remove an installation from a team; its instances stop",
		Example: "  orreryctl uninstall github --team platform --yes",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			s, t, i, err := a.installationScope(c.Context(), team, argv[0])
			if err != nil {
				return err
			}
			if !yes {
				if !a.Interactive || a.noInput {
					return usageError{errors.New("uninstalling stops every member's instance: confirm with --yes")}
				}
				answer, err := a.prompt(fmt.Sprintf("Uninstall %s from %s for every member? Type the server's name to confirm", i.GetServerSlug(), t.GetSlug()), false)
				if err != nil {
					return err
				}
				if answer != i.GetServerSlug() {
					return errors.New("not confirmed; nothing was uninstalled")
				}
			}
			if _, err := s.installations().DeleteInstallation(c.Context(), connect.NewRequest(&apiv1.DeleteInstallationRequest{TeamId: t.GetId(), Id: i.GetId()})); err != nil {
				return err
			}
			fmt.Fprintf(a.Err, "Uninstalled %s from %s.\n", i.GetServerSlug(), t.GetSlug())
			return nil
		},
	}
	a.teamFlag(c, &team, true)
	c.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return c
}

// configCommand is the caller's own configuration of an installation: the values each user sets.
func (a *App) configCommand() *cobra.Command {
	c := &cobra.Command{Use: "config", Short: "Show or set your own values for an installation"}
	var team string
	show := &cobra.Command{
		Use:   "show INSTALLATION --team TEAM",
		Short: "Show your values for an installation",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			s, t, i, err := a.installationScope(c.Context(), team, argv[0])
			if err != nil {
				return err
			}
			resp, err := s.installations().GetUserConfiguration(c.Context(), connect.NewRequest(&apiv1.GetUserConfigurationRequest{TeamId: t.GetId(), InstallationId: i.GetId()}))
			if err != nil {
				return err
			}
			cfg := resp.Msg.GetConfiguration()
			spec := &apiv1.InstallationSpec{Env: cfg.GetEnv(), Headers: cfg.GetHeaders(), QueryParams: cfg.GetQueryParams(), ArgValues: cfg.GetArgValues()}
			return a.show(resp.Msg, []string{"VALUE", "SETTING"}, settingRows(settingsOf(spec)))
		},
	}
	a.teamFlag(show, &team, true)

	var setTeam string
	var vf valueFlags
	set := &cobra.Command{
		Use:     "set INSTALLATION --team TEAM",
		Short:   "Set your values for an installation",
		Example: "  orreryctl config set github --team platform --secret GITHUB_TOKEN",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			ctx := c.Context()
			s, t, i, err := a.installationScope(ctx, setTeam, argv[0])
			if err != nil {
				return err
			}
			entry, err := s.catalogEntry(ctx, t.GetId(), i.GetCatalogEntryId())
			if err != nil {
				return err
			}
			cur, err := s.installations().GetUserConfiguration(ctx, connect.NewRequest(&apiv1.GetUserConfigurationRequest{TeamId: t.GetId(), InstallationId: i.GetId()}))
			if err != nil {
				return err
			}
			cfg := cur.Msg.GetConfiguration()
			spec := &apiv1.InstallationSpec{Env: cfg.GetEnv(), Headers: cfg.GetHeaders(), QueryParams: cfg.GetQueryParams(), ArgValues: cfg.GetArgValues()}
			values, err := a.collect(vf, schemaFields(entry.GetSpec().GetConfigSchema()), apiv1.ConfigScope_CONFIG_SCOPE_USER, settingsOf(spec))
			if err != nil {
				return err
			}
			values.applyTo(spec)
			resp, err := s.installations().SetUserConfiguration(ctx, connect.NewRequest(&apiv1.SetUserConfigurationRequest{
				TeamId: t.GetId(), InstallationId: i.GetId(), Env: spec.GetEnv(), Headers: spec.GetHeaders(),
				QueryParams: spec.GetQueryParams(), ArgValues: spec.GetArgValues(),
			}))
			if err != nil {
				return err
			}
			fmt.Fprintf(a.Err, "Saved your values for %s in %s.\n", i.GetServerSlug(), t.GetSlug())
			if a.output != "table" {
				return writeStructured(a.Out, a.output, resp.Msg)
			}
			return nil
		},
	}
	a.teamFlag(set, &setTeam, true)
	addValueFlags(set, &vf)
	set.Flags().Lookup("values").Usage = "not used for your own values"
	_ = set.Flags().MarkHidden("values")
	c.AddCommand(show, set)
	return c
}
