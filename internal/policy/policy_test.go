package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const teamA, teamB = "team-a", "team-b"

func call(tool string, args string) *Call {
	return &Call{UserID: "u1", UserEmail: "dana@example.test", UserRole: "member", TeamID: teamA, TeamSlug: "acme",
		ServerSlug: "github", InstallationID: "inst-1", ToolName: tool, PublicName: "github__" + tool, Args: json.RawMessage(args)}
}

func mustSet(t *testing.T, team string, defs ...Definition) *Set {
	t.Helper()
	s, errs := NewSet(team, defs)
	if len(errs) > 0 {
		t.Fatalf("NewSet: %v", errs)
	}
	return s
}

func TestCompileRefusesBadExpressionWithPosition(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		expr         string
		line, column int
		message      string
	}{
		{expr: `tool.name.startsWith("delete_") &&`, line: 1, column: 35, message: "mismatched input"},
		{expr: "user.role == \"member\" &&\n  nosuch == 1", line: 2, column: 3, message: "undeclared reference to 'nosuch'"},
		{expr: `tool.name`, line: 1, column: 1, message: "must be a bool"},
	} {
		_, err := Compile(Definition{Name: "p", Kind: KindDeny, Expression: tc.expr})
		var ee *ExpressionError
		if !errors.As(err, &ee) {
			t.Fatalf("Compile(%q) = %v, want an ExpressionError", tc.expr, err)
		}
		if !errors.Is(err, ErrInvalid) || ee.Line != tc.line || ee.Column != tc.column || !strings.Contains(ee.Message, tc.message) {
			t.Errorf("Compile(%q) = line %d column %d %q, want line %d column %d containing %q", tc.expr, ee.Line,
				ee.Column, ee.Message, tc.line, tc.column, tc.message)
		}
	}
}

func TestCompileBounds(t *testing.T) {
	t.Parallel()
	ok := Definition{Name: "p", Kind: KindDeny, Expression: "true"}
	for name, d := range map[string]Definition{
		"long expression":   {Name: "p", Kind: KindDeny, Expression: "true || " + strings.Repeat("true || ", MaxExpressionBytes/8) + "true"},
		"long name":         {Name: strings.Repeat("a", MaxNameBytes+1), Kind: KindDeny, Expression: "true"},
		"bad name":          {Name: "Bad Name", Kind: KindDeny, Expression: "true"},
		"unknown kind":      {Name: "p", Kind: "maybe", Expression: "true"},
		"no rate":           {Name: "p", Kind: KindRateLimit, Expression: "true", RateKey: RatePerUser},
		"huge rate":         {Name: "p", Kind: KindRateLimit, Expression: "true", RateKey: RatePerUser, CallsPerMinute: MaxCallsPerMinute + 1},
		"redact nothing":    {Name: "p", Kind: KindRedact, Expression: "true"},
		"paths on deny":     {Name: "p", Kind: KindDeny, Expression: "true", RedactPaths: []string{"args.a"}},
		"path outside":      {Name: "p", Kind: KindRedact, Expression: "true", RedactPaths: []string{"env.HOME"}},
		"two descents":      {Name: "p", Kind: KindRedact, Expression: "true", RedactPaths: []string{"args..a..b"}},
		"two stars":         {Name: "p", Kind: KindRedact, Expression: "true", RedactPaths: []string{"args.**.**.x"}},
		"bad pattern":       {Name: "p", Kind: KindRedact, Expression: "true", RedactPatterns: []string{"("}},
		"too many patterns": {Name: "p", Kind: KindRedact, Expression: "true", RedactPatterns: make([]string, MaxRedactPatterns+1)},
		"deep nesting":      {Name: "p", Kind: KindDeny, Expression: strings.Repeat("(", 200) + "true" + strings.Repeat(")", 200)},
	} {
		if err := Validate(d); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Validate = %v, want ErrInvalid", name, err)
		}
	}
	if err := Validate(ok); err != nil {
		t.Errorf("Validate(%+v) = %v", ok, err)
	}
}

