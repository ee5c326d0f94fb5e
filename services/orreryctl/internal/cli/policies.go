package cli

import (
	"fmt"
	"strconv"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/policy"
)

func policyKindName(k satellitev1.PolicyKind) string {
	if name := policy.KindFromProto(k); name != "" {
		return string(name)
	}
	return "unknown"
}

func (a *App) policiesCommand() *cobra.Command {
	c := &cobra.Command{
		Use:     "policies",
		Aliases: []string{"policy"},
		Short:   "Policies satellites apply to every tool call: global (global admins) or a team's (team admins)",
		Long: `Policies are CEL expressions over a tool call: user.id, user.email, user.role ("admin" or "member"),
team.id, team.slug, server.slug, server.installation_id, tool.name, tool.public_name and args.
An allow policy lets a call through only when true, a deny policy refuses it when true, a redact
policy hides fields and patterns of the request logs of the calls it matches, and a rate_limit
policy limits the calls it matches per minute. A bad expression is refused with its position.`,
	}
	var listTeam string
	list := &cobra.Command{
		Use:   "list",
		Short: "List the global policies and, with --team, the team's",
		Args:  args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			s, err := a.session(c.Context())
			if err != nil {
				return err
			}
			_, teamID, err := s.optionalTeam(c.Context(), listTeam)
			if err != nil {
				return err
			}
			resp, err := s.policies().ListPolicies(c.Context(), connect.NewRequest(&apiv1.ListPoliciesRequest{TeamId: teamID}))
			if err != nil {
				return err
			}
			var rows [][]string
			for _, p := range resp.Msg.GetPolicies() {
				scope := "global"
				if p.GetTeamId() != "" {
					scope = "team"
				}
				rows = append(rows, []string{p.GetName(), scope, policyKindName(p.GetKind()), policyDetail(p), when(p.GetUpdatedAt())})
			}
			return a.show(resp.Msg, []string{"NAME", "SCOPE", "KIND", "RULE", "UPDATED"}, rows)
		},
	}
	a.teamFlag(list, &listTeam, false)

	var (
		setTeam, kind, rateKey string
		paths, patterns        []string
		perMinute              uint32
	)
	set := &cobra.Command{
		Use:   "set NAME EXPRESSION --kind KIND",
		Short: "Create or replace a policy",
		Example: `  orreryctl policies set no-deletes 'tool.name.startsWith("delete_") && user.role == "member"' --kind deny --team platform
  orreryctl policies set our-repos '!has(args.repo) || args.repo in ["acme/api", "acme/web"]' --kind allow --team platform
  orreryctl policies set hide-tokens true --kind redact --path args.token --pattern 'ghp_[A-Za-z0-9]+'
  orreryctl policies set searches 'tool.name == "search"' --kind rate_limit --per-minute 30 --per user_tool --team platform`,
		Args: args(cobra.ExactArgs(2)),
		RunE: func(c *cobra.Command, argv []string) error {
			k := policy.KindToProto(policy.Kind(kind))
			if k == satellitev1.PolicyKind_POLICY_KIND_UNSPECIFIED {
				return usageError{fmt.Errorf("--kind must be allow, deny, redact or rate_limit, not %q", kind)}
			}
			rk := policy.RateKeyToProto(policy.RateKey(rateKey))
			if rateKey != "" && rk == satellitev1.RateLimitKey_RATE_LIMIT_KEY_UNSPECIFIED {
				return usageError{fmt.Errorf("--per must be user or user_tool, not %q", rateKey)}
			}
			if k == satellitev1.PolicyKind_POLICY_KIND_RATE_LIMIT && rk == satellitev1.RateLimitKey_RATE_LIMIT_KEY_UNSPECIFIED {
				rk = satellitev1.RateLimitKey_RATE_LIMIT_KEY_USER
			}
			s, err := a.session(c.Context())
			if err != nil {
				return err
			}
			_, teamID, err := s.optionalTeam(c.Context(), setTeam)
			if err != nil {
				return err
			}
			resp, err := s.policies().SetPolicy(c.Context(), connect.NewRequest(&apiv1.SetPolicyRequest{
				TeamId: teamID, Name: argv[0], Kind: k, Expression: argv[1], RedactPaths: paths, RedactPatterns: patterns,
				CallsPerMinute: perMinute, RateLimitKey: rk,
			}))
			if err != nil {
				return err
			}
			verb := "Replaced"
			if resp.Msg.GetCreated() {
				verb = "Created"
			}
			fmt.Fprintf(a.Err, "%s policy %s; satellites apply it once they fetch their configuration.\n", verb, argv[0])
			p := resp.Msg.GetPolicy()
			return a.show(resp.Msg, []string{"NAME", "KIND", "RULE"}, [][]string{{p.GetName(), policyKindName(p.GetKind()), policyDetail(p)}})
		},
	}
	a.teamFlag(set, &setTeam, false)
	set.Flags().StringVar(&kind, "kind", "", "allow, deny, redact or rate_limit")
	set.Flags().StringSliceVar(&paths, "path", nil, "redact: a JSON path to hide, such as args.password or $.result.content[*].text")
	set.Flags().StringSliceVar(&patterns, "pattern", nil, "redact: an RE2 pattern to hide wherever it matches")
	set.Flags().Uint32Var(&perMinute, "per-minute", 0, "rate_limit: calls allowed per minute")
	set.Flags().StringVar(&rateKey, "per", "", "rate_limit: count calls per user (default) or per user_tool")
	_ = set.MarkFlagRequired("kind")

	var deleteTeam string
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a policy",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			s, err := a.session(c.Context())
			if err != nil {
				return err
			}
			_, teamID, err := s.optionalTeam(c.Context(), deleteTeam)
			if err != nil {
				return err
			}
			if _, err := s.policies().DeletePolicy(c.Context(), connect.NewRequest(&apiv1.DeletePolicyRequest{TeamId: teamID, Name: argv[0]})); err != nil {
				return err
			}
			fmt.Fprintf(a.Err, "Deleted policy %s.\n", argv[0])
			return nil
		},
	}
	a.teamFlag(del, &deleteTeam, false)
	c.AddCommand(list, set, del)
	return c
}

// policyDetail is a policy's rule in one line: its expression and what it does beyond allowing or
// denying.
func policyDetail(p *apiv1.Policy) string {
	parts := []string{p.GetExpression()}
	if len(p.GetRedactPaths()) > 0 {
		parts = append(parts, "paths "+strings.Join(p.GetRedactPaths(), ","))
	}
	if len(p.GetRedactPatterns()) > 0 {
		parts = append(parts, "patterns "+strings.Join(p.GetRedactPatterns(), ","))
	}
	if n := p.GetCallsPerMinute(); n > 0 {
		per := "user"
		if p.GetRateLimitKey() == satellitev1.RateLimitKey_RATE_LIMIT_KEY_USER_TOOL {
			per = "user and tool"
		}
		parts = append(parts, strconv.FormatUint(uint64(n), 10)+"/min per "+per)
	}
	return strings.Join(parts, "; ")
}
