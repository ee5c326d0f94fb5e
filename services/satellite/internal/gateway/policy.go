package gateway

import (
	"context"
	"log/slog"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/policy"
)

// SetPolicies compiles the policies of a configuration that arrived and applies them to the calls that
// start from now on. Each team's policies apply to that team alone, the global ones to every team. A
// policy that does not compile here is logged, and while it is an allow or deny policy it refuses every
// call of its scope, since what it should enforce is unknown.
func (g *Gateway) SetPolicies(ps []*satellitev1.Policy) {
	defs := make([]policy.Definition, len(ps))
	for i, p := range ps {
		defs[i] = policy.FromProto(p)
	}
	book, errs := policy.NewBook(defs)
	for _, err := range errs {
		g.logger.Error("policy does not compile on this satellite", slog.Any("error", err))
	}
	g.policies.Store(book)
}

// callerOf is the principal a tool call acts for: the Streamable HTTP transports hand it on in the token
// info of every request, and a legacy SSE session runs in its stream's context, which has it.
func callerOf(ctx context.Context, req *mcp.CallToolRequest) *principal {
	if extra := req.Extra; extra != nil && extra.TokenInfo != nil {
		if p, ok := extra.TokenInfo.Extra[principalExtraKey].(*principal); ok {
			return p
		}
	}
	return principalFrom(ctx)
}

// principalExtraKey is where guard puts the principal in the SDK's token info.
const principalExtraKey = "orrery.principal"

// policyCall describes a tool call for the team's policies, or returns nil when the team has none.
func (g *Gateway) policyCall(ctx context.Context, us *userServer, req *mcp.CallToolRequest, rt route) (*policy.Set, *policy.Call) {
	set := g.policies.Load().Set(us.key.teamID)
	if set.Len() == 0 {
		return nil, nil
	}
	c := &policy.Call{
		UserID: us.key.userID, TeamID: us.key.teamID, ServerSlug: rt.inst.ServerSlug,
		InstallationID: rt.inst.InstallationID, ToolName: rt.name, PublicName: req.Params.Name, Args: req.Params.Arguments,
	}
	// The principal is of the same team and user as the server (guard bound them); its email and role
	// come from the token's introspection.
	if p := callerOf(ctx, req); p != nil && p.teamID == us.key.teamID && p.userID == us.key.userID {
		c.UserEmail, c.UserRole, c.TeamSlug = p.email, p.role, p.teamSlug
	}
	return set, c
}

// redactions are the redact policies that apply to a call's request log; none are evaluated when the
// instance logs no bodies.
func redactions(ctx context.Context, set *policy.Set, pc *policy.Call, rt route) []*policy.Policy {
	if pc == nil || !rt.inst.RequestLoggingEnabled {
		return nil
	}
	return set.Redactions(ctx, pc)
}

// refuse is the answer to a call a policy refused: a tool error naming the policy. The refusal is a
// security event, logged and counted.
func (g *Gateway) refuse(ctx context.Context, us *userServer, rt route, d *policy.Denial) *mcp.CallToolResult {
	g.logger.WarnContext(ctx, "tool call refused by policy", slog.String("security_event", "policy_denied"),
		slog.String("policy", d.Policy), slog.Bool("policy_global", d.Global), slog.String("reason", d.Reason),
		slog.String("team_id", us.key.teamID), slog.String("user_id", us.key.userID),
		slog.String("installation_id", rt.inst.InstallationID), slog.String("tool", truncate(rt.name, maxLoggedToolName)))
	g.metrics.observeDenial(us.key.teamID, d)
	return toolError(d.Message())
}
