package gateway

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

// testPolicies are a configuration's policies: global, acme's and globex's.
func testPolicies() []*satellitev1.Policy {
	return []*satellitev1.Policy{
		{Id: "g1", Name: "no-fail-for-members", Kind: satellitev1.PolicyKind_POLICY_KIND_DENY,
			Expression: `tool.name == "fail" && user.role == "member"`},
		{Id: "a1", TeamId: teamAcme, Name: "only-our-repos", Kind: satellitev1.PolicyKind_POLICY_KIND_ALLOW,
			Expression: `!has(args.repo) || args.repo in ["a/b", "c/d"]`},
		{Id: "a2", TeamId: teamAcme, Name: "hide-secrets", Kind: satellitev1.PolicyKind_POLICY_KIND_REDACT,
			Expression:     `server.slug == "alpha" && user.email.endsWith("@acme.test")`,
			RedactPaths:    []string{"args.password", "$.result.structuredContent.tool", "$.result.content[*].text"},
			RedactPatterns: []string{`ghp_[A-Za-z0-9]+`}},
		{Id: "a3", TeamId: teamAcme, Name: "two-echoes-a-minute", Kind: satellitev1.PolicyKind_POLICY_KIND_RATE_LIMIT,
			Expression: `tool.public_name == "beta__echo"`, CallsPerMinute: 2,
			RateLimitKey: satellitev1.RateLimitKey_RATE_LIMIT_KEY_USER_TOOL},
		// Globex's own rule: were it ever applied to acme, every acme call below would be refused.
		{Id: "x1", TeamId: teamGlobex, Name: "globex-lockdown", Kind: satellitev1.PolicyKind_POLICY_KIND_DENY,
			Expression: "true"},
		{Id: "x2", TeamId: teamGlobex, Name: "globex-redacts-repo", Kind: satellitev1.PolicyKind_POLICY_KIND_REDACT,
			Expression: "true", RedactPaths: []string{"args.repo"}},
	}
}

// identify gives a token the email and role introspection reports.
func (b *bundle) identify(token, teamID, slug, userID, email, role string) {
	b.intro.set(token, &satellitev1.IntrospectTokenResponse{
		Active: true, TeamId: teamID, TeamSlug: slug, UserId: userID, ClientId: "client-1",
		Audience: b.url + "/teams/" + slug + "/mcp", Scopes: []string{ScopeRead, ScopeExecute},
		ExpiresAt: timestamppb.New(b.clock.Now().Add(time.Hour)), UserEmail: email, TeamRole: role,
	})
}

// toolRefusal calls a tool that must answer with a tool error, and returns its text.
func toolRefusal(t *testing.T, cs *mcp.ClientSession, params *mcp.CallToolParams) string {
	t.Helper()
	res, err := cs.CallTool(t.Context(), params)
	if err != nil {
		t.Fatalf("call: %v", err)
	}
	if !res.IsError {
		t.Fatalf("call not refused: %v", callText(t, res))
	}
	return callText(t, res)
}

