package server_test

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/policy"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

func policyClient(b *testBundle, c caller) apiv1connect.PolicyServiceClient {
	return apiv1connect.NewPolicyServiceClient(testClient, b.replicas[0].url, connect.WithInterceptors(withBearer(c.token)))
}

func denyPolicy(teamID, name, expr string) *apiv1.SetPolicyRequest {
	return &apiv1.SetPolicyRequest{TeamId: teamID, Name: name, Kind: satellitev1.PolicyKind_POLICY_KIND_DENY, Expression: expr}
}

func policyNames(ps []*apiv1.Policy) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.TeamId+"/"+p.Name)
	}
	return out
}

func TestPolicyAPI(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	x := seedTenants(t, b)
	ctx := t.Context()
	teamA, teamB := x.teamA.ID.String(), x.teamB.ID.String()
	adminA, adminB, root := policyClient(b, x.adminA), policyClient(b, x.adminB), policyClient(b, x.globalAdmin)

	set, err := adminA.SetPolicy(ctx, connect.NewRequest(denyPolicy(teamA, "no-deletes", `tool.name.startsWith("delete_")`)))
	if err != nil {
		t.Fatal(err)
	}
	if !set.Msg.Created || set.Msg.Policy.TeamId != teamA || set.Msg.Policy.Kind != satellitev1.PolicyKind_POLICY_KIND_DENY {
		t.Fatalf("set = %v", set.Msg)
	}
	set, err = adminA.SetPolicy(ctx, connect.NewRequest(denyPolicy(teamA, "no-deletes", `tool.name.startsWith("delete_") && user.role == "member"`)))
	if err != nil || set.Msg.Created || !strings.Contains(set.Msg.Policy.Expression, "member") {
		t.Fatalf("replace = %v, %v", set.Msg, err)
	}
	if _, err := root.SetPolicy(ctx, connect.NewRequest(&apiv1.SetPolicyRequest{Name: "ten-a-minute",
		Kind: satellitev1.PolicyKind_POLICY_KIND_RATE_LIMIT, Expression: "true", CallsPerMinute: 10,
		RateLimitKey: satellitev1.RateLimitKey_RATE_LIMIT_KEY_USER})); err != nil {
		t.Fatal(err)
	}
	if _, err := adminB.SetPolicy(ctx, connect.NewRequest(&apiv1.SetPolicyRequest{TeamId: teamB, Name: "hide",
		Kind: satellitev1.PolicyKind_POLICY_KIND_REDACT, Expression: "true", RedactPaths: []string{"args.token"}})); err != nil {
		t.Fatal(err)
	}

	list, err := adminA.ListPolicies(ctx, connect.NewRequest(&apiv1.ListPoliciesRequest{TeamId: teamA}))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := policyNames(list.Msg.Policies), []string{"/ten-a-minute", teamA + "/no-deletes"}; !slices.Equal(got, want) {
		t.Errorf("team A lists %v, want %v", got, want)
	}
	// Team B's admin sees B's and the global ones, never A's, and cannot touch A's.
	list, err = adminB.ListPolicies(ctx, connect.NewRequest(&apiv1.ListPoliciesRequest{TeamId: teamB}))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := policyNames(list.Msg.Policies), []string{"/ten-a-minute", teamB + "/hide"}; !slices.Equal(got, want) {
		t.Errorf("team B lists %v, want %v", got, want)
	}
	for _, call := range []func() error{
		func() error {
			_, err := adminB.ListPolicies(ctx, connect.NewRequest(&apiv1.ListPoliciesRequest{TeamId: teamA}))
			return err
		},
		func() error {
			_, err := adminB.SetPolicy(ctx, connect.NewRequest(denyPolicy(teamA, "no-deletes", "true")))
			return err
		},
		func() error {
			_, err := adminB.DeletePolicy(ctx, connect.NewRequest(&apiv1.DeletePolicyRequest{TeamId: teamA, Name: "no-deletes"}))
			return err
		},
		// A team admin is not a global admin.
		func() error {
			_, err := adminA.SetPolicy(ctx, connect.NewRequest(denyPolicy("", "everyone", "true")))
			return err
		},
	} {
		if code := connect.CodeOf(call()); code != connect.CodePermissionDenied {
			t.Errorf("attacker call: %v, want permission_denied", code)
		}
	}
	if _, err := adminA.DeletePolicy(ctx, connect.NewRequest(&apiv1.DeletePolicyRequest{TeamId: teamA, Name: "nosuch"})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("delete of a missing policy: %v", err)
	}
	if _, err := adminA.DeletePolicy(ctx, connect.NewRequest(&apiv1.DeletePolicyRequest{TeamId: teamA, Name: "no-deletes"})); err != nil {
		t.Fatal(err)
	}
	list, _ = adminA.ListPolicies(ctx, connect.NewRequest(&apiv1.ListPoliciesRequest{TeamId: teamA}))
	if got := policyNames(list.Msg.Policies); !slices.Equal(got, []string{"/ten-a-minute"}) {
		t.Errorf("after delete team A lists %v", got)
	}
	events, err := b.store().ListAuditEvents(ctx, &x.teamA.ID, math.MaxInt64, 50)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range events {
		if strings.HasPrefix(e.Action, "policy.") {
			actions = append(actions, e.Action+" "+e.Target+" by "+e.Actor)
		}
	}
	if want := []string{"policy.deleted no-deletes by admin@a.test", "policy.set no-deletes by admin@a.test", "policy.set no-deletes by admin@a.test"}; !slices.Equal(actions, want) {
		t.Errorf("audit = %v, want %v", actions, want)
	}
}