func TestCheckAllowAndDeny(t *testing.T) {
	t.Parallel()
	s := mustSet(t, teamA,
		Definition{ID: "1", Name: "no-deletes-for-members", Kind: KindDeny, TeamID: teamA,
			Expression: `tool.name.startsWith("delete_") && user.role == "member"`},
		Definition{ID: "2", Name: "only-our-repos", Kind: KindAllow,
			Expression: `!has(args.repo) || args.repo in ["a/b", "c/d"]`},
	)
	for _, tc := range []struct {
		call   *Call
		policy string
		reason string
	}{
		{call: call("list_issues", `{"repo":"a/b"}`)},
		{call: call("list_issues", `{}`)},
		{call: call("list_issues", ``)},
		{call: call("list_issues", `{"repo":"evil/repo"}`), policy: "only-our-repos", reason: ReasonNotAllowed},
		{call: call("delete_repo", `{"repo":"a/b"}`), policy: "no-deletes-for-members", reason: ReasonDenied},
	} {
		d := s.Check(t.Context(), tc.call, nil)
		switch {
		case tc.policy == "" && d != nil:
			t.Errorf("%s %s refused: %s", tc.call.ToolName, tc.call.Args, d.Message())
		case tc.policy != "" && (d == nil || d.Policy != tc.policy || d.Reason != tc.reason):
			t.Errorf("%s %s: denial %+v, want policy %s, reason %s", tc.call.ToolName, tc.call.Args, d, tc.policy, tc.reason)
		}
	}
	admin := call("delete_repo", `{"repo":"a/b"}`)
	admin.UserRole = "admin"
	if d := s.Check(t.Context(), admin, nil); d != nil {
		t.Errorf("an admin's delete refused: %s", d.Message())
	}
}

// A policy that cannot be evaluated refuses the call rather than let it through.
func TestCheckEvaluationErrorRefuses(t *testing.T) {
	t.Parallel()
	s := mustSet(t, teamA, Definition{Name: "repo-list", Kind: KindDeny, Expression: `args.repo == "x"`})
	d := s.Check(t.Context(), call("list", `{}`), nil)
	if d == nil || d.Reason != ReasonError || !strings.Contains(d.Message(), `"repo-list"`) {
		t.Fatalf("denial = %+v, want an evaluation error naming the policy", d)
	}
}

// An expression built to burn CPU over the caller's own arguments stops at the cost limit.
func TestCheckCostLimit(t *testing.T) {
	t.Parallel()
	s := mustSet(t, teamA, Definition{Name: "burn", Kind: KindDeny,
		Expression: `args.items.all(x, args.items.all(y, args.items.all(z, x + y + z != "")))`})
	items := make([]string, 500)
	for i := range items {
		items[i] = fmt.Sprint(i)
	}
	raw, _ := json.Marshal(map[string]any{"items": items})
	start := time.Now()
	d := s.Check(t.Context(), call("list", string(raw)), nil)
	if d == nil || d.Reason != ReasonError || !strings.Contains(d.Detail, "cost limit") {
		t.Fatalf("denial = %+v, want the cost limit", d)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("a hostile expression ran %v", took)
	}
	// Only expressions whose worst case is unbounded pay for counting.
	for expr, limited := range map[string]bool{
		`args.items.all(x, x != "")`:                               true,
		`tool.name.startsWith("delete_") && user.role == "member"`: false,
		`!has(args.repo) || args.repo in ["a/b", "c/d"]`:           false,
		`has(args.q) && string(args.q).matches("^[a-z]+$")`:        true,
		`args.items.exists(x, args.items.exists(y, x == y))`:       true,
	} {
		p, err := Compile(Definition{Name: "p", Kind: KindDeny, Expression: expr})
		if err != nil {
			t.Fatal(err)
		}
		if p.costLimited != limited {
			t.Errorf("%s: cost limited %v, want %v", expr, p.costLimited, limited)
		}
	}
}

// A team's policy never applies to another team, whatever the definitions handed to NewSet.
func TestSetLeavesOutOtherTeams(t *testing.T) {
	t.Parallel()
	defs := []Definition{
		{Name: "b-denies-everything", TeamID: teamB, Kind: KindDeny, Expression: "true"},
		{Name: "b-limits", TeamID: teamB, Kind: KindRateLimit, Expression: "true", RateKey: RatePerUser, CallsPerMinute: 1},
		{Name: "b-redacts", TeamID: teamB, Kind: KindRedact, Expression: "true", RedactPaths: []string{"args.repo"}},
	}
	s := mustSet(t, teamA, defs...)
	lim := NewLimiter(nil, 0)
	for range 3 {
		c := call("list", `{"repo":"a/b"}`)
		if d, redacts := s.Check(t.Context(), c, lim), s.Redactions(t.Context(), c); d != nil || len(redacts) > 0 {
			t.Fatalf("team B's policies applied to team A: %+v, %d redactions", d, len(redacts))
		}
	}
	if s.Len() != 0 {
		t.Errorf("set of team A holds %d policies", s.Len())
	}
}

