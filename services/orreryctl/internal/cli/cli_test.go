package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
)

func testApp(stdin string) (*App, *bytes.Buffer, *bytes.Buffer) {
	var out, errOut bytes.Buffer
	return &App{In: strings.NewReader(stdin), Out: &out, Err: &errOut, Getenv: func(string) string { return "" }}, &out, &errOut
}

var githubFields = schemaFields(&apiv1.ConfigSchema{
	Env: []*apiv1.ConfigField{
		{Name: "GITHUB_TOKEN", Scope: apiv1.ConfigScope_CONFIG_SCOPE_TEAM, Required: true, Secret: true},
		{Name: "GITHUB_ORG", Scope: apiv1.ConfigScope_CONFIG_SCOPE_TEAM, Required: true},
		{Name: "PERSONAL", Scope: apiv1.ConfigScope_CONFIG_SCOPE_USER, Required: true},
	},
	Headers: []*apiv1.ConfigField{{Name: "X-Team", Scope: apiv1.ConfigScope_CONFIG_SCOPE_TEAM}},
})

func TestCollectTakesSecretsOnlyFromStdinOrPrompt(t *testing.T) {
	t.Parallel()
	team := apiv1.ConfigScope_CONFIG_SCOPE_TEAM

	a, _, _ := testApp("")
	_, err := a.collect(valueFlags{set: []string{"GITHUB_TOKEN=ghp_leak", "GITHUB_ORG=acme"}}, githubFields, team, nil)
	var usage usageError
	if !errors.As(err, &usage) || !strings.Contains(err.Error(), "--secret GITHUB_TOKEN") {
		t.Fatalf("a secret in argv: %v, want a usage error pointing to --secret", err)
	}

	a, _, _ = testApp("ghp_secret\r\nsecond\n")
	got, err := a.collect(valueFlags{set: []string{"GITHUB_ORG=acme", "headers.X-Team=a=b"}, secrets: []string{"GITHUB_TOKEN"}}, githubFields, team, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v := got["env"]["GITHUB_TOKEN"]; v.GetValue() != "ghp_secret" || !v.GetSecret() {
		t.Errorf("secret from stdin: %v", v)
	}
	if got["env"]["GITHUB_ORG"].GetValue() != "acme" || got["headers"]["X-Team"].GetValue() != "a=b" {
		t.Errorf("values: %v", got)
	}

	a, _, _ = testApp("")
	_, err = a.collect(valueFlags{}, githubFields, team, nil)
	if !errors.As(err, &usage) || !strings.Contains(err.Error(), "env.GITHUB_TOKEN (--secret GITHUB_TOKEN)") ||
		!strings.Contains(err.Error(), "env.GITHUB_ORG (--set GITHUB_ORG=VALUE)") || strings.Contains(err.Error(), "PERSONAL") {
		t.Fatalf("missing values without a terminal: %v", err)
	}

	a, _, _ = testApp("")
	if _, err = a.collect(valueFlags{secrets: []string{"GITHUB_TOKEN"}}, githubFields, team, nil); !errors.As(err, &usage) {
		t.Fatalf("--secret with empty stdin: %v", err)
	}
	if _, err = a.collect(valueFlags{set: []string{"NOPE=1"}}, githubFields, team, nil); !errors.As(err, &usage) || !strings.Contains(err.Error(), "env.NOPE") {
		t.Fatalf("undeclared name: %v", err)
	}
}

func TestCollectPromptsForWhatIsMissing(t *testing.T) {
	t.Parallel()
	a, _, errOut := testApp("token\nacme\n")
	a.Interactive = true
	got, err := a.collect(valueFlags{}, githubFields, apiv1.ConfigScope_CONFIG_SCOPE_TEAM, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut.String(), "env.GITHUB_TOKEN") {
		t.Errorf("prompts: %q", errOut.String())
	}
	if len(got["env"]) != 2 || !got["env"]["GITHUB_TOKEN"].GetSecret() || got["env"]["GITHUB_ORG"].GetValue() != "acme" {
		t.Errorf("prompted values: %v", got)
	}
}

func TestYAMLKeepsFieldOrderInBlockStyle(t *testing.T) {
	t.Parallel()
	a, out, _ := testApp("")
	a.output = "yaml"
	msg := &apiv1.ListTeamsResponse{Teams: []*apiv1.Team{{Id: "1", Slug: "red", Name: "Red: team"}, {Id: "2", Slug: "blue"}}}
	if err := a.show(msg, nil, nil); err != nil {
		t.Fatal(err)
	}
	want := "teams:\n  - id: \"1\"\n    slug: red\n    name: 'Red: team'\n  - id: \"2\"\n    slug: blue\n"
	if out.String() != want {
		t.Fatalf("yaml:\n%s\nwant:\n%s", out, want)
	}
}

func TestMergeServerKeepsTheRest(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), ".cursor", "mcp.json")
	if err := mergeServer(path, "mcpServers", "orrery-a", map[string]any{"url": "https://s/teams/a/mcp"}); err != nil {
		t.Fatal(err)
	}
	if err := mergeServer(path, "mcpServers", "orrery-b", map[string]any{"url": "https://s/teams/b/mcp"}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	if !strings.Contains(string(raw), "orrery-a") || !strings.Contains(string(raw), "orrery-b") {
		t.Fatalf("merged: %s", raw)
	}
	if err := os.WriteFile(path, []byte("// comments are not JSON\n{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := mergeServer(path, "mcpServers", "orrery-c", map[string]any{}); err == nil {
		t.Fatal("merged into a file that is not JSON")
	}
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		code int
		want string
	}{
		{connect.NewError(connect.CodeUnauthenticated, errors.New("the session or API token is unknown")), ExitAuth, "orreryctl login"},
		{connect.NewError(connect.CodePermissionDenied, errors.New("only team admins")), ExitDenied, "not allowed"},
		{connect.NewError(connect.CodeNotFound, errors.New("installation not found")), ExitNotFound, "not found"},
		{connect.NewError(connect.CodeUnavailable, errors.New("down")), ExitUnavailable, "try again"},
		{fmt.Errorf("wrapped: %w", usageError{errors.New("bad")}), ExitUsage, "bad"},
		{codedError{ExitTimeout, errors.New("slow")}, ExitTimeout, "slow"},
		{errors.New(`required flag(s) "team" not set`), ExitUsage, "team"},
		{errors.New("boom"), ExitError, "boom"},
	} {
		code, msg := classify(tc.err)
		if code != tc.code || !strings.Contains(msg, tc.want) {
			t.Errorf("%v: %d %q, want %d with %q", tc.err, code, msg, tc.code, tc.want)
		}
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"nonsense"},
		{"teams", "list", "--bogus"},
		{"teams", "show"},
		{"connect", "emacs", "--team", "x"},
		{"teams", "list", "-o", "xml"},
	} {
		a, _, errOut := testApp("")
		a.ConfigPath = filepath.Join(t.TempDir(), "config.json")
		if code := a.Main(t.Context(), args); code != ExitUsage || !strings.HasPrefix(errOut.String(), "error: ") {
			t.Errorf("%v: exit %d, %q; want %d", args, code, errOut.String(), ExitUsage)
		}
	}
	a, _, errOut := testApp("")
	a.ConfigPath = filepath.Join(t.TempDir(), "config.json")
	if code := a.Main(t.Context(), []string{"teams", "list"}); code != ExitAuth || !strings.Contains(errOut.String(), "orreryctl login") {
		t.Errorf("not signed in: %d %q", code, errOut.String())
	}
}