// A bad expression is refused when it is saved, with the position of its error.
func TestPolicyBadExpressionRefusedWithPosition(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	x := seedTenants(t, b)
	_, err := policyClient(b, x.adminA).SetPolicy(t.Context(), connect.NewRequest(denyPolicy(x.teamA.ID.String(), "broken",
		"user.role == \"member\" &&\n  tool.nme.startsWith(\"delete_\") &&")))
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument {
		t.Fatalf("err = %v, want invalid_argument", err)
	}
	if !strings.Contains(ce.Message(), "line 2, column 36") {
		t.Errorf("message %q lacks the position", ce.Message())
	}
	var found bool
	for _, d := range ce.Details() {
		if v, err := d.Value(); err == nil {
			if br, ok := v.(*errdetails.BadRequest); ok && len(br.FieldViolations) == 1 && br.FieldViolations[0].Field == "expression" {
				found = strings.Contains(br.FieldViolations[0].Description, "^")
			}
		}
	}
	if !found {
		t.Errorf("no field violation with CEL's marked line in %v", ce.Details())
	}
	for name, req := range map[string]*apiv1.SetPolicyRequest{
		"not a bool":      denyPolicy(x.teamA.ID.String(), "p", "tool.name"),
		"too long":        denyPolicy(x.teamA.ID.String(), "p", "true"+strings.Repeat(" ", policy.MaxExpressionBytes)),
		"bad name":        denyPolicy(x.teamA.ID.String(), "No Spaces", "true"),
		"bad pattern":     {TeamId: x.teamA.ID.String(), Name: "p", Kind: satellitev1.PolicyKind_POLICY_KIND_REDACT, Expression: "true", RedactPatterns: []string{"("}},
		"rate without n":  {TeamId: x.teamA.ID.String(), Name: "p", Kind: satellitev1.PolicyKind_POLICY_KIND_RATE_LIMIT, Expression: "true", RateLimitKey: satellitev1.RateLimitKey_RATE_LIMIT_KEY_USER},
		"too many paths":  {TeamId: x.teamA.ID.String(), Name: "p", Kind: satellitev1.PolicyKind_POLICY_KIND_REDACT, Expression: "true", RedactPaths: slices.Repeat([]string{"args.a"}, 33)},
		"unknown kind":    {TeamId: x.teamA.ID.String(), Name: "p", Kind: 99, Expression: "true"},
		"no kind at all":  {TeamId: x.teamA.ID.String(), Name: "p", Expression: "true"},
		"path not rooted": {TeamId: x.teamA.ID.String(), Name: "p", Kind: satellitev1.PolicyKind_POLICY_KIND_REDACT, Expression: "true", RedactPaths: []string{"env.HOME"}},
	} {
		if _, err := policyClient(b, x.adminA).SetPolicy(t.Context(), connect.NewRequest(req)); connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("%s: %v, want invalid_argument", name, err)
		}
	}
}

// A team holds at most policy.MaxPerScope policies; replacing one still works when it is full.
func TestPolicyCountIsBounded(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	x := seedTenants(t, b)
	c := policyClient(b, x.adminA)
	team := x.teamA.ID.String()
	for i := range policy.MaxPerScope - 5 {
		if _, err := c.SetPolicy(t.Context(), connect.NewRequest(denyPolicy(team, fmt.Sprint("p", i), "false"))); err != nil {
			t.Fatal(err)
		}
	}
	// Ten saves at once for the last five places: five win, however they interleave.
	var wg sync.WaitGroup
	var won atomic.Int32
	for i := range 10 {
		wg.Go(func() {
			if _, err := c.SetPolicy(t.Context(), connect.NewRequest(denyPolicy(team, fmt.Sprint("race", i), "false"))); err == nil {
				won.Add(1)
			} else if connect.CodeOf(err) != connect.CodeResourceExhausted {
				t.Errorf("concurrent save: %v", err)
			}
		})
	}
	wg.Wait()
	if won.Load() != 5 {
		t.Fatalf("%d concurrent saves won the last 5 places", won.Load())
	}
	if _, err := c.SetPolicy(t.Context(), connect.NewRequest(denyPolicy(team, "one-more", "false"))); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("policy %d: %v, want resource_exhausted", policy.MaxPerScope+1, err)
	}
	if _, err := c.SetPolicy(t.Context(), connect.NewRequest(denyPolicy(team, "p0", "true"))); err != nil {
		t.Fatalf("replacing a policy of a full team: %v", err)
	}
	// Another team's count is its own.
	if _, err := policyClient(b, x.adminB).SetPolicy(t.Context(), connect.NewRequest(denyPolicy(x.teamB.ID.String(), "p0", "false"))); err != nil {
		t.Fatal(err)
	}
}

