package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orrery/orrery/internal/mcptest"
)

// inspectorTimeout bounds one run of the Inspector CLI: a node start, a session and one request.
const inspectorTimeout = 30 * time.Second

// TestMCPEndpointServesInspectorCLI drives the team endpoint with the official TypeScript client, through
// the MCP Inspector's CLI mode, sending the member's token as a bearer header the way a user's client
// configuration would: it must list the team's tools and call one.
func TestMCPEndpointServesInspectorCLI(t *testing.T) {
	t.Parallel()
	command, args := mcptest.Everything(t)
	red := startTeamEndpoint(t, "red", "everything", command, args, false, "everything__echo")

	var list struct {
		Tools []struct {
			Name string `json:"name"`
		} `json:"tools"`
	}
	inspect(t, red.team, &list, "--method", "tools/list")
	var names []string
	for _, tool := range list.Tools {
		names = append(names, tool.Name)
	}
	if !slices.Contains(names, "everything__echo") {
		t.Fatalf("Inspector listed %v, want everything__echo among them", names)
	}

	var call struct {
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
		IsError bool `json:"isError"`
	}
	const message = "hello from the TypeScript SDK"
	inspect(t, red.team, &call, "--method", "tools/call", "--tool-name", "everything__echo", "--tool-arg", "message="+message)
	if call.IsError || len(call.Content) == 0 || !strings.Contains(call.Content[0].Text, message) {
		t.Fatalf("Inspector's echo call returned %+v, want text containing %q", call, message)
	}

	// Without the token the same client gets nothing but the endpoint's refusal.
	node, cli := mcptest.Inspector(t)
	ctx, cancel := context.WithTimeout(t.Context(), inspectorTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, append(cli, red.endpoint, "--transport", "http", "--method", "tools/list")...).CombinedOutput()
	if err == nil || strings.Contains(string(out), "everything__") || !strings.Contains(string(out), "missing bearer token") {
		t.Fatalf("Inspector without a token: err %v, want the endpoint's refusal; output:\n%s", err, out)
	}
}

// inspect runs the Inspector CLI against tm's endpoint with tm's token and decodes its JSON output into v.
func inspect(t *testing.T, tm team, v any, args ...string) {
	t.Helper()
	node, cli := mcptest.Inspector(t)
	ctx, cancel := context.WithTimeout(t.Context(), inspectorTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append(append(cli, tm.endpoint, "--transport", "http",
		"--header", "Authorization: Bearer "+tm.token), args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("inspector %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, stdout.Bytes(), stderr.Bytes())
	}
	if err := json.Unmarshal(stdout.Bytes(), v); err != nil {
		t.Fatalf("inspector %v printed no JSON result (%v):\n%s\nstderr:\n%s", args, err, stdout.Bytes(), stderr.Bytes())
	}
}
