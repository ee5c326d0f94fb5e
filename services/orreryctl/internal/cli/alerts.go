package cli

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
)

func (s *session) alerts() apiv1connect.AlertServiceClient {
	return apiv1connect.NewAlertServiceClient(s.http, s.url, s.opts...)
}

func (s *session) reviews() apiv1connect.AccessReviewServiceClient {
	return apiv1connect.NewAccessReviewServiceClient(s.http, s.url, s.opts...)
}

// alertKinds names the alert kinds as deliveries do.
var alertKinds = map[string]apiv1.AlertKind{
	"satellite.offline":           apiv1.AlertKind_ALERT_KIND_SATELLITE_OFFLINE,
	"satellite.online":            apiv1.AlertKind_ALERT_KIND_SATELLITE_ONLINE,
	"instance.permanently_failed": apiv1.AlertKind_ALERT_KIND_INSTANCE_PERMANENTLY_FAILED,
	"credential_check.failed":     apiv1.AlertKind_ALERT_KIND_CREDENTIAL_CHECK_FAILED,
	"policy.denials":              apiv1.AlertKind_ALERT_KIND_POLICY_DENIALS,
	"usage.threshold":             apiv1.AlertKind_ALERT_KIND_USAGE_THRESHOLD,
	"test":                        apiv1.AlertKind_ALERT_KIND_TEST,
}

func kindName(k apiv1.AlertKind) string {
	for name, v := range alertKinds {
		if v == k {
			return name
		}
	}
	return k.String()
}

func kindNames(ks []apiv1.AlertKind) string {
	names := make([]string, len(ks))
	for i, k := range ks {
		names[i] = kindName(k)
	}
	return strings.Join(names, " ")
}

func subscribableKinds() []string {
	var names []string
	for name := range alertKinds {
		if name != "test" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// optionalScope opens a session and resolves --team when given: the team's id, or "" for what is global.
func (a *App) optionalScope(ctx context.Context, teamRef string) (*session, string, error) {
	s, err := a.session(ctx)
	if err != nil {
		return nil, "", err
	}
	_, teamID, err := s.optionalTeam(ctx, teamRef)
	return s, teamID, err
}

func (a *App) webhooksCommand() *cobra.Command {
	c := &cobra.Command{
		Use:     "webhooks",
		Aliases: []string{"webhook"},
		Short:   "Webhooks that hear alerts: a team's (its admins) or, without --team, every team's (global admins)",
	}
	var team string
	list := &cobra.Command{
		Use:   "list [--team TEAM]",
		Short: "List webhooks",
		Args:  args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			s, teamID, err := a.optionalScope(c.Context(), team)
			if err != nil {
				return err
			}
			resp, err := s.alerts().ListWebhooks(c.Context(), connect.NewRequest(&apiv1.ListWebhooksRequest{TeamId: teamID}))
			if err != nil {
				return err
			}
			var rows [][]string
			for _, w := range resp.Msg.GetWebhooks() {
				rows = append(rows, []string{w.GetId(), w.GetName(), w.GetUrl(), kindNames(w.GetEventKinds()), when(w.GetCreatedAt())})
			}
			return a.show(resp.Msg, []string{"ID", "NAME", "URL", "ALERTS", "CREATED"}, rows)
		},
	}
	a.teamFlag(list, &team, false)

	var createTeam, url string
	var kinds []string
	var usage, denials uint64
	create := &cobra.Command{
		Use:   "create NAME --url URL --alert KIND... [--team TEAM]",
		Short: "Create a webhook; its signing secret is shown once",
		Long: "Create a webhook. Alerts: " + strings.Join(subscribableKinds(), ", ") + ".\n" +
			"Each delivery carries Orrery-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of '<t>.<body>' keyed with the secret>.",
		Example: "  orreryctl webhooks create pager --team platform --url https://hooks.example.com/orrery \\\n" +
			"    --alert satellite.offline --alert usage.threshold --usage-calls-per-hour 10000",
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			req := &apiv1.CreateWebhookRequest{Name: argv[0], Url: url, UsageCallsPerHour: usage, PolicyDenialsPerHour: denials}
			for _, k := range kinds {
				v, ok := alertKinds[k]
				if !ok || k == "test" {
					return usageError{fmt.Errorf("unknown alert %q: use %s", k, strings.Join(subscribableKinds(), ", "))}
				}
				req.EventKinds = append(req.EventKinds, v)
			}
			s, teamID, err := a.optionalScope(c.Context(), createTeam)
			if err != nil {
				return err
			}
			req.TeamId = teamID
			resp, err := s.alerts().CreateWebhook(c.Context(), connect.NewRequest(req))
			if err != nil {
				return err
			}
			fmt.Fprintln(a.Err, "Keep the secret now: it is not shown again.")
			w := resp.Msg.GetWebhook()
			return a.show(resp.Msg, []string{"ID", "SECRET", "ALERTS"}, [][]string{{w.GetId(), resp.Msg.GetSecret(), kindNames(w.GetEventKinds())}})
		},
	}
	a.teamFlag(create, &createTeam, false)
	create.Flags().StringVar(&url, "url", "", "where alerts are POSTed (http or https)")
	create.Flags().StringSliceVar(&kinds, "alert", nil, "an alert to hear; repeat for more")
	create.Flags().Uint64Var(&usage, "usage-calls-per-hour", 0, "usage.threshold: a team's calls in the trailing hour")
	create.Flags().Uint64Var(&denials, "policy-denials-per-hour", 0, "policy.denials: a team's denied calls in the trailing hour")
	_ = create.MarkFlagRequired("url")
	_ = create.MarkFlagRequired("alert")

	byID := func(use, short string, run func(c *cobra.Command, s *session, teamID, id string) error) *cobra.Command {
		var team string
		cmd := &cobra.Command{
			Use: use, Short: short, Args: args(cobra.ExactArgs(1)),
			RunE: func(c *cobra.Command, argv []string) error {
				s, teamID, err := a.optionalScope(c.Context(), team)
				if err != nil {
					return err
				}
				return run(c, s, teamID, argv[0])
			},
		}
		a.teamFlag(cmd, &team, false)
		return cmd
	}
	del := byID("delete ID [--team TEAM]", "Delete a webhook", func(c *cobra.Command, s *session, teamID, id string) error {
		if _, err := s.alerts().DeleteWebhook(c.Context(), connect.NewRequest(&apiv1.DeleteWebhookRequest{TeamId: teamID, Id: id})); err != nil {
			return err
		}
		fmt.Fprintf(a.Err, "Deleted webhook %s.\n", id)
		return nil
	})
	test := byID("test ID [--team TEAM]", "Send a signed test alert; follow it with 'webhooks deliveries'", func(c *cobra.Command, s *session, teamID, id string) error {
		resp, err := s.alerts().SendTestEvent(c.Context(), connect.NewRequest(&apiv1.SendTestEventRequest{TeamId: teamID, Id: id}))
		if err != nil {
			return err
		}
		return a.show(resp.Msg, []string{"DELIVERY"}, [][]string{{resp.Msg.GetDeliveryId()}})
	})
	deliveries := byID("deliveries ID [--team TEAM]", "List a webhook's deliveries, newest first, with their last attempt", func(c *cobra.Command, s *session, teamID, id string) error {
		resp, err := s.alerts().ListWebhookDeliveries(c.Context(), connect.NewRequest(&apiv1.ListWebhookDeliveriesRequest{TeamId: teamID, Id: id}))
		if err != nil {
			return err
		}
		var rows [][]string
		for _, d := range resp.Msg.GetDeliveries() {
			status, latency, why := "", "", ""
			if n := len(d.GetAttempts()); n > 0 {
				last := d.GetAttempts()[n-1]
				status, latency, why = strconv.Itoa(int(last.GetStatusCode())), fmt.Sprintf("%.0fms", last.GetLatencyMs()), last.GetError()
			}
			state := strings.ToLower(strings.TrimPrefix(d.GetState().String(), "DELIVERY_STATE_"))
			rows = append(rows, []string{d.GetId(), kindName(d.GetKind()), state, strconv.Itoa(len(d.GetAttempts())), status, latency, why, when(d.GetCreatedAt())})
		}
		return a.show(resp.Msg, []string{"DELIVERY", "ALERT", "STATE", "ATTEMPTS", "STATUS", "LATENCY", "ERROR", "CREATED"}, rows)
	})
	c.AddCommand(list, create, del, test, deliveries)
	return c
}