// TestPoliciesOnEveryTransport calls through a real MCP client on each transport the gateway serves:
// allowed and refused calls, a rate limit, redacted request logs, and the policies of another team,
// which never apply.
func TestPoliciesOnEveryTransport(t *testing.T) {
	t.Parallel()
	for _, era := range eras {
		t.Run(era.name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			b := setup(t, setupOptions{metrics: reg})
			b.gw.SetPolicies(testPolicies())
			b.identify("ann", teamAcme, "acme", userAnn, "ann@acme.test", "member")
			b.identify("ann-admin", teamAcme, "acme", userAnn, "ann@acme.test", "admin")
			b.identify("cid", teamGlobex, "globex", userCid, "cid@globex.test", "member")
			ann := b.connect(t, "ann", "acme", era.opts)

			// Allowed, and its request log redacted by path and by pattern.
			args := `{"repo":"a/b","password":"hunter2","note":"token ghp_abc123 here"}`
			res, err := ann.CallTool(t.Context(), &mcp.CallToolParams{Name: "alpha__echo", Arguments: json.RawMessage(args)})
			if err != nil || res.IsError {
				t.Fatalf("allowed call: %v, %v", res, err)
			}
			if got := callText(t, res); got != args {
				t.Errorf("the client got %s: redaction must touch only the log", got)
			}
			logs := b.events.requestLogs()
			rl := logs[len(logs)-1].GetRequestLog()
			req, _ := rl.GetRequest().MarshalJSON()
			resp, _ := rl.GetResponse().MarshalJSON()
			for _, leak := range []string{"hunter2", "ghp_abc123"} {
				if strings.Contains(string(req), leak) || strings.Contains(string(resp), leak) {
					t.Errorf("request log holds %s: %s / %s", leak, req, resp)
				}
			}
			if f := rl.GetRequest().GetStructValue().GetFields(); f["password"].GetStringValue() != "[redacted]" ||
				f["repo"].GetStringValue() != "a/b" || f["note"].GetStringValue() != "token [redacted] here" {
				t.Errorf("logged arguments = %s", req)
			}
			if sc := rl.GetResponse().GetStructValue().GetFields()["structuredContent"].GetStructValue().GetFields(); sc["tool"].GetStringValue() != "[redacted]" {
				t.Errorf("logged result = %s", resp)
			}

			// Refused by acme's allow policy, without reaching the instance.
			text := toolRefusal(t, ann, &mcp.CallToolParams{Name: "alpha__echo",
				Arguments: map[string]any{"repo": "evil/repo"}})
			if text != `call refused by policy "only-our-repos"` {
				t.Errorf("refusal = %q", text)
			}
			logs = b.events.requestLogs()
			if rl := logs[len(logs)-1].GetRequestLog(); rl.GetSuccess() || !strings.Contains(rl.GetError(), `"only-our-repos"`) {
				t.Errorf("request log of the refused call = %v", rl)
			}
			// Refused by the global deny policy for a member; an admin's call reaches the tool.
			if text := toolRefusal(t, ann, &mcp.CallToolParams{Name: "alpha__fail", Arguments: map[string]any{}}); text != `call refused by policy "no-fail-for-members"` {
				t.Errorf("refusal = %q", text)
			}
			admin := b.connect(t, "ann-admin", "acme", era.opts)
			if text := toolRefusal(t, admin, &mcp.CallToolParams{Name: "alpha__fail", Arguments: map[string]any{}}); text != "it failed" {
				t.Errorf("the admin's call got %q, want the tool's own error", text)
			}

			// Two echoes a minute: the third is refused, and a minute later one goes through again.
			for i := range 2 {
				if res, err := ann.CallTool(t.Context(), &mcp.CallToolParams{Name: "beta__echo", Arguments: map[string]any{}}); err != nil || res.IsError {
					t.Fatalf("echo %d: %v, %v", i, res, err)
				}
			}
			if text := toolRefusal(t, ann, &mcp.CallToolParams{Name: "beta__echo", Arguments: map[string]any{}}); !strings.Contains(text, `rate limit of policy "two-echoes-a-minute"`) {
				t.Errorf("refusal = %q", text)
			}
			b.clock.Advance(time.Minute)
			if res, err := ann.CallTool(t.Context(), &mcp.CallToolParams{Name: "beta__echo", Arguments: map[string]any{}}); err != nil || res.IsError {
				t.Fatalf("echo a minute later: %v, %v", res, err)
			}

			// Globex's policies are globex's alone.
			cid := b.connect(t, "cid", "globex", era.opts)
			if text := toolRefusal(t, cid, &mcp.CallToolParams{Name: "secretserver__classified", Arguments: map[string]any{}}); text != `call refused by policy "globex-lockdown"` {
				t.Errorf("globex refusal = %q", text)
			}

			got := scrape(t, reg)
			for _, want := range []string{
				`orrery_satellite_policy_denials_total{policy="only-our-repos",reason="not_allowed",scope="team",team="` + teamAcme + `"} 1`,
				`orrery_satellite_policy_denials_total{policy="no-fail-for-members",reason="denied",scope="global",team="` + teamAcme + `"} 1`,
				`orrery_satellite_policy_denials_total{policy="two-echoes-a-minute",reason="rate_limited",scope="team",team="` + teamAcme + `"} 1`,
				`orrery_satellite_policy_denials_total{policy="globex-lockdown",reason="denied",scope="team",team="` + teamGlobex + `"} 1`,
				`orrery_satellite_tool_calls_total{installation="inst-alpha-1",outcome="policy_denied",team="` + teamAcme + `",tool="echo"} 1`,
			} {
				if !strings.Contains(got, want+"\n") {
					t.Errorf("metrics lack %s", want)
				}
			}
			if strings.Contains(got, `policy="globex-lockdown",reason="denied",scope="team",team="`+teamAcme) {
				t.Error("globex's policy refused an acme call")
			}
		})
	}
}

// A policy that does not compile on the satellite refuses its team's calls, and only its team's.
func TestPolicyThatDoesNotCompileRefuses(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	b.gw.SetPolicies([]*satellitev1.Policy{{Id: "x", TeamId: teamGlobex, Name: "typo",
		Kind: satellitev1.PolicyKind_POLICY_KIND_DENY, Expression: "user.role =="}})
	cid := b.connect(t, "cid", "globex", clientOptions{version: sessionVersion})
	if text := toolRefusal(t, cid, &mcp.CallToolParams{Name: "secretserver__classified", Arguments: map[string]any{}}); !strings.Contains(text, `policy "typo" could not be evaluated`) {
		t.Errorf("refusal = %q", text)
	}
	ann := b.connect(t, "ann", "acme", clientOptions{version: sessionVersion})
	if res, err := ann.CallTool(t.Context(), &mcp.CallToolParams{Name: "alpha__echo", Arguments: map[string]any{}}); err != nil || res.IsError {
		t.Fatalf("acme call under globex's broken policy: %v, %v", res, err)
	}
	// A new configuration without it lifts the refusal.
	b.gw.SetPolicies(nil)
	if res, err := cid.CallTool(t.Context(), &mcp.CallToolParams{Name: "secretserver__classified", Arguments: map[string]any{}}); err != nil || res.IsError {
		t.Fatalf("call after the policy left: %v, %v", res, err)
	}
}