// The REST route of SetPolicy, as curl would call it.
func TestPolicyREST(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	x := seedTenants(t, b)
	url := b.replicas[0].url + "/api/teams/" + x.teamA.ID.String() + "/policies/only-our-repos"
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, url,
		strings.NewReader(`{"kind":"POLICY_KIND_ALLOW","expression":"!has(args.repo) || args.repo in [\"a/b\"]"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+x.adminA.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"created":true`) {
		t.Fatalf("PUT %s: %d %s", url, resp.StatusCode, body)
	}
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodGet, b.replicas[0].url+"/api/teams/"+x.teamA.ID.String()+"/policies", nil)
	req.Header.Set("Authorization", "Bearer "+x.adminB.token)
	resp, err = testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("team B's admin listing A's policies: %d, want 403", resp.StatusCode)
	}
}

// A satellite's configuration carries the global policies and those of the teams it runs instances
// of: a team satellite never learns another team's policies.
func TestConfigurationCarriesOnlyItsTeamsPolicies(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	acme := seedTeam(t, b, "acme")
	globex := seedTeam(t, b, "globex")
	st := b.store()
	actor := store.AuditEvent{Actor: "system"}
	for _, d := range []policy.Definition{
		{Name: "everyone", Kind: policy.KindDeny, Expression: `tool.name == "rm"`},
		{TeamID: acme.team.ID.String(), Name: "acme-only", Kind: policy.KindAllow, Expression: "true"},
		{TeamID: globex.team.ID.String(), Name: "globex-secret-rule", Kind: policy.KindDeny, Expression: `args.project == "x"`},
	} {
		if _, _, err := st.SetPolicy(t.Context(), d, actor); err != nil {
			t.Fatal(err)
		}
	}
	acmeSat := b.activeSatellite(t, acme.team.ID.String())
	global := b.activeSatellite(t, "")
	names := func(cfg *satellitev1.GetConfigurationResponse) []string {
		var out []string
		for _, p := range cfg.Policies {
			out = append(out, p.Name)
		}
		return out
	}
	cfg := getConfiguration(t, acmeSat, "")
	if got := names(cfg); !slices.Equal(got, []string{"everyone", "acme-only"}) {
		t.Errorf("acme's satellite got policies %v", got)
	}
	// acme has its own satellite, so the global satellite serves only globex.
	if got := names(getConfiguration(t, global, "")); !slices.Equal(got, []string{"everyone", "globex-secret-rule"}) {
		t.Errorf("the global satellite got policies %v", got)
	}

	// A change of a policy changes the etag and sends acme's satellite a configure command.
	if _, _, err := st.SetPolicy(t.Context(), policy.Definition{TeamID: acme.team.ID.String(), Name: "acme-only",
		Kind: policy.KindAllow, Expression: "false"}, actor); err != nil {
		t.Fatal(err)
	}
	again := getConfiguration(t, acmeSat, cfg.Etag)
	if again.NotModified || again.Etag == cfg.Etag || again.Policies[1].Expression != "false" {
		t.Errorf("configuration after a policy change: %v", again)
	}
	var configure bool
	for _, c := range acmeSat.poll(t, time.Second) {
		configure = configure || c.GetConfigure() != nil
	}
	if !configure {
		t.Error("acme's satellite got no configure command after its policy changed")
	}
	// A global policy reaches every satellite.
	if _, _, err := st.SetPolicy(t.Context(), policy.Definition{Name: "everyone", Kind: policy.KindDeny, Expression: "false"}, actor); err != nil {
		t.Fatal(err)
	}
	for _, sat := range []*satellite{acmeSat, global} {
		configure = false
		for _, c := range sat.poll(t, time.Second) {
			configure = configure || c.GetConfigure() != nil
		}
		if !configure {
			t.Errorf("satellite %s got no configure command after a global policy changed", sat.id)
		}
	}
}

// Introspection tells a satellite the caller's email and team role, which policies check.
func TestIntrospectionCarriesEmailAndRole(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	f := seedTeam(t, b, "acme")
	token, _ := issueToken(t, b, f, time.Hour)
	got := introspect(t, b.activeSatellite(t, f.team.ID.String()), token)
	if got.UserEmail != f.alice.Email || got.TeamRole != "member" {
		t.Errorf("introspection = %v, want alice's email and role member", got)
	}
}