func (a *App) accessReviewCommand() *cobra.Command {
	var team, export string
	var days uint32
	c := &cobra.Command{
		Use:   "access-review --team TEAM [--export csv|json]",
		Short: "Who in a team can reach which installations, with which scopes, and when they last used them (team admins)",
		Example: "  orreryctl access-review --team platform\n" +
			"  orreryctl access-review --team platform --days 90 --export csv > platform-access.csv",
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			format, ok := map[string]apiv1.AccessReviewFormat{
				"":     apiv1.AccessReviewFormat_ACCESS_REVIEW_FORMAT_UNSPECIFIED,
				"csv":  apiv1.AccessReviewFormat_ACCESS_REVIEW_FORMAT_CSV,
				"json": apiv1.AccessReviewFormat_ACCESS_REVIEW_FORMAT_JSON,
			}[export]
			if !ok {
				return usageError{fmt.Errorf("unknown export format %q: use csv or json", export)}
			}
			s, t, err := a.teamScope(c.Context(), team)
			if err != nil {
				return err
			}
			if export != "" {
				resp, err := s.reviews().ExportAccessReview(c.Context(), connect.NewRequest(&apiv1.ExportAccessReviewRequest{TeamId: t.GetId(), Days: days, Format: format}))
				if err != nil {
					return err
				}
				_, err = a.Out.Write(resp.Msg.GetData())
				return err
			}
			resp, err := s.reviews().GetAccessReview(c.Context(), connect.NewRequest(&apiv1.GetAccessReviewRequest{TeamId: t.GetId(), Days: days}))
			if err != nil {
				return err
			}
			var rows [][]string
			for _, r := range resp.Msg.GetRows() {
				role := strings.ToLower(strings.TrimPrefix(r.GetRole().String(), "TEAM_ROLE_"))
				rows = append(rows, []string{r.GetEmail(), role, r.GetInstallationName(), strings.Join(r.GetScopes(), " "), when(r.GetLastUsedAt()), strconv.FormatUint(r.GetCalls(), 10)})
			}
			return a.show(resp.Msg, []string{"MEMBER", "ROLE", "INSTALLATION", "SCOPES", "LAST USED", "CALLS"}, rows)
		},
	}
	a.teamFlag(c, &team, true)
	c.Flags().Uint32Var(&days, "days", 0, "how many days back calls are counted; default 30")
	c.Flags().StringVar(&export, "export", "", "write the review as a csv or json file to stdout instead of a table")
	return c
}