// A policy that does not compile on the satellite refuses every call of its team.
func TestSetBrokenPolicyRefuses(t *testing.T) {
	t.Parallel()
	s, errs := NewSet(teamA, []Definition{{Name: "typo", TeamID: teamA, Kind: KindDeny, Expression: "user.role =="}})
	if len(errs) != 1 {
		t.Fatalf("errors = %v", errs)
	}
	if d := s.Check(t.Context(), call("list", `{}`), nil); d == nil || d.Policy != "typo" || d.Reason != ReasonError {
		t.Fatalf("denial = %+v", d)
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	clock := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	s := mustSet(t, teamA,
		Definition{ID: "1", Name: "per-user", Kind: KindRateLimit, Expression: "true", RateKey: RatePerUser, CallsPerMinute: 5},
		Definition{ID: "2", Name: "searches", Kind: KindRateLimit, Expression: `tool.name == "search"`,
			RateKey: RatePerUserAndTool, CallsPerMinute: 2},
	)
	lim := NewLimiter(now, 0)
	check := func(tool, user string) *Denial {
		c := call(tool, `{}`)
		c.UserID = user
		d := s.Check(t.Context(), c, lim)
		return d
	}
	for i := range 2 {
		if d := check("search", "u1"); d != nil {
			t.Fatalf("search %d refused: %s", i, d.Message())
		}
	}
	if d := check("search", "u1"); d == nil || d.Policy != "searches" || d.Reason != ReasonRateLimited {
		t.Fatalf("third search: %+v, want the searches limit", d)
	}
	// The refused search used none of the per-user rate: three calls are left.
	for i := range 3 {
		if d := check("list", "u1"); d != nil {
			t.Fatalf("list %d refused: %s", i, d.Message())
		}
	}
	if d := check("list", "u1"); d == nil || d.Policy != "per-user" {
		t.Fatalf("sixth call: %+v, want the per-user limit", d)
	}
	if d := check("list", "u2"); d != nil {
		t.Fatalf("another user refused: %s", d.Message())
	}
	advance(time.Minute)
	if d := check("search", "u1"); d != nil {
		t.Fatalf("a minute later refused: %s", d.Message())
	}
}

func TestLimiterIsBounded(t *testing.T) {
	t.Parallel()
	s := mustSet(t, teamA, Definition{ID: "1", Name: "per-tool", Kind: KindRateLimit, Expression: "true",
		RateKey: RatePerUserAndTool, CallsPerMinute: 10})
	lim := NewLimiter(nil, 100)
	for i := range 1000 {
		s.Check(t.Context(), call(fmt.Sprint("tool", i), `{}`), lim)
	}
	if n := lim.Len(); n > 100 {
		t.Errorf("limiter keeps %d buckets, want at most 100", n)
	}
}

// TestLimiterKeepsOtherTeamsRates floods one team's buckets past the bound: another team's rate, already
// spent, is not forgotten with them.
func TestLimiterKeepsOtherTeamsRates(t *testing.T) {
	t.Parallel()
	flooded := mustSet(t, teamA, Definition{ID: "1", Name: "per-tool", Kind: KindRateLimit, Expression: "true",
		RateKey: RatePerUserAndTool, CallsPerMinute: 10})
	other := mustSet(t, teamB, Definition{ID: "2", TeamID: teamB, Name: "one-a-minute", Kind: KindRateLimit,
		Expression: "true", RateKey: RatePerUser, CallsPerMinute: 1})
	lim := NewLimiter(nil, 100)
	b := call("echo", `{}`)
	b.TeamID = teamB
	if d := other.Check(t.Context(), b, lim); d != nil {
		t.Fatalf("team B's first call: %v", d)
	}
	for i := range 1000 {
		flooded.Check(t.Context(), call(fmt.Sprint("tool", i), `{}`), lim)
	}
	if d := other.Check(t.Context(), b, lim); d == nil || d.Reason != ReasonRateLimited {
		t.Errorf("team B's second call in the minute after team A's flood: %v, want rate limited", d)
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	s := mustSet(t, teamA,
		Definition{Name: "secrets", Kind: KindRedact, Expression: `server.slug == "github"`,
			RedactPaths:    []string{"args.password", "$.args.nested[*].token", "args..apiKey", "$.result.structuredContent.ssn"},
			RedactPatterns: []string{`ghp_[A-Za-z0-9]+`}},
		Definition{Name: "elsewhere", Kind: KindRedact, Expression: `server.slug == "other"`, RedactPaths: []string{"args.repo"}},
	)
	redacts := s.Redactions(t.Context(), call("login", `{}`))
	if len(redacts) != 1 || redacts[0].Name != "secrets" {
		t.Fatalf("redactions = %v, want only secrets", redacts)
	}
	args := `{"password":"hunter2","repo":"a/b","nested":[{"token":"t1"},{"token":"t2","x":1}],"deep":{"apiKey":"k"},"note":"use ghp_abc123 please"}`
	got := string(Redact(redacts, RootArgs, []byte(args)))
	want := `{"deep":{"apiKey":"[redacted]"},"nested":[{"token":"[redacted]"},{"token":"[redacted]","x":1}],"note":"use [redacted] please","password":"[redacted]","repo":"a/b"}`
	if got != want {
		t.Errorf("args redacted to\n%s\nwant\n%s", got, want)
	}
	result := `{"content":[{"type":"text","text":"token ghp_XYZ"}],"structuredContent":{"ssn":"123","name":"x"}}`
	got = string(Redact(redacts, RootResult, []byte(result)))
	want = `{"content":[{"text":"token [redacted]","type":"text"}],"structuredContent":{"name":"x","ssn":"[redacted]"}}`
	if got != want {
		t.Errorf("result redacted to\n%s\nwant\n%s", got, want)
	}
	if got := string(Redact(redacts, RootArgs, []byte("not json ghp_1"))); got != "not json [redacted]" {
		t.Errorf("non-JSON body redacted to %q", got)
	}
}

// BenchmarkCheckTenPolicies measures what every tool call pays for ten policies of every kind.
func BenchmarkCheckTenPolicies(b *testing.B) {
	var defs []Definition
	for i := range 4 {
		defs = append(defs, Definition{ID: fmt.Sprint("d", i), Name: fmt.Sprint("deny-", i), Kind: KindDeny,
			Expression: fmt.Sprintf(`tool.name.startsWith("delete_%d") && user.role == "member"`, i)})
	}
	defs = append(defs,
		Definition{ID: "a1", Name: "repos", Kind: KindAllow, Expression: `!has(args.repo) || args.repo in ["a/b", "c/d"]`},
		Definition{ID: "a2", Name: "domain", Kind: KindAllow, Expression: `user.email.endsWith("@example.test")`},
		Definition{ID: "a3", Name: "servers", Kind: KindAllow, Expression: `server.slug in ["github", "everything", "jira"]`},
		Definition{ID: "r1", Name: "per-user", Kind: KindRateLimit, Expression: "true", RateKey: RatePerUser, CallsPerMinute: MaxCallsPerMinute},
		Definition{ID: "r2", Name: "per-tool", Kind: KindRateLimit, Expression: `tool.name != "ping"`, RateKey: RatePerUserAndTool, CallsPerMinute: MaxCallsPerMinute},
		Definition{ID: "x1", Name: "secrets", Kind: KindRedact, Expression: "true", RedactPaths: []string{"args.password"}},
	)
	s, errs := NewSet(teamA, defs)
	if len(errs) > 0 {
		b.Fatal(errs)
	}
	// Each call a minute after the last, so the rates never run out however fast the loop runs.
	clock := time.Now()
	lim := NewLimiter(func() time.Time { clock = clock.Add(time.Minute); return clock }, 0)
	b.ReportAllocs()
	cpu := processCPU(b)
	for b.Loop() {
		// A new call each time, as the gateway makes one per tools/call.
		c := call("list_issues", `{"repo":"a/b","state":"open","labels":["bug","p1"]}`)
		if d := s.Check(b.Context(), c, lim); d != nil {
			b.Fatal(d.Message())
		}
		if len(s.Redactions(b.Context(), c)) != 1 {
			b.Fatal("the redaction does not apply")
		}
	}
	// On a shared machine the wall clock per call counts other processes' turns; CPU time does not.
	b.ReportMetric(float64((processCPU(b)-cpu).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// processCPU is the CPU time the process has used, user and system.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
