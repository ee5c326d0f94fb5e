package e2e_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orrery/orrery/e2e"
	"github.com/orrery/orrery/internal/mcptest"
)

// TestPoliciesReachTheSatellite sets policies with orreryctl on a real control plane and sees a real
// satellite apply them to server-everything's tools through the Go SDK client: a team policy refuses a
// tool, a global one limits the rate, and deleting the team policy lets the tool through again. It logs how
// long a saved policy takes to be enforced.
func TestPoliciesReachTheSatellite(t *testing.T) {
	t.Parallel()
	command, args := mcptest.Everything(t)
	te := startTeamEndpoint(t, "guarded", "everything", command, args, false, "everything__echo")
	admin := newCLI(t, "ORRERY_TOKEN="+te.cp.AdminToken, "ORRERY_URL="+te.cp.URL)
	session, err := connectMCP(t.Context(), te.endpoint, te.token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { session.Close() })
	echo := func() (*mcp.CallToolResult, error) {
		return session.CallTool(t.Context(), &mcp.CallToolParams{Name: "everything__echo", Arguments: map[string]any{"message": "hi"}})
	}
	refusedBy := func(policy string) error {
		res, err := echo()
		switch {
		case err != nil:
			return err
		case !res.IsError:
			return errors.New("echo still answers")
		}
		if text := res.Content[0].(*mcp.TextContent).Text; !strings.Contains(text, `policy "`+policy+`"`) {
			return fmt.Errorf("refused with %q", text)
		}
		return nil
	}
	if res, err := echo(); err != nil || res.IsError {
		t.Fatalf("echo before any policy: %v, %v", res, err)
	}

	saved := time.Now()
	admin.ok(t, "policies", "set", "no-echo", `tool.name == "echo" && user.role == "member"`, "--kind", "deny", "--team", te.id)
	e2e.WaitFor(t, 30*time.Second, "the satellite refusing echo", func() error { return refusedBy("no-echo") })
	t.Logf("a saved policy was enforced %v later", time.Since(saved).Round(time.Millisecond))
	if res, err := session.CallTool(t.Context(), &mcp.CallToolParams{Name: "everything__get-sum", Arguments: map[string]any{"a": 1, "b": 2}}); err != nil || res.IsError {
		t.Fatalf("get-sum under a policy about echo: %v, %v", res, err)
	}

	// A bad expression is refused with its position, and nothing changes.
	_, errOut, code := admin.run(t, "", "policies", "set", "broken", `tool.name ==`, "--kind", "deny", "--team", te.id)
	if code == 0 || !strings.Contains(errOut, "line 1, column") {
		t.Fatalf("bad expression: exit %d, %s", code, errOut)
	}

	admin.ok(t, "policies", "delete", "no-echo", "--team", te.id)
	admin.ok(t, "policies", "set", "one-sum-a-minute", `tool.name == "get-sum"`, "--kind", "rate_limit", "--per-minute", "1", "--per", "user_tool")
	if out := admin.ok(t, "policies", "list", "--team", te.id); !strings.Contains(out, "one-sum-a-minute") || strings.Contains(out, "no-echo") {
		t.Fatalf("policies list:\n%s", out)
	}
	e2e.WaitFor(t, 30*time.Second, "echo answering again", func() error {
		if err := refusedBy("no-echo"); err == nil {
			return errors.New("echo still refused")
		}
		return nil
	})
	e2e.WaitFor(t, 30*time.Second, "the global rate limit applied", func() error {
		res, err := session.CallTool(t.Context(), &mcp.CallToolParams{Name: "everything__get-sum", Arguments: map[string]any{"a": 1, "b": 2}})
		if err != nil {
			return err
		}
		if !res.IsError {
			return errors.New("get-sum not limited yet")
		}
		if text := res.Content[0].(*mcp.TextContent).Text; !strings.Contains(text, `rate limit of policy "one-sum-a-minute"`) {
			return fmt.Errorf("refused with %q", text)
		}
		return nil
	})
}
